"""The ``ganbench`` command line: a thin dispatcher over the modules of ``ganbench.commands``.

Each command module holds ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``
and imports only the standard library (and ganbench's stdlib-only modules: errors, options,
config) at module level, so ``ganbench --help`` stays fast (``import torch`` alone costs ~1.8 s
on the project's 2-core machine).

Every error meant for a person ends as one line, ``ganbench: error: ...``, and the exit code of
its class (:mod:`ganbench.errors`): 2 for the user's mistakes, argparse's included (an unknown
flag gets its closest spellings; flags are never abbreviated, so ``--plugin`` is not taken for
``--plugins``), 1 for a plugin's bug or a failed write, 130/143 for an interrupt.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import os
import re
import sys
from typing import NoReturn, Optional, Sequence

from ganbench import __version__
from ganbench.errors import UsageError, exit_code, one_line
from ganbench.options import invalid_choice, suggest

# Order is the order in `ganbench --help`.
COMMAND_MODULES = (
    "ganbench.commands.run",
    "ganbench.commands.plugins",
    "ganbench.commands.new_plugin",
    "ganbench.commands.report",
    "ganbench.commands.compare",
    "ganbench.commands.bench",
    "ganbench.commands.classifier",
    "ganbench.commands.sample",
    "ganbench.commands.score",
)
DESCRIPTION = ("Train the textbook DCGAN and SAGAN on handwritten digits and benchmark every "
               "combination of architecture, loss and attention kernel.")
_INVALID_CHOICE = re.compile(r"^(?P<head>argument (?P<arg>[^:]+): invalid choice: )"
                             r"(?P<value>.*) \(choose from (?P<choices>.*)\)$")
_UNSEEN = "_ganbench_unrecognized_in"  # namespace attribute: the parser that left extras


class Parser(argparse.ArgumentParser):
    """argparse with ganbench's manners: no abbreviated flags, and a mistake is a UsageError
    (one line, exit 2 through :func:`main`) with the closest spellings, not usage + SystemExit.
    Subcommand parsers inherit the class (argparse builds them with ``type(parent)``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        match = _INVALID_CHOICE.match(message)
        if match:
            value = match["value"]
            choices = _literal_list(match["choices"])
            word = _literal_list(value)
            hint = suggest(word[0], choices) if len(word) == 1 else ""
            message = invalid_choice(match["arg"], value, choices, hint)
        raise UsageError(f"{message} (see `{self.prog} --help`)")

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and not hasattr(namespace, _UNSEEN):
            setattr(namespace, _UNSEEN, self)  # the innermost parser: its flags are the ones meant
        return namespace, extras

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            owner = getattr(namespace, _UNSEEN, self)
            owner.error(unrecognized(owner, extras))
        return namespace

    def option_strings(self) -> list[str]:
        return [s for action in self._actions for s in action.option_strings]


def unrecognized(parser: Parser, extras: list[str]) -> str:
    """'unrecognized argument --plugin (did you mean --plugins?)' for the first unknown flag,
    else the stray words."""
    flags = [e for e in extras if e.startswith("-") and len(e) > 1]
    if flags:
        flag = flags[0].partition("=")[0]
        return f"unrecognized argument {flag}{suggest(flag, parser.option_strings())}"
    return f"unrecognized argument{'s' if len(extras) > 1 else ''} {' '.join(extras)}"


def _literal_list(text: str) -> list[str]:
    """"'a', 'b'" (argparse's repr-joined choices) -> ['a', 'b']; other text as one item."""
    try:
        value = ast.literal_eval(f"[{text}]")
    except (ValueError, SyntaxError):
        return [text]
    return [str(v) for v in value]


def command_modules():
    """The command modules present in this checkout, in --help order."""
    modules = []
    for module_name in COMMAND_MODULES:
        try:
            modules.append(importlib.import_module(module_name))
        except ModuleNotFoundError as exc:
            if exc.name != module_name:  # a command not built yet in this checkout is skipped
                raise
    return modules


def build_parser() -> Parser:
    parser = Parser(prog="ganbench", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"ganbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in command_modules():
        command = sub.add_parser(module.NAME, help=module.HELP,
                                 description=getattr(module, "DESCRIPTION", module.HELP))
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parsers of ``parser``'s subcommands by name ({} when it has none)."""
    for action in parser._actions:  # argparse has no public list of a parser's subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def help_pages(width: int = 100) -> list[tuple[str, str]]:
    """(``ganbench ...`` command, its ``--help`` text at ``width`` columns) for the top level,
    every command and every subcommand, in --help order: what docs/cli.md is made of."""
    pages = []

    def walk(parser: argparse.ArgumentParser) -> None:
        pages.append((parser.prog, parser.format_help()))
        for child in subcommands(parser).values():
            walk(child)

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)  # argparse wraps at shutil.get_terminal_size() - 2
    try:
        walk(build_parser())
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    return pages


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; the exit code. Errors for people are one line on stderr (see the module
    docstring); anything else is a bug and keeps its traceback."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "_run", None):
            parser.print_help()
            return 2
        return int(args._run(args) or 0)
    except BrokenPipeError:
        # Output piped into a reader that closed early (`ganbench plugins | head`).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("ganbench: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        code = exit_code(exc)
        if code is None:
            raise
        print(f"ganbench: error: {one_line(exc)}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
