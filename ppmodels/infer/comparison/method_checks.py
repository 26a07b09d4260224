"""The diagnostics compare runs after each method, on its draws: PSIS k-hat of a trained guide
against the model, and PSIS-LOO of the draws (weighted where they are a guide's), each with the
note a report carries when it is not computed or says the answer is doubtful."""

from __future__ import annotations

from ..diagnostics.guide_psis import psis
from ..diagnostics.loo import pointwise, psis_loo, relative_efficiency
from ..diagnostics.pareto import USABLE


def guide_psis(problem, guide, num_samples=2000) -> tuple:
    """PSIS of a trained guide against the model (:func:`~ppmodels.infer.diagnostics.guide_psis.psis`), and a
    note when it is not computed (discrete sites summed out) or k-hat is above 0.7."""
    if problem.discrete:
        return None, None
    try:
        result = psis(problem.model_fn, guide, *problem.train, num_samples=num_samples, **problem.kwargs)
    except (RuntimeError, ValueError) as error:
        return None, f"no PSIS k-hat: {error}"
    return result, (result.verdict if result.k_hat >= USABLE else None)


def draws_loo(problem, draws, log_weights, chains=1, why="", max_draws=2000) -> tuple:
    """PSIS-LOO of the draws (:mod:`ppmodels.infer.diagnostics.loo`; ``log_weights`` for draws that are
    not the posterior's), and a note when it is not computed or some observations' k-hat are
    above 0.7."""
    if problem.discrete:
        return None, None  # the pointwise likelihood needs the discrete sites summed out
    try:
        if log_weights is None:
            step = max(1, -(-next(iter(draws.values())).shape[0] // max_draws))
            draws = {name: v[::step] for name, v in draws.items()}
        ll = pointwise(problem.model_fn, draws, *problem.train, **problem.kwargs).flat()
        reff = relative_efficiency(ll, chains) if log_weights is None else 1.0
        result = psis_loo(ll, log_weights, reff)
    except (RuntimeError, ValueError) as error:
        return None, f"no PSIS-LOO: {error}"
    note = None if not result.bad else f"PSIS-LOO: {result.verdict}"
    if why and note is None:
        note = f"PSIS-LOO from {why.rstrip(': ')}"
    elif why:
        note = f"PSIS-LOO from {why}{result.verdict}"
    return result, note


__all__ = ["draws_loo", "guide_psis"]
