"""Hand-made digit sets built to fool the quality metrics, scored as a run scores a generator.

Every set is scored by :func:`ganbench.quality.evaluate.evaluate` (the code `ganbench run` and
`ganbench score` use) against the same held-out half of the embedded 7s and 8s that a default run
scores against (32x32, seed 0, N = 1001, the most the 2002 held-out 7s and 8s allow), with the
training 7s and 8s as the memorisation reference:

  real held-out digits     the other held-out half: the "real data" row
  half shifted copies      500 training digits moved 1 px right + 501 held-out digits
  all shifted copies       1001 training digits moved 1 px right
  held-out 7s alone        every 7 of the other held-out half (never trained on), about 514
  held-out 8s alone        likewise for the 8s
  one digit repeated       one held-out digit, 1001 times
  five digits repeated     five held-out digits, about 200 times each
  half noise               500 uniform-noise images + 501 held-out digits
  ten digits               100 test digits of each of 0-6 and 9 + 201 held-out 7s and 8s

Beside each value, its distance to the real row in standard deviations of the real row itself
over --resplits other random splits of the held-out digits (z = (value - mean) / sd). Also the
memorisation numbers as the plain-pixel, pooled-threshold rule (before issue 20) gives them.

For every two-sided ("closer") column, `ganbench compare`'s own verdict of each set against the
real row: :func:`ganbench.results.compare.compare` on two one-row run tables read by
:func:`ganbench.results.sides.from_run_table` (OLD: the real row as if a generator had scored it,
NEW: the set's row; both with the real row as their real-data reference, both at 32 px and their
own N), exactly as `ganbench compare OLD NEW` would judge two such results.csv files. The same
verdict is taken for each resplit row (real digits against real digits), which shows what
compare calls the real row's own sampling noise.

With --time-against COMMIT it also times the default metric suite at N = 1001 against that
commit's plugins/metrics.py, in this process, interleaved (before, after, before, after, ...).

    python scripts/adversarial_sets.py --out results/metric-adversarial-sets --time-against a2d1bcd
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ganbench import data as digit_data
from ganbench.plugins import memorisation as memo
from ganbench.quality import evaluate as quality
from ganbench.registry import Registry, get_registry
from ganbench.results import compare as compare_rule
from ganbench.results.columns import CLOSER, OK_STATUS, REFERENCE_STATUS, direction
from ganbench.results.sides import from_run_table
from ganbench.specs import MetricContext

DIGITS = (7, 8)
IMAGE_SIZE = 32
COLUMNS = ["fid_digits", "kid_digits", "is_digits", "prdc_precision", "prdc_recall",
           "prdc_density", "prdc_coverage", "modes_share_7", "modes_share_8", "modes_kl",
           "memo_copy_share", "memo_nn_ratio"]


def moved_right(x: torch.Tensor, pixels: int = 1) -> torch.Tensor:
    """x moved ``pixels`` to the right; the uncovered columns are background (-1)."""
    return F.pad(x, (pixels, 0, 0, 0), value=-1.0)[..., :x.shape[-1]]


def build_sets(data, sets, seed: int) -> dict[str, torch.Tensor]:
    n = sets.n
    stand_in, labels = sets.stand_in, sets.stand_in_labels
    half = n // 2
    gen = torch.Generator().manual_seed(seed + 100)
    mnist = digit_data.load_embedded()
    others = np.concatenate([mnist.test_images[mnist.test_labels == d][:100]
                             for d in (0, 1, 2, 3, 4, 5, 6, 9)])
    ten = torch.cat([digit_data.prepare(others, IMAGE_SIZE), stand_in[:n - len(others)]])
    five = stand_in[:5].repeat(n // 5 + 1, 1, 1, 1)[:n]
    return {
        "real held-out digits": stand_in,
        "half shifted copies": torch.cat([moved_right(data.train[:half]), stand_in[:n - half]]),
        "all shifted copies": moved_right(data.train[:n]),
        "held-out 7s alone": stand_in[labels == 7],
        "held-out 8s alone": stand_in[labels == 8],
        "one digit repeated": stand_in[:1].repeat(n, 1, 1, 1),
        "five digits repeated": five,
        "half noise": torch.cat([torch.rand(half, 1, IMAGE_SIZE, IMAGE_SIZE, generator=gen) * 2 - 1,
                                 stand_in[:n - half]]),
        "ten digits": ten,
    }


def plain_pooled_memorisation(fake, real, train) -> float:
    """memo_copy_share as before issue 20: plain pixel distance, one pooled 1% threshold."""
    held = memo.nearest_distances(real, train, shift=0)
    d = memo.nearest_distances(fake, train, shift=0)
    return float((d < torch.quantile(held, memo.MEMO_QUANTILE)).double().mean())


def single_digit_densities(stand_in, real, count: int = 200) -> torch.Tensor:
    """prdc_density of "held-out digit i repeated N times" for the first ``count`` digits: the
    number of real k-NN balls (k = DC_K) holding digit i, over k (every copy counts alike)."""
    from ganbench.plugins.metrics import DC_K, _distances, knn_radii, prdc_features

    radii = knn_radii(prdc_features(real).double(), DC_K)
    inside = _distances(prdc_features(stand_in[:count]).double(), prdc_features(real).double())
    return (inside <= radii).sum(1).double() / DC_K


def closer_columns() -> list[str]:
    """The columns compare judges by their distance to the real row (its own registry)."""
    return [c for c in COLUMNS if direction(c) == CLOSER]


def compare_verdicts(row: dict, real: dict, columns: list[str]) -> dict[str, str]:
    """column -> the verdict `ganbench compare` gives ``row`` against the real row.

    Both sides are run tables of one combination plus the real-data reference row, read by
    compare's reader: OLD holds the real row as the combination (its distance to the real row
    is 0), NEW holds ``row``; each is tagged with the N it was scored at (``row["n"]``,
    ``real["n"]``) and 32 px, so compare refuses sets of another N as it would refuse such runs.
    A single row a side has no seeds and no spread: compare's only noise rule is then its 1%
    band on the value (``NOISE_BAND_PCT``), and with the old distance 0 any larger move is
    "worse"."""
    def table(values: dict) -> pd.DataFrame:
        tags = {"metric_image_size": IMAGE_SIZE}
        return pd.DataFrame([
            {"combo": "set", "status": OK_STATUS, **tags, "metric_n": int(values["n"]),
             **{c: values[c] for c in columns}},
            {"combo": "real data", "status": REFERENCE_STATUS, **tags,
             "metric_n": int(real["n"]), **{c: real[c] for c in columns}}])

    judged = compare_rule.compare(from_run_table(table(real), "real row"),
                                  from_run_table(table(row), "set"), metrics=columns)
    return dict(zip(judged["metric"], judged["verdict"]))


def is_worse(verdict: str) -> bool:
    return verdict in (compare_rule.WORSE, compare_rule.REGRESSION)


def markdown(df: pd.DataFrame, closer: list[str]) -> str:
    header = ["set", "n"] + COLUMNS + ["memo_copy_share before"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in df.iterrows():
        cells = [row["set"], str(int(row["n"]))]
        for c in COLUMNS:
            value = row[c]
            text = f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
            if c == "kid_digits":
                text += f" ± {row['kid_digits_sd']:.2g}"
            z = row[f"{c}_z"]
            if math.isfinite(z) and row["set"] != "real held-out digits":
                text += f" ({z:+.0f})" if abs(z) >= 10 else f" ({z:+.1f})"
            cells.append(text + (" *" if c in closer else ""))
        cells.append(f"{row['memo_copy_share_before']:.3g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_markdown(df: pd.DataFrame, closer: list[str]) -> str:
    """Per set and two-sided column: compare's verdict against the real row, then the raw
    change of the value (what compare's 1% band reads) and z."""
    lines = ["| set | " + " | ".join(closer) + " |", "|" + "---|" * (len(closer) + 1)]
    for _, row in df.iterrows():
        if row["set"] == "real held-out digits":
            continue
        cells = [row["set"]]
        for c in closer:
            verdict = row[f"{c}_compare"]
            if verdict.startswith(compare_rule.NOT_COMPARABLE):  # another N: refused
                cells.append(f"{compare_rule.NOT_COMPARABLE} (N {int(row['n'])})")
                continue
            change = row[f"{c}_change_pct"]
            cells.append(f"{verdict} ({change:+.1f}%, z {row[f'{c}_z']:+.1f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def time_suites(old_commit: str, sets, context, registry, repeats: int) -> pd.DataFrame:
    """Wall and CPU seconds of the default suite, this checkout against ``old_commit``'s
    metrics plugin, on the same (fake, real) pairs, alternating. "first row": fresh copies of
    both sets (the held-out set embedded and its memorisation distances computed); "next row":
    a fresh fake against the same real set, as every later row of a run."""
    source = subprocess.run(["git", "show", f"{old_commit}:plugins/metrics.py"], check=True,
                            capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1]).stdout
    path = Path(f"/tmp/ganbench_metrics_{old_commit}.py")
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_metrics", path)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    old_registry = Registry()
    old.ganbench_register_metrics(lambda s: old_registry.add("metric", s, old_commit))
    old_suite = ("fid-digits", "is-digits", "prdc", "modes", "memorisation")
    suites = {f"before ({old_commit})": (old_registry, old_suite),
              "after": (registry, quality.DEFAULT_METRICS)}
    rows = []
    for rep in range(repeats):
        for label, (reg, names) in suites.items():
            real = sets.real.clone()
            for phase, fake in (("first row", sets.stand_in.clone()),
                                ("next row", sets.stand_in.flip(0).clone())):
                wall, cpu = time.perf_counter(), time.process_time()
                quality.evaluate(names, fake, real, context, reg)
                rows.append({"code": label, "phase": phase, "repeat": rep,
                             "wall_s": time.perf_counter() - wall,
                             "cpu_s": time.process_time() - cpu})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resplits", type=int, default=8)
    p.add_argument("--time-against", metavar="COMMIT")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    start = time.perf_counter()

    registry = get_registry()
    spec = registry.lookup("embedded", ("dataset",)).spec
    data = spec.load(None, DIGITS, IMAGE_SIZE)
    n = quality.max_eval_n(len(data.heldout))
    sets = quality.eval_sets(data.heldout, data.heldout_labels, n, args.seed)
    context = MetricContext(digits=DIGITS, image_size=IMAGE_SIZE, device="cpu", seed=args.seed,
                            real_labels=sets.real_labels, train=data.train)
    names = list(quality.DEFAULT_METRICS)

    resplit_rows = [{**quality.real_reference_row(
        data.heldout, data.heldout_labels, n, context, registry, names, seed=args.seed + s)[0],
        "n": n} for s in range(1, args.resplits + 1)]
    resplits = pd.DataFrame(resplit_rows)
    rows = []
    for name, images in build_sets(data, sets, args.seed).items():
        row = {"set": name, "n": len(images),
               **quality.evaluate(names, images, sets.real, context, registry)}
        row["memo_copy_share_before"] = plain_pooled_memorisation(images, sets.real, data.train)
        for c in COLUMNS:
            row[f"{c}_z"] = (row[c] - resplits[c].mean()) / resplits[c].std()
        rows.append(row)
        print(f"{name}: n={len(images)} copy share {row['memo_copy_share']:.3f} (before "
              f"{row['memo_copy_share_before']:.3f})", file=sys.stderr)
    closer = closer_columns()
    real = next(row for row in rows if row["set"] == "real held-out digits")
    for row in rows:
        for c, verdict in compare_verdicts(row, real, closer).items():
            row[f"{c}_compare"] = verdict
            row[f"{c}_change_pct"] = 100.0 * (row[c] - real[c]) / abs(real[c])
    # The real row's own noise as compare sees it: each resplit (real digits against another
    # split of the real digits: what a perfect generator would score) judged against the real
    # row by the same call.
    noise = {c: pd.Series([compare_verdicts(r, real, closer)[c] for r in resplit_rows])
             for c in closer}
    df = pd.DataFrame(rows)
    by_set = df.set_index("set")
    checks = {
        "half shifted copies: memo_copy_share >= 0.25":
            by_set.loc["half shifted copies", "memo_copy_share"] >= 0.25,
        "held-out 7s alone: memo_copy_share <= 0.03":
            by_set.loc["held-out 7s alone", "memo_copy_share"] <= 0.03,
    }
    notes = []
    for name in ("one digit repeated", "five digits repeated"):
        spared = [f"{c}: {by_set.loc[name, f'{c}_compare']}" for c in closer
                  if not is_worse(by_set.loc[name, f"{c}_compare"])]
        checks[f"{name}: `ganbench compare` calls every two-sided metric worse than the real row"
               + (f" (not: {'; '.join(spared)})" if spared else "")] = not spared
        near = [c for c in closer if abs(by_set.loc[name, f"{c}_z"]) <= 3]
        notes.append(f"{name}, by distance alone: two-sided metrics within 3 real-row SDs of the "
                     f"resplit mean: {', '.join(near) or 'none'}.")
    notes.append(f"compare against the real row, on the {len(resplit_rows)} resplit rows (real "
                 "digits, sampling noise only): " + "; ".join(
                     f"{c} " + ", ".join(f"{k} {v}" for k, v in noise[c].value_counts().items())
                     for c in closer) + ".")

    low = resplits["prdc_density"].mean() - 3 * resplits["prdc_density"].std()
    high = resplits["prdc_density"].mean() + 3 * resplits["prdc_density"].std()
    single = single_digit_densities(sets.stand_in, sets.real)
    within = float(((single >= low) & (single <= high)).double().mean())
    notes.append(f"prdc_density of one digit repeated, for each of the first {len(single)} "
                 f"held-out digits in turn: within 3 real-row SDs ({low:.3f} to {high:.3f}) for "
                 f"{within:.0%} of them (values {float(single.min()):.1f} to "
                 f"{float(single.max()):.1f}, median {float(single.median()):.1f}).")

    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "table.csv", index=False)
    spread = pd.DataFrame({"resplit_mean": resplits[COLUMNS].mean(),
                           "resplit_sd": resplits[COLUMNS].std(),
                           "compare_vs_real_row": {c: ", ".join(
                               f"{k} {v}" for k, v in noise[c].value_counts().items())
                               for c in closer}})
    spread.to_csv(args.out / "resplits.csv")
    text = [markdown(df, closer), "",
            "`ganbench compare` of each set against the real row (one row a side), with the "
            "value's change from the real row and z:", "", compare_markdown(df, closer), "",
            "Checks:"]
    text += [f"- {'PASS' if ok else 'FAIL'}: {what}" for what, ok in checks.items()]
    text += ["", *notes]
    if args.time_against:
        timing = time_suites(args.time_against, sets, context, registry, args.repeats)
        timing.to_csv(args.out / "suite_time.csv", index=False)
        summary = timing.groupby(["code", "phase"])[["wall_s", "cpu_s"]].median().round(2)
        text += ["", f"Default metric suite, N = {n}, 32x32, median of {args.repeats}:", "",
                 summary.to_markdown()]
    (args.out / "table.md").write_text("\n".join(text) + "\n")
    print("\n".join(text[-12:]), file=sys.stderr)
    print(f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
