"""How runs and pictures show in Jupyter: HTML for a Run (its table with units, the sample grids
beside it) and for a set of images; PIL images show themselves (their ``_repr_png_``)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

# Sample grids are 8x8 tiles of 32-128 px: drawn at up to 2x without smoothing they stay legible
# in a notebook cell (a 32 px run's grid is 290 px wide, 580 px at 2x).
PIXELATED = "image-rendering: pixelated; image-rendering: crisp-edges;"
MAX_SHOWN_PX = 600


class Images(dict):
    """combination -> PIL image, in the run's combination order. In Jupyter: every image side
    by side with its combination under it; ``images["dcgan+bce"]`` alone shows as a PNG."""

    @classmethod
    def from_folder(cls, folder: Path, order: list[str]) -> "Images":
        """The ``<combination>.png`` files of ``folder`` (the ``order`` ones first), each read
        whole into memory so no file stays open; missing folder -> empty."""
        from PIL import Image

        paths = {p.stem: p for p in sorted(Path(folder).glob("*.png"))}
        names = [n for n in order if n in paths] + [n for n in paths if n not in order]
        out = cls()
        for name in names:
            with Image.open(paths[name]) as image:
                image.load()
                out[name] = image.copy()
        return out

    def _repr_html_(self) -> str:
        if not self:
            return "<p><i>no images</i></p>"
        return _figures(self)


def png_base64(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figures(images: dict) -> str:
    figures = []
    for name, image in images.items():
        width = min(MAX_SHOWN_PX, 2 * image.width) if image.width < MAX_SHOWN_PX // 2 else None
        size = f' width="{width}"' if width else ""
        figures.append(
            f'<figure style="display:inline-block;margin:4px;text-align:center">'
            f'<img{size} style="{PIXELATED}" alt="{html.escape(name)}" '
            f'src="data:image/png;base64,{png_base64(image)}">'
            f"<figcaption>{html.escape(name)}</figcaption></figure>")
    return f'<div>{"".join(figures)}</div>'


def table_html(df, columns=None) -> str:
    """A run table as HTML: the columns ``ganbench run`` prints (or ``columns``), units in the
    headers, the same number formats, blanks for missing values."""
    from ganbench.results.store import summary_columns, with_display_columns
    from ganbench.results.table import render

    if df.empty:
        return "<p><i>no rows yet</i></p>"
    cols = list(columns) if columns else summary_columns(df)
    return render(with_display_columns(df), cols, style="html")


def run_html(run) -> str:
    """A Run in a notebook: where it is and how it was set, what is unfinished and how to go
    on, the table, then the sample grids."""
    from ganbench.errors import UserError

    parts = [f"<p><b>ganbench run</b> <code>{html.escape(str(run.dir))}</code></p>"]
    try:
        cfg = run.settings
    except UserError as exc:
        return parts[0] + f"<p>{html.escape(str(exc))}</p>"
    parts.append(f"<p>{html.escape(settings_line(cfg))}</p>")
    missing = run.unfinished
    if missing:
        parts.append(f"<p style=\"color:#b26a00\">unfinished: {html.escape(', '.join(missing))}"
                     f"; continue with <code>ganbench.load({html.escape(repr(str(run.dir)))})"
                     f".resume()</code></p>")
    try:
        parts.append(table_html(run.table, cfg.columns))
    except UserError as exc:  # interrupted before its first row
        parts.append(f"<p><i>{html.escape(str(exc))}</i></p>")
    samples = run.samples
    if samples:
        parts.append(_figures(samples))
    return "\n".join(parts)


def settings_line(cfg) -> str:
    """'dcgan, sagan · 4 steps · 32 px · batch 8 · seed 0 · cpu fp32' (what a reader compares
    first)."""
    parts = [", ".join(cfg.plugins), f"{cfg.steps} steps", f"{cfg.image_size} px",
             f"batch {cfg.batch_size}", f"seed {cfg.seed}", f"{cfg.device} {cfg.dtype}"]
    if cfg.eval_n:
        parts.append(f"eval n {cfg.eval_n}")
    return " · ".join(parts)
