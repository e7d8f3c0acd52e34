"""Host time per triton-attn call, measured on a CPU with the GPU work stubbed out.

At SAGAN's sizes a call is launch-bound (NOTES.md), so the Python/C++ work around the kernels
matters: autograd, our launchers, and Triton's own dispatch (binding arguments, computing the
specialization key, looking the compiled kernel up). This script measures all of it except
the driver's launch itself, on any machine: Triton's active driver is replaced by a stand-in
(device 0, stream 0, an sm_90 target) and its compiler by one that returns a kernel whose
launcher does nothing, so every call takes Triton's real dispatch path up to the launch.

It compares, per fwd+bwd of attend_triton (autograd.Function route), ``prebind=False``
(``kernel[grid](...)`` each time) with ``prebind=True`` (the compiled kernel bound once per
configuration, its launcher called directly), for the small-n and tiled variants, as medians
over many calls, interleaved so both see the same machine load.

Run: ``python -m ganbench.kernels.attention.host_cost`` (without TRITON_INTERPRET).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


class _StubKernel:
    """What triton.compile returns here: a kernel whose launch does nothing."""

    function, packed_metadata, metadata = 0, None, None

    def __init__(self, name):
        self.name = name

    def launch_metadata(self, grid, stream, *args):
        return None

    def run(self, *args):
        return None

    def _init_handles(self):
        return None


def install_stubs() -> None:
    """Point Triton at a driver and compiler that launch nothing (see the module docstring)."""
    import triton.compiler
    from triton.backends.compiler import GPUTarget
    from triton.runtime import driver

    class StubDriver:
        def get_current_device(self):
            return 0

        def get_current_stream(self, device=None):
            return 0

        def get_current_target(self):
            return GPUTarget("cuda", 90, 32)

        def get_active_torch_device(self):
            import torch
            return torch.device("cpu")

    driver.set_active(StubDriver())
    triton.compiler.compile = lambda src, target=None, options=None, **kw: _StubKernel(src.name)


def measure(calls: int = 300, rounds: int = 5) -> list[dict]:
    import torch

    from ganbench.kernels.attention import triton_attn

    rows = []
    for label, N, Dqk, Dv in (("small-n", 256, 16, 128), ("tiled", 1024, 8, 64)):
        # batch 1: the stubbed launches do no work, and batch only sizes the (untouched)
        # outputs; autograd.grad, so no gradient is accumulated into the inputs on the CPU
        q, k, v, do = triton_attn.sagan_layout_inputs(1, N, Dqk, Dv, torch.float32, "cpu")
        leaves = [t.requires_grad_() for t in (q, k, v)]

        def call(options):
            torch.autograd.grad(triton_attn.attend_triton(*leaves, options=options), leaves, do)

        times = {False: [], True: []}
        for _ in range(rounds):
            for prebind in (False, True):
                options = triton_attn.check_options(prebind=prebind)
                for _ in range(20):  # warm: binds, caches
                    call(options)
                start = time.perf_counter()
                for _ in range(calls):
                    call(options)
                times[prebind].append((time.perf_counter() - start) / calls * 1e6)
        for prebind in (False, True):
            rows.append(dict(variant=label, N=N, prebind=prebind,
                             us_per_fwd_bwd=statistics.median(times[prebind]),
                             spread=f"{min(times[prebind]):.1f}-{max(times[prebind]):.1f}"))
    return rows


def main(argv=None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("host_cost: unset TRITON_INTERPRET (the interpreter has no dispatch to measure)",
              file=sys.stderr)
        return 2
    install_stubs()
    from ganbench.kernels.attention import triton_attn

    triton_attn.why_triton_unavailable = lambda device: None  # CPU tensors stand in for CUDA ones
    for row in measure():
        print(f"{row['variant']:<8} N={row['N']:<5} prebind={row['prebind']!s:<5} "
              f"{row['us_per_fwd_bwd']:7.1f} us per fwd+bwd (rounds {row['spread']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
