"""Bayesian networks (ppmodels.models.bnn): the converter, the pair, prediction, known answers."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch import nn

from ppmodels.infer import fit, load, save
from ppmodels.models import BayesianLeNet5, BayesianLinearRegression, BayesianNetwork, to_bayesian
from ppmodels.models._normal import ScalarScaleNormal
from ppmodels.nn import LeNet5

from tolerances import MC_SIGMAS, MEANFIELD_MEAN_SDS, MEANFIELD_SD_RTOL


def _layers():
    return {
        "Linear": (nn.Linear(5, 3), (4, 5)),
        "Conv1d": (nn.Conv1d(2, 4, 3, stride=2, padding=1, dilation=2, groups=2, padding_mode="reflect"), (2, 2, 11)),
        "Conv2d": (nn.Conv2d(2, 4, 3, stride=2, padding=1, padding_mode="circular"), (2, 2, 9, 9)),
        "Conv3d": (nn.Conv3d(1, 2, 2, padding=1), (2, 1, 4, 4, 4)),
        "ConvTranspose1d": (nn.ConvTranspose1d(2, 4, 3, stride=2, output_padding=1, groups=2), (2, 2, 6)),
        "ConvTranspose2d": (
            nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, dilation=1),
            (2, 3, 5, 5),
        ),
        "ConvTranspose3d": (nn.ConvTranspose3d(1, 2, 2, stride=2, bias=False), (2, 1, 3, 3, 3)),
    }


@pytest.mark.parametrize("kind", list(_layers()))
def test_converted_layer_keeps_the_forward_contract_and_leaves_the_input_untouched(kind):
    layer, shape = _layers()[kind]
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    x = torch.randn(shape)
    expected = layer(x)
    bnn = to_bayesian(layer, likelihood="normal", noise_scale=1.0)
    assert type(layer) is getattr(nn, kind)  # the input network is not converted in place
    for k, v in layer.state_dict().items():
        assert torch.equal(v, before[k])
    assert [row[0] for row in bnn.report.converted] == [""]
    # The posterior means start at the network's weights: the mean network is the original.
    torch.testing.assert_close(bnn.posterior_mean_network()(x), expected)
    draw = bnn(x)
    assert draw.shape == expected.shape and not torch.equal(draw, expected)
    assert bnn.predict(x, num_samples=3, seed=0).samples.shape == (3, *expected.shape)


def test_include_exclude_normalisation_and_unsupported_layers_are_reported():
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 8), nn.Linear(8, 3)
    )
    bnn = to_bayesian(net)
    assert [r[0] for r in bnn.report.converted] == ["0", "4", "5"]
    assert [r[:2] for r in bnn.report.deterministic] == [("1", "BatchNorm2d")]
    last = to_bayesian(net, include="5")
    assert [r[0] for r in last.report.converted] == ["5"]
    assert [r[0] for r in last.report.deterministic] == ["0", "1", "4"]
    assert last.posterior.names == ["5.weight", "5.bias"]
    no_conv = to_bayesian(net, exclude=["0", "4"], convert_normalization=True)
    assert [r[0] for r in no_conv.report.converted] == ["1", "5"]
    assert "random" in str(no_conv.report) and "deterministic" in str(no_conv.report)

    with_embedding = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(8, 2))
    report = to_bayesian(with_embedding).report
    assert [r[:2] for r in report.unsupported] == [("0", "Embedding")]
    with pytest.raises(ValueError, match=r"`include` selects '0', a Embedding, which the converter does not support"):
        to_bayesian(with_embedding, include="0")
    with pytest.raises(ValueError, match="nothing to make random"):
        to_bayesian(nn.Sequential(nn.Embedding(3, 2)))


def test_deterministic_parameters_are_trained_and_never_enter_pyros_global_store():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    bnn = to_bayesian(net, include="2")
    x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    first = bnn.net[0].weight.detach().clone()
    fit(bnn, (x, y), epochs=3, batch_size=16, seed=0, progress=False)
    assert not torch.equal(bnn.net[0].weight, first)
    assert len(pyro.get_param_store()) == 0
    other = to_bayesian(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), include="2")
    fit(other, (x, y), epochs=1, batch_size=16, seed=0, progress=False)
    assert not torch.equal(other.net[0].weight, bnn.net[0].weight)  # two models never share parameters


def test_wrong_input_gives_the_error_the_original_network_gives():
    net = LeNet5(10)
    bnn = BayesianLeNet5(10)
    bad = torch.zeros(2, 3, 32, 32)  # 3 channels where 1 is expected
    with pytest.raises(ValueError, match="LeNet5 takes images of shape") as original:
        net(bad)
    for call in (lambda: bnn(bad), lambda: bnn.predict(bad, 2), lambda: bnn.model(bad)):
        with pytest.raises(ValueError) as converted:
            call()
        assert str(converted.value) == str(original.value)


def test_predict_is_seeded_and_the_vectorised_path_equals_one_draw_at_a_time():
    bnn = BayesianLeNet5(10, init_scale=0.1)
    x = torch.rand(5, 1, 32, 32)
    a, b = bnn.predict(x, 7, seed=3), bnn.predict(x, 7, seed=3)
    torch.testing.assert_close(a.samples, b.samples)
    weights = bnn.sample_weights(7, seed=3)
    loop = torch.stack([bnn._call({k: v[i] for k, v in weights.items()}, x).softmax(-1) for i in range(7)])
    torch.testing.assert_close(a.samples, loop, rtol=1e-5, atol=1e-6)
    assert a.samples.std(0).max() > 1e-3  # the draws differ
    torch.testing.assert_close(a.mean.sum(-1), torch.ones(5))


def test_minibatch_likelihood_is_scaled_to_the_data_set_and_the_kl_counted_once():
    bnn = to_bayesian(nn.Linear(3, 2))
    bnn.set_num_data(1000)
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    guide = poutine.trace(bnn.guide).get_trace(x, y)
    model = poutine.trace(poutine.replay(bnn.model, trace=guide)).get_trace(x, y)
    assert model.nodes["y"]["scale"] == pytest.approx(100.0)
    assert model.nodes["weight"]["scale"] == 1.0 and guide.nodes["weight"]["scale"] == 1.0
    weighted = to_bayesian(nn.Linear(3, 2), kl_weight=0.1)
    guide = poutine.trace(weighted.guide).get_trace(x, y)
    model = poutine.trace(poutine.replay(weighted.model, trace=guide)).get_trace(x, y)
    assert model.nodes["bias"]["scale"] == pytest.approx(0.1) and guide.nodes["bias"]["scale"] == pytest.approx(0.1)
    assert model.nodes["y"]["scale"] == 1.0


def test_kl_is_the_closed_form_and_matches_its_monte_carlo_estimate():
    bnn = to_bayesian(nn.Linear(4, 3), prior=dist.Normal(0.5, 2.0), init_scale=0.3)
    closed = 0.0
    for _, loc, scale in bnn.posterior.sites():
        closed = closed + (math.log(2.0) - scale.log() + (scale**2 + (loc - 0.5) ** 2) / (2 * 4.0) - 0.5).sum()
    torch.testing.assert_close(bnn.kl(), closed)
    closed = closed.detach()
    draws = []
    with torch.no_grad():
        for _ in range(2000):  # the traces Trace_ELBO scores: log q(w) - log p(w) at the guide's draw
            guide = poutine.trace(bnn.guide).get_trace(torch.zeros(1, 4))
            model = poutine.trace(poutine.replay(bnn.model, trace=guide)).get_trace(torch.zeros(1, 4))
            log_ratio = 0.0
            for name in bnn.posterior.names:
                w = guide.nodes[name]["value"]
                log_ratio += float(guide.nodes[name]["fn"].log_prob(w) - model.nodes[name]["fn"].log_prob(w))
            draws.append(log_ratio)
    draws = torch.tensor(draws)
    assert abs(draws.mean() - closed.item()) < MC_SIGMAS * draws.std() / math.sqrt(len(draws))


def test_priors_by_distribution_dict_and_callable():
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    by_dict = to_bayesian(net, prior={"1.weight": dist.Laplace(0.0, 0.5)})
    assert isinstance(by_dict.prior("1.weight").base_dist, dist.Laplace)
    assert by_dict.prior("0.weight").base_dist.scale.unique().item() == 1.0
    seen = []
    by_callable = to_bayesian(net, prior=lambda name, shape: seen.append((name, tuple(shape))) or dist.Normal(0.0, 0.3))
    assert seen[0] == ("0.weight", (3, 2))
    assert by_callable.prior("1.bias").event_shape == (1,)
    full = to_bayesian(nn.Linear(2, 3), prior={"weight": dist.Normal(torch.zeros(3, 2), 1.0).to_event(2)})
    assert full.prior("weight").event_shape == (3, 2)


@pytest.mark.parametrize("loc, scale", [(0.0, 1.0), (0.5, 0.1)])
def test_scalar_normal_prior_is_the_expanded_normal(loc, scale):
    # A scalar Normal prior is scored with its one scale (no full-size log and pow per
    # step); it must be the same distribution as torch's expanded Normal.
    prior = to_bayesian(nn.Linear(4, 3), prior=dist.Normal(loc, scale)).prior("weight")
    assert isinstance(prior.base_dist, ScalarScaleNormal)
    reference = dist.Normal(loc, scale).expand((3, 4)).to_event(2)
    w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(prior.log_prob(w), reference.log_prob(w))
    (grad,) = torch.autograd.grad(prior.log_prob(w), w)
    torch.testing.assert_close(grad, -(w.detach() - loc) / scale**2)
    assert prior.event_shape == (3, 4) and prior.sample((5,)).shape == (5, 3, 4)
    torch.testing.assert_close(prior.mean, reference.mean)
    torch.testing.assert_close(prior.variance, reference.variance)
    q = dist.Normal(torch.randn(3, 4), 0.3).to_event(2)
    torch.testing.assert_close(
        torch.distributions.kl_divergence(q, prior), torch.distributions.kl_divergence(q, reference)
    )
    assert prior.base_dist.expand((2, 3, 4)).batch_shape == (2, 3, 4)


def test_bad_priors_and_options_raise_clear_errors():
    net = nn.Linear(2, 3)
    with pytest.raises(TypeError, match=r"`prior` must be None .* but got str"):
        to_bayesian(net, prior="normal")
    with pytest.raises(TypeError, match=r"`prior` for 'weight' must be a torch or Pyro distribution, but got float"):
        to_bayesian(net, prior=lambda name, shape: 1.0)
    with pytest.raises(ValueError, match=r"`prior` names parameters the network does not have: \['fc.weight'\]"):
        to_bayesian(net, prior={"fc.weight": dist.Normal(0.0, 1.0)})
    with pytest.raises(ValueError, match=r"`prior` for 'weight': batch shape \(5,\) cannot be expanded"):
        to_bayesian(net, prior=dist.Normal(torch.zeros(5), 1.0))
    with pytest.raises(ValueError, match=r"`prior` for 'weight': a distribution with event shape \(4,\)"):
        to_bayesian(net, prior=dist.Normal(torch.zeros(4), 1.0).to_event(1))
    with pytest.raises(ValueError, match=r"`likelihood` must be one of \['categorical', 'normal', 'heteroscedastic'\]"):
        to_bayesian(net, likelihood="poisson")
    with pytest.raises(TypeError, match="`net` must be a torch.nn.Module"):
        to_bayesian("lenet")
    with pytest.raises(ValueError, match="`init_scale` must be a positive finite number, but got -1.0"):
        to_bayesian(net, init_scale=-1.0)
    with pytest.raises(TypeError, match="`include` must be a module-path pattern"):
        to_bayesian(net, include=3)
    with pytest.raises(ValueError, match="`noise_scale` applies to likelihood='normal' only"):
        to_bayesian(net, noise_scale=0.1)
    bnn = to_bayesian(net)
    with pytest.raises(ValueError, match=r"`y` must have shape \(4,\) for this network's output, but got \(4, 3\)"):
        bnn.model(torch.zeros(4, 2), torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`x` must hold at least one input, but got shape \(0, 2\)"):
        bnn.predict(torch.zeros(0, 2))
    with pytest.raises(ValueError, match="does not support vectorize_particles=True"):
        fit(
            bnn,
            (torch.zeros(8, 2), torch.zeros(8, dtype=torch.long)),
            epochs=1,
            num_particles=2,
            vectorize_particles=True,
            progress=False,
        )


def test_heteroscedastic_output_split_and_odd_width_error():
    bnn = to_bayesian(nn.Linear(1, 4), likelihood="heteroscedastic")
    mean, scale = bnn.split_output(torch.tensor([[0.0, 1.0, -50.0, 0.0]]))
    assert mean.tolist() == [[0.0, 1.0]] and scale[0, 0] == pytest.approx(1e-4) and scale[0, 1] > 0.69
    prediction = bnn.predict(torch.randn(6, 1), 5, seed=0)
    assert prediction.samples.shape == prediction.scale_samples.shape == (5, 6, 2)
    assert (prediction.variance >= prediction.scale_samples.pow(2).mean(0)).all()
    with pytest.raises(ValueError, match=r"needs an even last output dimension .* shape \(2, 3\)"):
        to_bayesian(nn.Linear(1, 3), likelihood="heteroscedastic").model(torch.zeros(2, 1))


def test_known_answer_bayesian_linear_regression_exact_posterior():
    """One Linear layer with a Normal likelihood of known noise is Bayesian linear
    regression. With an orthogonal design the exact posterior factorises, so the mean-field
    guide can match it: means and standard deviations both."""
    torch.manual_seed(0)
    n, noise = 200, 0.5
    q, _ = torch.linalg.qr(torch.randn(n, 3))
    x = q[:, :2] * math.sqrt(n) * 0.3  # orthogonal columns, also orthogonal to the constant
    x = x - x.mean(0)
    y = x @ torch.tensor([1.0, -0.5]) + 0.3 + noise * torch.randn(n)
    exact = BayesianLinearRegression(2, prior_scale=1.0, noise_scale=noise).exact_posterior(x, y)
    exact_sd = exact["cov"].diagonal().sqrt()
    correlation = exact["cov"] / torch.outer(exact_sd, exact_sd)
    assert (correlation - torch.eye(3, dtype=correlation.dtype)).abs().max() < 1e-3  # (nearly) diagonal

    bnn = to_bayesian(nn.Linear(2, 1), likelihood="normal", noise_scale=noise, init_scale=0.05)
    sched = lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1000, 0.1)  # noqa: E731
    fit(
        bnn,
        (x, y),
        epochs=2000,
        batch_size=n,
        elbo="meanfield",
        num_particles=4,
        lr=0.02,
        seed=0,
        progress=False,
        scheduler=sched,
    )
    loc = torch.cat([bnn.posterior.loc[0].detach().flatten(), bnn.posterior.loc[1].detach()])
    sd = torch.cat([s.detach().flatten() for _, _, s in bnn.posterior.sites()])
    assert ((loc.double() - exact["mean"]).abs() < MEANFIELD_MEAN_SDS * exact_sd).all(), (loc, exact["mean"], exact_sd)
    torch.testing.assert_close(sd.double(), exact_sd, rtol=MEANFIELD_SD_RTOL, atol=0)


def test_checkpoint_roundtrip_reproduces_predictions(tmp_path):
    bnn = BayesianLeNet5(10, init_scale=0.05)
    x = torch.rand(3, 1, 32, 32)
    bnn.set_num_data(100)
    save(tmp_path / "bnn.pt", bnn)
    loaded = load(tmp_path / "bnn.pt")
    assert isinstance(loaded, BayesianLeNet5) and loaded.num_data == 100
    torch.testing.assert_close(loaded.predict(x, 4, seed=1).samples, bnn.predict(x, 4, seed=1).samples)
    custom = BayesianNetwork(nn.Sequential(nn.Linear(2, 2)), prior=dist.Laplace(0.0, 1.0))
    save(tmp_path / "custom.pt", custom)
    into = BayesianNetwork(nn.Sequential(nn.Linear(2, 2)), prior=dist.Laplace(0.0, 1.0))
    load(tmp_path / "custom.pt", into=into)
    torch.testing.assert_close(into.posterior.loc[0], custom.posterior.loc[0])
