"""`ganbench plugins`: every plugin by kind, where it came from, and whether it runs here."""

from __future__ import annotations

import argparse
import json
import textwrap

from ganbench.options import Option, add_options

NAME = "plugins"
HELP = "list the available plugins, their source and whether they can run here"
DESCRIPTION = ("Every plugin by kind, its source (built-in or distribution==version), and "
               "whether it runs here (with the reason if not).")
HEADINGS = {"architecture": "architectures", "loss": "losses", "attention": "attention kernels",
            "metric": "metrics", "dataset": "datasets"}


OPTIONS = (
    Option("--device", "check availability for this device: auto (cuda if available), cpu, "
           "cuda[:N]", default="auto"),
    Option("--json", "print {\"device\", \"plugins\": [{kind, name, source, runs, reason, "
           "summary, directions}], \"broken\", \"blocked\"} for scripts", action="store_true"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_options(p, OPTIONS)


def listing(registry, device: str) -> list[dict]:
    """One dict per plugin, kinds in registry order, names sorted."""
    from ganbench.registry import why_unavailable

    out = []
    for kind, entries in registry.entries.items():
        for name, entry in sorted(entries.items()):
            reason = why_unavailable(entry.spec, device)
            item = {"kind": kind, "name": name, "source": entry.source,
                    "runs": reason is None, "reason": reason, "summary": entry.spec.summary}
            if kind == "metric":
                item["directions"] = dict(getattr(entry.spec, "directions", ()))
            out.append(item)
    return out


def run(args: argparse.Namespace) -> int:
    from ganbench.config import resolve_device
    from ganbench.registry import get_registry
    from ganbench.results.table import as_is, render, terminal_width, Format

    device = resolve_device(args.device)
    registry = get_registry()
    items = listing(registry, device)
    if args.json:
        print(json.dumps({"device": device, "plugins": items,
                          "broken": [{"source": s, "reason": r} for s, r in registry.broken],
                          "blocked": [{"name": n, "source": s} for n, s in registry.blocked]},
                         indent=1))
        return 0
    import pandas as pd

    width = terminal_width()
    formats = {c: Format(c, as_is, False) for c in ("name", "source", "runs", "summary")}
    for kind, heading in HEADINGS.items():
        part = [i for i in items if i["kind"] == kind]
        if not part:
            continue
        rows = [{"name": i["name"], "source": i["source"], "runs": "yes" if i["runs"] else "no",
                 "summary": i["summary"]} for i in part]
        print(f"{heading}:")
        lines = render(pd.DataFrame(rows), ["name", "source", "runs", "summary"],
                       formats=formats, style="plain").splitlines()
        print("  " + lines[0])
        indent = " " * (2 + lines[0].index("summary"))
        for item, line in zip(part, lines[1:]):
            # A long summary is cut at the terminal's edge; the reason it cannot run is not.
            print("  " + (line if len(line) + 2 <= width else line[:width - 3] + "…"))
            if not item["runs"]:
                for piece in textwrap.wrap(f"cannot run here: {item['reason']}",
                                           width=max(40, width - len(indent))):
                    print(indent + piece)
    if registry.blocked:
        print("blocked (GANBENCH_BLOCK_PLUGINS): "
              + ", ".join(f"{n} ({s})" for n, s in registry.blocked))
    if registry.broken:
        print("broken:")
        for source, reason in registry.broken:
            print(f"  {source}: {reason}")
    print(f"(availability checked for device {device})")
    return 0
