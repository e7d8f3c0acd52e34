"""What ``bench attention`` shows on stderr while it works (stdout is the table or the JSON).

- On a terminal: a tqdm bar over the rows whose description is the row being timed and what
  it is doing (warm-up, timing, CUDA graph, accuracy), redrawn every second so the elapsed
  time moves during a long compile; finished rows are printed above it.
- Elsewhere (a pipe, a CI log): plain lines, one when the bench starts, one per finished row,
  and a "still ..." line whenever nothing was printed for :data:`HEARTBEAT_S` seconds, so a
  log is never silent for longer than that (a torch.compile warm-up can take a minute).

Standard library only at import (tqdm is imported on a terminal only): the command builds
this before it imports torch, so the first line appears at once.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from datetime import datetime
from typing import Optional, TextIO

HEARTBEAT_S = 30.0  # the longest a piped log stays silent (issue 22: it was silent ~70 s)
REDRAW_S = 1.0      # a terminal's bar is redrawn this often while a row is busy


def row_line(row: dict) -> str:
    """One finished row: kernel, site, pass, median (p10-p90, count), graph median, error."""
    from ganbench.results.table import sig  # standard library only, like this module

    def ms(value) -> str:  # 3 significant figures, never scientific: 1234 ms, 0.0512 ms
        return sig(value, 3) or "?"

    text = (f"{row['kernel']} {row['site']} {row.get('pass', row.get('pass_'))}: "
            f"{ms(row['median_ms'])} ms (p10-p90 {ms(row['p10_ms'])}-{ms(row['p90_ms'])}, "
            f"n {row['count']})")
    graph = row.get("graph_median_ms")
    if graph is not None and not math.isnan(graph):
        text += f", graph {ms(graph)} ms"
    err = row.get("rel_err_max")
    if err is not None and not math.isnan(err):
        text += f", err {err:.1e}"
    return text + f", {row['status']}"


class BenchProgress:
    """Thread-safe progress sink. ``quiet``: shows nothing (the library default).
    ``terminal``: None asks ``stream.isatty()``. Use as a context manager or call
    :meth:`close`: it stops the background redraw/heartbeat thread."""

    def __init__(self, stream: Optional[TextIO] = None, terminal: Optional[bool] = None,
                 quiet: bool = False, heartbeat_s: float = HEARTBEAT_S):
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.terminal = (not quiet) and (self.stream.isatty() if terminal is None else terminal)
        self.heartbeat_s = heartbeat_s
        self.lock = threading.RLock()
        self.total = 0
        self.done = 0
        self.activity = "starting"
        self.activity_since = time.monotonic()
        self.last_line = time.monotonic()
        self.bar = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        if not quiet:
            self._thread = threading.Thread(target=self._watch, name="bench-progress",
                                            daemon=True)
            self._thread.start()

    # -- events ------------------------------------------------------------------------------
    def line(self, text: str) -> None:
        """A line of its own (start, skips, warnings), timestamped when piped."""
        if self.quiet:
            return
        with self.lock:
            if self.bar is not None:
                self.bar.write(text, file=self.stream)
            else:
                stamp = datetime.now().strftime("%H:%M:%S")
                print(f"[{stamp}] {text}", file=self.stream, flush=True)
            self.last_line = time.monotonic()

    def start(self, total: int, text: str) -> None:
        """The bench knows its rows: say what it will do and, on a terminal, open the bar."""
        with self.lock:
            self.total = total
            self.line(text)
            if self.terminal and total:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="row", file=self.stream,
                                dynamic_ncols=True, leave=False)

    def doing(self, activity: str) -> None:
        """What the bench is busy with now (a row and its phase, or a set-up step)."""
        with self.lock:
            self.activity = activity
            self.activity_since = time.monotonic()
            if self.bar is not None:
                self.bar.set_description_str(activity, refresh=True)

    def row(self, row: dict) -> None:
        """A finished row: a line, and the bar advances."""
        with self.lock:
            self.done += 1
            width = len(str(self.total))
            self.line(f"[{self.done:>{width}}/{self.total}] {row_line(row)}")
            if self.bar is not None:
                self.bar.update(1)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self.lock:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    def __enter__(self) -> "BenchProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the background thread ---------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.wait(min(REDRAW_S, self.heartbeat_s)):
            with self.lock:
                now = time.monotonic()
                if self.bar is not None:
                    self.bar.refresh()
                elif now - self.last_line >= self.heartbeat_s:  # piped, or before the bar
                    busy = now - self.activity_since
                    self.line(f"still {self.activity} ({busy:.0f} s so far)")
