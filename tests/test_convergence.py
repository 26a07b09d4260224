"""Stopping on convergence (issue 17): the gradient rule, StopOnConvergence in fit with a
user's own guides, laplace_guide, and compare's vi_stop."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoNormal

from ppmodels.infer import Callback, StopOnConvergence, compare, fit, laplace_guide
from ppmodels.infer.training.convergence import GradientWindow, stationarity_limit


def normal_mean(y):
    """Pyro's style: a function model, a global mean with a normal(0, 100) prior, unit noise."""
    mu = pyro.sample("mu", dist.Normal(0.0, 100.0))
    with pyro.plate("data", len(y)):
        pyro.sample("obs", dist.Normal(mu, 1.0), obs=y)


def exact(y):
    precision = len(y) + 1e-4
    return float(y.sum()) / precision, precision**-0.5


@pytest.fixture
def far_data():
    torch.manual_seed(0)
    return (1000.0 + torch.randn(50),)  # the posterior sits 7,000 of its sds from Pyro's start


def test_a_laplace_guide_stops_on_convergence_at_the_exact_posterior_with_fits_default_lr(far_data):
    guide = laplace_guide(normal_mean, far_data)
    rule = StopOnConvergence()
    result = fit((normal_mean, guide), far_data, epochs=5000, seed=0, progress=False, callbacks=[rule])
    assert rule.converged and result.stopped.startswith("converged: stationary gradients over 200 steps")
    assert result.num_steps < 5000 and result.num_steps % 200 == 0  # it stops at a window's end
    mean, sd = exact(far_data[0])
    posterior = guide.get_posterior()
    loc, var = posterior.loc.detach(), posterior.covariance_matrix.detach()
    assert abs(float(loc[0]) - mean) < 0.05 * sd
    assert float(var[0, 0].sqrt()) == pytest.approx(sd, rel=0.05)


def test_the_learning_rate_is_decreased_by_factor_at_each_stationary_window():
    torch.manual_seed(1)
    y = torch.randn(30)
    pyro.clear_param_store()
    guide = AutoNormal(normal_mean)  # a user's autoguide at Pyro's initialisation
    rule = StopOnConvergence(window=100, factor=0.5, decreases=2)
    seen = []

    class Watch(Callback):
        def on_step_end(self, state):
            seen.append(state.optimizer.param_groups[0]["lr"])

    result = fit((normal_mean, guide), (y,), epochs=3000, lr=0.05, seed=0, progress=False, callbacks=[rule, Watch()])
    assert rule.converged, result.stopped
    assert sorted(set(seen), reverse=True) == pytest.approx([0.05, 0.025, 0.0125])
    mean, sd = exact(y)
    loc, scale = (float(t.detach()) for t in guide._get_loc_and_scale("mu"))
    assert abs(loc - mean) < 0.25 * sd and scale == pytest.approx(sd, rel=0.15)  # the lr ends at 0.0125 = 0.07 sd


def test_training_that_runs_out_of_steps_is_not_called_converged(far_data):
    pyro.clear_param_store()
    rule = StopOnConvergence(window=20)
    result = fit((normal_mean, AutoNormal(normal_mean)), far_data, epochs=60, seed=0, progress=False, callbacks=[rule])
    assert not rule.converged and result.stopped is None and result.num_steps == 60
    message = rule.tested.not_converged_message("meanfield")
    assert message.startswith("meanfield: not converged: over its last 20 steps a parameter's mean gradient is")


def test_the_rule_flags_a_drift_and_passes_noise():
    torch.manual_seed(0)
    p = torch.zeros(50, requires_grad=True)
    noise, drift = GradientWindow(), GradientWindow()
    for _ in range(200):
        p.grad = torch.randn(50)
        noise.add([("p", p)])
        p.grad = torch.randn(50) + 0.5  # a mean gradient of 0.5 sd: 7 standard errors over 200 steps
        drift.add([("p", p)])
    assert noise.stationary() and noise.worst_ratio() < stationarity_limit(50)
    assert not drift.stationary() and drift.worst_ratio() > 5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"window": 5}, r"`window` must be at least 10 steps .* but got 5"),
        ({"factor": 1.5}, r"`factor` must be below 1 .* but got 1.5"),
        ({"decreases": -1}, r"decreases"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StopOnConvergence(**kwargs)


def test_laplace_guide_names_bad_input(far_data):
    with pytest.raises(ValueError, match=r"`family` must be 'fullrank' or 'meanfield', but got 'lowrank'"):
        laplace_guide(normal_mean, far_data, family="lowrank")
    with pytest.raises(TypeError, match=r"`args` must be a tuple of the model's arguments, .* but got list"):
        laplace_guide(normal_mean, list(far_data))


def test_laplace_guide_leaves_only_its_own_parameters_and_names_another_models(far_data):
    def two_means(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 100.0).expand([2]).to_event(1))
        with pyro.plate("data", len(y)):
            pyro.sample("obs", dist.Normal(mu.sum(-1, keepdim=True), 1.0), obs=y.unsqueeze(-1))

    pyro.clear_param_store()
    laplace_guide(normal_mean, far_data)
    assert sorted(pyro.get_param_store().keys()) == ["WhitenedNormal.m", "WhitenedNormal.s", "WhitenedNormal.tril"]
    with pytest.raises(ValueError, match=r"WhitenedNormal.m of shape \(1,\) from another model \(2 latents here\)"):
        laplace_guide(two_means, far_data)


def test_compare_reports_the_steps_and_keeps_the_fixed_schedule_on_request(far_data):
    converged = compare(normal_mean, far_data, guides=("meanfield",), mcmc=())
    method = converged.method("meanfield")
    assert method.steps < 3000 and "| seconds | steps |" in converged.to_markdown()
    assert any(n.startswith(f"stopped on convergence after {method.steps} steps") for n in method.notes)
    fixed = compare(normal_mean, far_data, guides=("meanfield",), mcmc=(), vi_stop="steps", vi_epochs=300)
    assert fixed.method("meanfield").steps == 300
    with pytest.raises(ValueError, match=r"`vi_stop` must be one of \['converged', 'steps'\], but got 'never'"):
        compare(normal_mean, far_data, mcmc=(), vi_stop="never")
