"""A trial's row: assembled from what ran (settings), what happened (the training outcome),
what was measured (timings, memory) and what was scored (metrics), in that order of columns.

:func:`ganbench.sweep.execute.execute` gathers the parts and calls :func:`build_row`; nothing
here trains or writes. Rank 0 under torchrun, and every single process, pass the quality and
environment parts too; the other ranks stop at the measured part (their row is not kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

from ganbench.config import RunConfig
from ganbench.sweep.target import Target, time_to_target

LAST_N = 10  # losses averaged at the end: one step's loss is too noisy to compare


@dataclass
class Measured:
    """What a trial measured besides its losses."""

    timing: dict                   # ganbench.training.measure.summarize() of the step times
    replicas: dict                 # DataParallel.columns(): world size, per-rank batch, ...
    memory: dict                   # PeakMemory.read()
    compile_s: Optional[float] = None      # the kernel's ahead-of-time compile
    graph_breaks: Optional[int] = None     # torch.compile's graph breaks (--compile only)
    graph_off: Optional[str] = None        # --cuda-graph: why a graph could not run
    load: dict = field(default_factory=dict)  # LoadMonitor.columns(): the machine's load
    malloc: Optional[str] = None           # ganbench.training.malloc.apply(): what was in force


@dataclass
class Quality:
    """The final evaluation (``scores`` empty when the trial was not scored) and the
    evaluations during training (``history``, each with ``step`` and ``wall_s``)."""

    scores: dict = field(default_factory=dict)
    metric_n: Optional[int] = None
    eval_s: Optional[float] = None
    history: list = field(default_factory=list)


def build_row(trial, cfg: RunConfig, defaults, data, outcome, sources: dict,
              measured: Measured, quality: Optional[Quality] = None,
              target: Optional[Target] = None, environment: Optional[dict] = None) -> dict:
    """The row of ``trial`` (a :class:`ganbench.sweep.trials.Trial`) trained with ``cfg``
    (``defaults``: the architecture's hyper-parameters; ``data``: the DigitData;
    ``outcome``: :class:`ganbench.training.loop.TrainOutcome`; ``sources``: plugin name ->
    provenance). Quality, target and environment columns only when given."""
    row = {**trial.identity(), "status": outcome.status, "diverged_at": outcome.diverged_at,
           "resumed_from_step": outcome.resumed_from_step, "steps": len(outcome.d_losses)}
    if cfg.budget_s is not None:  # budget mode: `steps` is how far this trial got in it
        row["budget_s"] = cfg.budget_s
    seed = row.pop("seed")  # placed among the settings, where it has always been
    row.update({"batch_size": cfg.batch_size, "image_size": cfg.image_size,
                "warmup": cfg.warmup, "z_dim": defaults.z_dim, "g_lr": defaults.g_lr,
                "d_lr": defaults.d_lr, "betas": list(defaults.betas), "seed": seed,
                "data": data.source, "digits": ",".join(map(str, cfg.digits)) or "all",
                "n_train": len(data.train), "compile": cfg.compiled, "step": trial.step,
                "memory_format": cfg.memory_format})
    if cfg.compiled:  # what torch.compile wrapped: "models" (G and D) or "step" (all of it)
        row["compile_scope"] = cfg.compile
    if measured.malloc is not None:
        row["malloc"] = measured.malloc
    row.update({f"{part}_from": sources[name] for part, name in
                (("architecture", trial.architecture), ("loss", trial.loss),
                 ("attention", trial.attention)) if name})
    if cfg.cuda_graph:  # "on", or "off: <why>" (never a silent fallback)
        row["cuda_graph"] = outcome.cuda_graph or f"off: {measured.graph_off}"
        row["capture_s"] = outcome.capture_s
    if outcome.status == "diverged":
        row["error"] = (f"a loss became NaN or inf at step {outcome.diverged_at}; timings "
                        "count only the steps before it")
    row.update(measured.timing)
    row.update(measured.replicas)
    row.update(measured.memory)
    row.update(measured.load)
    row["d_loss_last10"] = _mean(outcome.d_losses[-LAST_N:])
    row["g_loss_last10"] = _mean(outcome.g_losses[-LAST_N:])
    row["first_step_s"] = outcome.first_step_s
    row["compile_s"] = measured.compile_s  # kernels' and torch.compile's, apart from steps
    row["train_wall_s"] = outcome.wall_s
    if cfg.compiled:
        row["compile_graph_breaks"] = measured.graph_breaks
    if quality is not None:
        if quality.scores:
            row.update(quality.scores)
            row["metric_n"] = quality.metric_n
            row["eval_s"] = quality.eval_s
        if target is not None:
            row.update(time_to_target(curve_points(quality, row["steps"], outcome.wall_s),
                                      target, row["steps"]))
    if environment is not None:
        row.update(environment)
        row["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return row


def curve_points(quality: Quality, steps: int, wall_s: float) -> list[dict]:
    """The quality curve: every evaluation during training, then the final one (at ``steps``,
    ``wall_s``) with the columns the others have (all its scores when there were none)."""
    final = {"step": steps, "wall_s": wall_s}
    columns = quality.history[0] if quality.history else quality.scores
    final.update({k: quality.scores[k] for k in columns
                  if k in quality.scores and k not in final})
    return quality.history + [final]


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")
