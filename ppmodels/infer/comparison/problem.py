"""What compare knows of a model before any method runs, and what it computes from a
method's draws: the latent sites and their shapes, the discrete sites, the batch
dimensions, whether the model broadcasts over particles, the exact posterior when known;
flattening draws per latent, posterior marginals of discrete sites, the predictive
log-likelihood of held-out data.

The model's sites are read from one trace (:mod:`ppmodels.infer.program.sites`), its latents
drawn from the prior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.infer import config_enumerate
from pyro.infer.autoguide.initialization import InitMessenger
from pyro.poutine.util import prune_subsample_sites

from .. import initialization as init
from ..program.sites import latent_names, latent_sites, model_function
from .report import MethodResult


@dataclass
class Problem:
    """A model and its data as compare's methods see them (see :meth:`inspect`)."""

    model_fn: object
    train: tuple
    sites: dict  # continuous latent site -> shape, in execution order
    discrete: dict  # discrete latent site -> shape
    nesting: int  # batch dimensions of the model's sites at most (plates or not)
    plates: int  # plate dimensions, as Pyro counts them (max_plate_nesting)
    names: list  # one name per latent dimension, e.g. "w[0]"
    broadcasts: bool  # the model runs under an extra plate of particles
    exact: dict | None = None  # latent name -> {"mean", "sd"}
    exact_discrete: dict | None = None  # discrete site -> exact posterior marginal probabilities

    @property
    def potential_model(self):
        """The model as MCMC's potential takes it: its discrete sites enumerated."""
        return config_enumerate(self.model_fn) if self.discrete else self.model_fn

    @classmethod
    def inspect(cls, model, train, exact=None, particles=8) -> Problem:
        """One cheap trace of ``model`` on ``train`` (a model that fails on its arguments
        fails here, before any method runs); ``exact`` (``{"names", "mean", "cov"}``) or the
        model's ``exact_posterior(*train)``; ``particles``: the plate size to check
        broadcasting with."""
        model_fn = model_function(model)
        try:
            sites, discrete, nesting, plates = latent_sites(model_fn, train)
        except Exception as error:
            raise ValueError(
                f"the model failed on `train` before any inference ran: {type(error).__name__}: {error}"
            ) from error
        names = latent_names(sites)
        if not names and not discrete:
            raise ValueError(
                "the model has no latent sites (every pyro.sample site in it is observed), so there is nothing to "
                "infer: compare needs at least one pyro.sample site without obs="
            )
        if exact is None and hasattr(model, "exact_posterior"):
            exact = model.exact_posterior(*train)
        moments = None
        if exact is not None:
            if list(exact["names"]) != names:
                raise ValueError(f"`exact` names {list(exact['names'])} do not match the model's latents {names}")
            sd = exact["cov"].diagonal().sqrt()
            moments = {n: {"mean": float(exact["mean"][i]), "sd": float(sd[i])} for i, n in enumerate(names)}
        exact_discrete = model.exact_discrete(*train) if discrete and hasattr(model, "exact_discrete") else None
        broadcasts = _broadcasts(model_fn, train, -(nesting + 1), particles)
        return cls(model_fn, train, sites, discrete, nesting, plates, names, broadcasts, moments, exact_discrete)

    @property
    def dim(self) -> int:
        """The batch dimension left of every site's: where draws and particles go."""
        return -(self.nesting + 1)

    @property
    def continuous_model(self):
        """The model with its discrete sites hidden (what a guide of the continuous latents sees)."""
        return poutine.block(self.model_fn, hide=list(self.discrete)) if self.discrete else self.model_fn

    def flatten(self, site_samples) -> dict:
        """latent name -> (S,) draws."""
        return _flatten(site_samples, self.sites, self.names)

    def flatten_moments(self, moments) -> dict:
        """``{site: (mean, sd)}`` elementwise -> ``{latent name: (mean, sd)}``."""
        means = torch.cat([moments[s][0].reshape(-1) for s in self.sites])
        sds = torch.cat([moments[s][1].reshape(-1) for s in self.sites])
        return {name: (float(means[i]), float(sds[i])) for i, name in enumerate(self.names)}

    def discrete_marginals(self, site_samples) -> dict:
        return _discrete_marginals(self.model_fn, site_samples, self.train, self.discrete, self.plates)

    def predictive_log_likelihood(self, site_samples, test) -> float:
        return _predictive_log_likelihood(self.model_fn, site_samples, test)

    def result(self, method, site_samples, seconds, **details) -> MethodResult:
        """``method``'s result from its draws ``{site: (S, *shape)}``: by site and by latent, with
        the discrete sites' posterior marginals when the model has discrete sites; ``details``
        are :class:`~ppmodels.infer.comparison.report.MethodResult`'s other fields."""
        result = MethodResult(method.name, method.kind, self.flatten(site_samples), site_samples, seconds, **details)
        if self.discrete:
            result.discrete = self.discrete_marginals(site_samples)
        return result


def _broadcasts(model_fn, args, dim, size) -> bool:
    """Whether the model runs with its latents drawn under an extra plate of ``size`` at
    ``dim`` (what vectorised particles need: e.g. ``x @ w`` with ``w`` of shape (P, 1, D)
    does not). ``size`` is the number of particles: a smaller one can coincide with a size of
    the model's own (two mixture components) and pass where the particles fail."""
    try:
        # the initial values outermost: drawn after every plate, the check's included, has broadcast the site
        with torch.no_grad(), poutine.block(), pyro.validation_enabled(False), InitMessenger(init.init_to_sample):
            with pyro.plate("_check", size, dim=dim):
                poutine.trace(model_fn).get_trace(*args)
        return True
    except Exception:  # noqa: BLE001 (any failure means: not under a particle plate)
        return False


def _flatten(site_samples, sites, names) -> dict:
    columns = [site_samples[s].reshape(site_samples[s].shape[0], -1) for s in sites]
    flat = torch.cat(columns, dim=1).detach()
    return {name: flat[:, i] for i, name in enumerate(names)}


def _traces_under_draws(model_fn, site_samples, args, max_draws):
    """Traces of the model conditioned on up to ``max_draws`` evenly spaced posterior draws."""
    s_total = next(iter(site_samples.values())).shape[0]
    idx = torch.linspace(0, s_total - 1, min(max_draws, s_total)).long()
    with torch.no_grad():
        for i in idx.tolist():
            conditioned = poutine.condition(model_fn, data={k: v[i] for k, v in site_samples.items()})
            yield prune_subsample_sites(poutine.trace(conditioned).get_trace(*args))


def mean_functions(model_fn, site_samples, args, site="y", max_draws=300):
    """The mean of the observed ``site``'s distribution under posterior draws: ``(S, N)``."""
    return torch.stack([t.nodes[site]["fn"].mean for t in _traces_under_draws(model_fn, site_samples, args, max_draws)])


def _predictive_log_likelihood(model_fn, site_samples, test, max_draws=500):
    """mean over test points of log (1/S) sum_s p(y_i | theta_s)."""
    per_draw = []
    for trace in _traces_under_draws(model_fn, site_samples, test, max_draws):
        trace.compute_log_prob()
        per_draw.append(
            sum(
                site["log_prob"]
                for site in trace.nodes.values()
                if site["type"] == "sample" and site["is_observed"] and site["name"] not in site_samples
            )
        )
    lp = torch.stack(per_draw)  # (S, N_test)
    return float((torch.logsumexp(lp, dim=0) - math.log(lp.shape[0])).mean())


def _discrete_marginals(model_fn, site_samples, args, discrete, nesting, max_draws=200):
    """The posterior marginal of each discrete site, averaged over posterior draws of the
    continuous latents: given each draw, the discrete sites' posterior is exact (enumeration,
    TraceEnum_ELBO.compute_marginals)."""
    s_total = next(iter(site_samples.values())).shape[0]
    idx = torch.linspace(0, s_total - 1, min(max_draws, s_total)).long()
    totals = {}
    elbo = pyro.infer.TraceEnum_ELBO(max_plate_nesting=nesting)
    with torch.no_grad(), pyro.validation_enabled(False):
        for i in idx.tolist():
            conditioned = config_enumerate(poutine.condition(model_fn, data={k: v[i] for k, v in site_samples.items()}))
            marginals = elbo.compute_marginals(conditioned, lambda *a, **k: None, *args)
            for site in discrete:
                probs = _probs(marginals[site])
                totals[site] = probs if site not in totals else totals[site] + probs
    return {site: total / len(idx) for site, total in totals.items()}


def _probs(d):
    """The probabilities of a marginal over a discrete site, the values on the last dimension."""
    support = d.enumerate_support(expand=False)
    lp = d.log_prob(support)  # (K, *batch)
    return lp.movedim(0, -1).exp()


__all__ = ["Problem", "mean_functions"]
