"""PSIS-LOO and the pointwise log-likelihood (issue 18): the exact leave-one-out density of a
conjugate model, ArviZ's loo on the same matrix, compare's report and ArviZ groups, and bad
input."""

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch

from ppmodels.infer import compare
from ppmodels.infer.diagnostics.loo import pointwise, psis_loo

SIGMA, TAU = 1.0, 2.0


def normal_mean(y):
    mu = pyro.sample("mu", dist.Normal(0.0, TAU))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu, SIGMA), obs=y)


def posterior(y):
    precision = 1 / TAU**2 + len(y) / SIGMA**2
    return float(y.sum()) / SIGMA**2 / precision, 1 / precision


def exact_loo(y):
    """sum_i log p(y_i | y_-i): the posterior without y_i, then y_i's normal predictive."""
    total = 0.0
    for i in range(len(y)):
        mean, var = posterior(torch.cat([y[:i], y[i + 1 :]]))
        total += float(dist.Normal(mean, math.sqrt(var + SIGMA**2)).log_prob(y[i]))
    return total


def data(seed=0, n=20):
    g = torch.Generator().manual_seed(seed)
    return (0.7 + 1.5 * torch.randn(n, generator=g, dtype=torch.float64)).float()


def exact_draws(y, s=4000, seed=1):
    mean, var = posterior(y)
    g = torch.Generator().manual_seed(seed)
    return {"mu": mean + math.sqrt(var) * torch.randn(s, generator=g)}


def test_psis_loo_of_exact_posterior_draws_is_the_exact_leave_one_out_density():
    y = data()
    found = pointwise(normal_mean, exact_draws(y), y)
    result = psis_loo(found.flat())
    # Monte Carlo error of 4,000 draws: about 0.01 nats in all here (measured 0.005)
    assert result.elpd == pytest.approx(exact_loo(y), abs=0.03)
    assert result.k_hat.shape == (20,) and float(result.k_hat.max()) < 0.5 and result.bad == 0
    mean, var = posterior(y)
    lppd = float(dist.Normal(mean, math.sqrt(var + SIGMA**2)).log_prob(y).sum())
    assert result.p_loo == pytest.approx(lppd - exact_loo(y), abs=0.06)  # lppd - elpd_loo, both exact
    assert "reliable" in result.verdict


def test_the_pointwise_log_likelihood_is_each_datums_density_under_each_draw():
    y = data(n=5)
    draws = exact_draws(y, s=7)
    found = pointwise(normal_mean, draws, y)
    expected = dist.Normal(draws["mu"][:, None], SIGMA).log_prob(y)
    torch.testing.assert_close(found.log_likelihood["y"], expected)
    assert found.predictive["y"].shape == (7, 5) and torch.equal(found.observed["y"], y)


def test_a_model_that_does_not_broadcast_gets_the_same_pointwise_values_one_draw_at_a_time():
    y = data(n=6)

    def scalar_model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, TAU))
        loc = torch.full_like(y, mu.item())  # .item(): one draw at a time only
        pyro.sample("y", dist.Normal(loc, SIGMA).to_event(1), obs=y)

    draws = exact_draws(y, s=5)
    found = pointwise(scalar_model, draws, y)
    expected = dist.Normal(draws["mu"][:, None], SIGMA).log_prob(y).sum(-1)  # one observation: the vector
    torch.testing.assert_close(found.log_likelihood["y"], expected)


def test_a_single_influential_point_gets_a_large_k():
    y = data(n=12)
    y[3] = 40.0  # far outside: leaving it out moves the posterior by many of its sds
    found = pointwise(normal_mean, exact_draws(y), y)
    result = psis_loo(found.flat())
    assert int(result.k_hat.argmax()) == 3 and float(result.k_hat[3]) > 0.7
    assert result.bad >= 1 and "observation 3" in result.verdict


def test_elpd_and_k_agree_with_arviz_on_the_same_matrix():
    az = pytest.importorskip("arviz")
    y = data()
    y[5] = 6.0
    draws = exact_draws(y)
    ll = pointwise(normal_mean, draws, y).flat().double()
    mine = psis_loo(ll)
    idata = az.from_dict(posterior={"mu": draws["mu"].numpy()[None]}, log_likelihood={"y": ll.numpy()[None]})
    theirs = az.loo(idata, pointwise=True)
    assert mine.elpd == pytest.approx(theirs.elpd_loo, abs=1e-6)
    torch.testing.assert_close(mine.k_hat, torch.as_tensor(theirs.pareto_k.values), atol=1e-6, rtol=0)
    # ArviZ's standard error divides by N, the loo package's (ours) by N - 1
    assert mine.se == pytest.approx(theirs.se * math.sqrt(20 / 19), rel=1e-6)


def test_weighted_draws_of_a_wrong_guide_give_the_posteriors_loo():
    """Draws from a guide twice as wide, with their importance weights p / q: the LOO of the
    posterior, not of the guide (Magnusson et al. 2019)."""
    y = data()
    mean, var = posterior(y)
    q = dist.Normal(mean + 0.1, 2 * math.sqrt(var))
    mu = q.sample((8000,))
    prior, lik = dist.Normal(0.0, TAU).log_prob(mu), dist.Normal(mu[:, None], SIGMA).log_prob(y).sum(-1)
    log_weights = prior + lik - q.log_prob(mu)
    ll = pointwise(normal_mean, {"mu": mu}, y).flat()
    weighted, unweighted = psis_loo(ll, log_weights), psis_loo(ll)
    assert weighted.elpd == pytest.approx(exact_loo(y), abs=0.05)
    assert abs(unweighted.elpd - exact_loo(y)) > 0.1  # the guide's own draws alone are another answer


def test_compare_reports_loo_and_psis_corrected_moments_and_arviz_gets_its_groups():
    az = pytest.importorskip("arviz")
    y = data(n=30)
    result = compare(
        normal_mean, (y,), guides=("meanfield",), mcmc=("nuts",), num_samples=1000, warmup_steps=200, vi_epochs=300
    )
    mean, var = posterior(y)
    rows = {r["method"]: r for r in result.summary()}
    for name in ("meanfield", "nuts"):
        assert rows[name]["elpd_loo"] == pytest.approx(exact_loo(y), abs=0.3)
        assert rows[name]["loo_bad_k"] == 0
    vi = [r for r in result.rows() if r["method"] == "meanfield"][0]
    assert vi["psis_mean"] == pytest.approx(mean, abs=0.05 * math.sqrt(var))
    assert vi["psis_sd"] == pytest.approx(math.sqrt(var), rel=0.05)
    assert "| elpd_loo |" in result.to_markdown() and len(result.to_dict()["loo_k_hat"]["nuts"]) == 30

    data_ = result.to_arviz()
    nuts = data_["nuts"]
    assert {"posterior", "log_likelihood", "posterior_predictive", "observed_data", "sample_stats"} <= set(
        nuts.groups()
    )
    chains = result.method("nuts").mcmc.num_chains
    assert nuts.log_likelihood["y"].shape == (chains, 1000, 30)
    assert nuts.posterior_predictive["y"].shape == (chains, 1000, 30)
    # ArviZ takes reff 1 for one chain; given the same reff (the likelihood's ESS / S, as the loo package) it agrees
    mine = result.method("nuts").loo
    assert az.loo(nuts, reff=mine.reff).elpd_loo == pytest.approx(mine.elpd, abs=1e-5)
    with warnings.catch_warnings():  # ArviZ 0.23 calls pandas and matplotlib in ways they have deprecated
        warnings.filterwarnings("ignore", message="The inplace keyword")
        warnings.filterwarnings("ignore", message="Passing a dict or None as alias_mapping")
        comparison = az.compare(data_)
        axes = az.plot_ppc(nuts, num_pp_samples=20)
    assert set(comparison.index) == {"meanfield", "nuts"}
    assert len(axes.get_lines()) >= 20  # the replicated data's densities, drawn
    import matplotlib.pyplot as plt

    plt.close("all")


def test_the_pointwise_log_likelihood_gives_compares_predictive_log_likelihood():
    y, test = data(n=20), data(seed=5, n=8)
    result = compare(normal_mean, (y,), test=(test,), guides=(), mcmc=("nuts",), num_samples=100, warmup_steps=50)
    nuts = result.method("nuts")
    ll = pointwise(normal_mean, nuts.site_samples, test).flat().double()
    mean_lpd = float((torch.logsumexp(ll, 0) - math.log(ll.shape[0])).mean())
    assert mean_lpd == pytest.approx(nuts.predictive_log_likelihood, abs=1e-5)


def test_bad_input_is_one_line_naming_it():
    y = data(n=4)
    with pytest.raises(ValueError, match=r"`draws` is empty"):
        pointwise(normal_mean, {}, y)
    with pytest.raises(ValueError, match=r"same number of draws for every site, but got \{'mu': 3, 'b': 2\}"):
        pointwise(normal_mean, {"mu": torch.zeros(3), "b": torch.zeros(2)}, y)

    def factor_only(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        pyro.factor("lik", dist.Normal(mu, 1.0).log_prob(y).sum())

    with pytest.raises(
        ValueError, match=r"`sites`: the model has no observed site 'obs'; its observed sites are \['y'\]"
    ):
        pointwise(normal_mean, {"mu": torch.zeros(3)}, y, sites=["obs"])
    assert set(pointwise(normal_mean, {"mu": torch.zeros(3)}, y, sites="y").log_likelihood) == {"y"}
    with pytest.raises(ValueError, match="no observed pyro.sample site"):
        pointwise(factor_only, {"mu": torch.zeros(3)}, y)
    with pytest.raises(ValueError, match=r"`log_likelihood` must be \(draws, observations\).*got shape \(5,\)"):
        psis_loo(torch.zeros(5))
    with pytest.raises(ValueError, match=r"PSIS-LOO needs at least 2 observations, but the log-likelihood has 1"):
        psis_loo(torch.zeros(5, 1))
    with pytest.raises(ValueError, match=r"`log_weights` must have shape \(5,\).*got \(4,\)"):
        psis_loo(torch.zeros(5, 3), torch.zeros(4))
