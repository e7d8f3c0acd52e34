"""A broken third-party plugin must cost the user one warning, never ganbench.

Each case installs fake distributions as real ``*.dist-info`` folders on ``sys.path`` (what pip
leaves behind), so ``importlib.metadata`` finds their ``ganbench`` entry points exactly as it
would find an installed package. A well-behaved distribution is always installed beside the
broken one, to show that everything else keeps working. The same folders drive the selection
tests (GANBENCH_LOAD_PLUGINS / GANBENCH_BLOCK_PLUGINS).
"""

from __future__ import annotations

import json
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from helpers import tiny_run_args

from ganbench import cli
from ganbench import registry as reg
from ganbench.hookspecs import hookimpl
from ganbench.plugins.losses import HingeLoss
from ganbench.specs import LossSpec

GOOD = "fake-good"  # the well-behaved distribution installed in every case
GOOD_SOURCE = "fake-good==1.0"
GOOD_PLUGIN = """
    from ganbench.hookspecs import hookimpl
    from ganbench.plugins.losses import HingeLoss
    from ganbench.specs import LossSpec

    @hookimpl
    def ganbench_register_losses(register):
        register(LossSpec(name="fake-good-loss", summary="hinge under another name",
                          factory=HingeLoss))
"""


class FakeSite:
    """Writes distributions into folders on sys.path; the fixture undoes everything."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch):
        self.root = root
        self.monkeypatch = monkeypatch
        self.count = 0

    def add(self, dist: str, source: str, entry_point: str = "plugin") -> None:
        """Install distribution ``dist`` (version 1.0) whose entry point loads ``source``.

        Each distribution gets its own folder and a module name unique to the test, so no
        module cached in sys.modules by another test can stand in for it.
        """
        self.count += 1
        site = self.root / f"site{self.count}"
        module = f"_ganbench_fake_{dist.replace('-', '_')}_{self.count}"
        info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[ganbench]\n{entry_point} = {module}\n")
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        self.monkeypatch.syspath_prepend(str(site))  # also invalidates the import caches


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A FakeSite with the good distribution installed; loads only fake distributions."""
    modules_before = set(sys.modules)
    saved_registry = reg._REGISTRY
    reg._REGISTRY = None
    fake = FakeSite(tmp_path, monkeypatch)
    fake.add(GOOD, GOOD_PLUGIN)
    monkeypatch.delenv(reg.LOAD_ENV, raising=False)
    monkeypatch.delenv(reg.BLOCK_ENV, raising=False)
    try:
        yield fake
    finally:
        reg._REGISTRY = saved_registry
        for name in set(sys.modules) - modules_before:
            if name.startswith("_ganbench_fake_"):
                del sys.modules[name]


def only_load(monkeypatch, *dists: str) -> None:
    """Load just these distributions: ignore whatever else is installed on this machine."""
    monkeypatch.setenv(reg.LOAD_ENV, ",".join(dists))


def ganbench(capsys, *argv: str) -> tuple[int, str, list[str]]:
    """Run the CLI in-process on a fresh registry: (exit code, stdout, PluginWarning texts)."""
    reg._REGISTRY = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = cli.main(list(argv))
    out = capsys.readouterr().out
    return code, out, [str(w.message) for w in caught if issubclass(w.category, reg.PluginWarning)]


def broken_lines(out: str) -> list[str]:
    """The lines under 'broken:' in `ganbench plugins` output."""
    lines = out.splitlines()
    if "broken:" not in lines:
        return []
    rest = lines[lines.index("broken:") + 1:]
    return [line.strip() for line in rest if line.startswith("  ")]


def assert_everything_else_works(out: str) -> None:
    for builtin in ("dcgan", "sagan", "bce", "hinge", "eager-attn", "embedded"):
        assert any(line.split()[:2] == [builtin, "built-in"] for line in out.splitlines()), builtin
    assert any(line.split()[:2] == ["fake-good-loss", GOOD_SOURCE] for line in out.splitlines())


# --------------------------------------------------------------------------------------------
# Broken plugins
# --------------------------------------------------------------------------------------------
def test_import_error_in_the_plugin_module(site, monkeypatch, capsys):
    site.add("fake-import-error", "import ganbench_no_such_module_xyz\n")
    only_load(monkeypatch, GOOD, "fake-import-error")
    code, out, warned = ganbench(capsys, "plugins")
    assert code == 0
    assert len(warned) == 1
    assert "fake-import-error==1.0" in warned[0] and "ganbench_no_such_module_xyz" in warned[0]
    assert broken_lines(out) == ["fake-import-error==1.0: ModuleNotFoundError: No module named "
                                 "'ganbench_no_such_module_xyz'"]
    assert_everything_else_works(out)


def test_hook_with_a_wrong_signature_is_rejected_whole(site, monkeypatch, capsys):
    # pluggy checks hooks in name order and keeps the ones it accepted before the bad one;
    # the attention hook comes first, and must not survive its plugin being rejected.
    site.add("fake-bad-signature", """
        from ganbench.hookspecs import hookimpl
        from ganbench.specs import AttentionSpec

        @hookimpl
        def ganbench_register_attention(register):
            register(AttentionSpec(name="fake-half-attn", summary="s", factory=lambda: None))

        @hookimpl
        def ganbench_register_losses(register, device):
            pass
    """)
    only_load(monkeypatch, GOOD, "fake-bad-signature")
    code, out, warned = ganbench(capsys, "plugins")
    assert code == 0
    assert len(warned) == 1 and "fake-bad-signature==1.0" in warned[0]
    [line] = broken_lines(out)
    assert line.startswith("fake-bad-signature==1.0: PluginValidationError:")
    assert "ganbench_register_losses" in line and "'device'" in line  # says what is wrong
    assert "fake-half-attn" not in out
    assert_everything_else_works(out)


def test_misspelled_hook_name_is_reported_not_ignored(site, monkeypatch, capsys):
    site.add("fake-typo", """
        from ganbench.hookspecs import hookimpl

        @hookimpl
        def ganbench_register_loss(register):  # the hook is ganbench_register_losses
            pass
    """)
    only_load(monkeypatch, GOOD, "fake-typo")
    code, out, warned = ganbench(capsys, "plugins")
    assert code == 0
    assert len(warned) == 1 and "fake-typo==1.0" in warned[0]
    [line] = broken_lines(out)
    assert line.startswith("fake-typo==1.0: PluginValidationError: unknown hook "
                           "'ganbench_register_loss'")
    assert_everything_else_works(out)


def test_name_clashing_with_a_builtin(site, monkeypatch, capsys):
    site.add("fake-clash", """
        from ganbench.hookspecs import hookimpl
        from ganbench.plugins.losses import BCELoss
        from ganbench.specs import LossSpec

        @hookimpl
        def ganbench_register_losses(register):
            register(LossSpec(name="hinge", summary="an impostor", factory=BCELoss))
    """)
    only_load(monkeypatch, GOOD, "fake-clash")
    code, out, warned = ganbench(capsys, "plugins")
    assert code == 0
    assert len(warned) == 1 and "fake-clash==1.0" in warned[0]
    assert broken_lines(out) == ["fake-clash==1.0: ganbench_register_losses: ValueError: name "
                                 "'hinge' is already registered as a loss by built-in"]
    assert "an impostor" not in out
    assert reg.get_registry().entries["loss"]["hinge"].source == "built-in"
    assert_everything_else_works(out)


def test_trylast_does_not_let_a_plugin_take_a_builtin_name(site, monkeypatch, capsys):
    # pluggy calls trylast implementations first; were they registered first, the built-in
    # "hinge" would be the one to clash, and a built-in's failure is fatal.
    site.add("fake-trylast", """
        from ganbench.hookspecs import hookimpl
        from ganbench.plugins.losses import BCELoss
        from ganbench.specs import LossSpec

        @hookimpl(trylast=True)
        def ganbench_register_losses(register):
            register(LossSpec(name="hinge", summary="an impostor", factory=BCELoss))
    """)
    only_load(monkeypatch, GOOD, "fake-trylast")
    code, out, warned = ganbench(capsys, "plugins")
    assert code == 0
    assert len(warned) == 1 and "fake-trylast==1.0" in warned[0]
    assert reg.get_registry().entries["loss"]["hinge"].source == "built-in"
    assert_everything_else_works(out)


def test_name_clashing_with_another_plugin(site, monkeypatch, capsys):
    for dist in ("fake-first", "fake-second"):
        site.add(dist, f"""
            from ganbench.hookspecs import hookimpl
            from ganbench.plugins.losses import HingeLoss
            from ganbench.specs import LossSpec

            @hookimpl
            def ganbench_register_losses(register):
                register(LossSpec(name="fake-shared", summary="from {dist}", factory=HingeLoss))
        """)
    only_load(monkeypatch, GOOD, "fake-first", "fake-second")
    code, out, warned = ganbench(capsys, "plugins")
    assert code == 0
    # Which one wins depends on discovery order; exactly one must win and one be reported.
    owner = reg.get_registry().entries["loss"]["fake-shared"].source
    loser = ({"fake-first==1.0", "fake-second==1.0"} - {owner}).pop()
    assert len(warned) == 1 and loser in warned[0]
    assert broken_lines(out) == [f"{loser}: ganbench_register_losses: ValueError: name "
                                 f"'fake-shared' is already registered as a loss by {owner}"]
    assert_everything_else_works(out)


def test_register_hook_that_raises(site, monkeypatch, capsys):
    site.add("fake-raises", """
        from ganbench.hookspecs import hookimpl

        @hookimpl
        def ganbench_register_losses(register):
            raise RuntimeError("no losses today")
    """)
    only_load(monkeypatch, GOOD, "fake-raises")
    code, out, warned = ganbench(capsys, "plugins")
    assert code == 0
    assert len(warned) == 1 and "fake-raises==1.0" in warned[0]
    assert broken_lines(out) == ["fake-raises==1.0: ganbench_register_losses: RuntimeError: "
                                 "no losses today"]
    assert_everything_else_works(out)


EXPLODING_FACTORY = """
    from ganbench.hookspecs import hookimpl
    from ganbench.specs import LossSpec

    def explode():
        raise RuntimeError("factory exploded")

    @hookimpl
    def ganbench_register_losses(register):
        register(LossSpec(name="fake-exploding", summary="fails when built", factory=explode))
"""
TINY_RUN = tuple(tiny_run_args(steps=2, device=None))


def check_factory_failure_rows(code: int, run_dir: Path) -> None:
    assert code == 1  # a failed row makes the run exit non-zero, after every row ran
    rows = {row["combo"]: row for row in json.loads((run_dir / "results.json").read_text())
            ["rows"]}
    assert rows["dcgan+fake-exploding"]["status"] == "failed"
    assert rows["dcgan+fake-exploding"]["error"] == "RuntimeError: factory exploded"
    assert "factory exploded" in (run_dir / "logs" / "dcgan+fake-exploding.log").read_text()
    assert rows["dcgan+fake-good-loss"]["status"] == "ok"  # the other combination still ran


def test_factory_that_raises_becomes_a_failed_row(site, monkeypatch, capsys, tmp_path):
    # The registry cannot see this one: a factory runs only when its combination trains.
    site.add("fake-exploding", EXPLODING_FACTORY)
    only_load(monkeypatch, GOOD, "fake-exploding")
    code, out, warned = ganbench(capsys, "run", "--plugins", "dcgan,fake-exploding,"
                                 "fake-good-loss", *TINY_RUN, "--in-process", "--out",
                                 str(tmp_path / "run"))
    assert not warned
    check_factory_failure_rows(code, tmp_path / "run")


@pytest.mark.slow
def test_factory_that_raises_in_a_worker_process(site, monkeypatch, capsys, tmp_path):
    # The default path: each combination in a spawned process, which finds the plugins again
    # (spawn hands the child this sys.path, and the environment carries GANBENCH_LOAD_PLUGINS).
    site.add("fake-exploding", EXPLODING_FACTORY)
    only_load(monkeypatch, GOOD, "fake-exploding")
    code, _, _ = ganbench(capsys, "run", "--plugins", "dcgan,fake-exploding,fake-good-loss",
                          *TINY_RUN, "--out", str(tmp_path / "run"))
    check_factory_failure_rows(code, tmp_path / "run")


def test_plugin_object_registered_in_process_and_unregistered_in_finally():
    # What a notebook or a test does: no packaging, just an object with hooks. A raising hook
    # from such a plugin is reported under the name it was registered with.
    class Plugin:
        @staticmethod
        @hookimpl
        def ganbench_register_losses(register):
            register(LossSpec(name="fake-inline", summary="s", factory=HingeLoss))

        @staticmethod
        @hookimpl
        def ganbench_register_metrics(register):
            raise RuntimeError("metrics are broken")

    pm, _ = reg.make_plugin_manager(load_entrypoints=False)
    pm.register(Plugin, name="inline-plugin")
    try:
        with pytest.warns(reg.PluginWarning, match="inline-plugin is broken"):
            registry = reg.collect(pm)
        assert registry.entries["loss"]["fake-inline"].source == "inline-plugin"
        assert registry.broken == [("inline-plugin", "ganbench_register_metrics: RuntimeError: "
                                                     "metrics are broken")]
    finally:
        pm.unregister(name="inline-plugin")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning once it is gone
        registry = reg.collect(pm)
    assert registry.kind_of("fake-inline") is None and not registry.broken


# --------------------------------------------------------------------------------------------
# Selection: GANBENCH_LOAD_PLUGINS and GANBENCH_BLOCK_PLUGINS
# --------------------------------------------------------------------------------------------
OTHER_PLUGIN = GOOD_PLUGIN.replace("fake-good-loss", "fake-other-loss")


def loaded_fake_losses() -> set[str]:
    return {name for name in reg.get_registry(refresh=True).losses if name.startswith("fake-")}


@pytest.mark.parametrize("load, block, expected", [
    ("fake-good,fake-other", None, {"fake-good-loss", "fake-other-loss"}),
    ("", None, set()),                                      # set but empty: no third party
    ("fake-other", None, {"fake-other-loss"}),              # by distribution name
    ("Fake_Other", None, {"fake-other-loss"}),              # names are PEP 503-normalised
    ("other_ep", None, {"fake-other-loss"}),                # by entry-point name
    ("fake-good,fake-other", "fake-good", {"fake-other-loss"}),
    ("fake-good,fake-other", "other_ep", {"fake-good-loss"}),
])
def test_load_and_block_select_distributions(site, monkeypatch, load, block, expected):
    site.add("fake-other", OTHER_PLUGIN, entry_point="other_ep")
    monkeypatch.setenv(reg.LOAD_ENV, load)
    if block is not None:
        monkeypatch.setenv(reg.BLOCK_ENV, block)
    assert loaded_fake_losses() == expected
    assert {"bce", "hinge"} <= set(reg.get_registry().losses)  # built-ins always load


def test_without_load_every_installed_distribution_loads(site, monkeypatch):
    site.add("fake-other", OTHER_PLUGIN)
    monkeypatch.delenv(reg.LOAD_ENV, raising=False)
    monkeypatch.setenv(reg.BLOCK_ENV, "fake-other")
    assert "fake-good-loss" in loaded_fake_losses()
    assert "fake-other-loss" not in loaded_fake_losses()


def test_same_entry_point_name_in_two_distributions(site, monkeypatch):
    # Both use the entry-point name "plugin" (the FakeSite default): both must load.
    site.add("fake-other", OTHER_PLUGIN)
    only_load(monkeypatch, GOOD, "fake-other")
    registry = reg.get_registry(refresh=True)
    assert registry.entries["loss"]["fake-good-loss"].source == GOOD_SOURCE
    assert registry.entries["loss"]["fake-other-loss"].source == "fake-other==1.0"


# --------------------------------------------------------------------------------------------
# Selection by plugin name, unknown names, provenance
# --------------------------------------------------------------------------------------------
TWO_PLUGINS = """
    from ganbench.hookspecs import hookimpl
    from ganbench.plugins.losses import HingeLoss
    from ganbench.specs import LossSpec

    @hookimpl
    def ganbench_register_losses(register):
        register(LossSpec(name="fake-pair-a", summary="one of two", factory=HingeLoss))
        register(LossSpec(name="fake-pair-b", summary="two of two", factory=HingeLoss))
"""


def selection_warnings() -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg.get_registry(refresh=True)
    return [str(w.message) for w in caught if issubclass(w.category, reg.PluginWarning)]


def test_block_one_plugin_of_a_distribution_by_its_name(site, monkeypatch):
    site.add("fake-pair", TWO_PLUGINS)
    monkeypatch.delenv(reg.LOAD_ENV, raising=False)
    monkeypatch.setenv(reg.BLOCK_ENV, "fake-pair-b")
    assert selection_warnings() == []
    losses = loaded_fake_losses()
    assert "fake-pair-a" in losses and "fake-pair-b" not in losses
    assert ("fake-pair-b", "fake-pair==1.0") in reg.get_registry().blocked


def test_load_one_plugin_of_a_distribution_by_its_name(site, monkeypatch):
    site.add("fake-pair", TWO_PLUGINS)
    monkeypatch.setenv(reg.LOAD_ENV, "fake-pair-a")
    assert loaded_fake_losses() == {"fake-pair-a"}


def test_unknown_names_are_reported_in_one_warning(site, monkeypatch):
    monkeypatch.setenv(reg.LOAD_ENV, "fake-good,fake-goood")
    monkeypatch.setenv(reg.BLOCK_ENV, "no-such-plugin,sagan")
    found = selection_warnings()
    assert len(found) == 1, found
    assert "GANBENCH_LOAD_PLUGINS names no installed plugin or distribution: fake-goood" in found[0]
    assert "GANBENCH_BLOCK_PLUGINS names no installed plugin or distribution: no-such-plugin" \
        in found[0]
    assert "sagan built in and always load" in found[0]
    assert "sagan" in reg.get_registry().architectures  # still there


def test_provenance_of_every_plugin(site, monkeypatch):
    only_load(monkeypatch, GOOD)
    reg.get_registry(refresh=True)
    got = reg.provenance(["sagan", "fake-good-loss", "nope"])
    assert got == {"sagan": "built-in", "fake-good-loss": GOOD_SOURCE, "nope": "unknown"}
    every = reg.provenance()
    assert set(every) == set(reg.get_registry().all_names())
    assert every["fid-digits"] == "built-in"


def test_plugins_aligns_long_sources_and_has_json(site, monkeypatch, capsys):
    long_dist = "fake-a-distribution-with-a-very-long-name"
    site.add(long_dist, OTHER_PLUGIN)
    only_load(monkeypatch, GOOD, long_dist)
    code, out, _ = ganbench(capsys, "plugins", "--device", "cpu")
    assert code == 0
    rows = [line for line in out.splitlines()
            if line.split()[:1] in (["bce"], ["hinge"], ["fake-good-loss"], ["fake-other-loss"])]
    assert len(rows) == 4
    # every summary starts in the same column, however long the source
    starts = {line.index(word) for line in rows for word in ("yes",)}
    assert len(starts) == 1, rows
    code, out, _ = ganbench(capsys, "plugins", "--device", "cpu", "--json")
    data = json.loads(out)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert by_name["fake-other-loss"]["source"] == f"{long_dist}==1.0"
    assert by_name["fake-good-loss"]["runs"] is True and by_name["sagan"]["source"] == "built-in"
    assert by_name["fid-digits"]["directions"] == {"fid_digits": "lower"}
