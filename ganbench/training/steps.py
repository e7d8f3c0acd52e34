"""One training iteration (a D step, then a G step), in the three forms a run can time.

- :func:`ganbench_step`: ganbench's eager step. The fake batch of the D step is detached (no
  backward through G there), and D's parameters stop requiring gradients during the G step, so
  the G backward computes only what G's update needs. Neither change alters a single number:
  the D gradients of the G step were thrown away before (``opt_d.zero_grad`` clears them before
  the next D backward), and a detached input receives no gradient (tests/training/test_steps.py checks
  that parameters after K steps are bitwise equal to the step without these changes).
- :func:`textbook_step`: the chapter's own step as the book writes it, kept as the baseline
  that ``--baseline textbook`` times: D on real, G(z), D on the fake *without* detach, both
  ``zero_grad``s, the D step, then the G step through the updated D, and ``.item()`` on both
  losses every step (a host sync each). It trains the same models on the same losses; only the
  amount of work and the syncs differ.
- :class:`GraphedStep`: the ganbench step captured once as a CUDA graph and replayed
  (``--cuda-graph``): at the textbook's 64x64 the eager step is about a thousand small kernels,
  launch-bound (results/gpu-h100-80gb), and a replay launches them all at once.

Every form returns the step's losses as a (2,) float tensor (d_loss, g_loss) on the device,
so the loop checks for divergence in one place without a sync per step.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from ganbench.scaleout.grad_sync import grad_sync_off
from ganbench.training.graphs import capture, on_side_stream
from ganbench.specs import GANLoss, LossInputs

STEP_KINDS = ("ganbench", "textbook")
# Eager iterations before capture: the first builds Adam's state and runs cuDNN's autotuning,
# which must not happen inside a capture; PyTorch's CUDA-graph notes warm up for 3 iterations on
# a side stream (docs: "CUDA Graphs", whole-network capture), and so do we.
GRAPH_WARMUP_STEPS = 3


@dataclass
class StepParts:
    """What one iteration touches: models, loss, optimisers, the noise stream, the batch."""
    G: nn.Module
    D: nn.Module
    loss: GANLoss
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    noise: torch.Generator
    batch_size: int
    z_dim: int
    device: str
    dtype: str = "fp32"
    # autocast's weight-cast cache must be off inside a CUDA graph (its cached casts would be
    # freed between replays); outside a graph the cache saves one cast per weight per step.
    autocast_cache: bool = True

    def z(self) -> torch.Tensor:
        return torch.randn(self.batch_size, self.z_dim, 1, 1, device=self.device,
                           generator=self.noise)

    def autocast(self):
        """bf16 autocast on the run's device, or nothing for fp32."""
        if self.dtype == "bf16":
            return torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16,
                                  cache_enabled=self.autocast_cache)
        return contextlib.nullcontext()


def make_optimizers(G: nn.Module, D: nn.Module, g_lr: float, d_lr: float,
                    betas: tuple[float, float], device: str,
                    capturable: bool = False) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for G and D with the architecture's learning rates and betas.

    On CUDA the fused implementation (one kernel per parameter group instead of a few per
    tensor; the same update up to float rounding, ~1e-7 relative); ``capturable`` keeps Adam's
    step counters on the device so a CUDA graph can replay the update. On the CPU torch's
    default (foreach) implementation, unchanged.
    """
    betas = tuple(float(b) for b in betas)
    extra: dict = {}
    if device.startswith("cuda"):
        extra = {"fused": True}
        if capturable:
            extra["capturable"] = True
    return (torch.optim.Adam(G.parameters(), lr=g_lr, betas=betas, **extra),
            torch.optim.Adam(D.parameters(), lr=d_lr, betas=betas, **extra))


def ganbench_step(p: StepParts, real: torch.Tensor) -> torch.Tensor:
    """One D step on ``real`` and a detached fake, then one G step on fresh noise."""
    with p.autocast():
        fake = p.G(p.z()).detach()  # (B, C, S, S); D's backward stops here
        d_loss = p.loss.d_loss(LossInputs(fake_logits=p.D(fake), real_logits=p.D(real),
                                          real=real, fake=fake, discriminator=p.D))
    p.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    p.opt_d.step()

    p.D.requires_grad_(False)  # the G backward needs D's input gradients, not its weights'
    try:
        with p.autocast(), grad_sync_off(p.D):
            g_loss = p.loss.g_loss(LossInputs(fake_logits=p.D(p.G(p.z())), discriminator=p.D))
        p.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
    finally:
        p.D.requires_grad_(True)
    p.opt_g.step()
    return torch.stack([d_loss.detach().float(), g_loss.detach().float()])


def textbook_step(p: StepParts, real: torch.Tensor) -> torch.Tensor:
    """The chapter's step, unchanged: the baseline ganbench's own steps are measured against.

    The fake is not detached, so the D backward also runs through G (its gradients are cleared
    by the G step's ``zero_grad``); both optimisers' gradients are zeroed before each backward;
    the G step's backward also fills D's gradients; ``.item()`` reads both losses each step.
    """
    with p.autocast():
        real_logits = p.D(real)
        fake = p.G(p.z())
        fake_logits = p.D(fake)
        d_loss = p.loss.d_loss(LossInputs(fake_logits=fake_logits, real_logits=real_logits,
                                          real=real, fake=fake, discriminator=p.D))
    p.D.zero_grad()
    p.G.zero_grad()
    d_loss.backward()
    p.opt_d.step()

    with p.autocast():
        g_loss = p.loss.g_loss(LossInputs(fake_logits=p.D(p.G(p.z())), discriminator=p.D))
    p.D.zero_grad()
    p.G.zero_grad()
    g_loss.backward()
    p.opt_g.step()
    d_value, g_value = d_loss.item(), g_loss.item()  # the book logs both every step
    return torch.tensor([d_value, g_value], device=real.device)


class GraphedStep:
    """:func:`ganbench_step` captured once in a CUDA graph and replayed.

    Contract:

    - The first :data:`GRAPH_WARMUP_STEPS` calls run the eager step on a side stream (they are
      real training steps); the next call captures one step and replays it; every later call
      copies ``real`` into the graph's static input and replays. Results match the eager step
      up to float rounding (tests/training/test_steps.py, CUDA).
    - The noise generator is registered with the graph, so each replay draws fresh z from the
      same stream the eager step uses; Adam must be capturable (:func:`make_optimizers`);
      autocast runs without its cache.
    - Anything that cannot be captured (a plugin that synchronises or reads a tensor on the
      host, DDP's collectives, a torch without graph support) makes the capture fail: the step
      then stays eager for the rest of the run and :attr:`status` says why (never silently).
      Use :func:`why_not_graphable` first for what is known before capture.
    - The returned losses are a copy: a replay overwrites the static output.
    """

    def __init__(self, parts: StepParts, eager: Callable[[StepParts, torch.Tensor],
                                                         torch.Tensor] = ganbench_step,
                 warmup_steps: int = GRAPH_WARMUP_STEPS, graph_factory=None):
        self.p = parts
        self.eager = eager
        self.warmup_steps = warmup_steps
        self._new_graph = graph_factory or torch.cuda.CUDAGraph  # injectable for CPU tests
        self.calls = 0
        self.graph = None
        self.static_real: Optional[torch.Tensor] = None
        self.static_losses: Optional[torch.Tensor] = None
        self.status = "pending"        # pending | on | off: <reason>
        self.capture_s = float("nan")  # host seconds spent capturing

    def __call__(self, real: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.status.startswith("off"):
            return self.eager(self.p, real)
        if self.graph is None and self.calls <= self.warmup_steps:
            return self._side_stream(lambda: self.eager(self.p, real))
        if self.graph is None:
            return self._capture_then_replay(real)
        self.static_real.copy_(real)
        self.graph.replay()
        return self.static_losses.clone()

    def _side_stream(self, fn):
        return on_side_stream(fn, self.p.device)

    def _capture_then_replay(self, real: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        self.static_real = real.clone()
        graph = self._new_graph()
        try:
            register = getattr(graph, "register_generator_state", None)
            if register is None:
                raise RuntimeError("this torch cannot register a private generator with a "
                                   "CUDA graph (CUDAGraph.register_generator_state; torch>=2.5)")
            register(self.p.noise)
            self.p.autocast_cache = False
            # Grads as None before capture: the captured backward allocates them in the
            # graph's pool and every replay writes the same memory.
            self.p.opt_d.zero_grad(set_to_none=True)
            self.p.opt_g.zero_grad(set_to_none=True)
            self.static_losses = capture(graph, lambda: self.eager(self.p, self.static_real))
        except Exception as exc:  # capture impossible here: say why and stay eager
            self.p.autocast_cache = True
            self.status = f"off: capture failed: {_one_line(exc)}"
            self.graph = None
            return self.eager(self.p, real)
        self.graph = graph
        self.capture_s = time.perf_counter() - t0
        self.status = "on"
        graph.replay()  # capturing records the kernels without running them: run this step
        return self.static_losses.clone()


def why_not_graphable(device: str, distributed: bool, compiled: bool) -> Optional[str]:
    """Why a CUDA graph cannot be used for this combination, known before any capture."""
    if not device.startswith("cuda"):
        return "CUDA graphs need a CUDA device"
    if distributed:
        return ("not combined with DistributedDataParallel here (its all-reduces would have to "
                "be captured too)")
    if compiled:
        return ("--compile already captures graphs with --compile-mode reduce-overhead; the "
                "two are not combined")
    return None


def _one_line(exc: BaseException) -> str:
    lines = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
