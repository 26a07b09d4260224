"""Pyro ports of posteriordb's Stan programs: the same parameters, priors, constraints and
likelihood, written as Pyro's examples write models.

Stan's conventions and their Pyro forms:

- a parameter without a prior statement has a flat prior:
  ``pyro.sample(name, dist.ImproperUniform(support, (), shape))``;
- ``real<lower=0> sigma; sigma ~ cauchy(0, s)`` is a half-Cauchy (the truncation only
  changes a constant), as ``normal``'s is a half-normal;
- ``target += ...`` is ``pyro.factor``; a support whose bound depends on another parameter
  (``real<lower=0, upper=1 - alpha1> beta1``) is written on the unit interval with the
  change of variables' log-Jacobian as a factor (the density in Stan's parameters stays the
  same);
- transformed data are computed from the data in :attr:`Port.args`; transformed
  parameters (eight schools' ``theta``) in :attr:`Port.to_stan`, which maps the port's
  latent sites to the reference's parameter names.

Each model broadcasts over a batch of draws (regressions as ``(X * beta).sum(-1)``, time
series over a last time dimension), so compare's vectorised particles apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints


@dataclass(frozen=True)
class Port:
    """A posteriordb posterior in Pyro.

    :ivar model: the Pyro model, ``model(*args)``.
    :ivar args: posteriordb's data (a dict) -> the model's arguments (tensors).
    :ivar to_stan: ``to_stan(draws, args)``: the port's draws ``{site: (S, *shape)}`` and the
        model's arguments -> the reference's parameters ``{"beta[1]": (S,), ...}``; the
        default names a site's elements as Stan does (1-based indices).
    :ivar stan: the Stan program in posteriordb (``models/stan/NAME.stan``).
    """

    model: object
    args: object
    stan: str
    to_stan: object = None
    notes: tuple = field(default_factory=tuple)

    def stan_draws(self, site_samples, args) -> dict:
        if self.to_stan is not None:
            return self.to_stan(site_samples, args)
        return stan_names(site_samples)


def stan_names(site_samples) -> dict:
    """``{site: (S,)}`` stays; ``{site: (S, K)}`` becomes ``site[1]`` ... ``site[K]``."""
    out = {}
    for name, draws in site_samples.items():
        flat = draws.reshape(draws.shape[0], -1)
        if draws.dim() == 1:
            out[name] = draws
        else:
            for k in range(flat.shape[1]):
                out[f"{name}[{k + 1}]"] = flat[:, k]
    return out


def _tensor(values):
    return torch.as_tensor(values, dtype=torch.get_default_dtype())


def _flat(name, support=constraints.real, shape=()):
    return pyro.sample(name, dist.ImproperUniform(support, (), shape))


# -- eight schools, non-centred ---------------------------------------------------------------
def eight_schools_noncentered(y, sigma):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", len(y)):
        theta_trans = pyro.sample("theta_trans", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(theta_trans * tau + mu, sigma), obs=y)


def _eight_schools_to_stan(s, args):
    theta = s["theta_trans"] * s["tau"].unsqueeze(-1) + s["mu"].unsqueeze(-1)
    return {**stan_names({"theta": theta}), "mu": s["mu"], "tau": s["tau"]}


# -- regressions --------------------------------------------------------------------------------
def blr(X, y):
    """``sblrc-blr``: normal(0, 10) priors on the coefficients and the (positive) scale."""
    beta = pyro.sample("beta", dist.Normal(0.0, 10.0).expand([X.shape[1]]).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfNormal(10.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal((X * beta).sum(-1), sigma), obs=y)


def kidscore_momiq(mom_iq, kid_score):
    """Flat coefficients, a half-Cauchy(2.5) scale."""
    beta = _flat("beta", shape=(2,))
    sigma = pyro.sample("sigma", dist.HalfCauchy(2.5))
    with pyro.plate("data", len(kid_score)):
        pyro.sample("kid_score", dist.Normal(beta[..., 0] + beta[..., 1] * mom_iq, sigma), obs=kid_score)


def kidscore_interaction(mom_hs, mom_iq, kid_score):
    """Flat coefficients on the intercept, ``mom_hs``, ``mom_iq`` and their product; a
    half-Cauchy(2.5) scale."""
    beta = _flat("beta", shape=(4,))
    sigma = pyro.sample("sigma", dist.HalfCauchy(2.5))
    X = torch.stack([torch.ones_like(mom_iq), mom_hs, mom_iq, mom_hs * mom_iq], -1)
    with pyro.plate("data", len(kid_score)):
        pyro.sample("kid_score", dist.Normal((X * beta).sum(-1), sigma), obs=kid_score)


def kilpisjarvi(x, y, priors):
    """A linear trend in uncentred years: normal priors on the intercept and slope with the
    data's means and sds, a flat scale. The intercept and slope are correlated beyond -0.999."""
    pmualpha, psalpha, pmubeta, psbeta = priors
    alpha = pyro.sample("alpha", dist.Normal(pmualpha, psalpha))
    beta = pyro.sample("beta", dist.Normal(pmubeta, psbeta))
    sigma = _flat("sigma", constraints.positive)
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(alpha + beta * x, sigma), obs=y)


def _kilpisjarvi_args(d):
    return _tensor(d["x"]), _tensor(d["y"]), tuple(float(d[k]) for k in ("pmualpha", "psalpha", "pmubeta", "psbeta"))


def diamonds(Xc, y):
    """brms's Gaussian regression on 24 centred predictors: normal(0, 1) slopes ``b``, a
    student-t(3, 8, 10) ``Intercept`` (of the centred predictors), a half-student-t(3, 0, 10)
    scale. The posterior of ``b`` is strongly correlated (polynomial terms)."""
    b = pyro.sample("b", dist.Normal(0.0, 1.0).expand([Xc.shape[1]]).to_event(1))
    intercept = pyro.sample("Intercept", dist.StudentT(3.0, 8.0, 10.0))
    sigma = pyro.sample("sigma", dist.FoldedDistribution(dist.StudentT(3.0, 0.0, 10.0)))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(intercept + (Xc * b).sum(-1), sigma), obs=y)


def _diamonds_args(d):
    X = _tensor(d["X"])
    Xc = X[:, 1:] - X[:, 1:].mean(0)  # Stan's transformed data: the predictors centred, the intercept column dropped
    return Xc, _tensor(d["Y"])


def flat_regression(X, y):
    """``y ~ normal(X beta, sigma)`` with flat priors on ``beta`` and on ``sigma > 0`` (the
    mesquite, earnings and NES programs, whose design matrix is their transformed data)."""
    beta = _flat("beta", shape=(X.shape[1],))
    sigma = _flat("sigma", constraints.positive)
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal((X * beta).sum(-1), sigma), obs=y)


def _mesquite_args(d):
    t = {k: _tensor(v) for k, v in d.items() if isinstance(v, list)}
    columns = [
        torch.ones_like(t["weight"]),
        (t["diam1"] * t["diam2"] * t["canopy_height"]).log(),
        (t["diam1"] * t["diam2"]).log(),
        (t["diam1"] / t["diam2"]).log(),
        t["total_height"].log(),
        t["density"].log(),
        t["group"],
    ]
    return torch.stack(columns, -1), t["weight"].log()


def _earnings_args(d):
    earn, height, male = _tensor(d["earn"]), _tensor(d["height"]), _tensor(d["male"])
    z = (height - height.mean()) / height.std()  # Stan's sd: the n - 1 denominator, as torch's
    return torch.stack([torch.ones_like(z), z, male, z * male], -1), earn.log()


def _nes_args(d):
    t = {k: _tensor(v) for k, v in d.items() if isinstance(v, list)}
    age = t["age_discrete"]
    columns = [
        torch.ones_like(age),
        t["real_ideo"],
        t["race_adj"],
        (age == 2).to(age.dtype),
        (age == 3).to(age.dtype),
        (age == 4).to(age.dtype),
        t["educ1"],
        t["gender"],
        t["income"],
    ]
    return torch.stack(columns, -1), t["partyid7"]


# -- a mixture ---------------------------------------------------------------------------------
def low_dim_gauss_mix(y):
    """Two normal components with ordered locations (normal(0, 2) on the ordered vector, as
    Stan's ``mu ~ normal(0, 2)`` on an ``ordered[2]``), half-normal(2) scales, beta(5, 5) weight."""
    mu = _flat("mu", constraints.ordered_vector, (2,))
    pyro.factor("mu_prior", dist.Normal(0.0, 2.0).log_prob(mu).sum(-1))
    sigma = pyro.sample("sigma", dist.HalfNormal(2.0).expand([2]).to_event(1))
    theta = pyro.sample("theta", dist.Beta(5.0, 5.0))
    mix = dist.Categorical(probs=torch.stack([theta, 1 - theta], -1))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.MixtureSameFamily(mix, dist.Normal(mu, sigma)), obs=y)


# -- time series ---------------------------------------------------------------------------------
def garch11(y, sigma1):
    """GARCH(1, 1): flat ``mu`` and ``alpha0 > 0``, ``alpha1`` flat on (0, 1), ``beta1`` flat
    on (0, 1 - alpha1), written as ``beta1 = (1 - alpha1) u`` with ``u`` flat on (0, 1) and
    the Jacobian ``log(1 - alpha1)`` as a factor."""
    mu = _flat("mu")
    alpha0 = _flat("alpha0", constraints.positive)
    alpha1 = pyro.sample("alpha1", dist.Uniform(0.0, 1.0))
    u = _flat("beta1_unit", constraints.unit_interval)
    pyro.factor("beta1_jacobian", torch.log1p(-alpha1))
    beta1 = (1 - alpha1) * u
    sigma = [torch.zeros_like(mu) + sigma1]
    for t in range(1, len(y)):
        sigma.append(torch.sqrt(alpha0 + alpha1 * (y[t - 1] - mu) ** 2 + beta1 * sigma[-1] ** 2))
    pyro.sample("y", dist.Normal(mu.unsqueeze(-1), torch.stack(sigma, -1)).to_event(1), obs=y)


def _garch_to_stan(s, args):
    return {"mu": s["mu"], "alpha0": s["alpha0"], "alpha1": s["alpha1"], "beta1": (1 - s["alpha1"]) * s["beta1_unit"]}


def arma11(y):
    """ARMA(1, 1) with the first error taken as if ``err[0] = 0``, as the Stan program."""
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    phi = pyro.sample("phi", dist.Normal(0.0, 2.0))
    theta = pyro.sample("theta", dist.Normal(0.0, 2.0))
    sigma = pyro.sample("sigma", dist.HalfCauchy(2.5))
    err = [y[0] - (mu + phi * mu)]
    for t in range(1, len(y)):
        err.append(y[t] - (mu + phi * y[t - 1] + theta * err[-1]))
    pyro.factor("err", dist.Normal(0.0, sigma.unsqueeze(-1)).log_prob(torch.stack(err, -1)).sum(-1))


def ar_k(y, K):
    """AR(K) on the observations after the first ``K``: normal(0, 10) on the intercept and
    the coefficients, a half-Cauchy(2.5) scale."""
    alpha = pyro.sample("alpha", dist.Normal(0.0, 10.0))
    beta = pyro.sample("beta", dist.Normal(0.0, 10.0).expand([K]).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfCauchy(2.5))
    T = len(y)
    lags = torch.stack([y[K - k : T - k] for k in range(1, K + 1)], -1)  # lags[t, k - 1] = y[t + K - k]
    mu = alpha.unsqueeze(-1) + (lags * beta.unsqueeze(-2)).sum(-1)
    pyro.sample("y", dist.Normal(mu, sigma.unsqueeze(-1)).to_event(1), obs=y[K:])


def hmm_example(y, K):
    """A two-state HMM with unit-variance normal emissions, the states summed out by the
    forward algorithm: flat (Dirichlet(1)) transition rows ``theta1``, ``theta2``; ordered
    positive means ``mu`` with normal(3, 1) and normal(10, 1) terms; the first state uniform
    (Stan's forward pass starts from equal weights)."""
    theta1 = pyro.sample("theta1", dist.Dirichlet(torch.ones(K)))
    theta2 = pyro.sample("theta2", dist.Dirichlet(torch.ones(K)))
    mu = _flat("mu", constraints.positive_ordered_vector, (K,))
    pyro.factor("mu_prior", dist.Normal(torch.tensor([3.0, 10.0]), 1.0).log_prob(mu).sum(-1))
    log_theta = torch.stack([theta1, theta2], -2).log()  # [..., from, to]
    emit = dist.Normal(mu.unsqueeze(-2), 1.0).log_prob(y.unsqueeze(-1))  # [..., t, state]
    gamma = emit[..., 0, :]
    for t in range(1, len(y)):
        gamma = torch.logsumexp(gamma.unsqueeze(-1) + log_theta, -2) + emit[..., t, :]
    pyro.factor("forward", torch.logsumexp(gamma, -1))


# -- Gaussian processes ------------------------------------------------------------------------
def _squared_exponential(x, alpha, rho):
    """Stan's ``gp_exp_quad_cov(x, alpha, rho)`` for draws of ``alpha`` and ``rho``, in float64
    (a Cholesky of this kernel on a grid fails in float32)."""
    d2 = (x.unsqueeze(-1) - x.unsqueeze(-2)).double() ** 2
    a, r = alpha.double()[..., None, None], rho.double()[..., None, None]
    return a**2 * torch.exp(-d2 / (2 * r**2))


def gp_regr(x, y):
    """A GP regression's hyper-parameters, the latent function integrated out: gamma(25, 4)
    length scale, half-normal(2) magnitude, half-normal(1) noise ``sigma`` added to the
    kernel's diagonal (Stan's program adds ``sigma``, not its square)."""
    rho = pyro.sample("rho", dist.Gamma(25.0, 4.0))
    alpha = pyro.sample("alpha", dist.HalfNormal(2.0))
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
    eye = torch.eye(len(x), dtype=torch.float64)
    cov = _squared_exponential(x, alpha, rho) + sigma.double()[..., None, None] * eye
    log_lik = dist.MultivariateNormal(torch.zeros_like(eye[0]), scale_tril=torch.linalg.cholesky(cov)).log_prob(
        y.double()
    )
    pyro.factor("y", log_lik.to(y.dtype))


def gp_pois_regr(x, k):
    """A latent GP with Poisson counts, non-centred: ``f = L f_tilde`` with ``L`` the Cholesky
    of the kernel plus 1e-10 on its diagonal; the reference's ``f`` is computed from the
    draws (:func:`_gp_pois_to_stan`)."""
    rho = pyro.sample("rho", dist.Gamma(25.0, 4.0))
    alpha = pyro.sample("alpha", dist.HalfNormal(2.0))
    f_tilde = pyro.sample("f_tilde", dist.Normal(0.0, 1.0).expand([len(x)]).to_event(1))
    f = _gp_latent(x, alpha, rho, f_tilde)
    pyro.sample("k", dist.Poisson(f.exp()).to_event(1), obs=k)


def _gp_latent(x, alpha, rho, f_tilde):
    cov = _squared_exponential(x, alpha, rho) + 1e-10 * torch.eye(len(x), dtype=torch.float64)
    return (torch.linalg.cholesky(cov) @ f_tilde.double().unsqueeze(-1)).squeeze(-1).to(f_tilde.dtype)


def _gp_pois_args(d):
    return _tensor(d["x"]), _tensor(d["k"])


def _gp_pois_to_stan(s, args):
    f = _gp_latent(args[0], s["alpha"], s["rho"], s["f_tilde"])
    return {"rho": s["rho"], "alpha": s["alpha"], **stan_names({"f": f})}


def _vectors(*names):
    return lambda d: tuple(_tensor(d[n]) for n in names)


PORTS = {
    "eight_schools-eight_schools_noncentered": Port(
        eight_schools_noncentered, _vectors("y", "sigma"), "eight_schools_noncentered", _eight_schools_to_stan
    ),
    "sblrc-blr": Port(blr, _vectors("X", "y"), "blr"),
    "kidiq-kidscore_momiq": Port(kidscore_momiq, _vectors("mom_iq", "kid_score"), "kidscore_momiq"),
    "mesquite-logmesquite_logvas": Port(flat_regression, _mesquite_args, "logmesquite_logvas"),
    "earnings-logearn_interaction_z": Port(flat_regression, _earnings_args, "logearn_interaction_z"),
    "nes2000-nes": Port(flat_regression, _nes_args, "nes"),
    "low_dim_gauss_mix-low_dim_gauss_mix": Port(low_dim_gauss_mix, _vectors("y"), "low_dim_gauss_mix"),
    "garch-garch11": Port(garch11, lambda d: (_tensor(d["y"]), float(d["sigma1"])), "garch11", _garch_to_stan),
    "arma-arma11": Port(arma11, _vectors("y"), "arma11"),
    "arK-arK": Port(ar_k, lambda d: (_tensor(d["y"]), int(d["K"])), "arK"),
    "hmm_example-hmm_example": Port(hmm_example, lambda d: (_tensor(d["y"]), int(d["K"])), "hmm_example"),
    "gp_pois_regr-gp_regr": Port(gp_regr, _vectors("x", "y"), "gp_regr"),
    "gp_pois_regr-gp_pois_regr": Port(gp_pois_regr, _gp_pois_args, "gp_pois_regr", _gp_pois_to_stan),
    "kidiq-kidscore_interaction": Port(
        kidscore_interaction, _vectors("mom_hs", "mom_iq", "kid_score"), "kidscore_interaction"
    ),
    "kilpisjarvi_mod-kilpisjarvi": Port(kilpisjarvi, _kilpisjarvi_args, "kilpisjarvi"),
    "diamonds-diamonds": Port(diamonds, _diamonds_args, "diamonds"),
}

__all__ = ["PORTS", "Port", "stan_names"]
