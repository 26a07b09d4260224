"""Neural process: ppmodels' pair trained by ``fit`` against a plain-PyTorch neural process of
the same architecture (the same modules) trained on the same batches, in one run.

Workload: GP functions with an RBF kernel (lengthscale in [0.1, 0.6], scale in [0.1, 1],
noise 0.02) at 50 points on [-2, 2], 3-45 context points per batch, targets all points,
16 functions per step, fresh functions every epoch; hidden width 64, latent 32,
deterministic path (``--attention`` for the attentive one); Adam 1e-3. The plain loop computes
exactly Trace_ELBO's single-draw estimate for this pair: ``z ~ q(z | targets)``,
``log p(y_t | x_t, z) + log q(z | context) - log q(z | targets)``, scaled by N / B.

Throughput: paired rounds (see ``_paired.py``). Quality: both train ``--quality-epochs``
epochs from the same start; log-likelihood per target point on 500 held-out functions with
10 context points (importance-weighted, 200 draws), its gap to the exact GP predictive, and
the 90% interval coverage inside and outside the context range.

    python benchmarks/np_throughput.py                  # ~15 minutes on 2 cores
    python benchmarks/np_throughput.py --rounds 2 --epochs 1 --quality-epochs 1   # quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

import pyro
import torch
from _paired import clock, paired, rotations, since

from ppmodels.data import ContextTargetBatches, gp_functions
from ppmodels.infer import fit
from ppmodels.models import NeuralProcess
from ppmodels.toolbox import evaluate_neural_process

FUNCTIONS, POINTS, BATCH = 4000, 50, 16
ATTENTION = False


def family(seed):
    return gp_functions("rbf", FUNCTIONS, POINTS, seed=seed)


def batches(seed):
    return ContextTargetBatches(family(seed), BATCH, 3, 45, seed=seed, regenerate=family)


def build(seed):
    torch.manual_seed(seed)
    return NeuralProcess(hidden=64, latent_dim=32, attention=ATTENTION)


def train_fit(model, epochs, seed):
    data = batches(seed)
    t = clock()
    fit(model, data, epochs=epochs, lr=1e-3, seed=seed, progress=False)
    return since(t)


def train_hand(model, epochs, seed):
    pyro.set_rng_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = batches(seed)
    t = clock()
    for _ in range(epochs):
        for xc, yc, xt, yt in data:
            prior, posterior = model.latent(xc, yc), model.latent(xt, yt)
            z = posterior.rsample()
            mean, scale = model.decode(xt, z, model._representation(xc, yc, xt))
            log_lik = torch.distributions.Normal(mean, scale).log_prob(yt).sum((-2, -1))
            elbo = (log_lik + prior.log_prob(z) - posterior.log_prob(z)).sum() * (FUNCTIONS / xc.shape[0])
            opt.zero_grad(set_to_none=True)
            (-elbo).backward()
            opt.step()
    return since(t)


HAND = "(c) plain-PyTorch loop"
METHODS = {"(b) ppmodels.infer.fit": train_fit, HAND: train_hand}


def main():
    global ATTENTION
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timed run")
    parser.add_argument("--quality-epochs", type=int, default=40)
    parser.add_argument("--attention", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "np_throughput.json"))
    args = parser.parse_args()
    ATTENTION = args.attention
    train_hand(build(0), 1, 0)  # warm up
    wall = {name: [] for name in METHODS}
    cpu = {name: [] for name in METHODS}
    samples = FUNCTIONS * args.epochs
    for r, order in rotations(METHODS, args.rounds):
        for name in order:
            w, c = METHODS[name](build(r), args.epochs, seed=r)
            wall[name].append(samples / w)
            cpu[name].append(samples / c)
    test = gp_functions("rbf", 500, POINTS, seed=10_000)
    quality = {}
    for name, train in METHODS.items():
        model = build(1000)
        train(model, args.quality_epochs, seed=1000)
        quality[name] = evaluate_neural_process(model, test, num_context=10, num_samples=200, seed=0).to_dict()

    print(
        f"\n{'Attentive n' if ATTENTION else 'N'}eural process, GP-RBF functions ({FUNCTIONS} per epoch x {POINTS} "
        f"points), batch {BATCH}, torch {torch.__version__}, pyro {pyro.__version__}, {torch.get_num_threads()} "
        f"threads, {args.rounds} rounds x {args.epochs} epochs; quality after {args.quality_epochs} epochs\n"
    )
    print(
        "| method | functions per wall s | ratio to (c), wall: median [IQR] | ratio to (c), CPU: median [IQR] "
        "| log-lik per target | GP oracle gap | 90% coverage inside / outside |"
    )
    print("|---|---|---|---|---|---|---|")
    rows = []
    for name in METHODS:
        rw, cw, q = paired(wall, name, HAND), paired(cpu, name, HAND), quality[name]
        rows.append({"method": name, "wall_ratio": rw, "cpu_ratio": cw, "wall_rounds": wall[name], "quality": q})
        print(
            f"| {name} | {statistics.median(wall[name]):,.0f} | {rw[0]:.3f} [{rw[1]:.3f}, {rw[2]:.3f}] "
            f"| {cw[0]:.3f} [{cw[1]:.3f}, {cw[2]:.3f}] | {q['log_likelihood']:.3f} | {q['oracle_gap']:.3f} "
            f"| {q['coverage_inside']:.3f} / {q['coverage_outside']:.3f} |"
        )
    print(
        f"| GP oracle (true hyperparameters) | – | – | – | {quality[HAND]['oracle_log_likelihood']:.3f} | 0 "
        f"| {quality[HAND]['oracle_coverage_inside']:.3f} / {quality[HAND]['oracle_coverage_outside']:.3f} |"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "machine": platform.platform(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
