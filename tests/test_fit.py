import math

import pyro
import pyro.distributions as dist
import pyro.optim
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ppmodels.data import digits
from ppmodels.infer import ELBO_NAMES, NonFiniteLossError, Objective, fit, get_elbo
from ppmodels.models import VAE
from ppmodels.nn import MLPDecoder, MLPEncoder

from tolerances import CONJUGATE_ATOL

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def data():
    return digits()


def small_vae(seed=0):
    torch.manual_seed(seed)
    return VAE(MLPEncoder(SHAPE, 4, (32,)), MLPDecoder(4, SHAPE, (32,)), 4)


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def test_loss_falls_and_result_has_one_entry_per_epoch(data):
    v = small_vae()
    r = fit(v, data.train_x, epochs=4, seed=0, val_data=data.test_x)
    assert len(r.train_loss) == len(r.val_loss) == len(r.epoch_seconds) == 4
    assert r.train_loss[-1] < r.train_loss[0] - 5  # nats per sample on 8x8 digits: ~38 -> ~28
    assert r.num_data == 1437 and r.num_steps == 4 * math.ceil(1437 / 128)
    assert 20 < r.val_loss[-1] < 40 and r.samples_per_second > 0
    assert v.num_data == 1437 and not v.training


# enum on a model without discrete latents is Trace_ELBO, and Pyro says so on the first step
_NO_DISCRETE = pytest.mark.filterwarnings("ignore:TraceEnum_ELBO found no sample sites configured for enumeration")
MODULE_ESTIMATORS = [
    pytest.param(name, marks=_NO_DISCRETE) if name == "enum" else name
    for name in ELBO_NAMES
    if not name.startswith("jit-")
]


@pytest.mark.parametrize("elbo", MODULE_ESTIMATORS)
def test_every_estimator_trains_the_parameters(data, elbo):
    v = small_vae()
    before = params(v)
    full_batch = elbo == "tailadaptive"  # it does not support data subsampling
    r = fit(
        v,
        data.train_x[:256],
        epochs=3,
        batch_size=256 if full_batch else 64,
        elbo=elbo,
        seed=0,
        val_data=data.test_x[:64],
    )
    losses = r.val_loss if full_batch else r.train_loss  # tailadaptive computes gradients only
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]
    changed = [not torch.equal(a, b) for a, b in zip(before, params(v))]
    assert all(changed), f"{elbo}: some parameters were not updated"


@pytest.mark.parametrize("elbo", [n for n in ELBO_NAMES if n.startswith("jit-")])
@_NO_DISCRETE
def test_jit_estimators_refuse_module_parameters_before_training(data, elbo):
    with pytest.raises(
        ValueError,
        match=rf"'{elbo}' compiles the loss with the parameters Pyro sees .* but 10 module parameters \(4616 "
        r"values: encoder.body.0.weight, .*\) are used without being registered",
    ):
        fit(small_vae(), data.train_x, elbo=elbo)


def test_tailadaptive_preconditions(data):
    from ppmodels.infer import get_elbo

    with pytest.raises(ValueError, match=r"'tailadaptive' needs several vectorised particles: num_particles >= 2"):
        get_elbo("tailadaptive", num_particles=1)
    with pytest.raises(
        ValueError, match=r"vectorize_particles=True, but got num_particles=4, vectorize_particles=False"
    ):
        get_elbo("tailadaptive", num_particles=4, vectorize_particles=False)
    with pytest.raises(ValueError, match=r"'tailadaptive' does not support data subsampling: .*batch_size >= 1437"):
        fit(small_vae(), data.train_x, batch_size=64, elbo="tailadaptive")


_JIT_TRACING = pytest.mark.filterwarnings(  # Pyro's JIT internals, under tracing with a torch that deprecates it
    "ignore::torch.jit.TracerWarning", "ignore:`torch.jit.trace` is deprecated:DeprecationWarning"
)


@pytest.mark.parametrize("jit", [n for n in ELBO_NAMES if n.startswith("jit-")])
@_JIT_TRACING
@_NO_DISCRETE
def test_each_jit_estimator_is_its_eager_estimator(jit):
    """With a point-mass guide there are no draws: the compiled estimator's loss and gradients
    must be the eager one's (so the slow convergence test below need not run the JIT variants)."""
    torch.manual_seed(0)
    x = 2.0 + torch.randn(50)

    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        pyro.sample("mu", dist.Delta(pyro.param("loc", torch.tensor(0.7))))

    out = []
    for name in (jit, jit[len("jit-") :]):
        pyro.clear_param_store()
        objective = Objective(get_elbo(name), model, guide)
        for _ in range(2):  # the JIT traces on its first call and runs its graph on the second
            pyro.param("loc", torch.tensor(0.7))
            loc = pyro.get_param_store()["loc"].unconstrained()
            loc.grad = None
            value = objective.loss_and_grads((x,), {})
        out.append((value, loc.grad.clone()))
    (a, ga), (b, gb) = out
    assert a == pytest.approx(b, rel=1e-6)
    torch.testing.assert_close(ga, gb, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    "elbo", [pytest.param(n, marks=_NO_DISCRETE) if n == "enum" else n for n in ELBO_NAMES if not n.startswith("jit-")]
)
def test_every_estimator_reaches_the_exact_conjugate_posterior(elbo):
    """The guide family holds the exact posterior, so every divergence is minimised there."""
    torch.manual_seed(0)
    x = 2.0 + torch.randn(50)
    post_var = 1.0 / (1.0 / 100.0 + len(x))
    post_mean = post_var * x.sum()
    particles = {
        "iwae": 2,  # the guide's gradient signal-to-noise ratio falls as K grows (Rainforth et al. 2018)
        "renyi": 2,
        "trace": 64,
        "meanfield": 64,
        "tracegraph": 64,
        "jit-trace": 64,
        "jit-meanfield": 64,
        "jit-tracegraph": 64,
        "enum": 64,
        "jit-enum": 64,
    }.get(elbo, 16)
    fit(
        NormalNormal(),
        (x,),
        epochs=4000 if elbo in ("iwae", "renyi") else 1500,
        batch_size=50,
        elbo=elbo,
        num_particles=particles,
        vectorize_particles=True,
        lr=0.03,
        seed=0,
        validate="never",
        scheduler=lambda opt: torch.optim.lr_scheduler.ExponentialLR(
            opt, 0.999 if elbo in ("iwae", "renyi") else 0.998
        ),
    )
    store = pyro.get_param_store()
    assert store["loc"].detach().item() == pytest.approx(float(post_mean), abs=CONJUGATE_ATOL)
    assert store["scale"].detach().item() == pytest.approx(math.sqrt(post_var), abs=CONJUGATE_ATOL)


def test_iwae_bound_is_at_least_the_elbo_and_tightens_with_k():
    """For a fixed guide that is not the posterior: E[IWAE_K] rises with K, from the ELBO (K=1)."""
    torch.manual_seed(0)
    x = 2.0 + torch.randn(20)
    pair = NormalNormal()
    pyro.param("loc", torch.tensor(1.5))
    pyro.param("scale", torch.tensor(0.6), constraint=dist.constraints.positive)

    def bound(k, reps):
        estimator = pyro.infer.RenyiELBO(alpha=0.0, num_particles=k, vectorize_particles=True, max_plate_nesting=1)
        values = torch.tensor([-estimator.loss(pair.model, pair.guide, x) for _ in range(reps)])
        return values.mean(), values.std() / math.sqrt(reps)

    elbo_values = torch.tensor([-pyro.infer.Trace_ELBO().loss(pair.model, pair.guide, x) for _ in range(2000)])
    previous, previous_se = elbo_values.mean(), elbo_values.std() / math.sqrt(2000)
    for k in (10, 100):
        mean, se = bound(k, 300)
        assert mean - previous > 4 * math.sqrt(se**2 + previous_se**2)
        previous, previous_se = mean, se


def test_unknown_estimator_lists_the_valid_names(data):
    with pytest.raises(
        ValueError, match=r"unknown ELBO estimator 'elbow'; valid names are \['enum', 'iwae', 'jit-enum', "
    ):
        fit(small_vae(), data.train_x, elbo="elbow")


def test_a_pyro_elbo_instance_is_accepted(data):
    r = fit(small_vae(), data.train_x[:128], epochs=1, elbo=pyro.infer.TraceMeanField_ELBO(num_particles=2))
    assert r.estimator == "meanfield"


@pytest.mark.parametrize(
    "make",
    [
        lambda m: torch.optim.SGD(m.parameters(), lr=1e-2),
        lambda m: lambda ps: torch.optim.RMSprop(ps, lr=1e-3),
        lambda m: torch.optim.AdamW,
        lambda m: pyro.optim.Adam({"lr": 1e-3}),
    ],
    ids=["torch-instance", "factory", "class", "pyro-optim"],
)
def test_optimizer_forms(data, make):
    v = small_vae()
    before = params(v)
    fit(v, data.train_x[:128], epochs=1, optimizer=make(v))
    assert not torch.equal(before[0], params(v)[0])


def test_same_seed_same_losses(data):
    a = fit(small_vae(), data.train_x, epochs=2, seed=5).train_loss
    b = fit(small_vae(), data.train_x, epochs=2, seed=5).train_loss
    assert a == b


def test_two_models_in_one_process_do_not_interfere(data):
    alone = small_vae()
    fit(alone, data.train_x, epochs=2, seed=1)
    a, b = small_vae(), small_vae(seed=9)
    fit(a, data.train_x, epochs=2, seed=1)
    snapshot = params(a)
    fit(b, data.train_x, epochs=2, seed=2)
    assert all(torch.equal(x, y) for x, y in zip(snapshot, params(a)))
    assert all(torch.equal(x, y) for x, y in zip(params(alone), params(a)))
    assert len(pyro.get_param_store()) == 0


class NormalNormal(torch.nn.Module):
    """A user's own pair in classic Pyro style: pyro.param sites, no module parameters.
    x_i ~ N(mu, 1), mu ~ N(0, 10^2); the exact posterior is Normal."""

    def model(self, x):
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(self, x):
        loc = pyro.param("loc", torch.tensor(0.0))
        scale = pyro.param("scale", torch.tensor(1.0), constraint=dist.constraints.positive)
        pyro.sample("mu", dist.Normal(loc, scale))


def test_a_users_classic_pyro_pair_reaches_the_exact_posterior():
    torch.manual_seed(0)
    x = 2.0 + torch.randn(50)
    post_var = 1.0 / (1.0 / 100.0 + len(x))
    post_mean = post_var * x.sum()
    fit(
        NormalNormal(),
        (x,),
        epochs=1500,
        batch_size=50,
        elbo="meanfield",
        num_particles=64,
        vectorize_particles=True,
        lr=0.01,
        seed=0,
    )
    store = pyro.get_param_store()
    assert store["loc"].detach().item() == pytest.approx(float(post_mean), abs=CONJUGATE_ATOL)
    assert store["scale"].detach().item() == pytest.approx(math.sqrt(post_var), abs=CONJUGATE_ATOL)


class Exploding(torch.nn.Module):
    """Its loss becomes NaN once its parameter passes a threshold (after a few steps)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.0))

    def model(self, x):
        scale = torch.where(self.w > 0.0035, torch.tensor(float("nan")), torch.tensor(1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(self.w * 0 + 5.0 * self.w, scale), obs=x)

    def guide(self, x):
        pass


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_state():
    pair = Exploding()
    x = torch.ones(20)
    history = []
    opt = torch.optim.SGD(pair.parameters(), lr=1e-4)
    original_step = opt.step

    def recording_step(*a, **k):
        out = original_step(*a, **k)
        history.append(pair.w.detach().clone())
        return out

    opt.step = recording_step
    with pytest.raises(NonFiniteLossError, match=r"the loss became nan at epoch 1, step \d+; training stopped") as info:
        fit(pair, (x,), epochs=5, batch_size=4, optimizer=opt, validate="never")
    assert info.value.epoch == 1 and info.value.step == len(history) + 1
    assert torch.equal(pair.w.detach(), history[-1])


# -- bad input -----------------------------------------------------------------------
def test_nonfinite_data_rejected_before_training_naming_the_first_bad_sample(data):
    x = data.train_x.clone()
    x[7, 0, 3, 3] = float("nan")
    x[900, 0, 0, 0] = float("inf")
    v = small_vae()
    before = params(v)
    with pytest.raises(
        ValueError, match=r"`data` holds NaN or infinite values: the first bad sample is index 7 \(2 bad"
    ):
        fit(v, x, epochs=1)
    assert all(torch.equal(a, b) for a, b in zip(before, params(v)))


def test_nonfinite_data_in_a_batch_stream(data):
    x = data.train_x[:64].clone()
    x[40] = float("nan")
    batches = [(x[:32],), (x[32:],)]
    with pytest.raises(ValueError, match=r"the first bad sample is index 40"):
        fit(small_vae(), batches, epochs=1)


@pytest.mark.parametrize(
    "bad,error,match",
    [
        (torch.empty(0, 1, 8, 8), ValueError, r"`data` is empty: it holds no samples"),
        (iter([torch.rand(2, 1, 8, 8)]), TypeError, r"an iterator can be read only once"),
        ("digits", TypeError, r"`data` must be a tensor, a tuple or dict of the model.s arguments, a torch Dataset"),
        ((torch.rand(4, 1, 8, 8), torch.zeros(3)), ValueError, r"the tensors must share their first dimension"),
    ],
    ids=["empty", "iterator", "string", "mismatched"],
)
def test_bad_data(bad, error, match):
    with pytest.raises(error, match=match):
        fit(small_vae(), bad, epochs=1)


def test_bad_arguments(data):
    loader = DataLoader(TensorDataset(data.train_x), batch_size=32)
    with pytest.raises(ValueError, match=r"the DataLoader passed as `data` already has batch_size=32"):
        fit(small_vae(), loader, batch_size=64)
    with pytest.raises(TypeError, match=r"`pair` must have callable .model and .guide methods.*no callable .model"):
        fit(torch.nn.Linear(2, 2), data.train_x)
    with pytest.raises(ValueError, match=r"`epochs` must be a positive int, but got 0"):
        fit(small_vae(), data.train_x, epochs=0)
    with pytest.raises(ValueError, match=r"`validate` must be one of \['first', 'always', 'never'\]"):
        fit(small_vae(), data.train_x, validate="sometimes")
    with pytest.raises(TypeError, match=r"`optimizer` must be None \(Adam\), a torch.optim.Optimizer"):
        fit(small_vae(), data.train_x, optimizer="adam")
    with pytest.raises(ValueError, match=r"`alpha` applies to 'renyi' only"):
        from ppmodels.infer import get_elbo

        get_elbo("trace", alpha=0.5)


def test_progress_bar_is_quiet_when_not_a_terminal(data, capsys):
    fit(small_vae(), data.train_x[:64], epochs=1)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_dataloader_and_dict_batches(data):
    loader = DataLoader(TensorDataset(data.train_x[:64], data.train_y[:64]), batch_size=32)
    assert fit(small_vae(), loader, epochs=1, device="cpu").num_data == 64
    dict_batches = [{"x": data.train_x[:32]}, {"x": data.train_x[32:64]}]
    assert fit(small_vae(), dict_batches, epochs=1).num_data == 64


def test_fit_with_trace_elbo_is_the_hand_written_estimator():
    """Same start, same batches, same random draws: fit + Pyro's Trace_ELBO and a hand-written
    loop computing log p(x|z) + log p(z) - log q(z|x) (scaled by N/B) reach the same weights."""
    from ppmodels.infer.training.data import TensorBatches

    torch.manual_seed(0)
    x = torch.rand(96, 6)
    make = lambda: VAE(MLPEncoder((6,), 2, (8,)), MLPDecoder(2, (6,), (8,)), 2, likelihood="normal", scale=0.5)  # noqa: E731
    torch.manual_seed(1)
    by_fit = make()
    torch.manual_seed(1)
    by_hand = make()

    def order():
        g = torch.Generator()
        g.manual_seed(3)
        return TensorBatches((x,), 32, True, g)

    fit(by_fit, order(), epochs=3, optimizer=torch.optim.Adam(by_fit.parameters(), lr=1e-2), seed=7)
    pyro.set_rng_seed(7)
    opt = torch.optim.Adam(by_hand.parameters(), lr=1e-2)
    batches = order()
    for _ in range(3):
        for (xb,) in batches:
            loc, scale = by_hand.encoder(xb)
            z = loc + scale * torch.randn_like(loc)
            log_lik = torch.distributions.Normal(by_hand.decoder(z), 0.5).log_prob(xb).sum()
            log_ratio = (
                torch.distributions.Normal(0.0, 1.0).log_prob(z).sum()
                - torch.distributions.Normal(loc, scale).log_prob(z).sum()
            )
            loss = -(log_lik + log_ratio) * (96 / len(xb))
            opt.zero_grad()
            loss.backward()
            opt.step()
    for a, b in zip(by_fit.parameters(), by_hand.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("generator", [None, 7], ids=["global-rng", "own-generator"])
def test_tensor_dataloader_is_read_by_slicing_with_the_loaders_own_order(generator):
    """fit reads a DataLoader over a TensorDataset by slicing; batches, their order and the
    random stream afterwards must be exactly the loader's own."""
    from ppmodels.infer.training.data import SlicedLoader, make_batches

    x, y = torch.randn(50, 3), torch.arange(50)

    def loader():
        gen = None if generator is None else torch.Generator().manual_seed(generator)
        return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=gen)

    streams = []
    for read in (lambda dl: list(dl), lambda dl: list(make_batches(dl, name="data").source)):
        torch.manual_seed(0)
        dl = loader()
        epochs = [read(dl) for _ in range(2)]
        streams.append((epochs, torch.rand(3)))
    (theirs, after_theirs), (ours, after_ours) = streams
    assert isinstance(make_batches(loader(), name="data").source, SlicedLoader)
    assert [len(e) for e in ours] == [4, 4]
    for a, b in zip(sum(theirs, []), sum(ours, [])):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(theirs[0][0][1], theirs[1][0][1])  # the two epochs were shuffled differently
    assert torch.equal(after_theirs, after_ours)
    indexed = list(make_batches(loader(), name="data").indexed())
    assert all(torch.equal(batch[1], idx) for batch, idx in indexed)  # indices are known even when shuffled
