"""The three step forms of ganbench/training/steps.py against hand-written references.

- ganbench's step with its shortcuts (detached fake, D frozen in the G step) leaves every
  parameter bitwise equal to the plain loop that computes and throws away D's G-step grads.
- The textbook step trains the same models as ganbench's (same z, same losses) up to the
  order in which gradients are summed; it syncs every step.
- The graphed step's bookkeeping (warm-up, capture, static input, copies of the losses,
  falling back when capture fails) is checked on the CPU with a stand-in graph that replays
  the captured Python callable; the real capture is checked against eager on CUDA.
"""

import contextlib

import pytest
import torch

from ganbench.kernels.attention.reference import attend_reference as eager_attend
from ganbench.plugins import dcgan, sagan
from ganbench.plugins.losses import BCELoss, HingeLoss
from ganbench.specs import LossInputs, ModelRequest
from ganbench.training.steps import (GraphedStep, StepParts, ganbench_step, make_optimizers,
                            textbook_step, why_not_graphable)
from ganbench.training.loop import seed_everything


def parts_for(build, loss, seed=0, image_size=32, device="cpu", dtype="fp32",
              capturable=False):
    seed_everything(seed)
    attend = eager_attend if build is sagan.build else None
    G, D = build(ModelRequest(image_size, 8, attend=attend))
    G, D = G.to(device), D.to(device)
    opt_g, opt_d = make_optimizers(G, D, 1e-3, 2e-3, (0.0, 0.9), device, capturable)
    noise = torch.Generator(device=device).manual_seed(seed + 1)
    return StepParts(G, D, loss, opt_g, opt_d, noise, 4, 8, device, dtype)


def reals(n, image_size=32, device="cpu"):
    """n batches of 4 random images in [-1, 1]."""
    g = torch.Generator().manual_seed(5)
    return [(torch.rand(4, 1, image_size, image_size, generator=g) * 2 - 1).to(device)
            for _ in range(n)]


def plain_step(p: StepParts, real):
    """The loop before the shortcuts: D's gradients computed in the G step and discarded."""
    fake = p.G(p.z()).detach()
    d_loss = p.loss.d_loss(LossInputs(fake_logits=p.D(fake), real_logits=p.D(real), real=real,
                                      fake=fake, discriminator=p.D))
    p.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    p.opt_d.step()
    g_loss = p.loss.g_loss(LossInputs(fake_logits=p.D(p.G(p.z())), discriminator=p.D))
    p.opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    assert all(q.grad is not None for q in p.D.parameters())  # the work the shortcut removes
    p.opt_g.step()
    return torch.stack([d_loss.detach(), g_loss.detach()])


def params(p: StepParts):
    return [t.detach().clone() for t in list(p.G.parameters()) + list(p.D.parameters())]


@pytest.mark.parametrize("build,loss", [(sagan.build, HingeLoss()), (dcgan.build, BCELoss())])
def test_ganbench_step_is_bitwise_the_plain_step(build, loss):
    a, b = parts_for(build, loss), parts_for(build, loss)
    for real in reals(2):
        la, lb = ganbench_step(a, real), plain_step(b, real)
        assert torch.equal(la, lb)
    assert all(torch.equal(x, y) for x, y in zip(params(a), params(b)))
    # D's G-step gradients were never computed, and D requires grad again afterwards
    assert all(q.grad is not None for q in a.D.parameters())  # from the D step only
    assert all(q.requires_grad for q in a.D.parameters())


def test_ganbench_step_skips_d_weight_gradients_in_the_g_step():
    p = parts_for(dcgan.build, HingeLoss())
    seen = []
    hooks = [q.register_hook(lambda g: seen.append(1)) for q in p.D.parameters()]
    ganbench_step(p, reals(1)[0])
    n_d = len(list(p.D.parameters()))
    assert len(seen) == n_d  # once each, in the D step; none in the G step
    for h in hooks:
        h.remove()


def test_textbook_step_trains_the_same_dcgan():
    """DCGAN has no spectral norm, so the order of D's two calls changes only how gradients
    are summed: after two steps every parameter agrees to float rounding."""
    a, b = parts_for(dcgan.build, BCELoss()), parts_for(dcgan.build, BCELoss())
    for real in reals(2):
        la, lb = ganbench_step(a, real), textbook_step(b, real)
        torch.testing.assert_close(la, lb.to(la.dtype), rtol=1e-5, atol=1e-6)
    for x, y in zip(params(a), params(b)):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


def count_items(fn):
    """How many times fn() calls Tensor.item (Adam reads its step count this way too, so tests
    compare two steps' counts rather than expect an absolute number)."""
    calls = []
    real_item = torch.Tensor.item

    def counting_item(t):
        calls.append(1)
        return real_item(t)

    torch.Tensor.item = counting_item
    try:
        fn()
    finally:
        torch.Tensor.item = real_item
    return len(calls)


def test_textbook_step_does_what_the_book_does():
    """No detach (G receives gradients in the D step) and one host read per loss per step."""
    a, b = parts_for(dcgan.build, BCELoss()), parts_for(dcgan.build, BCELoss())
    real = reals(1)[0]
    g_grads = []
    hook = next(b.G.parameters()).register_hook(lambda g: g_grads.append(1))
    ours = count_items(lambda: ganbench_step(a, real))
    book = count_items(lambda: textbook_step(b, real))
    hook.remove()
    assert len(g_grads) == 2  # the D backward and the G backward both reach G
    assert book == ours + 2


# ---- the graphed step's bookkeeping, with a stand-in for torch.cuda.CUDAGraph ---------------
class ReplayGraph:
    """Stand-in graph: 'capture' records the callable that the step would have recorded, and
    replay runs it again and writes into the same output tensor, as a CUDA graph writes into
    its static memory."""

    capturing = None

    def __init__(self, fail=None):
        self.fail = fail
        self.fn = None
        self.out = None
        self.replays = 0
        self.generator = None

    def register_generator_state(self, generator):
        self.generator = generator

    @contextlib.contextmanager
    def capture(self):
        if self.fail:
            raise RuntimeError(self.fail)
        ReplayGraph.capturing = self
        try:
            yield
        finally:
            ReplayGraph.capturing = None

    def replay(self):
        self.replays += 1
        self.out.copy_(self.fn())


def recording(step):
    def eager(p, real):
        graph = ReplayGraph.capturing
        if graph is None:
            return step(p, real)
        graph.fn = lambda: step(p, real)  # ``real`` is the graph's static input
        graph.out = torch.zeros(2)
        return graph.out
    return eager


def test_graphed_step_matches_eager_and_replays_after_warmup():
    eager, graphed = parts_for(dcgan.build, HingeLoss()), parts_for(dcgan.build, HingeLoss())
    graph = ReplayGraph()
    step = GraphedStep(graphed, eager=recording(ganbench_step), warmup_steps=1,
                       graph_factory=lambda: graph)
    outs = []
    for real in reals(4):
        expected = ganbench_step(eager, real)
        got = step(real)
        outs.append(got)
        assert torch.equal(got, expected)
    assert step.status == "on" and graph.replays == 3  # calls 2 (capture + replay), 3, 4
    assert graph.generator is graphed.noise
    assert all(torch.equal(x, y) for x, y in zip(params(eager), params(graphed)))
    assert outs[1].data_ptr() != outs[2].data_ptr()  # copies: a replay must not change them


def test_graphed_step_falls_back_to_eager_and_says_why():
    eager, graphed = parts_for(dcgan.build, BCELoss()), parts_for(dcgan.build, BCELoss())
    step = GraphedStep(graphed, eager=recording(ganbench_step), warmup_steps=1,
                       graph_factory=lambda: ReplayGraph(fail="operation not permitted "
                                                              "when stream is capturing"))
    for real in reals(2):
        assert torch.equal(step(real), ganbench_step(eager, real))
    assert step.status.startswith("off: capture failed: RuntimeError: operation not permitted")
    assert all(torch.equal(x, y) for x, y in zip(params(eager), params(graphed)))


def test_graphs_are_refused_with_a_reason_before_capture():
    assert "CUDA device" in why_not_graphable("cpu", False, False)
    assert "DistributedDataParallel" in why_not_graphable("cuda", True, False)
    assert "--compile" in why_not_graphable("cuda", False, True)
    assert why_not_graphable("cuda:0", False, False) is None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_cuda_graph_matches_eager_after_k_steps(dtype):
    """Same seed, same data: parameters after 8 steps within 1e-4 relative (fp32) of eager.
    Both use fused capturable Adam; the graph draws z from the same registered generator."""
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    a = parts_for(sagan.build, HingeLoss(), image_size=64, device="cuda", dtype=dtype,
                  capturable=True)
    b = parts_for(sagan.build, HingeLoss(), image_size=64, device="cuda", dtype=dtype,
                  capturable=True)
    step = GraphedStep(b)
    for real in reals(8, 64, "cuda"):
        ganbench_step(a, real)
        step(real)
    assert step.status == "on", step.status
    tol = {"fp32": (1e-4, 1e-5), "bf16": (2e-2, 1e-3)}[dtype]
    for x, y in zip(params(a), params(b)):
        torch.testing.assert_close(y, x, rtol=tol[0], atol=tol[1])
