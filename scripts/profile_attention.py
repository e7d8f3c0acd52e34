"""Profile target for Nsight Compute: triton-attn forward + backward at one SAGAN shape.

    ncu --profile-from-start off --clock-control none --section SpeedOfLight ... \
        python scripts/profile_attention.py --N 1024 --dqk 8 --dv 64 --batch 64

Compiles and warms up outside the profiled range, then runs one forward + backward per
backward variant between cudaProfilerStart/Stop, each inside an NVTX range named after the
variant, so ncu (with --profile-from-start off) sees only those launches. Without ncu it
prints the median time of each variant (CUDA events over 20 calls), a quick sanity check.
"""

from __future__ import annotations

import argparse
import functools

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--N", type=int, default=1024)
    p.add_argument("--dqk", type=int, default=8)
    p.add_argument("--dv", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("profile_attention.py: needs a CUDA device (this profiles GPU kernels)")
    from ganbench.bench.shapes import DTYPES, Shape, make_inputs
    from ganbench.bench.timing import TimingPolicy, time_calls
    from ganbench.kernels.attention.triton_attn import BACKWARDS, attend_triton

    B, N = args.batch, args.N
    # the benchmark's inputs (unit-variance scores), so the profile sees what it times
    q, k, v, do = make_inputs(B, Shape("profile", N, args.dqk, args.dv), DTYPES[args.dtype],
                              "cuda")
    leaves = [t.requires_grad_() for t in (q, k, v)]

    def step(backward: str) -> None:
        o = attend_triton(*leaves, backward=backward)
        torch.autograd.grad(o, leaves, do)

    variants = {b: functools.partial(step, b) for b in BACKWARDS}
    for name, fn in variants.items():  # warm-up (compilation) is not profiled
        times = sorted(time_calls(fn, "cuda", TimingPolicy(warmup=3, min_calls=20,
                                                           min_seconds=0, max_calls=20)))
        print(f"backward={name}: median {times[len(times) // 2] * 1e3:.3f} ms per fwd+bwd "
              f"(B={B} N={N} Dqk={args.dqk} Dv={args.dv} {args.dtype})")
    torch.cuda.cudart().cudaProfilerStart()
    for name, fn in variants.items():
        with torch.cuda.nvtx.range(f"backward={name}"):
            fn()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()


if __name__ == "__main__":
    main()
