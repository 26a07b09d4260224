"""What compare knows of a model before any method runs, and what it computes from a
method's draws: the latent sites and their shapes, the discrete sites, the batch
dimensions, whether the model broadcasts over particles, the exact posterior when known;
flattening draws per latent, posterior marginals of discrete sites, the predictive
log-likelihood of held-out data.

The model's sites are read from one trace (:mod:`ppmodels.infer.program.sites`), its latents
drawn from the prior.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field

import pyro
import torch
from pyro import poutine
from pyro.infer import config_enumerate
from pyro.poutine.util import prune_subsample_sites

from ..program.sites import latent_names, latent_sites, model_function, prior_trace
from .report import MethodResult


@dataclass
class Problem:
    """A model and its data as compare's methods see them (see :meth:`inspect`)."""

    model_fn: object
    train: tuple  # the model's positional arguments
    sites: dict  # continuous latent site -> shape, in execution order
    discrete: dict  # discrete latent site -> shape
    nesting: int  # batch dimensions of the model's sites at most (plates or not)
    plates: int  # plate dimensions, as Pyro counts them (max_plate_nesting)
    names: list  # one name per latent dimension, e.g. "w[0]"
    broadcasts: bool  # the model runs under an extra plate of particles
    exact: dict | None = None  # latent name -> {"mean", "sd"}
    exact_discrete: dict | None = None  # discrete site -> exact posterior marginal probabilities
    kwargs: dict = field(default_factory=dict)  # the model's keyword arguments

    @property
    def potential_model(self):
        """The model as MCMC's potential takes it: its discrete sites enumerated."""
        return config_enumerate(self.model_fn) if self.discrete else self.model_fn

    @classmethod
    def inspect(cls, model, train, exact=None, particles=8, kwargs=None) -> Problem:
        """One cheap trace of ``model`` on ``train`` (its positional arguments) and ``kwargs``
        (its keyword ones; a model that fails on its arguments fails here, before any method
        runs); ``exact`` (``{"names", "mean", "cov"}``) or the model's
        ``exact_posterior(*train)``; ``particles``: the plate of particles whose vectorised log
        joint is checked (:func:`_broadcasts`)."""
        model_fn = model_function(model)
        kwargs = dict(kwargs or {})
        try:
            sites, discrete, nesting, plates = latent_sites(model_fn, train, kwargs)
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
        broadcasts = _broadcasts(model_fn, train, kwargs, sites, discrete, nesting, particles)
        return cls(
            model_fn, train, sites, discrete, nesting, plates, names, broadcasts, moments, exact_discrete, kwargs
        )

    def bound(self, fn):
        """``fn`` with the problem's keyword arguments given (for units that pass positional
        arguments only, as the Laplace start does); ``fn`` itself without any."""
        return functools.partial(fn, **self.kwargs) if self.kwargs else fn

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
        return _discrete_marginals(self.model_fn, site_samples, self.train, self.discrete, self.plates, self.kwargs)

    def predictive_log_likelihood(self, site_samples, test, test_kwargs=None) -> float:
        return _predictive_log_likelihood(self.model_fn, site_samples, test, kwargs=test_kwargs)

    def result(self, method, site_samples, seconds, **details) -> MethodResult:
        """``method``'s result from its draws ``{site: (S, *shape)}``: by site and by latent, with
        the discrete sites' posterior marginals when the model has discrete sites; ``details``
        are :class:`~ppmodels.infer.comparison.report.MethodResult`'s other fields."""
        result = MethodResult(method.name, method.kind, self.flatten(site_samples), site_samples, seconds, **details)
        if self.discrete:
            result.discrete = self.discrete_marginals(site_samples)
        return result


#: particles checked one by one against the vectorised log joint (the first, middle and last)
CHECKED_PARTICLES = 3
#: a particle's vectorised and own log joint agree this closely (relative, float32 arithmetic)
PARTICLE_TOLERANCE = 1e-4


def _broadcasts(model_fn, args, kwargs, sites, discrete, nesting, size) -> bool:
    """Whether vectorised particles are right for the model: under a plate of ``size``
    particles at dim ``-(nesting + 1)`` (where Pyro's vectorised ELBO puts them), each particle's
    log joint must be the log joint of that particle alone. Running under the plate is not
    enough: ``x @ w`` with ``w`` of shape (P, 1, D) fails, but ``(x * w.unsqueeze(-2)).sum(-1)``
    runs and mixes particle i's weights with particle j's rows. The particles are prior draws;
    with discrete sites, the log joints are of the continuous latents, the discrete ones summed
    out by enumeration, and their sums over the particles are compared. Any failure, or a
    difference, means the particles run one after another."""
    try:
        with torch.no_grad(), pyro.validation_enabled(False), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            own = [prior_trace(model_fn, args, kwargs) for _ in range(size)]
            names = list(sites)
            stacked = {n: _stacked([t.nodes[n] for t in own], nesting) for n in names}
            if discrete:
                return _enumerated_joints_agree(model_fn, args, kwargs, own, stacked, names, nesting, size)
            vectorised = _per_particle_log_joint(model_fn, args, kwargs, stacked, nesting, size)
            for i in sorted({0, size // 2, size - 1})[:CHECKED_PARTICLES]:
                if not _same(float(vectorised[i]), float(own[i].log_prob_sum())):
                    return False
        return True
    except Exception:  # noqa: BLE001 (a model that fails under the plate: particles one after another)
        return False


def _stacked(nodes, nesting):
    """The particles' values of one site, stacked on a particle dimension left of the site's
    batch dimensions, at ``-(nesting + 1)`` of its batch shape."""
    fn = nodes[0]["fn"]
    batch = len(fn.batch_shape)
    values = torch.stack([n["value"] for n in nodes])  # (P, *batch, *event)
    return values.reshape(values.shape[0], *[1] * (nesting - batch), *values.shape[1:])


def _per_particle_log_joint(model_fn, args, kwargs, stacked, nesting, size):
    """``(size,)``: each particle's log joint, from one run of the model under the plate."""
    dim = -(nesting + 1)
    with pyro.plate("_particles", size, dim=dim):
        trace = poutine.trace(poutine.condition(model_fn, data=stacked)).get_trace(*args, **kwargs)
    trace = prune_subsample_sites(trace)
    trace.compute_log_prob()
    total = 0.0  # a tensor on the model's device after the first site
    for site in trace.nodes.values():
        if site["type"] != "sample":
            continue
        lp = site["log_prob"]
        batch = len(site["fn"].batch_shape)
        axis = lp.dim() + dim if lp.dim() >= -dim and batch >= -dim else None
        if axis is None or lp.shape[axis] == 1:  # the same for every particle
            total = total + lp.sum()
        else:
            total = total + lp.movedim(axis, 0).reshape(size, -1).sum(-1)
    return torch.as_tensor(total).expand(size)


def _enumerated_joints_agree(model_fn, args, kwargs, own, stacked, names, nesting, size):
    """With discrete sites: the continuous latents' log joint (the discrete ones summed out by
    enumeration), summed over the particles, under the plate and one particle at a time."""
    from pyro.infer import TraceEnum_ELBO

    def nothing(*a, **k):
        pass

    vectorised_model = pyro.plate("_particles", size, dim=-(nesting + 1))(
        config_enumerate(poutine.condition(model_fn, data=stacked))
    )
    together = -TraceEnum_ELBO(max_plate_nesting=nesting + 1).loss(vectorised_model, nothing, *args, **kwargs)
    alone = 0.0
    for trace in own:
        data = {n: trace.nodes[n]["value"] for n in names}
        conditioned = config_enumerate(poutine.condition(model_fn, data=data))
        alone -= TraceEnum_ELBO(max_plate_nesting=nesting).loss(conditioned, nothing, *args, **kwargs)
    return _same(together, alone)


def _same(a: float, b: float) -> bool:
    """Two log joints agree: equal (both ``-inf`` at a draw outside a recursion's stable
    region), or within :data:`PARTICLE_TOLERANCE`."""
    return a == b or abs(a - b) <= PARTICLE_TOLERANCE * (1 + abs(b))


def _flatten(site_samples, sites, names) -> dict:
    columns = [site_samples[s].reshape(site_samples[s].shape[0], -1) for s in sites]
    flat = torch.cat(columns, dim=1).detach()
    return {name: flat[:, i] for i, name in enumerate(names)}


def _traces_under_draws(model_fn, site_samples, args, max_draws, kwargs=None):
    """Traces of the model conditioned on up to ``max_draws`` evenly spaced posterior draws."""
    s_total = next(iter(site_samples.values())).shape[0]
    idx = torch.linspace(0, s_total - 1, min(max_draws, s_total)).long()
    with torch.no_grad():
        for i in idx.tolist():
            conditioned = poutine.condition(model_fn, data={k: v[i] for k, v in site_samples.items()})
            yield prune_subsample_sites(poutine.trace(conditioned).get_trace(*args, **(kwargs or {})))


def mean_functions(model_fn, site_samples, args, site="y", max_draws=300):
    """The mean of the observed ``site``'s distribution under posterior draws: ``(S, N)``."""
    return torch.stack([t.nodes[site]["fn"].mean for t in _traces_under_draws(model_fn, site_samples, args, max_draws)])


def _predictive_log_likelihood(model_fn, site_samples, test, max_draws=500, kwargs=None):
    """mean over test points of log (1/S) sum_s p(y_i | theta_s)."""
    per_draw = []
    for trace in _traces_under_draws(model_fn, site_samples, test, max_draws, kwargs):
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


def _discrete_marginals(model_fn, site_samples, args, discrete, nesting, kwargs=None, max_draws=200):
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
            marginals = elbo.compute_marginals(conditioned, lambda *a, **k: None, *args, **(kwargs or {}))
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
