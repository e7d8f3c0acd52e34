"""``--compile step``: the compiled iteration against the eager step.

- Uncompiled, the rewritten iteration (noise drawn outside, ``autograd.grad`` instead of
  ``zero_grad``/``backward``/``requires_grad_``) leaves every parameter and Adam state bitwise
  equal to :func:`ganbench_step`'s: the rewrite changes no arithmetic.
- Compiled (inductor's C++ backend on the CPU; slow: it compiles), parameters after three
  steps match the eager step's to float-reassociation accuracy, and dynamo's compile clock
  moved.
"""

import pytest
import torch

from ganbench.plugins import dcgan, sagan
from ganbench.plugins.losses import BCELoss, HingeLoss
from ganbench.training.compiled_step import CompiledStep, compile_seconds
from ganbench.training.steps import ganbench_step

from test_steps import params, parts_for, reals


def identity(fn, mode):
    return fn


@pytest.mark.parametrize("build, loss", [(dcgan.build, BCELoss), (sagan.build, HingeLoss)])
def test_uncompiled_iteration_is_bitwise_the_eager_step(build, loss):
    eager, rewritten = parts_for(build, loss()), parts_for(build, loss())
    step = CompiledStep(rewritten, compiler=identity)
    for real in reals(3):
        expected = ganbench_step(eager, real)
        got = step(real)
        assert torch.equal(got, expected)
    for a, b in zip(params(eager), params(rewritten)):
        assert torch.equal(a, b)
    for opt in ("opt_g", "opt_d"):
        sa, sb = getattr(eager, opt).state_dict()["state"], getattr(rewritten, opt).state_dict()["state"]
        for key in sa:
            assert torch.equal(sa[key]["exp_avg_sq"], sb[key]["exp_avg_sq"])


def test_noise_stream_is_the_eager_steps():
    """Two draws per step, D's first: the stream is where the eager step leaves it."""
    eager, rewritten = parts_for(dcgan.build, BCELoss()), parts_for(dcgan.build, BCELoss())
    step = CompiledStep(rewritten, compiler=identity)
    real = reals(1)[0]
    ganbench_step(eager, real)
    step(real)
    assert torch.equal(eager.noise.get_state(), rewritten.noise.get_state())


def test_g_step_computes_no_d_weight_gradients():
    """Like the eager step, the G step asks only for G's gradients: D's .grad after a step
    holds the D step's gradients, unchanged by the G step."""
    p = parts_for(dcgan.build, BCELoss())
    seen = {}

    def spy(fn, mode):
        def wrapped(real, z_d, z_g):
            out = fn(real, z_d, z_g)
            seen["d_grads"] = [q.grad.clone() for q in p.D.parameters()]
            return out
        return wrapped

    step = CompiledStep(p, compiler=spy)
    real = reals(1)[0]
    d_params = list(p.D.parameters())
    step(real)
    # recompute D's gradient of this step's D loss by hand, from the same starting point
    q = parts_for(dcgan.build, BCELoss())
    fake = q.G(q.z()).detach()
    from ganbench.specs import LossInputs
    d_loss = q.loss.d_loss(LossInputs(fake_logits=q.D(fake), real_logits=q.D(real), real=real,
                                      fake=fake, discriminator=q.D))
    expected = torch.autograd.grad(d_loss, list(q.D.parameters()))
    for got, want in zip(seen["d_grads"], expected):
        assert torch.equal(got, want)
    assert len(seen["d_grads"]) == len(d_params)


@pytest.mark.slow
def test_compiled_step_matches_eager_and_reports_compile_time():
    """Gradients of the first step agree to float accuracy; losses over three steps too.
    Parameters are held to Adam's bound instead: where a gradient is ~0, rounding can flip
    the sign of an update of size lr (1e-3 here), so an element may differ by up to
    2 * lr per step, however close the gradients."""
    eager, compiled = parts_for(dcgan.build, BCELoss()), parts_for(dcgan.build, BCELoss())
    before = compile_seconds()
    step = CompiledStep(compiled)
    for i, real in enumerate(reals(3)):
        expected = ganbench_step(eager, real)
        got = step(real)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        if i == 0:
            for a, b in zip(eager.G.parameters(), compiled.G.parameters()):
                torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-6)
            for a, b in zip(eager.D.parameters(), compiled.D.parameters()):
                torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-6)
    for a, b in zip(params(eager), params(compiled)):
        assert (a - b).abs().max() <= 3 * 2 * 1e-3 + 1e-6
    assert compile_seconds() - before > 0.1  # inductor compiled something, and said so
