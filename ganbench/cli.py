"""The ``ganbench`` command line: a thin dispatcher over the ``cmd_*`` modules.

Each command module holds ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``
and imports only the standard library at module level, so ``ganbench --help`` stays fast
(``import torch`` alone costs ~1.8 s on the project's 2-core machine).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Optional, Sequence

from ganbench import __version__
from ganbench.errors import UserError

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganbench",
        description="Train the textbook DCGAN and SAGAN on handwritten digits and benchmark "
        "every combination of architecture, loss and attention kernel.",
    )
    parser.add_argument("--version", action="version", version=f"ganbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # a command not built yet in this checkout
                continue
            raise
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"ganbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            # Output piped into a reader that closed early (`ganbench plugins | head`).
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        # A path the user gave cannot be written or read (a folder under a regular file, a
        # full disk): one line, not a traceback.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"ganbench: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ganbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
