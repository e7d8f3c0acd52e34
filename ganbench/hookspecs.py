"""The plugin contract: the one file a plugin author needs to read.

A plugin is a module (or object) with functions marked ``@ganbench.hookimpl`` whose names are
the hooks below. Each hook receives ``register``; call it once per thing you provide, with a
spec from :mod:`ganbench.specs`. Third-party plugins are found through the ``ganbench``
entry-point group::

    [project.entry-points.ganbench]
    my_plugin = "my_package.plugin"

Built-in plugins (``ganbench.plugins.*``) are registered through exactly this path.
"""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("ganbench")
hookimpl = pluggy.HookimplMarker("ganbench")


@hookspec
def ganbench_register_architectures(register: Callable) -> None:
    """Call ``register(ArchitectureSpec(...))`` for each GAN architecture this plugin provides."""


@hookspec
def ganbench_register_losses(register: Callable) -> None:
    """Call ``register(LossSpec(...))`` for each GAN loss this plugin provides."""


@hookspec
def ganbench_register_attention(register: Callable) -> None:
    """Call ``register(AttentionSpec(...))`` for each attention kernel this plugin provides."""


@hookspec
def ganbench_register_metrics(register: Callable) -> None:
    """Call ``register(MetricSpec(...))`` for each sample-quality metric this plugin provides."""


@hookspec
def ganbench_register_datasets(register: Callable) -> None:
    """Call ``register(DatasetSpec(...))`` for each data source this plugin provides."""
