"""The bench's table, flags, chart and files, on hand-built frames (no timing)."""

import json
import os

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.container import BarContainer

from ganbench.bench import figure, output, shapes
from ganbench.cli import main
from ganbench.files import atomic

ENV = dict(device="cuda", device_name="NVIDIA H100 80GB HBM3", dtype="bf16",
           torch_version="2.13.0", triton_version="3.9.0", git_commit="abc123",
           mem_method="cuda.max_memory_allocated")


def row(kernel, site, pass_, median, p10=None, p90=None, **extra):
    """A bench row as a CUDA run fills it (every summary column has a value)."""
    values = dict(kernel=kernel, site=site, batch=64, N=1024, Dqk=8, Dv=64, status="ok",
                  median_ms=median, p10_ms=median * 0.9 if p10 is None else p10,
                  p90_ms=median * 1.2 if p90 is None else p90, count=200,
                  graph_median_ms=median / 2, graph_status="ok", tflops=12.5, gb_per_s=850.0,
                  roofline_pct=37.5, bound="exp", rel_err_max=2.5e-3,
                  peak_extra_mem_bytes=12.5 * 2 ** 20, backend="FLASH_ATTENTION", **ENV)
    values["pass"] = pass_
    values.update(extra)
    return values


def frame():
    """compile-attn's G 32x32 forward (68 ms) is slower than its fwd+bwd (17.6 ms): the only
    suspect row. Equal times, another site, and a failed fwd+bwd (NaN) are not suspect."""
    nan = float("nan")
    return pd.DataFrame([
        row("eager-attn", "G 32x32", "fwd", 5.0), row("eager-attn", "G 32x32", "fwd+bwd", 12.0),
        row("compile-attn", "G 32x32", "fwd", 68.0),
        row("compile-attn", "G 32x32", "fwd+bwd", 17.6),
        row("compile-attn", "D 4x4", "fwd", 0.2, N=16),
        row("compile-attn", "D 4x4", "fwd+bwd", 0.3, N=16),
        row("sdpa-attn", "G 32x32", "fwd", 9.0),
        row("sdpa-attn", "G 32x32", "fwd+bwd", nan, nan, nan, count=0, status="error: boom"),
        row("eager-attn", "D 4x4", "fwd", 0.5, N=16),
        row("eager-attn", "D 4x4", "fwd+bwd", 0.5, N=16),
    ])


# ---- the suspect flag -------------------------------------------------------------------------
def test_a_forward_slower_than_its_fwd_bwd_is_flagged_in_table_and_notes():
    df = frame()
    flags = output.suspect_flags(df)
    assert list(flags[flags.notna()].index) == [2] and flags[2] == output.SUSPECT
    text = output.to_text(df, width=120)
    flagged = [line for line in text.splitlines() if output.SUSPECT in line
               and not line.startswith(("suspect", "  "))]
    assert len(flagged) == 1 and flagged[0].startswith("compile-attn  G 32x32  fwd ")
    assert "compile-attn G 32x32 (68.0 ms > 17.6 ms)" in " ".join(text.split())
    md = output.to_markdown(df)
    assert md.count(output.SUSPECT) == 2  # the note and the row
    assert output.suspect_flags(df.drop(index=[3]))[2] is None  # no fwd+bwd to compare


def test_tables_without_the_column_get_it_and_clean_ones_have_no_note():
    df = frame().drop(index=[2, 3])  # no suspect pair left
    assert output.suspect_flags(df).isna().all()
    text = output.to_text(df, width=120)
    assert output.SUSPECT not in text and "suspect" not in text  # empty column left out


# ---- fitting the terminal ---------------------------------------------------------------------
@pytest.mark.parametrize("width", [80, 120])
def test_printed_table_and_notes_fit_the_width_and_say_what_was_left_out(width):
    text = output.to_text(frame(), width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    header = next(line for line in text.splitlines() if line.startswith("kernel"))
    assert header.split()[:4] == ["kernel", "site", "pass", "ms"]
    assert "suspect" in header and "status" in header
    assert f"left out to fit {width} characters" in text
    if width == 120:  # the spread and the count stay at 120; the shape's details go first
        assert "p10-p90 ms" in header and " n " in header
        line = next(x for x in text.splitlines() if x.startswith("compile-attn  G 32x32  fwd "))
        assert line.split()[4:7] == ["68.0", "61.2-81.6", "200"]  # "G 32x32" is two words
        assert "Dqk" not in header and "batch" in " ".join(text.split()[-30:])


def test_unfitted_markdown_keeps_every_summary_column():
    md = output.to_markdown(frame())
    assert "| kernel" in md and "p10-p90 ms" in md and "Dqk" in md and "left out" not in md


# ---- the chart --------------------------------------------------------------------------------
def test_chart_bars_have_p10_p90_error_bars_and_hatch_the_suspect_one():
    df = frame()
    fig = figure.chart(df)
    try:
        spans, hatched = set(), []
        for ax in fig.axes:
            for bars in (c for c in ax.containers if isinstance(c, BarContainer)):
                assert bars.errorbar is not None
                for segment in bars.errorbar.lines[2][0].get_segments():
                    if len(segment):  # a site this kernel has no timing at: no bar, no span
                        spans.add((round(segment[0][1], 6), round(segment[1][1], 6)))
                hatched += [p.get_height() for p in bars.patches if p.get_hatch()]
        timed = df[df["median_ms"].notna()]
        assert spans == {(round(lo, 6), round(hi, 6))
                         for lo, hi in zip(timed["p10_ms"], timed["p90_ms"])}
        assert hatched == [68.0]
        labels = [label for ax in fig.axes for label in ax.get_legend_handles_labels()[1]]
        assert any(label.startswith("suspect") for label in labels)
        assert "p10-p90" in fig.axes[0].get_ylabel()
    finally:
        plt.close(fig)


# ---- the files: one group ---------------------------------------------------------------------
def test_files_are_written_as_one_group(tmp_path):
    paths = output.write_outputs(frame(), tmp_path, header="h", settings={"batch": 64})
    assert sorted(paths) == sorted(output.FILES)
    csv = pd.read_csv(paths["csv"])
    data = json.loads(paths["json"].read_text())
    assert data["kind"] == output.JSON_KIND and len(data["rows"]) == len(csv) == 10
    assert paths["png"].read_bytes().startswith(b"\x89PNG")
    assert not list(tmp_path.glob(f".*{atomic.PARTIAL_MARK}*"))


def test_a_failure_midway_leaves_the_old_files_and_none_of_the_new(tmp_path, monkeypatch):
    old = {"csv": b"old table\n", "md": b"# old\n"}
    for ext, data in old.items():
        (tmp_path / f"attention-bench.{ext}").write_bytes(data)
    synced = []
    real_fsync = os.fsync

    def disk_full_on_the_third_file(fd):
        synced.append(fd)
        if len(synced) == 3:  # csv and json are on disk, md is not
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", disk_full_on_the_third_file)
    with pytest.raises(atomic.WriteError, match="attention-bench.md: No space left"):
        output.write_outputs(frame(), tmp_path)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {
        f"attention-bench.{ext}": data for ext, data in old.items()}  # no json, png, partials


def test_cli_prints_the_table_then_a_refused_write_is_one_line_exit_1(tmp_path, monkeypatch,
                                                                       capsys):
    monkeypatch.setattr(shapes, "SHAPE_SETS",
                        {**shapes.SHAPE_SETS, "textbook": (shapes.Shape("tiny", 16, 8, 24),)})

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    code = main(["bench", "attention", "--device", "cpu", "--quick", "--kernels", "eager-attn",
                 "--out", str(tmp_path / "out")])
    monkeypatch.undo()
    captured = capsys.readouterr()
    assert code == 1
    assert "eager-attn  tiny  fwd" in captured.out  # the results reached the user
    error = captured.err.strip().splitlines()[-1]
    assert error.startswith("ganbench: error: cannot write ") and "No space left" in error
    assert "table printed above is the complete result" in error
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
