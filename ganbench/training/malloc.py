"""``--malloc keep``: the C allocator keeps freed memory in the process instead of handing it
back to the kernel, so a training step's large buffers are not faulted in afresh every step.

Why: glibc serves every request of 128 KiB and more with its own ``mmap`` (the threshold then
adapts, up to 32 MiB) and returns trimmed heap tops to the kernel. A SAGAN step on the CPU
allocates and frees buffers of up to hundreds of MB each iteration (at 64x64, batch 64, eager
attention's (B, N, N) scores alone are 64 x 1024 x 1024 x 2 B = 128 MiB in bf16); each new
``mmap`` costs a page fault and a zeroed page per 4 KiB on first touch. Measured on the
project's 2-core VM (AMD EPYC, torch 2.13, 2026-12-06): the default ganbench step at 64x64,
batch 64 took 1208 ms with glibc's defaults and 870 ms with the settings below, and the
process's system time fell from 5.5 s to 1.0 s in an 11-step script (results/cpu-step-best:
1120 -> 927 ms through `ganbench run`). PyTorch's CPU tuning guide makes the same point with
jemalloc or tcmalloc; ``mallopt`` needs no extra library and can be set from inside the
worker, per combination.

The setting belongs to the process: a fresh worker per combination (the default) scopes it to
one row; with ``--in-process`` it stays in force for the rest of the process, and rows say so.
Only glibc has ``mallopt``; elsewhere the row says the setting is unavailable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Optional

MALLOC_CHOICES = ("default", "keep")
# mallopt parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
# Requests below this are served from the heap, never by mmap: 1 GiB covers every buffer of a
# step up to 128 px (the largest, eager attention's scores at 128 px and batch 64, is 2 GiB in
# bf16 and stays an mmap). glibc 2.36 (Debian 12) accepts it; a build that refuses it gets
# 32 MiB, the most its dynamic threshold would reach.
MMAP_THRESHOLDS = (2**30, 32 * 2**20)
# Free memory at the top of the heap is returned to the kernel only when more than this lies
# there: 2 GiB - 1, the most mallopt's C int takes, more than a step frees at once below 128 px.
TRIM_THRESHOLD = 2**31 - 1
# Extra heap requested from the kernel per sbrk, so the heap grows in large steps.
TOP_PAD = 64 * 2**20

_in_force: Optional[str] = None  # what this process set, if anything


def apply(choice: str) -> str:
    """Put ``choice`` ("default" or "keep") in force for this process; return what the row
    records: "default", "keep", "keep (set earlier in this process)" when a later row asks for
    the default after "keep" was set (glibc cannot restore its adaptive behaviour), or
    "default (keep unavailable: <why>)"."""
    global _in_force
    if choice not in MALLOC_CHOICES:
        raise ValueError(f"malloc must be one of {', '.join(MALLOC_CHOICES)}, got {choice!r}")
    if choice == "default":
        return "keep (set earlier in this process)" if _in_force == "keep" else "default"
    libc, why = _glibc()
    if libc is None:
        return f"default (keep unavailable: {why})"
    ok = any(libc.mallopt(_M_MMAP_THRESHOLD, value) == 1 for value in MMAP_THRESHOLDS) and \
        all(libc.mallopt(param, value) == 1 for param, value in
            ((_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD)))
    if not ok:
        return "default (keep unavailable: mallopt refused a setting)"
    _in_force = "keep"
    return "keep"


def _glibc():
    """(the C library with mallopt, None) or (None, why not)."""
    if not sys.platform.startswith("linux"):
        return None, f"mallopt is glibc's, and this is {sys.platform}"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # musl and others lack it
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError) as exc:
        return None, f"no glibc ({exc})"
    return libc, None
