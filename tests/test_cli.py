"""The console entry point: end to end on tiny settings, and its manners with bad input (one
line, the exit code of the error's class, closest spellings, no abbreviated flags)."""

import errno
import json
import subprocess
import sys

import pandas as pd
import pytest
from helpers import assert_one_line_error, call_main, one_line_exit_2, tiny_run_args

from ganbench import errors
from ganbench.cli import build_parser, main, subcommands, suggest


def ganbench(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ganbench", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_help_does_not_import_torch_or_pandas():
    code = ("import sys; from ganbench.cli import build_parser, help_pages; build_parser(); "
            "help_pages(); print(sorted({'torch', 'pandas', 'numpy'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_run_dcgan_and_sagan_in_process(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--plugins", "dcgan,sagan", "--in-process", "--out", str(out),
                 *tiny_run_args()]) == 0
    df = pd.read_csv(out / "results.csv")
    assert list(df["combo"]) == ["dcgan+bce", "sagan+hinge+eager-attn"]
    assert (df["status"] == "ok").all()
    assert (df["img_per_s"] > 0).all() and (df["peak_mem_bytes"] > 0).all()
    assert (df["timed_steps"] == 2).all()  # 3 steps, 1 untimed
    assert df["torch_version"].notna().all() and df["device"].eq("cpu").all()
    assert (out / "samples" / "dcgan+bce.png").exists()
    assert (out / "samples" / "sagan+hinge+eager-attn.png").exists()
    assert (out / "attention" / "sagan+hinge+eager-attn.png").exists()
    assert not (out / "attention" / "dcgan+bce.png").exists()  # no attention layers
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert len(rows) == 2
    config = json.loads((out / "config.json").read_text())
    assert config["steps"] == 3 and config["device"] == "cpu"


def test_run_isolated_process_and_report(tmp_path):
    out = tmp_path / "iso"
    res = ganbench("run", "--plugins", "dcgan", "--out", str(out), *tiny_run_args())
    assert res.returncode == 0, res.stderr
    df = pd.read_csv(out / "results.csv")
    assert df.loc[0, "status"] == "ok"
    assert "fresh process" in df.loc[0, "mem_method"]
    rep = ganbench("report", str(out))
    assert rep.returncode == 0 and "dcgan+bce" in rep.stdout


def test_a_user_error_through_the_console_script_is_one_line_exit_2(tmp_path):
    res = ganbench("run", "--plugins", "sagn", "--out", str(tmp_path / "never"))
    assert_one_line_error(res.returncode, res.stderr, "unknown plugin 'sagn'; did you mean sagan")
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("args, fragment", [
    (["run", "--plugins", "sagn"], "unknown plugin 'sagn'; did you mean sagan"),
    (["run", "--plugins", "dcgan", "--steps", "0"], "--steps must be a positive integer"),
    (["run", "--plugins", "dcgan", "--digits", "12"], "between 0 and 9"),
    (["run", "--plugins", "dcgan", "--image-size", "16"], "--image-size must be one of"),
    (["run", "--plugins", "dcgan", "--batch-size", "100000"], "larger than the"),
    (["run", "--plugins", "dcgan", "--data", "nosuch"], "unknown dataset plugin"),
    (["report", "/nonexistent/run"], "no results table"),
    (["run", "--plugins", "dcgan", "--checkpoint-every", "-5"], "--checkpoint-every must be >= 0"),
    (["run", "--plugins", "dcgan", "--data", "folder:/nonexistent"], "no such folder"),
    (["run", "--plugins", "sagan,eager-attn", "--option", "eager-attn.k=1"],
     "--option eager-attn.k: eager-attn rejects it"),
    (["run", "--plugins", "sagan,triton-attn", "--option", "triton-attn.backward=fast"],
     "backward must be one of auto, one-launch, two-kernel, atomic; got 'fast'"),
])
def test_user_errors_exit_2_with_one_line_and_write_nothing(tmp_path, args, fragment):
    out = tmp_path / "never"
    extra = ["--out", str(out), "--device", "cpu"] if args[0] == "run" else []
    one_line_exit_2([*args, *extra], fragment)
    assert not out.exists()


# ------------------------------------------------------------------------------------------
# argparse's complaints: one line, exit 2, closest spellings, no abbreviations (issue 22.12)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, fragments", [
    # `--plugin dcgan` once started a 600-step run: argparse took it for --plugins
    (["run", "--plugin", "dcgan"], ["unrecognized argument --plugin (did you mean --plugins?)",
                                    "see `ganbench run --help`"]),
    (["run", "--plugins", "dcgan", "--step", "3"], ["--step (did you mean --steps?)"]),
    (["run", "--plugins", "dcgan", "--check", "5"], ["unrecognized argument --check"]),
    (["run", "--plugins", "dcgan", "--stpes=3"], ["--stpes (did you mean --steps?)"]),
    (["rnu", "--plugins", "dcgan"], ["invalid choice 'rnu' (did you mean run?)",
                                     "choose from run, plugins"]),
    (["report", "x", "--colums", "a"], ["--colums (did you mean --columns?)",
                                        "see `ganbench report --help`"]),
    (["classifier", "trian"], ["invalid choice 'trian' (did you mean train?)"]),
    (["classifier", "eval", "--weight", "w.pt"], ["--weight (did you mean --weights?)"]),
    (["run", "--plugins", "dcgan", "--dtype", "fp33"],
     ["argument --dtype: invalid choice 'fp33' (did you mean fp32?); choose from auto, fp32, "
      "bf16"]),
    (["run", "--plugins", "dcgan", "--steps", "x"], ["argument --steps: invalid int value: 'x'"]),
    (["sample", "run"], ["the following arguments are required: --combo, --out"]),
    (["run", "--plugins", "dcgan", "stray"], ["unrecognized argument stray"]),
])
def test_bad_command_lines_are_one_line_with_the_closest_spelling(tmp_path, monkeypatch, argv,
                                                                  fragments):
    monkeypatch.chdir(tmp_path)  # nothing may be written, even by accident
    line = one_line_exit_2(argv, *fragments)
    assert "usage:" not in line
    assert list(tmp_path.iterdir()) == []


def test_no_parser_accepts_an_abbreviated_flag():
    def walk(parser):
        yield parser
        for child in subcommands(parser).values():
            yield from walk(child)

    parsers = list(walk(build_parser()))
    assert len(parsers) >= 11  # top level, 8 commands, classifier's train and eval
    assert all(parser.allow_abbrev is False for parser in parsers)


def test_suggest_offers_the_closest_spelling_or_nothing():
    assert suggest("--plugin", ["--plugins", "--option", "--out"]) == " (did you mean --plugins?)"
    assert suggest("rnu", ["run", "report", "plugins"]) == " (did you mean run?)"
    assert suggest("--zzz", ["--plugins", "--steps"]) == ""


# ------------------------------------------------------------------------------------------
# Each error class: its exit code and one line (ganbench.errors)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exc, code, line", [
    (errors.ConfigError("--steps must be a positive integer"), 2,
     "--steps must be a positive integer"),
    (errors.DataError("no images found"), 2, "no images found"),
    (errors.KernelContractError("attention kernel k returned shape (2, 3)"), 1,
     "attention kernel k returned shape (2, 3)"),
    (errors.PluginError("metric 'm' writes column(s) x"), 1, "metric 'm' writes column(s) x"),
    (errors.ResultsWriteError("cannot write the results table in r: No space left on device"),
     1, "cannot write the results table in r: No space left on device"),
    (errors.WriteError("/r/a.pt", OSError(errno.ENOSPC, "No space left on device")), 1,
     "cannot write /r/a.pt: No space left on device"),
    (errors.WriteError("/f/a.pt", OSError(errno.ENOTDIR, "Not a directory")), 2,
     "cannot write /f/a.pt: Not a directory"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/y"), 2,
     "No such file or directory: /x/y"),
    (OSError(errno.EIO, "Input/output error"), 1, "Input/output error"),
])
def test_cli_gives_each_error_class_its_exit_code_and_one_line(monkeypatch, exc, code, line):
    from ganbench.commands import plugins

    def fail(args):
        raise exc

    monkeypatch.setattr(plugins, "run", fail)
    status, out, err = call_main(["plugins"])
    assert_one_line_error(status, err, exit_code=code)
    assert err.strip() == f"ganbench: error: {line}"


def test_a_bug_keeps_its_traceback(monkeypatch):
    from ganbench.commands import plugins

    def fail(args):
        raise ZeroDivisionError("a bug, not a user error")

    monkeypatch.setattr(plugins, "run", fail)
    with pytest.raises(ZeroDivisionError):
        main(["plugins"])


def test_interrupt_is_exit_130(monkeypatch):
    from ganbench.commands import plugins

    def stop(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(plugins, "run", stop)
    code, _, err = call_main(["plugins"])
    assert code == 130 and err.strip() == "ganbench: interrupted"


def test_plugins_lists_every_kind_with_source_and_availability():
    code, out, _ = call_main(["plugins", "--device", "cpu"])
    assert code == 0
    for word in ("architectures:", "losses:", "attention kernels:", "metrics:", "datasets:",
                 "dcgan", "sagan", "bce", "hinge", "eager-attn", "built-in"):
        assert word in out
    triton_line = next(line for line in out.splitlines() if "triton-attn" in line)
    assert triton_line.split()[2] in ("yes", "no")


def test_unwritable_output_path_is_one_line_exit_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    one_line_exit_2(["bench", "attention", "--device", "cpu", "--quick", "--kernels",
                     "eager-attn", "--shapes", "textbook", "--out", str(blocker / "bench")])


def test_fresh_run_refuses_a_folder_that_holds_results(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text('{"rows": []}')  # no manifest: not a ganbench run
    one_line_exit_2(["run", "--plugins", "dcgan", "--out", str(out), *tiny_run_args()],
                    "holds no ganbench run", "choose a new or empty folder")
    assert (out / "results.json").read_text() == '{"rows": []}'  # left as it was
