"""What runs for one call: the options of triton-attn, their checks, and the plan per shape.

:class:`Options` is what a configured ``attend_triton`` carries (variant, backward, exp2,
prebind, tile overrides); :func:`check_options` and :func:`check_tiles` reject bad values with
one line. :func:`plan` resolves ``auto`` for one (N, Dqk, Dv) and picks the tiles
(:func:`small_n_config` or :func:`tiled_config`); every launcher reads its tiles from the
plan. Host code only: nothing here imports Triton.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

VARIANTS = ("auto", "small-n", "tiled")
BACKWARDS = ("auto", "one-launch", "two-kernel", "atomic")  # the tiled variant's dQ schemes
SMALL_N_MAX = 256  # small-n holds every key of a batch element in one tile: see small_n.py


class Options(NamedTuple):
    """What a configured attend_triton runs; hashable, so plans and bindings cache on it.

    variant: "auto" (small-n for N <= SMALL_N_MAX, else tiled), "small-n" or "tiled".
    backward: the tiled variant's backward, "auto" (= "one-launch"), "one-launch",
    "two-kernel" or "atomic" (small-n has exactly one backward: one launch, no atomics).
    exp2: exponentials as exp2(s*log2e - r*log2e), one FMA per score (False: tl.exp(s - r)).
    prebind: launch through kernels bound once per configuration (CUDA only; see launch.py).
    tiles: sorted (KEY, value) pairs overriding the per-shape tiles (TILE_CHOICES).
    """

    variant: str = "auto"
    backward: str = "auto"
    exp2: bool = True
    prebind: bool = True
    tiles: tuple = ()


DEFAULT_OPTIONS = Options()


def check_options(variant: str = "auto", backward: str = "auto", exp2: bool = True,
                  prebind: bool = True, tiles: Optional[dict] = None) -> Options:
    """An :class:`Options`, or ValueError with one line naming the bad value and the choices."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    check_backward(backward)
    if variant == "small-n" and backward != "auto":
        raise ValueError(f"backward={backward!r} is a tiled-variant backward; variant='small-n' "
                         "has its own one-launch backward (leave backward='auto')")
    for name, value in (("exp2", exp2), ("prebind", prebind)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false; got {value!r}")
    return Options(variant, backward, exp2, prebind, tuple(sorted(check_tiles(tiles).items())))


def _next_pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


def tiled_config(N: int, Dqk: int, Dv: int, tiles: Optional[dict] = None) -> dict:
    """Tile sizes and launch parameters of the tiled variant for one shape (powers of two).

    * BLOCK_DQK: Dqk padded to a power of two >= 16, because a 16-bit tl.dot on sm_80/sm_90 needs
      its contraction dim K >= 16 (triton/backends/nvidia/compiler.py: min_dot_size). SAGAN's
      Dqk = C/8 is 8 at N=1024: half the tile is zero padding, but that dot is the cheap one.
    * BLOCK_DV <= 128: the forward's fp32 accumulator is BLOCK_M x BLOCK_DV; 64 x 128 x 4 B is
      32 KB, 64 registers per thread at 4 warps. Dv = 512 would need 256 and spill, so larger
      Dv is split over the grid (forward, dV) or looped over in chunks (dP = dO V^T).
    * BLOCK_M/BLOCK_N: 64, or the next power of two >= 16 of N for the discriminator's short
      sequences (N=16: a 64-wide tile would be 94% padding). For the long generator sequences
      (N >= 1024) the forward takes 128 query rows per program and 8 warps: each K/V tile
      loaded is then reused by twice as many rows (Triton's fused-attention tutorial uses
      128 x 64 tiles for head dims <= 128 on sm_90).
    * num_stages: 3 for the forward's K/V stream (software pipelining: ~3 x 64 x (16 + 64) x 2 B
      = 31 KB of shared memory), 2 for the backward, which keeps more tiles live.

    These are first guesses, not tuned on a GPU yet. ``tiles`` (checked by
    :func:`check_tiles`) overrides any of them except BLOCK_DQK, for sweeps such as
    ``ganbench bench attention --variant triton-attn:block_n=128,bwd_warps=4``.
    """
    block_dqk = max(16, _next_pow2(Dqk))
    block_dv = min(128, max(16, _next_pow2(Dv)))
    block = min(64, max(16, _next_pow2(N)))
    fwd_m = 128 if N >= 1024 else block
    fwd_warps = 8 if fwd_m * block_dv >= 128 * 64 else 4
    bwd_warps = 8 if block_dv >= 128 else 4
    cfg = dict(BLOCK_DQK=block_dqk, BLOCK_DV=block_dv, BLOCK_N=block, FWD_BLOCK_M=fwd_m,
               FWD_WARPS=fwd_warps, FWD_STAGES=3, BWD_BLOCK_M=block, BWD_WARPS=bwd_warps,
               BWD_STAGES=2)
    cfg.update(tiles or {})
    return cfg


def small_n_config(N: int, Dqk: int, Dv: int, tiles: Optional[dict] = None) -> dict:
    """Tiles of the small-n variant (N <= SMALL_N_MAX): N_PAD = all keys in one tile.

    * N_PAD: N rounded up to a power of two >= 16 (tl.arange and tl.dot sizes).
    * FWD_BLOCK_M = min(N_PAD, 64) query rows per forward program: the score tile is then at
      most 64 x 256 fp32 = 64 KB, 64 registers per thread at 8 warps.
    * BWD_BLOCK_M: N_PAD when N_PAD <= 64 (one query block: dV comes from the same P, no
      second pass), else 8192 / N_PAD (32 at N = 256): the backward holds four such score-sized
      tiles (P, dP, dS and S) at once, 4 x 32 x 256 fp32 = 128 KB over 8 warps.
    * BLOCK_N (pass 2's key block) 64. BLOCK_DV <= 128 and N_PAD * BLOCK_DV <= 16384: the V
      chunk (N_PAD x BLOCK_DV) is a tl.dot operand staged in shared memory; at N = 256 in fp32
      a 128-wide chunk would be 128 KB next to a 64 KB P, near the H100's 227 KB per block, so
      N = 256 takes 64-wide chunks (P is still computed once and reused for each).
    First guesses, like tiled_config's: ``tiles`` overrides them (FWD_BLOCK_M, BWD_BLOCK_M, BLOCK_N,
    BLOCK_DV, warps, stages).
    """
    n_pad = max(16, _next_pow2(N))
    block_dqk = max(16, _next_pow2(Dqk))
    block_dv = min(128, max(16, _next_pow2(Dv)), max(16, 16384 // n_pad))
    fwd_m = min(n_pad, 64)
    bwd_m = n_pad if n_pad <= 64 else max(16, 8192 // n_pad)
    cfg = dict(N_PAD=n_pad, BLOCK_DQK=block_dqk, BLOCK_DV=block_dv, BLOCK_N=min(n_pad, 64),
               FWD_BLOCK_M=fwd_m, FWD_WARPS=4 if fwd_m * n_pad <= 4096 else 8, FWD_STAGES=1,
               BWD_BLOCK_M=bwd_m, BWD_WARPS=4 if n_pad <= 64 else 8, BWD_STAGES=1)
    cfg.update(tiles or {})
    return cfg


class Plan(NamedTuple):
    """The kernels and tiles of one call, from :func:`plan`."""

    variant: str   # "small-n" or "tiled"
    backward: str  # "small-n" (its own), "one-launch", "two-kernel" or "atomic"
    cfg: dict


@functools.lru_cache(maxsize=256)
def plan(N: int, Dqk: int, Dv: int, options: Options = DEFAULT_OPTIONS) -> Plan:
    """Which kernels and tiles run for one shape: ``auto`` resolved. Cached: this runs on every
    call, and the call's host time is what SAGAN's shapes are bound by (NOTES.md).

    Why ``auto`` picks small-n up to N = 256 and the tiled kernels with the one-launch backward
    above: NOTES.md, section 4.
    """
    variant = options.variant
    if variant == "auto":
        variant = "small-n" if N <= SMALL_N_MAX else "tiled"
    tiles = dict(options.tiles)
    if variant == "small-n":
        if N > SMALL_N_MAX:
            raise ValueError(f"variant='small-n' supports N <= {SMALL_N_MAX}; got N={N} "
                             "(use variant='auto', which runs the tiled kernels there)")
        return Plan("small-n", "small-n", small_n_config(N, Dqk, Dv, tiles))
    backward = "one-launch" if options.backward == "auto" else options.backward
    return Plan("tiled", backward, tiled_config(N, Dqk, Dv, tiles))


# What a caller may override, and the values each accepts. Tiles are tl.arange/tl.dot sizes:
# powers of two, >= 16 for the GPU's dot; BLOCK_DV <= 128 keeps the accumulators in registers
# (see tiled_config); 256 is the largest tile worth trying for SAGAN's N <= 4096.
_TILE_SIZES = (16, 32, 64, 128, 256)
TILE_CHOICES = {
    "BLOCK_N": _TILE_SIZES, "FWD_BLOCK_M": _TILE_SIZES, "BWD_BLOCK_M": _TILE_SIZES,
    "BLOCK_DV": (16, 32, 64, 128),
    "FWD_WARPS": (1, 2, 4, 8, 16), "BWD_WARPS": (1, 2, 4, 8, 16),
    "FWD_STAGES": (1, 2, 3, 4, 5), "BWD_STAGES": (1, 2, 3, 4, 5),
}


def check_tiles(tiles: Optional[dict]) -> dict:
    """``tiles`` with upper-case keys, or ValueError naming the first bad key or value.

    Keys are those of :data:`TILE_CHOICES`, in any case (``block_n`` as a factory option).
    """
    checked = {}
    for key, value in (tiles or {}).items():
        name = str(key).upper()
        if name not in TILE_CHOICES:
            known = ", ".join(k.lower() for k in TILE_CHOICES)
            raise ValueError(f"unknown tile setting {key!r}; known: {known}")
        if isinstance(value, bool) or value not in TILE_CHOICES[name]:
            allowed = ", ".join(map(str, TILE_CHOICES[name]))
            raise ValueError(f"{key.lower()} must be one of {allowed}; got {value!r}")
        checked[name] = int(value)
    return checked


def check_backward(backward: str) -> str:
    """``backward`` if it names a tiled-variant backward, else ValueError listing them."""
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {', '.join(BACKWARDS)}; got {backward!r}")
    return backward

