"""Function data for neural processes, the GP oracle, and the NeuralProcess pair."""

import math

import pytest
import torch
from pyro import poutine

from ppmodels.data import ContextTargetBatches, gp_functions, kernel_matrix, sine_functions
from ppmodels.infer import fit
from ppmodels.models import NeuralProcess

from tolerances import MC_SIGMAS


def test_kernels_closed_forms():
    x1, x2 = torch.tensor([[[0.0]]]), torch.tensor([[[0.3]]])
    ell, s = torch.tensor([0.3]), torch.tensor([2.0])
    assert kernel_matrix("rbf", x1, x2, ell, s).item() == pytest.approx(4 * math.exp(-0.5))
    r = math.sqrt(5)
    assert kernel_matrix("matern", x1, x2, ell, s).item() == pytest.approx(4 * (1 + r + r * r / 3) * math.exp(-r))
    assert kernel_matrix("periodic", x1, x2 + 1.0, ell, s).item() == pytest.approx(
        4 * math.exp(-2 * math.sin(math.pi * 1.3) ** 2 / 0.09), rel=1e-4
    )


@pytest.mark.parametrize("kernel", ["rbf", "matern", "periodic"])
def test_gp_draws_whiten_to_standard_normal_under_their_own_covariance(kernel):
    data = gp_functions(kernel, num_functions=400, num_points=20, noise=0.05, seed=3)
    assert data.x.min() >= -2 and data.x.max() <= 2
    assert 0.1 <= float(data.lengthscale.min()) and float(data.lengthscale.max()) <= 0.6
    cov = kernel_matrix(kernel, data.x.double(), data.x.double(), data.lengthscale.double(), data.scale.double())
    cov = cov + (0.05**2 + 1e-8) * torch.eye(20, dtype=torch.float64)
    white = torch.linalg.solve_triangular(torch.linalg.cholesky(cov), data.y.double(), upper=False).flatten()
    n = white.numel()
    assert abs(float(white.mean())) < MC_SIGMAS / math.sqrt(n)
    assert abs(float(white.var()) - 1) < MC_SIGMAS * math.sqrt(2 / n)


def test_gp_oracle_is_the_conditional_of_the_joint_gaussian():
    data = gp_functions("rbf", num_functions=3, num_points=12, seed=0)
    index = torch.arange(3)
    xc, yc, xt, yt = data.x[:, :5], data.y[:, :5], data.x[:, 5:], data.y[:, 5:]
    mean, cov = data.gp_predictive(index, xc, yc, xt)
    joint_cov = kernel_matrix("rbf", data.x.double(), data.x.double(), data.lengthscale.double(), data.scale.double())
    joint_cov = joint_cov + data.noise**2 * torch.eye(12, dtype=torch.float64)
    joint = torch.distributions.MultivariateNormal(torch.zeros(3, 12, dtype=torch.float64), joint_cov)
    marginal = torch.distributions.MultivariateNormal(torch.zeros(3, 5, dtype=torch.float64), joint_cov[:, :5, :5])
    conditional = torch.distributions.MultivariateNormal(mean, cov)
    expected = joint.log_prob(data.y.squeeze(-1).double()) - marginal.log_prob(yc.squeeze(-1).double())
    torch.testing.assert_close(conditional.log_prob(yt.squeeze(-1).double()), expected)


def test_context_target_batches():
    data = sine_functions(num_functions=50, num_points=30, seed=0)
    batches = ContextTargetBatches(data, batch_size=16, min_context=3, max_context=10, seed=0)
    sizes = []
    for xc, yc, xt, _ in batches:
        assert xt.shape == (len(xt), 30, 1) and yc.shape == xc.shape
        sizes.append(xc.shape[1])
        # the context is a subset of the targets
        assert bool((xc.unsqueeze(2) == xt.unsqueeze(1)).all(-1).any(2).all())
    assert len(sizes) == len(batches) == 4 and all(3 <= s <= 10 for s in sizes)
    with pytest.raises(ValueError, match=r"`min_context` \(3\) <= `max_context` \(40\) <= points per function \(30\)"):
        ContextTargetBatches(data, max_context=40)


def _batch(functions=4, context=5, points=20, seed=0):
    data = gp_functions("rbf", num_functions=functions, num_points=points, seed=seed)
    return data.x[:, :context], data.y[:, :context], data.x, data.y


def test_model_uses_the_context_posterior_as_prior_and_the_guide_the_target_posterior():
    npr = NeuralProcess(hidden=16, latent_dim=4)
    xc, yc, xt, yt = _batch()
    guide = poutine.trace(npr.guide).get_trace(xc, yc, xt, yt)
    model = poutine.trace(poutine.replay(npr.model, trace=guide)).get_trace(xc, yc, xt, yt)
    z = guide.nodes["z"]["value"]
    assert z.shape == (4, 4)
    torch.testing.assert_close(model.nodes["z"]["fn"].log_prob(z), npr.latent(xc, yc).log_prob(z))
    torch.testing.assert_close(guide.nodes["z"]["fn"].log_prob(z), npr.latent(xt, yt).log_prob(z))
    assert model.nodes["y"]["fn"].event_shape == (20, 1)


def test_importance_weighted_log_likelihood_single_sample_is_unbiased_for_the_elbo_and_rises_with_k():
    npr = NeuralProcess(hidden=16, latent_dim=4)
    xc, yc, xt, yt = _batch(functions=2)
    one = torch.stack([npr.log_likelihood(xc, yc, xt, yt, 1, seed=s) for s in range(400)])  # (400, 2)
    prior, q = npr.latent(xc, yc), npr.latent(xt, yt)
    with torch.no_grad():
        z = q.sample((20000,))
        mean, scale = npr.decode(xt, z, npr._representation(xc, yc, xt))
        elbo = (
            torch.distributions.Normal(mean, scale).log_prob(yt).sum((-2, -1)) + prior.log_prob(z) - q.log_prob(z)
        ).mean(0) / 20
    assert ((one.mean(0) - elbo).abs() < MC_SIGMAS * one.std(0) / math.sqrt(400)).all()
    many = npr.log_likelihood(xc, yc, xt, yt, 2000, seed=0)
    assert (many > elbo).all()


def test_predict_shapes_and_seeding():
    npr = NeuralProcess(hidden=16, latent_dim=4, deterministic_path=False)
    attentive = NeuralProcess(hidden=16, latent_dim=4, attention=True)
    xc, yc, xt, _ = _batch()
    a, b = npr.predict(xc, yc, xt, 7, seed=1), npr.predict(xc, yc, xt, 7, seed=1)
    assert a.mean_samples.shape == a.scale_samples.shape == (7, 4, 20, 1) and a.std.shape == (4, 20, 1)
    torch.testing.assert_close(a.mean_samples, b.mean_samples)
    assert (a.std**2 >= a.scale_samples.pow(2).mean(0) - 1e-6).all()
    assert attentive.predict(xc, yc, xt, 3, seed=0).mean_samples.shape == (3, 4, 20, 1)
    with pytest.raises(ValueError, match="`attention` acts on the deterministic path"):
        NeuralProcess(deterministic_path=False, attention=True)


def test_bad_input_messages():
    npr = NeuralProcess(hidden=8, latent_dim=2)
    xc, yc, xt, yt = _batch()
    with pytest.raises(ValueError, match=r"`y_context` must have shape \(4, 5, 1\) to match `x_context` \(4, 5, 1\)"):
        npr.model(xc, yc[:, :4], xt, yt)
    with pytest.raises(ValueError, match=r"`x_target` must have shape \(functions, points, 1\), but got \(4, 20\)"):
        npr.predict(xc, yc, xt.squeeze(-1))
    with pytest.raises(ValueError, match=r"`x_context` is empty \(0 points\)"):
        npr.predict(xc[:, :0], yc[:, :0], xt)
    with pytest.raises(ValueError, match="`y_target` holds NaN or infinite values"):
        npr.log_likelihood(xc, yc, xt, torch.full_like(yt, float("nan")))
    data = gp_functions("rbf", num_functions=8, num_points=10, seed=0)
    data.y[3, 4] = float("nan")
    with pytest.raises(
        ValueError, match=r"`data` holds NaN or infinite values: the first bad sample is index \d+ \(in reading order\)"
    ):
        fit(npr, ContextTargetBatches(data, batch_size=8, max_context=5), epochs=1, progress=False)
    with pytest.raises(TypeError, match="`x_context` must be a torch.Tensor"):
        npr.predict([1.0], yc, xt)
