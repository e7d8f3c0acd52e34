"""What the per-call kernel-contract check costs (issue 22, item 5), measured side by side.

For each attention call one SAGAN step makes (ganbench.plugins.sagan.attention_shapes), the
eager kernel is timed, and so are the two checks ``checked_attend`` adds to a call: shape and
dtype (every call) and shape, dtype and finiteness (every FINITE_EVERY-th eager call); rounds
interleave the three so drifting load hits all alike. Also counts how many attention calls one real training step makes, to turn
the per-call cost into a per-step one.

    python scripts/kernel_check_overhead.py [--image-size 32] [--batch-size 64] [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def timed(fn, *args, repeat: int = 5) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn(*args)
    return (time.perf_counter() - t0) / repeat


def calls_per_step(image_size: int, batch_size: int) -> int:
    """Attention calls in one ganbench training step of SAGAN (counted, not assumed)."""
    from ganbench.plugins import sagan
    from ganbench.plugins.attention import attend_eager
    from ganbench.plugins.losses import HingeLoss
    from ganbench.specs import ModelRequest
    from ganbench.training.loop import Batches, TrainSettings, train

    count = [0]

    def counting(q, k, v):
        count[0] += 1
        return attend_eager(q, k, v)

    G, D = sagan.build(ModelRequest(image_size, 128, attend=counting))
    images = torch.rand(batch_size * 2, 1, image_size, image_size) * 2 - 1
    settings = TrainSettings(steps=2, warmup=1, z_dim=128, g_lr=1e-4, d_lr=4e-4,
                             betas=(0.0, 0.9), device="cpu")
    train(G, D, HingeLoss(), Batches(images, batch_size, 0), settings)
    return count[0] // 2


def main() -> None:
    from ganbench.plugins.attention import attend_eager
    from ganbench.plugins.sagan import attention_shapes
    from ganbench.sweep.kernel_check import FINITE_EVERY, check_output, check_shape_dtype

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    args = p.parse_args()
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}, "
          f"{args.image_size}x{args.image_size}, batch {args.batch_size}")
    print("B N Dqk Dv | attention us | shape+dtype check us | finiteness check us")
    per_call = []
    for B, N, Dqk, Dv in attention_shapes(args.image_size, args.batch_size):
        q, k = (torch.randn(B, N, Dqk, generator=g).to(dtype) for _ in range(2))
        v = torch.randn(B, N, Dv, generator=g).to(dtype)
        o = attend_eager(q, k, v)
        # The wrapper's overhead is the check itself: timed alone, so it is not the small
        # difference of two large, noisy attention timings.
        samples: dict[str, list[float]] = {"bare": [], "shape": [], "finite": []}
        for _ in range(args.rounds):
            samples["bare"].append(timed(attend_eager, q, k, v))
            samples["shape"].append(timed(check_shape_dtype, "k", q, k, v, o, repeat=50))
            samples["finite"].append(timed(check_output, "k", q, k, v, o, repeat=20))
        bare, shape, finite = (statistics.median(samples[key]) * 1e6
                               for key in ("bare", "shape", "finite"))
        per_call.append((bare, shape, finite))
        print(f"{B} {N} {Dqk} {Dv} | {bare:.0f} | {shape:.1f} ({shape / bare * 100:.2f}%) | "
              f"{finite:.0f} ({finite / bare * 100:.1f}%)")
    n = calls_per_step(args.image_size, min(args.batch_size, 16))
    bare = sum(b for b, _, _ in per_call) / len(per_call)
    shape = sum(s for _, s, _ in per_call) / len(per_call)
    finite = sum(f for _, _, f in per_call) / len(per_call)
    extra = shape + finite / FINITE_EVERY  # every call, and a full check every 16th
    print(f"attention calls per training step: {n}; per call, averaged over the shapes: "
          f"attention {bare:.0f} us, check as in a run (shape+dtype every call, finiteness "
          f"every {FINITE_EVERY}th) {extra:.1f} us ({extra / bare * 100:.2f}%): "
          f"{extra * n / 1000:.3f} ms per step")


if __name__ == "__main__":
    main()
