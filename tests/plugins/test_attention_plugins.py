"""Every built-in attention plugin, through its spec's factory, against the float64 reference."""

import pluggy
import pytest
import torch

from ganbench import hookspecs
from ganbench.kernels.attention.reference import attend_reference
from ganbench.plugins import attention as attention_plugin
from ganbench.specs import AttentionSpec

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]

# (dtype, atol, rtol): the tolerances of tests/kernels/test_triton_attn.py, where they are
# justified. The eager op in bf16 rounds P to bf16 before P @ V: against float64 it needs
# 2.4e-2 (bf16) and 3.7e-3 (fp16) on the shapes used there, inside these bounds.
TOLERANCES = [(torch.float32, 2e-5, 2e-5), (torch.float16, 5e-3, 5e-3),
              (torch.bfloat16, 5e-2, 5e-2)]
TOL_IDS = ["fp32", "fp16", "bf16"]


def _specs() -> dict:
    """The specs this plugin module registers, through pluggy as the registry would call it."""
    pm = pluggy.PluginManager("ganbench")
    pm.add_hookspecs(hookspecs)
    pm.register(attention_plugin)
    specs = {}
    pm.hook.ganbench_register_attention(register=lambda s: specs.setdefault(s.name, s))
    return specs


SPECS = _specs()


def _runnable(name: str, device: str) -> AttentionSpec:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    spec = SPECS[name]
    reason = spec.why_unavailable(device)
    if reason is not None:
        pytest.skip(f"{name}: {reason}")
    return spec


def _inputs(B, N, Dqk, Dv, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = Dqk ** -0.25  # unit-variance scores, as in the kernel tests
    q, k = (torch.randn(B, N, Dqk, generator=g) * s for _ in range(2))
    v, do = (torch.randn(B, N, Dv, generator=g) for _ in range(2))
    return [t.to(device=device, dtype=dtype) for t in (q, k, v, do)]


def _check_against_reference(attend, q, k, v, do, atol, rtol):
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    o = attend(*leaves)
    assert o.shape == v.shape and o.dtype == v.dtype
    o.backward(do)
    ref_leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    ref = attend_reference(*ref_leaves)
    ref.backward(do.double())
    torch.testing.assert_close(o.detach().double(), ref.detach(), atol=atol, rtol=rtol)
    for name, got, want in zip("qkv", leaves, ref_leaves):
        torch.testing.assert_close(got.grad.double(), want.grad, atol=atol, rtol=rtol,
                                   msg=lambda m, name=name: f"d{name}: {m}")


def test_registers_the_five_kernels_with_valid_specs():
    assert set(SPECS) == {"eager-attn", "sdpa-attn", "compile-attn", "triton-attn",
                          "triton-block"}
    assert all(isinstance(s, AttentionSpec) for s in SPECS.values())
    # registering must not have imported triton's kernel module (it is loaded lazily)
    assert SPECS["eager-attn"].why_unavailable("cpu") is None


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, atol, rtol", TOLERANCES, ids=TOL_IDS)
@pytest.mark.parametrize("name", ["eager-attn", "sdpa-attn"])
@pytest.mark.parametrize("shape", [(2, 64, 32, 256), (2, 63, 8, 24)], ids=["D8x8", "N63-Dv24"])
def test_plugin_matches_reference(name, shape, dtype, atol, rtol, device):
    spec = _runnable(name, device)
    _check_against_reference(spec.factory(), *_inputs(*shape, dtype, device), atol, rtol)


@pytest.mark.parametrize("device", DEVICES)
def test_compile_plugin_matches_reference(device):
    """One shape and fp32 only: each new shape costs torch.compile ~25 s on 2 CPU cores."""
    spec = _runnable("compile-attn", device)
    _check_against_reference(spec.factory(mode="default"),
                             *_inputs(2, 63, 8, 24, torch.float32, device), 2e-5, 2e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, atol, rtol", TOLERANCES, ids=TOL_IDS)
@pytest.mark.parametrize("name, options", [
    ("triton-attn", {}), ("triton-attn", {"variant": "tiled"}),
    ("triton-attn", {"variant": "tiled", "backward": "atomic", "exp2": False}),
    ("triton-block", {})], ids=["triton-attn", "tiled", "atomic-exp", "triton-block"])
def test_triton_plugins_match_reference(name, options, dtype, atol, rtol, device):
    """Through the factory, as a run builds them (triton-block's attend is the plain op)."""
    spec = _runnable(name, device)  # on a CPU: only under TRITON_INTERPRET=1
    _check_against_reference(spec.factory(**options), *_inputs(2, 63, 8, 24, dtype, device),
                             atol, rtol)


@pytest.mark.parametrize("name", ["triton-attn", "triton-block"])
def test_triton_factories_check_every_option(name):
    if SPECS[name].why_unavailable("cpu") is not None and not torch.cuda.is_available():
        pytest.skip("triton-attn cannot be imported here")
    factory = SPECS[name].factory
    for options, message in [
            (dict(backward="fast"), "backward must be one of auto, one-launch, two-kernel, atomic"),
            (dict(variant="huge"), "variant must be one of auto, small-n, tiled"),
            (dict(exp2="no"), "exp2 must be true or false"),
            (dict(prebind="no"), "prebind must be true or false"),
            (dict(tile=64), "unknown tile setting 'tile'")]:
        with pytest.raises(ValueError, match=message):
            factory(**options)
    from ganbench.kernels.attention.triton_attn import Options

    assert factory().options == Options()  # auto, auto, exp2, prebind, default tiles
    tuned = factory(block_n=32, variant="tiled", backward="atomic", exp2=False, prebind=False)
    assert tuned.options == Options("tiled", "atomic", False, False, (("BLOCK_N", 32),))
    assert callable(tuned.prepare) and tuned.prepare([(2, 16, 8, 16)], "fp32", "cpu") == 0.0
    assert hasattr(tuned, "block") == (name == "triton-block")


def test_sdpa_uses_scale_one_not_the_default():
    q, k, v, _ = _inputs(1, 16, 8, 8, torch.float64, "cpu")
    import torch.nn.functional as F

    default_scale = F.scaled_dot_product_attention(q, k, v)  # 1/sqrt(8)
    ours = SPECS["sdpa-attn"].factory()(q, k, v)
    torch.testing.assert_close(ours, attend_reference(q, k, v))
    assert (ours - default_scale).abs().max() > 1e-3


def test_sdpa_backend_used_names_a_backend():
    q, k, v, _ = _inputs(1, 16, 8, 24, torch.float32, "cpu")
    backend = attention_plugin.sdpa_backend_used(q, k, v)
    from torch.nn.attention import SDPBackend

    assert backend in SDPBackend.__members__ or backend == "unknown"
    if hasattr(torch, "_fused_sdp_choice"):
        # Dqk != Dv rules out the flash kernel; on the CPU that leaves the math backend
        assert backend == "MATH"


@pytest.mark.parametrize("name", ["triton-attn", "triton-block"])
def test_triton_reason_on_plain_cpu_is_one_line(name):
    reason = SPECS[name].why_unavailable("cpu")
    assert reason is None or ("\n" not in reason and reason)
