"""CUDA-graph capture, shared by the graphed training step and the attention bench.

Two pieces, each following torch's "CUDA Graphs" notes:

- :func:`on_side_stream`: run a call on a fresh side stream ordered after the current one.
  Warm-up calls before a capture run there, so lazy initialisation (cuBLAS workspaces,
  autograd's per-stream state) happens outside the capture, on a stream other than the
  default one (capture cannot use the legacy default stream).
- :func:`capture`: record one call into a graph and return what the call returned. When the
  call itself raises, *its* exception is raised: the failed call also invalidates the capture,
  and the error ``capture_end`` then raises would hide the cause.

``graph`` is a ``torch.cuda.CUDAGraph`` or, in CPU tests, a stand-in with a ``capture()``
context manager (``tests/training/test_steps.py``'s ``ReplayGraph``).
"""

from __future__ import annotations

from typing import Callable, TypeVar

import torch

T = TypeVar("T")


def on_side_stream(fn: Callable[[], T], device: str) -> T:
    """``fn()`` on a new CUDA stream that waits for the current one; the current stream then
    waits for it, so work after this call sees ``fn``'s results. Off CUDA: just ``fn()``."""
    if not device.startswith("cuda"):
        return fn()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out = fn()
    torch.cuda.current_stream().wait_stream(stream)
    return out


def capture(graph, fn: Callable[[], T], stream=None) -> T:
    """Record one call of ``fn`` into ``graph`` (on ``stream``: None lets torch pick a side
    stream) and return ``fn``'s result, whose tensors are the graph's static outputs.

    Capture mode "thread_local": an unrelated thread that allocates during the capture (a
    progress printer, a queue feeder) does not invalidate it, as the default "global" would.
    Raises ``fn``'s own exception when ``fn`` fails, else the capture's.
    """
    if isinstance(graph, torch.cuda.CUDAGraph):
        context = torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local")
    else:
        context = graph.capture()
    failure, out = None, None
    try:
        with context:
            try:
                out = fn()
            except Exception as exc:  # re-raised below, after the capture is closed
                failure = exc
    except Exception:
        if failure is None:
            raise
    if failure is not None:
        raise failure
    return out
