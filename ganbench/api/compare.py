"""Two results compared: :func:`comparison` is ``ganbench compare OLD NEW`` and
``Run.compare(other)`` alike; the verdicts are ganbench.results.compare's."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

# Verdict -> the colour of its cell in a notebook (the rest stay plain).
_COLOURS = {"REGRESSION": "#c62828", "worse": "#b26a00", "better": "#2e7d32"}


@dataclass
class Comparison:
    """OLD against NEW (``old``, ``new``: their paths). ``table``: the long DataFrame of ganbench.results.compare.compare (one
    row per key and metric: old, new, delta_pct, spreads, verdict); ``notes``: settings that
    differ and metrics that could not be compared; ``kind``: run, bench-attention or benchmark.
    """

    old: str
    new: str
    table: object
    kind: str = "run"
    notes: list = field(default_factory=list)

    @property
    def regressions(self):
        """The rows that fail the comparison (past a fail_on threshold, or a lost status)."""
        from ganbench.results.compare import regressions

        return regressions(self.table)

    @property
    def passed(self) -> bool:
        """True when nothing regressed (``ganbench compare`` would exit 0)."""
        return len(self.regressions) == 0

    @property
    def key_label(self) -> str:
        """What a row is: 'combo', 'bench row' or 'benchmark' (the first column's header)."""
        return {"benchmark": "benchmark", "bench-attention": "bench row"}.get(self.kind, "combo")

    def to_text(self, fmt: str = "markdown", width: Optional[int] = None) -> str:
        """What ``ganbench compare --format FMT`` prints: markdown (units, signed changes,
        spreads; fitted to ``width`` when given), csv or json (every column, full precision)."""
        from ganbench.results.compare_render import render

        return render(self.table, fmt, self.key_label, width=width)

    @property
    def summary_line(self) -> str:
        """One line of counts: better, worse, within noise, regressions."""
        from ganbench.results.compare import summary_line

        return summary_line(self.table)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        state = "passed" if self.passed else f"{len(self.regressions)} regression(s)"
        return f"<Comparison {self.old} -> {self.new}: {state}>"

    def _repr_html_(self) -> str:
        from ganbench.results.compare import SAME
        from ganbench.results.table import format_of, signed_pct

        rows = []
        for row in self.table.to_dict("records"):
            metric = row["metric"]
            if row["verdict"] == SAME and row["old"] != row["old"] and row["new"] != row["new"]:
                continue  # measured on neither side (NaN both): no news, as the CLI omits it
            fmt = format_of(metric).fmt if metric and metric != "status" else (lambda v: "")
            colour = next((c for v, c in _COLOURS.items() if row["verdict"].startswith(v)), "")
            style = f' style="color:{colour};font-weight:bold"' if colour else ""
            unit = " (MiB)" if metric.endswith("_bytes") else ""  # as the CLI shows it
            cells = [row["key"], metric + unit, row["better"],
                     fmt(row["old"]), fmt(row["new"]), signed_pct(row["delta_pct"])]
            rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
                        + f"<td{style}>{html.escape(row['verdict'])}</td></tr>")
        head = "".join(f"<th>{h}</th>" for h in (self.key_label, "metric", "better", "old",
                                                 "new", "change", "verdict"))
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        state = ("no regression" if self.passed
                 else f"{len(self.regressions)} regression(s)")
        return (f"<p><b>{html.escape(self.old)}</b> &rarr; <b>{html.escape(self.new)}</b>: "
                f"{state}</p><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}"
                f"</tbody></table>" + (f"<ul>{notes}</ul>" if notes else ""))


def comparison(old: Path, new: Path, fail_on: Optional[str] = None,
               metrics: Optional[list[str]] = None) -> Comparison:
    """Read and compare two results (run folders or tables, bench-attention tables, or
    pytest-benchmark JSON files). ``fail_on``: 'METRIC:+N%,...' thresholds; ``metrics``: only
    these columns. UserError (one line) on unreadable or mismatched input, a malformed
    ``fail_on``, or a check that cannot be made (a fail_on quality metric computed at another
    image size or n, or ``metrics`` naming only such metrics): a gate that cannot look must not
    pass."""
    from ganbench.errors import UserError
    from ganbench.results.compare import (compare, parse_fail_on, read_side, refused_metrics,
                                          setting_notes)

    thresholds = parse_fail_on(fail_on)  # before reading: a typo fails fast
    old_side, new_side = read_side(Path(old)), read_side(Path(new))
    table = compare(old_side, new_side, thresholds, metrics)
    refused = refused_metrics(table)
    gated = sorted(m for m in refused if m in thresholds)
    if gated:  # a gate that cannot look must not pass
        m = gated[0]
        if refused[m][0].startswith("no real-data row"):
            raise UserError(f"--fail-on {m}: cannot check it, it is judged by its distance to "
                            f"the real-data row and there is {refused[m][0]}; run with "
                            "metrics on both sides, or drop it from --fail-on")
        raise UserError(f"--fail-on {m}: cannot check it, the quality numbers were computed "
                        f"differently ({refused[m][0]}); compare runs scored at one image size "
                        "and --eval-n, or drop it from --fail-on")
    if metrics and all(m in refused for m in metrics):
        raise UserError(f"nothing to compare: {', '.join(metrics)} cannot be compared "
                        f"({next(iter(refused.values()))[0]}); quality numbers are only "
                        "comparable at one metric image size and --eval-n, with a real-data row")
    notes = []
    for metric, reasons in refused.items():
        why = ("a closer-to-real metric needs the real-data row on both sides"
               if all(r.startswith("no real-data row") for r in reasons) else
               "quality numbers are only comparable at one metric image size and n")
        notes.append(f"{metric} not compared: {'; '.join(reasons)} ({why})")
    notes += setting_notes(old_side, new_side)
    return Comparison(str(old), str(new), table, old_side.kind, notes)
