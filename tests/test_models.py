import pyro
import pyro.poutine as poutine
import pytest
import torch

from ppmodels.models import CVAE, VAE
from ppmodels.nn import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

SHAPE = (1, 8, 8)


def vae(**kw):
    return VAE(MLPEncoder(SHAPE, 3, hidden_dims=(16,)), MLPDecoder(3, SHAPE, hidden_dims=(16,)), 3, **kw)


def cvae(**kw):
    return CVAE(MLPEncoder(SHAPE, 3, (16,), cond_dim=4), MLPDecoder(3, SHAPE, (16,), cond_dim=4), 3, 4, **kw)


def test_model_and_guide_share_sites_and_plate():
    v = vae()
    x = torch.rand(5, *SHAPE)
    guide = poutine.trace(v.guide).get_trace(x)
    model = poutine.trace(poutine.replay(v.model, trace=guide)).get_trace(x)
    assert guide.nodes["z"]["value"].shape == (5, 3)
    assert model.nodes["x"]["is_observed"] and model.nodes["z"]["value"] is guide.nodes["z"]["value"]
    for trace in (guide, model):
        assert [f.name for f in trace.nodes["z"]["cond_indep_stack"]] == ["data"]


def test_num_data_scales_a_batch_to_the_dataset():
    v = vae()
    x = torch.rand(8, *SHAPE)
    elbo = pyro.infer.TraceMeanField_ELBO()
    pyro.set_rng_seed(1)
    unscaled = elbo.loss(v.model, v.guide, x)
    v.set_num_data(100)
    pyro.set_rng_seed(1)
    scaled = elbo.loss(v.model, v.guide, x)
    assert scaled == pytest.approx(unscaled * 100 / 8, rel=1e-5)
    assert v.state_dict()["_extra_state"] == {"num_data": 100}


@pytest.mark.parametrize(
    "likelihood,kw",
    [
        ("bernoulli", {}),
        ("continuous_bernoulli", {}),
        ("normal", {"scale": 0.3}),
        ("normal", {"scale": "learned"}),
        ("bernoulli", {"decoder_output": "probs"}),
    ],
    ids=["bernoulli", "cont-bernoulli", "normal-fixed", "normal-learned", "bernoulli-probs"],
)
def test_likelihoods_give_finite_losses_and_means_in_range(likelihood, kw):
    v = vae(likelihood=likelihood, **kw)
    if kw.get("decoder_output") == "probs":
        v.decoder.body.append(torch.nn.Sigmoid())
    x = torch.rand(4, *SHAPE)
    loss = pyro.infer.Trace_ELBO().loss(v.model, v.guide, x)
    assert torch.isfinite(torch.tensor(loss))
    mean = v.reconstruct(x)
    assert mean.shape == x.shape
    if likelihood != "normal":
        assert float(mean.min()) >= 0 and float(mean.max()) <= 1
    if kw.get("scale") == "learned":
        assert any(p is v.log_scale for p in v.parameters())


def test_reconstruct_generate_and_seeds():
    v = vae()
    x = torch.rand(4, *SHAPE)
    assert torch.equal(v.reconstruct(x), v.reconstruct(x))  # at the posterior mean: deterministic
    assert torch.equal(v.reconstruct(x, sample=True, seed=3), v.reconstruct(x, sample=True, seed=3))
    assert not torch.equal(v.reconstruct(x, sample=True, seed=3), v.reconstruct(x, sample=True, seed=4))
    assert torch.equal(v.generate(6, seed=1), v.generate(6, seed=1)) and v.generate(6).shape == (6, *SHAPE)


def test_cvae_learned_prior_starts_at_standard_normal_and_generates_per_label():
    c = cvae()
    y = torch.tensor([0, 1, 3])
    prior = c._prior(torch.zeros(3, 1), c._condition(torch.zeros(3, 1), y))
    torch.testing.assert_close(prior.base_dist.scale, torch.ones(3, 3), atol=1e-4, rtol=0)
    assert c.generate(y, seed=0).shape == (3, *SHAPE)
    assert c.generate([2, 2], seed=0).shape == (2, *SHAPE)
    assert cvae(prior="standard").prior_net is None


def test_conv_networks_work_in_the_pair():
    v = VAE(
        ConvEncoder((1, 28, 28), 2, channels=(4, 8), hidden_dim=16),
        ConvDecoder(2, (1, 28, 28), channels=(8, 4), hidden_dim=16),
        2,
    )
    x = torch.rand(3, 1, 28, 28)
    assert torch.isfinite(torch.tensor(pyro.infer.Trace_ELBO().loss(v.model, v.guide, x)))


# -- bad input -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: VAE("enc", MLPDecoder(3, SHAPE), 3), TypeError, r"`encoder` must be a torch.nn.Module, but got 'enc'"),
        (
            lambda: vae(likelihood="poisson"),
            ValueError,
            r"`likelihood` must be one of \['bernoulli', 'continuous_bernoulli', 'normal'\], but got 'poisson'",
        ),
        (
            lambda: VAE(MLPEncoder(SHAPE, 3), MLPDecoder(3, SHAPE), 0),
            ValueError,
            r"`latent_dim` must be a positive int, but got 0",
        ),
        (
            lambda: VAE(MLPEncoder(SHAPE, 3), MLPDecoder(3, SHAPE), True),
            TypeError,
            r"`latent_dim` must be a positive int, but got True",
        ),
        (lambda: vae(scale=0.5), ValueError, r"`scale` applies to likelihood='normal' only"),
        (
            lambda: vae(likelihood="normal", scale=-1.0),
            ValueError,
            r"`scale` must be a positive finite number, but got -1.0",
        ),
        (
            lambda: vae(likelihood="normal", decoder_output="logits"),
            ValueError,
            r"`decoder_output` must be one of \['mean'\]",
        ),
        (lambda: cvae(prior="flat"), ValueError, r"`prior` must be one of \['learned', 'standard'\], but got 'flat'"),
        (
            lambda: MLPEncoder((1, 8, 8), 3, hidden_dims=(0,)),
            ValueError,
            r"`hidden_dims` must be a positive int, but got 0",
        ),
        (
            lambda: ConvEncoder((1, 30, 30), 2),
            ValueError,
            r"`input_shape` must be \(C, H, W\) with H and W divisible by 4",
        ),
        (lambda: MLPEncoder(SHAPE, 2, activation="swish"), ValueError, r"`activation` must be one of \["),
    ],
    ids=[
        "encoder-type",
        "likelihood",
        "latent-zero",
        "latent-bool",
        "scale-bernoulli",
        "scale-negative",
        "decoder-output",
        "cvae-prior",
        "hidden",
        "conv-shape",
        "activation",
    ],
)
def test_constructor_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_decoder_shape_mismatch_says_expected_and_actual():
    v = VAE(MLPEncoder(SHAPE, 3), MLPDecoder(3, (64,)), 3)
    with pytest.raises(
        ValueError, match=r"decoder returned shape \(2, 64\) but the data batch has shape \(2, 1, 8, 8\)"
    ):
        pyro.infer.Trace_ELBO().loss(v.model, v.guide, torch.rand(2, *SHAPE))


def test_encoder_must_return_loc_and_scale():
    v = VAE(torch.nn.Flatten(), MLPDecoder(3, SHAPE), 3)
    with pytest.raises(ValueError, match=r"the encoder must return \(loc, scale\), got Tensor"):
        v.encode(torch.rand(2, *SHAPE))


@pytest.mark.parametrize(
    "y,error,match",
    [
        (torch.tensor([0, 4]), ValueError, r"`y` holds label 4, outside \[0, 4\)"),
        (torch.tensor([-1, 0]), ValueError, r"`y` holds label -1, outside \[0, 4\)"),
        (torch.tensor([0.0, 1.0]), TypeError, r"`y` must hold integer labels, but got dtype torch.float32"),
        (torch.tensor([0, 1, 2]), ValueError, r"`y` must have shape \(2,\) to match the batch, but got \(3,\)"),
        (None, ValueError, r"CVAE needs labels"),
    ],
    ids=["too-high", "negative", "float", "length", "missing"],
)
def test_cvae_label_errors(y, error, match):
    c = cvae()
    with pytest.raises(error, match=match):
        pyro.infer.Trace_ELBO().loss(c.model, c.guide, torch.rand(2, *SHAPE), y)
