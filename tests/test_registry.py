import pytest

from ganbench import registry as reg
from ganbench.errors import UnknownPluginError
from ganbench.hookspecs import hookimpl
from ganbench.specs import LossSpec, ArchitectureSpec
from ganbench.plugins.losses import HingeLoss


class _ExtraLoss:
    """A plugin object registered in-process, as a test or notebook would."""

    @staticmethod
    @hookimpl
    def ganbench_register_losses(register):
        register(LossSpec(name="test-extra", summary="a loss only this test knows",
                          factory=HingeLoss))


def test_builtins_are_registered_through_the_plugin_manager():
    pm, broken = reg.make_plugin_manager(load_entrypoints=False)
    names = {pm.get_name(p) for p in pm.get_plugins()}
    assert set(reg.DEFAULT_PLUGINS) <= names
    registry = reg.collect(pm, broken)
    assert {"dcgan", "sagan"} <= set(registry.architectures)
    assert {"bce", "hinge"} <= set(registry.losses)
    assert "eager-attn" in registry.attention
    assert registry.entries["architecture"]["sagan"].source == "built-in"
    assert not registry.broken


def test_plugin_registered_in_process_and_unregistered_in_finally():
    pm, _ = reg.make_plugin_manager(load_entrypoints=False)
    pm.register(_ExtraLoss, name="test-extra-plugin")
    try:
        registry = reg.collect(pm)
        assert registry.kind_of("test-extra") == "loss"
        assert registry.entries["loss"]["test-extra"].source == "test-extra-plugin"
    finally:
        pm.unregister(name="test-extra-plugin")
    assert reg.collect(pm).kind_of("test-extra") is None


def test_unknown_name_error_lists_close_matches_and_available_names():
    registry = reg.collect(reg.make_plugin_manager(load_entrypoints=False)[0])
    with pytest.raises(UnknownPluginError) as info:
        registry.lookup("sgan")
    message = str(info.value)
    assert "'sgan'" in message and "did you mean" in message and "sagan" in message
    assert "available:" in message and "dcgan" in message
    assert "\n" not in message


def test_wrong_spec_kind_is_rejected():
    registry = reg.Registry()
    spec = LossSpec(name="x", summary="y", factory=HingeLoss)
    with pytest.raises(TypeError, match="expected ArchitectureSpec"):
        registry.add("architecture", spec, "test")


def test_name_clash_is_rejected_with_both_sources():
    registry = reg.Registry()
    registry.add("loss", LossSpec(name="x", summary="y", factory=HingeLoss), "built-in")
    with pytest.raises(ValueError, match="already registered as a loss by built-in"):
        registry.add("loss", LossSpec(name="x", summary="z", factory=HingeLoss), "other==1.0")


@pytest.mark.parametrize("bad", ["Sagan", "my_loss", "-x", "x-", "a b", ""])
def test_spec_names_must_be_lowercase_hyphen(bad):
    with pytest.raises(ValueError, match="lowercase-hyphen"):
        LossSpec(name=bad, summary="s", factory=HingeLoss)


def test_spec_summary_must_be_one_line():
    with pytest.raises(ValueError, match="one non-empty line"):
        LossSpec(name="ok", summary="two\nlines", factory=HingeLoss)
