"""`ganbench sample RUN_DIR --combo NAME`: draw digits from a run's trained generator."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "sample"
HELP = "draw samples from a trained generator of a run folder (uint8 .npz, optional PNG grid)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="a run folder made by `ganbench run`")
    p.add_argument("--combo", required=True, help="the combination, e.g. sagan+hinge+eager-attn")
    p.add_argument("--n", type=int, default=2000, help="how many samples (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, required=True, help="output .npz file")
    p.add_argument("--grid", type=Path, help="also write the first 64 samples as a PNG grid")


def load_generator(run_dir: Path, combo: str, device: str):
    """Rebuild the generator of ``combo`` from ``models/<combo>.G.pt`` (weights_only load)."""
    import torch

    from ganbench.errors import UserError
    from ganbench.registry import get_registry
    from ganbench.specs import ModelRequest

    path = run_dir / "models" / f"{combo}.G.pt"
    if not path.exists():
        have = sorted(p.name[:-5] for p in (run_dir / "models").glob("*.G.pt"))
        raise UserError(f"no generator for {combo!r} in {run_dir}; have: "
                        f"{', '.join(have) or 'none'}")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        registry = get_registry()
        arch = registry.lookup(saved["architecture"], ("architecture",)).spec
    except (RuntimeError, KeyError, OSError, ValueError) as exc:
        raise UserError(f"cannot load generator {path}: {exc}".splitlines()[0])
    attend = None
    if arch.uses_attention:
        # The weights do not depend on the kernel; use the trained one where it runs here.
        kernel = saved.get("attention") or arch.defaults.attention
        spec = registry.attention.get(kernel)
        if spec is None or spec.why_unavailable(device):
            spec = registry.attention[arch.defaults.attention]
        attend = spec.factory()
    G, _ = arch.build(ModelRequest(int(saved["image_size"]), int(saved["z_dim"]),
                                   attend=attend))
    G.load_state_dict(saved["generator"])
    return G.to(device), saved


def run(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from ganbench.config import resolve_device
    from ganbench.errors import UserError
    from ganbench.report import save_grid, to_uint8
    from ganbench.train import generate

    if args.n <= 0:
        raise UserError(f"--n must be a positive integer, got {args.n}")
    device = resolve_device(args.device)
    G, saved = load_generator(args.run_dir, args.combo, device)
    images = generate(G, args.n, int(saved["z_dim"]), device, args.seed)
    settings = {"run_dir": str(args.run_dir), "combo": args.combo, "n": args.n,
                "seed": args.seed, "image_size": int(saved["image_size"]),
                "z_dim": int(saved["z_dim"]), "range": "uint8 0..255 = [-1, 1] scaled"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, images=to_uint8(images), settings=json.dumps(settings))
    if args.grid:
        save_grid(images[:64], args.grid)
    print(f"wrote {args.n} samples to {args.out}")
    return 0
