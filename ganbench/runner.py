"""One run: names -> combinations -> a fresh process per combination -> rows -> table.

Each combination trains in its own spawned process (unless ``isolate=False``): a crash, a CUDA
error or an out-of-memory there becomes a row with status ``failed``/``oom``/``crashed`` and the
others still run, and the CPU peak-memory figure (peak RSS) belongs to that combination alone.
The table is rewritten atomically after every row, so an interrupt never loses finished rows.

Interrupts and resume: Ctrl-C and SIGTERM stop the worker and leave the finished rows on disk
(:class:`ganbench.resume.RunInterrupted`); each combination checkpoints every
``checkpoint_every`` steps, and ``run(cfg, resume=True)`` (``ganbench run --resume RUN_DIR``)
skips the combinations that already have a row and continues an unfinished one from its
checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import signal
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from ganbench import scaleout
from ganbench.config import RunConfig, resolve
from ganbench.errors import UserError
from ganbench.matrix import Combination, build_matrix, check_available
from ganbench.registry import Registry, get_registry, why_unavailable
from ganbench.resume import (discard_checkpoint_of, finished_rows, interrupts_reported,
                             unfinished, verify_checkpoints)
from ganbench.results import atomic_write_text, summary_markdown, to_frame, write_table

FIXED_NOISE_SEED = 20_000  # the grid's noise: the same z for every combination of a run
GRID_SIZE = 64
ATTENTION_SAMPLES = 3


def parse_data(data: str, registry: Registry):
    """'embedded' | 'mnist:DIR' | 'folder:DIR' -> (DatasetSpec, argument or None)."""
    name, _, arg = data.partition(":")
    spec = registry.lookup(name, ("dataset",)).spec
    return spec, (arg if arg else None)


def load_data(cfg: RunConfig, registry: Registry):
    """The run's DigitData from ``--data``; UserError if the source cannot run here or holds
    fewer training images than one batch."""
    spec, arg = parse_data(cfg.data, registry)
    reason = why_unavailable(spec, cfg.device)
    if reason:
        raise UserError(f"--data {spec.name} cannot be used here: {reason}")
    data = spec.load(arg, cfg.digits, cfg.image_size)
    if cfg.batch_size > len(data.train):
        raise UserError(f"--batch-size {cfg.batch_size} is larger than the {len(data.train)} "
                        "training images selected; lower it or select more digits")
    return data


def choose_metrics(cfg: RunConfig, registry: Registry, device: str) -> tuple[list[str], list[str]]:
    """(metric names to run, notes). Default: every metric that can run here."""
    notes = []
    if cfg.metrics is None:
        names = []
        for name, spec in registry.metrics.items():
            reason = why_unavailable(spec, device)
            if reason:
                notes.append(f"metric {name} not run: {reason}")
            else:
                names.append(name)
        return names, notes
    for name in cfg.metrics:
        reason = why_unavailable(registry.lookup(name, ("metric",)).spec, device)
        if reason:
            raise UserError(f"metric {name} cannot run here: {reason}")
    return list(cfg.metrics), notes


def default_run_dir(cfg: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = "_".join(cfg.plugins)[:60]
    return Path("results") / "runs" / f"{stamp}-{slug}"


def prepare_run_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to output folder {path}: {exc.strerror or exc}")
    return path


# ------------------------------------------------------------------------------------------
# Inside the worker
# ------------------------------------------------------------------------------------------
def execute(cfg: RunConfig, combo: Combination, run_dir: Path, metric_names: list[str],
            fresh_process: bool, resume: bool = False, replicas=None) -> dict:
    """Train one combination and return its row (raises on failure; the caller records it).

    With ``resume``, training continues from RUN_DIR/checkpoints/<combo>.pt when it exists and
    the row's ``resumed_from_step`` says from which step; otherwise any such file is removed.

    ``replicas`` (ganbench.distributed) is this process's part in data-parallel training; the
    default trains alone. Under torchrun only rank 0's row is complete and only rank 0 writes.
    """
    import torch

    from ganbench.distributed import OneProcess

    from ganbench.measure import PeakMemory, environment, summarize
    from ganbench.report import save_attention_figure, save_grid
    from ganbench.specs import MetricContext, ModelRequest
    from ganbench.train import generate, seed_everything, train

    registry = get_registry()
    device = cfg.device
    seed_everything(cfg.seed)
    arch = registry.architectures[combo.architecture]
    loss = registry.losses[combo.loss].factory()
    options = cfg.options.get(combo.attention, {})
    attend = registry.attention[combo.attention].factory(**options) if combo.attention else None
    data = load_data(cfg, registry)
    defaults = arch.defaults

    mem = PeakMemory(device, fresh=fresh_process)
    G, D = arch.build(ModelRequest(cfg.image_size, defaults.z_dim, attend=attend))
    G, D = G.to(device), D.to(device)
    rep = replicas or OneProcess()
    G_run, D_run = rep.wrap(G, D)  # DDP under torchrun; G and D themselves otherwise
    if cfg.compile:
        G_run = torch.compile(G_run, mode=cfg.compile_mode)
        D_run = torch.compile(D_run, mode=cfg.compile_mode)
        torch._dynamo.utils.counters.clear()
    batches = rep.batches(data.train.to(device), cfg.batch_size, cfg.seed)  # this rank's share
    if metric_names:
        from ganbench import quality

        sets = quality.eval_sets(data.heldout, data.heldout_labels, cfg.eval_n, cfg.seed)
        context = MetricContext(digits=cfg.digits or tuple(range(10)),
                                image_size=cfg.image_size, device=device, seed=cfg.seed,
                                real_labels=sets.real_labels)

    def score(step: int) -> dict:
        """Quality of G now: sets.n samples against the same held-out half as every row."""
        fake = generate(G, sets.n, defaults.z_dim, device, cfg.seed + 7)
        return quality.evaluate(metric_names, fake, sets.real, context, registry)

    def on_eval(step: int, wall_s: float) -> dict:
        return {"step": step, "wall_s": wall_s, **score(step)}

    ckpt, resume_state = _checkpoint_for(cfg, combo, run_dir, resume)
    bar = _progress_bar(cfg, combo) if rep.is_rank0 else None
    outcome = train(G_run, D_run, loss, batches, steps=cfg.steps, warmup=cfg.warmup,
                    z_dim=defaults.z_dim, g_lr=defaults.g_lr, d_lr=defaults.d_lr,
                    betas=defaults.betas, device=device, dtype=cfg.dtype,
                    seed=rep.noise_seed(cfg.seed),
                    progress=bar.update_to if bar else None,
                    eval_every=cfg.eval_every if metric_names else 0,
                    on_eval=rep.on_rank0(on_eval) if metric_names else None,
                    checkpoint_every=cfg.checkpoint_every,
                    on_checkpoint=lambda state: save_checkpoint(ckpt, state),
                    resume=resume_state)
    if bar:
        bar.close()
    row = {"combo": combo.name, "architecture": combo.architecture, "loss": combo.loss,
           "attention": combo.attention, "status": outcome.status,
           "diverged_at": outcome.diverged_at, "resumed_from_step": outcome.resumed_from_step,
           "steps": len(outcome.d_losses),
           "batch_size": cfg.batch_size, "image_size": cfg.image_size,
           "warmup": cfg.warmup, "z_dim": defaults.z_dim, "g_lr": defaults.g_lr,
           "d_lr": defaults.d_lr, "betas": list(defaults.betas), "seed": cfg.seed,
           "data": data.source, "digits": ",".join(map(str, cfg.digits)) or "all",
           "n_train": len(data.train), "compile": cfg.compile}
    row.update(summarize(rep.step_seconds(outcome.step_seconds), cfg.batch_size))
    row.update(rep.columns(cfg.batch_size))
    row.update(mem.read())
    tail = slice(-10, None)  # the last ten steps: one step's loss is too noisy to compare
    row["d_loss_last10"] = _mean(outcome.d_losses[tail])
    row["g_loss_last10"] = _mean(outcome.g_losses[tail])
    row["first_step_s"] = outcome.first_step_s
    row["train_wall_s"] = outcome.wall_s
    if cfg.compile:
        row["compile_graph_breaks"] = int(sum(torch._dynamo.utils.counters["graph_break"]
                                              .values()))

    rep.finish(G, D, combo.name)
    if not rep.is_rank0:  # rank 0 alone draws, saves and scores
        return row
    name = combo.name
    fixed = torch.randn(GRID_SIZE, defaults.z_dim, 1, 1,
                        generator=torch.Generator().manual_seed(FIXED_NOISE_SEED))
    if outcome.status == "ok":
        with torch.no_grad():
            G.eval()
            save_grid(G(fixed.to(device)).float().cpu(), run_dir / "samples" / f"{name}.png")
        save_attention_figure(G, fixed[:ATTENTION_SAMPLES].to(device),
                              run_dir / "attention" / f"{name}.png", title=name)
        (run_dir / "models").mkdir(exist_ok=True)
        torch.save({"generator": G.state_dict(), "architecture": combo.architecture,
                    "attention": combo.attention, "image_size": cfg.image_size,
                    "z_dim": defaults.z_dim},
                   run_dir / "models" / f"{name}.G.pt")
        if metric_names:
            t0 = time.perf_counter()
            row.update(score(row["steps"]))
            row["metric_n"] = sets.n
            row["eval_s"] = time.perf_counter() - t0
    if outcome.history:
        _write_history(run_dir, name, outcome.history, outcome.wall_s, row, cfg)
    row.update(environment(device, cfg.dtype))
    row["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return row


def _checkpoint_for(cfg: RunConfig, combo: Combination, run_dir: Path,
                    resume: bool) -> tuple[Path, Optional[dict]]:
    """(where this combination checkpoints, the state to continue from or None)."""
    from ganbench.checkpoint import checkpoint_path, discard_checkpoint, load_checkpoint

    path = checkpoint_path(run_dir, combo.name)
    if resume and path.exists():
        return path, load_checkpoint(path)
    discard_checkpoint(path)  # a fresh start: an older run's checkpoint must never be resumed
    return path, None


def save_checkpoint(path: Path, state: dict) -> None:
    from ganbench.checkpoint import save_checkpoint as save

    save(path, state)


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def _write_history(run_dir: Path, name: str, history: list[dict], wall_s: float, row: dict,
                   cfg: RunConfig) -> None:
    import pandas as pd

    final = {"step": row["steps"], "wall_s": wall_s}
    final.update({k: row[k] for k in history[0] if k in row and k not in final})
    df = pd.DataFrame(history + [final])
    atomic_write_text(run_dir / "curves" / f"{name}.csv", df.to_csv(index=False))
    from ganbench.report import save_curves

    save_curves(df, run_dir / "curves" / f"{name}.png", title=f"{name}: quality over time")
    if cfg.target_fid is not None and "fid_digits" in df:
        hit = df[df["fid_digits"] < cfg.target_fid]
        row["time_to_target_s"] = float(hit["wall_s"].iloc[0]) if len(hit) else float("nan")


class _Bar:
    def __init__(self, bar):
        self.bar = bar

    def update_to(self, step: int, d_loss: float, g_loss: float) -> None:
        self.bar.set_postfix(d=f"{d_loss:.3f}", g=f"{g_loss:.3f}", refresh=False)
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _progress_bar(cfg: RunConfig, combo: Combination) -> Optional[_Bar]:
    if cfg.quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return _Bar(tqdm(total=cfg.steps, desc=combo.name, unit="step", leave=True))


def _worker(cfg_dict: dict, combo: tuple, run_dir: str, metric_names: list[str], queue,
            resume: bool = False) -> None:
    """Sends ("ok", row), ("interrupted",) or (status, one-line error, traceback)."""
    cfg = RunConfig.from_dict(cfg_dict)
    try:
        row = execute(cfg, Combination(*combo), Path(run_dir), metric_names, fresh_process=True,
                      resume=resume)
        queue.put(("ok", row))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: not a failed row
        queue.put(("interrupted",))
    except BaseException as exc:  # reported to the parent as a failed (or oom) row
        queue.put((failure_status(exc), _one_line(exc), traceback.format_exc()))


def failure_status(exc: BaseException) -> str:
    """'oom' for running out of memory (torch.cuda.OutOfMemoryError, MemoryError, or any error
    whose message says "out of memory" / "can't allocate memory"), else 'failed'."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return "oom"
    text = str(exc).lower()
    return "oom" if "out of memory" in text or "can't allocate memory" in text else "failed"


def _one_line(exc: BaseException) -> str:
    lines = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# ------------------------------------------------------------------------------------------
# In the parent
# ------------------------------------------------------------------------------------------
def run_one(cfg: RunConfig, combo: Combination, run_dir: Path, metric_names: list[str],
            resume: bool = False) -> dict:
    """The row of one combination; failures become rows with status (failed, oom, crashed) and
    error. A KeyboardInterrupt (Ctrl-C, or SIGTERM via :func:`sigterm_as_interrupt`) stops the
    worker and propagates: an interrupted combination gets no row."""
    base = {"combo": combo.name, "architecture": combo.architecture, "loss": combo.loss,
            "attention": combo.attention}
    if not cfg.isolate:
        try:
            return execute(cfg, combo, run_dir, metric_names, fresh_process=False, resume=resume)
        except UserError:
            raise
        except Exception as exc:
            _log_failure(run_dir, combo, traceback.format_exc())
            status = failure_status(exc)
            if status == "oom":
                _release_cuda_cache()  # so the next combination starts with free memory
            return {**base, "status": status, "error": _one_line(exc)}

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(cfg.to_dict(), dataclasses.astuple(combo),
                                             str(run_dir), metric_names, queue, resume),
                       daemon=True)
    proc.start()
    try:
        message = None
        while message is None:
            try:
                message = queue.get(timeout=1.0)
            except Exception:  # queue.Empty: is the worker still alive?
                if not proc.is_alive():
                    # It may have sent its row just before exiting: read what is left.
                    message = _get_nowait(queue)
                    break
        proc.join()
    except BaseException:
        _stop(proc)
        raise
    if message is None:
        return {**base, "status": "crashed", "error": _describe_exit(proc.exitcode)}
    if message[0] == "ok":
        return message[1]
    if message[0] == "interrupted":
        raise KeyboardInterrupt
    _log_failure(run_dir, combo, message[2])
    return {**base, "status": message[0], "error": message[1]}


def _get_nowait(queue):
    try:
        return queue.get(timeout=0.5)
    except Exception:  # queue.Empty
        return None


def _stop(proc) -> None:
    """Terminate a worker (SIGTERM), then kill it if it has not gone within 10 s."""
    proc.terminate()
    proc.join(10)
    if proc.is_alive():
        proc.kill()
        proc.join()


def _describe_exit(code: Optional[int]) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        hint = " (the system's out-of-memory killer sends SIGKILL)" if name == "SIGKILL" else ""
        return f"worker was killed by {name} before reporting{hint}"
    return f"worker exited with code {code} before reporting"


def _release_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _log_failure(run_dir: Path, combo: Combination, text: str) -> None:
    atomic_write_text(run_dir / "logs" / f"{combo.name}.log", text)


def plan(cfg: RunConfig):
    """Validate everything that can be checked before training; returns the resolved pieces."""
    registry = get_registry()
    combos, notes = build_matrix(cfg.plugins, registry)
    cfg = resolve(cfg)
    check_available(combos, registry, cfg.device)
    for combo in combos:
        arch = registry.architectures[combo.architecture]
        if cfg.image_size not in arch.image_sizes:
            sizes = ", ".join(map(str, arch.image_sizes))
            raise UserError(f"{combo.architecture} does not build {cfg.image_size}x"
                            f"{cfg.image_size} images; --image-size must be one of {sizes}")
    metric_names, metric_notes = choose_metrics(cfg, registry, cfg.device)
    kernels = sorted({c.attention for c in combos if c.attention})
    for plugin in cfg.options:
        if plugin not in kernels:
            raise UserError(f"--option {plugin}.…: {plugin} is not an attention kernel of this "
                            f"run (kernels here: {', '.join(kernels) or 'none'})")
        try:  # build the kernel once so a bad option fails here, not in every worker
            registry.attention[plugin].factory(**cfg.options[plugin])
        except (TypeError, ValueError) as exc:
            keys = ", ".join(f"{plugin}.{key}" for key in cfg.options[plugin])
            raise UserError(f"--option {keys}: {plugin} rejects it: {exc}") from None
    data = load_data(cfg, registry)  # fail on bad data before any training
    return cfg, combos, notes + metric_notes, metric_names, data


def run(cfg: RunConfig, echo=print, resume: bool = False) -> tuple[Path, "object"]:
    """Run every combination; returns (run folder, DataFrame).

    ``resume``: ``cfg`` is an earlier run's config (:func:`load_run_config`); combinations with a
    final row in its results.json keep that row and are not trained again, an unfinished one
    continues from its checkpoint. Ctrl-C or SIGTERM raise
    :class:`~ganbench.resume.RunInterrupted` once the worker is stopped; every row finished
    before is then on disk in a valid table.
    """
    if scaleout.launched_by_torchrun():  # one process per rank: see ganbench/distributed.py
        from ganbench.distributed import run_ranks

        return run_ranks(cfg, echo, resume)
    scaleout.check_one_process(cfg)
    cfg, combos, notes, metric_names, data = plan(cfg)
    run_dir = prepare_run_dir(cfg.out or default_run_dir(cfg))
    cfg = dataclasses.replace(cfg, out=run_dir)
    rows: list[dict] = []
    if resume:
        rows = finished_rows(run_dir, combos)
        verify_checkpoints(run_dir, combos, rows)  # a damaged one fails now, not mid-run
    else:
        if (run_dir / "results.json").exists():  # never mix two runs' rows in one table
            raise UserError(f"{run_dir} already holds a run's results; continue it with "
                            f"--resume {run_dir}, or choose another --out")
        atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=1) + "\n")
    for note in notes:
        echo(f"note: {note}")
    df = to_frame(rows)
    todo = unfinished(combos, rows, echo)
    work = lambda c: run_one(cfg, c, run_dir, metric_names, resume=resume)  # noqa: E731
    with interrupts_reported(run_dir):
        for combo, row in scaleout.each_finished(todo, work, cfg.jobs):  # --jobs: as they finish
            row["parallel_jobs"] = cfg.jobs  # K > 1: timings were taken while others trained
            rows = scaleout.in_plan_order(rows + [row], combos)
            df = write_table(rows, run_dir)
            discard_checkpoint_of(run_dir, combo)  # only now: its row is safely on disk
            if row.get("status") != "ok" and not cfg.quiet:
                echo(f"{combo.name}: {row.get('status')}: {row.get('error', '')}")
        if metric_names:
            rows.append(reference_row(cfg, data, metric_names))
            df = write_table(rows, run_dir)
    echo(summary_markdown(df))
    echo(f"\nresults: {run_dir}")
    return run_dir, df


def reference_row(cfg: RunConfig, data, metric_names: list[str]) -> dict:
    """The 'real data' row: held-out real digits against other held-out real digits."""
    from ganbench import quality
    from ganbench.measure import environment
    from ganbench.specs import MetricContext

    context = MetricContext(digits=cfg.digits or tuple(range(10)), image_size=cfg.image_size,
                            device=cfg.device, seed=cfg.seed)
    row = {"combo": "real data", "status": "reference", "image_size": cfg.image_size}
    scores, n_used = quality.real_reference_row(data.heldout, data.heldout_labels, cfg.eval_n,
                                                context, get_registry(), metric_names,
                                                seed=cfg.seed)
    row.update(scores)
    row["metric_n"] = n_used
    row.update(environment(cfg.device, cfg.dtype))
    return row
