"""Pyro programs written the way Pyro's examples and tutorials write them, for the corpus tests:
functions and PyroModules, ``pyro.contrib.gp`` models, LKJ and simplex latents, enumerated
discrete sites and ``pyro.markov`` chains, ``obs_mask`` and ``.mask()``, ``poutine.reparam``,
transformed and interval-constrained latents, nested plates, keyword data,
``pyro.deterministic``, funnels, horseshoes, flat ordinal cut-points, change points,
zero-inflated counts, random network weights, an ODE integrated by a loop.

Each is a :class:`Program`: the model, its arguments (positional and keyword), and what a check
must know about it (discrete sites, a label-switching symmetry, a funnel).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyro
import pyro.contrib.gp as gp
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer import config_enumerate
from pyro.infer.reparam import LocScaleReparam, TransformReparam
from pyro.nn import PyroModule, PyroSample
from torch.distributions import transforms

from user_programs import BayesianRegression


@dataclass
class Program:
    name: str
    model: object
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    discrete: bool = False  # enumerated discrete latents
    symmetric: tuple = ()  # sites whose components can swap (a mixture's): compared sorted
    #: divergent transitions in any sampler (a funnel's neck, a heavy-tailed scale): the draws are
    #: judged by the diagnostics' warnings, not by agreement
    funnel: bool = False
    max_plate_nesting: int | None = None
    #: why a method of compare's cannot answer, where one cannot: {method: a phrase of its error}
    cannot: dict = field(default_factory=dict)
    #: fit with an autoguide is refused by Pyro's own check, as SVI.step refuses it (its message)
    refused_by_pyro: str = ""
    #: a flat prior (ImproperUniform): an autoguide needs ppmodels' init_loc_fn, as fit's refusal says
    flat_prior: bool = False


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


# -- regression, the tutorial's PyroModule ---------------------------------------------------------
# BayesianRegression: the tutorial's model, as tests/user_programs.py writes it


def regression_data(n=40, seed=0):
    x = torch.randn(n, 3, generator=_g(seed))
    return x, x @ torch.tensor([1.0, -1.0, 0.5]) + 2.0 + 0.5 * torch.randn(n, generator=_g(seed + 1))


# -- Gaussian processes, pyro.contrib.gp -----------------------------------------------------------
def gp_regression():
    x = torch.linspace(0.0, 5.0, 20)
    y = torch.sin(x) + 0.2 * torch.randn(20, generator=_g())
    kernel = gp.kernels.RBF(input_dim=1)
    kernel.lengthscale = PyroSample(dist.LogNormal(0.0, 1.0))
    kernel.variance = PyroSample(dist.LogNormal(0.0, 1.0))
    return gp.models.GPRegression(x, y, kernel, noise=torch.tensor(0.1))


# -- pooling: baseball (Pyro's example), eight schools ---------------------------------------------
def baseball(at_bats, hits):
    m = pyro.sample("m", dist.Uniform(0.0, 1.0))
    kappa = pyro.sample("kappa", dist.Pareto(1.0, 1.5))
    with pyro.plate("num_players", at_bats.shape[0]):
        phi = pyro.sample("phi", dist.Beta(m * kappa, (1 - m) * kappa))
        return pyro.sample("obs", dist.Binomial(at_bats, phi), obs=hits)


SCHOOLS_Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SCHOOLS_SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools(sigma, y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", len(sigma)):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


eight_schools_locscale = poutine.reparam(eight_schools, config={"theta": LocScaleReparam(0.0)})


# -- correlations and simplices --------------------------------------------------------------------
def lkj(y):
    d = y.shape[1]
    theta = pyro.sample("theta", dist.HalfCauchy(torch.ones(d)))  # a batch outside any plate, as Pyro's lkj.py
    L_omega = pyro.sample("L_omega", dist.LKJCholesky(d, torch.ones(())))
    L_Omega = torch.mm(torch.diag(theta.sqrt()), L_omega)
    with pyro.plate("observations", y.shape[0]):
        pyro.sample("obs", dist.MultivariateNormal(torch.zeros(d), scale_tril=L_Omega), obs=y)


def lkj_data():
    cov = torch.tensor([[1.0, 0.6, 0.2], [0.6, 2.0, -0.3], [0.2, -0.3, 0.5]])
    return (dist.MultivariateNormal(torch.zeros(3), cov).sample(torch.Size([50])),)


def dirichlet(counts):
    probs = pyro.sample("probs", dist.Dirichlet(torch.ones(4)))
    pyro.sample("counts", dist.Multinomial(int(counts.sum()), probs), obs=counts)


# -- discrete sites, enumerated --------------------------------------------------------------------
@config_enumerate
def mixture(y):
    weights = pyro.sample("weights", dist.Dirichlet(torch.ones(2)))
    with pyro.plate("components", 2):
        locs = pyro.sample("locs", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(y)):
        z = pyro.sample("z", dist.Categorical(weights))
        pyro.sample("y", dist.Normal(locs[z], 1.0), obs=y)


def mixture_data():
    return (torch.cat([torch.randn(15, generator=_g()) - 3.0, torch.randn(15, generator=_g(1)) + 3.0]),)


@config_enumerate
def markov_hmm(y):
    probs_x = pyro.sample("probs_x", dist.Dirichlet(0.9 * torch.eye(2) + 0.1).to_event(1))
    locs = pyro.sample("locs", dist.Normal(torch.tensor([-1.0, 1.0]), 1.0).to_event(1))
    x = 0
    for t in pyro.markov(range(len(y))):
        x = pyro.sample(f"x_{t}", dist.Categorical(probs_x[x]))
        pyro.sample(f"y_{t}", dist.Normal(locs[x], 0.5), obs=y[t])


def hmm_data(steps=7):
    states = torch.tensor([0, 0, 1, 1, 1, 0, 1, 1, 0, 0, 1, 0][:steps])
    return (torch.tensor([-1.0, 1.0])[states] + 0.5 * torch.randn(steps, generator=_g()),)


@config_enumerate
def change_point(counts):
    early = pyro.sample("early", dist.Exponential(1.0))
    late = pyro.sample("late", dist.Exponential(1.0))
    switch = pyro.sample("switch", dist.Categorical(logits=torch.zeros(len(counts))))
    with pyro.plate("years", len(counts)):
        rate = torch.where(torch.arange(len(counts)) < switch, early, late)
        pyro.sample("counts", dist.Poisson(rate), obs=counts)


# -- counts ----------------------------------------------------------------------------------------
def poisson_glm(x, y=None):
    beta = pyro.sample("beta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    rate = pyro.deterministic("rate", (x @ beta).exp())
    with pyro.plate("data", len(x)):
        pyro.sample("y", dist.Poisson(rate), obs=y)


def zero_inflated(y):
    gate = pyro.sample("gate", dist.Beta(1.0, 1.0))
    rate = pyro.sample("rate", dist.LogNormal(0.0, 1.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.ZeroInflatedPoisson(rate, gate=gate), obs=y)


def negative_binomial(x, y):
    beta = pyro.sample("beta", dist.Normal(0.0, 1.0))
    concentration = pyro.sample("concentration", dist.Gamma(2.0, 0.5))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.GammaPoisson(concentration, concentration / (x * beta).exp()), obs=y)


# -- sparsity, robustness, classification ----------------------------------------------------------
def horseshoe(x, y):
    d = x.shape[1]
    tau = pyro.sample("tau", dist.HalfCauchy(1.0))
    with pyro.plate("features", d):
        lam = pyro.sample("lambda", dist.HalfCauchy(1.0))
        beta = pyro.sample("beta", dist.Normal(0.0, tau * lam))
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(x @ beta, sigma), obs=y)


def robust(x, y):
    beta = pyro.sample("beta", dist.Normal(0.0, 5.0).expand([2]).to_event(1))
    nu = pyro.sample("nu", dist.Gamma(2.0, 0.1))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.StudentT(nu, x @ beta, 1.0), obs=y)


def logistic(x, y):
    beta = pyro.sample("beta", dist.Normal(0.0, 2.0).expand([x.shape[1]]).to_event(1))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Bernoulli(logits=x @ beta), obs=y)


def ordinal(x, y):
    """Flat ordered cut-points (Stan's ``ordered``), as ``ImproperUniform``."""
    beta = pyro.sample("beta", dist.Normal(0.0, 2.0))
    cuts = pyro.sample("cuts", dist.ImproperUniform(constraints.ordered_vector, (), (3,)))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.OrderedLogistic(x * beta, cuts), obs=y)


# -- missing data, masks ---------------------------------------------------------------------------
def missing(y_observed, missing_index):
    """The missing entries a site of their own, put into the data with index_put (40 values,
    3 of them missing: arguments of different lengths)."""
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    sigma = pyro.sample("sigma", dist.HalfNormal(2.0))
    with pyro.plate("missing", len(missing_index)):
        imputed = pyro.sample("imputed", dist.Normal(mu, sigma))
    y = y_observed.index_put((missing_index,), imputed)
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu, sigma), obs=y)


def masked(y, keep):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu, 1.0).mask(keep), obs=y)


# -- transformed and constrained latents -----------------------------------------------------------
def transformed(y):
    scale = pyro.sample("scale", dist.TransformedDistribution(dist.Normal(0.0, 1.0), [transforms.ExpTransform()]))
    shift = pyro.sample("shift", dist.Uniform(-3.0, 3.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(shift, scale), obs=y)


def _shifted(y):
    z = pyro.sample("z", dist.TransformedDistribution(dist.Normal(0.0, 1.0), [transforms.AffineTransform(1.0, 2.0)]))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(z, 1.0), obs=y)


transform_reparam = poutine.reparam(_shifted, config={"z": TransformReparam()})


# -- plates in plates, keyword data ----------------------------------------------------------------
def nested(y):
    """Students within schools: ``y`` is (schools, students)."""
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfNormal(2.0))
    with pyro.plate("schools", y.shape[0], dim=-2):
        school = pyro.sample("school", dist.Normal(mu, tau))
        with pyro.plate("students", y.shape[1], dim=-1):
            pyro.sample("y", dist.Normal(school, 1.0), obs=y)


def keyword(*, x, y):
    slope = pyro.sample("slope", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(slope * x, 1.0), obs=y)


# -- funnels ---------------------------------------------------------------------------------------
def funnel():
    log_scale = pyro.sample("log_scale", dist.Normal(0.0, 3.0))
    with pyro.plate("dims", 3):
        pyro.sample("x", dist.Normal(0.0, (log_scale / 2).exp()))


# -- random network weights ------------------------------------------------------------------------
class BayesianMLP(PyroModule):
    def __init__(self):
        super().__init__()
        self.hidden = PyroModule[torch.nn.Linear](1, 4)
        self.hidden.weight = PyroSample(dist.Normal(0.0, 1.0).expand([4, 1]).to_event(2))
        self.hidden.bias = PyroSample(dist.Normal(0.0, 1.0).expand([4]).to_event(1))
        self.out = PyroModule[torch.nn.Linear](4, 1)
        self.out.weight = PyroSample(dist.Normal(0.0, 1.0).expand([1, 4]).to_event(2))
        self.out.bias = PyroSample(dist.Normal(0.0, 1.0).expand([1]).to_event(1))

    def forward(self, x, y=None):
        mean = self.out(torch.tanh(self.hidden(x))).squeeze(-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(mean, 0.1), obs=y)


def mlp_data():
    x = torch.linspace(-2.0, 2.0, 30).unsqueeze(-1)
    return x, torch.tanh(2 * x).squeeze(-1) + 0.1 * torch.randn(30, generator=_g())


# -- particles that meet each other ----------------------------------------------------------------
def mixed_particles(x, y):
    """Broadcasts a particle dimension against another: ``w.unsqueeze(-2)`` puts the particles of
    ``w`` beside the data's, so under a plate of P particles the product mixes particle i's
    weights with particle j's rows. It runs under the plate, but the joint is not the
    particles' own."""
    w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    mean = (x * w.unsqueeze(-2)).sum(-1)
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mean, 0.5), obs=y)


# -- an ODE, integrated by a loop ------------------------------------------------------------------
def lotka_volterra(times, y, steps_per_interval=2):
    """Predator and prey, integrated by fixed-step RK4 written in torch (``steps`` steps)."""
    alpha = pyro.sample("alpha", dist.LogNormal(0.0, 0.5))
    beta = pyro.sample("beta", dist.LogNormal(-3.0, 0.5))
    gamma = pyro.sample("gamma", dist.LogNormal(0.0, 0.5))
    delta = pyro.sample("delta", dist.LogNormal(-3.0, 0.5))
    sigma = pyro.sample("sigma", dist.LogNormal(-1.0, 1.0))

    def f(u):
        prey, predator = u[..., 0], u[..., 1]
        return torch.stack([alpha * prey - beta * prey * predator, delta * prey * predator - gamma * predator], -1)

    u = y[0]
    h = float(times[1] - times[0]) / steps_per_interval
    path = [u]
    for _ in range(len(times) - 1):
        for _ in range(steps_per_interval):
            k1 = f(u)
            k2 = f(u + h / 2 * k1)
            k3 = f(u + h / 2 * k2)
            k4 = f(u + h * k3)
            u = (u + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)).clamp(1e-3, 1e4)  # a blow-up stays finite
        path.append(u)
    with pyro.plate("times", len(times)):
        pyro.sample("y", dist.LogNormal(torch.stack(path).log(), sigma).to_event(1), obs=y)


def lotka_volterra_data(intervals=5):
    times = torch.arange(intervals + 1, dtype=torch.float32)
    u, path = torch.tensor([30.0, 4.0]), []
    a, b, c, d = 0.55, 0.028, 0.84, 0.026
    for _ in times:
        path.append(u)
        for _ in range(40):
            h = 1.0 / 40
            du = torch.stack([a * u[0] - b * u[0] * u[1], d * u[0] * u[1] - c * u[1]])
            u = u + h * du
    y = torch.stack(path) * torch.exp(0.1 * torch.randn(len(times), 2, generator=_g()))
    return times, y


def programs() -> list:
    """Every program of the corpus, built afresh (modules hold their own parameters)."""
    x, y = regression_data()
    gpr = gp_regression()
    at_bats = torch.tensor([45.0, 45.0, 45.0, 45.0, 45.0, 45.0])
    hits = torch.tensor([18.0, 17.0, 16.0, 15.0, 14.0, 14.0])
    counts_years = torch.tensor([4.0, 5.0, 4.0, 1.0, 0.0, 1.0, 2.0, 0.0])
    xc = torch.randn(30, 2, generator=_g(3))
    xl = torch.randn(40, 2, generator=_g(4))
    yl = torch.bernoulli(torch.sigmoid(xl @ torch.tensor([1.5, -1.0])), generator=_g(5))
    xo = torch.randn(60, generator=_g(6))
    yo = torch.clamp((xo * 1.2 + torch.randn(60, generator=_g(7))).round() + 1, 0, 3)
    y_missing = torch.randn(40, generator=_g(8)) + 1.0
    missing_index = torch.tensor([3, 17, 30])
    y_missing[missing_index] = 0.0
    yz = torch.tensor([0.0, 0.0, 3.0, 0.0, 1.0, 4.0, 0.0, 2.0, 0.0, 5.0, 0.0, 1.0])
    xn = torch.randn(25, generator=_g(9)).abs()
    yn = torch.poisson(3 * (0.5 * xn).exp(), generator=_g(10))
    xh = torch.randn(30, 6, generator=_g(11))
    yh = xh[:, 0] * 2.0 + 0.3 * torch.randn(30, generator=_g(12))
    xr = torch.randn(30, 2, generator=_g(13))
    yr = xr @ torch.tensor([1.0, 2.0]) + dist.StudentT(3.0).sample(torch.Size([30]))
    return [
        Program("regression tutorial (PyroModule, PyroSample)", BayesianRegression(3, 1), (x, y)),
        Program("GP regression, model function", gpr.model),
        Program("GP regression, module", gpr),
        Program("baseball partial pooling", baseball, (at_bats, hits), funnel=True),
        Program("eight schools, centred", eight_schools, (SCHOOLS_SIGMA, SCHOOLS_Y), funnel=True),
        Program("eight schools, LocScale reparam", eight_schools_locscale, (SCHOOLS_SIGMA, SCHOOLS_Y)),
        Program(
            "LKJ correlations",
            lkj,
            lkj_data(),
            cannot={"meanfield": "invalid log_prob shape", "fullrank": "invalid log_prob shape"},
            refused_by_pyro='at site "theta", invalid log_prob shape',
        ),
        Program("Dirichlet simplex", dirichlet, (torch.tensor([10.0, 4.0, 7.0, 1.0]),)),
        Program("enumerated mixture", mixture, mixture_data(), discrete=True, symmetric=("locs", "weights")),
        Program("pyro.markov HMM", markov_hmm, hmm_data(), discrete=True, max_plate_nesting=0),
        Program("enumerated change point", change_point, (counts_years,), discrete=True),
        Program(
            "Poisson GLM with pyro.deterministic",
            poisson_glm,
            (xc, torch.poisson((xc @ torch.tensor([0.5, -0.3])).exp(), generator=_g(14))),
        ),
        Program("zero-inflated Poisson", zero_inflated, (yz,)),
        Program("negative binomial", negative_binomial, (xn, yn)),
        Program("horseshoe", horseshoe, (xh, yh), funnel=True),
        Program("Student-t robust regression", robust, (xr, yr)),
        Program("logistic regression", logistic, (xl, yl)),
        Program("ordinal, flat ordered cut-points", ordinal, (xo, yo), flat_prior=True),
        Program("missing data imputed by index_put", missing, (y_missing, missing_index)),
        Program(".mask() on observations", masked, (torch.randn(20, generator=_g(15)), torch.arange(20) % 3 != 0)),
        Program("TransformedDistribution latents", transformed, (torch.randn(25, generator=_g(16)) * 2.0 + 1.0,)),
        Program("TransformReparam", transform_reparam, (torch.randn(20, generator=_g(17)) + 1.0,)),
        Program("nested plates", nested, (torch.randn(5, 6, generator=_g(18)) + torch.arange(5.0).unsqueeze(-1),)),
        Program(
            "keyword data",
            keyword,
            (),
            {"x": torch.randn(20, generator=_g(19)), "y": torch.randn(20, generator=_g(20))},
        ),
        Program("Neal's funnel", funnel, funnel=True),
        Program("random network weights (PyroModule MLP)", BayesianMLP(), mlp_data()),
        Program("particles meeting each other", mixed_particles, (xc, xc @ torch.tensor([1.0, -1.0]))),
        Program("Lotka-Volterra by RK4", lotka_volterra, lotka_volterra_data()),
    ]
