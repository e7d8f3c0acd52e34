"""The digit classifier: shipped accuracy, checksum guard, input contract, reproducible training."""

import shutil
import pytest
import torch

from ganbench import data
from ganbench.quality import classifier
from ganbench.errors import DataError

@pytest.fixture(scope="module")
def test_digits():
    """2,000 MNIST test digits (the embedded subset's test split is the full MNIST test set)."""
    mnist = data.load_embedded()
    return (data.prepare(mnist.test_images[:2000], 28),
            torch.from_numpy(mnist.test_labels[:2000]))


def test_shipped_weights_reach_98_5_percent(test_digits):
    images, labels = test_digits
    assert classifier.accuracy(classifier.load_classifier(), images, labels) >= 0.985


def test_resized_inputs_classify_as_well(test_digits):
    """Inputs of other sizes go through the documented bilinear-antialias resize to 28."""
    mnist = data.load_embedded()
    images64 = data.prepare(mnist.test_images[:2000], 64)
    assert classifier.accuracy(classifier.load_classifier(), images64, test_digits[1]) >= 0.985


def test_features_and_logits_shapes():
    model = classifier.load_classifier()
    x = torch.rand(5, 1, 32, 32) * 2 - 1
    assert model.features(x).shape == (5, classifier.FEATURE_DIM)
    assert model.logits(x).shape == (5, classifier.NUM_CLASSES)
    feats, logits = classifier.embed(model, x, batch_size=2)  # batching must not change results
    torch.testing.assert_close(logits, model.logits(x))
    torch.testing.assert_close(feats, model.features(x))
    with pytest.raises(ValueError, match=r"\(N, 1, S, S\)"):
        model.features(torch.zeros(2, 3, 28, 28))


def test_pre_activations_are_the_features_before_the_relu():
    model = classifier.load_classifier()
    x = torch.rand(7, 1, 32, 32) * 2 - 1
    pre = model.pre_activations(x)
    assert pre.shape == (7, classifier.FEATURE_DIM) and (pre < 0).any()
    torch.testing.assert_close(pre.clamp(min=0), model.features(x), rtol=0, atol=0)
    batched, logits = classifier.embed_pre_activations(model, x, batch_size=3)
    torch.testing.assert_close(batched, pre)
    torch.testing.assert_close(logits, model.logits(x))


def test_load_is_cached_per_process():
    assert classifier.load_classifier() is classifier.load_classifier()


def _copy_shipped(tmp_path):
    weights = tmp_path / "w.pt"
    shutil.copy(classifier.WEIGHTS_PATH, weights)
    shutil.copy(classifier.checksum_path(classifier.WEIGHTS_PATH), classifier.checksum_path(weights))
    return weights


def test_checksum_rejects_a_tampered_file(tmp_path):
    weights = _copy_shipped(tmp_path)
    classifier.load_weights(weights)  # the untouched copy loads
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(classifier.ChecksumError, match="SHA-256"):
        classifier.load_weights(weights)


def test_missing_record_or_weights_is_a_clear_error(tmp_path):
    weights = _copy_shipped(tmp_path)
    classifier.checksum_path(weights).unlink()
    with pytest.raises(classifier.ChecksumError, match="no checksum record"):
        classifier.load_weights(weights)
    with pytest.raises(DataError, match="classifier train"):
        classifier.load_weights(tmp_path / "absent.pt")


def test_training_is_reproducible(tmp_path):
    """Same seed, same bytes: two short trainings save files with one SHA-256."""
    mnist = data.load_embedded()
    images = data.prepare(mnist.train_images[:256], 28)
    labels = torch.from_numpy(mnist.train_labels[:256])
    hashes = []
    for name in ("a.pt", "b.pt"):
        model = classifier.fit_classifier(images, labels, seed=3, epochs=1, log=None)
        hashes.append(classifier.sha256_of(classifier.save_classifier(model, tmp_path / name)))
    assert hashes[0] == hashes[1]
    other = classifier.fit_classifier(images, labels, seed=4, epochs=1, log=None)
    path = classifier.save_classifier(other, tmp_path / "c.pt")
    assert classifier.sha256_of(path) != hashes[0]  # the seed does matter
