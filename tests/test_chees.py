"""mcmc(kernel="chees"): many chains of ChEES-HMC in lockstep, the potential batched over
chains; against the closed form, NUTS and posteriordb's references (marked ``reference``)."""

from __future__ import annotations

import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import init_to_value
from test_mcmc import LinearModule, _check_against_exact, _data, regression

from ppmodels import posteriordb
from ppmodels.infer import mcmc
from ppmodels.infer.density import BatchedPotential, Potential
from ppmodels.infer.sampling.chees import CheesSettings, van_der_corput

SMALL = {"num_chains": 16, "num_samples": 150, "warmup_steps": 150}


@pytest.fixture(scope="module")
def chees_run():
    X, y = _data()
    return X, y, mcmc(regression, X, y, kernel="chees", num_chains=32, num_samples=200, warmup_steps=200, seed=0)


def test_chees_matches_the_closed_form_posterior(chees_run):
    X, y, result = chees_run
    assert result.num_chains == 32 and result.get_samples()["beta"].shape == (32 * 200, 3)
    _check_against_exact(result, X, y, tol_sd=0.1)
    assert result.compile["batched"] and not result.notes
    assert result.min_ess() > 1000  # 6,400 draws; NUTS's 2 chains of 500 give about 600 here
    assert 0.0 < result.stats["trajectory_length"] < 1000 * result.stats["step_size"][0]


def test_every_chain_takes_the_same_jittered_number_of_steps(chees_run):
    _, _, result = chees_run
    steps = np.stack(result.stats["leapfrogs"])
    assert (steps == steps[0]).all()  # lockstep
    assert steps[0].min() < steps[0].max()  # jittered: van der Corput's points over (0, 1)
    assert [van_der_corput(n) for n in range(1, 6)] == [0.5, 0.25, 0.75, 0.125, 0.625]


def test_the_same_seed_gives_the_same_draws():
    X, y = _data()
    first = mcmc(regression, X, y, kernel="chees", seed=4, **SMALL).get_samples()["beta"]
    again = mcmc(regression, X, y, kernel="chees", seed=4, **SMALL).get_samples()["beta"]
    other = mcmc(regression, X, y, kernel="chees", seed=5, **SMALL).get_samples()["beta"]
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_a_pyromodule_is_batched_and_agrees_with_the_closed_form():
    X, y = _data()
    result = mcmc(LinearModule(), X, y, kernel="chees", num_chains=32, num_samples=200, warmup_steps=200, seed=1)
    assert result.compile["batched"]
    result.samples["beta"] = result.samples.pop("linear.weight").reshape(32, 200, 3)
    _check_against_exact(result, X, y, tol_sd=0.1)


def test_the_batched_potential_equals_each_chains_own():
    X, y = _data()
    potential = Potential(regression, (X, y), compile="graph", num_chains=8)
    batched = BatchedPotential(potential, 8)
    z = np.random.default_rng(0).standard_normal((8, potential.dim))
    value, grad = batched(z)
    for i in range(8):
        u, g = potential(z[i])
        assert value[i] == pytest.approx(u, rel=1e-5) and np.allclose(grad[i], g, rtol=1e-4, atol=1e-5)


def cholesky_scale(y):
    """A scale through a Cholesky factor that exists only for s > 0 (unconstrained, so a
    chain's leapfrog step can leave the domain)."""
    s = pyro.sample("s", dist.Normal(1.0, 0.5))
    tril = torch.linalg.cholesky(s * torch.eye(2))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.MultivariateNormal(torch.zeros(2), scale_tril=tril), obs=y)


def test_a_chain_outside_the_domain_gets_an_infinite_potential_and_the_others_theirs():
    y = torch.randn(20, 2, generator=torch.Generator().manual_seed(0))
    start = init_to_value(values={"s": torch.tensor(1.0)})
    potential = Potential(cholesky_scale, (y,), compile="graph", num_chains=3, init_strategy=start)
    batched = BatchedPotential(potential, 3)
    z = np.array([[1.0], [-0.5], [2.0]])
    value, grad = batched(z)
    assert np.isinf(value[1]) and np.isnan(grad[1]).all()
    for i in (0, 2):
        assert value[i] == pytest.approx(potential(z[i])[0], rel=1e-5)


def test_an_uncompiled_potential_evaluates_each_chain_and_says_so():
    X, y = _data()
    potential = Potential(regression, (X, y), compile=None, num_chains=2)
    batched = BatchedPotential(potential, 2)
    assert batched.mode is None and "not compiled" in batched.note
    z = np.zeros((2, potential.dim))
    assert np.allclose(batched(z)[0], [potential(z[0])[0]] * 2)


@pytest.mark.filterwarnings("ignore:the 4 chains have not mixed")  # 20 draws each: r-hat's noise, not the point
def test_chains_evaluated_one_by_one_are_warned_of():
    X, y = _data()
    with pytest.warns(
        RuntimeWarning, match=r"kernel='chees' evaluates its 4 chains one after another \(the potential is not compiled"
    ):
        result = mcmc(regression, X, y, kernel="chees", compile=None, num_chains=4, num_samples=20, warmup_steps=60)
    assert result.compile["batched"] is False and "not compiled" in result.notes[0]


def test_chees_refuses_pyros_engine_and_options_it_has_not():
    X, y = _data()
    with pytest.raises(
        ValueError, match=r"kernel='chees' is this library's kernel .*engine must be 'ppmodels', got 'pyro'"
    ):
        mcmc(regression, X, y, kernel="chees", engine="pyro")
    with pytest.raises(
        ValueError, match=r"kernel='chees' has no option 'max_tree_depth'; its options are \[.*'learning_rate'"
    ):
        mcmc(regression, X, y, kernel="chees", max_tree_depth=8)
    with pytest.raises(ValueError, match=r"kernel='chees' has no option 'jitter'"):
        mcmc(regression, X, y, kernel="chees", jitter=0.5)
    with pytest.raises(ValueError, match=r"target_accept_prob must be a number between 0 and 1, got 1.5"):
        CheesSettings(target_accept_prob=1.5)
    with pytest.raises(ValueError, match=r"learning_rate must be a positive number, got 0"):
        CheesSettings(learning_rate=0)
    with pytest.raises(ValueError, match=r"`start_warmup` must be a positive int, but got 0"):
        mcmc(regression, X, y, kernel="chees", start_warmup=0)
    with pytest.raises(ValueError, match=r"kernel='chees' .* num_chains must be at least 2 \(64 by default\), got 1"):
        mcmc(regression, X, y, kernel="chees", num_chains=1)
    with pytest.raises(ValueError, match=r"`kernel` must be one of .*'chees'.*got 'chess'"):
        mcmc(regression, X, y, kernel="chess")


def two_modes():
    """Two narrow modes 16 sds apart: HMC's chains cannot cross between them."""
    x = pyro.sample("x", dist.Normal(0.0, 20.0))
    pyro.factor("modes", dist.Normal(torch.tensor([-8.0, 8.0]), 0.5).log_prob(x).logsumexp(-1))


def alternating(values):
    """An init strategy giving each chain the next of ``values`` in turn."""
    count = iter(range(10**6))

    def strategy(site):
        return torch.tensor(values[next(count) % len(values)])

    return strategy


def test_chains_in_different_modes_are_noted_and_warned_of():
    with pytest.warns(RuntimeWarning, match=r"the 16 chains have not mixed: split r-hat [0-9.]+ > 1.01 at x "):
        result = mcmc(two_modes, kernel="chees", init_strategy=alternating([-8.0, 8.0]), **SMALL)
    assert "have not mixed" in result.notes[-1]
    x = result.get_samples(group_by_chain=True)["x"]
    assert ((x < 0).all(1) | (x > 0).all(1)).all()  # each chain stays in its mode
    assert (x.mean(1) < 0).any() and (x.mean(1) > 0).any()  # the scouts left one chain in each


def far_away():
    pyro.sample("x", dist.Normal(300.0, 0.01))


def test_the_chains_start_where_a_short_nuts_run_found_the_mass():
    """From Pyro's start in (-2, 2), 30,000 sds from the mass: NUTS's chains walk there first,
    each with its own step size, and ChEES's chains start from their draws."""
    result = mcmc(far_away, kernel="chees", seed=2, **SMALL)
    x = result.get_samples()["x"]
    assert abs(float(x.mean()) - 300.0) < 0.002 and 0.009 < float(x.std()) < 0.011
    assert not result.notes


@pytest.mark.reference
@pytest.mark.parametrize("name", posteriordb.names())
def test_chees_on_the_port_matches_the_reference_posterior(name):
    """ChEES-HMC with its defaults (64 chains, 500 warm-up and 1,000 draws each) on every
    posteriordb port: every mean within 0.2 reference sds and every sd within [0.8, 1.2] of
    the reference's, as NUTS is held to. Its r-hat warning (chains not fully mixed) may come,
    and is then in the notes: the answer is held to the same tolerances either way."""
    problem = posteriordb.load(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        result = mcmc(problem.model, *problem.args, kernel="chees", seed=1)
    for warning in caught:
        assert "have not mixed" in str(warning.message) and str(warning.message) in result.notes
    rows = problem.reference.score(problem.stan_draws(result.get_samples()))
    for row in rows:
        assert abs(row["mean_error_sds"]) < 0.2, row
        assert 0.8 < row["sd_ratio"] < 1.2, row
