"""The attention bench's chart: median time per kernel and site, with p10-p90 error bars."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from ganbench.bench.shapes import PASSES
from ganbench.bench.suspect import suspect_flags

GRAPH_LABEL = "CUDA-graph replay"


def chart(df: pd.DataFrame):
    """Grouped bars: median time per kernel for each site, one panel per pass, log scale; each
    bar has an error bar from its p10 to its p90 (the spread of its timed calls).

    Every row with a timing is drawn; a kernel with an inaccurate row says so in the legend, a
    suspect forward (slower than its forward + backward) is hatched and named in the legend.
    Where CUDA-graph replay times exist, each bar carries a black mark at that time. Returns
    the matplotlib Figure (the Agg backend: no display needed); the caller closes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = df.assign(suspect=suspect_flags(df))
    timed = df[df["median_ms"].notna()]
    fig, axes = plt.subplots(1, len(PASSES), figsize=(12, 4.5), sharey=True)
    kernels = sorted(timed["kernel"].unique())
    inaccurate = set(timed[timed["status"].str.startswith("inaccurate")]["kernel"])
    sites = list(dict.fromkeys(df["site"]))
    width = 0.8 / max(1, len(kernels))
    drew_graph = drew_suspect = False
    for ax, pass_ in zip(axes, PASSES):
        part = timed[timed["pass"] == pass_]
        for i, kernel in enumerate(kernels):
            rows = part[part["kernel"] == kernel].set_index("site").reindex(sites)
            xs = np.arange(len(sites)) + i * width
            median = rows["median_ms"].to_numpy(dtype=float)
            # p10-p90 as distances below and above the median (NaN: no bar drawn there)
            spread = np.vstack([median - rows["p10_ms"].to_numpy(dtype=float),
                                rows["p90_ms"].to_numpy(dtype=float) - median])
            label = kernel + (" (inaccurate)" if kernel in inaccurate else "")
            bars = ax.bar(xs, median, width, label=label, yerr=spread, capsize=2,
                          error_kw={"elinewidth": 0.8, "ecolor": "0.25"})
            for bar, flag in zip(bars, rows["suspect"]):
                if isinstance(flag, str):
                    bar.set_hatch("//")
                    if not drew_suspect:
                        bar.set_label("suspect: fwd slower than fwd+bwd")
                        drew_suspect = True
            # CUDA only: the graph-replay time as a black mark on the per-call bar; the gap
            # between them is host launch overhead.
            graph = rows.get("graph_median_ms")
            if graph is not None and graph.notna().any():
                ax.scatter(xs, graph.to_numpy(dtype=float), marker="_", s=120, color="black",
                           zorder=3, label=GRAPH_LABEL if not drew_graph else None)
                drew_graph = True
        ax.set_xticks([j + width * (len(kernels) - 1) / 2 for j in range(len(sites))])
        ax.set_xticklabels([f"{s}\nN={n}" for s, n in zip(sites, df.drop_duplicates("site")["N"])],
                           fontsize=8)
        ax.set_yscale("log")
        ax.set_title(f"{pass_}")
        ax.set_xlabel("attention site (SAGAN on 64x64 digits unless noted)")
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0].set_ylabel("median time per call (ms, log scale); bars: p10-p90")
    env = df.iloc[0]
    fig.suptitle(f"attention kernels, batch {env['batch']}, {env['dtype']}, {env['device_name']}",
                 fontsize=10)
    for ax in axes:  # the graph and suspect entries may sit on either panel
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def chart_png(df: pd.DataFrame, dpi: int = 120) -> bytes:
    """:func:`chart` as PNG bytes (for a group write: nothing touches the disk here)."""
    import matplotlib.pyplot as plt

    fig = chart(df)
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        return buffer.getvalue()
    finally:
        plt.close(fig)
