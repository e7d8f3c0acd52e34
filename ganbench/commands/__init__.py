"""The subcommands of ``ganbench``: one module per command, each with NAME, HELP,
``add_arguments(parser)`` and ``run(args) -> int``; standard library only at import time."""
