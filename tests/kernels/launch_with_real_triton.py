"""The pre-bound launcher (kernels/attention/launch.py) against real Triton, on a machine
without a GPU. Run by tests/kernels/test_launch.py in a fresh process, because Triton decides
between its compiler and its interpreter when ``@triton.jit`` decorates (import time) and the
kernel tests import the kernels for the interpreter.

What is real here: the kernels are ``JITFunction``s; Triton's own argument binding,
specialization, cache lookup and compilation to an sm_90 cubin (ptxas included) run on the
first launch of each configuration; ``launch`` binds the compiled kernel and calls its
``run`` directly afterwards, exactly as on a GPU.

What stands in for the GPU (nothing else can run without one): Triton's active driver. It
reports device 0, a fixed stream and an sm_90 target; its ``load_binary`` (which would load the
cubin into a CUDA context) returns a dummy handle; and its launcher class, which on a GPU
hands the arguments to ``cuLaunchKernel``, records them and runs the same kernel source on them
under Triton's interpreter. So a launch, bound or not, computes on the CPU with precisely the
arguments that would have reached the GPU: if the bound path dropped, reordered or mis-typed an
argument, the numbers would show it.

Prints one JSON object (see ``main``); exits non-zero if anything raised.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

import torch
from triton.runtime.interpreter import InterpretedFunction, _patch_lang
from triton.runtime.jit import JITFunction

PACKAGE = "ganbench.kernels.attention"


class _Twin(InterpretedFunction):
    """An interpreted twin of a jit helper. Triton's InterpretedFunction leaves triton.language
    patched for the interpreter after a device-function call (harmless when everything is
    interpreted); here the compiler must find it unpatched afterwards, so undo it on return."""

    def __call__(self, *args, **kwargs):
        scope = _patch_lang(self.fn)
        try:
            return self.rewrite()(*args, **kwargs)
        finally:
            scope.restore()


@contextlib.contextmanager
def _interpreted(modules):
    """Every ``@triton.jit`` function that ``modules`` hold (the kernel files' helpers, and
    triton.language's own jit functions such as tl.sum and tl.zeros) swapped for an
    interpreted twin while the block runs, so a kernel's source runs under the interpreter in
    a process whose kernels are built for the compiler."""
    twins, saved = {}, []
    for module in modules:
        for name, value in list(vars(module).items()):
            if isinstance(value, JITFunction):
                if id(value) not in twins:  # by id: hashing a JITFunction walks its callees
                    twins[id(value)] = _Twin(value.fn)
                twin = twins[id(value)]
                saved.append((module, name, value))
                setattr(module, name, twin)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def _install_stub_driver(log: list) -> None:
    """Triton's active driver replaced by the stand-in the module docstring describes."""
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.runtime import driver

    class Utils:
        def load_binary(self, name, kernel, shared, device):
            assert kernel[:4] == b"\x7fELF", "ptxas should have produced an ELF cubin"
            return ("module", f"function:{name}", 64, 0, 1024)  # regs, spills, max threads

        def get_device_properties(self, device):
            # H100: 227 KB of shared memory per block (opt-in); a kernel that needs more
            # raises OutOfResources here, as it would on the GPU
            return {"max_shared_mem": 232448, "multiprocessor_count": 132}

        def unload_module(self, module):
            pass

    class InterpretingLauncher:
        """Stands in for the CUDA launcher of one compiled kernel."""

        def __init__(self, src, metadata):
            self.kernel = src.fn  # the JITFunction that was compiled
            self.modules = [tl, tl.standard] + [m for name, m in sys.modules.items()
                                                if name.startswith(PACKAGE + ".")]

        def __call__(self, grid_x, grid_y, grid_z, stream, function, packed_metadata,
                     launch_metadata, enter_hook, exit_hook, *args):
            log.append(dict(kernel=self.kernel.fn.__name__,
                            head=(grid_x, grid_y, grid_z, stream, function, packed_metadata),
                            tail=(launch_metadata, enter_hook, exit_hook), args=args))
            if enter_hook is not None:
                enter_hook(launch_metadata)
            with _interpreted(self.modules):
                InterpretedFunction(self.kernel.fn)[(grid_x, grid_y, grid_z)](*args)
            if exit_hook is not None:
                exit_hook(launch_metadata)

    class StubDriver:
        utils = Utils()
        launcher_cls = InterpretingLauncher

        def get_current_device(self):
            return 0

        def get_current_stream(self, device=None):
            return 7

        def get_current_target(self):
            return GPUTarget("cuda", 90, 32)

        def get_active_torch_device(self):
            return torch.device("cpu")

    driver.set_active(StubDriver())


def _describe(arg):
    """An argument as comparable across calls: tensors by dtype, shape and strides."""
    if isinstance(arg, torch.Tensor):
        return ["tensor", str(arg.dtype), list(arg.shape), list(arg.stride())]
    return arg if isinstance(arg, (int, float, bool, str, type(None))) else repr(arg)


def _max_error(got, want) -> float:
    return max(((g.double() - w).abs().max() / w.abs().max()).item() for g, w in zip(got, want))


def main() -> None:
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        sys.exit("launch_with_real_triton.py: unset TRITON_INTERPRET (it checks the compiler's "
                 "path)")
    log: list = []
    _install_stub_driver(log)
    import triton

    from ganbench.kernels.attention import launch as launch_module
    from ganbench.kernels.attention import triton_attn
    from ganbench.kernels.attention.reference import attend_reference

    assert not launch_module.INTERPRETING
    dispatches = []  # one entry per pass through Triton's JIT (bind, key, cache lookup)
    jit_run = JITFunction.run

    def counting_run(self, *args, **kwargs):
        dispatches.append(self.fn.__name__)
        return jit_run(self, *args, **kwargs)

    JITFunction.run = counting_run

    # SAGAN's layout (strides (C*N, 1, N)), N = 63: partial tiles in every kernel
    torch.manual_seed(0)
    q, k, v, do = triton_attn.sagan_layout_inputs(2, 63, 8, 24, torch.float32, "cpu")
    q64, k64, v64 = (t.double().requires_grad_() for t in (q, k, v))
    ref_o = attend_reference(q64, k64, v64)
    ref_o.backward(do.double())
    ref = (ref_o.detach(), q64.grad, k64.grad, v64.grad)

    def fwd_bwd(options):
        o, lse = triton_attn.forward(q, k, v, options)
        return (o, *triton_attn.backward(q, k, v, o, lse, do, options))

    report = {"triton": triton.__version__, "cases": {}}
    for label, variant, backward in (("small-n", "small-n", "auto"),
                                     ("one-launch", "tiled", "one-launch"),
                                     ("two-kernel", "tiled", "two-kernel"),
                                     ("atomic", "tiled", "atomic")):
        case = {}
        for run in ("unbound", "first", "bound"):
            options = triton_attn.check_options(variant, backward, prebind=run != "unbound")
            del dispatches[:], log[:]
            out = fwd_bwd(options)
            case[run] = dict(dispatches=list(dispatches), launches=[e["kernel"] for e in log],
                             error=_max_error(out, ref), out=out,
                             calls=[dict(head=[_describe(a) for a in e["head"]],
                                         tail=[_describe(a) for a in e["tail"]],
                                         hooks_empty=[getattr(h, "calls", None) == []
                                                      for h in e["tail"][1:]],
                                         args=[_describe(a) for a in e["args"]])
                                    for e in log])
        for run in ("first", "bound"):  # a launch is a pure function of its arguments
            case[run]["equal_to_unbound"] = all(
                torch.equal(a, b) for a, b in zip(case[run]["out"], case["unbound"]["out"]))
        for run in case.values():
            run.pop("out")
        report["cases"][label] = case

    # With a launch hook installed (a profiler), every launch takes Triton's path and the
    # hook sees it.
    seen = []
    hook = seen.append
    triton.knobs.runtime.launch_enter_hook.add(hook)
    try:
        del dispatches[:]
        fwd_bwd(triton_attn.check_options("small-n"))
    finally:
        triton.knobs.runtime.launch_enter_hook.remove(hook)
    report["with_hook"] = dict(dispatches=list(dispatches), hook_calls=len(seen))

    compiled = [kernel for entry in launch_module._BOUND.values() for kernel in entry[:1]]
    report["bound_kernels"] = sorted({c.name for c in compiled})
    report["cubins"] = all(c.asm["cubin"][:4] == b"\x7fELF" for c in compiled)
    report["ptx_targets"] = sorted({line.split()[1] for c in compiled
                                    for line in c.asm["ptx"].splitlines()
                                    if line.startswith(".target")})
    print(json.dumps(report))


if __name__ == "__main__":
    main()
