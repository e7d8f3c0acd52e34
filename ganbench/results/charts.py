"""The HTML report's charts, each a base64 PNG: speed and memory bars, quality curves over
training, and for multi-seed runs each judged column's median with its interval per
combination. Labels, units and which way is better come from the column registry
(ganbench.results.columns)."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Optional

import pandas as pd

from ganbench.results.columns import CLOSER, REFERENCE_STATUS, column, direction

MIB = 2 ** 20
BETTER_TEXT = {"lower": "lower is better", "higher": "higher is better",
               CLOSER: "closer to real is better"}


def models(df: pd.DataFrame) -> pd.DataFrame:
    """The trained combinations (not the real-data reference row)."""
    if "status" not in df:
        return df
    return df[df["status"] != REFERENCE_STATUS]


def finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _measured(df: pd.DataFrame, column: str) -> Optional[pd.DataFrame]:
    """The trained rows with a finite ``column``, or None when there is none to draw."""
    df = models(df)
    if column not in df or not df[column].map(finite).any():
        return None
    return df[df[column].map(finite)]


def throughput_chart(df: pd.DataFrame) -> Optional[str]:
    """Horizontal bars of images/s per combination, whiskers from the p90 to the p10 step time
    (images/s = batch / step time, so the slow p90 step gives the low end). Base64 PNG."""
    df = _measured(df, "img_per_s")
    if df is None:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(df) + 1.4))
    y = range(len(df))
    values = df["img_per_s"].astype(float).to_numpy()
    xerr = None
    if {"step_ms_p10", "step_ms_p90", "batch_size"} <= set(df.columns):
        batch = df["batch_size"].astype(float).to_numpy()
        low = batch / (df["step_ms_p90"].astype(float).to_numpy() / 1000.0)
        high = batch / (df["step_ms_p10"].astype(float).to_numpy() / 1000.0)
        xerr = [(values - low).clip(min=0), (high - values).clip(min=0)]
    ax.barh(list(y), values, xerr=xerr, color="#4C72B0", capsize=3)
    # The value goes in the tick label: beside the bar it would collide with the whiskers.
    ax.set_yticks(list(y), [f"{c}\n{v:.3g} img/s" for c, v in zip(df["combo"], values)])
    ax.invert_yaxis()
    ax.set_xlabel("training throughput (images/s; bar = median step, whiskers = p90..p10 step)")
    ax.set_title("Images per second per combination (higher is better)")
    return _png(fig)


def memory_chart(df: pd.DataFrame) -> Optional[str]:
    """Horizontal bars of peak memory (MiB) per combination, with how it was measured."""
    df = _measured(df, "peak_mem_bytes")
    if df is None:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(df) + 1.4))
    values = df["peak_mem_bytes"].astype(float).to_numpy() / MIB
    y = list(range(len(df)))
    ax.barh(y, values, color="#DD8452")
    ax.set_yticks(y, df["combo"].tolist())
    ax.invert_yaxis()
    methods = sorted(set(df["mem_method"].dropna())) if "mem_method" in df else []
    ax.set_xlabel("peak memory (MiB)" + (f"; {'; '.join(methods)}" if methods else ""))
    ax.set_title("Peak memory per combination (lower is better)")
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.0f}", va="center", ha="left", fontsize=8)
    ax.margins(x=0.15)
    return _png(fig)


def read_curves(run_dir: Path) -> dict[str, pd.DataFrame]:
    """combo -> its curves/<combo>.csv (step, wall_s, metric columns); unreadable files skipped."""
    out = {}
    for path in sorted((Path(run_dir) / "curves").glob("*.csv")):
        try:
            out[path.stem] = pd.read_csv(path)
        except (OSError, ValueError):
            continue
    return out


def reference_values(df: pd.DataFrame) -> dict[str, float]:
    """metric -> the real-data row's value (held-out digits against held-out digits); the
    median when the table has one real row per seed."""
    if "status" not in df:
        return {}
    ref = df[df["status"] == REFERENCE_STATUS]
    out = {}
    for c in df.columns:
        if not direction(c):
            continue
        values = pd.to_numeric(ref[c], errors="coerce").dropna()
        if len(values) and math.isfinite(float(values.median())):
            out[c] = float(values.median())
    return out


def curves_chart(curves: dict[str, pd.DataFrame],
                 reference: Optional[dict[str, float]] = None) -> Optional[str]:
    """One panel per quality metric (those with a direction), one line per combination,
    against training step, and the real data's value as a dashed reference line where the
    run has one. Base64 PNG, or None when no curve has a metric column."""
    reference = reference or {}
    metrics = []
    for df in curves.values():
        for name in df.columns:
            if name not in ("step", "wall_s") and direction(name) and name not in metrics:
                metrics.append(name)
    if not metrics:
        return None
    plt = _pyplot()
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for combo, df in curves.items():
            if metric in df and "step" in df:
                ax.plot(df["step"], df[metric], marker="o", markersize=3, label=combo)
        if metric in reference:
            ax.axhline(reference[metric], color="0.35", linestyle="--", linewidth=1.2,
                       label="real data")
        ax.set_title(f"{metric} ({BETTER_TEXT[direction(metric)]})", fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel(column(metric).header)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    _legend(fig, axes)
    fig.suptitle("Sample quality during training")
    fig.tight_layout()
    return _png(fig)


def _legend(fig, axes) -> None:
    handles, labels = [], []
    for ax in axes.flat:  # the union: the reference line may be on some panels only
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if labels:
        fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=8,
                   bbox_to_anchor=(0.5, -0.02 - 0.03 * math.ceil(len(labels) / 3)))


def interval_chart(summary: pd.DataFrame, names: list[str],
                   reference: Optional[dict[str, float]] = None) -> Optional[str]:
    """Multi-seed runs: one panel per column of ``names`` found in ``summary``
    (ganbench.results.summary.summarise), a dot per combination at the median over its seeds
    and an error bar over the interval, the real data's value dashed. Base64 PNG or None."""
    from ganbench.results.summary import HIGH, LOW

    reference = reference or {}
    rows = models(summary)
    names = [n for n in names if n in rows and n + LOW in rows and rows[n].map(finite).any()]
    if not names or rows.empty:
        return None
    plt = _pyplot()
    cols = min(3, len(names))
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.4 * cols, (0.4 * len(rows) + 1.6) * nrows),
                             squeeze=False)
    y = list(range(len(rows)))
    for ax, name in zip(axes.flat, names):
        info = column(name)
        scale = 1.0 / MIB if info.format == "mib" else 1.0
        med = rows[name].astype(float).to_numpy() * scale
        low = rows[name + LOW].astype(float).to_numpy() * scale
        high = rows[name + HIGH].astype(float).to_numpy() * scale
        err = [(med - low).clip(min=0), (high - med).clip(min=0)]
        ax.errorbar(med, y, xerr=err, fmt="o", color="#4C72B0", capsize=3)
        if name in reference:
            ax.axvline(reference[name] * scale, color="0.35", linestyle="--", linewidth=1.2,
                       label="real data")
        ax.set_yticks(y, rows["combo"].astype(str).tolist(), fontsize=8)
        ax.invert_yaxis()
        better = BETTER_TEXT.get(direction(name) or "", "")
        ax.set_title(f"{info.header}" + (f" ({better})" if better else ""), fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    _legend(fig, axes)
    fig.suptitle("Median over seeds with its interval (order statistics; see the note)")
    fig.tight_layout()
    return _png(fig)
