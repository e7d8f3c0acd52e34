"""CI quality gate: a seeded short DCGAN and SAGAN run must not score much worse than the
committed baseline, so a loss or model change that wrecks the samples fails CI.

    pytest -m regression tests/benchmarks/test_quality_gate.py          # ~4 min on 2 cores
    GANBENCH_RECORD_QUALITY=1 pytest -m regression tests/benchmarks/test_quality_gate.py

Both runs use one torch thread and the in-process path, which makes them bit-reproducible on
one machine kind (two threads change the summation order, and fid_digits with it), so the
tolerance only has to absorb library-version drift, not noise.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

import ratios
from ganbench.config import RunConfig
from ganbench.plugins.losses import HingeLoss
from ganbench.runner import run

pytestmark = pytest.mark.regression

BASELINE = ratios.BASELINE_DIR / f"quality-{ratios.machine_kind()}.json"
SETTINGS = dict(steps=300, warmup=10, batch_size=64, image_size=32, eval_n=500, seed=0)
# 300 steps is where both digit classes first appear at 32x32 (a 600-step run measured on this
# machine: fid_digits 665/347/186/109 at 150/300/450/600 steps for DCGAN, 756/279/155/73 for
# SAGAN). fid_digits may grow 50% over the baseline before the gate fails: reruns on one
# machine are identical, but a GAN amplifies rounding differences (another CPU's vector width,
# a torch upgrade) into a different trajectory, and at this stage that moves fid_digits by tens
# of percent. A wrecked loss moves it far more and loses digit classes.
FID_TOLERANCE = 0.50


def short_run(out, plugins=("dcgan", "sagan")) -> dict[str, dict]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, df = run(RunConfig(plugins=plugins, metrics=("fid-digits", "modes"),
                              device="cpu", isolate=False, quiet=True, out=out, **SETTINGS),
                    echo=lambda *a, **k: None)
    finally:
        torch.set_num_threads(threads)
    return {row["combo"]: row for row in df.to_dict("records")}


def gate(rows: dict[str, dict], baseline: dict[str, dict]) -> list[str]:
    """Failures: a combination missing or not ok, fid_digits over tolerance, fewer modes."""
    failures = []
    for combo, ref in baseline.items():
        row = rows.get(combo)
        if row is None or row.get("status") not in ("ok", "reference"):
            failures.append(f"{combo}: {row and row.get('status')} (baseline ok)")
            continue
        limit = ref["fid_digits"] * (1 + FID_TOLERANCE)
        if row["fid_digits"] > limit:
            failures.append(f"{combo}: fid_digits {row['fid_digits']:.1f} > {limit:.1f} "
                            f"(baseline {ref['fid_digits']:.1f} + {FID_TOLERANCE:.0%})")
        if row["modes_covered"] < ref["modes_covered"]:
            failures.append(f"{combo}: modes_covered {row['modes_covered']} < "
                            f"{ref['modes_covered']}")
    return failures


def _summary(rows: dict[str, dict]) -> dict[str, dict]:
    return {c: {"fid_digits": float(r["fid_digits"]), "modes_covered": int(r["modes_covered"])}
            for c, r in rows.items() if r.get("status") in ("ok", "reference")}


def test_short_run_quality_within_tolerance_of_baseline(tmp_path):
    rows = short_run(tmp_path / "run")
    if os.environ.get("GANBENCH_RECORD_QUALITY") == "1":
        BASELINE.write_text(json.dumps({"settings": SETTINGS, "rows": _summary(rows)},
                                       indent=1) + "\n")
    if not BASELINE.exists():
        pytest.skip(f"no quality baseline for this machine kind ({BASELINE.name})")
    baseline = json.loads(BASELINE.read_text())
    assert baseline["settings"] == SETTINGS, "baseline was recorded with other settings"
    failures = gate(rows, baseline["rows"])
    assert not failures, "; ".join(failures)


def test_gate_catches_a_loss_that_wrecks_the_samples(tmp_path, monkeypatch):
    """The demonstration the gate needs: flip the sign of SAGAN's generator loss (G then
    learns to look fake) and the same short run must fail the gate."""
    if not BASELINE.exists():
        pytest.skip(f"no quality baseline for this machine kind ({BASELINE.name})")
    monkeypatch.setattr(HingeLoss, "g_loss", lambda self, x: x.fake_logits.mean())
    baseline = json.loads(BASELINE.read_text())["rows"]
    rows = short_run(tmp_path / "broken", plugins=("sagan",))
    failures = gate(rows, {"sagan+hinge+eager-attn": baseline["sagan+hinge+eager-attn"]})
    assert failures and all(f.startswith("sagan+hinge+eager-attn") for f in failures), failures
