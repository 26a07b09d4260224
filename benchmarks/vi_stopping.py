"""Stopping schedules for compare's VI on a closed-form Gaussian posterior (issue 17).

The Gaussian of ``tests/test_flat_priors.py`` (sds 1e-4, 1e4 and 1, correlation 0.99), the
whitened full-rank guide from its Laplace start, 8 particles, Adam 0.05; per schedule and
seed: the steps taken and the worst error of the guide's exact moments (means in posterior
sds, sds relative). ``{}`` is the fixed 3,000-step schedule (the rate decaying 100-fold);
otherwise the keyword arguments of ``StopOnConvergence``.

    python benchmarks/vi_stopping.py "{}" "dict(factor=0.3, decreases=4)" "dict(window=400)"
"""

from __future__ import annotations

import ast
import sys

import pyro
import pyro.distributions as dist
import torch

from ppmodels.infer import StopOnConvergence, fit, get_elbo, laplace_guide

SDS = torch.tensor([1e-4, 1e4, 1.0])
CORR = torch.tensor([[1.0, 0.99, 0.0], [0.99, 1.0, 0.0], [0.0, 0.0, 1.0]])
MEAN = torch.tensor([3e-4, -2e4, 0.5])


def gaussian(y, scale_tril):
    pyro.sample("z", dist.MultivariateNormal(y, scale_tril=scale_tril))


def run(config: dict, seed: int) -> tuple:
    cov = SDS[:, None] * CORR * SDS[None, :]
    args = (MEAN, torch.linalg.cholesky(cov.double()).float())
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    guide = laplace_guide(gaussian, args)
    options = (
        {"callbacks": [StopOnConvergence(**config)]}
        if config
        else {"scheduler": lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, 0.01 ** (1 / 3000))}
    )
    elbo = get_elbo("trace", 8, vectorize_particles=True, max_plate_nesting=0)
    result = fit((gaussian, guide), args, epochs=3000, lr=0.05, elbo=elbo, seed=seed, progress=False, **options)
    posterior = guide.get_posterior()
    mean_error = float(((posterior.loc.detach() - MEAN) / SDS).abs().max())
    sd_error = float((posterior.covariance_matrix.detach().diagonal().sqrt() / SDS - 1).abs().max())
    return result.num_steps, round(mean_error, 4), round(sd_error, 4)


def main():
    for text in sys.argv[1:] or ["{}", "dict(factor=0.3, decreases=4)"]:
        config = ast.literal_eval(text) if text.startswith("{") else eval(text, {"dict": dict})  # noqa: S307
        print(text, [run(config, seed) for seed in range(4)], flush=True)


if __name__ == "__main__":
    main()
