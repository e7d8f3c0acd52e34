"""The pre-bound launcher (kernels/attention/launch.py): when it binds, when it calls the bound
kernel, what it appends (with a stand-in kernel), and that attend_triton's option reaches it.
"""

import functools
import types

import pytest
import torch

from ganbench.kernels.attention import launch as launch_module
from ganbench.kernels.attention import triton_attn


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
