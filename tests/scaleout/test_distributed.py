"""Scale-out: DDP under torchrun (2 CPU ranks, gloo), the sharded sampler, --jobs, --nproc.

The multi-process tests use tiny settings (32x32, global batch 8, 3 steps, no metrics) so the
whole file stays well under a minute on 2 cores.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from ganbench.commands import run as cmd_run
from ganbench.scaleout import pool as scaleout
from ganbench.scaleout.distributed import DUMP_ENV, ShardedBatches, first_nonfinite
from ganbench.scaleout.grad_sync import any_rank
from ganbench.scaleout.ranks import check
from ganbench.errors import ConfigError
from ganbench.training.loop import Batches

TINY = ["--device", "cpu", "--image-size", "32", "--batch-size", "8", "--steps", "3",
        "--warmup", "1", "--metrics", "none", "--seed", "3"]


# ------------------------------------------------------------------------------------------
# Pieces, in one process
# ------------------------------------------------------------------------------------------
def test_shards_are_disjoint_and_together_are_the_one_process_batch():
    images = torch.arange(23, dtype=torch.float32).reshape(23, 1, 1, 1)
    whole = Batches(images, 6, seed=5)
    ranks = [ShardedBatches(images, 6, seed=5, rank=r, world_size=3) for r in range(3)]
    seen = []
    for _ in range(7):  # past the end of an epoch (3 global batches of 6 from 23 images)
        shards = [b.next().flatten().tolist() for b in ranks]
        assert all(len(s) == 2 for s in shards)
        assert sum(shards, []) == whole.next().flatten().tolist()
        seen.append(shards)
    epoch = [x for step in seen[:3] for shard in step for x in shard]
    assert len(epoch) == len(set(epoch)) == 18  # disjoint within the epoch
    with pytest.raises(ValueError, match="divisible"):
        ShardedBatches(images, 7, seed=0, rank=0, world_size=2)


def test_first_nonfinite_finds_the_first_bad_step_or_none():
    losses = torch.ones(5, 2)
    assert first_nonfinite(losses, torch.nn.Linear(1, 1)) is None
    losses[3, 1] = float("inf")
    losses[4, 0] = float("nan")
    assert first_nonfinite(losses, torch.nn.Linear(1, 1)) == 3


def test_options_round_trip_without_nproc():
    parser = argparse.ArgumentParser()
    cmd_run.add_arguments(parser)
    argv = ["--plugins", "dcgan,sagan", "--steps", "7", "--in-process", "--out", "x/y",
            "--option", "compile-attn.mode=default", "--nproc", "4", "--scaling"]
    args = parser.parse_args(argv)
    again = parser.parse_args(scaleout.options_argv(args, cmd_run.add_arguments))
    assert "--nproc" not in scaleout.options_argv(args, cmd_run.add_arguments)
    assert vars(again) == {**vars(args), "nproc": None}
    command = scaleout.torchrun_command(4, ["--steps", "7"])
    assert command[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4",
                           "-m", "ganbench", "run", "--steps", "7"]


def test_each_finished_runs_k_at_once():
    both_started = threading.Barrier(2, timeout=10)  # deadlocks unless 2 run at once

    def work(name):
        if name in ("a", "b"):
            both_started.wait()
        time.sleep(0.2 if name == "a" else 0.0)
        return {"combo": name}

    finished = [item for item, _ in scaleout.each_finished(["a", "b", "c"], work, jobs=2)]
    assert sorted(finished) == ["a", "b", "c"] and finished[0] != "a"

    def boom(name):
        raise RuntimeError(name)

    with pytest.raises(RuntimeError):
        list(scaleout.each_finished(["x", "y"], boom, jobs=2))


def test_options_that_need_ranks_fail_clearly_without_them(tmp_path):
    from ganbench.config import RunConfig

    with pytest.raises(ConfigError, match="--sync-bn needs several ranks"):
        scaleout.check_one_process(RunConfig(plugins=("dcgan",), sync_bn=True))
    with pytest.raises(ConfigError, match="divisible by the 3 ranks"):
        check(RunConfig(plugins=("dcgan",), batch_size=8, device="cpu"), 3)
    with pytest.raises(ConfigError, match="needs CUDA"):
        check(RunConfig(plugins=("dcgan",), sync_bn=True, device="cpu"), 2)
    with pytest.raises(ConfigError, match="--in-process"):
        RunConfig(plugins=("dcgan",), jobs=2, isolate=False)


# ------------------------------------------------------------------------------------------
# DDP's gradient for the D step (two D calls, one backward) is the full-batch gradient
# ------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _models():
    from ganbench.plugins import sagan
    from ganbench.plugins.attention import attend_eager
    from ganbench.specs import ModelRequest

    torch.manual_seed(0)
    G, D = sagan.build(ModelRequest(32, 8, attend=attend_eager))  # spectral norm + attention
    gen = torch.Generator().manual_seed(1)
    real = torch.rand(8, 1, 32, 32, generator=gen) * 2 - 1
    fake = G(torch.randn(8, 8, 1, 1, generator=gen)).detach()
    return D, real, fake


def _d_grads(D):
    return {n: p.grad.clone() for n, p in D.named_parameters() if p.grad is not None}


def _rank(rank: int, port: int, out: str) -> None:
    """One of two ranks: the train.py D step under DDP on this rank's half, then a G-step-like
    backward through D under grad_sync_off; saves D's gradients after each, and what
    any_rank answers for flags that differ between the ranks."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from ganbench.scaleout.distributed import grad_sync_off
    from ganbench.scaleout.grad_sync import any_rank
    from ganbench.plugins.losses import HingeLoss
    from ganbench.specs import LossInputs

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        D, real, fake = _models()
        ddp = DistributedDataParallel(D)
        half = slice(4 * rank, 4 * rank + 4)
        HingeLoss().d_loss(LossInputs(fake_logits=ddp(fake[half]),
                                      real_logits=ddp(real[half]))).backward()
        d_step = _d_grads(D)
        D.zero_grad(set_to_none=True)
        with grad_sync_off(ddp):
            logits = ddp(fake[half])
        HingeLoss().g_loss(LossInputs(fake_logits=logits)).backward()
        flags = [any_rank(rank == 0, ddp), any_rank(rank == 1, ddp), any_rank(False, ddp)]
        torch.save({"d_step": d_step, "g_step": _d_grads(D), "any_rank": flags},
                   f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_d_step_gradient_equals_the_full_batch_gradient(tmp_path):
    from ganbench.plugins.losses import HingeLoss
    from ganbench.specs import LossInputs

    torch.multiprocessing.spawn(_rank, args=(_free_port(), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    D, real, fake = _models()  # one process, the whole batch of 8, the same two calls
    HingeLoss().d_loss(LossInputs(fake_logits=D(fake), real_logits=D(real))).backward()
    full = _d_grads(D)
    assert set(full) == set(ranks[0]["d_step"])  # every D parameter got a gradient
    for name, grad in full.items():
        for r in range(2):
            torch.testing.assert_close(ranks[r]["d_step"][name], grad, atol=1e-6, rtol=1e-5,
                                       msg=f"rank {r} {name}")
    # Under grad_sync_off the G step's D gradients stay local (no all-reduce): they differ.
    assert any(not torch.equal(ranks[0]["g_step"][n], ranks[1]["g_step"][n])
               for n in ranks[0]["g_step"])
    # A budget spent on one rank's clock is spent on both; in one process the flag is itself.
    assert [r["any_rank"] for r in ranks] == [[True, True, False]] * 2
    assert any_rank(True, D) is True and any_rank(False, D) is False


# ------------------------------------------------------------------------------------------
# The real thing: `ganbench run --nproc 2` (torchrun, two gloo ranks)
# ------------------------------------------------------------------------------------------
def _ganbench(args, tmp_path, dump):
    env = {**os.environ, DUMP_ENV: str(dump)}
    return subprocess.run([sys.executable, "-m", "ganbench", "run", *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)


def _dumps(folder: Path, combo: str):
    return [torch.load(folder / f"{combo}.rank{r}.pt") for r in range(2)]


def test_two_ranks_stay_in_sync_rank0_writes_once_and_seeds_repeat(tmp_path):
    out = tmp_path / "run"
    done = _ganbench(["--plugins", "dcgan,sagan", "--nproc", "2", "--out", str(out), *TINY],
                     tmp_path, tmp_path / "dump")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("results: ") == 1  # only rank 0 prints

    df = pd.read_csv(out / "results.csv")
    assert df["combo"].tolist() == ["dcgan+bce", "sagan+hinge+eager-attn"]  # once each
    assert (df["status"] == "ok").all() and (df["steps"] == 3).all()
    assert (df["world_size"] == 2).all() and (df["per_rank_batch"] == 4).all()
    assert (df["batch_size"] == 8).all() and (df["ddp_backend"] == "gloo").all()
    assert df["img_per_s"].tolist() == pytest.approx((8 / (df["step_ms_median"] / 1000)).tolist())
    assert json.loads((out / "config.json").read_text())["batch_size"] == 8  # written once

    for combo in df["combo"]:
        rank0, rank1 = _dumps(tmp_path / "dump", combo)
        assert rank0.keys() == rank1.keys()
        for key in rank0:  # parameters, spectral-norm u/v and BatchNorm stats alike
            assert torch.equal(rank0[key], rank1[key]), f"{combo}: {key} differs across ranks"
        G = torch.load(out / "models" / f"{combo}.G.pt")["generator"]
        assert all(torch.equal(G[k], rank0[f"G.{k}"]) for k in G)  # the saved G is rank 0's

    # Same seed and N again, now with --scaling: rank 0 first trains alone, then the 2-rank
    # run must come out bit-for-bit the same as before, with an efficiency beside it.
    again = tmp_path / "again"
    done = _ganbench(["--plugins", "dcgan", "--nproc", "2", "--scaling", "--out", str(again),
                      *TINY], tmp_path, tmp_path / "dump2")
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = _dumps(tmp_path / "dump", "dcgan+bce")[0], _dumps(tmp_path / "dump2",
                                                                         "dcgan+bce")[0]
    assert all(torch.equal(first[k], second[k]) for k in first)
    row = pd.read_csv(again / "results.csv").iloc[0]
    assert row["d_loss_last10"] == df.iloc[0]["d_loss_last10"]
    base = pd.read_csv(again / "scaling-1rank" / "results.csv").iloc[0]
    assert base["world_size"] == 1 and base["batch_size"] == 4 and base["status"] == "ok"
    assert row["img_per_s_1rank"] == pytest.approx(base["img_per_s"])
    assert row["scaling_efficiency"] == pytest.approx(
        row["img_per_s"] / (2 * base["img_per_s"]))


def test_jobs_trains_combinations_side_by_side_and_keeps_plan_order(tmp_path):
    from ganbench.cli import main

    out = tmp_path / "run"
    assert main(["run", "--plugins", "sagan,dcgan", "--jobs", "2", "--out", str(out), "--quiet",
                 *TINY]) == 0
    df = pd.read_csv(out / "results.csv")
    # Plan order (sagan first, as named), although the quicker dcgan usually finishes first.
    assert df["combo"].tolist() == ["sagan+hinge+eager-attn", "dcgan+bce"]
    assert (df["status"] == "ok").all() and (df["parallel_jobs"] == 2).all()
    # Each worker got cpu_count/2 threads instead of all of them.
    assert (df["torch_threads"] == max(1, (os.cpu_count() or 1) // 2)).all()


@pytest.mark.slow  # ~40 s on the shared 2-core machine: one torchrun start, four trainings
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="two ranks need two cores")
def test_two_ranks_agree_when_a_budget_runs_out_and_train_every_seed(tmp_path):
    # Each rank reads its own clock; were they to stop at different steps, the rank going on
    # would wait in DDP's all-reduce forever (the subprocess timeout would fail the test).
    out = tmp_path / "run"
    i = TINY.index("--steps")
    args = TINY[:i] + TINY[i + 2:]  # the budget instead of the steps
    done = _ganbench(["--plugins", "dcgan", "--nproc", "2", "--budget", "2s", "--seeds", "2",
                      "--out", str(out), *args], tmp_path, tmp_path / "dump")
    assert done.returncode == 0, done.stderr[-3000:]
    df = pd.read_csv(out / "results.csv")
    assert df["seed"].tolist() == [3, 4] and (df["status"] == "ok").all()
    assert (df["budget_s"] == 2.0).all() and (df["steps"] > 1).all()
    assert (df["train_wall_s"] >= 2.0).all()
    for seed in (3, 4):
        rank0, rank1 = _dumps(tmp_path / "dump", f"dcgan+bce.seed{seed}")
        assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
