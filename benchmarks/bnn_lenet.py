"""Bayesian LeNet-5 on the digits at 32x32: ppmodels (core `fit` and the MindSpore facade)
against a hand-written Bayes-by-Backprop loop, and the deterministic LeNet-5 beside them.

Workload: LeNet-5 (two 5x5 convolutions without bias, dense 400-120-84-10; inputs
standardised by the training images' mean and sd inside the network), every weight random
with a N(0, 1) prior and a mean-field Normal posterior (softplus scale, initial scale 0.01,
means from PyTorch's default initialisation), batch 64, Adam 3e-3 decayed by 0.9 per epoch
(the ``ppmodels train bnn`` defaults), the full ELBO: the batch's log-likelihood scaled by
N / B plus the single-draw Monte Carlo estimate ``log p(w) - log q(w)``, which is exactly what
Pyro's ``Trace_ELBO`` computes for this pair.

- (a) facade: ``bnn_layers.WithBNNLossCell`` + ``TrainOneStepCell`` on the seed's
  ``BNNLeNet5`` built from ``ConvReparam``/``DenseReparam`` with ``NormalPrior(mean=0,
  std=1)`` (``dnn_factor=N``, ``bnn_factor=1``: the data term is the mean cross-entropy
  times N, so the loss is the same full ELBO), stepped batch by batch as the seed program
  does. Its posteriors start from the same values (its scale is ``softplus(rho) + 1e-6``).
- (a2) the seed program as written (``examples/bnn_seed_facade.py``): its ``BNNLeNet5``
  with the layers' default priors (``NormalPrior()``, sd 0.1) and no input standardisation,
  ``torch.optim.AdamW`` (MindSpore's ``AdamWeightDecay``, decay 0), Pyro's argument checks
  left as Pyro sets them, and ``float(train_network(x, y))`` per batch, as its
  ``train_model`` does.
- (b) core: ``ppmodels.infer.fit`` on ``ppmodels.models.BayesianLeNet5``.
- (c) hand-written: the same arithmetic with plain tensors and ``torch.func.functional_call``.

All three start from the same posterior and consume the same batches. Throughput: paired
rounds (see ``_paired.py``), each training a fresh model ``--epochs`` epochs with every
method. Quality: each method trains ``--quality-epochs`` epochs (the issue's budget is 20)
from ``--quality-seeds`` starts; accuracy, NLL and ECE (15 bins) of the posterior
predictive (``--eval-samples`` weight draws) on the 360 test digits.

    python benchmarks/bnn_lenet.py                  # ~8 minutes on 2 cores
    python benchmarks/bnn_lenet.py --rounds 2 --epochs 1 --quality-epochs 1 --quality-seeds 1   # quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F
from _paired import clock, paired, rotations, since

from ppmodels.data import digits
from ppmodels.infer import fit
from ppmodels.infer.training.data import TensorBatches
from ppmodels.models import BayesianLeNet5, Prediction
from ppmodels.nn import LeNet5
from ppmodels.probability import TrainOneStepCell, bnn_layers
from ppmodels.toolbox import accuracy, expected_calibration_error, negative_log_likelihood

BATCH = 64
LR = 3e-3
DECAY = 0.9
STANDARDISE = (0.0, 1.0)  # set in main() from the training images


def schedule(opt):
    return torch.optim.lr_scheduler.ExponentialLR(opt, DECAY)


def batches(x, y, seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return TensorBatches((x, y), BATCH, shuffle=True, generator=g)


def build(seed):
    torch.manual_seed(seed)
    return BayesianLeNet5(10, input_mean=STANDARDISE[0], input_std=STANDARDISE[1])


def train_fit(bnn, x, y, epochs, seed):
    t = clock()
    fit(bnn, batches(x, y, seed), epochs=epochs, lr=LR, scheduler=schedule, seed=seed, progress=False)
    return since(t)


class BNNLeNet5(torch.nn.Module):
    """The seed's Bayesian LeNet-5 on the facade's layers, with a N(0, 1) prior."""

    def __init__(self, num_class=10):
        super().__init__()
        prior = {"weight_prior_fn": lambda: bnn_layers.NormalPrior(mean=0, std=1)}
        prior["bias_prior_fn"] = prior["weight_prior_fn"]
        self.conv1 = bnn_layers.ConvReparam(1, 6, 5, pad_mode="valid", has_bias=False, **prior)
        self.conv2 = bnn_layers.ConvReparam(6, 16, 5, pad_mode="valid", has_bias=False, **prior)
        self.fc1 = bnn_layers.DenseReparam(16 * 5 * 5, 120, **prior)
        self.fc2 = bnn_layers.DenseReparam(120, 84, **prior)
        self.fc3 = bnn_layers.DenseReparam(84, num_class, **prior)

    def forward(self, x):
        x = (x - STANDARDISE[0]) / STANDARDISE[1]
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))


def facade_network(bnn, cls=None):
    """A facade BNNLeNet5 (or ``cls``) whose posteriors start where ``bnn``'s do."""
    net = (cls or BNNLeNet5)(10)
    with torch.no_grad():
        for name, loc, rho in zip(bnn.posterior.names, bnn.posterior.loc, bnn.posterior.rho):
            module, role = name.split(".")
            posterior = getattr(getattr(net, module), f"{role}_posterior")
            posterior.mean.copy_(loc)
            posterior.untransformed_std.copy_(rho)
    return net


class FacadePredictor:
    """Posterior-predictive probabilities of a facade network: direct calls draw weights."""

    def __init__(self, net):
        self.net = net

    @torch.no_grad()
    def predict(self, x, num_samples, seed):
        pyro.set_rng_seed(seed)
        return Prediction(torch.stack([self.net(x).softmax(-1) for _ in range(num_samples)]))


def train_facade(bnn, x, y, epochs, seed):
    pyro.set_rng_seed(seed)
    net = facade_network(bnn)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    scheduler = schedule(optimizer)
    step = TrainOneStepCell(bnn_layers.WithBNNLossCell(net, torch.nn.CrossEntropyLoss(), x.shape[0], 1), optimizer)
    data = batches(x, y, seed)
    t = clock()
    with pyro.validation_enabled(False):
        for _ in range(epochs):
            for xb, yb in data:
                step(xb, yb)
            scheduler.step()
    elapsed = since(t)
    bnn.facade = FacadePredictor(net)
    return elapsed


def train_seed_program(bnn, x, y, epochs, seed):
    """The seed's program as ``examples/bnn_seed_facade.py`` writes it, timed over its training calls."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    from bnn_seed_facade import BNNLeNet5 as SeedLeNet5

    pyro.set_rng_seed(seed)
    net = facade_network(bnn, SeedLeNet5)
    optimizer = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=0.0)
    scheduler = schedule(optimizer)
    loss_cell = bnn_layers.WithBNNLossCell(net, torch.nn.CrossEntropyLoss(reduction="mean"), x.shape[0], 1)
    train_network = TrainOneStepCell(loss_cell, optimizer)
    train_network.train()
    data = batches(x, y, seed)
    t = clock()
    for _ in range(epochs):
        for xb, yb in data:
            float(train_network(xb, yb))
        scheduler.step()
    elapsed = since(t)
    bnn.facade = FacadePredictor(net)
    return elapsed


def hand_loss(bnn, n):
    """Bayes by Backprop's single-draw loss written out by hand on the pair's own posterior
    tensors: ``loss_fn(xb, yb)``, the negative ELBO with the likelihood scaled by N/B."""
    net = LeNet5(10, input_mean=STANDARDISE[0], input_std=STANDARDISE[1])
    names = bnn.posterior.names
    locs, rhos = list(bnn.posterior.loc), list(bnn.posterior.rho)
    prior = torch.distributions.Normal(0.0, 1.0, validate_args=False)

    def loss_fn(xb, yb):
        weights, log_ratio = {}, 0.0
        for name, loc, rho in zip(names, locs, rhos):
            scale = F.softplus(rho)
            w = loc + scale * torch.randn_like(loc)
            weights[name] = w
            q = torch.distributions.Normal(loc, scale, validate_args=False)
            log_ratio = log_ratio + prior.log_prob(w).sum() - q.log_prob(w).sum()
        logits = torch.func.functional_call(net, weights, (xb,))
        log_lik = -F.cross_entropy(logits, yb, reduction="sum") * (n / xb.shape[0])
        return -(log_lik + log_ratio)

    return loss_fn


def train_hand(bnn, x, y, epochs, seed):
    """Bayes by Backprop written out by hand on the pair's own posterior tensors."""
    pyro.set_rng_seed(seed)
    loss_fn = hand_loss(bnn, x.shape[0])
    opt = torch.optim.Adam(list(bnn.parameters()), lr=LR)
    scheduler = schedule(opt)
    data = batches(x, y, seed)
    t = clock()
    for _ in range(epochs):
        for xb, yb in data:
            loss = loss_fn(xb, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        scheduler.step()
    return since(t)


HAND = "(c) hand-written loop"
METHODS = {
    "(a) facade WithBNNLossCell": train_facade,
    "(a2) the seed program as written": train_seed_program,
    "(b) ppmodels.infer.fit": train_fit,
    HAND: train_hand,
}


def deterministic_lenet(x, y, x_test, y_test, epochs, seed):
    torch.manual_seed(seed)
    net = LeNet5(10, input_mean=STANDARDISE[0], input_std=STANDARDISE[1])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    data = batches(x, y, seed)
    for _ in range(epochs):
        for xb, yb in data:
            opt.zero_grad()
            F.cross_entropy(net(xb), yb).backward()
            opt.step()
    with torch.no_grad():
        probs = net.eval()(x_test).softmax(-1)
    return probs


def scores(probs, y):
    return {
        "accuracy": accuracy(probs, y),
        "nll": negative_log_likelihood(probs, y),
        "ece": expected_calibration_error(probs, y),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per timed run")
    parser.add_argument("--quality-epochs", type=int, default=20)
    parser.add_argument("--quality-seeds", type=int, default=3)
    parser.add_argument("--eval-samples", type=int, default=100)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bnn_lenet.json"))
    args = parser.parse_args()

    global STANDARDISE
    data = digits(image_size=32)
    x, y, x_test, y_test = data.train_x, data.train_y, data.test_x, data.test_y
    STANDARDISE = (float(x.mean()), float(x.std()))
    n = x.shape[0]
    train_hand(build(0), x, y, 1, 0)  # warm up kernels and the optimizer import once
    wall = {name: [] for name in METHODS}
    cpu = {name: [] for name in METHODS}
    for r, order in rotations(METHODS, args.rounds):
        for name in order:
            w, c = METHODS[name](build(r), x, y, args.epochs, seed=r)
            wall[name].append(n * args.epochs / w)
            cpu[name].append(n * args.epochs / c)

    quality = {name: [] for name in [*METHODS, "deterministic LeNet-5"]}
    for seed in range(1000, 1000 + args.quality_seeds):
        for name, train in METHODS.items():
            bnn = build(seed)
            train(bnn, x, y, args.quality_epochs, seed=seed)
            predictor = getattr(bnn, "facade", bnn)
            quality[name].append(scores(predictor.predict(x_test, args.eval_samples, seed=0).samples, y_test))
        probs = deterministic_lenet(x, y, x_test, y_test, args.quality_epochs, seed)
        quality["deterministic LeNet-5"].append(scores(probs, y_test))

    def summary(rows, key):
        values = [row[key] for row in rows]
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        return statistics.mean(values), sd

    print(
        f"\nBayesian LeNet-5, digits 32x32 (N={n}, test {len(y_test)}), batch {BATCH}, torch {torch.__version__}, "
        f"pyro {pyro.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds x {args.epochs} epochs\n"
    )
    print(
        "| method | samples per wall s (median) | ratio to (c), wall: median [IQR] | ratio to (c), CPU: median [IQR] "
        f"| accuracy | NLL | ECE (after {args.quality_epochs} epochs; mean ± sd over {args.quality_seeds} seeds) |"
    )
    print("|---|---|---|---|---|---|---|")
    rows = []
    for name in quality:
        acc, nll, ece = (summary(quality[name], k) for k in ("accuracy", "nll", "ece"))
        row = {"method": name, "quality": quality[name]}
        timing = "| – | – | – "
        if name in METHODS:
            rw, cw = paired(wall, name, HAND), paired(cpu, name, HAND)
            row.update(samples_per_second=statistics.median(wall[name]), wall_ratio=rw, cpu_ratio=cw)
            row.update(wall_rounds=wall[name], cpu_rounds=cpu[name])
            timing = (
                f"| {statistics.median(wall[name]):,.0f} | {rw[0]:.3f} [{rw[1]:.3f}, {rw[2]:.3f}] "
                f"| {cw[0]:.3f} [{cw[1]:.3f}, {cw[2]:.3f}] "
            )
        rows.append(row)
        print(
            f"| {name} {timing}| {acc[0]:.4f} ± {acc[1]:.4f} | {nll[0]:.4f} ± {nll[1]:.4f} "
            f"| {ece[0]:.4f} ± {ece[1]:.4f} |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "machine": platform.platform(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
