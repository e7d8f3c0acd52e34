"""A run folder -> one self-contained HTML page, and github-action-benchmark JSON.

The page (``ganbench report RUN_DIR --html``) holds, in order: the results table, bar charts of
images/s and peak memory per combination, quality-over-time curves (when ``curves/*.csv``
exist), the sample grids side by side, and the attention maps. Every image is a PNG embedded
as a base64 data URI, so the file can be mailed, attached to a CI run or opened offline.

github-action-benchmark (``--format gab-json``) takes one JSON list per direction, so two files
are written: ``gab-bigger.json`` for its ``customBiggerIsBetter`` tool and ``gab-smaller.json``
for ``customSmallerIsBetter``; each is a list of ``{"name", "unit", "value", "extra"}``.
Which file a metric goes to is ganbench.results.compare's direction table, the one `compare` uses.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Optional

import pandas as pd

from ganbench.results.compare import HIGHER, REFERENCE_STATUS, direction
from ganbench.files.atomic import write_text as atomic_write_text
from ganbench.results.store import read_table

MIB = 2 ** 20

# What goes to github-action-benchmark: (column, unit, scale). Few and stable, because each
# becomes a chart on the benchmark page; peak memory in MiB, not bytes, for readable axes.
GAB_METRICS = (
    ("img_per_s", "images/s", 1.0),
    ("step_ms_median", "ms", 1.0),
    ("peak_mem_bytes", "MiB", 1.0 / MIB),
    ("fid_digits", "FID (digit-classifier features)", 1.0),
    ("is_digits", "IS (digit classifier)", 1.0),
    ("prdc_precision", "fraction", 1.0),
    ("prdc_recall", "fraction", 1.0),
    ("prdc_density", "ratio", 1.0),
    ("prdc_coverage", "fraction", 1.0),
    ("modes_covered", "modes", 1.0),
    ("modes_kl", "nats", 1.0),
)
GAB_FILES = {HIGHER: "gab-bigger.json", "lower": "gab-smaller.json"}


def _models(df: pd.DataFrame) -> pd.DataFrame:
    """The trained combinations (not the real-data reference row)."""
    if "status" not in df:
        return df
    return df[df["status"] != REFERENCE_STATUS]


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------------------------------
# github-action-benchmark
# ------------------------------------------------------------------------------------------
def gab_entries(df: pd.DataFrame) -> dict[str, list[dict]]:
    """{'higher': [...], 'lower': [...]}: one {name, unit, value, extra} per combination and
    metric with a finite value; name is 'COMBO METRIC' so it is stable across runs."""
    out: dict[str, list[dict]] = {HIGHER: [], "lower": []}
    for row in _models(df).to_dict("records"):
        if row.get("status", "ok") != "ok":
            continue
        extra = ", ".join(str(row[c]) for c in ("device_name", "torch_version", "git_commit")
                          if c in row and row[c] is not None and str(row[c]) != "nan")
        for column, unit, scale in GAB_METRICS:
            if column in row and _finite(row[column]):
                entry = {"name": f"{row['combo']} {column}", "unit": unit,
                         "value": float(row[column]) * scale}
                if extra:
                    entry["extra"] = extra
                out[direction(column)].append(entry)
    return out


def write_gab_json(run_dir: Path, out_dir: Optional[Path] = None) -> list[Path]:
    """Write gab-bigger.json and gab-smaller.json (into ``out_dir``, default the run folder)."""
    df = read_table(run_dir)
    out_dir = Path(out_dir or run_dir)
    paths = []
    for way, entries in gab_entries(df).items():
        path = out_dir / GAB_FILES[way]
        atomic_write_text(path, json.dumps(entries, indent=1) + "\n")
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------
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


def throughput_chart(df: pd.DataFrame) -> Optional[str]:
    """Horizontal bars of images/s per combination, whiskers from the p90 to the p10 step time
    (images/s = batch / step time, so the slow p90 step gives the low end). Base64 PNG."""
    df = _models(df)
    if "img_per_s" not in df or not df["img_per_s"].map(_finite).any():
        return None
    df = df[df["img_per_s"].map(_finite)]
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
    df = _models(df)
    if "peak_mem_bytes" not in df or not df["peak_mem_bytes"].map(_finite).any():
        return None
    df = df[df["peak_mem_bytes"].map(_finite)]
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
    """metric -> the real-data row's value (held-out digits against held-out digits)."""
    if "status" not in df:
        return {}
    ref = df[df["status"] == REFERENCE_STATUS]
    if not len(ref):
        return {}
    row = ref.iloc[0]
    return {c: float(row[c]) for c in df.columns if direction(c) and _finite(row[c])}


def curves_chart(curves: dict[str, pd.DataFrame],
                 reference: Optional[dict[str, float]] = None) -> Optional[str]:
    """One panel per quality metric (those with a direction), one line per combination,
    against training step, and the real data's value as a dashed reference line where the
    run has one. Base64 PNG, or None when no curve has a metric column."""
    reference = reference or {}
    metrics = []
    for df in curves.values():
        for column in df.columns:
            if column not in ("step", "wall_s") and direction(column) and column not in metrics:
                metrics.append(column)
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
        better = "lower" if direction(metric) == "lower" else "higher"
        ax.set_title(f"{metric} ({better} is better)", fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    handles, labels = [], []
    for ax in axes.flat:  # the union: the reference line may be on some panels only
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=8,
               bbox_to_anchor=(0.5, -0.02 - 0.03 * math.ceil(len(labels) / 3)))
    fig.suptitle("Sample quality during training")
    fig.tight_layout()
    return _png(fig)


# ------------------------------------------------------------------------------------------
# The page
# ------------------------------------------------------------------------------------------
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222;
       padding: 0 1em; }
.scroll { overflow-x: auto; max-width: 100%; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; white-space: nowrap; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; position: sticky; top: 0; }
td:first-child, th:first-child { text-align: left; position: sticky; left: 0;
                                 background: #fafafa; }
td.text, th.text { text-align: left; } td.text { white-space: normal; min-width: 6em; }
dl.settings { display: flex; flex-wrap: wrap; gap: 0.3em 1.4em; font-size: 0.95em;
              margin: 0.5em 0 0.6em; }
dl.settings div { display: flex; gap: 0.4em; }
dl.settings dt { font-weight: 600; } dl.settings dd { margin: 0; }
.grid { display: flex; flex-wrap: wrap; gap: 1.2em; }
figure { margin: 0; } figcaption { font-size: 0.85em; text-align: center; }
img { max-width: 100%; }
img.pixel { image-rendering: pixelated; width: 280px; }
.bad { color: #b00; }
"""

# Run settings shown under the title: (config.json key, label). Rows carry the same values,
# used when config.json is missing (a results.json copied on its own).
SETTINGS = (("plugins", "plugins"), ("steps", "steps"), ("batch_size", "batch"),
            ("image_size", "image size"), ("device", "device"), ("dtype", "dtype"),
            ("seed", "seed"), ("data", "data"), ("digits", "digits"), ("eval_n", "metric n"),
            ("eval_every", "eval every"), ("compile", "compile"))


def _embed_file(path: Path) -> Optional[str]:
    try:
        return base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return None


def _img(data: str, alt: str, cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<img{klass} alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table_html(df: pd.DataFrame) -> str:
    """The run's table in a horizontally scrolling box: the summary's columns (units in the
    headers, the same formats as the terminal, blanks for missing) plus every other column
    with a direction and the error."""
    from ganbench.results.store import summary_columns, with_display_columns
    from ganbench.results.table import cells

    view = with_display_columns(df)
    cols = summary_columns(df)
    if "status" in view and "status" not in cols:
        cols.insert(1, "status")
    extra = [c for c in view.columns if c not in cols and direction(c)
             and not c.startswith("step_ms") and c != "peak_mem_delta_bytes"
             and not view[c].isna().all()]
    if "error" in view:
        extra.append("error")
    headers, rows, align = cells(view, cols + extra)
    head = "".join(f'<th class="text">{html.escape(h)}</th>' if a == "left" and i else
                   f"<th>{html.escape(h)}</th>" for i, (h, a) in enumerate(zip(headers, align)))
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="text">{html.escape(v)}</td>' if a == "left" and i else
            f"<td>{html.escape(v)}</td>" for i, (v, a) in enumerate(zip(row, align)))
        body.append(f"<tr>{cells}</tr>")
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def read_config(run_dir: Path) -> dict:
    """The run's config.json, or {} when it is missing or unreadable."""
    try:
        data = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _settings_html(df: pd.DataFrame, config: dict) -> str:
    """The run's settings as a definition list: from config.json, else from the rows."""
    items = []
    for key, label in SETTINGS:
        value = config.get(key)
        if value is None and key in df:
            values = sorted({str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
                             for v in df[key].dropna()})
            value = ", ".join(values) if values else None
        if value is None:
            continue
        if key in ("eval_n", "eval_every") and (config.get("metrics") == [] or not value):
            continue  # no metrics ran, or no curves: the setting did nothing
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        items.append(f"<div><dt>{html.escape(label)}</dt><dd>{html.escape(str(value))}</dd>"
                     "</div>")
    return f'<dl class="settings">{"".join(items)}</dl>' if items else ""


def _environment(df: pd.DataFrame) -> str:
    parts = []
    for column, label in (("device_name", "device"), ("dtype", "dtype"),
                          ("torch_version", "torch"), ("triton_version", "triton"),
                          ("git_commit", "commit")):
        if column in df:
            values = sorted({str(v) for v in df[column].dropna()})
            if values:
                parts.append(f"{label}: {html.escape(', '.join(values))}")
    return " &middot; ".join(parts)


def _image_section(title: str, run_dir: Path, folder: str, combos: list[str],
                   cls: str = "") -> str:
    figures = []
    for combo in combos:
        data = _embed_file(run_dir / folder / f"{combo}.png")
        if data:
            figures.append(f"<figure>{_img(data, f'{folder} {combo}', cls)}"
                           f"<figcaption>{html.escape(combo)}</figcaption></figure>")
    if not figures:
        return ""
    return f"<h2>{title}</h2>\n<div class=\"grid\">{''.join(figures)}</div>"


def build_html(run_dir: Path) -> str:
    """The whole page as a string (no file access beyond the run folder, no network)."""
    run_dir = Path(run_dir)
    df = read_table(run_dir)
    models = _models(df)
    combos = [str(c) for c in models["combo"]] if "combo" in models else []
    parts = [f"<h1>ganbench run {html.escape(run_dir.resolve().name)}</h1>",
             _settings_html(df, read_config(run_dir)),
             f"<p>{_environment(df)}</p>"]
    failed = models[models["status"] != "ok"] if "status" in models else models.iloc[0:0]
    if len(failed):
        names = ", ".join(f"{c} ({s})" for c, s in zip(failed["combo"], failed["status"]))
        parts.append(f'<p class="bad">Not ok: {html.escape(names)}</p>')
    parts += ["<h2>Results</h2>", _table_html(df)]
    charts = [c for c in (throughput_chart(df), memory_chart(df)) if c]
    if charts:
        parts.append("<h2>Speed and memory</h2>")
        parts += [_img(c, "bar chart") for c in charts]
    curve_png = curves_chart(read_curves(run_dir), reference_values(df))
    if curve_png:
        parts += ["<h2>Quality over training</h2>",
                  "<p>Dashed line: the real held-out digits scored against other held-out "
                  "digits (the value a perfect generator would reach).</p>",
                  _img(curve_png, "quality curves")]
    parts.append(_image_section("Samples (same noise for every combination)", run_dir,
                                "samples", combos, cls="pixel"))
    parts.append(_image_section("Attention maps", run_dir, "attention", combos))
    body = "\n".join(p for p in parts if p)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>ganbench {html.escape(run_dir.name)}</title><style>{STYLE}</style></head>"
            f"<body>\n{body}\n</body></html>\n")


def write_html(run_dir: Path, out: Optional[Path] = None) -> Path:
    """Write the page to ``out`` (default RUN_DIR/report.html) and return its path."""
    path = Path(out) if out else Path(run_dir) / "report.html"
    atomic_write_text(path, build_html(run_dir))
    return path
