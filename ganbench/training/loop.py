"""The one training loop, written once for every architecture and loss.

Each iteration (the textbook's order): a D step on a real batch and a detached fake batch, then
a G step on fresh noise through the updated D. Timing covers the whole iteration; the first
``warmup`` iterations are run but not timed (allocator warm-up, cuDNN autotuning, compilation).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from ganbench.scaleout.grad_sync import any_rank, first_nonfinite
from ganbench.training.measure import StepTimer
from ganbench.specs import GANLoss
from ganbench.training.steps import (STEP_KINDS, GraphedStep, StepParts, ganbench_step,
                            make_optimizers, textbook_step)

DIVERGENCE_CHECK_EVERY = 10  # steps between NaN/inf checks: each check is one host sync


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Batches:
    """Endless shuffled batches from a tensor already on the device (digits are small: 2,000
    7s and 8s at 64x64 are 33 MB in fp32), reshuffled each epoch with a seeded generator;
    the last incomplete batch of an epoch is dropped so every step has the same batch size."""

    def __init__(self, images: torch.Tensor, batch_size: int, seed: int):
        self.images = images
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._order = torch.empty(0, dtype=torch.long)
        self._pos = 0

    def next(self) -> torch.Tensor:
        if self._pos + self.batch_size > len(self._order):
            self._order = torch.randperm(len(self.images), generator=self.generator)
            self._pos = 0
        idx = self._order[self._pos:self._pos + self.batch_size].to(self.images.device)
        self._pos += self.batch_size
        return self.images.index_select(0, idx)

    def state(self) -> dict:
        """Where the shuffle stands, for a checkpoint (see :meth:`load_state`)."""
        return {"generator": self.generator.get_state(), "order": self._order.clone(),
                "pos": self._pos}

    def load_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._order = state["order"].clone()
        self._pos = int(state["pos"])


@dataclass
class TrainOutcome:
    step_seconds: list[float]
    d_losses: list[float]
    g_losses: list[float]
    status: str = "ok"                    # ok | diverged
    diverged_at: Optional[int] = None
    wall_s: float = 0.0
    first_step_s: float = 0.0
    history: list[dict] = field(default_factory=list)  # rows from on_eval
    resumed_from_step: Optional[int] = None  # set when training continued from a checkpoint
    cuda_graph: Optional[str] = None      # with cuda_graph=True: "on" or "off: <reason>"
    capture_s: float = float("nan")       # seconds spent capturing the graph


@dataclass(frozen=True)
class TrainSettings:
    """Everything :func:`train` needs to know besides the models, the loss and the data.

    Training lasts ``steps`` iterations, or with ``budget_s`` as many as fit in that many
    seconds of wall time (``steps`` None), or whichever ends first when both are given.
    ``seed`` seeds the noise stream (``seed + 1``); ``step_kind`` is "ganbench" (the default
    step) or "textbook" (the chapter's own step, the baseline); ``cuda_graph`` captures the
    ganbench step once and replays it (:class:`ganbench.training.steps.GraphedStep`);
    ``compile_step`` (a torch.compile mode) runs the ganbench step as one compiled function
    (:class:`ganbench.training.compiled_step.CompiledStep`).
    """

    steps: Optional[int]
    warmup: int
    z_dim: int
    g_lr: float
    d_lr: float
    betas: tuple[float, float]
    device: str
    dtype: str = "fp32"
    seed: int = 0
    eval_every: int = 0
    checkpoint_every: int = 0
    step_kind: str = "ganbench"
    cuda_graph: bool = False
    budget_s: Optional[float] = None
    compile_step: Optional[str] = None  # torch.compile mode for the whole iteration, or None

    def __post_init__(self):
        if self.step_kind not in STEP_KINDS:
            raise ValueError(f"step_kind must be one of {STEP_KINDS}, got {self.step_kind!r}")
        if self.compile_step is not None and (self.cuda_graph or self.step_kind != "ganbench"):
            raise ValueError("compile_step compiles the ganbench step; it is not combined with "
                             "cuda_graph or the textbook step")
        if self.steps is None and self.budget_s is None:
            raise ValueError("train() needs steps, budget_s or both")


@dataclass
class TrainHooks:
    """Callbacks :func:`train` makes; each is optional.

    ``progress(step, d_loss, g_loss)`` at every divergence check; ``on_eval(step, wall_s) ->
    row`` every ``eval_every`` steps (outside the timed region, but the wall clock keeps
    running: time-to-quality counts evaluation); ``on_checkpoint(state)`` every
    ``checkpoint_every`` steps with :func:`training_state`.
    """

    progress: Optional[Callable[[int, float, float], None]] = None
    on_eval: Optional[Callable[[int, float], dict]] = None
    on_checkpoint: Optional[Callable[[dict], None]] = None


def train(G: nn.Module, D: nn.Module, loss: GANLoss, batches: Batches,
          settings: TrainSettings, hooks: Optional[TrainHooks] = None,
          resume: Optional[dict] = None) -> TrainOutcome:
    """Train G and D in place for ``settings.steps`` iterations (or ``settings.budget_s``
    seconds of wall time); return timings and losses.

    Training stops early with status ``diverged`` when a loss becomes NaN or inf. A checkpoint
    is taken after the divergence check, so a saved state never holds a non-finite loss.
    Passing such a state as ``resume`` continues from its step with the same models,
    optimisers, RNG streams, losses and timings, so the losses match an uninterrupted run; the
    wall clock (and so a budget) continues from the checkpoint's.
    After a resume the first ``warmup`` steps are again untimed (caches and allocator are cold
    in a new process); the step times measured before the checkpoint are kept. The outcome's
    ``cuda_graph`` says whether a requested graph ran, or why not. See
    :mod:`ganbench.training.steps`.

    A budget is checked after every step (so a run overshoots it by less than one step); under
    DDP the ranks agree on it (:func:`ganbench.scaleout.grad_sync.any_rank`), so all stop at
    the same step.
    """
    s, hooks = settings, hooks or TrainHooks()
    opt_g, opt_d = make_optimizers(G, D, s.g_lr, s.d_lr, s.betas, s.device,
                                   capturable=s.cuda_graph)
    noise = torch.Generator(device=s.device).manual_seed(s.seed + 1)
    parts = StepParts(G, D, loss, opt_g, opt_d, noise, batches.batch_size, s.z_dim, s.device,
                      s.dtype)
    graphed = GraphedStep(parts) if s.cuda_graph else None
    if graphed is not None:
        one_step = graphed
    elif s.compile_step is not None:
        from ganbench.training.compiled_step import CompiledStep

        one_step = CompiledStep(parts, mode=s.compile_step)
    else:
        one_step = partial(textbook_step if s.step_kind == "textbook" else ganbench_step, parts)
    timer = StepTimer(s.device)
    losses: list[torch.Tensor] = []  # (2,) per step, kept on the device: no sync per step
    outcome = TrainOutcome([], [], [])
    G.train()
    D.train()
    start = time.perf_counter()
    first, carried_seconds = 0, []  # first step of this call; step times from before a resume
    if resume is not None:
        first, carried_seconds = restore_training_state(resume, G, D, opt_g, opt_d, noise,
                                                        batches, losses, outcome)
        start -= outcome.wall_s  # wall time continues from the checkpoint's

    step = first
    while s.steps is None or step < s.steps:
        _timed_step(one_step, batches.next(), step, first, s, timer, losses, outcome)
        done = step = step + 1
        last = done == s.steps or (s.budget_s is not None and any_rank(
            time.perf_counter() - start >= s.budget_s, D))
        save_now = bool(hooks.on_checkpoint and s.checkpoint_every
                        and done % s.checkpoint_every == 0 and not last)
        if done % DIVERGENCE_CHECK_EVERY == 0 or last or save_now:
            recent = torch.stack(losses[-DIVERGENCE_CHECK_EVERY:])
            bad = first_nonfinite(recent, D)  # under DDP agreed by every rank
            if bad is not None:
                outcome.status = "diverged"
                outcome.diverged_at = len(losses) - len(recent) + bad + 1
                break
            if hooks.progress is not None:
                latest = recent[-1].tolist()
                hooks.progress(done, latest[0], latest[1])
        if hooks.on_eval is not None and s.eval_every and done % s.eval_every == 0 \
                and not last:
            outcome.history.append(hooks.on_eval(done, time.perf_counter() - start))
            G.train()
        if save_now:
            outcome.wall_s = time.perf_counter() - start
            outcome.step_seconds = carried_seconds + timer.seconds()
            hooks.on_checkpoint(training_state(done, G, D, opt_g, opt_d, noise, batches, losses,
                                               outcome))
        if last:
            break

    return _finished(outcome, losses, timer, carried_seconds, first, s.warmup, start, graphed)


def _timed_step(one_step, real: torch.Tensor, step: int, first: int, s: TrainSettings,
                timer: StepTimer, losses: list, outcome: TrainOutcome) -> None:
    """One iteration on ``real``: timed once this call is past its warm-up, and the very first
    step of a combination timed apart (``first_step_s``: allocation, autotuning, compiling)."""
    timed = step - first >= s.warmup
    if timed:
        timer.start()
    elif step == 0:
        t_first = time.perf_counter()
    step_losses = one_step(real)  # (2,): d_loss, g_loss
    if timed:
        timer.stop()
    elif step == 0:
        if s.device.startswith("cuda"):
            torch.cuda.synchronize()
        outcome.first_step_s = time.perf_counter() - t_first
    losses.append(step_losses)


def _finished(outcome: TrainOutcome, losses: list, timer: StepTimer, carried_seconds: list,
              first: int, warmup: int, start: float, graphed) -> TrainOutcome:
    """Fill the outcome at the end: step times (only steps before a divergence), losses, wall
    time, and whether a requested CUDA graph ran."""
    outcome.step_seconds = carried_seconds + timer.seconds()
    if outcome.diverged_at is not None:  # time only steps before the first non-finite one
        timed_ok = max(0, outcome.diverged_at - 1 - first - warmup)  # their count in this call
        outcome.step_seconds = carried_seconds + timer.seconds()[:timed_ok]
    all_losses = torch.stack(losses).cpu() if losses else torch.empty(0, 2)
    outcome.d_losses = all_losses[:, 0].tolist()
    outcome.g_losses = all_losses[:, 1].tolist()
    outcome.wall_s = time.perf_counter() - start
    if graphed is not None:
        outcome.cuda_graph, outcome.capture_s = graphed.status, graphed.capture_s
    return outcome


def training_state(step: int, G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer,
                   opt_d: torch.optim.Optimizer, noise: torch.Generator, batches: Batches,
                   losses: list[torch.Tensor], outcome: TrainOutcome) -> dict:
    """Everything :func:`train` needs to continue after ``step`` finished iterations.

    Only tensors, numbers and strings (the eval history travels as JSON text), so the state
    loads with ``torch.load(weights_only=True)``. ``outcome`` supplies the step times and wall
    time so far and the first step's time.
    """
    import json

    return {
        "step": step,
        "generator": G.state_dict(), "discriminator": D.state_dict(),
        "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
        "rng_torch": torch.get_rng_state(), "rng_noise": noise.get_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "batches": batches.state(),
        "losses": torch.stack(losses).cpu() if losses else torch.empty(0, 2),  # (step, 2)
        "step_seconds": list(outcome.step_seconds),
        "first_step_s": outcome.first_step_s,
        "wall_s": outcome.wall_s,
        "history": json.dumps(outcome.history, default=float),
    }


def restore_training_state(state: dict, G: nn.Module, D: nn.Module,
                           opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                           noise: torch.Generator, batches: Batches, losses: list[torch.Tensor],
                           outcome: TrainOutcome) -> tuple[int, list[float]]:
    """Load a :func:`training_state` into fresh models, optimisers and streams (in place).

    Returns (the step to continue from, the step times measured before it); fills ``losses``
    and ``outcome`` (history, first-step and wall time, ``resumed_from_step``).
    """
    import json

    G.load_state_dict(state["generator"])
    D.load_state_dict(state["discriminator"])
    opt_g.load_state_dict(state["opt_g"])
    opt_d.load_state_dict(state["opt_d"])
    torch.set_rng_state(state["rng_torch"])
    noise.set_state(state["rng_noise"])
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    batches.load_state(state["batches"])
    device = next(G.parameters()).device
    losses.extend(state["losses"].to(device).unbind(0))
    outcome.history = json.loads(state["history"])
    outcome.first_step_s = float(state["first_step_s"])
    outcome.wall_s = float(state["wall_s"])
    outcome.resumed_from_step = int(state["step"])
    return int(state["step"]), [float(s) for s in state["step_seconds"]]


@torch.no_grad()
def generate(G: nn.Module, n: int, z_dim: int, device: str, seed: int,
             batch_size: int = 500) -> torch.Tensor:
    """n samples from G in eval mode as float32 (n, C, S, S) in [-1, 1] on the CPU."""
    was_training = G.training
    G.eval()
    # All noise drawn at once: torch's CPU randn takes a different path below 16 elements, so
    # drawing per batch would make the samples depend on the batch size.
    z_all = torch.randn(n, z_dim, 1, 1, generator=torch.Generator().manual_seed(seed))
    out = []
    for i in range(0, n, batch_size):
        out.append(G(z_all[i:i + batch_size].to(device)).float().clamp_(-1, 1).cpu())
    G.train(was_training)
    return torch.cat(out)
