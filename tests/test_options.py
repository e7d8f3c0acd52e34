"""One source for defaults and choices: every command's rendered --help against the config.

The help is parsed back from the text argparse prints (not from the Option rows), so a default
typed into a help string by hand, a choice list that drifted from config, or a flag whose
argparse default differs from RunConfig's fails here.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from ganbench import config
from ganbench.cli import help_pages
from ganbench.errors import ConfigError
from ganbench.api.options import config_from_options as run_config
from ganbench.options import RUN_OPTIONS, Option, add_options

WIDE = 10_000  # columns: no wrapping, one help entry per option line


def help_entries(text: str) -> dict[str, str]:
    """'--flag' (or a positional's name) -> its help text, from argparse's --help output."""
    entries: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        match = re.match(r"^  (\S.*?)(?:\s{2,}(.*))?$", line)
        if match and not line.startswith("   "):
            flags = re.findall(r"(?:^|, )(--?[\w-]+)", match[1])  # "-h, --help", "--dtype {a,b}"
            current = max(flags, key=len) if flags else match[1].split()[0]
            entries[current] = match[2] or ""
        elif current and line.startswith("   "):
            entries[current] = (entries[current] + " " + line.strip()).strip()
        elif not line.strip():
            current = None
    return entries


def choices_shown(text: str, flag: str) -> tuple[str, ...]:
    match = re.search(re.escape(flag) + r" \[?\{([^}]*)\}", text)  # [{a,b}]: optional value
    assert match, f"{flag} shows no choices"
    return tuple(match[1].split(","))


def default_shown(entry: str):
    """The text in the entry's last "(default: ...)", or None. The default must be stated once."""
    found = re.findall(r"\(default: (.*)\)$", entry)
    assert entry.count("default") <= 1 or found, entry
    return found[-1] if found else None


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return dict(help_pages(WIDE))


def test_every_command_has_a_help_page(pages):
    assert {"ganbench", "ganbench run", "ganbench plugins", "ganbench report",
            "ganbench compare", "ganbench bench", "ganbench classifier",
            "ganbench classifier train", "ganbench classifier eval", "ganbench sample",
            "ganbench new-plugin"} <= set(pages)


def test_every_run_default_in_the_help_is_the_configs(pages):
    entries = help_entries(pages["ganbench run"])
    defaults = {f.name: f.default for f in dataclasses.fields(config.RunConfig)}
    checked = 0
    for option in RUN_OPTIONS:
        entry = entries[option.name]
        shown = default_shown(entry)
        if option.field is None or option.action in ("store_true", "append"):
            continue
        if option.default_text is not None:
            continue  # words, checked below
        if shown is None:  # nothing shown: the config has no default either (None or required)
            assert defaults[option.field] in (None, dataclasses.MISSING), option.name
            continue
        value = option.to_config(shown) if option.to_config else (
            type(defaults[option.field])(shown))
        assert value == defaults[option.field], (option.name, shown)
        checked += 1
    assert checked >= 10  # data, digits, device, batch, seed, dtype, memory format, ...


def test_device_dependent_defaults_in_the_help_are_the_configs(pages):
    entries = help_entries(pages["ganbench run"])
    for flag, key in (("--steps", "steps"), ("--image-size", "image_size")):
        shown = default_shown(entries[flag])
        cpu, cuda = re.fullmatch(r"(\d+) on CPU, (\d+) on CUDA", shown).groups()
        assert (int(cpu), int(cuda)) == (config.CPU_DEFAULTS[key], config.CUDA_DEFAULTS[key])
    assert default_shown(entries["--warmup"]) == (
        f"min({config.WARMUP_CAP}, steps/{config.WARMUP_SHARE})")
    assert default_shown(entries["--eval-n"]).startswith(f"{config.DEFAULT_EVAL_N}, ")


def test_the_cpu_step_default_is_600_everywhere(pages):
    """Issue 22.8: help said 180 while config and README said 600."""
    assert config.CPU_DEFAULTS["steps"] == 600
    assert "600 on CPU" in help_entries(pages["ganbench run"])["--steps"]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "| steps | 600 | 1000 |" in readme
    assert "180" not in pages["ganbench run"]


@pytest.mark.parametrize("flag, expected", [
    ("--dtype", config.DTYPES), ("--memory-format", config.MEMORY_FORMATS),
    ("--compile-mode", config.COMPILE_MODES), ("--baseline", config.BASELINES),
    ("--malloc", config.MALLOC_CHOICES), ("--compile", config.COMPILE_SCOPES[1:])])
def test_every_run_choice_list_is_the_configs(pages, flag, expected):
    assert choices_shown(pages["ganbench run"], flag) == tuple(expected)


def test_every_shown_default_of_every_command_is_the_parsers(pages):
    """No command states a default its parser does not have: each "(default: X)" is either
    str(argparse's default) or words declared as such (default_text)."""
    from ganbench.cli import build_parser, subcommands

    def walk(parser):
        yield parser
        for child in subcommands(parser).values():
            yield from walk(child)

    worded = 0
    for parser in walk(build_parser()):
        entries = help_entries(pages[parser.prog])
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            flag = max(action.option_strings, key=len)
            shown = default_shown(entries[flag])
            if shown is None:
                assert action.default in (None, False, [], argparse.SUPPRESS), (parser.prog, flag)
            elif shown != str(action.default):  # words for "not given" ($GANBENCH_MNIST:
                assert action.default in (None, [])  # conftest unsets it), never a number
                worded += 1
    assert worded >= 10


def test_run_config_from_an_empty_command_line_is_the_config_default():
    cfg = run_config({"plugins": "dcgan"})
    assert cfg == config.RunConfig(plugins=("dcgan",))


def test_run_config_converts_each_kind_of_value():
    cfg = run_config({"plugins": "sagan, hinge", "metrics": "none", "digits": "all",
                      "in_process": True, "option": ["eager-attn.k=3"], "columns": "combo",
                      "steps": 7, "out": Path("x")})
    assert cfg.plugins == ("sagan", "hinge") and cfg.metrics == () and cfg.digits == ()
    assert cfg.isolate is False and cfg.options == {"eager-attn": {"k": 3}}
    assert cfg.columns == ("combo",) and cfg.steps == 7 and cfg.out == Path("x")


@pytest.mark.parametrize("values, fragment", [
    ({}, "--plugins is required"),
    ({"plugins": " , "}, "--plugins is empty"),
    ({"plugins": "dcgan", "columns": ","}, "--columns is empty"),
    ({"plugins": "dcgan", "digits": "7,x"}, "--digits takes comma-separated digits"),
    ({"plugins": "dcgan", "option": ["nodot=1"]}, "--option takes PLUGIN.KEY=VALUE"),
])
def test_run_config_refuses_bad_values_in_one_line(values, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)) as info:
        run_config(values)
    assert "\n" not in str(info.value)


def test_every_config_field_is_settable_from_the_command_line():
    fields = {f.name for f in dataclasses.fields(config.RunConfig)}
    settable = {o.field for o in RUN_OPTIONS if o.field}
    assert settable <= fields
    assert fields - settable == {"world_size"}  # set by torchrun's ranks, not the user


def test_help_text_adds_the_default_once_and_never_for_flags():
    parser = argparse.ArgumentParser()
    add_options(parser, (Option("--k", "how many", type=int, default=3),
                         Option("--fast", "go fast", action="store_true"),
                         Option("--pct", "a 5% change", default_text="10% of N")))
    text = parser.format_help()
    assert "how many (default: 3)" in text
    assert "go fast\n" in text and "go fast (default" not in text
    assert "a 5% change (default: 10% of N)" in text  # % escaped for argparse
    assert parser.parse_args([]).k == 3 and parser.parse_args(["--k", "4"]).k == 4
