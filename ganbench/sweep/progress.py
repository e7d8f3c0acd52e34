"""What a run shows while it works: progress, notes and warnings, all on stderr.

stdout carries results only (the table and the run folder); everything here goes to stderr, so
``ganbench run ... > table.md`` captures exactly the table.

- In a Jupyter kernel with ipywidgets: the same bars as tqdm's notebook widgets (what
  ``tqdm.auto`` picks); in a kernel without ipywidgets, the plain lines below.
- On a terminal: tqdm bars, one for the sweep ("combination k of n", elapsed and the run's
  ETA, the only ETA shown) and one per running combination (its step and phase; its losses
  too when the terminal has room, so the bar keeps at least :data:`MIN_BAR` characters).
- Elsewhere (a pipe, a CI log): plain timestamped lines, at every phase change of a combination
  (starting worker, training, metrics, writing, done) and every ~10% of its steps, each with the
  sweep's position and ETA, and at least every :data:`HEARTBEAT_S` seconds while a combination
  runs (a slow step can take minutes to reach the next 10%).
- Notes and Python warnings: each distinct text once per run (workers send theirs here).
- ``--quiet``: none of the above; the CLI still prints where the table is.

The ETA is the elapsed time scaled by the work left: finished trials count 1, running ones
their step fraction (with ``--budget``, the share of the budget spent). It assumes the trials
left cost what the finished ones did. A trial is a combination under one seed; its name here
is its file stem (``dcgan+bce``, or ``dcgan+bce.seed3`` with several seeds).
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import datetime, timezone
from typing import Optional, TextIO

PLAIN_LINES = 10  # plain mode: a step line each time a combination passes another 10%
HEARTBEAT_S = 30.0  # plain mode: the longest a running combination goes without a line
MIN_BAR = 10        # terminal: the fewest characters a bar keeps (losses go first)
LOSSES_WIDTH = 27   # " d_loss=1.047 g_loss=0.256"
NAME_WIDTH = 30     # a combination's name in its bar is cut to this
# The per-combination bar: no rate and no ETA of its own (the sweep's bar has the run's ETA;
# two ETAs that disagree were confusing).
COMBO_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{postfix}"
OVERALL_FORMAT = "{desc}: {n_fmt}/{total_fmt} |{bar}| {elapsed}{postfix}"
BUDGET_FORMAT = "{desc}: step {n_fmt}{postfix}"  # --budget: no step count to fill a bar to


def notebook_bar_class():
    """tqdm's notebook bar when this process is a Jupyter kernel and ipywidgets is installed
    (tqdm.auto's own test), else None. A kernel's stderr is no terminal, and without widgets
    the plain lines read better there than carriage-return bars."""
    ipython = sys.modules.get("IPython")  # never imported here: only a kernel has it loaded
    if ipython is None:
        return None
    try:
        shell = ipython.get_ipython()
        if shell is None or "IPKernelApp" not in shell.config:
            return None
        import ipywidgets  # noqa: F401  (tqdm.notebook would warn and draw text without it)
        from tqdm.notebook import tqdm as notebook_tqdm
    except Exception:  # an IPython too old or broken to ask: plain lines
        return None
    return notebook_tqdm


def _format_duration(seconds: Optional[float]) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class _Combo:
    def __init__(self, name: str, index: int, steps: Optional[int]):
        self.name, self.index, self.steps = name, index, steps
        self.step = 0
        self.fraction = 0.0  # of its steps, or of its wall-time budget
        self.phase = "queued"
        self.last_tenth = 0
        self.bar = None
        self.started = time.monotonic()
        self.last_line = self.started  # plain mode: when this combination last had a line
        self.losses = ""


class Progress:
    """Thread-safe sink for a sweep's events (``--jobs`` reports from several threads).

    ``total``: trials to train in this call; ``done_before``: those finished earlier
    (a resume); ``steps``: steps per trial, None with a wall-time budget (step events then
    carry ``fraction``, the share of the budget spent).
    """

    def __init__(self, total: int, steps: Optional[int], quiet: bool = False,
                 done_before: int = 0,
                 stream: Optional[TextIO] = None, terminal: Optional[bool] = None,
                 width: Optional[int] = None, heartbeat_s: float = HEARTBEAT_S):
        self.stream = stream if stream is not None else sys.stderr
        self.fixed_width = width  # None: the terminal's, read at each redraw
        self.quiet = quiet
        from tqdm import tqdm

        notebook = notebook_bar_class() if terminal is None and not quiet else None
        if terminal is None:
            terminal = notebook is not None or self.stream.isatty()
        self.terminal = terminal and not quiet
        self.bar_class = notebook or tqdm  # tqdm, or its notebook form in a Jupyter kernel
        self.total = total + done_before
        self.done = done_before
        self.done_before = done_before
        self.steps = max(1, steps) if steps is not None else None
        self.started = time.monotonic()
        self.running: dict[str, _Combo] = {}
        self.seen: set[str] = set()
        self.lock = threading.RLock()
        self.next_index = done_before
        self.overall = None
        self.heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._beat = None
        if self.terminal:
            self.overall = self.bar_class(total=self.total, initial=done_before,
                                          desc="combinations", unit="combo", file=self.stream,
                                          position=0, leave=True, bar_format=OVERALL_FORMAT,
                                          **self._ncols())
        elif not quiet and heartbeat_s > 0:
            self._beat = threading.Thread(target=self._heartbeat, daemon=True,
                                          name="ganbench-progress-heartbeat")
            self._beat.start()

    def _ncols(self) -> dict:
        return {"ncols": self.fixed_width} if self.fixed_width else {"dynamic_ncols": True}

    def width(self) -> int:
        """Columns of the terminal the bars are drawn on (80 when unknown)."""
        if self.fixed_width:
            return self.fixed_width
        import shutil

        return shutil.get_terminal_size((80, 24)).columns

    # -- messages shown once ------------------------------------------------------------
    def note(self, text: str) -> None:
        self._once(f"note: {text}")

    def warning(self, text: str) -> None:
        self._once(f"warning: {text}")

    def _once(self, line: str) -> None:
        with self.lock:
            if self.quiet or line in self.seen:
                return
            self.seen.add(line)
            self._write(line)

    # -- a combination's life -------------------------------------------------------------
    def start(self, name: str) -> None:
        with self.lock:
            self.next_index += 1
            combo = _Combo(name, self.next_index, self.steps)
            self.running[name] = combo
            if self.terminal:
                desc = name if len(name) <= NAME_WIDTH else name[:NAME_WIDTH - 1] + "…"
                combo.bar = self.bar_class(
                    total=self.steps, desc=desc, unit="step", file=self.stream,
                    position=len(self.running), leave=False, **self._ncols(),
                    bar_format=COMBO_FORMAT if self.steps is not None else BUDGET_FORMAT)

    def event(self, name: str, kind: str, **data) -> None:
        """``kind`` "phase" (data: phase) or "step" (data: step, d_loss, g_loss, and with a
        budget fraction)."""
        with self.lock:
            combo = self.running.get(name)
            if combo is None or self.quiet:
                return
            if kind == "phase":
                if data["phase"] == combo.phase:
                    return
                combo.phase = data["phase"]
                if combo.bar is not None:
                    combo.bar.set_postfix_str(self._postfix(combo), refresh=True)
                else:
                    self._plain(combo, combo.phase)
            elif kind == "step":
                combo.step = int(data["step"])
                losses = f"d_loss={data['d_loss']:.3f} g_loss={data['g_loss']:.3f}"
                combo.losses = losses
                if self.steps is None:
                    combo.fraction = float(data.get("fraction", 0.0))
                    tenth = int(combo.fraction * PLAIN_LINES)
                    where = f"step {combo.step} ({combo.fraction:.0%} of the budget)"
                else:
                    combo.fraction = combo.step / self.steps
                    tenth = combo.step * PLAIN_LINES // self.steps  # integers: no float drift
                    where = f"step {combo.step}/{self.steps} ({combo.fraction:.0%})"
                if combo.bar is not None:
                    combo.bar.set_postfix_str(self._postfix(combo), refresh=False)
                    combo.bar.update(combo.step - combo.bar.n)
                    self._refresh_overall()
                elif tenth > combo.last_tenth:
                    combo.last_tenth = tenth
                    self._plain(combo, f"{where} {losses}")

    def finish(self, name: str, status: str, error: Optional[str] = None) -> None:
        with self.lock:
            combo = self.running.pop(name, None)
            self.done += 1
            if combo is None:
                return
            took = time.monotonic() - combo.started
            if combo.bar is not None:
                combo.bar.close()
                if self.overall is not None:
                    self.overall.update(1)
                    self._refresh_overall()
            elif not self.quiet:
                self._plain(combo, f"{status} in {_format_duration(took)}")
            if status != "ok" and not self.quiet:
                self._write(f"{name}: {status}: {error or ''}".rstrip(": "))

    def close(self) -> None:
        self._stop.set()
        with self.lock:
            for combo in self.running.values():
                if combo.bar is not None:
                    combo.bar.close()
            self.running.clear()
            if self.overall is not None:
                self.overall.close()
                self.overall = None

    # -- drawing ----------------------------------------------------------------------------
    def eta_s(self) -> Optional[float]:
        """Seconds left for the combinations of this call, or None before any progress."""
        fraction_done = self.done - self.done_before + sum(
            c.fraction for c in self.running.values())
        work = self.total - self.done_before
        if fraction_done <= 0 or work <= 0:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed * (work - fraction_done) / fraction_done

    def _postfix(self, combo: _Combo) -> str:
        """The phase (with a budget, its share spent), and the losses when the bar keeps
        MIN_BAR characters with them."""
        phase = combo.phase if self.steps is not None else \
            f"{combo.phase} {combo.fraction:.0%} of budget"
        fixed = len(combo.bar.desc) + len(f": 100%|| {self.steps}/{self.steps}, ") + len(phase)
        room = self.width() - fixed - MIN_BAR
        if combo.losses and room >= LOSSES_WIDTH:
            return f"{phase} {combo.losses}"
        return phase

    def _refresh_overall(self) -> None:
        if self.overall is not None:
            self.overall.set_postfix_str(f"ETA {_format_duration(self.eta_s())}", refresh=True)

    def _plain(self, combo: _Combo, text: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        combo.last_line = time.monotonic()
        self._write(f"{stamp} [{combo.index}/{self.total}] {combo.name}: {text} "
                    f"(run ETA {_format_duration(self.eta_s())})")

    def _heartbeat(self) -> None:
        """Plain mode: a line for every combination that has had none for heartbeat_s."""
        while not self._stop.wait(min(1.0, self.heartbeat_s / 4)):
            with self.lock:
                now = time.monotonic()
                for combo in list(self.running.values()):
                    if now - combo.last_line >= self.heartbeat_s:
                        steps = f"/{self.steps}" if self.steps is not None else ""
                        where = (f"step {combo.step}{steps}" if combo.phase == "training"
                                 else combo.phase)
                        self._plain(combo, f"still {where} after "
                                           f"{_format_duration(now - combo.started)}")

    def _write(self, line: str) -> None:
        if self.terminal:
            self.bar_class.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)


class Silent(Progress):
    """A Progress that shows nothing (``--quiet``, and ranks other than 0)."""

    def __init__(self):
        super().__init__(total=0, steps=1, quiet=True)
