"""The compiled step against hand-written PyTorch loops and NumPyro, on the three workloads.

For each workload (the seed VAE, the Bayesian LeNet-5, the neural process) and each method,
``--rounds`` paired rounds (a fresh model per round and method, the order rotating) of
``--epochs`` epochs. A method's steady throughput in a round is its samples per second over
the epochs after the first; its one-time cost is the first epoch's excess over a steady epoch
(tracing, compiling; inductor's on-disk cache is warm after the first round). Ratios are to
the hand-written eager loop of the same round (median and interquartile range over rounds).
Quality is measured on the model the last round trained (``--epochs`` epochs): the test
log-likelihood (VAE), accuracy (LeNet-5) or the log-likelihood per target point (NP).

Methods:
- hand eager: the loop as one writes it, torch's default Adam (the reference);
- hand eager, fused Adam: the same with ``Adam(fused=True)``;
- hand + torch.compile: the hand loss (and its backward) under ``torch.compile``, fused Adam;
- fit: ``ppmodels.infer.fit`` eagerly (its default Adam is fused);
- fit graph / fit inductor: ``fit(compile="graph")`` / ``fit(compile="inductor")``;
- NumPyro: the seed VAE as a NumPyro model/guide, ``jax.jit(svi.update)``, same networks,
  estimator, batches and Adam (only when ``jax`` and ``numpyro`` import: ``pip install -e ".[bench]"``).

    python benchmarks/compiled_step.py                       # all three, ~15 minutes on 2 cores
    python benchmarks/compiled_step.py --workloads vae --rounds 3 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import bnn_lenet
import np_throughput
import pyro
import torch
import vae_throughput
from _paired import paired, rotations

from ppmodels.data import digits
from ppmodels.infer import Callback, fit, log_likelihood
from ppmodels.toolbox import accuracy, evaluate_neural_process

HAND = "hand eager"


class EpochTimes(Callback):
    def __init__(self):
        self.times = []

    def on_epoch_start(self, state):
        self.t = time.perf_counter()

    def on_epoch_end(self, state):
        self.times.append(time.perf_counter() - self.t)


def hand_loop(params, loss_fn, data, epochs, fused=False, compiled=False, scheduler=None):
    """The hand-written loop: ``loss_fn(*batch)`` by hand, backward, Adam; per-epoch times."""
    opt = torch.optim.Adam(params, lr=LR[0], fused=fused or None)
    sched = scheduler(opt) if scheduler else None
    step_loss = torch.compile(loss_fn) if compiled else loss_fn
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        for batch in data:
            loss = step_loss(*batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if not math.isfinite(loss.item()):
                raise FloatingPointError("loss is not finite")
        if sched is not None:
            sched.step()
        times.append(time.perf_counter() - t)
    return times


LR = [1e-3]


# -- the workloads ------------------------------------------------------------------------------
class VAEWorkload:
    name, unit = "seed VAE", "test log-lik (K=100), nats/image"

    def __init__(self):
        d = digits(image_size=32)
        self.x, self.x_test, self.n = d.train_x, d.test_x, len(d.train_x)
        self.samples = self.n

    def build(self, seed):
        return vae_throughput.build(seed)

    def fit(self, vae, epochs, seed, compile=None):
        timer = EpochTimes()
        data = vae_throughput.batches(self.x, seed)
        fit(vae.core(), data, epochs=epochs, seed=seed, progress=False, compile=compile, callbacks=[timer])
        return timer.times

    def hand(self, vae, epochs, seed, fused=False, compiled=False):
        pyro.set_rng_seed(seed)
        sigma, n = math.sqrt(0.5), self.n
        std_normal = torch.distributions.Normal(0.0, 1.0, validate_args=False)

        def loss_fn(xb):
            h = vae.encoder(xb)
            mu, std = vae.dense1(h), torch.exp(0.5 * vae.dense2(h))
            z = mu + std * torch.randn_like(mu)
            recon = vae.decoder(vae.dense3(z))
            log_lik = torch.distributions.Normal(recon, sigma, validate_args=False).log_prob(xb).sum()
            q = torch.distributions.Normal(mu, std, validate_args=False)
            log_ratio = std_normal.log_prob(z).sum() - q.log_prob(z).sum()
            return -(log_lik + log_ratio) * (n / xb.shape[0])

        LR[0] = 1e-3
        return hand_loop(list(vae.parameters()), loss_fn, vae_throughput.batches(self.x, seed), epochs, fused, compiled)

    def facade(self, vae, epochs, seed):
        """The seed program: SVI.run on a MindSpore-style dataset of dict batches."""
        from ppmodels.probability import WithLossCell
        from ppmodels.probability.infer import ELBO, SVI

        class DictDataset:  # what the seed's mindspore.dataset pipeline hands SVI.run
            def __init__(self, batches):
                self.batches = batches

            def create_dict_iterator(self, num_epochs=1):
                for (xb,) in self.batches:
                    yield {"image": xb, "label": torch.zeros(len(xb), dtype=torch.int32)}

        svi = SVI(WithLossCell(vae, ELBO()), torch.optim.Adam(vae.trainable_params(), lr=1e-3))
        timer = EpochTimes()
        svi.run(DictDataset(vae_throughput.batches(self.x, seed)), epochs=epochs, seed=seed, progress=False,
                callbacks=[timer])  # fmt: skip
        return timer.times

    def quality(self, vae):
        return float(log_likelihood(vae.core(), self.x_test, num_samples=100, seed=0).mean())


class BNNWorkload:
    name, unit = "Bayesian LeNet-5", "test accuracy (100 draws)"

    def __init__(self):
        d = digits(image_size=32)
        self.x, self.y, self.x_test, self.y_test = d.train_x, d.train_y, d.test_x, d.test_y
        self.samples = len(self.x)
        bnn_lenet.STANDARDISE = (float(self.x.mean()), float(self.x.std()))

    def build(self, seed):
        return bnn_lenet.build(seed)

    def fit(self, bnn, epochs, seed, compile=None):
        timer = EpochTimes()
        data = bnn_lenet.batches(self.x, self.y, seed)
        fit(bnn, data, epochs=epochs, lr=bnn_lenet.LR, scheduler=bnn_lenet.schedule, seed=seed, progress=False,
            compile=compile, callbacks=[timer])  # fmt: skip
        return timer.times

    def hand(self, bnn, epochs, seed, fused=False, compiled=False):
        pyro.set_rng_seed(seed)
        loss_fn = bnn_lenet.hand_loss(bnn, self.x.shape[0])
        LR[0] = bnn_lenet.LR
        data = bnn_lenet.batches(self.x, self.y, seed)
        return hand_loop(list(bnn.parameters()), loss_fn, data, epochs, fused, compiled, bnn_lenet.schedule)

    def facade(self, bnn, epochs, seed, compile=None):
        """The seed's program: TrainOneStepCell(WithBNNLossCell(...)) called once per batch."""
        from ppmodels.probability import TrainOneStepCell, bnn_layers

        pyro.set_rng_seed(seed)
        net = bnn_lenet.facade_network(bnn)
        optimizer = torch.optim.Adam(net.parameters(), lr=bnn_lenet.LR)
        scheduler = bnn_lenet.schedule(optimizer)
        cell = bnn_layers.WithBNNLossCell(net, torch.nn.CrossEntropyLoss(), self.x.shape[0], 1)
        step = TrainOneStepCell(cell, optimizer, compile=compile)
        data = bnn_lenet.batches(self.x, self.y, seed)
        times = []
        for _ in range(epochs):
            t = time.perf_counter()
            for xb, yb in data:
                step(xb, yb)
            scheduler.step()
            times.append(time.perf_counter() - t)
        bnn.facade = bnn_lenet.FacadePredictor(net)
        return times

    def quality(self, bnn):
        if getattr(bnn, "facade", None) is not None:
            return accuracy(bnn.facade.predict(self.x_test, 100, seed=0).samples, self.y_test)
        probs = bnn.predict(self.x_test, 100, seed=0, batch_size=500).samples
        return accuracy(probs, self.y_test)


class NPWorkload:
    name, unit = "neural process", "test log-lik per target (10 context)"
    functions = 1600  # per epoch (fresh ones each epoch): 100 steps of 16

    def __init__(self):
        np_throughput.FUNCTIONS = self.functions
        self.samples = self.functions
        self.test = np_throughput.gp_functions("rbf", 200, np_throughput.POINTS, seed=10_000)

    def build(self, seed):
        return np_throughput.build(seed)

    def fit(self, model, epochs, seed, compile=None):
        timer = EpochTimes()
        fit(model, np_throughput.batches(seed), epochs=epochs, lr=1e-3, seed=seed, progress=False, compile=compile,
            callbacks=[timer])  # fmt: skip
        return timer.times

    def hand(self, model, epochs, seed, fused=False, compiled=False):
        pyro.set_rng_seed(seed)
        n = self.functions

        def loss_fn(xc, yc, xt, yt):
            prior, posterior = model.latent(xc, yc), model.latent(xt, yt)
            z = posterior.rsample()
            mean, scale = model.decode(xt, z, model._representation(xc, yc, xt))
            log_lik = torch.distributions.Normal(mean, scale).log_prob(yt).sum((-2, -1))
            return -(log_lik + prior.log_prob(z) - posterior.log_prob(z)).sum() * (n / xc.shape[0])

        LR[0] = 1e-3
        return hand_loop(list(model.parameters()), loss_fn, np_throughput.batches(seed), epochs, fused, compiled)

    def quality(self, model):
        return evaluate_neural_process(model, self.test, 10, 50, seed=0).log_likelihood


def numpyro_vae(workload, epochs, seed):
    """The seed VAE in NumPyro (stax networks of the same shapes, the same estimator and scaling,
    the same batches, Adam 1e-3), ``jax.jit(svi.update)``; per-epoch times and the last loss."""
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as ndist
    from jax.example_libraries import stax
    from numpyro.infer import SVI, Trace_ELBO

    n, b = workload.n, vae_throughput.BATCH
    heads = stax.parallel(stax.Dense(20), stax.Dense(20))
    enc_init, enc = stax.serial(stax.Dense(800), stax.Relu, stax.Dense(400), stax.Relu, stax.FanOut(2), heads)
    dec_init, dec = stax.serial(stax.Dense(400), stax.Dense(1024), stax.Sigmoid)

    def model(x):
        d = numpyro.module("decoder", (dec_init, dec), (b, 20))
        with numpyro.plate("data", x.shape[0]), numpyro.handlers.scale(scale=n / x.shape[0]):
            z = numpyro.sample("z", ndist.Normal(0, 1).expand([x.shape[0], 20]).to_event(1))
            numpyro.sample("x", ndist.Normal(d(z), jnp.sqrt(0.5)).to_event(1), obs=x)

    def guide(x):
        e = numpyro.module("encoder", (enc_init, enc), (b, 1024))
        mu, log_var = e(x)
        with numpyro.plate("data", x.shape[0]), numpyro.handlers.scale(scale=n / x.shape[0]):
            numpyro.sample("z", ndist.Normal(mu, jnp.exp(0.5 * log_var)).to_event(1))

    x = workload.x.reshape(n, 1024).numpy()
    svi = SVI(model, guide, numpyro.optim.Adam(1e-3), Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(seed), x[:b])
    update = jax.jit(svi.update)
    data = vae_throughput.batches(workload.x, seed)
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        for (xb,) in data:
            state, loss = update(state, xb.reshape(len(xb), 1024).numpy())
        loss.block_until_ready()
        times.append(time.perf_counter() - t)
    return times, float(loss) / n


def methods(workload, with_numpyro):
    out = {
        HAND: lambda m, e, s: workload.hand(m, e, s),
        "hand eager, fused Adam": lambda m, e, s: workload.hand(m, e, s, fused=True),
        "hand + torch.compile": lambda m, e, s: workload.hand(m, e, s, fused=True, compiled=True),
        "fit": lambda m, e, s: workload.fit(m, e, s),
        "fit graph": lambda m, e, s: workload.fit(m, e, s, compile="graph"),
        "fit inductor": lambda m, e, s: workload.fit(m, e, s, compile="inductor"),
    }
    if isinstance(workload, VAEWorkload):
        out["facade SVI.run (dict batches)"] = lambda m, e, s: workload.facade(m, e, s)
    if isinstance(workload, BNNWorkload):
        out["facade cells"] = lambda m, e, s: workload.facade(m, e, s)
        out["facade cells, compile=inductor"] = lambda m, e, s: workload.facade(m, e, s, compile="inductor")
    if with_numpyro:
        out["NumPyro (jax.jit)"] = lambda m, e, s: numpyro_vae(workload, e, s)[0]
    return out


def has_numpyro():
    try:
        import jax  # noqa: F401
        import numpyro  # noqa: F401
    except ImportError:
        return False
    return True


def run(workload, rounds, epochs, with_numpyro):
    table = methods(workload, with_numpyro)
    steady = {k: [] for k in table}
    once = {k: [] for k in table}
    trained = {}
    for r, order in rotations(table, rounds):
        for name in order:
            model = workload.build(r)
            times = table[name](model, epochs, r)
            per_epoch = statistics.median(times[1:])
            steady[name].append(workload.samples / per_epoch)
            once[name].append(max(times[0] - per_epoch, 0.0))
            trained[name] = model
    quality = {}
    for name, model in trained.items():
        quality[name] = None if name.startswith("NumPyro") else workload.quality(model)
    if with_numpyro:
        quality["NumPyro (jax.jit)"] = "final loss " + f"{numpyro_vae(workload, epochs, 0)[1]:.2f} nats/image"
    return steady, once, quality


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="vae,bnn,np")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per timed run (the first is one-time cost)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "compiled_step.json"))
    args = parser.parse_args()
    kinds = {"vae": VAEWorkload, "bnn": BNNWorkload, "np": NPWorkload}
    report = {"args": vars(args), "machine": platform.platform(), "torch": torch.__version__, "workloads": {}}
    numpyro_ok = has_numpyro()
    for key in args.workloads.split(","):
        workload = kinds[key]()
        steady, once, quality = run(workload, args.rounds, args.epochs, numpyro_ok and key == "vae")
        skipped = "" if numpyro_ok or key != "vae" else '; NumPyro row skipped: pip install -e ".[bench]"'
        print(
            f"\n{workload.name}: {args.rounds} rounds x {args.epochs} epochs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads{skipped}"
        )
        print(f"| method | samples/s (steady) | / hand eager: median [IQR] | one-time s (median) | {workload.unit} |")
        print("|---|---|---|---|---|")
        rows = []
        for name in steady:
            ratio = paired(steady, name, HAND)
            q = quality[name]
            qtext = q if isinstance(q, str) or q is None else f"{q:.4f}"
            spread = f"{ratio[0]:.3f} [{ratio[1]:.3f}, {ratio[2]:.3f}]"
            print(
                f"| {name} | {statistics.median(steady[name]):,.0f} | {spread} | "
                f"{statistics.median(once[name]):.1f} | {qtext or '-'} |"
            )
            rows.append({"method": name, "steady": steady[name], "once": once[name], "ratio": ratio, "quality": q})
        report["workloads"][key] = rows
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
