"""The regression gate: this checkout against the commit its work started from, timed side by
side and compared for quality on this machine.

    python -m tools.gate                  # exit 0 pass, 1 regression, 2 cannot run
    python -m tools.gate.selftest         # planted regressions, and the gate catching them

It lives outside the ``ganbench`` package on purpose: each side's worker process must import
ganbench only from the tree under test (treeimport.py), so the gate's own code cannot be part
of either tree's ganbench. This package imports nothing at import time (no torch, no ganbench):
a worker imports it before it installs its tree's import bootstrap.

Modules: gate (the run and the report), basecommit (which commit, and its worktree), worker
(one side's process), workload (what is timed and scored), adapter (each layout's training
loop), treeimport (import ganbench from a given tree), gatestats (the interval and verdict),
selftest (plants regressions in temporary commits and checks that the gate catches them).
"""
