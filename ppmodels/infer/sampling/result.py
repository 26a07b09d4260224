"""What :func:`~ppmodels.infer.sampling.driver.mcmc` returns, and how the kernels' chains
become it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from pyro.ops.stats import effective_sample_size, split_gelman_rubin


@dataclass
class MCMCResult:
    """Draws from ``mcmc``: ``samples[site]`` is ``(chains, draws, *shape)`` in the site's support.

    Pyro's :class:`~pyro.infer.MCMC` reading methods are here with the same names
    (``get_samples``, ``diagnostics``, ``summary``, ``num_chains``), so code written for Pyro's
    object reads this one. ``stats`` holds per chain the adapted step size, the inverse mass
    matrix, tree depths and leapfrog steps; ``compile`` the potential's compile mode, its
    fallback reason and its compile time; ``seconds`` the whole run.
    """

    samples: dict
    divergences: dict
    seconds: float
    engine: str
    compile: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @property
    def num_chains(self) -> int:
        return next(iter(self.samples.values())).shape[0] if self.samples else 0

    def get_samples(self, num_samples=None, group_by_chain=False) -> dict:
        out = self.samples if group_by_chain else {k: v.reshape(-1, *v.shape[2:]) for k, v in self.samples.items()}
        if num_samples is not None and not group_by_chain:
            out = {k: v[:num_samples] for k, v in out.items()}
        return out

    def diagnostics(self) -> dict:
        """Per site ``{"n_eff", "r_hat"}`` (Pyro's estimators, over all chains) and
        ``"divergences": {"chain 0": [draw indices], ...}``, as Pyro's ``MCMC.diagnostics()``.
        An element that is the same in every draw (the fixed entries of an ``LKJCholesky``
        factor) has neither, ``nan``; the others are computed without it (Pyro's estimators
        give ``nan`` for every element of a site with one constant element)."""
        out = {}
        for name, value in self.samples.items():
            out[name] = {
                "n_eff": per_varying_element(effective_sample_size, value),
                "r_hat": per_varying_element(split_gelman_rubin, value),
            }
        out["divergences"] = self.divergences
        return out

    def min_ess(self) -> float:
        """The smallest effective sample size over the elements that vary (``nan`` without any)."""
        d = self.diagnostics()
        values = torch.cat([d[s]["n_eff"].reshape(-1) for s in self.samples]) if self.samples else torch.zeros(0)
        values = values[~torch.isnan(values)]
        return float(values.min()) if len(values) else float("nan")

    @property
    def num_divergences(self) -> int:
        return sum(len(v) for v in self.divergences.values())

    def summary(self, prob=0.9) -> None:
        """Pyro's table of each element's mean, sd, interval, ESS and r-hat (elements that are
        the same in every draw left out), and the number of divergent transitions."""
        from pyro.infer.mcmc.util import print_summary

        print_summary(_varying(self.samples), prob=prob)
        print(f"Number of divergences: {self.num_divergences}")

    def to_arviz(self):
        """An ArviZ ``InferenceData`` with the posterior (chains x draws) and the sampler's stats."""
        import arviz as az

        sample_stats = None
        if self.stats.get("divergent"):
            sample_stats = {
                "diverging": np.stack([self.stats["divergent"][c] for c in range(self.num_chains)]),
                "tree_depth": np.stack([self.stats["depths"][c] for c in range(self.num_chains)]),
            }
        posterior = {k: v.detach().cpu().numpy() for k, v in self.samples.items()}
        return az.from_dict(posterior=posterior, sample_stats=sample_stats)


def _constant(value: torch.Tensor) -> torch.Tensor:
    """Which elements of ``value`` (chains, draws, *shape) are the same in every draw: ``(*shape,)``."""
    flat = value.reshape(value.shape[0] * value.shape[1], -1)
    return (flat == flat[:1]).all(0).reshape(value.shape[2:])


def per_varying_element(estimator, value: torch.Tensor) -> torch.Tensor:
    """``estimator`` (Pyro's ESS or r-hat) of each element of ``value`` (chains, draws, *shape)
    that varies, ``nan`` for the others."""
    value = value.double()
    constant = _constant(value).reshape(-1)
    out = torch.full(constant.shape, float("nan"), dtype=torch.float64)
    if (~constant).any():
        varying = value.reshape(*value.shape[:2], -1)[..., ~constant]
        out[~constant] = estimator(varying, chain_dim=0, sample_dim=1)
    return out.reshape(value.shape[2:])


def _varying(samples: dict) -> dict:
    """``samples`` for Pyro's summary: a site with constant elements as its varying elements,
    each by its index (``"L[1,0]"``)."""
    out = {}
    for name, value in samples.items():
        constant = _constant(value)
        if not constant.any():
            out[name] = value
            continue
        for index in torch.nonzero(~constant).tolist():
            out[f"{name}[{','.join(map(str, index))}]"] = value[(slice(None), slice(None), *index)]
    return out


def assemble(potential, chains, start, compiled, extra_stats, notes) -> MCMCResult:
    r"""The result of ``chains`` (:class:`~ppmodels.infer.sampling.kernel.ChainResult`\ s) on
    ``potential``: their draws mapped into each site's support, the kernels' statistics per
    chain, the run's time since ``start`` (a ``time.perf_counter()``)."""
    draws = np.stack([c.draws for c in chains])
    samples = potential.constrain(draws)
    seconds = time.perf_counter() - start
    stats = {
        "step_size": [c.step_size for c in chains],
        "inverse_mass": [c.inverse_mass for c in chains],
        "depths": [c.depths for c in chains],
        "leapfrogs": [c.leapfrogs for c in chains],
        "warmup_leapfrogs": [c.warmup_leapfrogs for c in chains],
        "divergent": [c.divergent for c in chains],
        "accept_prob": [c.accept_prob for c in chains],
        **extra_stats,
    }
    divergences = {f"chain {i}": np.flatnonzero(c.divergent).tolist() for i, c in enumerate(chains)}
    return MCMCResult(samples, divergences, seconds, "ppmodels", compiled, stats, notes)


__all__ = ["MCMCResult", "assemble", "per_varying_element"]
