"""Leave-one-out cross-validation by Pareto-smoothed importance sampling (PSIS-LOO; Vehtari,
Gelman, Gabry 2017), and what it needs: the log-likelihood of every observation under every
posterior draw, with replicated data and the observed values beside it (ArviZ's
``log_likelihood``, ``posterior_predictive`` and ``observed_data`` groups).

The expected log predictive density of observation ``i`` with ``i`` left out is estimated
from draws of the full posterior weighted by ``1 / p(y_i | theta)``; the weights are
Pareto-smoothed (:func:`~ppmodels.infer.diagnostics.pareto.pareto_smooth`) and the fitted tail's shape
``k_i`` says whether the estimate for that observation can be trusted (below 0.7; above it
the observation is too influential for importance sampling, and the LOO estimate for it is
not reliable).

Draws that are not the posterior's (a variational guide's) carry their own importance
weights ``p(theta, y) / q(theta)``; passing them as ``log_weights`` gives LOO of the posterior,
not of the guide (Magnusson, Andersen, Jonasson, Vehtari 2019).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites

from ..program.sites import latent_sites
from .pareto import USABLE, pareto_smooth


@dataclass
class Pointwise:
    """Per observed site: the log-likelihood of each observation under each draw, replicated
    data drawn with it, and the observed values.

    :ivar log_likelihood: ``{site: (S, *shape)}``, ``log p(y_i | theta_s)``.
    :ivar predictive: ``{site: (S, *shape)}``, ``y_rep ~ p(y | theta_s)``.
    :ivar observed: ``{site: shape}``, the data.
    """

    log_likelihood: dict
    predictive: dict
    observed: dict

    def flat(self) -> torch.Tensor:
        """Every observation of every site as a column: ``(S, N)``."""
        columns = [v.reshape(v.shape[0], -1) for v in self.log_likelihood.values()]
        return torch.cat(columns, dim=1)


class _SetDraws(Messenger):
    """Sets each latent site to its draws, shaped to broadcast over a plate of draws on the
    left of the model's own batch dimensions (entered outside that plate, so the sites'
    distributions are already expanded when it sees them)."""

    def __init__(self, draws):
        super().__init__()
        self.draws = draws

    def _pyro_sample(self, msg):
        value = self.draws.get(msg["name"])
        if value is None or msg["is_observed"]:
            return
        rank = len(msg["fn"].batch_shape) + len(msg["fn"].event_shape)
        pad = rank - value.dim()
        msg["value"] = value.reshape(value.shape[:1] + (1,) * pad + value.shape[1:]) if pad > 0 else value
        msg["is_observed"] = True


def _observed_sites(trace, latents) -> dict:
    """The observed sample sites that are data: name -> site. Not ``pyro.factor``'s ``Unit``
    sites, and not ``pyro.deterministic``'s (recorded as observed sample sites of a function of
    the latents, not data)."""
    return {
        name: site
        for name, site in trace.nodes.items()
        if site["type"] == "sample"
        and site["is_observed"]
        and name not in latents
        and type(site["fn"]).__name__ != "Unit"
        and not site["infer"].get("_deterministic", False)
        and site["value"].numel() > 0
    }


def _site_log_prob(site) -> torch.Tensor:
    """The unscaled log-density of an observed site's data, elementwise over its batch (and
    zero where the model masks it)."""
    lp = site["fn"].log_prob(site["observed"])
    if site["mask"] is not None:
        lp = lp.masked_fill(~site["mask"], 0.0)
    return lp


def pointwise(model, draws: dict, *args, max_draws: int | None = None, sites=None, **kwargs) -> Pointwise:
    """The log-likelihood of each observation under each posterior draw, and replicated data.

    :param model: a Pyro model whose data are observed ``pyro.sample`` sites (``obs=``).
    :param dict draws: ``{latent site: (S, *shape)}`` posterior draws (e.g. a compare method's
        ``site_samples``, ``MCMC.get_samples()``).
    :param int max_draws: use at most this many evenly spaced draws.
    :param sites: the observed sites to score (names); all of them by default.
    :returns: :class:`Pointwise`.

    One vectorised run of the model when it broadcasts over a plate of draws, else one run per
    draw.
    """
    if not draws:
        raise ValueError("`draws` is empty: pass {latent site name: (S, *shape) tensor} posterior draws")
    sizes = {name: v.shape[0] for name, v in draws.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"`draws` must have the same number of draws for every site, but got {sizes}")
    total = next(iter(sizes.values()))
    if max_draws is not None and max_draws < total:
        idx = torch.linspace(0, total - 1, max_draws).long()
        draws = {name: v[idx] for name, v in draws.items()}

    _, _, nesting, _ = latent_sites(model, args, kwargs)
    with torch.no_grad(), pyro.validation_enabled(False), poutine.block():
        observed = _observed_sites(
            prune_subsample_sites(
                poutine.trace(poutine.condition(model, data=_first(draws))).get_trace(*args, **kwargs)
            ),
            draws,
        )
    if not observed:
        raise ValueError(
            "the model has no observed pyro.sample site (obs=) besides pyro.factor terms, so it has no pointwise "
            "log-likelihood"
        )
    if sites is not None:
        sites = [sites] if isinstance(sites, str) else list(sites)
        unknown = [name for name in sites if name not in observed]
        if unknown:
            raise ValueError(
                f"`sites`: the model has no observed site {unknown[0]!r}; its observed sites are {sorted(observed)}"
            )
        observed = {name: observed[name] for name in sites}
    data = {name: site["value"] for name, site in observed.items()}
    batch = {name: tuple(site["fn"].batch_shape) for name, site in observed.items()}
    try:
        ll, rep = _vectorised(model, draws, data, batch, nesting, args, kwargs)
    except Exception:  # noqa: BLE001 (a model that does not broadcast over draws: one run per draw)
        ll, rep = _one_at_a_time(model, draws, data, args, kwargs)
    return Pointwise(ll, rep, data)


def _first(draws) -> dict:
    return {name: v[0] for name, v in draws.items()}


def _log_likelihood_and_replicates(trace, data) -> tuple:
    ll, rep = {}, {}
    for name, value in data.items():
        site = dict(trace.nodes[name], observed=value)
        ll[name] = _site_log_prob(site)
        rep[name] = site["value"]
    return ll, rep


def _vectorised(model, draws, data, batch, nesting, args, kwargs) -> tuple:
    s = next(iter(draws.values())).shape[0]
    with torch.no_grad(), pyro.validation_enabled(False), poutine.block():
        with _SetDraws(draws), pyro.plate("_draws", s, dim=-(nesting + 1)):
            trace = prune_subsample_sites(poutine.trace(poutine.uncondition(model)).get_trace(*args, **kwargs))
    ll, rep = _log_likelihood_and_replicates(trace, data)
    # the draws plate pads ones between the draws and each site's own batch dimensions
    return (
        {name: ll[name].reshape(s, *batch[name]) for name in data},
        {name: rep[name].reshape(s, *data[name].shape) for name in data},
    )


def _one_at_a_time(model, draws, data, args, kwargs) -> tuple:
    s = next(iter(draws.values())).shape[0]
    lls, reps = {n: [] for n in data}, {n: [] for n in data}
    with torch.no_grad(), pyro.validation_enabled(False), poutine.block():
        for i in range(s):
            conditioned = poutine.condition(poutine.uncondition(model), data={k: v[i] for k, v in draws.items()})
            trace = prune_subsample_sites(poutine.trace(conditioned).get_trace(*args, **kwargs))
            ll, rep = _log_likelihood_and_replicates(trace, data)
            for name in data:
                lls[name].append(ll[name])
                reps[name].append(rep[name])
    return {n: torch.stack(v) for n, v in lls.items()}, {n: torch.stack(v) for n, v in reps.items()}


@dataclass
class LOOResult:
    """PSIS-LOO's estimate of the expected log predictive density.

    :ivar elpd: ``sum_i log p(y_i | y_-i)``, in nats.
    :ivar se: its standard error.
    :ivar p_loo: the effective number of parameters (the in-sample lppd minus ``elpd``).
    :ivar pointwise: ``(N,)`` each observation's ``log p(y_i | y_-i)``.
    :ivar k_hat: ``(N,)`` each observation's Pareto k.
    :ivar reff: the draws' relative efficiency used.
    """

    elpd: float
    se: float
    p_loo: float
    pointwise: torch.Tensor
    k_hat: torch.Tensor
    reff: float = 1.0

    @property
    def bad(self) -> int:
        """How many observations have k-hat at or above 0.7 (their LOO estimate is not reliable)."""
        return int((self.k_hat >= USABLE).sum())

    @property
    def verdict(self) -> str:
        n = self.k_hat.numel()
        if not self.bad:
            return f"all {n} Pareto k-hats below {USABLE}: the PSIS-LOO estimate is reliable"
        worst = int(self.k_hat.argmax())
        return (
            f"{self.bad} of {n} observations have Pareto k-hat >= {USABLE} (the worst: observation {worst}, "
            f"k {float(self.k_hat[worst]):.2f}): their LOO estimates are not reliable; refit without them (exact "
            "LOO) or use K-fold cross-validation"
        )


def relative_efficiency(log_likelihood, chains: int = 1) -> float:
    """The draws' relative efficiency for PSIS-LOO: the effective sample size of each
    observation's likelihood ``p(y_i | theta_s)`` over the draws (``(S, N)``, ``chains``
    chains one after another), divided by S, averaged over observations (as the loo package
    and ArviZ do), at most 1."""
    from pyro.ops.stats import effective_sample_size

    ll = torch.as_tensor(log_likelihood).detach().to(torch.float64)
    s = ll.shape[0]
    if chains < 1 or s % chains:
        chains = 1
    likelihood = torch.exp(ll - ll.max(0).values).reshape(chains, s // chains, -1)
    ess = effective_sample_size(likelihood, chain_dim=0, sample_dim=1)
    ess = torch.where(torch.isfinite(ess), ess, torch.full_like(ess, float(s)))  # a constant likelihood
    return float((ess / s).mean().clamp(max=1.0))


def psis_loo(log_likelihood, log_weights=None, reff: float = 1.0) -> LOOResult:
    """PSIS-LOO from a ``(S, N)`` matrix of ``log p(y_i | theta_s)``.

    :param log_weights: ``(S,)`` log importance weights of the draws when they are not the
        posterior's (a guide's ``log p(theta, y) - log q(theta)``); ``None`` for posterior
        draws (MCMC).
    :param float reff: the draws' relative efficiency (ESS / S; 1 for independent draws).
    """
    ll = torch.as_tensor(log_likelihood).detach().to(torch.float64)
    if ll.dim() != 2 or ll.shape[0] < 2:
        raise ValueError(
            f"`log_likelihood` must be (draws, observations) with at least 2 draws, but got shape {tuple(ll.shape)}"
        )
    s = ll.shape[0]
    if ll.shape[1] < 2:
        raise ValueError(
            f"PSIS-LOO needs at least 2 observations, but the log-likelihood has {ll.shape[1]}: a model whose data are "
            "one observed site without a batch dimension (to_event over the data, or a pyro.factor) leaves nothing "
            "out; write the data in a pyro.plate"
        )
    if log_weights is None:
        posterior = torch.full((s,), -math.log(s), dtype=torch.float64, device=ll.device)
    else:
        lw = torch.as_tensor(log_weights).detach().to(ll)
        if lw.shape != (s,):
            raise ValueError(f"`log_weights` must have shape ({s},) (one per draw), but got {tuple(lw.shape)}")
        posterior, _ = pareto_smooth(lw, reff)  # normalised
    smoothed, k_hat = pareto_smooth((posterior[:, None] - ll).T, reff)  # (N, S)
    elpd_i = torch.logsumexp(smoothed + ll.T, dim=1)
    lppd_i = torch.logsumexp(posterior[:, None] + ll, dim=0)
    n = elpd_i.numel()
    se = math.sqrt(n * float(elpd_i.var())) if n > 1 else math.nan
    return LOOResult(float(elpd_i.sum()), se, float((lppd_i - elpd_i).sum()), elpd_i, k_hat, reff)


__all__ = ["LOOResult", "Pointwise", "pointwise", "psis_loo", "relative_efficiency"]
