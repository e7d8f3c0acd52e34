"""The subcommands of ``ganbench``: one module per command, each with NAME, HELP, its options
table (``OPTIONS``, rows of :class:`ganbench.options.Option`; run's is
``ganbench.options.RUN_OPTIONS``), ``add_arguments(parser)`` and ``run(args) -> int``.
Optional: DESCRIPTION (the --help text and the README's table) and SYNOPSIS (the README's
table). At import time only the standard library and ganbench's stdlib-only modules (errors,
config, options, results.table), so ``ganbench --help`` stays fast."""
