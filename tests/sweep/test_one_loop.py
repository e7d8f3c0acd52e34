"""The one sweep loop (ganbench.sweep.loop): the same rows whoever runs it, per-seed rows,
resume per (combination, seed), the wall-time budget, and bad --seeds/--budget values.

Tiny settings throughout (DCGAN at 32x32, batch 8, a few steps, in-process, one thread).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from ganbench import registry as registry_module
from ganbench.cli import main
from ganbench.config import RunConfig
from ganbench.plugins.losses import BCELoss
from ganbench.scaleout.distributed import OneProcess
from ganbench.scaleout.ranks import RankStrategy
from ganbench.specs import LossSpec
from ganbench.sweep import runner
from ganbench.sweep.loop import sweep
from ganbench.sweep.matrix import Combination
from ganbench.sweep.trials import Trial

STEPS = 6
TINY = ["--warmup", "1", "--batch-size", "8", "--image-size", "32", "--device", "cpu",
        "--quiet", "--in-process"]
# Columns that depend only on the maths, not on timing or on who ran the trial.
EXACT = ("combo", "seed", "status", "steps", "d_loss_last10", "g_loss_last10", "fid_digits")


def tiny_cfg(out: Path, **changes) -> RunConfig:
    settings = dict(plugins=("dcgan",), metrics=("fid-digits",), eval_n=150, device="cpu",
                    steps=STEPS, warmup=1, batch_size=8, image_size=32, seeds=(0, 1),
                    quiet=True, isolate=False, out=out)
    return RunConfig(**{**settings, **changes})


def rows_of(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "results.json").read_text())["rows"]


def exact(rows: list[dict]) -> list[tuple]:
    return [tuple(row.get(k) for k in EXACT) for row in rows]


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: the shared 2-core machine is faster that way for tiny models."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class FakeRank(OneProcess):
    """What RankStrategy asks of torchrun's DataParallel, for rank 0 of a world of one and
    without a process group: it counts the barriers it is asked to wait at."""

    device = "cpu"

    def __init__(self):
        self.barriers = 0

    def barrier(self) -> None:
        self.barriers += 1

    def share(self, value):
        return value


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    """dcgan+bce under seeds 0 and 1, the local way (one process, in-process trials)."""
    out = tmp_path_factory.mktemp("local") / "run"
    torch.set_num_threads(1)
    run_dir, df = runner.run(tiny_cfg(out))
    assert run_dir == out and list(df["status"]) == ["ok", "ok", "reference"]
    return out


def test_the_loop_gives_the_same_rows_run_locally_and_by_a_rank_strategy(local_run, tmp_path):
    out = tmp_path / "ranks"
    rank = FakeRank()
    run_dir, df = sweep(tiny_cfg(out), RankStrategy(rank), echo=lambda *a: None)
    assert run_dir == out
    assert exact(rows_of(out)) == exact(rows_of(local_run))
    assert rows_of(out)[-1]["combo"] == "real data"  # one reference row, last, in both
    assert rank.barriers == 2 + 1  # after each recorded trial, then once at the end
    assert (out / "samples" / "dcgan+bce.seed1.png").exists()


def test_seeds_give_one_row_each_trained_as_that_seed_alone(local_run, tmp_path):
    rows = rows_of(local_run)
    assert [(r["combo"], r.get("seed")) for r in rows] == [("dcgan+bce", 0), ("dcgan+bce", 1),
                                                       ("real data", None)]
    assert rows[0]["d_loss_last10"] != rows[1]["d_loss_last10"]
    # Seed 1 of the two-seed run is exactly a one-seed run at --seed 1 (training-wise; the
    # evaluation keeps --seed 0's samples in the former, so fid_digits may differ).
    alone = tmp_path / "alone"
    runner.run(tiny_cfg(alone, seeds=(), seed=1, metrics=()))
    [single] = rows_of(alone)
    assert (single["seed"], single["d_loss_last10"], single["g_loss_last10"]) == \
        (1, rows[1]["d_loss_last10"], rows[1]["g_loss_last10"])
    # Per-seed files with several seeds; today's names with one.
    for folder, suffix in (("samples", ".png"), ("models", ".G.pt")):
        assert sorted(p.name for p in (local_run / folder).iterdir()) == \
            [f"dcgan+bce.seed{s}{suffix}" for s in (0, 1)]
        assert [p.name for p in (alone / folder).iterdir()] == [f"dcgan+bce{suffix}"]
    G0, G1 = (torch.load(local_run / "models" / f"dcgan+bce.seed{s}.G.pt")["generator"]
              for s in (0, 1))
    assert any(not torch.equal(G0[k], G1[k]) for k in G0)


def test_the_trial_seed_drives_initial_weights_and_batch_order():
    from ganbench.registry import get_registry
    from ganbench.sweep.execute import _build

    cfg = dataclasses.replace(tiny_cfg(None), dtype="fp32", memory_format="contiguous")
    combo = Combination("dcgan", "bce", None)

    def built(seed):
        models = _build(cfg, Trial(combo, seed, True), get_registry(), OneProcess(), False,
                        lambda *a, **k: None)
        return [p.detach().clone() for p in models.G.parameters()], models.batches.next()

    (w0, b0), (w1, b1), (w0_again, b0_again) = built(0), built(1), built(0)
    assert all(torch.equal(a, b) for a, b in zip(w0, w0_again)) and torch.equal(b0, b0_again)
    assert any(not torch.equal(a, b) for a, b in zip(w0, w1))
    assert not torch.equal(b0, b1)


# ------------------------------------------------------------------------------------------
# Resume per (combination, seed)
# ------------------------------------------------------------------------------------------
def test_resume_keeps_finished_trials_and_runs_only_the_rest(tmp_path, monkeypatch):
    calls = []
    stop_at = [("dcgan+hinge", 0)]

    def stub(cfg, trial, run_dir, metric_names, resume=False, **progress):
        calls.append((trial.name, trial.seed, resume))
        if (trial.name, trial.seed) in stop_at:
            stop_at.clear()
            raise KeyboardInterrupt
        return {"combo": trial.name, "status": "ok", "steps": cfg.steps, "call": len(calls)}

    monkeypatch.setattr(runner, "run_one", stub)
    out = tmp_path / "run"
    argv = ["run", "--plugins", "dcgan,bce,hinge", "--seeds", "2", "--steps", "3",
            "--metrics", "none", "--out", str(out), *TINY]
    assert main(argv) == 130
    kept = rows_of(out)
    assert [(r["combo"], r["seed"]) for r in kept] == [("dcgan+bce", 0), ("dcgan+bce", 1)]
    calls.clear()
    assert main(["run", "--resume", str(out)]) == 0
    assert calls == [("dcgan+hinge", 0, True), ("dcgan+hinge", 1, True)]
    rows = rows_of(out)
    assert rows[:2] == kept
    assert [(r["combo"], r["seed"]) for r in rows[2:]] == [("dcgan+hinge", 0), ("dcgan+hinge", 1)]
    # Resuming a finished run trains nothing.
    assert main(["run", "--resume", str(out)]) == 0 and calls[2:] == []


class StopOnce(BCELoss):
    """BCE that raises KeyboardInterrupt (a Ctrl-C) at the STOP_AT-th D step of the process,
    once: there, the second seed's trial is past its step-4 checkpoint."""

    STOP_AT = STEPS + 5
    calls = 0

    def d_loss(self, inputs):
        StopOnce.calls += 1
        if StopOnce.calls == StopOnce.STOP_AT:
            raise KeyboardInterrupt
        return super().d_loss(inputs)


def test_an_interrupted_seed_continues_from_its_own_checkpoint(local_run, tmp_path):
    StopOnce.calls = 0
    registry = registry_module.get_registry()
    registry.add("loss", LossSpec("stop-once", "BCE, interrupted once", StopOnce), "test")
    out = tmp_path / "run"
    try:
        argv = ["run", "--plugins", "dcgan,stop-once", "--seeds", "2", "--steps", str(STEPS),
                "--checkpoint-every", "2", "--metrics", "none", "--out", str(out), *TINY]
        assert main(argv) == 130
        assert [r["seed"] for r in rows_of(out)] == [0]
        assert sorted(p.name for p in (out / "checkpoints").glob("*.pt")) == \
            ["dcgan+stop-once.seed1.pt"]
        assert main(["run", "--resume", str(out)]) == 0
    finally:
        del registry.entries["loss"]["stop-once"]
    first, resumed = rows_of(out)
    assert resumed["seed"] == 1 and resumed["resumed_from_step"] == 4
    # The same maths as dcgan+bce's seeds without the interrupt.
    want = {r["seed"]: r for r in rows_of(local_run)[:2]}
    for row in (first, resumed):
        assert (row["d_loss_last10"], row["g_loss_last10"]) == \
            (want[row["seed"]]["d_loss_last10"], want[row["seed"]]["g_loss_last10"])
    assert not list((out / "checkpoints").glob("*.pt"))


# ------------------------------------------------------------------------------------------
# --budget and bad values
# ------------------------------------------------------------------------------------------
def test_budget_trains_for_the_wall_time_and_records_the_steps(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--plugins", "dcgan", "--budget", "1.5s", "--metrics", "none",
                 "--out", str(out), *TINY]) == 0
    [row] = rows_of(out)
    assert row["budget_s"] == 1.5 and row["status"] == "ok"
    assert row["train_wall_s"] >= 1.5
    assert row["steps"] == row["timed_steps"] + 1  # every step but the warm-up one is timed
    assert json.loads((out / "config.json").read_text())["steps"] is None


@pytest.mark.parametrize("argv, fragment", [
    (["--seeds", "0"], "--seeds must be at least 1, got 0"),
    (["--seeds", "a,b"], "--seeds takes a count K"),
    (["--seeds", "1,1"], "--seeds lists seed 1 twice"),
    (["--seeds", "3,-1"], "--seeds must be integers from 0"),
    (["--budget", "-3s"], "--budget takes a positive wall time"),
    (["--budget", "xyz"], "--budget takes a positive wall time"),
    (["--budget", "0m"], "--budget takes a positive wall time"),
    (["--budget", "5s", "--steps", "3"], "--budget and --steps"),
    (["--target-fid", "100", "--metrics", "none"], "--target-fid needs a metric"),
])
def test_bad_seeds_and_budgets_are_one_line_exit_2_before_any_file(tmp_path, capsys, argv,
                                                                   fragment):
    out = tmp_path / "never"
    code = main(["run", "--plugins", "dcgan", "--device", "cpu", "--out", str(out), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("ganbench: error:") and fragment in err[0]
    assert not out.exists()


def test_seeds_and_budget_are_settings_resume_will_not_change(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path), "--seeds", "3"]) == 2
    assert "drop --seeds" in capsys.readouterr().err
