import pytest

from ganbench.errors import UserError
from ganbench.sweep.matrix import build_matrix
from ganbench.registry import collect, make_plugin_manager


@pytest.fixture(scope="module")
def registry():
    return collect(make_plugin_manager(load_entrypoints=False)[0])


def names(combos):
    return [c.name for c in combos]


def test_architectures_get_their_textbook_defaults(registry):
    combos, notes = build_matrix(("dcgan", "sagan"), registry)
    assert names(combos) == ["dcgan+bce", "sagan+hinge+eager-attn"]
    assert notes == []


def test_kernel_pairs_only_with_attention_architectures(registry):
    combos, notes = build_matrix(("dcgan", "sagan", "eager-attn", "sdpa-attn"), registry)
    assert names(combos) == ["dcgan+bce", "sagan+hinge+eager-attn", "sagan+hinge+sdpa-attn"]
    assert len(notes) == 2 and all("dcgan has no attention" in n for n in notes)


def test_kernel_alone_selects_attention_architectures(registry):
    combos, _ = build_matrix(("sdpa-attn",), registry)
    assert names(combos) == ["sagan+hinge+sdpa-attn"]


def test_named_loss_replaces_defaults(registry):
    combos, _ = build_matrix(("dcgan", "sagan", "hinge", "bce"), registry)
    assert names(combos) == ["dcgan+hinge", "dcgan+bce", "sagan+hinge+eager-attn",
                             "sagan+bce+eager-attn"]


def test_unknown_name_is_an_error_with_suggestions(registry):
    with pytest.raises(UserError, match="did you mean sagan"):
        build_matrix(("sagn",), registry)


def test_metric_name_in_plugins_points_at_metrics_flag(registry):
    some_metric = next(iter(registry.metrics))
    with pytest.raises(UserError, match="--metrics"):
        build_matrix(("dcgan", some_metric), registry)
