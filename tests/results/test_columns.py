"""The column registry: every column a run writes is declared; a plugin's label, unit, format,
direction and visibility reach the tables; MetricSpec checks what it is given; default and
primary metrics come from the specs, not from the core."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ganbench import registry
from ganbench.hookspecs import hookimpl
from ganbench.results import columns
from ganbench.results.store import summary_columns, summary_markdown
from ganbench.specs import COLUMN_WAYS, Metric, MetricSpec

REPO = Path(__file__).resolve().parents[2]
# Every column of one `ganbench run --plugins dcgan --steps 4 --batch-size 8 --eval-n 40
# --in-process` row and its real-data row (torch 2.13 CPU, all built-in metrics), plus the
# columns the runner adds in other modes (README: textbook baseline, CUDA graphs, compile,
# torchrun, --target-fid, failures).
RUN_COLUMNS = (
    "combo architecture loss attention status diverged_at resumed_from_step steps batch_size "
    "image_size warmup z_dim g_lr d_lr betas seed data digits n_train compile step "
    "memory_format architecture_from loss_from step_ms_median step_ms_p10 step_ms_p90 "
    "timed_steps img_per_s world_size peak_mem_bytes peak_mem_delta_bytes mem_method "
    "d_loss_last10 g_loss_last10 first_step_s compile_s train_wall_s metric_n "
    "metric_image_size fid_digits is_digits prdc_precision prdc_recall prdc_density "
    "prdc_coverage modes_covered modes_total modes_kl modes_share_7 modes_share_8 "
    + " ".join(f"modes_frac_{d}" for d in range(10)) +
    " memo_copy_share memo_nn_ratio eval_s device device_name dtype torch_version "
    "triton_version python_version torch_threads git_commit triton_interpret finished_at "
    "parallel_jobs attention_from error speedup_vs_textbook cuda_graph capture_s "
    "compile_graph_breaks time_to_target_s per_rank_batch scaling_efficiency img_per_s_1rank "
    "ddp_backend sync_bn").split()


def committed_columns() -> set[str]:
    """Columns of the committed run and bench-attention tables in results/."""
    out = set()
    for pattern in ("results/**/results.csv", "results/**/train-results.csv",
                    "results/**/*attention-bench*.csv"):
        for path in REPO.glob(pattern):
            out |= set(pd.read_csv(path, nrows=1).columns)
    assert len(out) > 50  # the tables are there: this check is not vacuous
    return out


def test_every_column_a_run_writes_is_declared():
    names = set(RUN_COLUMNS) | committed_columns()
    undeclared = sorted(n for n in names if not columns.column(n).declared)
    assert not undeclared, f"declare these in ganbench.results.columns: {undeclared}"
    for name in names:
        info = columns.column(name)
        assert info.header and "\n" not in info.header
        assert info.direction in COLUMN_WAYS + (None,)
        assert isinstance(info.visible, bool)


@pytest.mark.slow
def test_a_real_run_writes_only_declared_columns(tmp_path):
    """The list above, checked against a real run (trains 4 steps and scores 40 samples)."""
    from ganbench.cli import main

    out = tmp_path / "run"
    assert main(["run", "--plugins", "dcgan", "--steps", "4", "--batch-size", "8",
                 "--eval-n", "40", "--in-process", "--quiet", "--out", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert not [c for r in rows for c in r if not columns.column(c).declared]


@pytest.mark.parametrize("name,header,way,visible", [
    ("img_per_s", "img/s", "higher", True),
    ("step_ms_median", "step ms", "lower", False),
    ("peak_mem_bytes", "peak MiB", "lower", True),
    ("fid_digits", "fid_digits", "lower", True),
    ("is_digits", "is_digits", "closer", True),
    ("prdc_precision", "precision", "closer", True),
    ("prdc_density", "density", "closer", False),
    ("prdc_recall", "recall", "higher", True),
    ("modes_share_7", "7s share", "closer", True),
    ("modes_frac_3", "3s argmax", "closer", False),
    ("memo_nn_ratio", "nn ratio", "closer", False),
    ("metric_n", "metric n", None, False),
    ("median", "median s", "lower", False),
    ("d_loss_last10", "d_loss_last10", None, False),
])
def test_builtin_declarations(name, header, way, visible):
    info = columns.column(name)
    assert (info.header, info.direction, info.visible) == (header, way, visible)


def test_core_columns_are_not_quality_and_the_primary_is_declared_by_a_plugin():
    assert not columns.is_quality("img_per_s") and columns.is_quality("fid_digits")
    assert columns.is_quality("modes_total")          # undeclared but the metric's prefix
    assert columns.primary_quality() == "fid_digits"  # MetricSpec(primary=...) of fid-digits
    assert not columns.column("some_new_thing").declared


class GapMetric(Metric):
    def compute(self, fake, real, context):
        return {"gap_score": 0.4321, "gap_share_7": 0.5, "gap_debug": 7.0}


class GapPlugin:
    @staticmethod
    @hookimpl
    def ganbench_register_metrics(register):
        register(MetricSpec(
            name="gap", summary="a test metric", factory=GapMetric, default=False,
            directions={"gap_score": "higher"}, primary="gap_score",
            columns={"gap_score": {"label": "gap", "unit": "px", "format": "fixed2"},
                     "gap_share_*": {"label": "{0}s gap", "direction": "closer"},
                     "gap_debug": {"visible": False}}))


@pytest.fixture
def gap_plugin(monkeypatch):
    pm, broken = registry.make_plugin_manager(load_entrypoints=False)
    pm.register(GapPlugin, name="gap-test")
    monkeypatch.setattr(registry, "_REGISTRY", registry.collect(pm, broken))


def test_a_plugins_label_unit_format_and_visibility_reach_the_table(gap_plugin):
    rows = [{"combo": "dcgan+bce", "status": "ok", "img_per_s": 10.0, "digits": "7,8",
             "gap_score": 0.4321, "gap_share_7": 0.5, "gap_debug": 7.0}]
    df = pd.DataFrame(rows)
    text = summary_markdown(df)
    header = text.splitlines()[0]
    assert "| gap px" in header and "7s gap" in header and "gap_debug" not in header
    assert "0.43" in text and "0.4321" not in text      # fixed2
    assert summary_columns(df) == ["combo", "status", "img_per_s", "gap_score", "gap_share_7"]
    assert columns.direction("gap_share_7") == "closer"
    # registered after the built-ins: fid-digits' primary stays the run's quality column
    assert columns.primary_quality() == "fid_digits"


def test_default_false_keeps_a_metric_out_of_the_default_set(gap_plugin):
    from ganbench.quality.evaluate import default_metrics

    names = default_metrics()
    assert "gap" not in names and "fid-digits" in names
    assert "fid-inception" not in names  # unavailable here: no weights file


@pytest.mark.parametrize("kwargs,needle", [
    ({"directions": {"x_a": "up"}}, "use 'lower', 'higher' or 'closer'"),
    ({"columns": {"x_a": {"colour": "red"}}}, "is not a column field"),
    ({"columns": {"x_a": {"format": "%.3f"}}}, "use sigN, fixedN"),
    ({"columns": {"x_a": {"label": "two\nlines"}}}, "one line"),
    ({"columns": {"x_a": {"visible": "yes"}}}, "True or False"),
    ({"columns": {"x_a": "label"}}, "must be a mapping"),
    ({"directions": {"x_a": "lower"}, "columns": {"x_a": {"direction": "higher"}}},
     "'lower' in directions but 'higher' in columns"),
    ({"primary": "x_a"}, "needs a 'lower' or 'higher' direction"),
    ({"directions": {"x_a": "closer"}, "primary": "x_a"}, "needs a 'lower' or 'higher'"),
    ({"directions": {"x_*": "lower"}, "primary": "x_*"}, "one column name"),
    ({"default": "yes"}, "default must be True or False"),
])
def test_metric_spec_rejects_bad_declarations(kwargs, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        MetricSpec(name="x", summary="s", factory=object, **kwargs)


def test_metric_spec_stays_hashable_and_backward_compatible():
    import dataclasses

    old_style = MetricSpec("x", "s", object, lambda d: None, {"x_a": "lower"})
    assert old_style.directions == (("x_a", "lower"),) and old_style.columns == ()
    assert old_style.default is True and old_style.primary is None
    spec = MetricSpec(name="x", summary="s", factory=object, directions={"x_a": "lower"},
                      columns={"x_a": {"unit": "px", "label": "a"}}, primary="x_a")
    assert hash(spec) and spec.columns == (("x_a", (("label", "a"), ("unit", "px"))),)
    assert dataclasses.replace(spec, summary="t").columns == spec.columns
