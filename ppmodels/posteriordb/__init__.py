"""posteriordb's reference posteriors as problems for :func:`ppmodels.infer.compare`.

posteriordb (github.com/stan-dev/posteriordb, BSD-3-Clause) publishes posteriors as a Stan
program, its data and 10 chains x 1,000 validated Stan NUTS draws. This package ships Pyro
ports of some of them (:mod:`ppmodels.posteriordb.ports`) with their data and, per reference
parameter, the mean, the sd and 100 quantiles of the reference draws (built from a clone by
:mod:`ppmodels.posteriordb.extract`); with ``path=`` a local clone is read instead.

    >>> from ppmodels import posteriordb
    >>> from ppmodels.infer import compare
    >>> problem = posteriordb.load("eight_schools-eight_schools_noncentered")
    >>> result = compare(problem)                                            # doctest: +SKIP
    >>> print(result.to_markdown())                                          # doctest: +SKIP
"""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass

import torch

from .extract import LEVELS, SHIPPED, database_folder, read_posterior
from .ports import PORTS, Port


@dataclass
class Reference:
    """A reference posterior's summaries, per parameter (Stan's names): ``mean``, ``sd`` and
    ``quantiles`` at :data:`~ppmodels.posteriordb.extract.LEVELS`."""

    name: str
    parameters: list
    summaries: dict
    draws: int

    def score(self, draws: dict) -> list:
        """Rows ``{"parameter", "mean", "sd", "ref_mean", "ref_sd", "mean_error_sds",
        "sd_ratio", "w1_sds"}`` for a method's draws ``{parameter: (S,)}``: the mean error and
        the Wasserstein-1 distance in reference sds (W1 from the 100 quantiles of each)."""
        missing = [p for p in self.parameters if p not in draws]
        if missing:
            raise ValueError(
                f"the reference posterior {self.name!r} has parameters {missing} that the port's draws do not give "
                f"(they give {sorted(draws)})"
            )
        levels = torch.as_tensor(LEVELS, dtype=torch.float64)
        rows = []
        for p in self.parameters:
            x = draws[p].detach().double().reshape(-1).cpu()
            ref = self.summaries[p]
            mean, sd = float(x.mean()), float(x.std())
            w1 = float(
                (torch.quantile(x, levels) - torch.as_tensor(ref["quantiles"], dtype=torch.float64)).abs().mean()
            )
            rows.append(
                {
                    "parameter": p,
                    "mean": mean,
                    "sd": sd,
                    "ref_mean": ref["mean"],
                    "ref_sd": ref["sd"],
                    "mean_error_sds": (mean - ref["mean"]) / ref["sd"],
                    "sd_ratio": sd / ref["sd"],
                    "w1_sds": w1 / ref["sd"],
                }
            )
        return rows


@dataclass
class PosteriorProblem:
    """A posteriordb posterior ported to Pyro: ``model(*args)``, its reference, and the map
    from the port's draws to the reference's parameters. ``compare(problem)`` runs it."""

    name: str
    port: Port
    args: tuple
    reference: Reference

    @property
    def model(self):
        return self.port.model

    def stan_draws(self, site_samples) -> dict:
        return self.port.stan_draws(site_samples, self.args)


def names() -> list:
    """The posteriors that have a port."""
    return sorted(PORTS)


@functools.lru_cache(maxsize=1)
def _shipped() -> dict:
    with gzip.open(SHIPPED, "rt") as fh:
        return json.load(fh)["posteriors"]


def load(name: str, path=None) -> PosteriorProblem:
    """The posterior ``name`` (e.g. ``"sblrc-blr"``; see :func:`names`) as a problem:
    its data and reference from the package, or from the posteriordb clone at ``path``."""
    if name not in PORTS:
        raise ValueError(f"no posteriordb port named {name!r}; the ports are {', '.join(names())}")
    entry = read_posterior(database_folder(path), name) if path is not None else _shipped()[name]
    port = PORTS[name]
    reference = Reference(name, entry["parameters"], entry["reference"], entry["draws"])
    problem = PosteriorProblem(name, port, tuple(port.args(entry["data"])), reference)
    _check_parameters(problem)
    return problem


def _check_parameters(problem):
    """The port's latent sites must give exactly the reference's parameters."""
    from ..infer.problem import latent_sites

    sites = latent_sites(problem.model, problem.args)[0]
    given = set(problem.stan_draws({s: torch.ones(1, *shape) for s, shape in sites.items()}))
    wanted = set(problem.reference.parameters)
    if given != wanted:
        raise ValueError(
            f"the port of {problem.name!r} does not match its reference posterior: the reference has "
            f"{sorted(wanted - given)} that the port does not give, and the port gives {sorted(given - wanted)} "
            "that the reference does not have"
        )


__all__ = ["PosteriorProblem", "Reference", "load", "names"]
