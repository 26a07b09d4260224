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
    :ivar to_stan: the port's draws ``{site: (S, *shape)}`` -> the reference's parameters
        ``{"beta[1]": (S,), ...}``; the default names a site's elements as Stan does
        (1-based indices).
    :ivar stan: the Stan program in posteriordb (``models/stan/NAME.stan``).
    """

    model: object
    args: object
    stan: str
    to_stan: object = None
    notes: tuple = field(default_factory=tuple)

    def stan_draws(self, site_samples) -> dict:
        if self.to_stan is not None:
            return self.to_stan(site_samples)
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


def _eight_schools_to_stan(s):
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


def _garch_to_stan(s):
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
}

__all__ = ["PORTS", "Port", "stan_names"]
