"""ganbench.quality.evaluate: running chosen metrics into one row, and the real-vs-real floor row."""

import pytest
import torch

import ganbench.plugins.metrics as M
from ganbench import data
from ganbench.quality import evaluate as quality
from ganbench.errors import ConfigError, UnknownPluginError, UserError
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
    # The tags come first: N of the samples scored and the image side they were scored at.
    assert row == {"metric_n": 6, "metric_image_size": 8,
                   "rec_fake_n": 6, "rec_real_n": 4, "const_one": 1.0}
    assert list(row)[:2] == list(quality.TAG_COLUMNS)


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

    class Tagger(Metric):  # a metric must not overwrite the tags
        def compute(self, fake, real, context):
            return {"metric_n": 999}

    tagger = MetricSpec(name="tagger", summary="writes a tag", factory=Tagger)
    with pytest.raises(ValueError, match="metric_n"):
        quality.evaluate(["tagger"], x, x, CONTEXT, _toy_registry(tagger=tagger))


def test_real_reference_row_uses_disjoint_halves_and_caps_n():
    heldout = torch.arange(11.0).reshape(11, 1, 1, 1)  # each image is its own index
    labels = torch.arange(11) % 10
    Recorder.calls.clear()
    row, n = quality.real_reference_row(heldout, labels, 100, CONTEXT, _toy_registry(),
                                        metric_names=["rec"], seed=1)
    assert n == 5 and row == {"metric_n": 5, "metric_image_size": 1,
                              "rec_fake_n": 5, "rec_real_n": 5}
    fake, real, context = Recorder.calls[-1]
    fake_ids, real_ids = set(fake.flatten().tolist()), set(real.flatten().tolist())
    assert len(fake_ids) == len(real_ids) == 5 and not fake_ids & real_ids
    assert context.real_labels.tolist() == [int(i) % 10 for i in real.flatten().tolist()]
    sets = quality.eval_sets(heldout, labels, 5, seed=1)  # the halves that row used
    assert set(sets.stand_in.flatten().tolist()) == fake_ids
    assert sets.stand_in_labels.tolist() == [int(i) % 10 for i in sets.stand_in.flatten().tolist()]
    row, n = quality.real_reference_row(heldout, labels, 3, CONTEXT, _toy_registry(),
                                        metric_names=["rec"])
    assert n == 3 and row == {"metric_n": 3, "metric_image_size": 1,
                              "rec_fake_n": 3, "rec_real_n": 3}


def test_check_eval_n_errors_above_the_held_out_half_instead_of_capping():
    # 2002 held-out 7s and 8s (the embedded set): two disjoint halves of at most 1001.
    assert quality.check_eval_n(1001, 2002) == 1001
    assert quality.check_eval_n(150, 2002) == 150
    with pytest.raises(ConfigError) as err:  # a UserError: one line, exit code 2
        quality.check_eval_n(2000, 2002)
    message = str(err.value)
    assert "\n" not in message and "--eval-n 2000" in message and "maximum is 1001" in message
    with pytest.raises(UserError, match="maximum is 2"):
        quality.check_eval_n(3, 5)       # odd count: the halves are floor(5 / 2) = 2
    with pytest.raises(UserError, match="at least 2"):
        quality.check_eval_n(1, 2002)
    # Not given: the default where the held-out set allows it, else its maximum (never fails).
    assert quality.check_eval_n(None, 10_000) == quality.DEFAULT_EVAL_N == 2000
    assert quality.check_eval_n(None, 2002) == 1001


def test_memorisation_gets_the_training_images_through_the_context():
    """evaluate passes context.train on unchanged: a training copy is flagged, held-out is not."""
    registry = Registry()
    M.ganbench_register_metrics(lambda spec: registry.add("metric", spec, "built-in"))
    digits = data.load_embedded()
    train = data.prepare(digits.train_images[:600], 16)
    heldout = data.prepare(digits.test_images[:600], 16)
    context = MetricContext(digits=(), image_size=16, device="cpu", train=train)
    copy = quality.evaluate(["memorisation"], train[:300], heldout[300:], context, registry)
    fresh = quality.evaluate(["memorisation"], heldout[:300], heldout[300:], context, registry)
    assert copy["memo_copy_share"] == 1.0 and copy["memo_nn_ratio"] < 1e-3
    assert fresh["memo_copy_share"] < 0.05 and 0.8 < fresh["memo_nn_ratio"] < 1.25
    untold = quality.evaluate(["memorisation"], train[:300], heldout[300:],
                              MetricContext(digits=(), image_size=16, device="cpu"), registry)
    assert all(v != v for k, v in untold.items() if k.startswith("memo_"))  # NaN, not a guess


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
    assert (row["metric_n"], row["metric_image_size"]) == (500, 64)
