"""Train one trial (a combination under one seed) and turn what happened into its row.

:func:`execute` is the same in a spawned worker (:mod:`ganbench.sweep.worker`), in-process
(``--in-process``) and on each rank under torchrun (:mod:`ganbench.scaleout.ranks`): build the
models with the attention kernel injected, train, measure, draw, save and score; the row is
assembled by :mod:`ganbench.sweep.row`. Every file it writes goes through
:mod:`ganbench.files.atomic`. It reports how far it got through ``report(event, **data)``
(see :mod:`ganbench.sweep.progress`) and raises on failure; the caller turns the exception into
a row.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ganbench.config import RunConfig
from ganbench.files import atomic
from ganbench.registry import get_registry
from ganbench.sweep.plan import load_data
from ganbench.sweep.row import Measured, Quality, build_row, curve_points
from ganbench.sweep.target import resolve_target
from ganbench.sweep.trials import Trial

FIXED_NOISE_SEED = 20_000  # the grid's noise: the same z for every combination of a run
GRID_SIZE = 64
ATTENTION_SAMPLES = 3
# Statuses of a row whose combination did not finish. Their checkpoint is kept, so
# `--resume RUN_DIR --retry-failed` retrains them from it.
RETRYABLE_STATUSES = ("failed", "oom", "crashed")

Report = Callable[..., None]


def _ignore(*args, **kwargs) -> None:
    pass


def execute(cfg: RunConfig, trial: Trial, run_dir: Path, metric_names: list[str],
            fresh_process: bool, resume: bool = False, replicas=None,
            report: Report = _ignore) -> dict:
    """Train one trial (a combination under one seed) and return its row (raises on failure;
    the caller records it).

    The trial's seed seeds its initial weights, noise stream and batch order; evaluation uses
    the run's ``cfg.seed`` (the same held-out digits and sample noise for every trial, so only
    training differs between seeds). Files are named by ``trial.stem``.

    With ``resume``, training continues from RUN_DIR/checkpoints/<stem>.pt when it exists and
    the row's ``resumed_from_step`` says from which step; otherwise any such file is removed.

    ``replicas`` (ganbench.scaleout.distributed) is this process's part in data-parallel
    training; the default trains alone. Under torchrun only rank 0's row is complete and only
    rank 0 writes (checkpoints included); every rank loads the same checkpoint on resume.
    """
    from ganbench.scaleout.distributed import OneProcess
    from ganbench.training.loop import TrainHooks, train
    from ganbench.training.measure import LoadMonitor

    registry = get_registry()
    if trial.step == "textbook":  # the book's loop: no bf16, compile, graphs or tuned malloc
        cfg = dataclasses.replace(cfg, dtype="fp32", compile="off", cuda_graph=False,
                                  memory_format="contiguous", malloc="default")
    rep = replicas or OneProcess()
    from ganbench.training import malloc
    from ganbench.training.compiled_step import compile_seconds

    malloc_in_force = malloc.apply(cfg.malloc)  # before the first large allocation
    compiled_before = compile_seconds()  # in-process runs accumulate: take the difference
    report("phase", phase="building models")
    models = _build(cfg, trial, registry, rep, fresh_process, report)
    scorer = _Scorer(cfg, models.data, metric_names, models.G, models.defaults.z_dim,
                     registry) if metric_names else None

    def on_eval(step: int, wall_s: float) -> dict:
        report("phase", phase="metrics")
        result = {"step": step, "wall_s": wall_s, **scorer.score()}
        report("phase", phase="training")
        return result

    ckpt, resume_state = _checkpoint_for(run_dir, trial, resume, writer=rep.is_rank0)
    if resume_state is not None:
        resume_state = rep.own_part(resume_state)  # under torchrun: this rank's noise stream

    def on_checkpoint(state: dict) -> None:
        state = rep.whole_state(state)  # under torchrun: every rank's noise stream, on rank 0
        if rep.is_rank0:  # one writer; every rank loads the same file on resume
            from ganbench.training.checkpoint import save_checkpoint

            save_checkpoint(ckpt, state)

    report("phase", phase="training")
    settings, graph_off = _train_settings(cfg, trial, models.defaults, rep,
                                          scored=bool(metric_names),
                                          distributed=replicas is not None)
    hooks = TrainHooks(progress=_step_reporter(cfg, report, models.attend) if rep.is_rank0
                       else None,
                       on_eval=rep.on_rank0(on_eval) if metric_names else None,
                       on_checkpoint=on_checkpoint)
    load = LoadMonitor()  # the machine's load while this trial trains
    outcome = train(models.G_run, models.D_run, models.loss, models.batches, settings, hooks,
                    resume=resume_state)
    measured = _measured(cfg, outcome, rep, models, graph_off, load.columns(),
                         compile_seconds() - compiled_before)
    measured.malloc = malloc_in_force
    sources = registry.provenance([n for n in (trial.architecture, trial.loss, trial.attention)
                                   if n])  # "built-in" or "distribution==version"
    rep.finish(models.G, models.D, trial.stem)
    if not rep.is_rank0:  # rank 0 alone draws, saves and scores
        return build_row(trial, cfg, models.defaults, models.data, outcome, sources, measured)

    report("phase", phase="writing")
    quality = Quality(history=outcome.history)
    if outcome.status == "ok":
        _save_artifacts(models.G, cfg, trial, models.defaults.z_dim, run_dir)
        if scorer is not None:
            report("phase", phase="metrics")
            t0 = time.perf_counter()
            quality.scores = scorer.score()
            quality.metric_n, quality.eval_s = scorer.sets.n, time.perf_counter() - t0
    if outcome.history:
        _write_curves(run_dir, trial.stem, curve_points(quality, len(outcome.d_losses),
                                                        outcome.wall_s))
    from ganbench.training.measure import environment

    target = resolve_target(cfg.target_fid, metric_names, registry)
    return build_row(trial, cfg, models.defaults, models.data, outcome, sources, measured,
                     quality, target, environment(cfg.device, cfg.dtype))


@dataclass
class _Models:
    """What :func:`_build` makes for one trial."""

    G: object
    D: object
    G_run: object             # G as trained: DDP- and/or torch.compile-wrapped
    D_run: object
    loss: object
    data: object              # ganbench.specs.DigitData
    defaults: object          # the architecture's ArchitectureDefaults
    batches: object           # this rank's batches
    memory: object            # PeakMemory, started before the models were built
    compile_s: Optional[float]
    attend: object = None     # the checked kernel (ganbench.sweep.kernel_check), if any


def _build(cfg: RunConfig, trial: Trial, registry, rep, fresh_process: bool,
           report: Report) -> _Models:
    """Seed with the trial's seed, then the loss, the kernel, the data and G and D (moved to
    the device, channels_last, wrapped for DDP and compiled as asked)."""
    import torch

    from ganbench.specs import ModelRequest
    from ganbench.sweep.kernel_check import checked_attend
    from ganbench.training.loop import seed_everything
    from ganbench.training.measure import PeakMemory

    device = cfg.device
    seed_everything(trial.seed)
    arch = registry.architectures[trial.architecture]
    loss = registry.losses[trial.loss].factory()
    attend = None
    if trial.attention:
        options = cfg.options.get(trial.attention, {})
        attend = checked_attend(registry.attention[trial.attention].factory(**options),
                                trial.attention, device=device)
    data = load_data(cfg, registry)
    compile_s = None
    prepare = getattr(attend, "prepare", None)
    if prepare is not None and arch.attention_shapes is not None:  # compile before step 1
        report("phase", phase="compiling kernels")
        compile_s = prepare(arch.attention_shapes(cfg.image_size, cfg.batch_size), cfg.dtype,
                            device)
    memory = PeakMemory(device, fresh=fresh_process)
    G, D = arch.build(ModelRequest(cfg.image_size, arch.defaults.z_dim, attend=attend))
    G, D = G.to(device), D.to(device)
    if cfg.memory_format == "channels_last":  # NHWC convs; q, k, v come out (B, N, C)-contiguous
        G = G.to(memory_format=torch.channels_last)
        D = D.to(memory_format=torch.channels_last)
    G_run, D_run = rep.wrap(G, D)  # DDP under torchrun; G and D themselves otherwise
    if cfg.compile == "models":  # "step" compiles the iteration instead (train())
        G_run = torch.compile(G_run, mode=cfg.compile_mode)
        D_run = torch.compile(D_run, mode=cfg.compile_mode)
    if cfg.compiled:
        torch._dynamo.utils.counters.clear()
    batches = rep.batches(data.train.to(device), cfg.batch_size, trial.seed)  # this rank's share
    return _Models(G, D, G_run, D_run, loss, data, arch.defaults, batches, memory, compile_s,
                   attend)


def _train_settings(cfg: RunConfig, trial: Trial, defaults, rep, scored: bool,
                    distributed: bool):
    """(TrainSettings of this trial, why a requested CUDA graph cannot run or None)."""
    from ganbench.training.loop import TrainSettings

    graph_off = None
    if cfg.cuda_graph:
        from ganbench.training.steps import why_not_graphable

        graph_off = why_not_graphable(cfg.device, distributed, cfg.compiled)
    settings = TrainSettings(
        steps=cfg.steps, budget_s=cfg.budget_s, warmup=cfg.warmup, z_dim=defaults.z_dim,
        g_lr=defaults.g_lr, d_lr=defaults.d_lr, betas=defaults.betas, device=cfg.device,
        dtype=cfg.dtype, seed=rep.noise_seed(trial.seed),
        eval_every=cfg.eval_every if scored else 0, checkpoint_every=cfg.checkpoint_every,
        step_kind=trial.step, cuda_graph=cfg.cuda_graph and graph_off is None,
        compile_step=cfg.compile_mode if cfg.compile == "step" else None)
    return settings, graph_off


def _step_reporter(cfg: RunConfig, report: Report, attend=None):
    """``progress`` hook: each step's losses to ``report``; with a budget also the share of it
    spent (the progress bar's measure, since the number of steps is not known). First, a
    checked kernel's compiled calls are verified (NaN for finite inputs: kernel_check)."""
    t0 = time.perf_counter()  # just before train(): its clock starts a moment later

    def on_step(step: int, d_loss: float, g_loss: float) -> None:
        if attend is not None:
            attend.verify()
        extra = ({} if cfg.budget_s is None else
                 {"fraction": min(1.0, (time.perf_counter() - t0) / cfg.budget_s)})
        report("step", step=step, d_loss=d_loss, g_loss=g_loss, **extra)
    return on_step


def _measured(cfg: RunConfig, outcome, rep, models: _Models, graph_off,
              load: Optional[dict] = None, torch_compile_s: float = 0.0) -> Measured:
    """``compile_s``: the kernel's ahead-of-time compile plus the time torch.compile spent in
    this trial (dynamo's clock, :func:`ganbench.training.compiled_step.compile_seconds`:
    ``--compile``, and a plugin's own torch.compile such as compile-attn's, which compiles
    lazily in the first steps), apart from the step times; None when nothing compiled."""
    import math

    import torch

    from ganbench.training.measure import summarize

    breaks = None
    compile_s = models.compile_s
    if cfg.compiled:
        breaks = int(sum(torch._dynamo.utils.counters["graph_break"].values()))
    if cfg.compiled or (math.isfinite(torch_compile_s) and torch_compile_s > 0):
        compile_s = (compile_s or 0.0) + torch_compile_s
    return Measured(timing=summarize(rep.step_seconds(outcome.step_seconds), cfg.batch_size),
                    replicas=rep.columns(cfg.batch_size), memory=models.memory.read(),
                    compile_s=compile_s, graph_breaks=breaks, graph_off=graph_off,
                    load=load or {})


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


def _save_artifacts(G, cfg: RunConfig, trial: Trial, z_dim: int, run_dir: Path) -> None:
    """The sample grid, the attention maps and the generator's weights, each atomically."""
    import torch

    from ganbench.results.figures import save_attention_figure, save_grid

    name = trial.stem
    fixed = torch.randn(GRID_SIZE, z_dim, 1, 1,
                        generator=torch.Generator().manual_seed(FIXED_NOISE_SEED))
    with torch.no_grad():
        G.eval()
        images = G(fixed.to(cfg.device)).float().cpu()
    with atomic.replacing(run_dir / "samples" / f"{name}.png") as tmp:
        save_grid(images, tmp)
    with atomic.replacing(run_dir / "attention" / f"{name}.png", required=False) as tmp:
        save_attention_figure(G, fixed[:ATTENTION_SAMPLES].to(cfg.device), tmp, title=name)
    atomic.torch_save({"generator": G.state_dict(), "architecture": trial.architecture,
                       "attention": trial.attention, "image_size": cfg.image_size,
                       "z_dim": z_dim},
                      run_dir / "models" / f"{name}.G.pt")


def _checkpoint_for(run_dir: Path, trial: Trial, resume: bool,
                    writer: bool = True) -> tuple[Path, Optional[dict]]:
    """(where this trial checkpoints, the state to continue from or None). Only the
    ``writer`` (rank 0) removes a stale file."""
    from ganbench.training.checkpoint import checkpoint_path, discard_checkpoint, load_checkpoint

    path = checkpoint_path(run_dir, trial.stem)
    if resume and path.exists():
        return path, load_checkpoint(path)
    if not resume and writer:
        discard_checkpoint(path)  # a fresh start: an older run's checkpoint must never resume
    return path, None


def _write_curves(run_dir: Path, stem: str, points: list[dict]) -> None:
    """curves/<stem>.csv and .png: quality at every evaluation and at the end."""
    import pandas as pd

    from ganbench.results.figures import save_curves

    df = pd.DataFrame(points)
    atomic.write_text(run_dir / "curves" / f"{stem}.csv", df.to_csv(index=False))
    with atomic.replacing(run_dir / "curves" / f"{stem}.png") as tmp:
        save_curves(df, tmp, title=f"{stem}: quality over time")


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
    from ganbench.errors import GanbenchError

    plain = isinstance(exc, GanbenchError)
    text = str(exc) if plain else f"{type(exc).__name__}: {exc}"
    lines = text.strip().splitlines()
    return lines[0] if lines else type(exc).__name__
