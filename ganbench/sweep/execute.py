"""Train one combination and turn what happened into its row.

:func:`execute` is the same in a spawned worker (:mod:`ganbench.sweep.worker`), in-process
(``--in-process``) and on each rank under torchrun (:mod:`ganbench.scaleout.ranks`): build the models
with the attention kernel injected, train, measure, draw, save and score. Every file it writes
goes through :mod:`ganbench.files.atomic`. It reports how far it got through ``report(event, **data)``
(see :mod:`ganbench.sweep.progress`) and raises on failure; the caller turns the exception into a row.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from ganbench.files import atomic
from ganbench.config import RunConfig
from ganbench.sweep.matrix import Combination
from ganbench.sweep.plan import load_data
from ganbench.registry import get_registry

FIXED_NOISE_SEED = 20_000  # the grid's noise: the same z for every combination of a run
GRID_SIZE = 64
ATTENTION_SAMPLES = 3
# Statuses of a row whose combination did not finish. Their checkpoint is kept, so
# `--resume RUN_DIR --retry-failed` retrains them from it.
RETRYABLE_STATUSES = ("failed", "oom", "crashed")

Report = Callable[..., None]


def _ignore(*args, **kwargs) -> None:
    pass


def execute(cfg: RunConfig, combo: Combination, run_dir: Path, metric_names: list[str],
            fresh_process: bool, resume: bool = False, replicas=None,
            report: Report = _ignore) -> dict:
    """Train one combination and return its row (raises on failure; the caller records it).

    With ``resume``, training continues from RUN_DIR/checkpoints/<combo>.pt when it exists and
    the row's ``resumed_from_step`` says from which step; otherwise any such file is removed.

    ``replicas`` (ganbench.scaleout.distributed) is this process's part in data-parallel training; the
    default trains alone. Under torchrun only rank 0's row is complete and only rank 0 writes
    (checkpoints included); every rank loads the same checkpoint on resume.
    """
    import torch

    from ganbench.scaleout.distributed import OneProcess
    from ganbench.sweep.kernel_check import checked_attend
    from ganbench.training.measure import LoadMonitor, PeakMemory, environment, summarize
    from ganbench.specs import ModelRequest
    from ganbench.training.loop import TrainHooks, TrainSettings, seed_everything, train

    registry = get_registry()
    if combo.step == "textbook":  # the book's loop has no bf16, compile or graphs
        cfg = dataclasses.replace(cfg, dtype="fp32", compile=False, cuda_graph=False,
                                  memory_format="contiguous")
    device = cfg.device
    rep = replicas or OneProcess()
    report("phase", phase="building models")
    seed_everything(cfg.seed)
    arch = registry.architectures[combo.architecture]
    loss = registry.losses[combo.loss].factory()
    options = cfg.options.get(combo.attention, {})
    attend = None
    if combo.attention:
        attend = checked_attend(registry.attention[combo.attention].factory(**options),
                                combo.attention, device=device)
    data = load_data(cfg, registry)
    defaults = arch.defaults
    compile_s = None
    prepare = getattr(attend, "prepare", None)
    if prepare is not None and arch.attention_shapes is not None:  # compile before step 1
        report("phase", phase="compiling kernels")
        compile_s = prepare(arch.attention_shapes(cfg.image_size, cfg.batch_size), cfg.dtype,
                            device)

    mem = PeakMemory(device, fresh=fresh_process)
    G, D = arch.build(ModelRequest(cfg.image_size, defaults.z_dim, attend=attend))
    G, D = G.to(device), D.to(device)
    if cfg.memory_format == "channels_last":  # NHWC convs; q, k, v come out (B, N, C)-contiguous
        G = G.to(memory_format=torch.channels_last)
        D = D.to(memory_format=torch.channels_last)
    G_run, D_run = rep.wrap(G, D)  # DDP under torchrun; G and D themselves otherwise
    if cfg.compile:
        G_run = torch.compile(G_run, mode=cfg.compile_mode)
        D_run = torch.compile(D_run, mode=cfg.compile_mode)
        torch._dynamo.utils.counters.clear()
    batches = rep.batches(data.train.to(device), cfg.batch_size, cfg.seed)  # this rank's share
    scorer = _Scorer(cfg, data, metric_names, G, defaults.z_dim, registry) if metric_names \
        else None

    def on_eval(step: int, wall_s: float) -> dict:
        report("phase", phase="metrics")
        result = {"step": step, "wall_s": wall_s, **scorer.score()}
        report("phase", phase="training")
        return result

    ckpt, resume_state = _checkpoint_for(run_dir, combo, resume, writer=rep.is_rank0)
    if resume_state is not None:
        resume_state = rep.own_part(resume_state)  # under torchrun: this rank's noise stream

    def on_checkpoint(state: dict) -> None:
        state = rep.whole_state(state)  # under torchrun: every rank's noise stream, on rank 0
        if rep.is_rank0:  # one writer; every rank loads the same file on resume
            from ganbench.training.checkpoint import save_checkpoint

            save_checkpoint(ckpt, state)

    def on_step(step: int, d_loss: float, g_loss: float) -> None:
        if attend is not None:
            attend.verify()  # NaN from finite inputs in a compiled call (kernel_check)
        report("step", step=step, d_loss=d_loss, g_loss=g_loss)

    graph_off = None
    if cfg.cuda_graph:
        from ganbench.training.steps import why_not_graphable

        graph_off = why_not_graphable(device, replicas is not None, cfg.compile)
    report("phase", phase="training")
    settings = TrainSettings(
        steps=cfg.steps, warmup=cfg.warmup, z_dim=defaults.z_dim, g_lr=defaults.g_lr,
        d_lr=defaults.d_lr, betas=defaults.betas, device=device, dtype=cfg.dtype,
        seed=rep.noise_seed(cfg.seed), eval_every=cfg.eval_every if metric_names else 0,
        checkpoint_every=cfg.checkpoint_every, step_kind=combo.step,
        cuda_graph=cfg.cuda_graph and graph_off is None)
    hooks = TrainHooks(progress=on_step if rep.is_rank0 else None,
                       on_eval=rep.on_rank0(on_eval) if metric_names else None,
                       on_checkpoint=on_checkpoint)
    load = LoadMonitor()  # the machine's load while this combination trains
    outcome = train(G_run, D_run, loss, batches, settings, hooks, resume=resume_state)
    row = {"combo": combo.name, "architecture": combo.architecture, "loss": combo.loss,
           "attention": combo.attention, "status": outcome.status,
           "diverged_at": outcome.diverged_at, "resumed_from_step": outcome.resumed_from_step,
           "steps": len(outcome.d_losses),
           "batch_size": cfg.batch_size, "image_size": cfg.image_size,
           "warmup": cfg.warmup, "z_dim": defaults.z_dim, "g_lr": defaults.g_lr,
           "d_lr": defaults.d_lr, "betas": list(defaults.betas), "seed": cfg.seed,
           "data": data.source, "digits": ",".join(map(str, cfg.digits)) or "all",
           "n_train": len(data.train), "compile": cfg.compile, "step": combo.step,
           "memory_format": cfg.memory_format}
    sources = registry.provenance([n for n in (combo.architecture, combo.loss, combo.attention)
                                   if n])  # "built-in" or "distribution==version"
    row.update({f"{part}_from": sources[name] for part, name in
                (("architecture", combo.architecture), ("loss", combo.loss),
                 ("attention", combo.attention)) if name})
    if cfg.cuda_graph:  # "on", or "off: <why>" (never a silent fallback)
        row["cuda_graph"] = outcome.cuda_graph or f"off: {graph_off}"
        row["capture_s"] = outcome.capture_s
    if outcome.status == "diverged":
        row["error"] = (f"a loss became NaN or inf at step {outcome.diverged_at}; timings "
                        "count only the steps before it")
    row.update(summarize(rep.step_seconds(outcome.step_seconds), cfg.batch_size))
    row.update(rep.columns(cfg.batch_size))
    row.update(mem.read())
    row.update(load.columns())
    tail = slice(-10, None)  # the last ten steps: one step's loss is too noisy to compare
    row["d_loss_last10"] = _mean(outcome.d_losses[tail])
    row["g_loss_last10"] = _mean(outcome.g_losses[tail])
    row["first_step_s"] = outcome.first_step_s
    row["compile_s"] = compile_s  # the kernel's ahead-of-time compile, apart from step times
    row["train_wall_s"] = outcome.wall_s
    if cfg.compile:
        row["compile_graph_breaks"] = int(sum(torch._dynamo.utils.counters["graph_break"]
                                              .values()))

    rep.finish(G, D, combo.name)
    if not rep.is_rank0:  # rank 0 alone draws, saves and scores
        return row
    report("phase", phase="writing")
    if outcome.status == "ok":
        _save_artifacts(G, cfg, combo, defaults.z_dim, run_dir)
        if scorer is not None:
            report("phase", phase="metrics")
            t0 = time.perf_counter()
            row.update(scorer.score())
            row["metric_n"] = scorer.sets.n
            row["eval_s"] = time.perf_counter() - t0
    if outcome.history:
        _write_history(run_dir, combo.name, outcome.history, outcome.wall_s, row, cfg)
    row.update(environment(device, cfg.dtype))
    row["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return row


class _Scorer:
    """Quality of G now: ``sets.n`` samples against the same held-out half as every row."""

    def __init__(self, cfg: RunConfig, data, metric_names: list[str], G, z_dim: int, registry):
        from ganbench.quality import evaluate as quality
        from ganbench.specs import MetricContext

        self.cfg, self.G, self.z_dim, self.registry = cfg, G, z_dim, registry
        self.metric_names = metric_names
        self.sets = quality.eval_sets(data.heldout, data.heldout_labels, cfg.eval_n, cfg.seed)
        self.context = MetricContext(digits=cfg.digits or tuple(range(10)),
                                     image_size=cfg.image_size, device=cfg.device,
                                     seed=cfg.seed, real_labels=self.sets.real_labels,
                                     train=data.train)

    def score(self) -> dict:
        from ganbench.quality import evaluate as quality
        from ganbench.training.loop import generate

        fake = generate(self.G, self.sets.n, self.z_dim, self.cfg.device, self.cfg.seed + 7)
        return quality.evaluate(self.metric_names, fake, self.sets.real, self.context,
                                self.registry)


def _save_artifacts(G, cfg: RunConfig, combo: Combination, z_dim: int, run_dir: Path) -> None:
    """The sample grid, the attention maps and the generator's weights, each atomically."""
    import torch

    from ganbench.results.figures import save_attention_figure, save_grid

    name = combo.name
    fixed = torch.randn(GRID_SIZE, z_dim, 1, 1,
                        generator=torch.Generator().manual_seed(FIXED_NOISE_SEED))
    with torch.no_grad():
        G.eval()
        images = G(fixed.to(cfg.device)).float().cpu()
    with atomic.replacing(run_dir / "samples" / f"{name}.png") as tmp:
        save_grid(images, tmp)
    with atomic.replacing(run_dir / "attention" / f"{name}.png", required=False) as tmp:
        save_attention_figure(G, fixed[:ATTENTION_SAMPLES].to(cfg.device), tmp, title=name)
    atomic.torch_save({"generator": G.state_dict(), "architecture": combo.architecture,
                       "attention": combo.attention, "image_size": cfg.image_size,
                       "z_dim": z_dim},
                      run_dir / "models" / f"{name}.G.pt")


def _checkpoint_for(run_dir: Path, combo: Combination, resume: bool,
                    writer: bool = True) -> tuple[Path, Optional[dict]]:
    """(where this combination checkpoints, the state to continue from or None). Only the
    ``writer`` (rank 0) removes a stale file."""
    from ganbench.training.checkpoint import checkpoint_path, discard_checkpoint, load_checkpoint

    path = checkpoint_path(run_dir, combo.name)
    if resume and path.exists():
        return path, load_checkpoint(path)
    if not resume and writer:
        discard_checkpoint(path)  # a fresh start: an older run's checkpoint must never resume
    return path, None


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def _write_history(run_dir: Path, name: str, history: list[dict], wall_s: float, row: dict,
                   cfg: RunConfig) -> None:
    import pandas as pd

    from ganbench.results.figures import save_curves

    final = {"step": row["steps"], "wall_s": wall_s}
    final.update({k: row[k] for k in history[0] if k in row and k not in final})
    df = pd.DataFrame(history + [final])
    atomic.write_text(run_dir / "curves" / f"{name}.csv", df.to_csv(index=False))
    with atomic.replacing(run_dir / "curves" / f"{name}.png") as tmp:
        save_curves(df, tmp, title=f"{name}: quality over time")
    if cfg.target_fid is not None and "fid_digits" in df:
        hit = df[df["fid_digits"] < cfg.target_fid]
        row["time_to_target_s"] = float(hit["wall_s"].iloc[0]) if len(hit) else float("nan")


def reference_row(cfg: RunConfig, data, metric_names: list[str]) -> dict:
    """The 'real data' row: held-out real digits against other held-out real digits."""
    from ganbench.quality import evaluate as quality
    from ganbench.training.measure import environment
    from ganbench.specs import MetricContext

    context = MetricContext(digits=cfg.digits or tuple(range(10)), image_size=cfg.image_size,
                            device=cfg.device, seed=cfg.seed, train=data.train)
    row = {"combo": "real data", "status": "reference", "image_size": cfg.image_size}
    scores, n_used = quality.real_reference_row(data.heldout, data.heldout_labels, cfg.eval_n,
                                                context, get_registry(), metric_names,
                                                seed=cfg.seed)
    row.update(scores)
    row["metric_n"] = n_used
    row.update(environment(cfg.device, cfg.dtype))
    return row


def failure_status(exc: BaseException) -> str:
    """'oom' for running out of memory (torch.cuda.OutOfMemoryError, MemoryError, or any error
    whose message says "out of memory" / "can't allocate memory"), else 'failed'."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return "oom"
    text = str(exc).lower()
    return "oom" if "out of memory" in text or "can't allocate memory" in text else "failed"


def one_line(exc: BaseException) -> str:
    """The row's ``error``: the exception in one line. Errors whose text already says it all
    (a failed write, a kernel breaking its contract) are given without their class name."""
    from ganbench.errors import UserError

    plain = isinstance(exc, (atomic.WriteError, UserError))
    text = str(exc) if plain else f"{type(exc).__name__}: {exc}"
    lines = text.strip().splitlines()
    return lines[0] if lines else type(exc).__name__
