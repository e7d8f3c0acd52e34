"""Issue 22, item 6: `run --columns` is checked when the run is planned, not after training."""

from __future__ import annotations

import json

import pytest

from ganbench.cli import main
from ganbench.errors import UserError
from ganbench.registry import get_registry
from ganbench.sweep.plan import check_columns

TINY = ["--steps", "2", "--warmup", "1", "--batch-size", "8", "--image-size", "32",
        "--device", "cpu"]
METRICS = ["fid-digits", "kid-digits", "is-digits", "prdc", "modes", "memorisation"]


@pytest.mark.parametrize("columns, fragment", [
    ("combo,nope", "a row of this run has no column nope; see `ganbench report RUN_DIR "
                   "--all-columns`"),
    ("img_per_sec", "no column img_per_sec (did you mean img_per_s?)"),
    ("combo,fid_digits", "no column fid_digits"),  # --metrics none: no metric columns
])
def test_an_unknown_column_is_one_line_exit_2_before_any_training(tmp_path, capsys, columns,
                                                                  fragment):
    out = tmp_path / "never"
    code = main(["run", "--plugins", "dcgan", "--metrics", "none", "--columns", columns,
                 "--out", str(out), *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment in err[0], err
    assert not out.exists()  # no folder, no worker: nothing ran


def test_metric_columns_are_known_by_prefix_or_declared_pattern():
    registry = get_registry()
    check_columns(("combo", "step_ms", "fid_digits", "modes_share_7", "memo_copy_share",
                   "prdc_recall"), METRICS, registry)
    with pytest.raises(UserError, match="no column memo_copy_share"):
        check_columns(("memo_copy_share",), ["fid-digits"], registry)
    check_columns(None, [], registry)  # no --columns: nothing to check
    # A metric column neither declared nor named by the rule is known from the "real data"
    # row, which has every column the metrics wrote.
    with pytest.raises(UserError, match="no column memo_extra"):
        check_columns(("memo_extra",), METRICS, registry)
    check_columns(("memo_extra",), METRICS, registry, {"memo_extra": 1.0})


@pytest.mark.slow  # ~40 s on the shared 2-core machine: two steps and every metric
def test_every_column_a_real_run_writes_is_known_to_the_planner(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--plugins", "dcgan", "--in-process", "--quiet", "--out", str(out),
                 *TINY]) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    columns = sorted({c for row in rows for c in row})
    reference = next(row for row in rows if row["combo"] == "real data")
    check_columns(columns, METRICS, get_registry(), reference)  # names any undeclared one
    check_columns(columns, METRICS, get_registry())  # the core's and metrics' alone suffice
