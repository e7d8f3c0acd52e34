"""``--compile step``: one ``torch.compile`` of the whole training iteration.

What is compiled: the D step (G's forward on fresh noise, D on the fake and the real batch, the
loss, D's backward and D's Adam update) and the G step (G and D forward, the loss, G's backward
and G's Adam update), as one compiled function. ``--compile models`` compiles only G's and D's
forward (and so, through AOTAutograd, their backward); the losses and the optimizers stay eager.

It is :func:`ganbench.training.steps.ganbench_step` rewritten for the compiler, with the same
arithmetic and the same noise stream:

- The noise is drawn outside the compiled function, from the step's generator in the same order
  (D's z, then G's z): dynamo cannot trace ``torch.randn(..., generator=g)`` (a graph break per
  draw), and drawn outside, every row of a seed sees the same z as the eager step.
- Gradients come from ``torch.autograd.grad`` of each loss with respect to one model's
  parameters, instead of ``zero_grad`` + ``backward`` + toggling D's ``requires_grad``: dynamo
  breaks the graph at ``requires_grad_`` and at ``Optimizer.zero_grad``. ``autograd.grad``
  computes exactly what the eager step computes (only the asked-for parameters' gradients, so
  no D weight gradients in the G step) and the result is assigned to ``.grad`` for Adam.
- The optimizers are torch's own, compiled inside the function (PyTorch's "compiled optimizer":
  the ``foreach`` update of each parameter group becomes one generated kernel). torch breaks the
  graph around ``Optimizer.step`` on purpose so the update runs as an inference graph (see
  ``torch.optim.optimizer._use_grad_for_differentiable``), so a step is five or six compiled
  graphs; the row's ``compile_graph_breaks`` counts those breaks, which are expected.

The first calls trace and compile (the first D and G steps; Adam's state is created on its first
step, which compiles its update once more on the second call): the run's untimed warm-up covers
them, and the row's ``compile_s`` is dynamo's own measure of compile time (see
:func:`compile_seconds`), apart from the step times.
"""

from __future__ import annotations

import torch

from ganbench.specs import LossInputs
from ganbench.training.steps import StepParts


class CompiledStep:
    """Callable ``step(real) -> (2,) losses``, like the eager step, over one torch.compile.

    Contract: parameters after K steps match :func:`ganbench.training.steps.ganbench_step`'s
    up to the compiler's float reassociation (tests/training/test_compiled_step.py); not for
    DDP (gradients are not all-reduced here; the planner refuses ``--nproc`` with it) nor with
    a CUDA graph (``mode="reduce-overhead"`` captures graphs itself on CUDA).
    """

    def __init__(self, parts: StepParts, mode: str = "default", compiler=None):
        """``compiler(fn, mode)``: torch.compile unless given (tests pass the identity to check
        the rewritten iteration against the eager step bitwise, without compiling)."""
        self.p = parts
        self.g_params = [q for q in parts.G.parameters() if q.requires_grad]
        self.d_params = [q for q in parts.D.parameters() if q.requires_grad]
        compile_fn = compiler or (lambda fn, mode: torch.compile(fn, mode=mode))
        self._compiled = compile_fn(self._iteration, mode)

    def __call__(self, real: torch.Tensor) -> torch.Tensor:
        z_d, z_g = self.p.z(), self.p.z()  # the eager step's order: D's noise, then G's
        return self._compiled(real, z_d, z_g)

    def _iteration(self, real: torch.Tensor, z_d: torch.Tensor,
                   z_g: torch.Tensor) -> torch.Tensor:
        p = self.p
        with p.autocast():
            fake = p.G(z_d).detach()
            d_loss = p.loss.d_loss(LossInputs(fake_logits=p.D(fake), real_logits=p.D(real),
                                              real=real, fake=fake, discriminator=p.D))
        _set_grads(self.d_params, torch.autograd.grad(d_loss, self.d_params))
        p.opt_d.step()
        with p.autocast():
            g_loss = p.loss.g_loss(LossInputs(fake_logits=p.D(p.G(z_g)), discriminator=p.D))
        _set_grads(self.g_params, torch.autograd.grad(g_loss, self.g_params))
        p.opt_g.step()
        return torch.stack([d_loss.detach().float(), g_loss.detach().float()])


def _set_grads(params: list, grads: tuple) -> None:
    for param, grad in zip(params, grads):
        param.grad = grad


def compile_seconds() -> float:
    """Seconds this process has spent in torch.compile so far (dynamo's frame compiles and
    AOTAutograd's lazy backward compiles), or NaN where this torch does not say.

    Read from ``torch._dynamo.utils.calculate_time_spent()["total_wall_time"]`` (torch 2.13;
    private, hence the NaN fallback): the same clock dynamo's own compile-time report uses.
    Take the difference of two readings to time one combination. 0.0 while dynamo has not
    been imported (nothing compiled yet; importing it only to read a zero would cost ~1 s)."""
    import sys

    if "torch._dynamo" not in sys.modules:
        return 0.0
    try:
        from torch._dynamo.utils import calculate_time_spent

        return float(calculate_time_spent().get("total_wall_time", float("nan")))
    except Exception:  # noqa: BLE001 - a private API: any failure means "not known"
        return float("nan")
