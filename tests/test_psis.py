"""PSIS (issue 18): the smoothing against ArviZ's, k-hat's known answers, corrected moments,
and bad input."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoNormal

from ppmodels.infer import fit
from ppmodels.infer.diagnostics import pareto_smooth, psis


def normal_mean(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(y)):
        pyro.sample("obs", dist.Normal(mu, 1.0), obs=y)


def exact_posterior(y):
    precision = len(y) + 0.01
    return float(y.sum()) / precision, precision**-0.5


@pytest.mark.parametrize("scale", [0.1, 1.0, 3.0])
def test_smoothing_and_k_hat_agree_with_arviz(scale):
    az = pytest.importorskip("arviz")
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(4, 2000, generator=g, dtype=torch.float64)
    tails = torch.distributions.StudentT(torch.tensor(2.0, dtype=torch.float64)).sample((4, 2000))
    log_weights = scale * (noise + 0.5 * tails)
    mine, k_hat = pareto_smooth(log_weights)
    theirs, their_k = az.psislw(log_weights.numpy())
    assert torch.allclose(k_hat, torch.as_tensor(their_k), atol=1e-6, rtol=0)
    assert torch.allclose(mine, torch.as_tensor(theirs), atol=1e-6, rtol=0)


def test_the_exact_posterior_as_guide_gives_a_small_k_and_the_exact_moments():
    torch.manual_seed(0)
    y = 2.0 + torch.randn(20)
    mean, sd = exact_posterior(y)

    def exact_guide(y):
        pyro.sample("mu", dist.Normal(mean, sd))

    result = psis(normal_mean, exact_guide, y, num_samples=4000, chunk=1000)
    assert result.k_hat < 0.5 and result.ess > 3500  # the weights are all equal: ESS is S
    corrected_mean, corrected_sd = (float(v) for v in result.moments["mu"])
    assert abs(corrected_mean - mean) < 4 * sd / result.ess**0.5
    assert corrected_sd == pytest.approx(sd, rel=0.05)
    assert result.draws["mu"].shape == (4000,) and result.verdict.startswith("k-hat")


def test_a_gaussian_narrower_than_a_student_t_posterior_gives_k_above_0_7():
    """A 5-dimensional Student-t(3) posterior (the prior; the data say nothing) and a normal
    guide with sd 0.5 per coordinate: k-hat 0.83-1.23 over seeds 0-2 (in one dimension, or
    with sd 0.8-1, the tail shows less in 4,000 draws: 0.54-0.82)."""

    def student(y):
        pyro.sample("t", dist.StudentT(3.0, 0.0, 1.0).expand([5]).to_event(1))

    def narrow(y):
        pyro.sample("t", dist.Normal(0.0, 0.5).expand([5]).to_event(1))

    pyro.set_rng_seed(0)
    result = psis(student, narrow, torch.zeros(1), num_samples=4000)
    assert result.k_hat > 0.7 and "misses posterior mass" in result.verdict


def test_a_trained_autoguide_on_a_users_model_is_close():
    torch.manual_seed(1)
    y = torch.randn(30)
    pyro.clear_param_store()
    guide = AutoNormal(normal_mean)
    fit((normal_mean, guide), (y,), epochs=1500, lr=0.05, seed=0, progress=False)
    result = psis(normal_mean, guide, y, num_samples=2000)
    mean, sd = exact_posterior(y)
    assert result.k_hat < 0.5
    assert abs(float(result.moments["mu"][0]) - mean) < 0.1 * sd


def test_bad_input_is_named():
    y = torch.randn(5)
    with pytest.raises(TypeError, match=r"`guide` must be a callable Pyro guide .* but got NoneType"):
        psis(normal_mean, None, y)

    def misses_mu(y):
        pyro.sample("other", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"the guide does not sample the model's latent site 'mu'"):
        psis(normal_mean, misses_mu, y, num_samples=10)
    with pytest.raises(ValueError, match=r"`log_weights` must have at least 2 draws along its last dimension"):
        pareto_smooth(torch.zeros(1))
    with pytest.raises(ValueError, match=r"num_samples"):
        psis(normal_mean, misses_mu, y, num_samples=0)


def test_compare_reports_k_hat_per_vi_method_beside_its_errors():
    from ppmodels.infer import compare

    torch.manual_seed(2)
    y = 3.0 + torch.randn(25)
    result = compare(normal_mean, (y,), guides=("meanfield",), mcmc=())
    k_hat = result.method("meanfield").k_hat
    assert k_hat is not None and k_hat < 0.5  # a Gaussian posterior, a Gaussian guide at its optimum
    assert "| k_hat |" in result.to_markdown() and result.summary()[0]["k_hat"] == k_hat
