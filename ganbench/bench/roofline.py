"""Device peaks and the roofline: the fewest seconds any attention kernel could take."""

from __future__ import annotations

import math
from typing import NamedTuple, Optional


class Peaks(NamedTuple):
    """A device's peak rates: FLOP/s for the dtype, bytes/s of memory, exponentials/s."""

    flops: float
    bandwidth: float
    exps: float


# Dense peak FLOP/s per dtype, peak memory bandwidth and special-function (exp) rate, keyed by
# a substring of torch.cuda.get_device_name(); the first match wins, so the more specific names
# come first.
# FLOP/s and bandwidth: NVIDIA H100 and H200 Tensor Core GPU datasheets (SXM form factors:
# bf16/fp16 dense 989 TFLOP/s, fp32 non-tensor 67 TFLOP/s, HBM3 3.35 TB/s on H100, HBM3e
# 4.8 TB/s on H200; H100 PCIe: 756 TFLOP/s bf16 dense, 51 TFLOP/s fp32, 2.0 TB/s). fp32 uses the
# non-tensor-core peak because the kernels here run fp32 without TF32 (torch's default for
# matmul, and triton-attn's input_precision="ieee").
# exp rate: the softmax's exponentials run on the SM's special-function units, not the tensor
# cores, whatever the dtype. FlashAttention-3 (Shah et al. 2024, sec. 3): "H100 SXM5 has 989
# TFLOPS of FP16 matmul but only 3.9 TFLOPS of special functions". H200 is the same GH100 chip
# with the same tensor peaks (so the same SMs and clocks) and faster memory: 3.9e12. H100 PCIe
# scales by SMs x boost clock:
# 3.9e12 * (114 SMs * 1.755 GHz) / (132 SMs * 1.98 GHz) = 3.9e12 * 200.1 / 261.4 = 2.99e12,
# consistent with the ratio of the datasheets' tensor peaks (756 / 989 * 3.9e12 = 2.98e12).
H100_SXM_EXPS = 3.9e12
H100_PCIE_EXPS = 3.0e12
DEVICE_PEAKS = (
    ("H100 PCIe", {"bf16": 756e12, "fp16": 756e12, "fp32": 51e12}, 2.0e12, H100_PCIE_EXPS),
    ("H100", {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12}, 3.35e12, H100_SXM_EXPS),
    ("H200", {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12}, 4.8e12, H100_SXM_EXPS),
)


def device_peaks(device_name: str, dtype: str) -> Optional[Peaks]:
    """The :class:`Peaks` of a known device for ``dtype``, else None."""
    for key, flops, bandwidth, exps in DEVICE_PEAKS:
        if key in device_name:
            return Peaks(flops[dtype], bandwidth, exps)
    return None


def roofline(flops: float, nbytes: float, exps: float,
             peaks: Optional[Peaks]) -> tuple[float, Optional[str]]:
    """(seconds, bound): the fewest seconds any kernel needs, and which term sets it.

    No kernel can beat the slowest of its matmuls at peak FLOP/s, its memory traffic at peak
    bandwidth and its exponentials at the special-function rate (the three units overlap at
    best, so the bound is their max, not their sum). ``bound`` is "matmul", "memory" or "exp".
    SAGAN's Dqk is 8 at N = 1024 and 4096, so per score a 16-bit kernel does 2*(8 + 64) = 144
    tensor-core FLOPs (0.15 ns on an H100 SXM) but one exp (0.26 ns): the exps bound it.
    Unknown device (``peaks`` None): (NaN, None).
    """
    if peaks is None:
        return math.nan, None
    terms = {"matmul": flops / peaks.flops, "memory": nbytes / peaks.bandwidth,
             "exp": exps / peaks.exps}
    bound = max(terms, key=terms.get)
    return terms[bound], bound
