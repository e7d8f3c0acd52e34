"""The pre-bound launcher (kernels/attention/launch.py).

Three levels, from cheapest to most real:

* its bookkeeping (when it binds, when it calls the bound kernel, what it appends), with a
  stand-in kernel: no Triton involved;
* on a CPU, against real Triton 3.9 in a fresh process (launch_with_real_triton.py): real
  JITFunctions, real binding, specialization and compilation to an sm_90 cubin; only the
  driver is a stand-in, whose launcher runs each launch's arguments under the interpreter, so
  the bound launches are compared with the unbound ones and the float64 reference;
* on CUDA, everything real: bound and unbound launches give the same answers, a bound launch
  skips Triton's dispatch, and it can be captured in a CUDA graph.

What only the CUDA test covers: cuLaunchKernel itself (argument marshalling in Triton's C
launcher, which needs libcuda to build), the cubin loaded and run on a device, the real current
stream, and graph capture.
"""

import functools
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from ganbench.kernels.attention import launch as launch_module
from ganbench.kernels.attention import triton_attn
from ganbench.kernels.attention.reference import attend_reference

KERNELS = {"small-n": ("small-n", "auto"), "one-launch": ("tiled", "one-launch"),
           "two-kernel": ("tiled", "two-kernel"), "atomic": ("tiled", "atomic")}


class _FakeCompiled:
    """What Triton's JIT returns from a launch: records direct launcher calls."""

    function, packed_metadata = "function-handle", "packed"

    def __init__(self):
        self.calls = []

    def run(self, *args):
        self.calls.append(args)


class _FakeKernel:
    """A @triton.jit stand-in: ``kernel[grid](*args, **meta)`` compiles (once per distinct
    specialization, as Triton would) and returns the compiled kernel."""

    arg_names = ["A", "B", "n", "BLOCK", "FLAG"]

    def __init__(self):
        self.jit_calls = []
        self.compiled = _FakeCompiled()

    def __getitem__(self, grid):
        def launch(*args, **meta):
            self.jit_calls.append((grid, args, meta))
            return self.compiled
        return launch


def test_binds_once_per_configuration(monkeypatch):
    """The bookkeeping: the first call goes through Triton's JIT (which compiles and
    launches) and every later call with the same specialization (int values, dtypes, 16-byte
    alignment, constexprs, device) calls the compiled launcher directly, constexprs appended in
    the kernel's argument order; anything that changes the specialization binds anew."""
    monkeypatch.setattr(launch_module, "INTERPRETING", False)
    monkeypatch.setattr(launch_module, "_BOUND", {})
    current = {"device": 0}
    fake_driver = types.SimpleNamespace(active=types.SimpleNamespace(
        get_current_device=lambda: current["device"], get_current_stream=lambda device: 1234))
    monkeypatch.setattr(launch_module, "driver", fake_driver)
    launch = launch_module.launch
    kernel = _FakeKernel()
    a, b = torch.zeros(64), torch.zeros(64)
    meta = dict(BLOCK=16, FLAG=True, num_warps=4)
    launch(kernel, (3, 2), (a, b), (64,), meta, prebind=True)
    launch(kernel, (3, 2), (a, b), (64,), meta, prebind=True)
    assert len(kernel.jit_calls) == 1
    assert kernel.compiled.calls == [(3, 2, 1, 1234, "function-handle", "packed", None, None,
                                      None, a, b, 64, 16, True)]
    launch(kernel, (3, 2), (a, b), (65,), meta, prebind=True)     # another int
    launch(kernel, (3, 2), (a[1:], b), (64,), meta, prebind=True)  # misaligned
    launch(kernel, (3, 2), (a[1:], b), (64,), meta, prebind=True)  # (never bound)
    launch(kernel, (3, 2), (a, b), (64,), dict(meta, FLAG=False), prebind=True)
    launch(kernel, (3, 2), (a, b), (64,), meta, prebind=False)    # option off
    assert len(kernel.jit_calls) == 6 and len(kernel.compiled.calls) == 1
    launch(kernel, (3, 2), (a, b), (65,), meta, prebind=True)     # bound above
    assert len(kernel.jit_calls) == 6 and len(kernel.compiled.calls) == 2
    current["device"] = 1                                 # another GPU: its own compiled handle
    launch(kernel, (3, 2), (a, b), (64,), meta, prebind=True)
    assert len(kernel.jit_calls) == 7 and len(kernel.compiled.calls) == 2
    monkeypatch.setattr(launch_module, "INTERPRETING", True)                  # interpreter
    launch(kernel, (3, 2), (a, b), (64,), meta, prebind=True)
    assert len(kernel.jit_calls) == 8 and len(kernel.compiled.calls) == 2


@pytest.mark.slow
def test_bound_launches_with_real_triton_on_the_cpu():
    """launch_with_real_triton.py runs every variant's forward + backward three times, in
    SAGAN's layout at N = 63 (partial tiles everywhere): unbound (prebind off), binding (first
    call, prebind on) and bound (second call). Every launch's arguments reach the stand-in
    launcher and are executed by the interpreter.

    Time: the first run compiles six kernel configurations (20-30 s on 2 shared cores);
    Triton's on-disk cache makes later runs ~6 s.
    """
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: test_bound_launches_on_cuda runs the real thing")
    script = Path(__file__).with_name("launch_with_real_triton.py")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)

    # real compilation: an ELF cubin and PTX for the H100's architecture, for all 4 kernels
    assert report["cubins"] and report["ptx_targets"] == ["sm_90a"]
    assert report["bound_kernels"] == ["_small_bwd_kernel", "_small_fwd_kernel",
                                       "_tiled_bwd_kernel", "_tiled_fwd_kernel"]
    for name, case in report["cases"].items():
        unbound, first, bound = case["unbound"], case["first"], case["bound"]
        # the same launches each time; Triton's dispatch for every unbound launch, for a
        # binding launch only where no earlier case bound that configuration, never after
        assert unbound["launches"] == first["launches"] == bound["launches"], name
        assert unbound["dispatches"] == unbound["launches"], name
        assert set(first["dispatches"]) <= set(first["launches"]), name
        assert bound["dispatches"] == [], name
        # the bound call hands the launcher what Triton's own call hands it: grid, stream,
        # function, packed metadata and every argument (tensors by dtype, shape, strides),
        # then None for the launch metadata and both hooks where Triton passes its (empty)
        # hook chains, which the C launcher treats alike
        for ours, triton_call in zip(bound["calls"], unbound["calls"]):
            assert ours["head"] == triton_call["head"], name
            assert ours["args"] == triton_call["args"], name
            assert ours["tail"] == [None, None, None], name
            assert triton_call["hooks_empty"] == [True, True], name
        # and so the same numbers, which match the float64 reference
        assert first["equal_to_unbound"] and bound["equal_to_unbound"], name
        assert max(run["error"] for run in (unbound, first, bound)) < 2e-5, name
    # a launch hook (a profiler) sends every launch through Triton's path, where it is seen
    assert report["with_hook"] == {"dispatches": ["_small_fwd_kernel", "_small_bwd_kernel"],
                                   "hook_calls": 2}


@pytest.mark.cuda
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_bound_launches_on_cuda(kernel, make_inputs, float64_reference, skip_unless_runnable,
                                monkeypatch):
    """On a GPU: prebind on and off give the same output and gradients (bitwise, except the
    atomic backward's dQ, whose fp32 adds land in any order), both match the float64 reference,
    a bound call does not enter Triton's JIT, and a bound forward replays in a CUDA graph."""
    skip_unless_runnable("cuda")
    from triton.runtime.jit import JITFunction

    q, k, v, do = make_inputs(2, 63, 8, 24, torch.float32, "cuda")
    ref_o, ref_grads = float64_reference(q, k, v, do)

    def fwd_bwd(prebind):
        options = triton_attn.check_options(*KERNELS[kernel], prebind=prebind)
        o, lse = triton_attn.forward(q, k, v, options)
        return (o, *triton_attn.backward(q, k, v, o, lse, do, options))

    unbound = fwd_bwd(False)
    first = fwd_bwd(True)
    dispatches = []  # passes through Triton's JIT (bind, key, cache lookup)
    jit_run = JITFunction.run

    def counting_run(self, *args, **kwargs):
        dispatches.append(self.fn.__name__)
        return jit_run(self, *args, **kwargs)

    monkeypatch.setattr(JITFunction, "run", counting_run)
    bound = fwd_bwd(True)
    torch.cuda.synchronize()
    assert dispatches == []
    exact = [True, kernel != "atomic", True, True]  # o, dq, dk, dv
    for out in (first, bound):
        for got, want, bitwise in zip(out, unbound, exact):
            if bitwise:
                assert torch.equal(got, want)
            else:
                torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)
    for got, want in zip(bound, (ref_o, *ref_grads)):
        torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=2e-5)

    options = triton_attn.check_options(*KERNELS[kernel], prebind=True)
    static_q = q.clone()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        graph_o, _ = triton_attn.forward(static_q, k, v, options)
    static_q.copy_(q * 0.5)
    graph.replay()
    torch.cuda.synchronize()
    assert dispatches == []
    torch.testing.assert_close(graph_o.double(), attend_reference(
        (q * 0.5).double(), k.double(), v.double()), atol=2e-5, rtol=2e-5)


def test_attend_triton_threads_prebind_through(monkeypatch, make_inputs,
                                               skip_unless_runnable):
    """attend_triton's ``prebind`` option reaches every launch (forward and backward)."""
    skip_unless_runnable("cpu")
    seen = []
    real = launch_module.launch

    def spy(kernel, grid, pointers, ints, meta, prebind):
        seen.append(prebind)
        return real(kernel, grid, pointers, ints, meta, prebind)

    from ganbench.kernels.attention import small_n, tiled_backward, tiled_forward
    for module in (small_n, tiled_forward, tiled_backward):
        monkeypatch.setattr(module, "launch", spy)
    q, k, v, do = make_inputs(1, 20, 8, 16, torch.float32, "cpu")
    for prebind in (False, True):
        for variant in ("small-n", "tiled"):
            leaves = [t.clone().requires_grad_() for t in (q, k, v)]
            attend = functools.partial(triton_attn.attend_triton, variant=variant,
                                       prebind=prebind)
            attend(*leaves).backward(do)
    assert seen == [False] * 4 + [True] * 4
