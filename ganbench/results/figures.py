"""Pictures: sample grids from fixed noise and the attention map of the centre pixel.

Attention maps work for any architecture whose modules expose ``record`` and ``last_qk`` (the
convention documented in ganbench.specs.ArchitectureSpec); the map is softmax(q_c k^T) for the
centre query c, computed by the reference formula whatever kernel trained the model, reshaped to
the layer's H x W, as the textbook draws it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 1, H, W) in [-1, 1] -> uint8 (N, H, W) in [0, 255] (round half away from zero)."""
    x = (images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5
    return x.round().to(torch.uint8)[:, 0].numpy()


def save_grid(images: torch.Tensor, path: Path, ncol: int = 8, pad: int = 2) -> Path:
    """Tile images (N, 1, H, W) in [-1, 1] into one grey PNG with ``pad`` dark pixels between."""
    from PIL import Image

    tiles = to_uint8(images)
    n, h, w = tiles.shape
    ncol = min(ncol, n)
    nrow = math.ceil(n / ncol)
    canvas = np.zeros((nrow * (h + pad) + pad, ncol * (w + pad) + pad), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncol)
        canvas[pad + r * (h + pad):pad + r * (h + pad) + h,
               pad + c * (w + pad):pad + c * (w + pad) + w] = tile
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas, mode="L").save(path)
    return path


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules()
            if hasattr(m, "record") and hasattr(m, "last_qk")]


@torch.no_grad()
def centre_attention(G: nn.Module, z: torch.Tensor) -> tuple[torch.Tensor, list[tuple]]:
    """Run G on z (B, z_dim, 1, 1) recording attention; return (images, [(layer, maps)]).

    maps is (B, H, W): for each sample, how much the centre position attends to every position.
    """
    modules = attention_modules(G)
    was_training = G.training
    G.eval()
    for _, m in modules:
        m.record = True
    try:
        images = G(z).float().cpu()
    finally:
        for _, m in modules:
            m.record = False
        G.train(was_training)
    out = []
    for name, m in modules:
        q, k = (t.float().cpu() for t in m.last_qk)
        m.last_qk = None
        n = q.shape[1]
        side = int(math.isqrt(n))
        centre = (side // 2) * side + side // 2
        weights = torch.softmax(torch.einsum("bd,bnd->bn", q[:, centre], k), dim=-1)  # (B, N)
        out.append((name, weights.reshape(-1, side, side)))
    return images, out


# Alternate rows and columns near zero in an attention map (issue 22) are the model's, not the
# drawing's: after a stride-2 transposed convolution (4x4 kernel, padding 1) each output pixel
# of parity (row % 2, col % 2) is made by its own 2x2 quarter of the kernel, so the four
# "phases" carry differently shaped features, and the key projection learns to tell them apart.
# Measured on the default SAGAN after 300 steps (64 fixed-noise samples, 8x8 layer of G): key
# norm by phase ee/eo/oe/oo 1.90/0.66/0.74/2.27, attention of the centre (an even/even pixel)
# 0.28/0.32/0.31/3.09 x uniform; the same map computed on the H x W grid without any flatten
# or reshape differs by 0.0; an untrained G is uniform (1.0 in every phase); reproduce with
# scripts/attention_phases.py RUN_DIR. When one phase
# takes this much more than another, the panel says so.
PHASE_NOTE_RATIO = 2.0


def phase_weights(m: torch.Tensor) -> torch.Tensor:
    """(2, 2): mean attention weight x N of maps ``m`` (B, H, W) over the pixels of each
    (row % 2, col % 2) phase; 1 everywhere for uniform attention."""
    n = m.shape[-1] * m.shape[-2]
    return torch.stack([torch.stack([m[:, r::2, c::2].mean() * n for c in (0, 1)])
                        for r in (0, 1)])


def phase_note(m: torch.Tensor) -> str:
    """A one-line note when one phase of ``m`` gets over PHASE_NOTE_RATIO times another's
    attention, else ""."""
    if m.shape[-1] < 2 or m.shape[-2] < 2:
        return ""
    w = phase_weights(m.float())
    if float(w.min()) > 0 and float(w.max() / w.min()) <= PHASE_NOTE_RATIO:
        return ""
    cells = " ".join(f"{'eo'[r]}{'eo'[c]} {float(w[r, c]):.2f}" for r in (0, 1) for c in (0, 1))
    return f"by (row, col) parity: {cells}"


PHASE_FOOTNOTE = ("parity (e = even, o = odd row/column): a stride-2 transposed convolution "
                  "makes each of the four pixel phases with its own quarter of the kernel; the "
                  "keys tell the phases apart, so attention can favour one (not a drawing "
                  "error)")


def layer_label(index: int, count: int, name: str, module: nn.Module, side: int) -> str:
    """A readable title for one attention layer's map: which of the model's attention layers
    it is, the feature map it attends over, and the module's path for reference, e.g.
    'attention 1 of 2: 16x16 map (N=256)' / 'SelfAttention at hidden.2'."""
    return (f"attention {index} of {count}: {side}x{side} map (N={side * side})\n"
            f"{type(module).__name__} at {name or 'the model'}")


def save_attention_figure(G: nn.Module, z: torch.Tensor, path: Path, title: str) -> Path | None:
    """Sample images with each attention layer's centre-pixel map beside them, each map with
    a colour bar of its weights times N (the weights sum to 1 over the map, so 1 means
    uniform attention); None if G has no attention layers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    images, maps = centre_attention(G, z)
    if not maps:
        return None
    modules = dict(attention_modules(G))
    rows = images.shape[0]
    cols = 1 + len(maps)
    noted = False
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols, 2.4 * rows + 0.5), squeeze=False)
    for r in range(rows):
        axes[r, 0].imshow(to_uint8(images[r:r + 1])[0], cmap="gray", vmin=0, vmax=255)
        s = images.shape[-1]
        axes[r, 0].plot([s / 2 - 0.5], [s / 2 - 0.5], "r+", markersize=10)
        if r == 0:
            axes[r, 0].set_title("generated sample\n(+ = the query pixel)", fontsize=8)
        for c, (name, m) in enumerate(maps, start=1):
            # Weights times N: 1 is uniform attention, 10 is ten times the uniform share;
            # readable at every N (raw weights are ~1/N: 0.0039 at 16x16).
            n = m.shape[-1] * m.shape[-2]
            shown = axes[r, c].imshow(m[r].numpy() * n, cmap="viridis")
            bar = fig.colorbar(shown, ax=axes[r, c], fraction=0.046, pad=0.04,
                               format=matplotlib.ticker.FormatStrFormatter("%.3g"))
            bar.ax.tick_params(labelsize=6)
            if c == cols - 1:
                bar.set_label("weight x N (1 = uniform)", fontsize=7)
            if r == 0:
                side = m.shape[-1]
                note = phase_note(m)
                noted = noted or bool(note)
                axes[r, c].set_title(layer_label(c, len(maps), name, modules[name], side)
                                     + (f"\n{note}" if note else ""), fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title}: where the centre pixel attends", fontsize=9)
    if noted:
        import textwrap

        fig.text(0.5, 0.005, "\n".join(textwrap.wrap(PHASE_FOOTNOTE, 40 * cols)),
                 ha="center", va="bottom", fontsize=7)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
    else:
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def curve_panels(df) -> list[tuple[str, str]]:
    """(column, axis label) of each quality column in df that the default table shows and
    that has a direction, the primary quality column first (ganbench.results.columns)."""
    from ganbench.results.columns import PER_CLASS, column, primary_quality

    ways = {"lower": "lower is better", "higher": "higher is better",
            "closer": "closer to real is better"}
    names = [c for c in df.columns if c not in ("step", "wall_s")]
    first = primary_quality()
    if first in names:
        names.remove(first)
        names.insert(0, first)
    out = []
    for name in names:
        info = column(name)
        if info.quality and info.visible and info.direction and not PER_CLASS.search(name):
            out.append((name, f"{info.header} ({ways[info.direction]})"))
    return out


def save_curves(df, path: Path, title: str) -> Path:
    """Quality over wall-clock time: one panel per shown quality column (:func:`curve_panels`),
    at most three panels a row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = curve_panels(df)
    cols = max(1, min(3, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3 * rows), squeeze=False)
    for ax, (col, label) in zip(axes.flat, panels):
        ax.plot(df["wall_s"], df[col], marker="o")
        ax.set_xlabel("wall-clock time (s)")
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
