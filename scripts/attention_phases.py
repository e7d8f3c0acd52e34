"""Why a SAGAN attention map can have alternate rows and columns near zero (issue 22).

For each attention layer of a trained generator (RUN_DIR/models/COMBO.G.pt) and of an untrained
one, over the run's 64 fixed-noise samples: the centre pixel's attention weight x N by pixel
phase (row % 2, col % 2), the layer input's magnitude and the key norm by phase, the logits
q_centre . k by phase, and the largest difference between the drawn map and the same map
computed on the H x W grid with no flatten or reshape (a layout bug would show there).

    python scripts/attention_phases.py RUN_DIR [--combo sagan+hinge+eager-attn]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def by_phase(m: torch.Tensor) -> list[list[float]]:
    """(B, H, W) -> 2x2 means over (row % 2, col % 2), rounded."""
    return [[round(float(m[:, r::2, c::2].mean()), 3) for c in (0, 1)] for r in (0, 1)]


def report(G, z, label: str) -> None:
    from ganbench.results.figures import attention_modules, centre_attention

    _, maps = centre_attention(G, z)
    modules = dict(attention_modules(G))
    inputs = {}
    hooks = [m.register_forward_hook(
        lambda mod, args, out, name=name: inputs.__setitem__(name, args[0].detach().float()))
        for name, m in modules.items()]
    with torch.no_grad():
        G.eval()
        G(z)
    for hook in hooks:
        hook.remove()
    for name, w in maps:
        side = w.shape[-1]
        m, x = modules[name], inputs[name]
        with torch.no_grad():
            q, k = m.query(x), m.key(x)  # (B, C/8, H, W): never flattened
        c = side // 2
        logits = torch.einsum("bd,bdhw->bhw", q[:, :, c, c], k)
        direct = torch.softmax(logits.flatten(1), -1).reshape_as(logits)
        print(f"[{label}] {name} {side}x{side}  phases ee eo / oe oo")
        print(f"  attention x N   {by_phase(w * side * side)}")
        print(f"  input |x|       {by_phase(x.abs().mean(1))}")
        print(f"  key norm        {by_phase(k.norm(dim=1))}")
        print(f"  logit q_c . k   {by_phase(logits)}")
        print(f"  max |drawn map - map on the grid| = {float((direct - w).abs().max()):.3g}")


def main() -> None:
    from ganbench.commands.sample import load_generator
    from ganbench.registry import get_registry
    from ganbench.specs import ModelRequest
    from ganbench.sweep.execute import FIXED_NOISE_SEED, GRID_SIZE

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--combo", default="sagan+hinge+eager-attn")
    args = p.parse_args()
    G, saved = load_generator(args.run_dir, args.combo, "cpu")
    z = torch.randn(GRID_SIZE, saved["z_dim"], 1, 1,
                    generator=torch.Generator().manual_seed(FIXED_NOISE_SEED))
    report(G, z, "trained")
    arch = get_registry().architectures[saved["architecture"]]
    torch.manual_seed(1)
    untrained, _ = arch.build(ModelRequest(saved["image_size"], saved["z_dim"],
                                           attend=get_registry().attention["eager-attn"]
                                           .factory()))
    report(untrained, z, "untrained")


if __name__ == "__main__":
    main()
