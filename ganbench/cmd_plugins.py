"""`ganbench plugins`: every plugin by kind, where it came from, and whether it runs here."""

from __future__ import annotations

import argparse

NAME = "plugins"
HELP = "list the available plugins, their source and whether they can run here"
HEADINGS = {"architecture": "architectures", "loss": "losses", "attention": "attention kernels",
            "metric": "metrics", "dataset": "datasets"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="check availability for this device")


def run(args: argparse.Namespace) -> int:
    from ganbench.config import resolve_device
    from ganbench.registry import get_registry, why_unavailable

    device = resolve_device(args.device)
    registry = get_registry()
    print(f"  {'name':<16} {'source':<24} {'runs':<4} summary")
    for kind, entries in registry.entries.items():
        print(f"{HEADINGS.get(kind, kind)}:")
        for name, entry in sorted(entries.items()):
            reason = why_unavailable(entry.spec, device)
            runs = "yes" if reason is None else "no"
            print(f"  {name:<16} {entry.source:<24} {runs:<4} {entry.spec.summary}")
            if reason:
                print(f"  {'':<16} {'':<24}      cannot run here: {reason}")
    if registry.broken:
        print("broken:")
        for source, reason in registry.broken:
            print(f"  {source}: {reason}")
    print(f"(availability checked for device {device})")
    return 0
