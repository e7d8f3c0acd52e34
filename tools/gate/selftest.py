"""Self-test of the regression gate: plant each regression in a temporary copy, run the gate.

    python -m tools.gate.selftest                  # every plant and the clean copy
    python -m tools.gate.selftest --only clean,kernel --out table.md

Each case is a detached ``git worktree`` of HEAD (removed afterwards) with one edit below,
compared by the full gate (gate.run_gate, the same code CI runs) against HEAD itself. The
table says, per case, what the gate reported for the comparisons the plant targets and
whether the outcome is the expected one: every planted regression FAILs the gate through the
comparison it targets, and the clean copy PASSes.

One case is a submission of several commits, as CI sees it: the slowdown is committed, then a
comment-only change to the package, then the before-stop hook's commit pinning HEAD in
results/baselines/BASE_COMMIT. The gate finds its base through that pin (no --base), as CI
does, and must catch the slowdown two commits below HEAD, where the old rule (the parent of
the last code change) would have compared two already-slowed commits.

The slowdowns are busy-waits proportional to the wall time of the code they slow (spinning,
not sleeping, so they keep a core busy as real work would), so "+10%" stays +10% however
loaded the machine is. They are text edits anchored on lines of today's code; when an anchor
is missing (the code moved) the case is reported "not planted", never silently passed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import basecommit, gate

SPIN = """
def _plant_spin(seconds):  # planted by tools/gate/selftest.py
    import time as _t
    end = _t.perf_counter() + seconds
    while _t.perf_counter() < end:
        pass
"""


class PlantError(RuntimeError):
    pass


def _edit(tree: Path, rel: str, fn: Callable[[str], str]) -> None:
    path = tree / rel
    text = path.read_text()
    new = fn(text)
    if new == text:
        raise PlantError(f"nothing changed in {rel}")
    path.write_text(new)


def _sub_once(pattern: str, repl: str, text: str, where: str) -> str:
    new, n = re.subn(pattern, repl, text, count=1, flags=re.M)
    if n != 1:
        raise PlantError(f"anchor {pattern!r} not found in {where}")
    return new


def loop_file(tree: Path) -> str:
    """The training loop's file in ``tree``, by what the tree has (the restructure moved it)."""
    for rel in ("ganbench/training/loop.py", "ganbench/train.py"):
        if (tree / rel).is_file():
            return rel
    raise PlantError("no training loop file (ganbench/training/loop.py, ganbench/train.py)")


def plant_shared_step(tree: Path) -> None:
    """Every training step +10%: a spin of 10% of the step's time right after the step.

    Anchored on the one line every layout's loop has (``step_losses = one_step(real)``: in
    train()'s loop in the flat layout, in _timed_step since the sweep loop's rework), and
    timed around that line only, so it needs nothing else of the loop's shape."""
    rel = loop_file(tree)

    def fn(text: str) -> str:
        text = _sub_once(r"^(\s*)step_losses = one_step\(real\).*\n",
                         lambda m: (f"{m.group(1)}_plant_t0 = time.perf_counter()\n"
                                    + m.group(0)
                                    + f"{m.group(1)}_plant_spin(0.10 * "
                                    "(time.perf_counter() - _plant_t0))\n"), text, rel)
        return text + SPIN
    _edit(tree, rel, fn)


def plant_kernel(tree: Path) -> None:
    """eager-attn about +15% of its forward + backward: its forward spins 60% of its own
    time. Forward-only, with no autograd node added (a first version wrapped the op in an
    autograd.Function, whose own overhead made it +27%); the forward is about a quarter of
    forward + backward here (2.3-4.3 ms of 12-15 ms measured), so 60% of it is about 15% of
    the whole. The gate's line reports the slowdown it actually measured."""
    code = SPIN + '''
import time as _plant_time


def _plant_attend(q, k, v):
    t0 = _plant_time.perf_counter()
    out = attend_eager(q, k, v)
    _plant_spin(0.60 * (_plant_time.perf_counter() - t0))
    return out


def _eager_factory():  # replaces the factory above: the register hook looks it up at call
    return _plant_attend
'''
    _edit(tree, "plugins/attention.py", lambda t: t + code if "def _eager_factory" in t else t)


def plant_dcgan(tree: Path) -> None:
    """DCGAN only, about +10% of its step: G's and D's forward spin 30% of their own time
    (forwards are about a third of a step: forward, backward ~2x, Adam). A first version
    spun in proportion to the time between G's calls, which also counted the other side's
    blocks and made it 3.7x. The gate's line reports the slowdown it actually measured."""
    code = SPIN + '''
import time as _plant_time


def _plant_slowed(forward):
    def slowed(self, x):
        t0 = _plant_time.perf_counter()
        out = forward(self, x)
        _plant_spin(0.30 * (_plant_time.perf_counter() - t0))
        return out
    return slowed


Generator.forward = _plant_slowed(Generator.forward)
Discriminator.forward = _plant_slowed(Discriminator.forward)
'''
    _edit(tree, "plugins/dcgan.py", lambda t: t + code if "class Generator" in t else t)


def plant_g_lr(tree: Path) -> None:
    """G's learning rate halved in the training loop (``g_lr``, or ``s.g_lr`` once the loop
    reads a TrainSettings)."""
    rel = loop_file(tree)
    _edit(tree, rel, lambda t: _sub_once(r"(make_optimizers\(G, D, )((?:\w+\.)?g_lr)\b",
                                         r"\g<1>0.5 * \g<2>", t, rel))


def _commit(tree: Path, message: str, *paths: str) -> str:
    """Commit ``paths`` (every tracked change when none) in the case's worktree."""
    git = ["git", "-C", str(tree), "-c", "user.name=gate selftest",
           "-c", "user.email=selftest@localhost"]
    if paths:
        subprocess.run(git + ["add", "-f", *paths], check=True, capture_output=True)
    subprocess.run(git + ["commit", "-q", *([] if paths else ["-a"]), "-m", message],
                   check=True, capture_output=True)
    return basecommit.git("rev-parse", "HEAD", repo=tree)


def plant_in_history(tree: Path) -> None:
    """A submission of three commits: DCGAN ~+10% (plant_dcgan), committed; then a comment
    in ganbench/errors.py, committed; then the before-stop hook's commit pinning the start
    (the worktree's original HEAD) in results/baselines/BASE_COMMIT. The slowdown sits two
    commits below HEAD, and the last code change is a comment."""
    start = basecommit.git("rev-parse", "HEAD", repo=tree)
    plant_dcgan(tree)
    _commit(tree, "DCGAN: a change (planted: G and D forward ~+10%)")
    _edit(tree, "ganbench/errors.py",
          lambda t: t + "# A comment-only change (planted by tools/gate/selftest.py).\n")
    _commit(tree, "errors: one comment line")
    pin = tree / basecommit.PIN
    pin.parent.mkdir(parents=True, exist_ok=True)
    pin.write_text(start + "\n")
    _commit(tree, f"Gate base: the commit this work started from ({start[:7]})",
            str(basecommit.PIN))


def old_rule_base(tree: Path) -> str:
    """The base the gate chose before BASE_COMMIT: the parent of the newest commit that
    changed the package (shown in the history case's row, for contrast)."""
    newest = basecommit.git("log", "-n", "1", "--format=%H", "HEAD", "--",
                            *basecommit.CODE_PATHS, repo=tree)
    return basecommit.git("rev-parse", f"{newest}~1", repo=tree)


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    plant: Callable[[Path], None] | None
    targets: tuple[str, ...]   # comparison names (prefixes) that must fail; () = must pass
    pinned: bool = False       # the plant commits, and the gate finds the base via its pin


CASES = [
    Case("clean", "clean copy (no plant)", None, ()),
    Case("step", "shared training step +10% (train loop)", plant_shared_step,
         ("step dcgan", "step sagan")),
    Case("kernel", "one kernel ~+15% (eager-attn fwd+bwd)", plant_kernel, ("attn eager-attn",)),
    Case("dcgan", "DCGAN only ~+10% (G and D forward)", plant_dcgan, ("step dcgan",)),
    Case("glr", "quality: G learning rate halved", plant_g_lr, ("quality",)),
    Case("history", "DCGAN ~+10% two commits before HEAD; last code commit a comment",
         plant_in_history, ("step dcgan",), pinned=True),
]


def run_case(case: Case, head: str, rounds: int, sessions: int, log) -> dict:
    with basecommit.Worktree(head) as tree:
        try:
            if case.plant:
                case.plant(tree)
        except PlantError as exc:
            return {"case": case, "caught": "not planted", "detail": str(exc), "ok": False}
        log(f"\n=== {case.title}: {tree}")
        show = (["log", "--stat", "--format=%h %s", f"{head}..HEAD"] if case.pinned
                else ["diff", "--stat"])
        diff = subprocess.run(["git", "-C", str(tree), *show], capture_output=True,
                              text=True).stdout.strip()
        if diff:
            log(diff)
        old_rule = old_rule_base(tree) if case.pinned else None
        load_start = os.getloadavg()[0]
        t0 = time.perf_counter()
        if case.pinned:  # the base must come from the pin, as in CI: no override
            saved = os.environ.pop(basecommit.BASE_ENV, None)
            try:
                report = gate.run_gate(tree, None, rounds, sessions, echo=log)
            finally:
                if saved is not None:
                    os.environ[basecommit.BASE_ENV] = saved
        else:
            report = gate.run_gate(tree, head, rounds, sessions, echo=log)
        seconds = time.perf_counter() - t0
    failed = ([c.name for c in report.timing if c.failed]
              + [f"quality {q['arch']}" for q in report.quality if q["failed"]])
    lines = {c.name: c for c in report.timing}
    qual = {f"quality {q['arch']}": q for q in report.quality}
    if case.targets:
        hit = [f for f in failed if f.startswith(case.targets)]
        ok = bool(hit)
        detail = "; ".join(_short(lines.get(f) or qual.get(f)) for f in hit) or \
            "; ".join(_short(c) for n, c in {**lines, **qual}.items()
                      if n.startswith(case.targets))
        caught = "yes" if ok else "NO"
    else:
        ok = not failed
        caught = "passed" if ok else "FAILED: " + ", ".join(failed)
        detail = f"{len(report.timing)} timings within limits, quality: " + \
            ", ".join(q["verdict"].split(":")[0] for q in report.quality)
    others = [f for f in failed if case.targets and not f.startswith(case.targets)]
    if others:
        detail += f" (also failed: {', '.join(others)})"
    if case.pinned:
        ok = ok and report.base == head
        detail += (f"; base {report.base[:7]} from BASE_COMMIT, span {len(report.span)} "
                   f"commits; the old rule's base {old_rule[:7]} already had the slowdown")
    return {"case": case, "caught": caught, "detail": detail, "ok": ok, "seconds": seconds,
            "load": f"{load_start:.1f} / {os.getloadavg()[0]:.1f}"}


def _short(c) -> str:
    if c is None:
        return ""
    if isinstance(c, dict):
        return f"{c['arch']}: {c['verdict']}"
    return (f"{c.name} ratio {c.ratio:.3f} CI [{c.low:.3f}, {c.high:.3f}] > {c.limit:.2f}"
            if c.ratio is not None else f"{c.name}: {c.verdict}")


def table(results: list[dict], head: str, rounds: int, sessions: int) -> str:
    from tabulate import tabulate

    rows = [[r["case"].title, r["caught"], r["detail"],
             f"{r.get('seconds', 0):.0f}", r.get("load", "")] for r in results]
    cpu = _cpu_name()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head_text = (f"Gate self-test, {when}, at {head[:12]}; machine: {cpu}, "
                 f"{os.cpu_count()} cores, load average when written "
                 f"{os.getloadavg()[0]:.1f}; python {platform.python_version()}; "
                 f"{rounds} rounds in {sessions} sessions per gate run.\n\n")
    return head_text + tabulate(rows, headers=["planted regression", "caught?",
                                               "what the gate said", "gate s",
                                               "load avg start / end"],
                                tablefmt="github") + "\n"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    gate.exit_on_sigterm()
    p = argparse.ArgumentParser(description="Plant regressions in temporary copies and show "
                                            "the gate catching them.")
    p.add_argument("--only", help="comma-separated cases: " + ",".join(c.key for c in CASES))
    p.add_argument("--rounds", type=int, default=gate.ROUNDS)
    p.add_argument("--sessions", type=int, default=gate.SESSIONS)
    p.add_argument("--out", type=Path, help="also write the table (markdown) here")
    p.add_argument("--log", type=Path, help="write every gate line here (default: stderr)")
    args = p.parse_args(argv)
    keys = args.only.split(",") if args.only else [c.key for c in CASES]
    unknown = sorted(set(keys) - {c.key for c in CASES})
    if unknown:
        print(f"error: unknown case(s) {', '.join(unknown)}; choose from "
              f"{', '.join(c.key for c in CASES)}", file=sys.stderr)
        return 2
    head = basecommit.git("rev-parse", "HEAD")
    log_file = args.log.open("a") if args.log else None

    def log(line: str) -> None:
        print(line, file=log_file or sys.stderr, flush=True)

    results = []
    for case in CASES:
        if case.key in keys:
            results.append(run_case(case, head, args.rounds, args.sessions, log))
            print(f"{case.title}: {results[-1]['caught']}", flush=True)
            if args.out:  # after every case: a long self-test interrupted keeps its rows
                args.out.write_text(table(results, head, args.rounds, args.sessions))
    text = table(results, head, args.rounds, args.sessions)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
