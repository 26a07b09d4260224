"""The seed's neural-process sine experiment, its collapse, and ppmodels' neural process.

The seed trains a tiny neural process (8-unit layers, r and z of size 2) on five points of
sin(x), splitting them at random into 1-3 context points and the rest, with the decoder's
noise fixed at 0.005 and every weight drawn from N(0, 1). Trained longer, its sample
functions collapse onto one curve and the uncertainty away from the data vanishes.

Part 1 reruns that configuration as a ppmodels pair (``min_latent_scale=0``: the seed's
unbounded softplus; ``fixed_scale=0.005``; N(0, 1) weights) and records the spread of its
sample functions on [-4, 4] given one context point, after a budget and after 3x more.

Part 2 trains ppmodels' defaults on the family the seed's curve comes from (a sin(x - b),
noisy), and reports the 90% interval coverage on held-out functions inside and outside the
context range, after 20 and 60 epochs of 125 steps (by default: the seed budget / 300 epochs, and 3x that).

The spread reported is the standard deviation across sample functions at |x| > 2.5 (away
from the data) given the seed's five points as the context. For the seed's configuration,
trained on that one curve, it shows the collapse: the model stops saying "I don't know"
where it has seen nothing. For the family a sin(x - b), five points pin the function down,
so a small spread there is right; the coverage on held-out functions is the honest measure.

    python examples/np_seed_sine.py --epochs 6000 --out runs/np-seed
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from ppmodels import plots
from ppmodels.data import ContextTargetBatches, sine_functions
from ppmodels.infer import Callback, fit
from ppmodels.models import NeuralProcess
from ppmodels.toolbox import evaluate_neural_process


class SeedSplits:
    """The seed's data: x = -2..2, y = sin(x); each step a random 1-3 point context, and the
    targets are all five points (the seed scores the rest; the posterior sees all)."""

    def __init__(self, steps, seed):
        self.x = torch.arange(-2.0, 3.0).reshape(1, 5, 1)
        self.y = torch.sin(self.x)
        self.steps, self.generator, self.num_data = steps, torch.Generator().manual_seed(seed), 1

    def __len__(self):
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            n = int(torch.randint(1, 4, (), generator=self.generator))
            pick = torch.randperm(5, generator=self.generator)[:n]
            yield self.x[:, pick], self.y[:, pick], self.x, self.y


class Snapshot(Callback):
    """Calls ``fn(epoch)`` at the end of the given (0-based) epochs."""

    def __init__(self, epochs, fn):
        self.epochs, self.fn = set(epochs), fn

    def on_epoch_end(self, state):
        if state.epoch in self.epochs:
            self.fn(state.epoch)


def seed_like(seed):
    torch.manual_seed(seed)
    model = NeuralProcess(hidden=8, latent_dim=2, deterministic_path=False, min_latent_scale=0.0, fixed_scale=0.005)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight)  # the seed's init_func
    return model


SEED_X = torch.arange(-2.0, 3.0).reshape(1, 5, 1)


def spread(model, seed):
    """Sd across sample functions at |x| > 2.5 given the seed's five points as context."""
    grid = torch.linspace(-4, 4, 81).reshape(1, -1, 1)
    pred = model.predict(SEED_X, torch.sin(SEED_X), grid, 50, seed=seed)
    away = grid[0, :, 0].abs() > 2.5
    return float(pred.mean_samples.std(0)[0, away].mean()), grid, pred


def panel(pred, grid):
    """One figure panel: the seed's five points as context, predictions on the grid."""
    return {
        "x_context": SEED_X.flatten(),
        "y_context": torch.sin(SEED_X).flatten(),
        "x": grid[0, :, 0],
        "mean": pred.mean[0, :, 0],
        "std": pred.std[0, :, 0],
        "samples": pred.mean_samples[:20, 0, :, 0],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--epochs",
        type=int,
        default=6000,
        help="steps of the seed's loop, the 1x budget (part 2: 1/300 of it, in epochs of 125 steps)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/np-seed")
    args = parser.parse_args(argv)
    out = Path(args.out)

    # Part 1: the seed's configuration on the seed's data: one run of 3x the budget, looked at
    # after 1x and at the end (a snapshot callback, so the 3x run is not a second training).
    panels, report = [], []
    per_epoch = max(1, args.epochs // 10)
    model = seed_like(args.seed)

    def seed_snapshot(model, steps):
        s, grid, pred = spread(model, args.seed)
        report.append(f"seed configuration, {steps} steps: sample-function spread away from the data {s:.4f}")
        panels.append(panel(pred, grid))

    fit(model, SeedSplits(per_epoch, args.seed), epochs=30, lr=1e-3, seed=args.seed, progress=False,
        callbacks=[Snapshot((9, 29), lambda epoch: seed_snapshot(model, (epoch + 1) * per_epoch))])  # fmt: skip

    # Part 2: ppmodels' defaults on the sine family, evaluated on held-out functions.
    def family(seed):
        return sine_functions(num_functions=2000, num_points=40, seed=seed)

    train = family(args.seed)
    test = sine_functions(num_functions=300, num_points=40, seed=args.seed + 10_000)
    torch.manual_seed(args.seed)
    model = NeuralProcess(hidden=64, latent_dim=16)
    epochs = max(1, args.epochs // 300)
    batches = ContextTargetBatches(train, 16, 1, 10, seed=args.seed, regenerate=family)  # fresh functions

    def family_snapshot(model, steps):
        e = evaluate_neural_process(model, test, num_context=3, num_samples=100, seed=args.seed)
        s, grid, pred = spread(model, args.seed)
        report.append(
            f"ppmodels defaults, sine family, {steps} steps: 90% coverage inside the context range "
            f"{e.coverage_inside:.3f}, outside {e.coverage_outside:.3f}; sample-function spread {s:.4f}"
        )
        panels.append(panel(pred, grid))

    fit(model, batches, epochs=3 * epochs, lr=1e-3, seed=args.seed, progress=False,
        callbacks=[Snapshot((epochs - 1, 3 * epochs - 1),
                            lambda epoch: family_snapshot(model, (epoch + 1) * len(batches)))])  # fmt: skip
    print("\n".join(report))
    fig = plots.function_predictions(
        panels, ncols=2, title="top: the seed configuration; bottom: ppmodels (1x and 3x budget)"
    )
    for ax, label in zip(fig.axes, ["seed config, 1x", "seed config, 3x", "ppmodels, 1x", "ppmodels, 3x"]):
        ax.set_title(label, fontsize=9)
    plots.save(fig, out / "seed_vs_ppmodels.png")
    print(f"wrote figures to {out.resolve()}")


if __name__ == "__main__":
    main()
