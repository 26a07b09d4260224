"""Known answers: the pPCA log-likelihood, analytic vs Monte Carlo KL, the IWAE bound."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from ppmodels.infer import elbo, fit, log_likelihood, log_weights
from ppmodels.models import VAE
from ppmodels.nn import MLPDecoder, MLPEncoder

from tolerances import MC_SIGMAS, PPCA_LL_ATOL


def ppca_mle_log_likelihood(x, k):
    """Exact maximum-likelihood probabilistic PCA (Tipping & Bishop 1999), mean per sample."""
    xc = x - x.mean(0)
    lam, U = torch.linalg.eigh(xc.T @ xc / len(x))
    lam, U = lam.flip(0), U.flip(1)
    s2 = lam[k:].mean()
    W = U[:, :k] * (lam[:k] - s2).clamp_min(0).sqrt()
    C = W @ W.T + s2 * torch.eye(x.shape[1])
    return float(torch.distributions.MultivariateNormal(x.mean(0), C).log_prob(x).mean())


class LinearGaussianEncoder(nn.Module):
    """q(z|x) = N(Ax + b, diag(s)): the exact pPCA posterior has this form (mean linear in x,
    covariance independent of x)."""

    def __init__(self, d, k):
        super().__init__()
        self.lin = nn.Linear(d, k)
        self.raw = nn.Parameter(torch.zeros(k))

    def forward(self, x):
        return self.lin(x), nn.functional.softplus(self.raw).expand(x.shape[0], -1) + 1e-5


@pytest.fixture(scope="module")
def ppca():
    torch.manual_seed(0)
    d, k, n = 6, 2, 2000
    W = torch.randn(d, k) * torch.tensor([2.0, 1.0])
    x = torch.randn(n, k) @ W.T + torch.randn(d) + 0.5 * torch.randn(n, d)
    torch.manual_seed(1)
    vae = VAE(LinearGaussianEncoder(d, k), nn.Linear(k, d), k, likelihood="normal", scale="learned")
    fit(vae, x, epochs=1500, batch_size=n, lr=0.02, elbo="meanfield", seed=0)
    Wv, bv, s = vae.decoder.weight.detach(), vae.decoder.bias.detach(), vae.output_scale.detach()
    exact = torch.distributions.MultivariateNormal(bv, Wv @ Wv.T + s**2 * torch.eye(d)).log_prob(x)
    return x, vae, exact


@pytest.mark.slow
def test_linear_vae_reaches_the_exact_ppca_log_likelihood(ppca):
    x, vae, exact_under_vae = ppca
    mle2, mle1 = ppca_mle_log_likelihood(x, 2), ppca_mle_log_likelihood(x, 1)
    assert mle2 - mle1 > 10 * PPCA_LL_ATOL  # the tolerance separates 1 from 2 components
    assert float(exact_under_vae.mean()) == pytest.approx(mle2, abs=PPCA_LL_ATOL)
    assert float(exact_under_vae.mean()) <= mle2 + 1e-4  # the MLE is the maximum
    # at the optimum the Gaussian posterior is exact, so the ELBO is tight too
    assert float(elbo(vae, x, num_samples=50, seed=0).mean()) == pytest.approx(mle2, abs=PPCA_LL_ATOL)


@pytest.mark.slow
def test_importance_weighted_estimate_stays_below_the_exact_value(ppca):
    x, vae, exact = ppca
    for k in (1, 10, 100, 1000):
        diff = log_likelihood(vae, x, num_samples=k, seed=k) - exact
        se = float(diff.std()) / math.sqrt(len(diff))
        assert float(diff.mean()) <= MC_SIGMAS * se, f"K={k}: the estimate exceeds log p(x) beyond Monte Carlo error"
        if k == 1000:
            assert float(diff.mean()) == pytest.approx(0.0, abs=2e-3)


def test_importance_weighted_estimate_rises_with_k():
    """On a nonlinear VAE (whose Gaussian posterior is not exact) the bound tightens with K.
    From 1,000 draws per test digit, the K-sample estimate is averaged over 1000/K disjoint
    groups, and each paired per-sample increase is far beyond its Monte Carlo error."""
    from ppmodels.data import digits

    d = digits()
    vae = VAE(MLPEncoder((1, 8, 8), 4, (64,)), MLPDecoder(4, (1, 8, 8), (64,)), 4)
    fit(vae, d.train_x, epochs=10, seed=0)
    pyro.set_rng_seed(0)
    lw = torch.cat([log_weights(vae, (d.test_x,), 250) for _ in range(4)])  # (1000, N)
    estimates = [(torch.logsumexp(lw.reshape(1000 // k, k, -1), dim=1) - math.log(k)).mean(0) for k in (1, 10, 100)]
    for lower, higher in zip(estimates, estimates[1:]):
        gain = higher - lower
        assert float(gain.mean()) > MC_SIGMAS * float(gain.std()) / math.sqrt(len(gain))
    # the K=1 average is the ELBO: elbo() must agree within Monte Carlo error
    other = elbo(vae, d.test_x, num_samples=1000, seed=1) - estimates[0]
    assert abs(float(other.mean())) < MC_SIGMAS * float(other.std()) / math.sqrt(len(other))


def test_analytic_kl_equals_its_monte_carlo_estimate():
    torch.manual_seed(0)
    loc, scale = torch.randn(5), torch.rand(5) + 0.3
    q, p = dist.Normal(loc, scale), dist.Normal(0.0, 1.0)
    closed = (0.5 * (loc**2 + scale**2 - 1) - scale.log()).sum()
    assert float(torch.distributions.kl_divergence(q, p).sum()) == pytest.approx(float(closed), rel=1e-6)
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1)
    se = float(mc.std()) / math.sqrt(len(mc))
    assert abs(float(mc.mean()) - float(closed)) < MC_SIGMAS * se


def test_meanfield_and_trace_estimators_agree_in_expectation():
    """TraceMeanField (analytic KL) and Trace (Monte Carlo KL) estimate the same ELBO."""
    torch.manual_seed(0)
    vae = VAE(MLPEncoder((6,), 3, (8,)), MLPDecoder(3, (6,), (8,)), 3, likelihood="normal", scale=0.7)
    x = torch.randn(4, 6)
    trace = torch.tensor([pyro.infer.Trace_ELBO().loss(vae.model, vae.guide, x) for _ in range(1500)])
    field = torch.tensor([pyro.infer.TraceMeanField_ELBO().loss(vae.model, vae.guide, x) for _ in range(1500)])
    se = math.sqrt(trace.var() / len(trace) + field.var() / len(field))
    assert abs(float(trace.mean() - field.mean())) < MC_SIGMAS * se
    assert float(field.var()) < float(trace.var())  # the analytic KL removes variance


def test_log_weights_shape_and_undoing_the_plate_scale():
    vae = VAE(MLPEncoder((5,), 2, (8,)), MLPDecoder(2, (5,), (8,)), 2)
    x = torch.rand(3, 5)
    pyro.set_rng_seed(0)
    a = log_weights(vae, (x,), num_samples=4)
    vae.set_num_data(1000)
    pyro.set_rng_seed(0)
    b = log_weights(vae, (x,), num_samples=4)
    assert a.shape == (4, 3)
    torch.testing.assert_close(a, b)


def test_global_latent_has_no_per_sample_log_likelihood():
    class Global(nn.Module):
        def model(self, x):
            mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
            with pyro.plate("data", len(x)):
                pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

        def guide(self, x):
            pyro.sample("mu", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"site 'mu' is outside the 'data' plate"):
        log_likelihood(Global(), (torch.zeros(3),), num_samples=2)


def test_evaluation_is_seeded_and_leaves_the_global_rng_alone():
    vae = VAE(MLPEncoder((5,), 2, (8,)), MLPDecoder(2, (5,), (8,)), 2)
    x = torch.rand(10, 5)
    state = torch.get_rng_state()
    a = log_likelihood(vae, x, num_samples=20, seed=3)
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a, log_likelihood(vae, x, num_samples=20, seed=3))
    with pytest.raises(ValueError, match=r"`num_samples` must be a positive int, but got 0"):
        log_likelihood(vae, x, num_samples=0)


def test_per_datum_psis_of_the_exact_encoder_is_small_and_of_a_narrowed_one_large(ppca):
    """The trained linear VAE's encoder is pPCA's exact posterior: every datum's k-hat is
    small. Its sds shrunk to 0.3x, the guide misses posterior mass for most data."""
    import copy

    from ppmodels.infer import psis_per_datum

    x, vae, _ = ppca
    x = x[:200]
    exact = psis_per_datum(vae, x, num_samples=400, seed=0)
    assert exact.k_hat.shape == (200,) and float(exact.k_hat.median()) < 0.5
    assert exact.summary()["k_hat_above_0.7"] < 0.03
    # the same draws give log_likelihood's importance-weighted estimate
    torch.testing.assert_close(exact.log_likelihood, log_likelihood(vae, x, num_samples=400, seed=0))
    narrow = copy.deepcopy(vae)
    with torch.no_grad():
        sd = nn.functional.softplus(narrow.encoder.raw) * 0.3
        narrow.encoder.raw.copy_(sd.expm1().log())
    shrunk = psis_per_datum(narrow, x, num_samples=400, seed=0).summary()
    assert shrunk["k_hat_median"] > 0.7 and shrunk["k_hat_above_0.7"] > 0.5  # measured 0.79 and 0.70
    assert psis_per_datum(vae, x[:3], num_samples=10).summary()["k_hat_median"] is None  # too few draws for a tail
    with pytest.raises(TypeError, match=r"`pair` must be a model/guide pair .* but got Linear"):
        psis_per_datum(vae.decoder, x[:3])
