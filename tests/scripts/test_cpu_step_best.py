"""scripts/cpu_step_best.py: speedups and compile payback from the runs' own rows, the fastest
variant, and bad input. The runs are stood in for by a function that writes the results.csv a
run would (numbers chosen so every derived column can be checked by hand)."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cpu_step_best.py"
spec = importlib.util.spec_from_file_location("cpu_step_best", SCRIPT)
csb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(csb)

# variant -> (step ms, images/s, compile_s) of its ganbench row
FAKE = {"bf16": (1000.0, 64.0, None), "bf16+compile-step": (800.0, 80.0, 40.0),
        "bf16+keep": (900.0, 71.0, None)}
TEXTBOOK = (3000.0, 20.0)


def fake_ganbench(args, env, timeout):
    out = Path(args[args.index("--out") + 1])
    name = out.name.removeprefix("speed-")
    out.mkdir(parents=True)
    ms, ips, comp = FAKE[name]
    rows = [{"step": "ganbench", "status": "ok", "step_ms_median": ms, "step_ms_p10": ms,
             "step_ms_p90": ms, "img_per_s": ips, "compile_s": comp}]
    if "--baseline" in args:
        rows.insert(0, {"step": "textbook", "status": "ok", "step_ms_median": TEXTBOOK[0],
                        "step_ms_p10": TEXTBOOK[0], "step_ms_p90": TEXTBOOK[0],
                        "img_per_s": TEXTBOOK[1]})
    assert env["TORCHINDUCTOR_CACHE_DIR"]  # every run compiles cold
    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    return 0, ""


def test_speed_table_speedups_payback_and_fastest(tmp_path, monkeypatch):
    monkeypatch.setattr(csb, "ganbench", fake_ganbench)
    args = csb.parse(["--out", str(tmp_path), "--variants", "bf16,bf16+compile-step,bf16+keep",
                      "--quality-steps", "0"])
    df = csb.speed(args, tmp_path).set_index("variant")
    assert list(df.index) == ["textbook", "bf16", "bf16+compile-step", "bf16+keep"]
    assert df.loc["bf16", "speedup_vs_textbook"] == pytest.approx(64 / 20)
    assert df.loc["bf16+keep", "speedup_vs_textbook"] == pytest.approx(71 / 20)
    # 40 s of compiling saves 200 ms a step against uncompiled bf16: 200 steps to pay back
    assert df.loc["bf16+compile-step", "payback_steps"] == pytest.approx(200)
    assert csb.fastest(df.reset_index()) == "bf16+compile-step"


def test_a_run_without_results_is_recorded_and_the_next_runs(tmp_path, monkeypatch):
    def failing_first(args, env, timeout):
        if "--baseline" in args:
            return 2, "ganbench: error: something the user must fix"
        return fake_ganbench(args, env, timeout)
    monkeypatch.setattr(csb, "ganbench", failing_first)
    args = csb.parse(["--out", str(tmp_path), "--variants", "bf16,bf16+keep"])
    df = csb.speed(args, tmp_path).set_index("variant")
    assert df.loc["bf16", "status"] == "exit 2"
    assert "something the user must fix" in df.loc["bf16", "error"]
    assert df.loc["bf16+keep", "status"] == "ok"


def test_unknown_variant_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        csb.parse(["--out", "x", "--variants", "bf16,turbo"])
    assert exc.value.code == 2
    assert "unknown variant 'turbo'" in capsys.readouterr().err


def test_every_variant_names_its_allocator():
    """A change of --malloc's default must not change what a variant measures."""
    for name, (flags, _) in csb.VARIANTS.items():
        assert "--malloc" in flags, name


def test_reuse_keeps_a_finished_quality_run(tmp_path, monkeypatch):
    """--reuse: a quality run folder with its summary.csv is read, not trained again; the
    verdict against the first variant still comes from compare."""
    calls = []
    monkeypatch.setattr(csb, "ganbench", lambda *a: calls.append(a) or (0, ""))
    monkeypatch.setattr(csb, "verdict", lambda ref, run: {"fid_verdict": f"{ref.name}|{run.name}"})
    for name, fid in (("fp32", 50.0), ("bf16", 52.0)):
        run = tmp_path / "runs" / f"quality-{name}"
        run.mkdir(parents=True)
        pd.DataFrame([{"combo": "sagan", "n_seeds": 3, "fid_digits": fid,
                       "fid_digits_ci_low": fid - 5, "fid_digits_ci_high": fid + 5}]
                     ).to_csv(run / "summary.csv", index=False)
        pd.DataFrame([{"status": "ok", "seed": k, "fid_digits": fid + k, "compile_s": 2.0 + k}
                      for k in range(3)]).to_csv(run / "results.csv", index=False)
    args = csb.parse(["--out", str(tmp_path), "--variants", "", "--quality", "fp32,bf16",
                      "--reuse"])
    df = csb.quality(args, tmp_path, ["fp32", "bf16"]).set_index("variant")
    assert calls == []
    assert df.loc["bf16", "fid_digits"] == 52.0 and df.loc["fp32", "fid_digits_ci_high"] == 55.0
    assert df.loc["bf16", "fid_verdict"] == "quality-fp32|quality-bf16"
    assert df.loc["bf16", "compile_s_median"] == 3.0  # the median of 2, 3, 4


def test_verdict_is_welch_over_the_seeds(tmp_path):
    """Far apart per-seed values: "worse" for the higher fid; close ones: indistinguishable."""
    def run(name, fids):
        d = tmp_path / name
        d.mkdir()
        pd.DataFrame([{"status": "ok", "fid_digits": f} for f in fids]).to_csv(
            d / "results.csv", index=False)
        return d
    ref = run("ref", [40.0, 41.0, 42.0])
    assert csb.verdict(ref, run("far", [80.0, 81.0, 82.0]))["fid_verdict"] == "worse"
    assert csb.verdict(ref, run("near", [40.5, 41.5, 43.0]))["fid_verdict"] == "indistinguishable"
    assert csb.verdict(ref, run("one", [41.0]))["fid_verdict"] == "too few seeds"
