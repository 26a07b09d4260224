"""The facade's bnn_layers and transforms: MindSpore's signatures, defaults, validation, and the
loss being Pyro's ELBO with dnn_factor on the data term and bnn_factor on the KL."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from torch import nn
from torch.nn import functional as F

from ppmodels.probability import TrainOneStepCell, WithLossCell, bnn_layers, transforms
from ppmodels.probability.bnn_layers import (
    ConvReparam,
    DenseLocalReparam,
    DenseReparam,
    NormalPosterior,
    NormalPrior,
    WithBNNLossCell,
)


def test_prior_and_posterior_defaults_and_names():
    prior = NormalPrior()
    assert float(prior.normal._sd_value) == pytest.approx(0.1) and float(prior.normal._mean_value) == 0.0
    posterior = NormalPosterior("w", (200, 300))
    assert dict(posterior.named_parameters()).keys() == {"mean", "untransformed_std"}
    assert float(posterior.std().mean().detach()) == pytest.approx(math.log1p(math.exp(-5)) + 1e-6, rel=0.02)
    assert float(posterior.mean.std().detach()) == pytest.approx(0.1, rel=0.02)
    mean, sd = posterior("get_dist_args")
    assert torch.equal(mean, posterior.mean) and posterior("get_dist_type") == "Normal"
    layer = DenseReparam(3, 2)
    names = dict(layer.named_parameters()).keys()
    assert names == {
        "weight_posterior.mean",
        "weight_posterior.untransformed_std",
        "bias_posterior.mean",
        "bias_posterior.untransformed_std",
    }
    assert layer.has_bias is True and ConvReparam(1, 2, 3).has_bias is False


def test_validation_messages_follow_mindspore():
    with pytest.raises(ValueError, match="Standard deviation should be greater than zero."):
        NormalPrior(std=0)
    with pytest.raises(TypeError, match="The type of `name` should be `str`"):
        NormalPosterior(1, (2,))
    with pytest.raises(TypeError, match="The type of `shape` should be `tuple` or `list`"):
        NormalPosterior("w", 3)
    with pytest.raises(TypeError, match="The type of `loc_mean` must be `int or float`, but got bool"):
        NormalPosterior("w", (2,), loc_mean=True)
    with pytest.raises(TypeError, match="The value of `untransformed_scale_std` should be >= 0"):
        NormalPosterior("w", (2,), untransformed_scale_std=-1)
    NormalPosterior("w", (2,), loc_std=0)  # 0 is accepted, as in MindSpore
    with pytest.raises(ValueError, match="The type of `activation` is wrong."):
        DenseReparam(2, 3, activation=5)
    with pytest.raises(TypeError, match="The type of distribution of `weight_prior_fn` should be `normal`"):
        DenseReparam(2, 3, weight_prior_fn=nn.Linear(1, 1))
    with pytest.raises(TypeError, match="The input form of `bias_prior_fn` is incorrect"):
        DenseReparam(2, 3, bias_prior_fn=lambda a: a)
    with pytest.raises(TypeError, match="The type of `weight_posterior_fn` should be `NormalPosterior`"):
        DenseReparam(2, 3, weight_posterior_fn=lambda: None)
    with pytest.raises(ValueError, match="Attr 'pad_mode' of 'Conv2d' Op passed full, should be one of values in"):
        ConvReparam(1, 2, 3, pad_mode="full")
    with pytest.raises(TypeError, match="The type of `dnn_factor` must be `int` or `float`, but got bool"):
        WithBNNLossCell(DenseReparam(2, 3), nn.MSELoss(), dnn_factor=True)
    with pytest.raises(ValueError, match="The value of `bnn_factor` should >= 0, but got -1"):
        WithBNNLossCell(DenseReparam(2, 3), nn.MSELoss(), bnn_factor=-1)
    with pytest.raises(TypeError, match="The backbone must be Cell type"):
        WithBNNLossCell("net", nn.MSELoss())


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_conv_same_padding_gives_ceil_of_size_over_stride(stride):
    layer = ConvReparam(2, 4, 4, stride=stride, pad_mode="same", has_bias=True)
    assert layer(torch.zeros(1, 2, 11, 7)).shape == (1, 4, math.ceil(11 / stride), math.ceil(7 / stride))
    assert ConvReparam(2, 4, 3, pad_mode="valid")(torch.zeros(1, 2, 9, 9)).shape == (1, 4, 7, 7)
    assert ConvReparam(2, 4, 3, pad_mode="pad", padding=(1, 0, 2, 2))(torch.zeros(1, 2, 9, 9)).shape == (1, 4, 8, 11)


def test_direct_calls_draw_from_the_posterior():
    layer = DenseReparam(4, 3, activation="relu")
    with torch.no_grad():
        layer.weight_posterior.untransformed_std.fill_(-30.0)  # a (numerically) point posterior
        layer.bias_posterior.untransformed_std.fill_(-30.0)
    x = torch.randn(5, 4)
    expected = F.relu(x @ layer.weight_posterior.mean.T + layer.bias_posterior.mean)
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=0)
    local = DenseLocalReparam(4, 3)
    with torch.no_grad():
        draws = torch.stack([local(x) for _ in range(4000)])
        mean = x @ local.weight_posterior.mean.T + local.bias_posterior.mean
        var = x.pow(2) @ local.weight_posterior.std().pow(2).T + local.bias_posterior.std().pow(2)
    # Monte Carlo: means within 4 standard errors, variances within 15% (4000 draws)
    assert ((draws.mean(0) - mean).abs() < 4 * (var / 4000).sqrt()).all()
    torch.testing.assert_close(draws.var(0), var, rtol=0.15, atol=0)


def test_compute_kl_loss_is_the_closed_form_kl_q_p():
    layer = DenseReparam(3, 2, weight_prior_fn=lambda: NormalPrior(mean=0.5, std=2.0))
    q_mu, q_sd = layer.weight_posterior.mean, layer.weight_posterior.std()
    weight_kl = (math.log(2.0) - q_sd.log() + (q_sd**2 + (q_mu - 0.5) ** 2) / 8.0 - 0.5).sum()
    b_mu, b_sd = layer.bias_posterior.mean, layer.bias_posterior.std()
    bias_kl = (math.log(0.1) - b_sd.log() + (b_sd**2 + b_mu**2) / 0.02 - 0.5).sum()
    torch.testing.assert_close(layer.compute_kl_loss(), weight_kl + bias_kl)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = ConvReparam(1, 2, 3, pad_mode="valid", has_bias=True)
        self.fc = DenseReparam(2 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).flatten(1))


def test_with_bnn_loss_cell_is_trace_elbo_with_the_factors_where_they_belong():
    net = _Net()
    x, y = torch.randn(8, 1, 6, 6), torch.randint(0, 3, (8,))
    cell = WithBNNLossCell(net, nn.CrossEntropyLoss(), dnn_factor=250, bnn_factor=0.3)
    pyro.set_rng_seed(1)
    loss = cell(x, y)
    pyro.set_rng_seed(1)
    guide = poutine.trace(cell.core().guide).get_trace(x, y)
    weights = {name: site["value"] for name, site in guide.nodes.items() if site["type"] == "sample"}
    assert sorted(weights) == ["conv.bias", "conv.weight", "fc.bias", "fc.weight"]
    # the same draws by hand: the data term, and log q - log p of the draws
    conv, fc = net.conv, net.fc
    hidden = F.relu(F.conv2d(x, weights["conv.weight"], weights["conv.bias"]))
    logits = F.linear(hidden.flatten(1), weights["fc.weight"], weights["fc.bias"])
    log_ratio = 0.0
    for layer, prefix in ((conv, "conv"), (fc, "fc")):
        for role in ("weight", "bias"):
            post, prior = getattr(layer, f"{role}_posterior"), getattr(layer, f"{role}_prior").normal
            w = weights[f"{prefix}.{role}"]
            log_ratio = log_ratio + torch.distributions.Normal(post.mean, post.std()).log_prob(w).sum()
            log_ratio = log_ratio - prior.distribution().log_prob(w).sum()
    expected = 250 * F.cross_entropy(logits, y) + 0.3 * log_ratio
    torch.testing.assert_close(loss, expected)
    before = net.fc.weight_posterior.mean.detach().clone()
    TrainOneStepCell(cell, torch.optim.Adam(net.parameters(), lr=1e-2))(x, y)  # one step trains
    assert not torch.equal(net.fc.weight_posterior.mean, before)


def _lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, bias=False),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 10 * 10, 10),
    )


def test_transform_to_bnn_model_replaces_layers_in_place_and_keeps_the_optimizer_settings():
    net = _lenet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    trainable = TrainOneStepCell(WithLossCell(net, nn.CrossEntropyLoss()), optimizer)
    bnn = transforms.TransformToBNN(trainable, 1437, 1).transform_to_bnn_model()
    assert [type(m).__name__ for m in net] == [
        "ConvReparam",
        "ReLU",
        "MaxPool2d",
        "ConvReparam",
        "ReLU",
        "Flatten",
        "DenseReparam",
    ]
    assert net[0].has_bias is False and net[3].has_bias is True and net[3].padding == (1, 1, 1, 1)
    assert isinstance(bnn.network, WithBNNLossCell) and bnn.network.dnn_factor == 1437
    assert isinstance(bnn.optimizer, torch.optim.SGD)
    assert bnn.optimizer.defaults["lr"] == 0.05 and bnn.optimizer.defaults["momentum"] == 0.9
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    assert net(x).shape == (4, 10)
    assert torch.isfinite(bnn(x, y))


def test_transform_to_bnn_layer_accepts_both_keyword_spellings_and_checks_types():
    for kwargs in (
        {"dnn_layer_type": nn.Conv2d, "bnn_layer_type": ConvReparam},
        {"dnn_layer": nn.Conv2d, "bnn_layer": ConvReparam},
    ):
        net = _lenet()
        trainable = TrainOneStepCell(WithLossCell(net, nn.CrossEntropyLoss()), torch.optim.Adam(net.parameters()))
        transforms.TransformToBNN(trainable).transform_to_bnn_layer(**kwargs)
        assert [type(m).__name__ for m in net][::3] == ["ConvReparam", "ConvReparam", "Linear"]
    transformer = transforms.TransformToBNN(trainable)
    with pytest.raises(ValueError, match=r" 'dnn_layer'<class 'torch.nn.modules.linear.Bilinear'>, should be one of"):
        transformer.transform_to_bnn_layer(nn.Bilinear, DenseReparam)
    with pytest.raises(ValueError, match=r" 'bnn_layer'<class 'torch.nn.modules.linear.Linear'>, should be one of"):
        transformer.transform_to_bnn_layer(nn.Linear, nn.Linear)
    with pytest.raises(TypeError, match="The type of `bnn_factor` must be `int` or `float`"):
        transforms.TransformToBNN(trainable, 1, "1")
    with pytest.raises(TypeError, match="`trainable_dnn` must be a TrainOneStepCell"):
        transforms.TransformToBNN(net)
    reflect = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"))
    trainable = TrainOneStepCell(WithLossCell(reflect, nn.MSELoss()), torch.optim.Adam(reflect.parameters()))
    with pytest.raises(ValueError, match="ConvReparam pads with zeros only, but the layer has padding_mode='reflect'"):
        transforms.TransformToBNN(trainable).transform_to_bnn_model()
    assert bnn_layers.normal_post_fn("w", [2]).mean.shape == (2,)
