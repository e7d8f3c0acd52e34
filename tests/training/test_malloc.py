"""``--malloc keep``: freed memory stays in the process (ganbench/training/malloc.py).

Each case runs in a fresh interpreter, since the setting belongs to the process: a 256 MiB
buffer is filled and freed; with glibc's defaults it was an mmap and the resident set falls
back, with ``keep`` it came from the heap and stays resident (so the next step's buffer needs
no page faults).
"""

import subprocess
import sys

import pytest

from ganbench.training import malloc

PROBE = """
import sys
from ganbench.training import malloc

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

print(malloc.apply(sys.argv[1]))
before = rss_mib()
buf = bytearray(256 * 2**20)  # zero-filled: every page touched
del buf
print(round(rss_mib() - before))
"""

glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="mallopt is glibc's; elsewhere the row says so")


def probe(choice: str) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, choice], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    return out[0], float(out[1])


@glibc_only
def test_default_returns_a_freed_large_buffer_to_the_kernel():
    state, kept_mib = probe("default")
    assert state == "default"
    assert kept_mib < 32


@glibc_only
def test_keep_keeps_a_freed_large_buffer_resident():
    state, kept_mib = probe("keep")
    assert state == "keep"
    assert kept_mib > 200


def test_default_after_keep_in_one_process_says_so(monkeypatch):
    monkeypatch.setattr(malloc, "_in_force", "keep")
    assert malloc.apply("default") == "keep (set earlier in this process)"


def test_unavailable_allocator_is_named_not_hidden(monkeypatch):
    monkeypatch.setattr(malloc, "_glibc", lambda: (None, "no glibc (test)"))
    assert malloc.apply("keep") == "default (keep unavailable: no glibc (test))"


def test_unknown_choice_is_refused():
    with pytest.raises(ValueError, match="malloc must be one of default, keep"):
        malloc.apply("jemalloc")
