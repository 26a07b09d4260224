"""Pyro programs written the way Pyro's examples and tutorials write them (our own code, the
same models), used by the tests as a user would bring them to ppmodels.

- eight schools (examples/eight_schools/svi.py): functions, per-school pyro.param guide;
- Bayesian regression (tutorial "bayesian_regression"): a PyroModule with PyroSample
  weights and an AutoDiagonalNormal guide, on 170 rows like the rugged-terrain data;
- the coin (tutorial "svi_part_i"): data as a Python list of 0-d tensors, a loop of sites;
- a mini-batched Bayesian regression taking ``subsample`` (the indices fit passes);
- a data-subsampling model (pyro.plate(..., subsample_size=...)) given the whole data set;
- vae.py: an nn.Module whose networks are registered with pyro.module (JIT-able);
- sparse gamma DEF (examples/sparse_gamma_def.py): per-datum Gamma guide, clipped params;
- a model with a KL-annealing keyword (examples/dmm.py's annealing_factor).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroSample
from torch import nn
from torch.distributions import constraints, transforms

# -- eight schools ---------------------------------------------------------------------
J = 8
SCHOOLS_Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SCHOOLS_SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
SCHOOLS = torch.stack([SCHOOLS_Y, SCHOOLS_SIGMA], dim=1)


def schools_model(data):
    y, sigma = data[:, 0], data[:, 1]
    with pyro.plate("data", J):
        eta = pyro.sample("eta", dist.Normal(torch.zeros(J), torch.ones(J)))
        mu = pyro.sample("mu", dist.Normal(torch.zeros(1), 10 * torch.ones(1)))
        tau = pyro.sample("tau", dist.HalfCauchy(scale=25 * torch.ones(1)))
        pyro.sample("obs", dist.Normal(mu + tau * eta, sigma), obs=y)


def schools_guide(data):
    loc_eta = pyro.param("loc_eta", torch.randn(J))
    scale_eta = pyro.param("scale_eta", 0.1 * torch.rand(J), constraint=constraints.positive)
    loc_mu = pyro.param("loc_mu", torch.randn(1))
    scale_mu = pyro.param("scale_mu", 0.1 * torch.rand(1), constraint=constraints.positive)
    loc_logtau = pyro.param("loc_logtau", torch.randn(1))
    scale_logtau = pyro.param("scale_logtau", 0.1 * torch.rand(1), constraint=constraints.positive)
    with pyro.plate("data", J):
        pyro.sample("eta", dist.Normal(loc_eta, scale_eta))
        pyro.sample("mu", dist.Normal(loc_mu, scale_mu))
        pyro.sample(
            "tau", dist.TransformedDistribution(dist.Normal(loc_logtau, scale_logtau), transforms.ExpTransform())
        )


def schools_mcmc_model(sigma):
    """examples/eight_schools/mcmc.py: no plate, the observation site conditioned later."""
    eta = pyro.sample("eta", dist.Normal(torch.zeros(J), torch.ones(J)))
    mu = pyro.sample("mu", dist.Normal(torch.zeros(1), 10 * torch.ones(1)))
    tau = pyro.sample("tau", dist.HalfCauchy(scale=25 * torch.ones(1)))
    return pyro.sample("obs", dist.Normal(mu + tau * eta, sigma))


def schools_conditioned_model(model, sigma, y):
    return pyro.poutine.condition(model, data={"obs": y})(sigma)


# -- Bayesian regression, rugged-terrain shaped data -----------------------------------
def rugged_data(n=170, seed=0):
    """170 countries: (cont_africa, rugged, cont_africa * rugged) -> log GDP, with the
    tutorial's posterior as the truth (bias 9.2, weights -1.9, -0.2, 0.4, noise 0.95)."""
    g = torch.Generator().manual_seed(seed)
    africa = (torch.rand(n, generator=g) < 0.3).float()
    rugged = torch.rand(n, generator=g) * 4
    x = torch.stack([africa, rugged, africa * rugged], dim=1)
    y = 9.2 - 1.9 * africa - 0.2 * rugged + 0.4 * africa * rugged + 0.95 * torch.randn(n, generator=g)
    return x, y


class BayesianRegression(PyroModule):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = PyroModule[nn.Linear](in_features, out_features)
        self.linear.weight = PyroSample(dist.Normal(0.0, 1.0).expand([out_features, in_features]).to_event(2))
        self.linear.bias = PyroSample(dist.Normal(0.0, 10.0).expand([out_features]).to_event(1))

    def forward(self, x, y=None):
        sigma = pyro.sample("sigma", dist.Uniform(0.0, 10.0))
        mean = self.linear(x).squeeze(-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("obs", dist.Normal(mean, sigma), obs=y)
        return mean


# -- the coin ---------------------------------------------------------------------------
COIN = [torch.tensor(1.0)] * 6 + [torch.tensor(0.0)] * 4


def coin_model(data, informative=True):
    concentration = 10.0 if informative else 1.0
    f = pyro.sample("latent_fairness", dist.Beta(torch.tensor(concentration), torch.tensor(concentration)))
    for i in range(len(data)):
        pyro.sample(f"obs_{i}", dist.Bernoulli(f), obs=data[i])


def coin_guide(data, informative=True):
    alpha_q = pyro.param("alpha_q", torch.tensor(15.0), constraint=constraints.positive)
    beta_q = pyro.param("beta_q", torch.tensor(15.0), constraint=constraints.positive)
    pyro.sample("latent_fairness", dist.Beta(alpha_q, beta_q))


# -- conjugate linear regression, for known answers --------------------------------------
NOISE, PRIOR = 0.5, 1.0


def regression_data(n=400, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = x @ torch.tensor([1.5, -0.7]) + NOISE * torch.randn(n, generator=g)
    return x, y


def exact_posterior(x, y):
    precision = torch.eye(2) / PRIOR**2 + x.T @ x / NOISE**2
    cov = torch.linalg.inv(precision)
    return cov @ x.T @ y / NOISE**2, cov, precision


def subsampled_model(x, y, subsample=None, num_data=400):
    """Mini-batches from fit: ``subsample`` holds the batch's indices into the data set."""
    w = pyro.sample("w", dist.Normal(torch.zeros(2), PRIOR).to_event(1))
    with pyro.plate("data", size=num_data, subsample=subsample):
        pyro.sample("y", dist.Normal((x * w).sum(-1), NOISE), obs=y)  # broadcasts over vectorised particles


def meanfield_guide(x, y, subsample=None, num_data=400):
    loc = pyro.param("w_loc", torch.zeros(2))
    scale = pyro.param("w_scale", 0.1 * torch.ones(2), constraint=constraints.positive)
    pyro.sample("w", dist.Normal(loc, scale).to_event(1))


def subsampling_model(x, y, batch=50):
    """The whole data set in, a random subsample of it scored at every step."""
    w = pyro.sample("w", dist.Normal(torch.zeros(2), PRIOR).to_event(1))
    with pyro.plate("data", size=len(x), subsample_size=batch) as idx:
        pyro.sample("y", dist.Normal((x[idx] * w).sum(-1), NOISE), obs=y[idx])


def subsampling_guide(x, y, batch=50):
    loc = pyro.param("w_loc", torch.zeros(2))
    scale = pyro.param("w_scale", 0.1 * torch.ones(2), constraint=constraints.positive)
    pyro.sample("w", dist.Normal(loc, scale).to_event(1))


# -- vae.py -------------------------------------------------------------------------------
class Encoder(nn.Module):
    def __init__(self, z_dim, hidden, pixels):
        super().__init__()
        self.pixels = pixels
        self.fc1, self.fc21, self.fc22 = nn.Linear(pixels, hidden), nn.Linear(hidden, z_dim), nn.Linear(hidden, z_dim)

    def forward(self, x):
        hidden = nn.functional.softplus(self.fc1(x.reshape(-1, self.pixels)))
        return self.fc21(hidden), torch.exp(self.fc22(hidden))


class Decoder(nn.Module):
    def __init__(self, z_dim, hidden, pixels):
        super().__init__()
        self.fc1, self.fc21 = nn.Linear(z_dim, hidden), nn.Linear(hidden, pixels)

    def forward(self, z):
        return torch.sigmoid(self.fc21(nn.functional.softplus(self.fc1(z))))


class PyroVAE(nn.Module):
    def __init__(self, z_dim=4, hidden=32, pixels=64):
        super().__init__()
        self.encoder, self.decoder = Encoder(z_dim, hidden, pixels), Decoder(z_dim, hidden, pixels)
        self.z_dim, self.pixels = z_dim, pixels

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z_loc = torch.zeros(x.shape[0], self.z_dim, dtype=x.dtype)
            z_scale = torch.ones(x.shape[0], self.z_dim, dtype=x.dtype)
            z = pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
            loc_img = self.decoder(z)
            pyro.sample("obs", dist.Bernoulli(loc_img, validate_args=False).to_event(1), obs=x.reshape(-1, self.pixels))

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            z_loc, z_scale = self.encoder(x)
            pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))


# -- sparse gamma DEF (two layers, tiny) ---------------------------------------------------
class SparseGammaDEF:
    def __init__(self, top=3, bottom=4, pixels=10):
        self.top, self.bottom, self.pixels = top, bottom, pixels
        self.alpha_z, self.beta_z = torch.tensor(0.1), torch.tensor(0.1)
        self.alpha_w, self.beta_w = torch.tensor(0.1), torch.tensor(0.3)

    def model(self, x):
        with pyro.plate("w_top_plate", self.top * self.bottom):
            w_top = pyro.sample("w_top", dist.Gamma(self.alpha_w, self.beta_w))
        with pyro.plate("w_bottom_plate", self.bottom * self.pixels):
            w_bottom = pyro.sample("w_bottom", dist.Gamma(self.alpha_w, self.beta_w))
        with pyro.plate("data", x.size(0)):
            z_top = pyro.sample("z_top", dist.Gamma(self.alpha_z, self.beta_z).expand([self.top]).to_event(1))
            mean_bottom = z_top @ w_top.reshape(self.top, self.bottom)
            z_bottom = pyro.sample("z_bottom", dist.Gamma(self.alpha_z, self.beta_z / mean_bottom).to_event(1))
            mean_obs = z_bottom @ w_bottom.reshape(self.bottom, self.pixels)
            pyro.sample("obs", dist.Poisson(mean_obs).to_event(1), obs=x)

    def guide(self, x):
        n = x.size(0)

        def sample_z(name, width):
            alpha = pyro.param(f"alpha_z_q_{name}", lambda: 0.5 + 0.1 * torch.randn(n, width))
            mean = pyro.param(f"mean_z_q_{name}", lambda: 0.1 * torch.randn(n, width))
            alpha, mean = nn.functional.softplus(alpha), nn.functional.softplus(mean)
            pyro.sample(f"z_{name}", dist.Gamma(alpha, alpha / mean).to_event(1))

        def sample_w(name, width):
            alpha = pyro.param(f"alpha_w_q_{name}", lambda: 0.5 + 0.1 * torch.randn(width))
            mean = pyro.param(f"mean_w_q_{name}", lambda: 0.1 * torch.randn(width))
            alpha, mean = nn.functional.softplus(alpha), nn.functional.softplus(mean)
            pyro.sample(f"w_{name}", dist.Gamma(alpha, alpha / mean))

        with pyro.plate("w_top_plate", self.top * self.bottom):
            sample_w("top", self.top * self.bottom)
        with pyro.plate("w_bottom_plate", self.bottom * self.pixels):
            sample_w("bottom", self.bottom * self.pixels)
        with pyro.plate("data", n):
            sample_z("top", self.top)
            sample_z("bottom", self.bottom)


def clip_gamma_params():
    """The example's clip_params(), by hand."""
    for param, clip in zip(("alpha", "mean"), (-2.5, -4.5)):
        for layer in ("_q_top", "_q_bottom"):
            for wz in ("_w", "_z"):
                pyro.param(param + wz + layer).data.clamp_(min=clip)


def gamma_counts(n=12, pixels=10, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.poisson(torch.rand(n, pixels, generator=g) * 3, generator=g)


# -- KL annealing -------------------------------------------------------------------------
def annealed_model(x, annealing_factor=1.0):
    with pyro.plate("data", x.shape[0]):
        with pyro.poutine.scale(scale=annealing_factor):
            z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0]), 1.0))
        pyro.sample("x", dist.Normal(z, 0.5), obs=x)


def annealed_guide(x, annealing_factor=1.0):
    loc = pyro.param("z_loc", torch.zeros(x.shape[0]))
    scale = pyro.param("z_scale", torch.ones(x.shape[0]), constraint=constraints.positive)
    with pyro.plate("data", x.shape[0]):
        with pyro.poutine.scale(scale=annealing_factor):
            pyro.sample("z", dist.Normal(loc, scale))


def svi_losses(model, guide, args, steps, lr, seed, kwargs_at=None, after_step=None, **svi_kwargs):
    """The plain Pyro loop: SVI with pyro.optim.Adam and Trace_ELBO (or the given loss)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    loss = svi_kwargs.pop("loss", None) or pyro.infer.Trace_ELBO()
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": lr, **svi_kwargs}), loss=loss)
    out = []
    for step in range(steps):
        kwargs = kwargs_at(step) if kwargs_at is not None else {}
        out.append(svi.step(*args, **kwargs))
        if after_step is not None:
            after_step()
    return out


def store_snapshot():
    return {k: v.detach().clone() for k, v in pyro.get_param_store().items()}


# -- a deep Markov model, small (examples/dmm.py's shape of program) -------------------------
class MiniDMM(nn.Module):
    """Sequences x of shape (B, T, D); the guide reads them reversed, as a PackedSequence,
    through an RNN (as the example does); ``annealing_factor`` scales the KL terms."""

    def __init__(self, x_dim=3, z_dim=2, hidden=8):
        super().__init__()
        self.z_dim = z_dim
        self.trans, self.emit = nn.Linear(z_dim, z_dim), nn.Linear(z_dim, x_dim)
        self.rnn = nn.RNN(x_dim, hidden, batch_first=True)
        self.combine = nn.Linear(hidden + z_dim, 2 * z_dim)

    def model(self, x, x_reversed, mask, annealing_factor=1.0):
        pyro.module("dmm", self)
        z_prev = x.new_zeros(x.size(0), self.z_dim)
        with pyro.plate("z_minibatch", len(x)):
            for t in pyro.markov(range(x.size(1))):
                with pyro.poutine.scale(scale=annealing_factor):
                    z_t = pyro.sample(f"z_{t + 1}", dist.Normal(self.trans(z_prev), 1.0).to_event(1).mask(mask[:, t]))
                emitted = dist.Normal(self.emit(z_t), 0.5).to_event(1).mask(mask[:, t])
                pyro.sample(f"obs_x_{t + 1}", emitted, obs=x[:, t])
                z_prev = z_t

    def guide(self, x, x_reversed, mask, annealing_factor=1.0):
        pyro.module("dmm", self)
        out, _ = self.rnn(x_reversed)
        if isinstance(out, nn.utils.rnn.PackedSequence):
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
        out = out.flip(1)  # equal lengths here: un-reversing is a flip
        z_prev = x.new_zeros(x.size(0), self.z_dim)
        with pyro.plate("z_minibatch", len(x)):
            for t in pyro.markov(range(x.size(1))):
                loc, raw = self.combine(torch.cat([out[:, t], z_prev], -1)).chunk(2, -1)
                with pyro.poutine.scale(scale=annealing_factor):
                    z_prev = pyro.sample(
                        f"z_{t + 1}", dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1).mask(mask[:, t])
                    )


def dmm_batches(num_batches=3, batch=4, steps=5, x_dim=3, seed=0):
    """Mini-batches as the example makes them: (x, x reversed as a PackedSequence, mask)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num_batches):
        x = torch.randn(batch, steps, x_dim, generator=g).cumsum(1) * 0.3
        packed = nn.utils.rnn.pack_padded_sequence(x.flip(1), [steps] * batch, batch_first=True)
        out.append((x, packed, torch.ones(batch, steps, dtype=torch.bool)))
    return out


# -- the GMM tutorial ----------------------------------------------------------------------
GMM_DATA = torch.tensor([0.0, 1.0, 10.0, 11.0, 12.0])
K = 2


def gmm_model(data):
    """No @config_enumerate: ppmodels' "enum" marks the discrete site itself."""
    weights = pyro.sample("weights", dist.Dirichlet(0.5 * torch.ones(K)))
    scale = pyro.sample("scale", dist.LogNormal(0.0, 2.0))
    with pyro.plate("components", K):
        locs = pyro.sample("locs", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(data)):
        assignment = pyro.sample("assignment", dist.Categorical(weights))
        pyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)


def gmm_init_loc_fn(site):
    if site["name"] == "weights":
        return torch.ones(K) / K
    if site["name"] == "scale":
        return (GMM_DATA.var() / 2).sqrt()
    if site["name"] == "locs":
        return GMM_DATA[torch.multinomial(torch.ones(len(GMM_DATA)) / len(GMM_DATA), K)]
    raise ValueError(site["name"])


def gmm_guide():
    from pyro.infer.autoguide import AutoDelta

    return AutoDelta(pyro.poutine.block(gmm_model, expose=["weights", "locs", "scale"]), init_loc_fn=gmm_init_loc_fn)


# -- a hidden Markov model, three steps ------------------------------------------------------
HMM_DATA = torch.tensor([[0.1, 2.2, 1.9], [-0.3, 0.2, 2.5]])  # two sequences


def hmm_model(data):
    trans = pyro.sample("trans", dist.Dirichlet(torch.ones(2, 2)).to_event(1))
    locs = pyro.sample("locs", dist.Normal(torch.tensor([0.0, 2.0]), 1.0).to_event(1))
    with pyro.plate("sequences", data.shape[0], dim=-1):
        state = torch.zeros(data.shape[0], dtype=torch.long)
        for t in pyro.markov(range(data.shape[1])):
            state = pyro.sample(f"state_{t}", dist.Categorical(trans[state]))
            pyro.sample(f"obs_{t}", dist.Normal(locs[state], 0.5), obs=data[:, t])


# -- the semi-supervised VAE, M2 (examples/vae/ss_vae_M2.py's program, small) -----------------
class M2(nn.Module):
    def __init__(self, pixels=64, classes=10, z_dim=4, hidden=32):
        super().__init__()
        self.classes, self.z_dim = classes, z_dim
        self.encoder_y = nn.Sequential(nn.Linear(pixels, hidden), nn.Softplus(), nn.Linear(hidden, classes))
        self.encoder_z = nn.Sequential(nn.Linear(pixels + classes, hidden), nn.Softplus(), nn.Linear(hidden, 2 * z_dim))
        self.decoder = nn.Sequential(nn.Linear(z_dim + classes, hidden), nn.Softplus(), nn.Linear(hidden, pixels))

    def model(self, xs, ys=None):
        pyro.module("ss_vae", self)
        n = xs.size(0)
        with pyro.plate("data"):
            zs = pyro.sample("z", dist.Normal(xs.new_zeros(n, self.z_dim), 1.0).to_event(1))
            ys = pyro.sample("y", dist.OneHotCategorical(xs.new_ones(n, self.classes) / self.classes), obs=ys)
            batch = torch.broadcast_shapes(zs.shape[:-1], ys.shape[:-1])
            logits = self.decoder(torch.cat([zs.expand(batch + zs.shape[-1:]), ys.expand(batch + ys.shape[-1:])], -1))
            pyro.sample("x", dist.Bernoulli(logits=logits, validate_args=False).to_event(1), obs=xs)

    def guide(self, xs, ys=None):
        with pyro.plate("data"):
            if ys is None:
                ys = pyro.sample("y", dist.OneHotCategorical(logits=self.encoder_y(xs)))
            batch = torch.broadcast_shapes(xs.shape[:-1], ys.shape[:-1])  # enumerated ys: a leading dim
            xy = torch.cat([xs.expand(batch + xs.shape[-1:]), ys.expand(batch + ys.shape[-1:])], -1)
            loc, raw = self.encoder_z(xy).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1))


# -- amortised LDA (examples/lda.py's shape of program) ---------------------------------------
def lda_model(data=None, args=None, batch_size=None):
    """Documents as columns of word ids, data of shape (words per document, documents); the
    words' topics are summed out (parallel enumeration), the documents' topics amortised."""
    with pyro.plate("topics", args.num_topics):
        topic_weights = pyro.sample("topic_weights", dist.Gamma(1.0 / args.num_topics, 1.0))
        topic_words = pyro.sample("topic_words", dist.Dirichlet(torch.ones(args.num_words) / args.num_words))
    with pyro.plate("documents", args.num_docs) as ind:
        if data is not None:
            data = data[:, ind]
        doc_topics = pyro.sample("doc_topics", dist.Dirichlet(topic_weights))
        with pyro.plate("words", args.num_words_per_doc):
            word_topics = pyro.sample("word_topics", dist.Categorical(doc_topics), infer={"enumerate": "parallel"})
            data = pyro.sample("doc_words", dist.Categorical(topic_words[word_topics]), obs=data)
    return topic_weights, topic_words, data


def lda_predictor(args, seed=0):
    torch.manual_seed(seed)
    sizes = [args.num_words, *args.hidden, args.num_topics]
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Softmax(dim=-1))


def lda_guide(predictor, data, args, batch_size=None):
    """Conjugate global posteriors as pyro.param; the documents' topics from a network
    registered with pyro.module; bound to its network with functools.partial, as lda.py does."""
    weights = pyro.param(
        "topic_weights_posterior", lambda: torch.ones(args.num_topics), constraint=constraints.positive
    )
    words = pyro.param(
        "topic_words_posterior",
        lambda: torch.ones(args.num_topics, args.num_words),
        constraint=constraints.greater_than(0.5),
    )
    with pyro.plate("topics", args.num_topics):
        pyro.sample("topic_weights", dist.Gamma(weights, 1.0))
        pyro.sample("topic_words", dist.Dirichlet(words))
    pyro.module("predictor", predictor)
    with pyro.plate("documents", args.num_docs, batch_size) as ind:
        data = data[:, ind]
        counts = torch.zeros(args.num_words, ind.size(0)).scatter_add(0, data, torch.ones(data.shape))
        pyro.sample("doc_topics", dist.Delta(predictor(counts.transpose(0, 1)), event_dim=1))


def lda_data(args, seed=0):
    pyro.set_rng_seed(seed)
    return lda_model(args=args)[2]


# -- hmm.py's models 1 and 5 on small sequences ------------------------------------------------
def hmm_sequences(num_sequences=6, max_length=5, data_dim=4, seed=0):
    """Binary "tones" (num_sequences, max_length, data_dim) with lengths in [3, max_length]."""
    g = torch.Generator().manual_seed(seed)
    sequences = (torch.rand(num_sequences, max_length, data_dim, generator=g) < 0.3).float()
    lengths = torch.randint(3, max_length + 1, (num_sequences,), generator=g)
    return sequences, lengths


def hmm_model_1(sequences, lengths, args, batch_size=None, include_prior=True):
    """A discrete HMM with priors on its transition and emission probabilities; the hidden
    states are summed out; sequences subsampled in a plate at dim -2, tones at dim -1."""
    num_sequences, max_length, data_dim = map(int, sequences.shape)
    with pyro.poutine.mask(mask=include_prior):
        probs_x = pyro.sample("probs_x", dist.Dirichlet(0.9 * torch.eye(args.hidden_dim) + 0.1).to_event(1))
        probs_y = pyro.sample("probs_y", dist.Beta(0.1, 0.9).expand([args.hidden_dim, data_dim]).to_event(2))
    tones_plate = pyro.plate("tones", data_dim, dim=-1)
    with pyro.plate("sequences", num_sequences, batch_size, dim=-2) as batch:
        lengths = lengths[batch]
        x = 0
        for t in pyro.markov(range(max_length if args.jit else int(lengths.max()))):
            with pyro.poutine.mask(mask=(t < lengths).unsqueeze(-1)):
                x = pyro.sample(f"x_{t}", dist.Categorical(probs_x[x]), infer={"enumerate": "parallel"})
                with tones_plate:
                    pyro.sample(f"y_{t}", dist.Bernoulli(probs_y[x.squeeze(-1)]), obs=sequences[batch, t])


class TonesNet(nn.Module):
    """p(y_t | x_t, y_{t-1}) as logits: the hidden state's embedding plus the previous tones."""

    def __init__(self, hidden_dim, data_dim):
        super().__init__()
        self.x_to_y = nn.Embedding(hidden_dim, data_dim)
        self.y_to_y = nn.Linear(data_dim, data_dim)

    def forward(self, x, y):
        return self.x_to_y(x.squeeze(-1)) + self.y_to_y(y)


def make_hmm_model_5(net):
    """hmm.py's model 5: tones depend on the hidden state and the previous tones through a
    network registered with pyro.module."""

    def hmm_model_5(sequences, lengths, args, batch_size=None, include_prior=True):
        num_sequences, max_length, data_dim = map(int, sequences.shape)
        pyro.module("tones_generator", net)
        with pyro.poutine.mask(mask=include_prior):
            probs_x = pyro.sample("probs_x", dist.Dirichlet(0.9 * torch.eye(args.hidden_dim) + 0.1).to_event(1))
        with pyro.plate("sequences", num_sequences, batch_size, dim=-2) as batch:
            lengths = lengths[batch]
            x, y = 0, torch.zeros(data_dim)
            for t in pyro.markov(range(max_length if args.jit else int(lengths.max()))):
                with pyro.poutine.mask(mask=(t < lengths).unsqueeze(-1)):
                    x = pyro.sample(f"x_{t}", dist.Categorical(probs_x[x]), infer={"enumerate": "parallel"})
                    with pyro.plate(f"tones_{t}", data_dim, dim=-1):
                        y = pyro.sample(f"y_{t}", dist.Bernoulli(logits=net(x, y)), obs=sequences[batch, t])

    return hmm_model_5


def hmm_guide(model):
    """hmm.py's guide: a MAP (AutoDelta) guide over the probabilities only."""
    from pyro.infer.autoguide import AutoDelta

    return AutoDelta(pyro.poutine.block(model, expose_fn=lambda msg: msg["name"].startswith("probs_")))
