"""The suspect-timing flag: a forward slower than its own forward + backward.

The forward + backward call runs the same forward and then the backward, so its median cannot
honestly be below the forward's. Where it is, something other than the kernel's work hit the
forward while it was timed: a recompilation (torch.compile guards failing, Triton autotuning
again) or a burst of load on a shared machine. The row keeps its numbers and is flagged.
"""

from __future__ import annotations

import pandas as pd

SUSPECT = "fwd>fwd+bwd"  # the flag's cell text


def suspect_pairs(df: pd.DataFrame) -> list[tuple]:
    """(row index, kernel, site, fwd median ms, fwd+bwd median ms) of every forward row whose
    median is slower than the median of the same kernel's forward + backward at the same site
    (and N). The latter includes the former's work, so such a pair is no real cost: a
    recompilation or load hit the forward while it was timed."""
    if not len(df) or not {"kernel", "site", "pass", "median_ms"} <= set(df.columns):
        return []
    keys = ["kernel", "site"] + (["N"] if "N" in df.columns else [])
    both = df[df["pass"] == "fwd+bwd"].drop_duplicates(keys).set_index(keys)["median_ms"]
    pairs = []
    for index, row in df[df["pass"] == "fwd"].iterrows():
        paired = both.get(tuple(row[k] for k in keys))
        if paired is not None and pd.notna(paired) and pd.notna(row["median_ms"]) \
                and row["median_ms"] > paired:
            pairs.append((index, row["kernel"], row["site"], row["median_ms"], paired))
    return pairs


def suspect_flags(df: pd.DataFrame) -> pd.Series:
    """Per row: :data:`SUSPECT` on the forward rows of :func:`suspect_pairs`, else None."""
    flags = pd.Series([None] * len(df), index=df.index, dtype=object)
    for index, *_ in suspect_pairs(df):
        flags[index] = SUSPECT
    return flags
