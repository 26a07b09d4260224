"""Seed VAE workload: facade (a) and fit (b) against a hand-written PyTorch loop (c).

Workload (MindSpore's VAE example): encoder 1024-800-400, latent 20, decoder 400-1024 with a
sigmoid, the three dense layers of ``dpn.VAE``, digits at 32x32, batch 128, Adam 1e-3. All
three consume the same batches (a random permutation sliced per epoch) and start from the
same initial weights. The hand-written loop computes exactly Trace_ELBO's single-particle
estimate: log N(x | recon, 1/2) + log N(z | 0, 1) - log N(z | mu, std), scaled by N / B.
(d) is (c) with the likelihood's density written with its one scale, as ppmodels computes it
(``ppmodels.models._normal.ScalarScaleNormal``), instead of torch's ``Normal.log_prob``: the
ratio of (b) to (d) is what Pyro and ppmodels cost beyond that arithmetic.

Throughput: ``--rounds`` rounds, each training a fresh model with every method for
``--epochs`` epochs in turn, the order rotating from round to round. Each round gives each
method's ratio to (c) in that round (paired, so slow drift of a shared virtual machine
cancels); the table shows the median of those ratios with their interquartile range, by wall
time and by this process's CPU time (which a shared virtual machine's stolen time does not
inflate), and the median samples per wall second. Quality: each method trains ``--quality-epochs``
epochs from the same starts (``--quality-seeds`` of them); test log-likelihood by importance
sampling (K=500), per image, as mean and standard deviation over the training seeds.

    python benchmarks/vae_throughput.py                 # ~6 minutes on 2 cores
    python benchmarks/vae_throughput.py --rounds 2 --epochs 2 --quality-epochs 2   # quick look
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
from pathlib import Path

import pyro
import torch
import torch.nn as nn
from _paired import clock, paired, rotations, since

from ppmodels.data import digits
from ppmodels.infer import fit, log_likelihood
from ppmodels.infer.training.data import TensorBatches
from ppmodels.probability import WithLossCell, dpn
from ppmodels.probability.infer import ELBO, SVI

BATCH = 128


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(1024, 800), nn.ReLU(), nn.Linear(800, 400), nn.ReLU())

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(400, 1024)

    def forward(self, z):
        return torch.sigmoid(self.fc(z)).reshape(-1, 1, 32, 32)


def build(seed):
    torch.manual_seed(seed)
    return dpn.VAE(Encoder(), Decoder(), hidden_size=400, latent_size=20)


def batches(x, seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return TensorBatches((x,), BATCH, shuffle=True, generator=g)


def train_facade(vae, x, epochs, seed):
    svi = SVI(WithLossCell(vae, ELBO()), torch.optim.Adam(vae.trainable_params(), lr=1e-3))
    t = clock()
    svi.run(batches(x, seed), epochs=epochs, seed=seed, progress=False)
    return since(t)


def train_fit(vae, x, epochs, seed):
    t = clock()
    fit(
        vae.core(),
        batches(x, seed),
        epochs=epochs,
        optimizer=torch.optim.Adam(vae.parameters(), lr=1e-3),
        seed=seed,
        progress=False,
    )
    return since(t)


def train_hand(vae, x, epochs, seed, one_scale_density=False):
    """No Pyro: the same estimator written out by hand. With ``one_scale_density`` the
    likelihood's density is written with its one scale, as ppmodels scores it, instead of
    torch's ``Normal.log_prob`` (which squares and logs the scale broadcast to every pixel)."""
    pyro.set_rng_seed(seed)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    n = x.shape[0]
    sigma = math.sqrt(0.5)
    log_norm = math.log(sigma) + 0.5 * math.log(2 * math.pi)
    std_normal = torch.distributions.Normal(0.0, 1.0, validate_args=False)
    data = batches(x, seed)  # one shuffling generator across epochs, as fit and SVI.run have
    t = clock()
    for _ in range(epochs):
        for (xb,) in data:
            h = vae.encoder(xb)
            mu, std = vae.dense1(h), torch.exp(0.5 * vae.dense2(h))
            z = mu + std * torch.randn_like(mu)
            recon = vae.decoder(vae.dense3(z))
            if one_scale_density:
                log_lik = ((xb - recon) / sigma).square().mul(-0.5).sub(log_norm).sum()
            else:
                log_lik = torch.distributions.Normal(recon, sigma, validate_args=False).log_prob(xb).sum()
            posterior = torch.distributions.Normal(mu, std, validate_args=False)
            log_ratio = std_normal.log_prob(z).sum() - posterior.log_prob(z).sum()
            loss = -(log_lik + log_ratio) * (n / xb.shape[0])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if not math.isfinite(loss.item()):
                raise FloatingPointError("loss is not finite")
    return since(t)


def train_hand_one_scale(vae, x, epochs, seed):
    return train_hand(vae, x, epochs, seed, one_scale_density=True)


HAND = "(c) hand-written loop"
METHODS = {
    "(a) facade SVI.run": train_facade,
    "(b) ppmodels.infer.fit": train_fit,
    HAND: train_hand,
    "(d) hand-written, one-scale density": train_hand_one_scale,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=8, help="epochs per timed run")
    parser.add_argument("--quality-epochs", type=int, default=30)
    parser.add_argument("--quality-seeds", type=int, default=3, help="training seeds per method for quality")
    parser.add_argument("--eval-samples", type=int, default=500)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "vae_throughput.json"))
    args = parser.parse_args()

    data = digits(image_size=32)
    x, x_test = data.train_x, data.test_x
    n = x.shape[0]
    wall = {name: [] for name in METHODS}
    cpu = {name: [] for name in METHODS}
    train_hand(build(0), x, 1, 0)  # warm up the allocator and kernels once
    for r, order in rotations(METHODS, args.rounds):
        for name in order:
            w, c = METHODS[name](build(r), x, args.epochs, seed=r)
            wall[name].append(n * args.epochs / w)
            cpu[name].append(n * args.epochs / c)
    quality = {}
    for name, train in METHODS.items():
        scores = []
        for seed in range(1000, 1000 + args.quality_seeds):
            vae = build(seed)
            train(vae, x, args.quality_epochs, seed=seed)
            scores.append(float(log_likelihood(vae.core(), x_test, num_samples=args.eval_samples, seed=0).mean()))
        quality[name] = (statistics.mean(scores), statistics.stdev(scores) if len(scores) > 1 else float("nan"))

    rows = []
    print(
        f"\nSeed VAE, digits 32x32 (N={n}), batch {BATCH}, torch {torch.__version__}, pyro {pyro.__version__}, "
        f"{torch.get_num_threads()} threads, {args.rounds} rounds x {args.epochs} epochs\n"
    )
    print(
        "| method | samples per wall s (median) | ratio to (c), wall time: median [IQR] | ratio to (c), CPU time: "
        f"median [IQR] | test log-lik K={args.eval_samples}, nats/image after {args.quality_epochs} epochs: mean ± sd "
        f"over {args.quality_seeds} training seeds |"
    )
    print("|---|---|---|---|---|")
    for name in METHODS:
        rw, cw = paired(wall, name, HAND), paired(cpu, name, HAND)
        ll, se = quality[name]
        rows.append(
            {
                "method": name,
                "samples_per_second": statistics.median(wall[name]),
                "wall_ratio": rw,
                "cpu_ratio": cw,
                "wall_rounds": wall[name],
                "cpu_rounds": cpu[name],
                "test_log_likelihood": ll,
                "sd_over_seeds": se,
            }
        )
        print(
            f"| {name} | {statistics.median(wall[name]):,.0f} | {rw[0]:.3f} [{rw[1]:.3f}, {rw[2]:.3f}] | "
            f"{cw[0]:.3f} [{cw[1]:.3f}, {cw[2]:.3f}] | {ll:.2f} ± {se:.2f} |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "machine": platform.platform(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
