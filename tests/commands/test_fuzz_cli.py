"""Fuzzing what a user types and what they point ganbench at.

`ganbench run` with arguments drawn from valid and invalid values must end with exit code 0, 1 or
2 (never a traceback), a bad value must get one `ganbench: error:` line, and a results file must
never be partial: either absent (bad input writes nothing) or complete in all three formats.
Training is replaced by a stub row (ganbench.sweep.runner.run_one), so only the CLI, the config, the
plan (names, device, data) and the writing of results run: a few hundred ms an example.

The image-folder reader gets random bytes named .png and random folder layouts: it returns a
valid array or raises DataError, nothing else. (The IDX reader is fuzzed in test_data.py.)
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from helpers import assert_one_line_error, call_main

from ganbench import data
from ganbench.errors import DataError
from ganbench.sweep import runner


def png_bytes(array: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Data folders a user might name with --data folder:DIR."""
    root = tmp_path_factory.mktemp("folders")
    paths = {name: root / name for name in ("empty", "corrupt", "tiny", "unlabelled")}
    for path in paths.values():
        path.mkdir()
    (paths["corrupt"] / "img_7_0.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    for i in range(12):
        (paths["tiny"] / f"img_{7 + i % 2}_{i}.png").write_bytes(png_bytes(digit))
        (paths["unlabelled"] / f"scan{i}.png").write_bytes(png_bytes(digit))
    return paths


def values(*items):
    return st.sampled_from(items)


SMALL_INTS = st.integers(-2, 4)

# Each example starts from a small valid run (BASE) and changes up to three options, each to a
# value drawn from its strategy below: valid values mixed with wrong ones, DROP removes it.
# --nproc would exec torchrun, replacing the test process: os.execv is stubbed to exit 0 there
# (every check before it has run by then).
DROP = "<drop>"
BASE = {"--plugins": "dcgan", "--metrics": "none", "--device": "cpu", "--steps": "2",
        "--warmup": "1", "--batch-size": "8", "--image-size": "32", "--out": "{tmp}/run"}
OPTIONS = {
    "--plugins": values("dcgan", "sagan", "dcgan,sagan", "dcgan,hinge", "sagn", "", ",",
                        "fid-digits", "embedded", "dcgan,eager-attn", "triton-attn", DROP),
    "--metrics": values("none", "nosuch", "none,", "", DROP),
    "--out": values("{tmp}/run", "{tmp}/a/b/run", "{tmp}/file/run"),  # the last: under a file
    "--data": values("embedded", "embedded:x", "nosuch", "mnist", "mnist:/nonexistent",
                     "folder", "folder:/nonexistent", "folder:{empty}", "folder:{corrupt}",
                     "folder:{tiny}", "folder:{unlabelled}"),
    "--digits": values("7,8", "all", "", "12", "-1", "7,7", "x", "3", "7", " 8 , 7 ")
    | st.text(max_size=4),
    "--device": values("auto", "cpu", "cuda", "cuda:1", "tpu", "", "CPU"),
    "--steps": SMALL_INTS.map(str) | values("x", "1.5", "", DROP),
    "--batch-size": values("1", "4", "8", "0", "-3", "100000", "two"),
    "--image-size": values("32", "64", "16", "48", "0", "-32", "x"),
    "--seed": values("0", "7", "-1", str(2**70), "x"),
    "--dtype": values("fp32", "bf16", "fp8"),
    "--warmup": SMALL_INTS.map(str) | values(DROP),
    "--eval-n": SMALL_INTS.map(str),
    "--eval-every": SMALL_INTS.map(str),
    "--target-fid": values("10", "0", "-1", "nan", "inf", "x"),
    "--compile-mode": values("default", "max-autotune", "bogus"),
    "--checkpoint-every": SMALL_INTS.map(str),
    "--option": values("eager-attn.k=1", "compile-attn.mode=x", "bad", "=", "a.b="),
    "--jobs": values("1", "2", "0", "-1"),
    "--nproc": values("1", "2", "3", "0", "-1", "99"),
    "--force": st.none(),
    "--retry-failed": st.none(),
    "--resume": values("{tmp}/nope", "{tmp}/file"),
    "--compile": st.none() | values("models", "step", "steps"),
    "--malloc": values("default", "keep", "bogus"),
    "--quiet": st.none(),
    "--in-process": st.none(),
    "--sync-bn": st.none(),
    "--scaling": st.none(),
}
CHANGES = st.lists(st.sampled_from(sorted(OPTIONS)), unique=True, max_size=3).flatmap(
    lambda flags: st.fixed_dictionaries({flag: OPTIONS[flag] for flag in flags}))


def stub_run_one(cfg, combo, run_dir, metric_names, resume=False, **progress):
    """A minimal finished row instead of training."""
    return {"combo": combo.name, "architecture": combo.architecture, "loss": combo.loss,
            "attention": combo.attention, "status": "ok", "steps": cfg.steps}


def _no_exec(path, argv):
    raise SystemExit(0)  # where torchrun would take over: the checks before it passed


def run_cli(argv: list[str]) -> tuple[int, str]:
    """main(argv) in this process: (exit code, stderr)."""
    code, _, err = call_main(argv)
    return code, err


def check_results(run_dir: Path, code: int) -> None:
    """Never a partial results file: all three complete and agreeing, or none at all."""
    names = ("results.csv", "results.json", "results.md")
    present = [n for n in names if (run_dir / n).exists()] if run_dir.is_dir() else []
    if code == 2:
        assert present == [], f"bad input, yet {present} written"
        return
    if not present:
        return
    assert present == list(names)
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    assert len(pd.read_csv(run_dir / "results.csv")) == len(rows) > 0
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=CHANGES)
def test_fuzz_run_arguments(folders, changes):
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "run_one", stub_run_one)
        mp.setattr(os, "execv", _no_exec)
        (Path(tmp) / "file").write_text("a regular file, not a folder")
        fill = {"tmp": tmp, **{name: str(path) for name, path in folders.items()}}
        argv = ["run"]
        for flag, value in {**BASE, **changes}.items():
            if value is None:
                argv.append(flag)
            elif value != DROP:
                argv += [flag, value.format(**fill) if "{" in value and "}" in value else value]
        out = Path(argv[argv.index("--out") + 1])
        code, err = run_cli(argv)
        event(f"exit {code}" + (f": {err.partition('error:')[2].strip()[:30]}" if code else ""))

        assert code in (0, 1, 2), (argv, code, err)
        assert "Traceback" not in err, (argv, err)
        if code == 2:  # every bad value, argparse's complaints included: one line
            assert_one_line_error(code, err)
        check_results(out, code)


@pytest.mark.parametrize("argv, fragment", [
    (["--steps", "0"], "--steps must be a positive integer"),
    (["--batch-size", "-1"], "--batch-size must be a positive integer"),
    (["--batch-size", "100000"], "larger than the"),
    (["--image-size", "16"], "--image-size must be one of"),
    (["--device", "tpu"], "--device must be auto, cpu, cuda"),
    (["--digits", ""], "--digits is empty"),
    (["--digits", "10"], "between 0 and 9"),
    (["--seed", str(2**70)], "--seed must be an integer"),
    (["--compile-mode", "fast"], "argument --compile-mode: invalid choice 'fast'; choose from "
                                 "default, reduce-overhead"),
    (["--dtype", "fp8"], "argument --dtype: invalid choice 'fp8'"),
    (["--compile", "steps"], "argument --compile: invalid choice 'steps' (did you mean step?); "
                             "choose from models, step"),
    (["--malloc", "tcmalloc"], "argument --malloc: invalid choice 'tcmalloc'"),
    (["--compile", "step", "--nproc", "2"], "--compile step compiles one process's whole "
                                            "iteration; it is not combined with --nproc"),
    (["--checkpoint-every", "-1"], "--checkpoint-every must be >= 0"),
    (["--data", "folder:{empty}"], "no images found"),
    (["--data", "folder:{corrupt}"], "not a readable image"),
    (["--data", "folder:/nonexistent"], "no such folder"),
    (["--data", "folder:{unlabelled}"], "has no labels"),
    (["--out", "{tmp}/file/run"], "cannot write to output folder"),
])
def test_bad_values_get_one_line_and_exit_2(folders, tmp_path, argv, fragment):
    (tmp_path / "file").write_text("x")
    fill = {"tmp": tmp_path, **folders}
    argv = [a.format(**fill) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "never")]
    code, err = run_cli(["run", "--plugins", "dcgan", "--metrics", "none", "--device", "cpu",
                         *argv])
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "never").exists()


def test_cuda_device_without_cuda_is_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for command in (["run", "--plugins", "dcgan", "--out", str(tmp_path / "x")],
                    ["bench", "attention", "--quick"]):
        code, err = run_cli([*command, "--device", "cuda"])
        assert_one_line_error(code, err, "no CUDA device")


def test_sample_and_bench_reject_a_malformed_device(tmp_path):
    for command in (["sample", str(tmp_path), "--combo", "x", "--out", str(tmp_path / "s.npz")],
                    ["bench", "attention"]):
        code, err = run_cli([*command, "--device", "gpu0"])
        assert_one_line_error(code, err, "--device must be auto, cpu, cuda or cuda:N")


# ------------------------------------------------------------------------------------------
# The image-folder reader
# ------------------------------------------------------------------------------------------
def valid_png(draw) -> bytes:
    side = draw(st.integers(1, 12))
    width = draw(st.sampled_from([side, side + 1]))
    seed = draw(st.integers(0, 2**16))
    pixels = np.random.default_rng(seed).integers(0, 256, (side, width), dtype=np.uint8)
    return png_bytes(pixels, draw(st.sampled_from(["L", "RGB", "RGBA", "P", "1", "I;16"])))


@st.composite
def image_files(draw):
    """(relative path, bytes): valid PNGs, truncated ones, random bytes, in odd layouts."""
    folder = draw(st.sampled_from(["", "7", "3", "x", "12", "7/8", ".hidden", "a b"]))
    stem = draw(st.sampled_from(["img_7_1", "img_0_", "IMG_3_9", "a", "img_x_2", "-"]))
    suffix = draw(st.sampled_from([".png", ".PNG", ".jpg", ".gif", ".bmp", ".txt"]))
    kind = draw(st.sampled_from(["valid", "truncated", "random"]))
    if kind == "random":
        content = draw(st.binary(max_size=120))
    else:
        content = valid_png(draw)
        if kind == "truncated":
            content = content[:draw(st.integers(0, len(content) - 1))]
    return "/".join(p for p in (folder, stem + str(draw(st.integers(0, 99))) + suffix) if p), \
        content


@settings(max_examples=60, deadline=None)
@given(files=st.lists(image_files(), max_size=6, unique_by=lambda f: f[0].lower()),
       digits=st.sampled_from([(), (7,), (3, 7), (0,)]))
def test_fuzz_image_folder_gives_data_or_data_error(files, digits):
    from ganbench.plugins.datasets import load_folder

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "digits"
        root.mkdir()
        for relative, content in files:
            path = root / relative
            if path.parent.exists() and not path.parent.is_dir():
                continue  # a file already took the folder's name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        try:
            images, labels = data.load_image_folder(root)
        except DataError as exc:
            assert "\n" not in str(exc)
        else:
            assert images.dtype == np.uint8 and images.ndim == 3
            assert images.shape[1] == images.shape[2] > 0
            assert labels.dtype == np.int64 and labels.shape == (len(images),)
            assert ((labels >= -1) & (labels <= 9)).all()
        try:
            loaded = load_folder(str(root), digits, 8)  # selection, split and resize as well
        except DataError as exc:
            assert "\n" not in str(exc)
        else:
            assert loaded.train.shape[1:] == (1, 8, 8) and len(loaded.heldout) >= 1
            assert float(loaded.train.min()) >= -1 and float(loaded.train.max()) <= 1
