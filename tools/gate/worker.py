"""One side of the regression gate: a process that imports ganbench from one tree and serves
timing and quality requests over a pipe, so the gate pays the import once per side and can
interleave the two sides round by round.

    python -m tools.gate.worker TREE     # from the gate's checkout; then JSON lines on stdin

Requests are JSON objects, one per line; every answer is one JSON line with ``ok`` true (and the
result) or false (and ``error``, one line). The worker's own prints and library warnings go to
stderr, so they cannot corrupt the answers.

  {"cmd": "hello"}                          -> threads, interpreter, where ganbench came from,
                                               which training loop (adapter.py) it drives
  {"cmd": "names"}                          -> benchmarks this side can time, and exclusions
  {"cmd": "setup", "name": N}               -> builds N, runs it once (warm-up), its seconds
  {"cmd": "time", "name": N, "calls": C}    -> seconds for C calls of N
  {"cmd": "fingerprint", "arch": A, "steps": S}
  {"cmd": "short_run", "arch": A, "steps": S, "batch_size": B, "eval_n": E}
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path


def serve(tree: Path) -> int:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything printed from here on goes to stderr
    sys.stdout = sys.stderr

    # Before torch and ganbench are imported: built-in plugins only (an installed third-party
    # plugin would load on one side against the other tree's ganbench), and Triton kernels
    # under the interpreter when there is no GPU (read when @triton.jit decorates).
    os.environ["GANBENCH_LOAD_PLUGINS"] = ""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
    # One thread: two threads on two shared cores stall at every barrier whenever a neighbour
    # takes a core (a DCGAN step measured 0.06 s quiet and 0.82 s loaded; one thread <= ~2x).
    torch.set_num_threads(int(os.environ.get("GANBENCH_GATE_THREADS", "1")))

    from . import treeimport

    treeimport.install(tree)
    from . import adapter, workload

    device = workload._device()
    built: dict = {}

    def handle(req: dict) -> dict:
        cmd = req["cmd"]
        if cmd == "hello":
            import ganbench.registry  # noqa: F401  (and through it every built-in plugin)

            workload.registry()
            training_loop = adapter.loop().describe()  # AdapterError: this tree cannot run
            treeimport.assert_from_tree(tree)
            return {"threads": torch.get_num_threads(), "torch": torch.__version__,
                    "training_loop": training_loop,
                    "device": device, "pid": os.getpid(),
                    "ganbench_file": sys.modules["ganbench"].__file__,
                    "plugin_files": sorted(
                        m.__file__ for n, m in sys.modules.items()
                        if n.startswith("ganbench.plugins.") and getattr(m, "__file__", None))}
        if cmd == "names":
            names, excluded = workload.benchmark_names(device)
            emulated = [n for n in names if n.startswith("attn ")
                        and workload.interpreted(n.split(" ", 1)[1], device)]
            return {"names": names, "excluded": excluded, "emulated": emulated}
        if cmd == "setup":
            fn = workload.build(req["name"], device)
            built[req["name"]] = fn
            seconds = workload.time_block(fn, 1)  # warm-up: allocation, caches, compilation
            treeimport.assert_from_tree(tree)
            return {"seconds": seconds}
        if cmd == "time":
            return {"seconds": workload.time_block(built[req["name"]], int(req["calls"]))}
        if cmd == "fingerprint":
            return workload.fingerprint(req["arch"], int(req["steps"]), device)
        if cmd == "short_run":
            return workload.short_run(req["arch"], int(req["steps"]), int(req["batch_size"]),
                                      int(req["eval_n"]), device)
        raise ValueError(f"unknown command {cmd!r}")

    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = {"ok": True, **handle(json.loads(line))}
        except Exception as exc:  # reported to the gate as this request's error
            traceback.print_exc(file=sys.stderr)
            answer = {"ok": False, "error": " ".join(f"{type(exc).__name__}: {exc}".split())}
        answers.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m tools.gate.worker TREE", file=sys.stderr)
        sys.exit(2)
    sys.exit(serve(Path(sys.argv[1]).resolve()))
