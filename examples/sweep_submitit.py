"""Spread a ganbench sweep over a cluster with submitit: one job per combination, one table.

ganbench has no scheduler of its own. This script expands ``--plugins`` into combinations with
ganbench's own matrix, submits one ``ganbench run`` per combination through submitit (Slurm on a
cluster, local processes elsewhere), waits, and concatenates the per-job tables into one.

    # on a laptop or a CI box (submitit's LocalExecutor; all jobs at once on this machine):
    python examples/sweep_submitit.py --plugins dcgan,sagan,eager-attn,sdpa-attn --out sweep \\
        --cluster local -- --steps 50 --metrics none

    # on a Slurm login node: each combination a job on one GPU
    python examples/sweep_submitit.py --plugins dcgan,sagan,eager-attn,sdpa-attn --out sweep \\
        --cluster slurm --partition gpu --gpus 1 -- --steps 1000

    # each job data-parallel on a 4-GPU node (torchrun inside the job):
    python examples/sweep_submitit.py ... --gpus 4 -- --nproc 4 --scaling

Without submitit installed (``pip install submitit``) it falls back to concurrent.futures on
this machine (``--cluster futures``). Options after ``--`` go to every ``ganbench run``.
Jobs that run at the same time on one machine share it: compare their timings with care
(ganbench's own ``--jobs`` records that as ``parallel_jobs``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ganbench.sweep.matrix import build_matrix
from ganbench.registry import get_registry
from ganbench.results.store import read_table, write_table


def run_one_combination(plugins: str, out: str, extra: list[str], threads: int) -> str:
    """One job: ``ganbench run --plugins <one combination> --out OUT ...``; returns OUT.

    ``threads`` caps torch's intra-op threads (OMP_NUM_THREADS) at the job's CPUs: jobs that
    each start one thread per core of a shared machine slow each other down badly. Raises if
    ganbench exits with an error (2: bad input); exit 1 (a row not ok) still has a table.
    """
    command = [sys.executable, "-m", "ganbench", "run", "--plugins", plugins, "--out", out,
               "--quiet", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}")
    return out


def combinations(plugins: str) -> list[tuple[str, str]]:
    """(combo name, the --plugins value that makes exactly that combination)."""
    combos, _ = build_matrix(tuple(p.strip() for p in plugins.split(",") if p.strip()),
                             get_registry())
    return [(c.name, ",".join(filter(None, (c.architecture, c.loss, c.attention))))
            for c in combos]


def submit(jobs: list[tuple[str, str]], out: Path, extra: list[str], args) -> list[str]:
    """Run every job through submitit (or concurrent.futures) and return their run folders."""
    folders = [str(out / "jobs" / name) for name, _ in jobs]
    plugin_lists = [plugins for _, plugins in jobs]
    if args.cluster == "futures":
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:  # threads wait on processes
            return list(pool.map(run_one_combination, plugin_lists, folders,
                                 [extra] * len(jobs), [args.cpus] * len(jobs)))
    import submitit

    executor = submitit.AutoExecutor(folder=out / "submitit", cluster=args.cluster)
    executor.update_parameters(timeout_min=args.timeout_min, gpus_per_node=args.gpus,
                               cpus_per_task=args.cpus, slurm_array_parallelism=args.parallel)
    if args.partition:
        executor.update_parameters(slurm_partition=args.partition)
    submitted = executor.map_array(run_one_combination, plugin_lists, folders,
                                   [extra] * len(jobs), [args.cpus] * len(jobs))
    print(f"submitted {len(submitted)} jobs to {executor.cluster}: "
          f"{', '.join(job.job_id for job in submitted)}")
    return [job.result() for job in submitted]  # waits; re-raises a job's exception


def concatenate(folders: list[str], out: Path):
    """One table from every job's table; the 'real data' reference row kept once."""
    import pandas as pd

    df = pd.concat([read_table(Path(f)) for f in folders], ignore_index=True)
    reference = df["status"] == "reference"
    df = pd.concat([df[~reference], df[reference].head(1)], ignore_index=True)
    return write_table(df.to_dict("records"), out)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plugins", required=True)
    p.add_argument("--out", type=Path, required=True)
    # None: submitit's AutoExecutor picks Slurm when sbatch is there, else local processes.
    default_cluster = None if importlib.util.find_spec("submitit") else "futures"
    p.add_argument("--cluster", default=default_cluster,
                   help="slurm, local (submitit's LocalExecutor), debug (in this process) or "
                        "futures (no submitit); default: what submitit detects")
    p.add_argument("--parallel", type=int, default=2, help="jobs at once (array parallelism)")
    p.add_argument("--partition", help="Slurm partition")
    p.add_argument("--gpus", type=int, default=0, help="GPUs per job")
    p.add_argument("--cpus", type=int, help="CPUs (and torch threads) per job; default: "
                                             "this machine's CPUs / --parallel")
    p.add_argument("--timeout-min", type=int, default=60)
    args = p.parse_args(argv)
    args.cpus = args.cpus or max(1, (os.cpu_count() or 1) // args.parallel)

    jobs = combinations(args.plugins)
    args.out.mkdir(parents=True, exist_ok=True)
    folders = submit(jobs, args.out, extra, args)
    df = concatenate(folders, args.out)
    print(df[["combo", "status", "img_per_s", "step_ms_median"]].to_markdown(index=False))
    print(f"\n{len(jobs)} jobs; combined table: {args.out / 'results.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
