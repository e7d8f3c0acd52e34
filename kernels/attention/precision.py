"""Which arithmetic did a kernel's fp32 path really use? A diagnosis for fp32 mismatches.

On the H100 (2026-11-28) triton-attn's fp32 tests failed at every shape with N > 1 while fp16
and bf16 passed (results/gpu-h100-80gb/README.md). One reading: a tl.dot ran on TF32 operands
(10-bit mantissa, relative rounding 2^-11 ~ 4.9e-4) although the kernel asks for "ieee". That
N = 1 passed says the P @ V and P^T dO dots were exact there (P = 1, so a TF32 V would be off
by up to 4.9e-4), which leaves the q . k dots, whose result a one-key softmax ignores.

This module tests that reading directly. It runs the kernel's forward in fp32 on random inputs
and compares the output with float64 references that differ only in how operands are rounded
before each product:

* ``ieee``: nothing rounded (what the kernel promises);
* ``tf32-qk``: q and k rounded to TF32 before S = q k^T, the rest exact;
* ``tf32-all``: q, k, v and P rounded to TF32 before both products (what TF32 everywhere does);

each with round-to-nearest (``rn``, as ``cvt.rna.tf32.f32``) and truncation (``rz``, what a
tensor core does with fp32 bits it ignores). The kernel's error against the hypothesis it
implements is at fp32 level (~1e-7 relative); against the others it is ~1e-4 or more, so the
smallest error names the arithmetic. Scores are scaled up (std 4) so TF32 rounding of q and k
moves the softmax visibly.

It then measures forward and gradient errors of the fp32 path against float64 for each
triton-attn variant (small-n, tiled with each backward) and names the likely cause from the
size of the worst error: ~1e-3 relative means TF32 operands slipped in (each keeps 10
mantissa bits, a relative rounding of up to 2^-11 = 4.9e-4, and a product rounds two);
1e-5..1e-4 means the GPU's approximate exp2/log2/division (about 1e-6 relative each, summed
over rows of up to N terms) and a tolerance (2e-5) too tight for them; order 1 means a
code-generation or indexing fault (try ``input_precision="tf32x3"`` in
``triton_common.dot`` to route around the FMA path, and read the TTGIR).

Run: ``python -m ganbench.kernels.attention.precision --device cuda [--kernel triton-attn]``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

import torch

TF32_MANTISSA_BITS = 10  # fp32 has 23: TF32 keeps the top 10 (and fp32's 8-bit exponent)


def round_to_tf32(x: torch.Tensor, mode: str = "rn") -> torch.Tensor:
    """``x`` (float32) with its mantissa cut to TF32's 10 bits, returned as float32.

    ``rn``: round to nearest, ties away from zero (what ``cvt.rna.tf32.f32`` does); ``rz``:
    truncate toward zero. Works on the bit pattern: the low 13 mantissa bits are dropped,
    after adding half of their weight for ``rn`` (a carry into the exponent is the correct
    rounding up to the next binade). Inf and NaN are not expected here.
    """
    if x.dtype != torch.float32:
        raise TypeError(f"round_to_tf32 takes float32, got {x.dtype}")
    if mode not in ("rn", "rz"):
        raise ValueError(f"mode must be 'rn' or 'rz', got {mode!r}")
    drop = 23 - TF32_MANTISSA_BITS
    bits = x.contiguous().view(torch.int32)
    if mode == "rn":
        bits = bits + (1 << (drop - 1))  # sign-magnitude: adding to the magnitude bits rounds |x|
    bits = bits & ~((1 << drop) - 1)
    return bits.view(torch.float32)


def _reference(q, k, v, rounding: str, mode: str) -> torch.Tensor:
    """softmax(q k^T) v in float64 after rounding the operands the hypothesis names."""
    def exact(t):
        return t.double()

    def tf32(t):
        return round_to_tf32(t.float(), mode).double()

    scores_in = exact if rounding == "ieee" else tf32      # q, k before S = q k^T
    values_in = tf32 if rounding == "tf32-all" else exact  # P, v before O = P v
    p = torch.softmax(torch.bmm(scores_in(q), scores_in(k).transpose(1, 2)), dim=-1)
    return torch.bmm(values_in(p), values_in(v))


HYPOTHESES = [("ieee", "rn"), ("tf32-qk", "rn"), ("tf32-qk", "rz"), ("tf32-all", "rn"),
              ("tf32-all", "rz")]


def diagnose(attend: Callable, device: str, B: int = 2, N: int = 257, Dqk: int = 16,
             Dv: int = 64, seed: int = 0) -> list[dict]:
    """Relative error of ``attend``'s fp32 output against each hypothesis, smallest first."""
    g = torch.Generator().manual_seed(seed)
    q = (torch.randn(B, N, Dqk, generator=g) * 4 * Dqk ** -0.25).to(device)  # score std 4
    k = (torch.randn(B, N, Dqk, generator=g) * Dqk ** -0.25).to(device)
    v = torch.randn(B, N, Dv, generator=g).to(device)
    with torch.no_grad():
        o = attend(q, k, v).double()
    rows = []
    for rounding, mode in HYPOTHESES:
        ref = _reference(q, k, v, rounding, mode)
        err = ((o - ref).norm() / ref.norm()).item()
        rows.append(dict(hypothesis=rounding if rounding == "ieee" else f"{rounding}-{mode}",
                         rel_err=err))
    return sorted(rows, key=lambda r: r["rel_err"])


def classify(rel_err: float) -> str:
    """The likely cause of an fp32 error of this size (relative to the tensor's largest value)."""
    if rel_err <= 2e-5:
        return "within the fp32 tolerance (2e-5)"
    if rel_err < 2e-4:
        return "tolerance: approximate exp2/log2/division on the GPU (measure, then set the " \
               "fp32 tolerance from it)"
    if rel_err < 1e-2:
        return "TF32: some tl.dot used 10-bit operands (check input_precision and the PTX for " \
               "mma ... tf32)"
    return "fault: code generation or indexing (order-1 error; try input_precision='tf32x3', " \
           "read the TTGIR)"


def gradient_errors(attend: Callable, device: str, B: int = 2, N: int = 257, Dqk: int = 16,
                    Dv: int = 64, seed: int = 0) -> dict:
    """Largest |error| / largest |reference| of o, dq, dk, dv in fp32 against float64."""
    from ganbench.kernels.attention.reference import attend_reference

    g = torch.Generator().manual_seed(seed)
    s = Dqk ** -0.25
    q, k = (torch.randn(B, N, Dqk, generator=g) * s for _ in range(2))
    v, do = (torch.randn(B, N, Dv, generator=g) for _ in range(2))
    leaves = [t.to(device).clone().requires_grad_() for t in (q, k, v)]
    o = attend(*leaves)
    o.backward(do.to(device))
    ref_leaves = [t.double().requires_grad_() for t in (q, k, v)]
    ref = attend_reference(*ref_leaves)
    ref.backward(do.double())
    pairs = [("o", o.detach(), ref.detach())] + [
        (f"d{n}", a.grad, b.grad) for n, a, b in zip("qkv", leaves, ref_leaves)]
    return {name: ((got.double().cpu() - want).abs().max() / want.abs().max()).item()
            for name, got, want in pairs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--kernel", default="triton-attn", help="attention plugin name")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="passed to the kernel's factory")
    args = p.parse_args(argv)
    from ganbench.config import parse_options
    from ganbench.registry import get_registry

    spec = get_registry().attention[args.kernel]
    reason = spec.why_unavailable(args.device)
    if reason is not None:
        print(f"{args.kernel} cannot run on {args.device}: {reason}", file=sys.stderr)
        return 2
    options = parse_options([f"{args.kernel}.{o}" for o in args.option]).get(args.kernel, {})
    rows = diagnose(spec.factory(**options), args.device)
    print(f"{args.kernel} fp32 forward on {args.device}: relative error against each "
          "hypothesis (smallest = the arithmetic it used)")
    for row in rows:
        print(f"  {row['hypothesis']:<12} {row['rel_err']:.3e}")
    print(f"verdict: {rows[0]['hypothesis']}")
    if args.kernel in ("triton-attn", "triton-block") and not args.option:
        print("fp32 forward + backward against float64 (max |err| / max |ref|), per variant:")
        # N=130: partial key and query tiles in the tiled kernels (130 = 2 x 64 + 2)
        for label, opts, n in (("small-n N=64", {"variant": "small-n"}, 64),
                               ("tiled one-launch N=130", {"variant": "tiled"}, 130),
                               ("tiled two-kernel N=130",
                                {"variant": "tiled", "backward": "two-kernel"}, 130),
                               ("tiled atomic N=130", {"variant": "tiled", "backward": "atomic"},
                                130)):
            errs = gradient_errors(spec.factory(**opts), args.device, N=n)
            worst = max(errs.values())
            cells = "  ".join(f"{k} {e:.1e}" for k, e in errs.items())
            print(f"  {label:<24} {cells}  -> {classify(worst)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
