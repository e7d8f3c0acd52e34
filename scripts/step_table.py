"""The SAGAN step table: the textbook's step against ganbench's, eager and graphed, per kernel.

    python scripts/step_table.py --device cuda --out OUT/step-table      # the GPU check
    python scripts/step_table.py --device cpu --image-size 32 --steps 6 --warmup 2 \
        --batch 8 --kernels eager-attn,sdpa-attn --out /tmp/st           # a CPU smoke run

One process, one architecture at a time. Rows, in order: the textbook step (eager-attn, fp32:
the chapter as written), then for each dtype and kernel ganbench's eager step and its CUDA
graph. Each row trains fresh, seeded models with :func:`ganbench.training.loop.train` (the loop the
runner uses) on random images in [-1, 1] (data loading is the same for every row), and reports
the median step time with p10/p90 and count, images/s, ``speedup_vs_textbook`` (images/s over
the textbook row's, measured in this process), and from torch.profiler the device kernels and
host launch calls of one step after warm-up (CPU: aten ops instead). Rows are appended to
step-table.csv as they finish, so a time limit that cuts the run keeps the rows before it; a
row that fails records its error and the next one runs.
"""

from __future__ import annotations

import argparse
import time
import traceback
from pathlib import Path

import pandas as pd
import torch

from ganbench.training.measure import summarize
from ganbench.registry import get_registry
from ganbench.specs import ModelRequest
from ganbench.training.steps import GraphedStep, StepParts, ganbench_step, make_optimizers, textbook_step
from ganbench.training.loop import Batches, TrainSettings, seed_everything, train

# Host-side calls that start device work: one per kernel launched eagerly, one per replay.
LAUNCH_CALLS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx",
                "cudaGraphLaunch")


def build(arch_name: str, kernel: str | None, image_size: int, seed: int, device: str,
          options: dict):
    registry = get_registry()
    arch = registry.architectures[arch_name]
    attend = registry.attention[kernel].factory(**options.get(kernel, {})) if kernel else None
    seed_everything(seed)
    G, D = arch.build(ModelRequest(image_size, arch.defaults.z_dim, attend=attend))
    return arch, G.to(device), D.to(device), registry.losses[arch.defaults.loss].factory()


def count_launches(arch_name, kernel, args, step_kind: str, graphed: bool, dtype: str) -> dict:
    """Device kernels and host launch calls of one step after a few warm-up steps."""
    from torch.profiler import ProfilerActivity, profile

    arch, G, D, loss = build(arch_name, kernel, args.image_size, args.seed, args.device,
                             args.options)
    d = arch.defaults
    opt_g, opt_d = make_optimizers(G, D, d.g_lr, d.d_lr, d.betas, args.device, graphed)
    parts = StepParts(G, D, loss, opt_g, opt_d,
                      torch.Generator(device=args.device).manual_seed(args.seed + 1),
                      args.batch, d.z_dim, args.device, dtype)
    step = GraphedStep(parts) if graphed else (
        (lambda real: textbook_step(parts, real)) if step_kind == "textbook"
        else (lambda real: ganbench_step(parts, real)))
    real = torch.rand(args.batch, 1, args.image_size, args.image_size,
                      device=args.device) * 2 - 1
    for _ in range(5):  # past the graph's warm-up and capture
        step(real)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        step(real)
        if cuda:
            torch.cuda.synchronize()
    events = prof.events()
    if cuda:
        kernels = sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA
                      and not e.name.startswith(("Memcpy", "Memset")))
    else:
        kernels = sum(1 for e in events if e.name.startswith("aten::"))
    launches = sum(1 for e in events if e.name in LAUNCH_CALLS)
    return {"kernels_per_step": kernels, "launch_calls_per_step": launches if cuda else None,
            "counted": "CUDA kernels" if cuda else "aten ops (CPU)"}


def time_row(arch_name, kernel, args, step_kind: str, graphed: bool, dtype: str) -> dict:
    arch, G, D, loss = build(arch_name, kernel, args.image_size, args.seed, args.device,
                             args.options)
    d = arch.defaults
    images = torch.rand(max(args.batch * 4, 256), 1, args.image_size, args.image_size,
                        generator=torch.Generator().manual_seed(args.seed)) * 2 - 1
    batches = Batches(images.to(args.device), args.batch, args.seed)
    t0 = time.perf_counter()
    out = train(G, D, loss, batches, TrainSettings(
        steps=args.steps, warmup=args.warmup, z_dim=d.z_dim, g_lr=d.g_lr, d_lr=d.d_lr,
        betas=d.betas, device=args.device, dtype=dtype, seed=args.seed, step_kind=step_kind,
        cuda_graph=graphed))
    row = {"status": out.status, "first_step_s": out.first_step_s,
           "wall_s": time.perf_counter() - t0}
    row.update(summarize(out.step_seconds, args.batch))
    if graphed:
        row["cuda_graph"] = out.cuda_graph
        row["capture_s"] = out.capture_s
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--arch", default="sagan")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--kernels", default="eager-attn,sdpa-attn,triton-attn")
    ap.add_argument("--no-graph", action="store_true", help="eager rows only")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    args.options = {}
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / "step-table.csv"
    registry = get_registry()
    arch = registry.architectures[args.arch]
    kernels = [k for k in args.kernels.split(",") if k] if arch.uses_attention else [None]
    graph_modes = [False] if args.no_graph or not args.device.startswith("cuda") else [False, True]
    plan = [("textbook", arch.defaults.attention, "fp32", False)]
    plan += [("ganbench", k, dt, g) for dt in args.dtypes.split(",") for k in kernels
             for g in graph_modes]
    rows = []
    for step_kind, kernel, dtype, graphed in plan:
        row = {"arch": args.arch, "step": step_kind, "kernel": kernel or "", "dtype": dtype,
               "graph": graphed, "image_size": args.image_size, "batch": args.batch,
               "device": (torch.cuda.get_device_name() if args.device.startswith("cuda")
                          else "cpu")}
        label = f"{step_kind} {kernel} {dtype}{' graph' if graphed else ''}"
        try:
            row.update(time_row(args.arch, kernel, args, step_kind, graphed, dtype))
            if not args.no_profile:
                row.update(count_launches(args.arch, kernel, args, step_kind, graphed, dtype))
        except Exception as exc:  # one broken row must not cost the others
            row["status"] = "failed"
            row["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            traceback.print_exc()
        rows.append(row)
        df = pd.DataFrame(rows)
        base = df[(df["step"] == "textbook") & (df["status"] == "ok")]
        if len(base):
            df["speedup_vs_textbook"] = df["img_per_s"] / float(base["img_per_s"].iloc[0])
        df.to_csv(csv, index=False)
        print(f"{label}: {row.get('status')} {row.get('step_ms_median', float('nan')):.2f} ms "
              f"{row.get('error', '')}", flush=True)
    show = [c for c in ("step", "kernel", "dtype", "graph", "status", "step_ms_median",
                        "step_ms_p10", "step_ms_p90", "timed_steps", "img_per_s",
                        "speedup_vs_textbook", "kernels_per_step", "launch_calls_per_step",
                        "cuda_graph", "capture_s", "first_step_s") if c in df]
    table = df[show].to_markdown(index=False, floatfmt=".3g")
    (args.out / "step-table.md").write_text(
        f"# {args.arch} step table: {args.image_size}x{args.image_size}, batch {args.batch}, "
        f"{rows[0]['device']}\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
