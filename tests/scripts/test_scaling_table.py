"""scripts/scaling_table.py: the cell plan, failures, --resume, the table and plot, bad input.

Most tests drive the script with a stand-in for `ganbench run` (--ganbench; FAKE below: no
torch, ~0.05 s a cell) that writes a results.csv with numbers computed from the cell's
settings, so every value in the table can be checked by hand. The real CLI runs in
test_real_cells_end_to_end (slow) and test_real_unknown_kernel_is_a_failed_cell.
"""

import importlib.util
import shlex
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import assert_one_line_error

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "scaling_table.py"
spec = importlib.util.spec_from_file_location("scaling_table", SCRIPT)
scaling_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scaling_table)

# The stand-in: step ms = size * batch / 8 (eager-attn: twice that), peak = size^2 * batch KiB,
# load 5 on 2 cores for the sdpa cells at batch 4 (else 0.5); special kernels and flags make the
# failures a real run can have.
FAKE = r'''
import csv, os, signal, sys, time
from pathlib import Path
args = sys.argv[1:]
opt = lambda name: args[args.index(name) + 1]
out, kernel = Path(opt("--out")), opt("--plugins").split(",")[1]
size, batch = int(opt("--image-size")), int(opt("--batch-size"))
with open(out.parent / "calls.txt", "a") as fh:
    fh.write(out.name + "\n")
if args[0] != "run" or "--bogus" in args:
    sys.exit(print("ganbench: error: unrecognized argument --bogus", file=sys.stderr) or 2)
if kernel == "hang-attn":
    time.sleep(60)
if kernel == "kill-attn":
    os.kill(os.getpid(), signal.SIGKILL)
ms = size * batch / 8 * (2 if kernel == "eager-attn" else 1)
row = dict(combo="sagan+hinge+" + kernel, status="ok", step_ms_median=ms, step_ms_p10=0.9 * ms,
           step_ms_p90=1.1 * ms, img_per_s=batch / ms * 1000, dtype="bf16", cores=2,
           peak_mem_bytes=size * size * batch * 1024, peak_mem_delta_bytes=size * batch * 1024,
           load_avg_start=5.0 if out.name.endswith("b4-sdpa") else 0.5)
if kernel == "oom-attn":
    row.update(status="oom", error="MemoryError: cannot allocate", step_ms_median="")
if kernel == "crash-attn":
    row = dict(combo="sagan+hinge+crash-attn", status="crashed", error="worker was killed by "
               "SIGKILL before reporting (the system's out-of-memory killer sends SIGKILL)")
out.mkdir(parents=True, exist_ok=True)
with open(out / "results.csv", "w", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=list(row))
    writer.writeheader()
    writer.writerow(row)
print("results:", out)
'''


@pytest.fixture
def fake(tmp_path):
    path = tmp_path / "fake_ganbench.py"
    path.write_text(FAKE)
    return shlex.join([sys.executable, str(path)])


def run(out, *extra, sizes="32,64", batches="2,4", variants="eager,sdpa,best", **options):
    argv = ["--out", str(out), "--image-sizes", sizes, "--batches", batches,
            "--variants", variants, "--steps", "2", "--warmup", "1", *extra]
    for key, value in options.items():
        argv.append(f"--{key.replace('_', '-')}={value}")  # = : values that start with --
    return scaling_table.main(argv)


def calls(out) -> list[str]:
    path = out / "cells" / "calls.txt"
    return path.read_text().split() if path.exists() else []


def table(out) -> pd.DataFrame:
    return pd.read_csv(out / "table.csv").set_index(["image_size", "batch_size", "variant"])


def test_cells_run_small_to_large_and_every_number_comes_from_its_row(tmp_path, fake):
    out = tmp_path / "scale"
    assert run(out, ganbench=fake, best_flags="--memory-format contiguous") == 0
    # pixels per step: 32^2*2 < 32^2*4 < 64^2*2 < 64^2*4; variants in their own order
    assert calls(out) == [f"{s}px-b{b}-{v}" for s, b in ((32, 2), (32, 4), (64, 2), (64, 4))
                          for v in ("eager", "sdpa", "best")]
    df = table(out)
    assert len(df) == 12 and set(df["status"]) == {"ok"}
    eager = df.loc[(64, 4, "eager")]
    assert eager["step_ms_median"] == 64 * 4 / 8 * 2 and eager["step_ms_p90"] == 1.1 * 64
    assert eager["peak_mem_bytes"] == 64 * 64 * 4 * 1024 and eager["kernel"] == "eager-attn"
    assert eager["peak_mem_delta_bytes"] == 64 * 4 * 1024 and eager["dtype"] == "bf16"
    # sagan's largest attention site: G's last block, (size/2)^2 tokens
    assert df.loc[(64, 4, "best"), "attention_n"] == 1024
    assert df.loc[(32, 2, "sdpa"), "attention_n"] == 256
    best = df.loc[(32, 2, "best")]
    assert best["kernel"] == "sdpa-attn" and best["flags"] == "--memory-format contiguous"
    words = shlex.split(best["command"])
    assert words[-2:] == ["--memory-format", "contiguous"]
    assert words[words.index("--out") + 1] == str(out / "cells" / "32px-b2-best")
    assert {"--metrics", "none", "--device", "cpu", "--quiet"} <= set(words)
    md = (out / "table.md").read_text()
    # step ms row at 64 px batch 4: eager 64, sdpa 32, best 32; peak 16 MiB each;
    # eager's scores: 4 * 1024^2 * 2 bytes (bf16) = 8 MiB
    assert "| 64 | 4 | 1024 | 64.0 | 32.0 † | 32.0 |" in md
    assert "| 64 | 4 | 1024 | 16.0 | 16.0 | 16.0 | 8.0 (bf16) |" in md  # † marks timings only
    assert "| 32 | 2 | 256 | 16.0 | 8.00 | 8.00 |" in md  # 3 significant figures
    # a timing the load makes unreliable: ganbench's own rule (load > cores + 1)
    assert df.loc[(32, 4, "sdpa"), "timing_note"] == "load 5.0 on 2 cores"
    assert pd.isna(df.loc[(32, 4, "eager"), "timing_note"])
    assert "† timed under load: 32 px b4 sdpa (load 5.0 on 2 cores); 64 px b4 sdpa (load " \
           "5.0 on 2 cores)\n" in md
    assert "best: `--plugins sagan,sdpa-attn` --memory-format contiguous" in md
    from PIL import Image

    with Image.open(out / "scaling.png") as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 600


@pytest.mark.parametrize("how, status, error", [
    (dict(best_kernel="kill-attn"), "oom", "killed by SIGKILL"),
    (dict(best_kernel="crash-attn"), "oom", "crashed: worker was killed by SIGKILL"),
    (dict(best_kernel="oom-attn"), "oom", "MemoryError"),
    (dict(best_flags="--bogus"), "failed", "ganbench: error: unrecognized argument --bogus"),
    (dict(best_kernel="hang-attn", cell_timeout=0.5), "timeout", "--cell-timeout 0.5 s"),
])
def test_a_failed_cell_is_recorded_and_the_others_still_run(tmp_path, fake, how, status, error):
    out = tmp_path / "scale"
    assert run(out, ganbench=fake, sizes="32", batches="2,4", variants="eager,best",
               **how) == 0
    assert calls(out) == ["32px-b2-eager", "32px-b2-best", "32px-b4-eager", "32px-b4-best"]
    df = table(out)
    assert list(df["status"]) == ["ok", status, "ok", status]
    assert error in df.loc[(32, 4, "best"), "error"]
    assert df.loc[(32, 4, "eager"), "step_ms_median"] == 32 * 4 / 8 * 2
    # an oom row keeps the peak memory it has; the table shows the status, not a number
    peak = df.loc[(32, 4, "best"), "peak_mem_bytes"]
    assert (peak == 32 * 32 * 4 * 1024) if how.get("best_kernel") == "oom-attn" else pd.isna(peak)
    shown = {"oom": "OOM", "timeout": "timeout", "failed": "failed"}[status]
    assert f"| 32 | 4 | 256 | 32.0 | {shown} |" in (out / "table.md").read_text()
    assert (out / "scaling.png").stat().st_size > 0


def test_resume_keeps_finished_cells_and_reruns_changed_or_missing_ones(tmp_path, fake):
    out = tmp_path / "scale"
    assert run(out, ganbench=fake, sizes="32", variants="eager,best") == 0
    first = (out / "table.csv").read_text()
    assert len(calls(out)) == 4
    assert run(out, "--resume", ganbench=fake, sizes="32", variants="eager,best") == 0
    assert len(calls(out)) == 4 and (out / "table.csv").read_text() == first
    # an interrupted run: its last cell has no row yet
    df = pd.read_csv(out / "table.csv")
    df[:-1].to_csv(out / "table.csv", index=False)
    assert run(out, "--resume", ganbench=fake, sizes="32", variants="eager,best") == 0
    assert calls(out)[4:] == ["32px-b4-best"]
    # other settings for best: only best's cells run again
    assert run(out, "--resume", ganbench=fake, sizes="32", variants="eager,best",
               best_flags="--dtype fp32") == 0
    assert calls(out)[5:] == ["32px-b2-best", "32px-b4-best"]
    assert set(table(out)["status"]) == {"ok"} and len(table(out)) == 4


def test_an_existing_table_is_never_overwritten_by_accident(tmp_path, fake, capsys):
    out = tmp_path / "scale"
    assert run(out, ganbench=fake, sizes="32", batches="2", variants="sdpa") == 0
    before = (out / "table.csv").read_text()
    capsys.readouterr()
    code = run(out, ganbench=fake, sizes="32", batches="2", variants="eager")
    assert_one_line_error(code, capsys.readouterr().err, "--resume", "--force")
    assert (out / "table.csv").read_text() == before
    assert run(out, "--force", ganbench=fake, sizes="32", batches="2", variants="eager") == 0
    assert list(table(out).index) == [(32, 2, "eager")]


@pytest.mark.parametrize("changes, fragment", [
    (dict(variants="eager,flash"), "unknown variant 'flash'; choose from eager, sdpa"),
    (dict(sizes="32,48"), "powers of two, got 48"),
    (dict(sizes="16,32"), "sagan does not build 16x16 images; --image-sizes must be of 32, 64"),
    (dict(batches="2,x"), "--batches must be comma-separated whole numbers"),
    (dict(batches="0"), "--batches must be positive"),
    (dict(best_flags="--steps 9"), "must not set --steps"),
    (dict(run_flags="--out=x"), "must not set --out"),
    (dict(run_flags="--dtype 'bf16"), "No closing quotation"),
    (dict(extra=("--warmup", "2")), "0 <= --warmup < --steps"),
    (dict(extra=("--cell-timeout", "0")), "--cell-timeout must be positive"),
    (dict(extra=("--colour",)), "unrecognized arguments: --colour"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, changes, fragment):
    extra = changes.pop("extra", ())
    code = run(tmp_path / "scale", *extra, **changes)
    assert_one_line_error(code, capsys.readouterr().err, fragment)
    assert not (tmp_path / "scale").exists()


def test_real_unknown_kernel_is_a_failed_cell(tmp_path):
    out = tmp_path / "scale"
    assert run(out, sizes="32", batches="2", variants="best", best_kernel="nope-attn") == 0
    row = table(out).loc[(32, 2, "best")]
    assert row["status"] == "failed" and row["exit_code"] == 2
    assert row["error"].startswith("ganbench: error: unknown plugin 'nope-attn'")
    assert shlex.split(row["command"])[:2] == ["ganbench", "run"]


@pytest.mark.slow
def test_real_cells_end_to_end(tmp_path):
    """Two real cells (32 px, batch 2, 2 steps) and a --resume: 26-32 s on the loaded 2-core VM."""
    out = tmp_path / "scale"
    assert run(out, sizes="32", batches="2", variants="eager,best",
               best_flags="--memory-format contiguous") == 0
    df = table(out)
    for variant in ("eager", "best"):
        row = df.loc[(32, 2, variant)]
        cell_row = pd.read_csv(out / "cells" / f"32px-b2-{variant}" / "results.csv").iloc[0]
        assert row["status"] == "ok" and row["step_ms_median"] == cell_row["step_ms_median"]
        assert row["peak_mem_bytes"] == cell_row["peak_mem_bytes"] > 0
    assert pd.read_csv(out / "cells" / "32px-b2-best" / "results.csv").iloc[0][
        "memory_format"] == "contiguous"
    stamp = (out / "cells" / "32px-b2-eager" / "results.csv").stat().st_mtime_ns
    assert run(out, "--resume", sizes="32", batches="2", variants="eager,best",
               best_flags="--memory-format contiguous") == 0
    assert (out / "cells" / "32px-b2-eager" / "results.csv").stat().st_mtime_ns == stamp
