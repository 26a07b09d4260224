"""compare's draws as ArviZ ``InferenceData``: the posterior, and for models whose data are
observed sites the pointwise log-likelihood, the posterior predictive and the observed data."""

from __future__ import annotations

import warnings

from ..diagnostics.loo import pointwise


def to_arviz(comparison, max_vi_draws: int = 4000) -> dict:
    """:meth:`~ppmodels.infer.comparison.report.Comparison.to_arviz` of ``comparison``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # ArviZ announces its refactor on import
            import arviz as az
    except ImportError as exc:
        raise ImportError('to_arviz() needs ArviZ: pip install arviz (or pip install "ppmodels[arviz]")') from exc
    out = {}
    for m in comparison.methods:
        draws = m.site_samples
        if m.mcmc is None:
            step = max(1, -(-next(iter(draws.values())).shape[0] // max_vi_draws))
            draws = {k: v[::step] for k, v in draws.items()}
        groups = {}
        if comparison.problem is not None and not comparison.discrete:
            try:
                found = pointwise(
                    comparison.problem.model_fn, draws, *comparison.problem.train, **comparison.problem.kwargs
                )
            except ValueError:  # no observed sample site: the posterior only
                found = None
            if found is not None:
                groups = {
                    "log_likelihood": _by_chain(found.log_likelihood, m.mcmc),
                    "posterior_predictive": _by_chain(found.predictive, m.mcmc),
                    "observed_data": {k: v.detach().cpu().numpy() for k, v in found.observed.items()},
                }
        if m.mcmc is not None:
            data = m.mcmc.to_arviz() if hasattr(m.mcmc, "to_arviz") else az.from_pyro(m.mcmc, log_likelihood=False)
            if groups:
                data.extend(az.from_dict(**groups))
        else:
            data = az.from_dict(posterior=_by_chain(draws, None), **groups)
        out[m.name] = data
    return out


def _by_chain(values: dict, mcmc) -> dict:
    """``{name: (chains, draws, ...)}`` numpy arrays: MCMC's draws are its chains one after
    another; VI's are one chain."""
    chains = mcmc.num_chains if mcmc is not None else 1
    return {k: v.detach().cpu().numpy().reshape(chains, -1, *v.shape[1:]) for k, v in values.items()}


__all__ = ["to_arviz"]
