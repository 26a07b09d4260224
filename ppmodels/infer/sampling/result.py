"""What :func:`~ppmodels.infer.sampling.driver.mcmc` returns, and how the kernels' chains
become it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
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
        ``"divergences": {"chain 0": [draw indices], ...}``, as Pyro's ``MCMC.diagnostics()``."""
        out = {}
        for name, value in self.samples.items():
            v = value.double()
            out[name] = {
                "n_eff": effective_sample_size(v, chain_dim=0, sample_dim=1),
                "r_hat": split_gelman_rubin(v, chain_dim=0, sample_dim=1),
            }
        out["divergences"] = self.divergences
        return out

    def min_ess(self) -> float:
        d = self.diagnostics()
        return min(float(d[s]["n_eff"].min()) for s in self.samples) if self.samples else float("nan")

    def summary(self, prob=0.9) -> None:
        from pyro.infer.mcmc.util import print_summary

        print_summary(self.samples, prob=prob)

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


__all__ = ["MCMCResult", "assemble"]
