"""The MindSpore-named facade: signatures, returns, errors and training through fit."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ppmodels.data import digits
from ppmodels.probability import TrainOneStepCell, WithLossCell, dpn, infer

from tolerances import FACADE_LOSS_RTOL

IMAGE_SHAPE = (-1, 1, 8, 8)


class Encoder(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU())

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, hidden=32, extra=0):
        super().__init__()
        self.fc = nn.Linear(hidden, 64)

    def forward(self, z):
        return torch.sigmoid(self.fc(z)).reshape(IMAGE_SHAPE)


class CondEncoder(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64 + 10, hidden), nn.ReLU())

    def forward(self, x, y):
        return self.net(torch.cat([x.flatten(1), nn.functional.one_hot(y, 10).float()], 1))


@pytest.fixture(scope="module")
def data():
    return digits()


def loader(d, batch_size=128):
    return DataLoader(TensorDataset(d.train_x, d.train_y), batch_size=batch_size, shuffle=True)


def make_vae(hidden=32, latent=4):
    torch.manual_seed(0)
    return dpn.VAE(Encoder(hidden), Decoder(hidden), hidden_size=hidden, latent_size=latent)


def test_vae_call_returns_mindspores_tuple():
    vae = make_vae()
    x = torch.rand(5, 1, 8, 8)
    recon_x, x_out, mu, std = vae(x)
    assert recon_x.shape == x.shape and x_out is x
    assert mu.shape == std.shape == (5, 4) and bool((std > 0).all())
    log_var = vae.dense2(vae.encoder(x))
    torch.testing.assert_close(std, torch.exp(0.5 * log_var))
    assert vae.dense3.in_features == 4 and vae.dense3.out_features == 32
    assert float(vae.dense1.weight.detach().std()) == pytest.approx(0.01, rel=0.3)  # MindSpore's normal(0.01) init


def test_generate_and_reconstruct_sample():
    vae = make_vae()
    assert vae.generate_sample(6, IMAGE_SHAPE).shape == (6, 1, 8, 8)
    assert vae.generate_sample(6, (6, 1, 8, 8)).shape == (6, 1, 8, 8)
    x = torch.rand(3, 1, 8, 8)
    a, b = vae.reconstruct_sample(x), vae.reconstruct_sample(x)
    assert a.shape == x.shape and not torch.equal(a, b)  # it samples z, as MindSpore does
    with pytest.raises(ValueError, match=r"^The shape must be \(generate_nums, C, H, W\) or \(-1, C, H, W\)\.$"):
        vae.generate_sample(6, (5, 1, 8, 8))
    with pytest.raises(ValueError, match=r"The shape must be"):
        vae.generate_sample(6, (-1, 64))
    with pytest.raises(ValueError, match=r"`generate_nums` must be a positive int, but got 0"):
        vae.generate_sample(0, IMAGE_SHAPE)


@pytest.mark.parametrize(
    "args,error,match",
    [
        (("enc", Decoder(), 32, 4), TypeError, r"^The encoder and decoder must be Cell type"),
        ((Encoder(), None, 32, 4), TypeError, r"decoder=NoneType"),
        ((Encoder(), Decoder(), 32.0, 4), TypeError, r"`hidden_size` must be a positive int, but got 32.0"),
        ((Encoder(), Decoder(), True, 4), TypeError, r"`hidden_size` must be a positive int, but got True"),
        ((Encoder(), Decoder(), 32, 0), ValueError, r"`latent_size` must be a positive int, but got 0"),
        (
            (Encoder(), Decoder(), 32, 40),
            ValueError,
            r"^The latent_size must be less than or equal to the hidden_size\.$",
        ),
    ],
    ids=["encoder", "decoder", "float-size", "bool-size", "zero-latent", "latent-gt-hidden"],
)
def test_vae_validation(args, error, match):
    with pytest.raises(error, match=match):
        dpn.VAE(*args)


def test_elbo_is_squared_error_plus_analytic_kl():
    loss = infer.ELBO(latent_prior="Normal", output_prior="Normal")
    x, recon = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    mu, std = torch.randn(3, 4), torch.rand(3, 4) + 0.5
    expected = ((x - recon) ** 2).sum() + (0.5 * (mu**2 + std**2 - 1) - std.log()).sum()
    torch.testing.assert_close(loss((recon, x, mu, std), None), expected)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"latent_prior": "Laplace"}, r"^The values of latent_prior now only support Normal"),
        ({"output_prior": "Poisson"}, r"^The values of output_dis now only support Normal"),
        ({"estimator": "elbow"}, r"unknown ELBO estimator 'elbow'; valid names are"),
    ],
    ids=["latent", "output", "estimator"],
)
def test_elbo_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        infer.ELBO(**kwargs)


def test_svi_validation():
    vae = make_vae()
    opt = torch.optim.Adam(vae.parameters())
    with pytest.raises(TypeError, match=r"^The loss function for variational inference must be ELBO\.$"):
        infer.SVI(WithLossCell(vae, nn.MSELoss()), opt)
    with pytest.raises(TypeError, match=r"^The optimizer must be Cell type"):
        infer.SVI(WithLossCell(vae, infer.ELBO()), "adam")
    with pytest.raises(AttributeError, match=r"must have a _loss_fn attribute"):
        infer.SVI(vae, opt)
    svi = infer.SVI(WithLossCell(vae, infer.ELBO()), opt)
    assert svi.get_train_loss() == 0.0
    with pytest.raises(ValueError, match=r"`epochs` must be a positive int, but got 0"):
        svi.run([torch.rand(4, 1, 8, 8)], epochs=0)
    with pytest.raises(TypeError, match=r"`epochs` must be a positive int, but got 1.5"):
        svi.run([torch.rand(4, 1, 8, 8)], epochs=1.5)
    with pytest.raises(TypeError, match=r"The train_dataset must be re-iterable"):
        svi.run(iter([torch.rand(4, 1, 8, 8)]), epochs=1)
    with pytest.raises(ValueError, match=r"The train_dataset is empty"):
        svi.run([], epochs=1)


def test_svi_trains_the_core_pair(data):
    vae = make_vae()
    svi = infer.SVI(WithLossCell(vae, infer.ELBO()), torch.optim.Adam(vae.trainable_params(), lr=1e-3))
    trained = svi.run(loader(data), epochs=4, seed=0)
    assert trained is vae
    assert isinstance(svi.get_train_loss(), np.floating)
    assert svi.result.estimator == "trace" and svi.result.train_loss[-1] < svi.result.train_loss[0]


def test_get_train_loss_is_mindspores_squared_error_plus_kl_per_sample(data):
    """With the parameters held still (lr=0), Pyro's Trace_ELBO run through fit, converted
    back by get_train_loss, must equal MindSpore's loss (SSE + KL per sample) evaluated directly."""
    vae = make_vae()
    net_with_loss = WithLossCell(vae, infer.ELBO())
    svi = infer.SVI(net_with_loss, torch.optim.SGD(vae.parameters(), lr=0.0))
    svi.run(loader(data), epochs=3, seed=0)
    with torch.no_grad():
        direct = [float(net_with_loss(x, y)) for _ in range(3) for x, y in loader(data, 512)]
    expected = sum(direct) / (3 * len(data.train_x))
    assert float(svi.get_train_loss()) == pytest.approx(expected, rel=FACADE_LOSS_RTOL)


@pytest.mark.parametrize(
    "make_batches",
    [
        lambda d: [
            {"image": d.train_x[i : i + 64].numpy(), "label": d.train_y[i : i + 64].numpy()} for i in range(0, 256, 64)
        ],
        lambda d: [(d.train_x[i : i + 64], d.train_y[i : i + 64]) for i in range(0, 256, 64)],
        lambda d: [d.train_x[i : i + 64] for i in range(0, 256, 64)],
    ],
    ids=["mindspore-dicts", "tuples", "tensors"],
)
def test_run_accepts_any_iterable_of_batches(data, make_batches):
    vae = make_vae()
    svi = infer.SVI(WithLossCell(vae, infer.ELBO()), torch.optim.Adam(vae.parameters()))
    svi.run(make_batches(data), epochs=2)
    assert svi.result.num_data == 256 and svi.get_train_loss() > 0


def test_run_accepts_a_mindspore_like_dataset(data):
    class Dataset:
        def create_dict_iterator(self, num_epochs=1):
            for i in range(0, 128, 32):
                yield {"image": data.train_x[i : i + 32], "label": data.train_y[i : i + 32]}

    vae = make_vae()
    svi = infer.SVI(WithLossCell(vae, infer.ELBO()), torch.optim.Adam(vae.parameters()))
    svi.run(Dataset(), epochs=1)
    assert svi.result.num_data == 128


def test_bernoulli_output_prior_and_estimator_choice(data):
    vae = make_vae()
    svi = infer.SVI(
        WithLossCell(vae, infer.ELBO(output_prior="Bernoulli", estimator="meanfield")),
        torch.optim.Adam(vae.parameters()),
    )
    svi.run(loader(data), epochs=2)
    assert svi.result.estimator == "meanfield" and vae.core("Bernoulli").likelihood == "bernoulli"


class GanLoss(infer.ELBO):
    """The seed's VaeGanLoss pattern: ELBO's pieces plus an extra term."""

    def __init__(self):
        super().__init__()
        self.mse = nn.MSELoss(reduction="sum")

    def forward(self, data, label):
        recon_x, x, mu, std = data
        extra = self.mse(recon_x.mean(), torch.tensor(0.5))
        kl = self.posterior("kl_loss", "Normal", self.zeros(mu), self.zeros(mu) + 1, mu, std)
        return extra + self.recon_loss(x, recon_x) + self.sum(kl)


def test_an_elbo_subclass_adding_terms_trains_through_svi(data):
    vae = make_vae()
    svi = infer.SVI(WithLossCell(vae, GanLoss()), torch.optim.Adam(vae.parameters(), lr=1e-3))
    svi.run(loader(data), epochs=3, seed=0)
    losses = svi.result.train_loss
    assert losses[-1] < losses[0]
    assert float(svi.get_train_loss()) == pytest.approx(losses[-1])


def test_conditional_vae(data):
    torch.manual_seed(0)
    cvae = dpn.ConditionalVAE(CondEncoder(), Decoder(), hidden_size=32, latent_size=4, num_classes=10)
    assert cvae.dense3.in_features == 14
    x, y = data.train_x[:6], data.train_y[:6]
    recon_x, x_out, mu, std = cvae(x, y)
    assert recon_x.shape == x.shape and mu.shape == (6, 4)
    svi = infer.SVI(WithLossCell(cvae, infer.ELBO()), torch.optim.Adam(cvae.parameters()))
    svi.run(loader(data), epochs=2)
    assert svi.result.train_loss[-1] < svi.result.train_loss[0]
    labels = torch.arange(8).repeat(2)
    assert cvae.generate_sample(labels, 16, IMAGE_SHAPE).shape == (16, 1, 8, 8)
    assert cvae.reconstruct_sample(x, y).shape == x.shape
    with pytest.raises(ValueError, match=r"`y` holds label 10, outside \[0, 10\)"):
        cvae(x, torch.full((6,), 10))
    with pytest.raises(ValueError, match=r"The sample_y must have shape \(16,\)"):
        cvae.generate_sample(torch.arange(8), 16, IMAGE_SHAPE)
    with pytest.raises(ValueError, match=r"`num_classes` must be a positive int, but got 0"):
        dpn.ConditionalVAE(CondEncoder(), Decoder(), 32, 4, 0)


def test_train_one_step_cell_returns_the_loss_before_the_update():
    vae = make_vae()
    step = TrainOneStepCell(WithLossCell(vae, infer.ELBO()), torch.optim.SGD(vae.parameters(), lr=1e-3))
    x = torch.rand(8, 1, 8, 8)
    torch.manual_seed(1)
    expected = WithLossCell(vae, infer.ELBO())(x, None).detach()
    torch.manual_seed(1)
    before = [p.detach().clone() for p in vae.parameters()]
    assert torch.equal(step(x, None), expected)
    assert any(not torch.equal(a, b) for a, b in zip(before, vae.parameters()))
    with pytest.raises(TypeError, match=r"The optimizer must be Cell type"):
        TrainOneStepCell(WithLossCell(vae, infer.ELBO()), None)


def test_two_facade_vaes_are_independent(data):
    a, b = make_vae(), make_vae()
    for p in b.parameters():
        nn.init.normal_(p)
    snapshot = [p.detach().clone() for p in b.parameters()]
    infer.SVI(WithLossCell(a, infer.ELBO()), torch.optim.Adam(a.parameters())).run(loader(data), epochs=1)
    assert all(torch.equal(x, y) for x, y in zip(snapshot, b.parameters()))


def test_estimator_options_reach_the_engine(data):
    vae = make_vae()
    loss = infer.ELBO(estimator="iwae", num_particles=3, vectorize_particles=False)
    svi = infer.SVI(WithLossCell(vae, loss), torch.optim.Adam(vae.parameters()))
    svi.run(loader(data), epochs=1)
    assert svi.result.estimator == "iwae"
    # MindSpore-style decoders reshape with -1, folding vectorised particles into the batch
    vectorised = infer.ELBO(estimator="iwae", num_particles=3, vectorize_particles=True)
    svi = infer.SVI(WithLossCell(vae, vectorised), torch.optim.Adam(vae.parameters()))
    with pytest.raises(ValueError, match=r"it folded 3 vectorised particles into the batch"):
        svi.run(loader(data), epochs=1)
    with pytest.raises(ValueError, match=r"'tailadaptive' needs several vectorised particles"):
        infer.ELBO(estimator="tailadaptive", num_particles=1)


def test_adam_left_to_torch_gets_the_fused_kernel_and_the_same_training(data):
    """SVI.run and TrainOneStepCell give a default torch Adam the fused kernel (MindSpore's
    Adam is one kernel); the result is the per-tensor Adam's within float rounding, and an
    explicit choice (fused=False) is kept."""
    trained = {}
    for fused in (None, False):
        vae = make_vae()
        opt = torch.optim.Adam(vae.trainable_params(), lr=1e-3, fused=fused)
        infer.SVI(WithLossCell(vae, infer.ELBO()), opt).run(loader(data), epochs=2, seed=0, progress=False)
        assert opt.param_groups[0]["fused"] is (True if fused is None else False)
        trained[fused] = torch.cat([p.detach().flatten() for p in vae.parameters()])
    torch.testing.assert_close(trained[None], trained[False], rtol=1e-4, atol=1e-5)
    assert not torch.equal(trained[None], torch.cat([p.detach().flatten() for p in make_vae().parameters()]))
    net = nn.Linear(3, 1)
    cell = TrainOneStepCell(WithLossCell(net, nn.MSELoss()), torch.optim.AdamW(net.parameters()))
    assert cell.optimizer.param_groups[0]["fused"] is True
    sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    TrainOneStepCell(WithLossCell(net, nn.MSELoss()), sgd)
    assert sgd.param_groups[0]["fused"] is None  # only Adam and AdamW are switched
