"""ScalarScaleNormal: the same distribution as torch's Normal with a broadcast scale."""

import math

import pyro.distributions as dist
import pytest
import torch

from ppmodels.models._normal import ScalarScaleNormal


@pytest.mark.parametrize("scale", [1.0, 0.37])
def test_log_prob_and_its_gradients_equal_torchs_normal(scale):
    loc = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 4, dtype=torch.float64)
    fast, reference = ScalarScaleNormal(loc, scale), dist.Normal(loc, scale)
    torch.testing.assert_close(fast.log_prob(x), reference.log_prob(x))
    (g_fast,) = torch.autograd.grad(fast.log_prob(x).sum(), loc)
    (g_ref,) = torch.autograd.grad(reference.log_prob(x).sum(), loc)
    torch.testing.assert_close(g_fast, g_ref)


def test_a_learned_scale_gets_the_same_gradient():
    log_scale = torch.tensor(-0.4, dtype=torch.float64, requires_grad=True)
    loc, x = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    (g_fast,) = torch.autograd.grad(ScalarScaleNormal(loc, log_scale.exp()).log_prob(x).sum(), log_scale)
    (g_ref,) = torch.autograd.grad(dist.Normal(loc, log_scale.exp()).log_prob(x).sum(), log_scale)
    torch.testing.assert_close(g_fast, g_ref)
    # closed form: d/ds sum log N(x | loc, s) = sum (r^2 / s^2 - 1), with s = e^log_scale
    s2 = math.exp(-0.8)
    torch.testing.assert_close(g_fast, ((x - loc) ** 2 / s2 - 1).sum())


def test_zero_loc_shortcut_moments_expand_and_kl():
    d = ScalarScaleNormal(torch.zeros(()).expand(3, 2), 2.0, zero_loc=True)
    x = torch.randn(3, 2)
    torch.testing.assert_close(d.log_prob(x), dist.Normal(0.0, 2.0).log_prob(x))
    assert d.batch_shape == (3, 2) and d.sample((4,)).shape == (4, 3, 2) and d.rsample().shape == (3, 2)
    torch.testing.assert_close(d.variance, torch.full((3, 2), 4.0))
    wide = d.expand((5, 3, 2))
    assert isinstance(wide, ScalarScaleNormal) and wide.batch_shape == (5, 3, 2)
    torch.testing.assert_close(wide.log_prob(x), dist.Normal(0.0, 2.0).log_prob(x).expand(5, 3, 2))
    q = dist.Normal(torch.randn(3, 2), 0.5)
    torch.testing.assert_close(
        torch.distributions.kl_divergence(q, d), torch.distributions.kl_divergence(q, dist.Normal(0.0, 2.0))
    )


def test_a_scale_with_a_shape_is_refused():
    with pytest.raises(ValueError, match=r"needs one scale, but got shape \(3,\)"):
        ScalarScaleNormal(torch.zeros(3), torch.ones(3))
