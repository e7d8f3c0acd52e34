"""A run folder -> one self-contained HTML page, and github-action-benchmark JSON.

The page (``ganbench report RUN_DIR --html``) holds, in order: the results table (for a run
with several seeds per combination: the median [interval] over seeds, then the verdicts),
bar charts of images/s and peak memory per combination (multi-seed: every judged column's
median with its interval as an error bar), quality-over-time curves (when ``curves/*.csv``
exist), the sample grids side by side, and the attention maps (ganbench.results.charts draws
the charts). Every image is a PNG embedded as a base64 data URI, so the file can be mailed,
attached to a CI run or opened offline.

github-action-benchmark (``--format gab-json``) takes one JSON list per direction, so two files
are written: ``gab-bigger.json`` for its ``customBiggerIsBetter`` tool and ``gab-smaller.json``
for ``customSmallerIsBetter``; each is a list of ``{"name", "unit", "value", "extra"}``. The
entries are the core's headline columns (img/s, step time, peak memory) and every metric
column with a direction (per-class shares left out), as the column registry
(ganbench.results.columns) declares them; a closer-to-real column goes to gab-smaller.json as
its distance to the real-data row (name 'COMBO COLUMN distance to real'), and is left out
without a real row. A multi-seed run gives one entry per combination: the median over seeds.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Optional

import pandas as pd

from ganbench.results.charts import (curves_chart, finite, interval_chart,  # noqa: F401
                                     memory_chart, models, read_curves, reference_values,
                                     throughput_chart)
from ganbench.results.columns import (CLOSER, HEADLINE, HIGHER, LOWER, PER_CLASS, column,
                                      direction, distance_to_real)
from ganbench.results.store import atomic_write_text, read_table

MIB = 2 ** 20
GAB_FILES = {HIGHER: "gab-bigger.json", LOWER: "gab-smaller.json"}


# ------------------------------------------------------------------------------------------
# github-action-benchmark
# ------------------------------------------------------------------------------------------
def gab_columns(df: pd.DataFrame) -> list[str]:
    """The columns github-action-benchmark gets: the headline core columns, then every metric
    column with a direction except per-class ones, in table order."""
    quality = [c for c in df.columns if column(c).quality and direction(c)
               and not PER_CLASS.search(c)]
    return [c for c in HEADLINE if c in df.columns] + quality


def gab_entries(df: pd.DataFrame) -> dict[str, list[dict]]:
    """{'higher': [...], 'lower': [...]}: one {name, unit, value, extra} per combination and
    column with a finite value; name is 'COMBO COLUMN' (closer columns: 'COMBO COLUMN
    distance to real'), stable across runs. Several seeds: the medians over seeds."""
    from ganbench.results.summary import has_seeds, summarise

    reference = reference_values(df)
    names = gab_columns(df)
    rows = models(summarise(df) if has_seeds(df) else df)
    out: dict[str, list[dict]] = {HIGHER: [], LOWER: []}
    for row in rows.to_dict("records"):
        if row.get("status", "ok") != "ok":
            continue
        extra = ", ".join(str(row[c]) for c in ("device_name", "torch_version", "git_commit")
                          if c in row and row[c] is not None and str(row[c]) != "nan")
        for name in names:
            if name not in row or not finite(row[name]):
                continue
            info = column(name)
            value = float(row[name]) * (1.0 / MIB if info.format == "mib" else 1.0)
            way, label = info.direction, f"{row['combo']} {name}"
            if way == CLOSER:
                if name not in reference:
                    continue  # no real row: a distance cannot be given
                scale = 1.0 / MIB if info.format == "mib" else 1.0
                value = distance_to_real(value, reference[name] * scale)
                way, label = LOWER, f"{label} distance to real"
            entry = {"name": label, "unit": info.unit or info.label, "value": value}
            if extra:
                entry["extra"] = extra
            out[way].append(entry)
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
    with a direction and the error. Several seeds per combination: one row per combination,
    each judged cell the median [interval] over its seeds (ganbench.results.summary)."""
    from ganbench.results.store import summary_columns, with_display_columns
    from ganbench.results.summary import (HIGH, LOW, display_frame, formats_for, has_seeds,
                                          summarise)

    seeded = has_seeds(df)
    view = display_frame(summarise(df)) if seeded else with_display_columns(df)
    cols = summary_columns(df)
    if "status" in view and "status" not in cols:
        cols.insert(1, "status")
    if seeded:
        cols.insert(cols.index("combo") + 1, "n")
    extra = [c for c in view.columns if c not in cols and direction(c)
             and not c.startswith("step_ms") and c != "peak_mem_delta_bytes"
             and not c.endswith((LOW, HIGH))  # shown inside their column's cells
             and not view[c].isna().all() and not (view[c] == "").all()]
    if "error" in view:
        extra.append("error")
    return _html_table(view, cols + extra, formats_for(view) if seeded else None)


def _html_table(view: pd.DataFrame, cols: list[str], formats=None) -> str:
    from ganbench.results.table import cells

    headers, rows, align = cells(view, cols, formats)
    head = "".join(f'<th class="text">{html.escape(h)}</th>' if a == "left" and i else
                   f"<th>{html.escape(h)}</th>" for i, (h, a) in enumerate(zip(headers, align)))
    body = []
    for row in rows:
        tds = "".join(
            f'<td class="text">{html.escape(v)}</td>' if a == "left" and i else
            f"<td>{html.escape(v)}</td>" for i, (v, a) in enumerate(zip(row, align)))
        body.append(f"<tr>{tds}</tr>")
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _seed_sections(df: pd.DataFrame, reference: Optional[str]) -> list[str]:
    """Multi-seed runs: the interval note, the verdicts and the interval chart."""
    from ganbench.results.store import summary_columns
    from ganbench.results.summary import method_note, summarise
    from ganbench.results.verdicts import BETTER, WORSE, verdicts
    from ganbench.results.verdicts import display_frame as display_verdicts
    from ganbench.results.verdicts import render as render_verdicts

    summary = summarise(df)
    if reference is not None and reference not in set(models(df)["combo"].astype(str)):
        reference = None
    table = verdicts(df, reference)
    parts = [f"<p>{html.escape(method_note(summary))}</p>"]
    title = f"Verdicts against {reference}" if reference else "Verdicts between combinations"
    parts.append(f"<h2>{html.escape(title)}</h2>")
    decided = table[table["verdict"].isin([BETTER, WORSE])] if len(table) else table
    note = render_verdicts(table).splitlines()[-1] if len(table) else "(no verdicts)"
    if len(decided):
        from ganbench.results.table import Format, as_is

        view = display_verdicts(decided)
        formats = {c: Format(c, as_is, c in ("combo median", "vs median", "g", "p (Holm)"))
                   for c in view.columns}
        parts.append(_html_table(view, list(view.columns), formats))
    parts.append(f"<p>{html.escape(note)}</p>")
    names = [c for c in HEADLINE if c in summary] + [
        c for c in summary_columns(df) if column(c).quality and direction(c)]
    chart = interval_chart(summary, names, reference_values(df))
    if chart:
        parts += ["<h2>Medians over seeds</h2>", _img(chart, "medians with intervals")]
    return parts


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
    for name, label in (("device_name", "device"), ("dtype", "dtype"),
                        ("torch_version", "torch"), ("triton_version", "triton"),
                        ("git_commit", "commit")):
        if name in df:
            values = sorted({str(v) for v in df[name].dropna()})
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


def build_html(run_dir: Path, reference: Optional[str] = None) -> str:
    """The whole page as a string (no file access beyond the run folder, no network).
    ``reference``: the verdicts' reference combination of a multi-seed run (default the one
    in config.json, else every pair)."""
    from ganbench.results.store import configured_reference
    from ganbench.results.summary import has_seeds

    run_dir = Path(run_dir)
    df = read_table(run_dir)
    trained = models(df)
    combos = list(dict.fromkeys(str(c) for c in trained["combo"])) if "combo" in trained else []
    parts = [f"<h1>ganbench run {html.escape(run_dir.resolve().name)}</h1>",
             _settings_html(df, read_config(run_dir)),
             f"<p>{_environment(df)}</p>"]
    failed = trained[trained["status"] != "ok"] if "status" in trained else trained.iloc[0:0]
    if len(failed):
        names = ", ".join(f"{c} ({s})" for c, s in zip(failed["combo"], failed["status"]))
        parts.append(f'<p class="bad">Not ok: {html.escape(names)}</p>')
    parts += ["<h2>Results</h2>", _table_html(df)]
    seeded = has_seeds(df)
    if seeded:
        parts += _seed_sections(df, reference if reference is not None
                                else configured_reference(run_dir))
    charts = [] if seeded else [c for c in (throughput_chart(df), memory_chart(df)) if c]
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


def write_html(run_dir: Path, out: Optional[Path] = None,
               reference: Optional[str] = None) -> Path:
    """Write the page to ``out`` (default RUN_DIR/report.html) and return its path."""
    path = Path(out) if out else Path(run_dir) / "report.html"
    atomic_write_text(path, build_html(run_dir, reference))
    return path
