"""Simulation-based calibration's rank tests (Talts, Betancourt, Simpson, Vehtari, Gelman
2018) and VSBC's symmetry test (Yao, Vehtari, Simpson, Gelman 2018): are the ranks of the true
parameters among a method's posterior draws uniform?

Uniformity is tested per parameter by a chi-square test on the binned ranks (its p-value)
and shown by the ECDF of the ranks minus the uniform one, with a simultaneous band
(Säilynoja, Bürkner, Vehtari 2022; the band's level adjusted by simulating uniform ECDFs).
VSBC tests that the fraction of draws below ``theta*`` is symmetric about 1/2 (a two-sample
Kolmogorov-Smirnov test of ``p`` against ``1 - p``), which a biased guide fails. The
simulations themselves are run by :mod:`~ppmodels.infer.comparison.sbc_runs`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

#: the significance level of the uniformity tests and the ECDF band
ALPHA = 0.05


@dataclass
class SBCResult:
    """The rank of each true parameter among the method's draws, per simulation.

    :ivar ranks: ``{latent name: (N,) ints in 0..num_draws}``.
    :ivar fractions: ``{latent name: (N,)}`` the fraction of draws below the true value (VSBC's ``p``).
    :ivar num_draws: the posterior draws each rank is among.
    :ivar method: the method's name.
    :ivar warnings: each simulation's diagnostics that failed (e.g. MCMC's r-hat).
    """

    ranks: dict
    fractions: dict
    num_draws: int
    method: str
    seconds: float = 0.0
    warnings: list = field(default_factory=list)

    @property
    def num_simulations(self) -> int:
        return len(next(iter(self.ranks.values()))) if self.ranks else 0

    def bins(self) -> int:
        """The chi-square test's bins: equal-width groups of rank values, at least 5 expected
        ranks in each."""
        values = self.num_draws + 1
        most = max(1, min(20, self.num_simulations // 5))
        return max(b for b in range(1, most + 1) if values % b == 0)

    def p_values(self) -> dict:
        """``{latent name: p-value}`` of the chi-square test that its ranks are uniform."""
        from scipy.stats import chisquare

        b = self.bins()
        out = {}
        for name, r in self.ranks.items():
            counts = torch.bincount(torch.as_tensor(r) * b // (self.num_draws + 1), minlength=b)
            out[name] = float(chisquare(counts.numpy()).pvalue) if b > 1 else 1.0
        return out

    def vsbc_p_values(self) -> dict:
        """``{latent name: p-value}`` of VSBC's symmetry test: ``p`` against ``1 - p``."""
        from scipy.stats import ks_2samp

        with warnings.catch_warnings():  # ties (p = 1 - p) make scipy fall back to the asymptotic p-value, saying so
            warnings.simplefilter("ignore", RuntimeWarning)
            return {
                name: float(ks_2samp(p.numpy(), 1 - p.numpy()).pvalue) if p.numel() > 1 else 1.0
                for name, p in self.fractions.items()
            }

    def failing(self, alpha: float = ALPHA) -> list:
        """The parameters whose ranks are not uniform at level ``alpha``, Bonferroni-corrected
        over the parameters, worst first."""
        p = self.p_values()
        level = alpha / max(1, len(p))
        return sorted((name for name, v in p.items() if v < level), key=p.get)

    @property
    def verdict(self) -> str:
        bad = self.failing()
        n = self.num_simulations
        if self.bins() < 2:
            return f"{self.method}: {n} simulations are too few to test the ranks' uniformity (at least 10 are needed)"
        if not bad:
            return (
                f"{self.method}: the ranks of every parameter are consistent with uniform over {n} simulations "
                f"(chi-square, level {ALPHA} Bonferroni-corrected): calibrated as far as {n} simulations can tell"
            )
        p = self.p_values()
        worst = ", ".join(f"{name} (p = {p[name]:.2g})" for name in bad[:5])
        return (
            f"{self.method}: not calibrated: the ranks of {len(bad)} of {len(p)} parameters are not uniform over "
            f"{n} simulations: {worst}{', ...' if len(bad) > 5 else ''}"
        )

    def rows(self) -> list:
        p, v = self.p_values(), self.vsbc_p_values()
        return [
            {
                "parameter": name,
                "p_value": p[name],
                "vsbc_p_value": v[name],
                "mean_fraction_below": float(self.fractions[name].mean()),
            }
            for name in self.ranks
        ]

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "num_simulations": self.num_simulations,
            "num_draws": self.num_draws,
            "seconds": self.seconds,
            "failing": self.failing(),
            "verdict": self.verdict,
            "parameters": self.rows(),
            "warnings": self.warnings,
        }

    def to_markdown(self) -> str:
        lines = [
            f"SBC of {self.method}: {self.num_simulations} simulations, ranks among {self.num_draws} draws",
            "",
            "| parameter | p_value | vsbc_p_value | mean_fraction_below |",
            "|---|---|---|---|",
        ]
        for r in self.rows():
            lines.append(
                f"| {r['parameter']} | {r['p_value']:.3g} | {r['vsbc_p_value']:.3g} | {r['mean_fraction_below']:.3f} |"
            )
        lines += ["", self.verdict]
        return "\n".join(lines) + "\n"


def ecdf_band(num_simulations: int, num_points: int = 100, alpha: float = ALPHA, trials: int = 2000, seed: int = 0):
    """A simultaneous ``1 - alpha`` band for the ECDF of ``num_simulations`` uniform draws at
    ``num_points`` evenly spaced points, minus the uniform CDF (Säilynoja et al. 2022: the
    pointwise binomial level adjusted so that a uniform ECDF leaves the band with probability
    ``alpha``, found by simulating ``trials`` uniform ECDFs).

    :returns: ``(z, lower, upper)`` numpy arrays: the points in (0, 1) and the band.
    """
    import numpy as np
    from scipy.stats import binom

    n = num_simulations
    z = np.arange(1, num_points + 1) / (num_points + 1)
    rng = np.random.default_rng(seed)
    u = np.sort(rng.random((trials, n)), axis=1)
    counts = np.stack([np.searchsorted(row, z, side="right") for row in u])  # (trials, points)
    tail = np.minimum(binom.cdf(counts, n, z), binom.sf(counts - 1, n, z))  # two-sided pointwise level
    gamma = 2 * np.quantile(tail.min(axis=1), alpha)
    lower = binom.ppf(gamma / 2, n, z) / n - z
    upper = binom.ppf(1 - gamma / 2, n, z) / n - z
    return z, lower, upper


__all__ = ["ALPHA", "SBCResult", "ecdf_band"]
