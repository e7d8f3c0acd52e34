"""Every quality metric on image sets whose verdict is known in advance, and whether it says so.

The sets (all at the run's image size, N = the largest the held-out digits allow, scored against
the same held-out half a `ganbench run` row is scored against):

  real held-out digits   the other held-out half: the "real data" row; must pass everything
  training-set copy      N training images: perfect digits, but memorised
  blank                  every pixel -1 (the background)
  one repeated image     one held-out digit, N times
  noise sigma 0.3        the held-out digits + Gaussian noise (sigma 0.3 in [-1, 1] units), clamped
  shifted 3 px           the held-out digits moved 3 pixels right (background fills the gap)
  uniform noise          every pixel uniform in [-1, 1]
  generators             samples of trained generators (--generator), drawn as `ganbench run`
                         draws them (seed + 7)

Pass/flag rule for each metric, from the spread of the real-vs-real row itself: the "real data"
row is recomputed on --resplits other random splits of the held-out digits into two halves; a
value is flagged when it lies more than --z standard deviations of those resplits from their
mean, in the metric's bad direction (both directions for is_digits, where more than the real
value means samples spread over unselected classes, and prdc_density, where more than the real
value means samples crowd a few real digits). modes_covered is flagged below modes_total. So the
real row passes by construction only if it looks like any other split of real digits, and a bad
set is flagged when no split of real digits would score like it.

Usage (the command behind results/quality-metric-check/, see its README):

    python scripts/metric_check.py --generator RUN_DIR/models/dcgan+bce.G.pt \
        --generator RUN_DIR/checkpoints/sagan+hinge+eager-attn.pt --out results/quality-metric-check
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from ganbench.quality import evaluate as quality
from ganbench.config import RunConfig
from ganbench.registry import get_registry
from ganbench.sweep.plan import load_data
from ganbench.specs import MetricContext, ModelRequest
from ganbench.training.loop import generate

METRICS = list(quality.DEFAULT_METRICS)
# (column, bad direction): "high" = higher is worse, "low" = lower is worse, "both".
RULES = [("fid_digits", "high"), ("is_digits", "both"), ("prdc_precision", "low"),
         ("prdc_recall", "low"), ("prdc_density", "both"), ("prdc_coverage", "low"),
         ("modes_kl", "high"), ("memo_copy_share", "high"), ("memo_nn_ratio", "low"),
         ("kid_digits", "high")]


def pass_bands(resplit_rows: list[dict], z: float) -> dict[str, tuple]:
    """{column: (low, high, mean, sd)}: mean +- z sample standard deviations of the resplit
    rows, open (infinite) on the side that is not the metric's bad direction."""
    spread = pd.DataFrame(resplit_rows)
    bands = {}
    for column, direction in RULES:
        mean, sd = float(spread[column].mean()), float(spread[column].std())
        low = mean - z * sd if direction in ("low", "both") else -math.inf
        high = mean + z * sd if direction in ("high", "both") else math.inf
        bands[column] = (low, high, mean, sd)
    return bands


def flags(row: dict, bands: dict) -> list[str]:
    """The columns whose rule flags ``row``: outside its band, or fewer modes than selected."""
    out = [c for c, _ in RULES if not bands[c][0] <= row[c] <= bands[c][1]]
    if row["modes_covered"] < row["modes_total"]:
        out.append("modes_covered")
    return out


def shifted(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """x moved ``pixels`` to the right; the uncovered columns are background (-1)."""
    return F.pad(x, (pixels, 0, 0, 0), value=-1.0)[..., :x.shape[-1]]


def load_generator(path: Path, registry):
    """(G, z_dim, steps, combo) from RUN_DIR/models/<combo>.G.pt (steps from the run's
    results.json) or from a training checkpoint RUN_DIR/checkpoints/<combo>.pt."""
    from ganbench.training.checkpoint import load_checkpoint
    from ganbench.commands.sample import load_generator as load_saved

    run_dir, combo = path.parent.parent, path.name.split(".")[0]
    if path.parent.name == "models":
        G, saved = load_saved(run_dir, combo, "cpu")
        rows = json.loads((run_dir / "results.json").read_text())
        rows = rows.get("rows", rows) if isinstance(rows, dict) else rows
        steps = next(int(r["steps"]) for r in rows if r.get("combo") == combo)
        return G, int(saved["z_dim"]), steps, combo
    state = load_checkpoint(path)
    config = json.loads((run_dir / "config.json").read_text())
    parts = combo.split("+")
    arch = registry.architectures[parts[0]]
    attention = parts[-1] if parts[-1] in registry.attention else None
    attend = registry.attention[attention].factory() if attention else None
    G, _ = arch.build(ModelRequest(int(config["image_size"]), arch.defaults.z_dim, attend=attend))
    G.load_state_dict(state["generator"])
    return G, arch.defaults.z_dim, int(state["step"]), combo


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--generator", action="append", default=[], type=Path,
                   help="RUN_DIR/models/<combo>.G.pt or RUN_DIR/checkpoints/<combo>.pt")
    p.add_argument("--digits", default="7,8")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resplits", type=int, default=8)
    p.add_argument("--z", type=float, default=5.0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    start = time.perf_counter()

    registry = get_registry()
    digits = tuple(int(d) for d in args.digits.split(","))
    cfg = RunConfig(plugins=("dcgan",), digits=digits, image_size=args.image_size,
                    device="cpu", seed=args.seed)
    data = load_data(cfg, registry)
    n = quality.check_eval_n(quality.max_eval_n(len(data.heldout)), len(data.heldout))
    sets = quality.eval_sets(data.heldout, data.heldout_labels, n, args.seed)
    context = MetricContext(digits=digits, image_size=args.image_size, device="cpu",
                            seed=args.seed, real_labels=sets.real_labels, train=data.train)

    # The spread of the real-vs-real row over other splits: the pass band of every rule.
    resplit_rows = []
    for s in range(1, args.resplits + 1):
        row, _ = quality.real_reference_row(data.heldout, data.heldout_labels, n,
                                            context, registry, METRICS, seed=args.seed + s)
        resplit_rows.append(row)
    bands = pass_bands(resplit_rows, args.z)

    gen = torch.Generator().manual_seed(args.seed + 100)
    stand_in = sets.stand_in
    candidates = {
        "real held-out digits": stand_in,
        "training-set copy": data.train[:n],
        "blank": torch.full_like(stand_in, -1.0),
        "one repeated image": stand_in[:1].repeat(len(stand_in), 1, 1, 1),
        "noise sigma 0.3": (stand_in + 0.3 * torch.randn(stand_in.shape, generator=gen))
        .clamp(-1, 1),
        "shifted 3 px": shifted(stand_in, 3),
        "uniform noise": torch.rand(stand_in.shape, generator=gen) * 2 - 1,
    }
    for path in args.generator:
        G, z_dim, steps, combo = load_generator(path, registry)
        candidates[f"{combo} after {steps} steps"] = generate(G, n, z_dim, "cpu", args.seed + 7)

    rows = []
    for name, images in candidates.items():
        row = {"set": name, **quality.evaluate(METRICS, images, sets.real, context, registry)}
        row["flagged_by"] = " ".join(flags(row, bands))
        rows.append(row)
        print(f"{name}: flagged by {row['flagged_by'] or 'nothing'}", file=sys.stderr)
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "metric_check.csv", index=False)
    pd.DataFrame([{"metric": c, "bad_direction": d, "resplit_mean": bands[c][2],
                   "resplit_sd": bands[c][3], "pass_low": bands[c][0], "pass_high": bands[c][1]}
                  for c, d in RULES]).to_csv(args.out / "pass_bands.csv", index=False)
    (args.out / "table.md").write_text(markdown(df, digits, bands) + "\n")
    real_flags = df.loc[df["set"] == "real held-out digits", "flagged_by"].iloc[0]
    unflagged = [r["set"] for r in rows[1:] if not r["flagged_by"]]
    print(f"real row flagged by: {real_flags or 'nothing'}; bad sets flagged by nothing: "
          f"{', '.join(unflagged) or 'none'}; {time.perf_counter() - start:.0f} s",
          file=sys.stderr)
    return 0 if not real_flags and not unflagged else 1


def markdown(df: pd.DataFrame, digits: tuple[int, ...], bands: dict) -> str:
    """The table: each value, with an x after it where its rule flags it."""
    columns = ["fid_digits", "kid_digits"] + [c for c, _ in RULES[1:6]] + ["modes_covered"] + \
        [f"modes_share_{d}" for d in digits] + ["modes_kl", "memo_copy_share", "memo_nn_ratio"]
    header = ["set"] + columns
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in df.iterrows():
        flags = set(row["flagged_by"].split())
        cells = [row["set"]]
        for c in columns:
            if c == "modes_covered":
                value = f"{int(row[c])}/{int(row['modes_total'])}"
            else:
                value = f"{row[c]:.3g}" if abs(row[c]) < 100 else f"{row[c]:.0f}"
            cells.append(value + (" x" if c in flags else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
