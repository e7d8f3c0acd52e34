"""`ganbench sample RUN_DIR --combo NAME`: draw digits from a run's trained generator."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganbench.options import Option, add_options

NAME = "sample"
HELP = "draw samples from a trained generator of a run folder (uint8 .npz, optional PNG grid)"
SYNOPSIS = "RUN_DIR --combo NAME --out F.npz"
DESCRIPTION = ("Draw uint8 digits from a run's trained generator (models/COMBO.G.pt, loaded "
               "weights-only) into an .npz file, and optionally a PNG grid of the first 64.")


# The most samples one call draws: more than MNIST's 70,000 digits, and FID-style scores use
# 10,000 to 50,000. The .npz holds them all at once: 100,000 at 128x128 are 1.6 GB of uint8.
MAX_SAMPLES = 100_000
PROGRESS_FROM = 10_000  # from this many on, a line on stderr at every tenth of the work
CHUNK = 500             # samples per forward pass (as ganbench.training.loop.generate)


OPTIONS = (
    Option("run_dir", "a run folder made by `ganbench run`", type=Path),
    Option("--combo", "the combination, e.g. sagan+hinge+eager-attn", required=True,
           metavar="NAME"),
    Option("--n", f"how many samples, at most {MAX_SAMPLES:,}", type=int, default=2000),
    Option("--seed", "seed of the noise", type=int, default=0),
    Option("--device", "auto (cuda if available), cpu, cuda[:N]", default="auto"),
    Option("--out", "output .npz file", type=Path, required=True, metavar="FILE"),
    Option("--grid", "also write the first 64 samples as a PNG grid", type=Path,
           metavar="PNG"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_options(p, OPTIONS)


def load_generator(run_dir: Path, combo: str, device: str):
    """Rebuild the generator of ``combo`` from ``models/<combo>.G.pt`` (weights_only load).

    UserError (one line) for a missing, damaged, edited or hostile file."""
    from ganbench.errors import UserError
    from ganbench.registry import get_registry
    from ganbench.files.safe_load import describe, load_tensors
    from ganbench.specs import ModelRequest

    what = "ganbench generator file"
    path = run_dir / "models" / f"{combo}.G.pt"
    if not path.is_file():
        have = sorted(p.name[:-5] for p in (run_dir / "models").glob("*.G.pt"))
        raise UserError(f"no generator for {combo!r} in {run_dir}; have: "
                        f"{', '.join(have) or 'none'}")
    saved = load_tensors(path, what)
    if not isinstance(saved, dict) or not isinstance(saved.get("generator"), dict):
        raise UserError(f"cannot load {path}: not a readable {what} (no generator weights in it)")
    for key in ("image_size", "z_dim"):
        value = saved.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 4096:
            raise UserError(f"cannot load {path}: not a readable {what} ({key} is {value!r})")
    registry = get_registry()
    if not isinstance(saved.get("architecture"), str):
        raise UserError(f"cannot load {path}: not a readable {what} (no architecture name)")
    arch = registry.lookup(saved["architecture"], ("architecture",)).spec
    if saved["image_size"] not in arch.image_sizes:
        raise UserError(f"cannot load {path}: {arch.name} does not build "
                        f"{saved['image_size']}x{saved['image_size']} images")
    attend = None
    if arch.uses_attention:
        # The weights do not depend on the kernel; use the trained one where it runs here.
        kernel = saved.get("attention") if isinstance(saved.get("attention"), str) else None
        spec = registry.attention.get(kernel or arch.defaults.attention)
        if spec is None or spec.why_unavailable(device):
            spec = registry.attention[arch.defaults.attention]
        attend = spec.factory()
    G, _ = arch.build(ModelRequest(saved["image_size"], saved["z_dim"], attend=attend))
    try:
        G.load_state_dict(saved["generator"])
    except Exception as exc:  # mismatched or non-tensor entries in an edited file
        raise describe(path, what, exc) from None
    return G.to(device), saved


def draw(G, n: int, z_dim: int, device: str, seed: int, progress=None):
    """(uint8 (n, S, S) samples, float32 first 64 in [-1, 1]): the same samples as
    ganbench.training.loop.generate(G, n, z_dim, device, seed), converted chunk by chunk so
    the float copy of all n never exists; ``progress(done, n)`` after each chunk."""
    import numpy as np
    import torch

    from ganbench.results.figures import to_uint8

    was_training = G.training
    G.eval()
    # All noise drawn at once, as generate() does (torch's CPU randn takes another path below
    # 16 elements, so per-chunk noise would depend on the chunk size).
    z_all = torch.randn(n, z_dim, 1, 1, generator=torch.Generator().manual_seed(seed))
    out, first = [], None
    with torch.no_grad():
        for start in range(0, n, CHUNK):
            images = G(z_all[start:start + CHUNK].to(device)).float().clamp_(-1, 1).cpu()
            if first is None:
                first = images[:64]
            out.append(to_uint8(images))
            if progress is not None:
                progress(min(n, start + CHUNK), n)
    G.train(was_training)
    return np.concatenate(out), first


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    import time

    import numpy as np

    from ganbench.files import atomic
    from ganbench.config import resolve_device
    from ganbench.errors import UserError
    from ganbench.results.figures import save_grid

    if args.n <= 0:
        raise UserError(f"--n must be a positive integer, got {args.n}")
    if args.n > MAX_SAMPLES:
        raise UserError(f"--n {args.n} is more than {MAX_SAMPLES:,} samples (they are held "
                        "in memory and written as one .npz); draw several files with "
                        "different --seed values instead")
    device = resolve_device(args.device)
    G, saved = load_generator(args.run_dir, args.combo, device)
    started, shown = time.monotonic(), [0]

    def progress(done: int, n: int) -> None:
        tenth = done * 10 // n
        if n >= PROGRESS_FROM and tenth > shown[0]:
            shown[0] = tenth
            print(f"sample: {done}/{n} ({tenth * 10}%) in "
                  f"{time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)

    samples, first = draw(G, args.n, int(saved["z_dim"]), device, args.seed, progress)
    settings = {"run_dir": str(args.run_dir), "combo": args.combo, "n": args.n,
                "seed": args.seed, "image_size": int(saved["image_size"]),
                "z_dim": int(saved["z_dim"]), "range": "uint8 0..255 = [-1, 1] scaled"}
    # Atomically, through a file object: np.savez would append ".npz" to a path without it.
    with atomic.replacing(args.out) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, images=samples, settings=json.dumps(settings))
    if args.grid:
        with atomic.replacing(args.grid) as tmp:
            save_grid(first, tmp)
    print(f"wrote {args.n} samples to {args.out}")
    return 0
