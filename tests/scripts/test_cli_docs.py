"""docs/cli.md and the README's command table are rendered from the parsers (like simonw/llm's
CLI reference): this fails when either is stale. Regenerate with `python scripts/cli_docs.py`."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]  # tests/scripts/ -> the repository
spec = importlib.util.spec_from_file_location("cli_docs", REPO / "scripts" / "cli_docs.py")
cli_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cli_docs)


def test_the_readme_command_table_is_the_parsers():
    readme = (REPO / "README.md").read_text()
    assert readme == cli_docs.readme_with_table(readme), \
        "README's command table is stale: run python scripts/cli_docs.py"


def test_docs_cli_md_is_every_help_page():
    text = (REPO / "docs" / "cli.md").read_text()
    made_by = re.search(rf"{cli_docs.PYTHON_LINE} (\d+\.\d+)", text)
    assert made_by, "docs/cli.md does not say which Python rendered it"
    if made_by[1] != cli_docs.python_version():
        pytest.skip(f"docs/cli.md was rendered by Python {made_by[1]}; argparse's layout "
                    f"differs in {cli_docs.python_version()}")
    assert text == cli_docs.reference(), "docs/cli.md is stale: run python scripts/cli_docs.py"


def test_the_reference_holds_every_command_and_flag():
    from ganbench.cli import build_parser, subcommands

    text = cli_docs.reference()
    parsers = subcommands(build_parser())
    assert set(parsers) == {"run", "plugins", "new-plugin", "report", "compare", "bench",
                            "classifier", "sample", "score"}
    for name, parser in parsers.items():
        assert f"## `ganbench {name}`" in text
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in text
    assert "## `ganbench classifier train`" in text and "## `ganbench classifier eval`" in text


def test_the_table_lists_each_commands_flags_in_its_row():
    table = cli_docs.command_table()
    run_row = next(line for line in table.splitlines() if line.startswith("| `ganbench run"))
    for flag in ("--plugins", "--steps", "--checkpoint-every", "--resume", "--jobs"):
        assert f"`{flag}`" in run_row
    assert "`--combo`" not in run_row  # sample's, not run's


def test_check_mode_says_which_file_is_stale(tmp_path, monkeypatch, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{cli_docs.TABLE_START}\nold table\n{cli_docs.TABLE_END}\nrest\n")
    monkeypatch.setattr(cli_docs, "ROOT", tmp_path)
    monkeypatch.setattr(cli_docs, "README", readme)
    monkeypatch.setattr(cli_docs, "CLI_MD", tmp_path / "docs" / "cli.md")
    assert cli_docs.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "README.md is stale" in err and "docs/cli.md is stale" in err
    (tmp_path / "docs").mkdir()
    assert cli_docs.main([]) == 0
    assert cli_docs.main(["--check"]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("\nrest\n") and "old table" not in text
