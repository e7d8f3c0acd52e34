"""Issue 14, case 6: each bad input is one line on stderr, exit 2, no traceback, nothing
written. (`report` on a bad table and `bench attention --out EXISTING` are tested with those
commands.)"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch

from helpers import one_line_exit_2, tiny_run_args

from ganbench.cli import main
from ganbench.scaleout.pool import usable_cpus

TINY = tiny_run_args()


@pytest.mark.parametrize("extra, fragment", [
    (["--nproc", "3", "--batch-size", "8"], "--batch-size 8 is the global batch and must be "
                                            "divisible by the 3 ranks"),
    (["--nproc", str(usable_cpus() + 1), "--batch-size", str(8 * (usable_cpus() + 1))],
     f"is more than the {usable_cpus()} CPU core(s)"),
    (["--nproc", "99", "--batch-size", "99"], "more than the"),
    (["--nproc", "0"], "--nproc must be a positive integer"),
    (["--retry-failed"], "--retry-failed goes with --resume"),
])
def test_run_arguments_checked_before_torchrun_starts(tmp_path, extra, fragment):
    out = tmp_path / "never"
    argv = ["run", "--plugins", "dcgan", "--out", str(out), *TINY]
    for flag, value in zip(extra[::2], extra[1::2]):  # later values win in argparse anyway
        argv += [flag, value]
    if extra == ["--retry-failed"]:
        argv.append("--retry-failed")
    one_line_exit_2(argv, fragment)
    assert not out.exists()


def test_a_kernel_option_is_validated_at_plan_time(tmp_path):
    if not shutil.which("g++") and not shutil.which("clang++"):
        pytest.skip("compile-attn needs a C++ compiler here")
    out = tmp_path / "never"
    one_line_exit_2(["run", "--plugins", "sagan,compile-attn", "--option",
                     "compile-attn.mode=bogus", "--out", str(out), *TINY],
                    "--option compile-attn.mode: compile-attn rejects it: Unrecognized "
                    "mode=bogus")
    assert not out.exists()


def test_too_few_samples_for_a_knn_metric(tmp_path):
    out = tmp_path / "never"
    line = one_line_exit_2(["run", "--plugins", "dcgan", "--out", str(out), *TINY,
                            "--metrics", "prdc", "--eval-n", "2"],
                           "cannot score --eval-n 2 samples")
    assert "k-nearest neighbours" in line and "raise --eval-n" in line
    assert not out.exists()


def _idx(path: Path, magic: int, shape: tuple, data: bytes = b"") -> None:
    path.write_bytes(struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in shape)
                     + data)


def test_idx_images_with_zero_columns(tmp_path):
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    for split in ("train", "t10k"):
        _idx(mnist / f"{split}-images-idx3-ubyte", 2051, (10, 28, 0))
        _idx(mnist / f"{split}-labels-idx1-ubyte", 2049, (10,), bytes([7] * 10))
    out = tmp_path / "never"
    one_line_exit_2(["run", "--plugins", "dcgan", "--data", f"mnist:{mnist}", "--out", str(out),
                     *TINY], "28 rows x 0 columns; an image needs at least one")
    assert not out.exists()


# ------------------------------------------------------------------------------------------
# Edited and hostile weight files
# ------------------------------------------------------------------------------------------
class Payload:
    """Unpickling this would run code: os.system at load time."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/ganbench-pwned",))


def _generator_file(tmp_path: Path) -> tuple[Path, dict]:
    from ganbench.plugins import dcgan
    from ganbench.specs import ModelRequest

    G, _ = dcgan.build(ModelRequest(32, 100))
    saved = {"generator": G.state_dict(), "architecture": "dcgan", "attention": None,
             "image_size": 32, "z_dim": 100}
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    return run, saved


def _edit(saved: dict, how: str):
    if how == "hostile":
        return {**saved, "generator": Payload()}
    if how == "not a dict":
        return [1, 2, 3]
    if how == "image size text":
        return {**saved, "image_size": "abc"}
    if how == "huge z":
        return {**saved, "z_dim": 10**9}
    if how == "wrong shapes":
        return {**saved, "generator": {k: v.reshape(-1)[:1] for k, v in saved["generator"].items()}}
    if how == "unknown architecture":
        return {**saved, "architecture": "nosuch"}
    raise AssertionError(how)


@pytest.mark.parametrize("how, fragment", [
    ("hostile", "is not a ganbench generator file, or may be unsafe"),
    ("not a dict", "no generator weights in it"),
    ("image size text", "image_size is 'abc'"),
    ("huge z", "z_dim is 1000000000"),
    ("wrong shapes", "its tensors do not fit the model"),
    ("unknown architecture", "unknown"),
    ("truncated", "not a readable ganbench generator file"),
])
def test_sample_refuses_edited_or_hostile_generators(tmp_path, how, fragment):
    run, saved = _generator_file(tmp_path)
    path = run / "models" / "dcgan+bce.G.pt"
    if how == "truncated":
        torch.save(saved, path)
        path.write_bytes(path.read_bytes()[:1000])
    else:
        torch.save(_edit(saved, how), path)
    out = tmp_path / "samples.npz"
    line = one_line_exit_2(["sample", str(run), "--combo", "dcgan+bce", "--n", "4",
                            "--device", "cpu", "--out", str(out)], fragment)
    assert "weights_only=False" not in line and "trust" not in line  # no advice to disable
    assert not out.exists()
    assert not Path("/tmp/ganbench-pwned").exists()


def test_sample_writes_atomically_from_a_good_file(tmp_path):
    import numpy as np

    run, saved = _generator_file(tmp_path)
    torch.save(saved, run / "models" / "dcgan+bce.G.pt")
    out = tmp_path / "samples"  # no .npz suffix: written exactly here, not samples.npz
    assert main(["sample", str(run), "--combo", "dcgan+bce", "--n", "4", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert np.load(out, allow_pickle=False)["images"].shape == (4, 32, 32)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("how, fragment", [
    ("hostile", "is not a ganbench digit-classifier file, or may be unsafe"),
    ("wrong shapes", "its tensors do not fit the model"),
    ("bad record", "not a readable ganbench digit-classifier file"),
])
def test_classifier_eval_refuses_edited_or_hostile_weights(tmp_path, how, fragment):
    path = tmp_path / "w.pt"
    torch.save({"x": Payload()} if how == "hostile" else {"conv.weight": torch.zeros(2)}, path)
    record = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}  # a matching checksum
    path.with_suffix(".json").write_text("{oops" if how == "bad record" else json.dumps(record))
    line = one_line_exit_2(["classifier", "eval", "--weights", str(path)], fragment)
    assert "weights_only=False" not in line and "trust" not in line
    assert not Path("/tmp/ganbench-pwned").exists()


# ------------------------------------------------------------------------------------------
# --resume and the world size
# ------------------------------------------------------------------------------------------
def _saved_run(tmp_path: Path, world_size: int) -> Path:
    from ganbench.config import RunConfig

    out = tmp_path / "run"
    out.mkdir()
    cfg = RunConfig(plugins=("dcgan",), metrics=(), device="cpu", steps=4, warmup=1,
                    batch_size=8, image_size=32, out=out, world_size=world_size)
    (out / "config.json").write_text(json.dumps(cfg.to_dict()))
    return out


def test_resume_of_a_two_rank_run_without_nproc_says_how(tmp_path):
    out = _saved_run(tmp_path, 2)
    one_line_exit_2(["run", "--resume", str(out)],
                    f"was run on 2 ranks and this resume has 1; continue it with: ganbench run "
                    f"--resume {out} --nproc 2")
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]


def test_resume_on_more_ranks_than_the_run_had(tmp_path):
    out = _saved_run(tmp_path, 1)
    one_line_exit_2(["run", "--resume", str(out), "--nproc", "2"],
                    f"was run on 1 process and this resume has 2; continue it with: ganbench "
                    f"run --resume {out}")
