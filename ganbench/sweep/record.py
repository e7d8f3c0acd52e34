"""Record rows: each finished trial's row into the table, and the results shown.

The table is rewritten atomically after every row (:func:`ganbench.results.store.write_table`),
so an interrupt, a crash or a full disk never loses a finished row. A trial's checkpoint is
dropped once its row is on disk, except for crashed, oom and failed rows: ``--resume
--retry-failed`` retrains those from it. With several seeds there is one row per (combination,
seed); the per-combination summary over seeds is written by ``write_table`` itself.
"""

from __future__ import annotations

from pathlib import Path

from ganbench.results.store import summary_markdown, write_table
from ganbench.sweep.execute import RETRYABLE_STATUSES, reference_row
from ganbench.sweep.plan import Plan
from ganbench.sweep.resume import discard_checkpoint_of
from ganbench.sweep.trials import in_plan_order
from ganbench.training.textbook import add_speedups


def reference_first(plan: Plan):
    """The "real data" row, computed before any training: it is the same for every
    combination, and a metric that cannot score ``--eval-n`` samples (k nearest neighbours
    need more than k) fails here in one line instead of after training. None without
    metrics."""
    from ganbench.errors import UserError

    if not plan.metric_names:
        return None
    try:
        return reference_row(plan.cfg, plan.data, plan.metric_names)
    except ValueError as exc:
        reason = " ".join(str(exc).split())
        raise UserError(f"the metrics cannot score --eval-n {plan.cfg.eval_n} samples here: "
                        f"{reason}; raise --eval-n") from None


def record(rows: list[dict], trial, row: dict, plan: Plan, run_dir: Path):
    """Add the row of ``trial`` in plan order, rewrite the table, then drop the trial's
    checkpoint unless the row is one ``--retry-failed`` may retrain from it. Returns (rows,
    DataFrame). Every row leaves here with its trial's identity (combo, seed, ...), whoever
    made it."""
    for column, value in trial.identity().items():
        row.setdefault(column, value)
    rows = add_speedups(in_plan_order(rows + [row], plan.trials, plan.cfg.seed))
    df = write_table(rows, run_dir)
    if row.get("status") not in RETRYABLE_STATUSES:
        discard_checkpoint_of(run_dir, trial)
    return rows, df


def show_results(df, run_dir: Path, quiet: bool, echo, columns=None) -> None:
    """stdout: the table (unless quiet; ``columns`` or the default ones), then where it is.
    The table is fitted to the terminal's width (120 characters when piped); results.md keeps
    the whole markdown table."""
    from ganbench.results.table import terminal_width

    if not quiet and df is not None:
        echo(summary_markdown(df, list(columns) if columns else None, width=terminal_width()))
        echo("")
    echo(f"results: {run_dir}")
    if not quiet:  # a hint, not a result: stderr, so stdout stays the table and the folder
        import shlex
        import sys

        print(f"see it with charts and images: ganbench report {shlex.quote(str(run_dir))} "
              "--html", file=sys.stderr)
