"""Evaluating a neural process on held-out functions: log-likelihood per target point, its gap
to the exact GP predictive with the true hyperparameters (the oracle), and the coverage of
central predictive intervals inside and outside the context's x-range."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .._validate import check_positive_int
from .calibration import interval_coverage


@dataclass
class FunctionEvaluation:
    """Averages over held-out functions (nats per target point; coverage as fractions).

    ``oracle_*`` are ``None`` for families without a GP oracle (the sine family)."""

    num_functions: int
    num_context: int
    level: float
    log_likelihood: float
    log_likelihood_stderr: float
    coverage_inside: float
    coverage_outside: float
    fraction_inside: float
    oracle_log_likelihood: float | None = None
    oracle_gap: float | None = None
    oracle_coverage_inside: float | None = None
    oracle_coverage_outside: float | None = None

    def to_dict(self):
        return asdict(self)


def split_context(data, num_context: int, seed: int = 0):
    """A fixed random context of ``num_context`` points per function (targets: all points).
    Returns ``(x_context, y_context, x_target, y_target)``."""
    n = check_positive_int(num_context, "num_context")
    if n > data.x.shape[1]:
        raise ValueError(f"`num_context` ({n}) exceeds the points per function ({data.x.shape[1]})")
    g = torch.Generator().manual_seed(seed)
    pick = torch.rand(len(data), data.x.shape[1], generator=g).argsort(dim=1)[:, :n, None]
    return data.x.gather(1, pick), data.y.gather(1, pick), data.x, data.y


def _inside(x_context, x_target):
    return (x_target >= x_context.min(1, keepdim=True).values) & (x_target <= x_context.max(1, keepdim=True).values)


@torch.no_grad()
def evaluate_neural_process(model, data, num_context=10, num_samples=200, level=0.9, seed=0, device=None):
    """Evaluate ``model`` (a :class:`ppmodels.models.NeuralProcess`) on ``data`` (a
    :class:`ppmodels.data.FunctionData`) with ``num_context`` context points per function.

    The log-likelihood is importance-weighted (``num_samples`` draws); the coverage uses the
    exact quantiles of the predictive mixture over ``num_samples`` draws of ``z``."""
    xc, yc, xt, yt = (t.to(device) if device else t for t in split_context(data, num_context, seed))
    ll = model.log_likelihood(xc, yc, xt, yt, num_samples, seed=seed).cpu()
    pred = model.predict(xc, yc, xt, num_samples, seed=seed)
    covered = interval_coverage(pred.mean_samples, pred.scale_samples, yt, level).cpu()
    inside = _inside(xc, xt).cpu()
    result = FunctionEvaluation(
        num_functions=len(data),
        num_context=num_context,
        level=level,
        log_likelihood=float(ll.mean()),
        log_likelihood_stderr=float(ll.std() / len(ll) ** 0.5) if len(ll) > 1 else float("nan"),
        coverage_inside=float(covered[inside].double().mean()),
        coverage_outside=float(covered[~inside].double().mean()) if (~inside).any() else float("nan"),
        fraction_inside=float(inside.double().mean()),
    )
    if data.lengthscale is not None:
        xc, yc, xt, yt = (t.cpu() for t in (xc, yc, xt, yt))
        mean, cov = data.gp_predictive(torch.arange(len(data)), xc, yc, xt)
        oracle = torch.distributions.MultivariateNormal(mean, cov).log_prob(yt.squeeze(-1).double()) / xt.shape[1]
        sd = cov.diagonal(dim1=-2, dim2=-1).sqrt().unsqueeze(-1)
        oracle_covered = interval_coverage(mean.unsqueeze(-1)[None], sd[None], yt.double(), level)
        result.oracle_log_likelihood = float(oracle.mean())
        result.oracle_gap = float((oracle - ll.double()).mean())
        result.oracle_coverage_inside = float(oracle_covered[inside].double().mean())
        result.oracle_coverage_outside = (
            float(oracle_covered[~inside].double().mean()) if (~inside).any() else float("nan")
        )
    return result
