"""ganbench.quality: running chosen metrics into one row, and the real-vs-real floor row."""

import pytest
import torch

import ganbench.plugins.metrics as M
from ganbench import data, quality
from ganbench.errors import ConfigError, UnknownPluginError
from ganbench.registry import Registry
from ganbench.specs import Metric, MetricContext, MetricSpec

CONTEXT = MetricContext(digits=(), image_size=8, device="cpu")


class Recorder(Metric):
    """Records what it was given; reports the sizes."""

    calls: list = []

    def compute(self, fake, real, context):
        Recorder.calls.append((fake, real, context))
        return {"rec_fake_n": len(fake), "rec_real_n": len(real)}


class Constant(Metric):
    def compute(self, fake, real, context):
        return {"const_one": 1.0}


def _toy_registry(**extra) -> Registry:
    registry = Registry()
    registry.add("metric", MetricSpec(name="rec", summary="records", factory=Recorder), "test")
    registry.add("metric", MetricSpec(name="const", summary="one", factory=Constant), "test")
    for name, spec in extra.items():
        registry.add("metric", spec, "test")
    return registry


def test_evaluate_merges_the_columns_of_every_metric():
    row = quality.evaluate(["rec", "const"], torch.zeros(6, 1, 8, 8), torch.zeros(4, 1, 8, 8),
                           CONTEXT, _toy_registry())
    assert row == {"rec_fake_n": 6, "rec_real_n": 4, "const_one": 1.0}


def test_evaluate_rejects_unknown_unavailable_and_clashing_metrics():
    x = torch.zeros(4, 1, 8, 8)
    with pytest.raises(UnknownPluginError, match="did you mean rec"):
        quality.evaluate(["recc"], x, x, CONTEXT, _toy_registry())
    off = MetricSpec(name="off", summary="never here", factory=Constant,
                     why_unavailable=lambda device: "needs a quantum computer")
    with pytest.raises(ConfigError, match="needs a quantum computer"):
        quality.evaluate(["off"], x, x, CONTEXT, _toy_registry(off=off))
    twin = MetricSpec(name="twin", summary="same column as const", factory=Constant)
    with pytest.raises(ValueError, match="const_one"):
        quality.evaluate(["const", "twin"], x, x, CONTEXT, _toy_registry(twin=twin))


def test_real_reference_row_uses_disjoint_halves_and_caps_n():
    heldout = torch.arange(11.0).reshape(11, 1, 1, 1)  # each image is its own index
    labels = torch.arange(11) % 10
    Recorder.calls.clear()
    row, n = quality.real_reference_row(heldout, labels, 100, CONTEXT, _toy_registry(),
                                        metric_names=["rec"], seed=1)
    assert n == 5 and row == {"rec_fake_n": 5, "rec_real_n": 5}
    fake, real, context = Recorder.calls[-1]
    fake_ids, real_ids = set(fake.flatten().tolist()), set(real.flatten().tolist())
    assert len(fake_ids) == len(real_ids) == 5 and not fake_ids & real_ids
    assert context.real_labels.tolist() == [int(i) % 10 for i in real.flatten().tolist()]
    row, n = quality.real_reference_row(heldout, labels, 3, CONTEXT, _toy_registry(),
                                        metric_names=["rec"])
    assert n == 3 and row == {"rec_fake_n": 3, "rec_real_n": 3}


def test_real_reference_row_on_digits_is_the_floor():
    """Two disjoint halves of real held-out digits: fid near 0, precision/recall/coverage near 1,
    every digit covered (the numbers every results table is read against)."""
    registry = Registry()
    M.ganbench_register_metrics(lambda spec: registry.add("metric", spec, "built-in"))
    mnist = data.load_embedded()
    heldout = data.prepare(mnist.test_images[:1200], 64)  # 64x64, as SAGAN makes them
    labels = torch.from_numpy(mnist.test_labels[:1200])
    context = MetricContext(digits=(), image_size=64, device="cpu")
    row, n = quality.real_reference_row(heldout, labels, 500, context, registry)
    assert n == 500
    assert row["fid_digits"] < 20  # ~8 at N=500; uniform noise scores ~1000
    assert min(row["prdc_precision"], row["prdc_recall"], row["prdc_coverage"]) > 0.8
    assert row["modes_covered"] == row["modes_total"] == 10
