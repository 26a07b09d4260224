import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ppmodels.data import digits
from ppmodels.infer import fit
from ppmodels.models import VAE, VAEGAN, sharpness
from ppmodels.nn import MLPDecoder, MLPEncoder


def make():
    torch.manual_seed(0)
    vae = VAE(MLPEncoder((1, 8, 8), 4, (32,)), MLPDecoder(4, (1, 8, 8), (32,)), 4)
    return VAEGAN(vae, nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1)))


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def test_adversary_step_trains_only_the_discriminator():
    pair = make()
    x = digits().train_x[:64]
    vae_before, d_before = snapshot(pair.vae), snapshot(pair.discriminator)
    loss_before = pair.discriminator_loss(x).item()
    for _ in range(20):
        pair.adversary_step(x)
    assert all(torch.equal(a, b) for a, b in zip(vae_before, pair.vae.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(d_before, pair.discriminator.parameters()))
    assert pair.discriminator_loss(x).item() < loss_before
    assert {id(p) for p in pair.elbo_parameters()} == {id(p) for p in pair.vae.parameters()}


def test_fit_alternates_discriminator_and_elbo_steps():
    pair = make()
    data = digits().train_x[:256]
    vae_before, d_before = snapshot(pair.vae), snapshot(pair.discriminator)
    result = fit(pair, data, epochs=2, batch_size=64, seed=0)
    assert pair.vae.num_data == 256 and len(result.train_loss) == 2
    assert all(not torch.equal(a, b) for a, b in zip(vae_before, pair.vae.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(d_before, pair.discriminator.parameters()))
    assert pair.generate(3, seed=0).shape == (3, 1, 8, 8)


def test_generator_term_is_a_factor_in_the_model():
    import pyro.poutine as poutine

    pair = make()
    x = digits().train_x[:8]
    guide = poutine.trace(pair.guide).get_trace(x)
    model = poutine.trace(poutine.replay(pair.model, trace=guide)).get_trace(x)
    gan = model.nodes["gan"]
    assert gan["type"] == "sample" and gan["is_observed"]
    recon = pair.vae.likelihood_dist(pair.vae.decoder(guide.nodes["z"]["value"])).mean
    # log D(recon) is part of the factor; with the prior-sample term it is below it
    assert bool((gan["fn"].log_factor <= 0).all()) and gan["fn"].log_factor.shape == (8,)
    assert bool((gan["fn"].log_factor <= F.logsigmoid(pair._logits(recon)) + 1e-6).all())


def test_sharpness_falls_when_images_are_blurred():
    images = digits(image_size=28).test_x[:50]
    blurred = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    assert bool((sharpness(blurred) < sharpness(images)).all())
    assert sharpness(images).shape == (50,)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"vae": nn.Linear(2, 2)}, TypeError, r"`vae` must be a ppmodels.models.VAE, but got Linear"),
        ({"gan_weight": -1.0}, ValueError, r"`gan_weight` must be a positive finite number, but got -1.0"),
        ({"discriminator": "D"}, TypeError, r"`discriminator` must be a torch.nn.Module, but got 'D'"),
        ({"discriminator_steps": -1}, ValueError, r"`discriminator_steps` must be a non-negative int, but got -1"),
    ],
    ids=["vae", "weight", "discriminator", "steps"],
)
def test_bad_arguments(kwargs, error, match):
    base = make()
    args = {"vae": base.vae, "discriminator": base.discriminator, **kwargs}
    with pytest.raises(error, match=match):
        VAEGAN(**args)
