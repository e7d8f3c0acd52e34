"""Which CPU step settings make the default run faster: A/B in one process, interleaved.

    python scripts/cpu_step_options.py --arch sagan --image-size 32 --rounds 8 --steps 3

Each round times ``--steps`` training steps of every variant in turn (ABCABC...), so load on a
shared machine falls on all of them alike; the table gives each variant's median step time,
its p10-p90 spread and the ratio of medians to the first variant. Variants: the textbook's own
step (ganbench.training.steps.textbook_step); ganbench's step; channels_last memory format for G, D and
the batch; bf16 autocast (native on CPUs with AVX512-BF16/AMX); both; at each thread count.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ganbench.registry import get_registry
from ganbench.specs import ModelRequest
from ganbench.training.steps import StepParts, ganbench_step, make_optimizers, textbook_step

STEPS = {"textbook": textbook_step, "ganbench": ganbench_step}


def build(arch_name: str, image_size: int, channels_last: bool, dtype: str, batch: int):
    registry = get_registry()
    arch = registry.architectures[arch_name]
    d = arch.defaults
    attend = registry.attention[d.attention].factory() if arch.uses_attention else None
    torch.manual_seed(0)
    G, D = arch.build(ModelRequest(image_size, d.z_dim, attend=attend))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    G, D = G.to(memory_format=fmt), D.to(memory_format=fmt)
    opt_g, opt_d = make_optimizers(G, D, d.g_lr, d.d_lr, d.betas, "cpu")
    parts = StepParts(G, D, registry.losses[d.loss].factory(), opt_g, opt_d,
                      torch.Generator().manual_seed(1), batch, d.z_dim, "cpu", dtype)
    real = (torch.rand(batch, 1, image_size, image_size) * 2 - 1).contiguous(memory_format=fmt)
    return parts, real


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="sagan")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    variants = {}
    for threads in [int(t) for t in args.threads.split(",")]:
        variants[f"textbook fp32 {threads}t"] = ("textbook", threads, False, "fp32")
        variants[f"ganbench fp32 {threads}t"] = ("ganbench", threads, False, "fp32")
        variants[f"ganbench channels_last {threads}t"] = ("ganbench", threads, True, "fp32")
        variants[f"ganbench bf16 {threads}t"] = ("ganbench", threads, False, "bf16")
        variants[f"ganbench bf16 channels_last {threads}t"] = ("ganbench", threads, True,
                                                               "bf16")
    built = {k: build(args.arch, args.image_size, cl, dt, args.batch)
             for k, (_, _, cl, dt) in variants.items()}
    times = {k: [] for k in variants}
    for name, (kind, threads, _, _) in variants.items():  # warm-up: one step each
        torch.set_num_threads(threads)
        STEPS[kind](*built[name])
    for _ in range(args.rounds):
        for name, (kind, threads, _, _) in variants.items():
            torch.set_num_threads(threads)
            parts, real = built[name]
            for _ in range(args.steps):
                t0 = time.perf_counter()
                STEPS[kind](parts, real)
                times[name].append(time.perf_counter() - t0)
    base = np.median(times[next(iter(variants))])
    print(f"{args.arch} {args.image_size}x{args.image_size} batch {args.batch}, "
          f"{args.rounds} rounds x {args.steps} steps, interleaved")
    print(f"{'variant':32s} {'median ms':>10s} {'p10-p90 ms':>16s} {'vs first':>9s}")
    for name, ts in times.items():
        ms = np.asarray(ts) * 1000
        print(f"{name:32s} {np.median(ms):10.1f} {np.percentile(ms, 10):7.1f}-"
              f"{np.percentile(ms, 90):<8.1f} {np.median(ts) / base:9.2f}")


if __name__ == "__main__":
    main()
