"""The one way the attention kernels are launched: :func:`launch`, pre-bound where it can be.

``kernel[grid](*args, **meta)`` makes Triton's JIT bind every argument, compute the
specialization key (dtype, 16-byte alignment and ``== 1`` for each pointer and int), hash it
and look the compiled kernel up, on every call. At SAGAN's sizes a call is launch-bound
(NOTES.md, section 1), so :func:`launch` does that once per configuration: it keys on what
decides the specialization here (each int's value, each tensor's dtype, whether all pointers
are 16-byte aligned, the constexprs and launch options, the grid's trailing dims, the current
device) and afterwards calls the compiled kernel's launcher directly, on the current device and
stream (so CUDA-graph capture still works). Measured on the CPU with launches stubbed
(host_cost.py): 15-40 us of Triton dispatch saved per launch (NOTES.md, section 2).

It takes Triton's ordinary path under the interpreter (which compiles nothing to bind), when
a launch hook is installed (profilers see every launch), for a misaligned tensor (Triton
specializes on alignment, and a misaligned view is rare enough not to cache) and with
``prebind=False``.

The direct call repeats what Triton 3.9's ``JITFunction.run`` does after its cache lookup:
``compiled.run(grid_x, grid_y, grid_z, stream, compiled.function, compiled.packed_metadata,
launch_metadata, enter_hook, exit_hook, *every_argument_including_constexprs)``, with
``None`` for the launch metadata and both hooks (nothing is installed: checked above).
tests/kernels/test_launch.py holds it to that against real Triton.
"""

from __future__ import annotations

from ganbench.kernels.attention.triton_common import INTERPRETING, driver, knobs

# (kernel, device, grid[1:], ints, dtypes, constexprs and options) -> (compiled, constexpr values)
_BOUND: dict = {}


def _launch_hooks_installed() -> bool:
    """True when a launch hook is set (Triton >= 3.6 keeps an empty HookChain otherwise)."""
    hooks = (knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook)
    return any(h is not None and getattr(h, "calls", True) for h in hooks)


def launch(kernel, grid: tuple, pointers: tuple, ints: tuple, meta: dict, prebind: bool):
    """``kernel[grid](*pointers, *ints, **meta)``, pre-bound where possible (module docstring).

    ``pointers`` are the kernel's tensor arguments and ``ints`` its integer ones, in its
    parameter order (every kernel here takes its pointers first, then ints, then constexprs);
    ``meta`` holds every constexpr by name plus launch options (num_warps, num_stages, ...).
    Returns what Triton returns (the compiled kernel on a GPU).
    """
    if not prebind or INTERPRETING or _launch_hooks_installed():
        return kernel[grid](*pointers, *ints, **meta)
    aligned = not any(t.data_ptr() & 15 for t in pointers)
    device = driver.active.get_current_device()  # a compiled handle belongs to one device
    key = (kernel, device, grid[1:], ints, tuple(t.dtype for t in pointers), aligned,
           tuple(meta.items()))
    bound = _BOUND.get(key) if aligned else None
    if bound is None:
        compiled = kernel[grid](*pointers, *ints, **meta)  # compiles (or finds) and launches
        if aligned:
            n_args = len(pointers) + len(ints)
            _BOUND[key] = (compiled, tuple(meta[name] for name in kernel.arg_names[n_args:]))
        return compiled
    compiled, constexprs = bound
    compiled.run(grid[0], grid[1] if len(grid) > 1 else 1, grid[2] if len(grid) > 2 else 1,
                 driver.active.get_current_stream(device), compiled.function,
                 compiled.packed_metadata, None, None, None, *pointers, *ints, *constexprs)
    return compiled
