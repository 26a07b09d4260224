"""Regression with a Bayesian MLP: the predictive variance split into aleatoric (the noise
the network predicts) and epistemic (the spread of the mean over posterior weight draws),
by the law of total variance.

Data: y = sin(3x) + noise whose scale grows with |x|, observed on two clusters of x; the
gap between them and the region beyond them have no data. A heteroscedastic likelihood
learns the noise; the epistemic part should be small where the data are and grow in the
gap and outside.

    python examples/bnn_regression_uncertainty.py --out runs/bnn-regression   # ~40 s
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyro.distributions as dist
import torch
from torch import nn

from ppmodels import plots
from ppmodels.infer import fit
from ppmodels.models import to_bayesian
from ppmodels.toolbox import interval_coverage, regression_uncertainty


def make_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.rand(n // 2, generator=g) * 1.2 - 1.6, torch.rand(n - n // 2, generator=g) * 1.2 + 0.4])
    noise = 0.05 + 0.15 * x.abs()
    y = torch.sin(3 * x) + noise * torch.randn(n, generator=g)
    return x[:, None], y[:, None]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4000, help="full-batch steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bnn-regression")
    parser.add_argument("--elbo", default="meanfield", help="estimator (default meanfield: analytic KL)")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    x, y = make_data(400, args.seed)
    net = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 2))

    # A prior scaled by each layer's fan-in keeps prior functions of a sensible size
    # (N(0, 1) on every weight of a 50-unit layer makes wildly varying functions).
    def prior(name, shape):
        return dist.Normal(0.0, 1.0 / shape[1] ** 0.5 if name.endswith("weight") else 1.0)

    bnn = to_bayesian(net, likelihood="heteroscedastic", prior=prior, init_scale=0.01)
    fit(
        bnn,
        (x, y),
        epochs=args.epochs,
        batch_size=len(x),
        lr=1e-2,
        seed=args.seed,
        progress=False,
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, max(args.epochs // 2, 1), 0.3),
    )

    grid = torch.linspace(-3, 3, 300)[:, None]
    pred = bnn.predict(grid, num_samples=200, seed=0)
    split = regression_uncertainty(pred.samples, pred.scale_samples)
    inside = ((grid > -1.6) & (grid < -0.4)) | ((grid > 0.4) & (grid < 1.6))
    for name, mask in (("where the data are", inside), ("in the gap and outside", ~inside)):
        print(
            f"{name}: mean epistemic variance {float(split.epistemic[mask].mean()):.4f}, "
            f"mean aleatoric variance {float(split.aleatoric[mask].mean()):.4f}"
        )
    x_test, y_test = make_data(1000, args.seed + 1)
    test = bnn.predict(x_test, num_samples=200, seed=0)
    coverage = interval_coverage(test.samples, test.scale_samples, y_test, level=0.9).double().mean()
    print(f"90% interval coverage on 1000 fresh points from the training range: {float(coverage):.3f}")

    out = Path(args.out)
    truth = torch.sin(3 * grid)
    fig = plots.uncertainty_bands(
        grid,
        pred.mean,
        split.aleatoric,
        split.epistemic,
        x,
        y,
        truth=truth,
        title="Bayesian MLP: total and epistemic ±2 sd",
    )
    plots.save(fig, out / "regression_uncertainty.png")
    print(f"wrote figures to {out.resolve()}")


if __name__ == "__main__":
    main()
