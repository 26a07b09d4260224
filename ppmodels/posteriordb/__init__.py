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

    def reference_shape(self) -> dict:
        """How close the reference posterior is to Gaussian in the unconstrained space, from
        its quantiles alone (no MCMC): each parameter's quantiles are mapped to the
        unconstrained space by its site's support (``log`` for a positive scale, ``logit`` for
        an interval or a two-element simplex, ``log`` for a positive ordered vector's
        elements; transformed parameters, such as eight schools' ``theta``, stay as they
        are), then ``skew`` is Kelly's quantile skewness ``(q90 + q10 - 2 q50) / (q90 - q10)``
        (0 for a Gaussian) and ``tails`` is ``(q99.5 - q0.5) / (q75 - q25)`` over a
        Gaussian's 3.82 (1 for a Gaussian). ``near_gaussian``: every parameter within
        :data:`NEAR_GAUSSIAN` (|skew| < 0.1, tails within 0.9-1.1); ``worst``: the parameter
        farthest from it."""
        supports = _site_supports(self.model, self.args)
        worst, worst_score = None, -1.0
        for p in self.reference.parameters:
            q = torch.as_tensor(self.reference.summaries[p]["quantiles"], dtype=torch.float64)
            q = _unconstrained(q, supports.get(p.split("[")[0]))
            at = functools.partial(_interpolate, torch.as_tensor(LEVELS, dtype=torch.float64), q)
            skew = float((at(0.9) + at(0.1) - 2 * at(0.5)) / (at(0.9) - at(0.1)))
            tails = float((at(0.995) - at(0.005)) / (at(0.75) - at(0.25)) / _GAUSSIAN_TAILS)
            score = max(abs(skew) / NEAR_GAUSSIAN["skew"], abs(tails - 1) / NEAR_GAUSSIAN["tails"])
            if score > worst_score:
                worst, worst_score = {"parameter": p, "skew": skew, "tails": tails}, score
        return {"near_gaussian": worst_score < 1, "worst": worst}


#: the bounds :meth:`PosteriorProblem.reference_shape` calls near-Gaussian: |Kelly skewness|
#: and |tail ratio - 1|
NEAR_GAUSSIAN = {"skew": 0.1, "tails": 0.1}
_GAUSSIAN_TAILS = 2 * 2.5758293035489 / 1.3489795003921634  # (z.995 - z.005) / (z.75 - z.25)


def _interpolate(levels, values, at):
    i = int(torch.searchsorted(levels, torch.tensor(at, dtype=levels.dtype)).clamp(1, len(levels) - 1))
    w = (at - levels[i - 1]) / (levels[i] - levels[i - 1])
    return values[i - 1] + w * (values[i] - values[i - 1])


def _site_supports(model, args) -> dict:
    from pyro import poutine
    from pyro.infer.autoguide.initialization import InitMessenger

    from ..infer.initialization import init_to_median

    with torch.no_grad(), InitMessenger(init_to_median):
        trace = poutine.trace(model).get_trace(*args)
    return {
        name: site["fn"].support
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and hasattr(site["fn"], "support")
    }


def _unconstrained(q, support):
    """Quantiles of one element of a site with ``support``, in the unconstrained space
    (monotone maps keep quantiles quantiles)."""
    from pyro.distributions import constraints
    from torch.distributions import biject_to

    while isinstance(support, constraints.independent):
        support = support.base_constraint
    if support is None or support.event_dim == 0 and support.is_discrete:
        return q
    if isinstance(support, type(constraints.positive_ordered_vector)):
        return q.log()
    if isinstance(support, type(constraints.simplex)):
        return q.log() - (-q).log1p()
    if support.event_dim == 0:
        return biject_to(support).inv(q)
    return q


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
    from ..infer.program.sites import latent_sites

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
