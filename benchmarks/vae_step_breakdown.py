"""Where a seed-VAE training step spends its time: PyTorch (eager, torch.compile) against JAX.

The seed VAE's arithmetic (1024-800-400 encoder, two 400->20 heads, 20-400-1024 decoder with a
sigmoid, batch 128, Trace_ELBO's single-draw estimate, Adam 1e-3), written by hand in both
frameworks, timed part by part: the loss with its gradients, the Adam update, and the whole
step. Each part runs ``--steps`` times per round; rounds alternate the parts; the table gives
the median milliseconds per step over rounds (and the interquartile range). It answers
issue 12's question of where compiled PyTorch falls short of NumPyro's ``jax.jit(svi.update)``
(which runs this arithmetic plus NumPyro's tracing, compiled away by XLA). Needs ``jax``.

    python benchmarks/vae_step_breakdown.py --rounds 7 --steps 40
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from torch import nn

from ppmodels.data import digits

SIGMA = math.sqrt(0.5)
SIZES = dict(enc1=(1024, 800), enc2=(800, 400), mu=(400, 20), lv=(400, 20), dec1=(20, 400), dec2=(400, 1024))


def torch_parts(x, n, fused_adam):
    torch.manual_seed(0)
    layers = nn.ModuleDict({k: nn.Linear(*s) for k, s in SIZES.items()})
    params = list(layers.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, fused=fused_adam or None)

    def loss_fn(xb):
        h = torch.relu(layers["enc2"](torch.relu(layers["enc1"](xb))))
        mu, std = layers["mu"](h), torch.exp(0.5 * layers["lv"](h))
        eps = torch.randn_like(mu)
        z = mu + std * eps
        recon = torch.sigmoid(layers["dec2"](layers["dec1"](z)))
        log_lik = (-0.5 * ((xb - recon) / SIGMA) ** 2 - math.log(SIGMA) - 0.5 * math.log(2 * math.pi)).sum()
        log_ratio = (-0.5 * z**2).sum() - (-0.5 * eps**2 - torch.log(std)).sum()
        return -(log_lik + log_ratio) * (n / xb.shape[0])

    return layers, params, opt, loss_fn


def time_steps(fn, steps, sync=lambda out: None):
    out = fn()
    sync(out)  # warm (and compile) outside the clock
    t = time.perf_counter()
    for _ in range(steps):
        out = fn()
    sync(out)
    return (time.perf_counter() - t) / steps * 1e3


def build_parts(x, n):
    xb = x[:128].reshape(128, 1024)
    parts = {}

    for fused in (False, True):
        _, params, opt, loss_fn = torch_parts(x, n, fused)

        def grads(loss_fn=loss_fn, opt=opt):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(xb)
            loss.backward()
            return loss

        grads()
        parts[f"torch Adam step ({'fused' if fused else 'default, per tensor'})"] = opt.step
        if not fused:
            parts["torch eager: loss + gradients"] = grads

    _, params, opt, loss_fn = torch_parts(x, n, False)  # inductor writes its own Adam kernel
    compiled_loss = torch.compile(loss_fn)

    def compiled_grads():
        opt.zero_grad(set_to_none=True)
        loss = compiled_loss(xb)
        loss.backward()
        return loss

    parts["torch.compile: loss + gradients"] = compiled_grads
    compiled_grads()
    step = torch.compile(opt.step)
    parts["torch.compile: Adam step"] = step

    def whole_compiled():
        loss = compiled_grads()
        step()
        return loss

    parts["torch.compile: whole step"] = whole_compiled
    return parts, xb


def jax_parts(xb, n):
    import jax
    import jax.numpy as jnp
    from jax.example_libraries import optimizers

    key = jax.random.PRNGKey(0)
    params = {}
    for k, (i, o) in SIZES.items():
        key, a = jax.random.split(key)
        bound = 1 / math.sqrt(i)
        params[k] = (jax.random.uniform(a, (i, o), minval=-bound, maxval=bound), jnp.zeros(o))
    x = jnp.asarray(xb.numpy())

    def dense(p, h):
        return h @ p[0] + p[1]

    def loss_fn(p, x, key):
        h = jax.nn.relu(dense(p["enc2"], jax.nn.relu(dense(p["enc1"], x))))
        mu, std = dense(p["mu"], h), jnp.exp(0.5 * dense(p["lv"], h))
        eps = jax.random.normal(key, mu.shape)
        z = mu + std * eps
        recon = jax.nn.sigmoid(dense(p["dec2"], dense(p["dec1"], z)))
        log_lik = (-0.5 * ((x - recon) / SIGMA) ** 2 - math.log(SIGMA) - 0.5 * math.log(2 * math.pi)).sum()
        log_ratio = (-0.5 * z**2).sum() - (-0.5 * eps**2 - jnp.log(std)).sum()
        return -(log_lik + log_ratio) * (n / x.shape[0])

    init, update, get = optimizers.adam(1e-3)
    state = [init(params)]
    keys = [key]
    grad_fn = jax.jit(jax.value_and_grad(loss_fn))
    update_fn = jax.jit(update)

    @jax.jit
    def whole(i, s, x, key):
        loss, g = jax.value_and_grad(loss_fn)(get(s), x, key)
        return update(i, g, s), loss

    g0 = grad_fn(params, x, key)[1]

    def grads():
        keys[0], k = jax.random.split(keys[0])
        return grad_fn(params, x, k)

    def adam():
        return update_fn(0, g0, state[0])

    def step():
        keys[0], k = jax.random.split(keys[0])
        state[0], loss = whole(0, state[0], x, k)
        return loss

    def sync(out):
        jax.block_until_ready(out)

    return {"JAX jit: loss + gradients": grads, "JAX jit: Adam step": adam, "JAX jit: whole step": step}, sync


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args(argv)
    d = digits(image_size=32)
    x, n = d.train_x, len(d.train_x)
    parts, xb = build_parts(x, n)
    syncs = {name: (lambda out: None) for name in parts}
    try:
        jparts, jsync = jax_parts(xb, n)
    except ImportError:
        print("jax is not installed: the JAX rows are left out (pip install jax)")
    else:
        parts.update(jparts)
        syncs.update({name: jsync for name in jparts})
    times = {name: [] for name in parts}
    names = list(parts)
    for r in range(args.rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(time_steps(parts[name], args.steps, syncs[name]))
    print(f"\nseed VAE step parts, batch 128, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.rounds} rounds x {args.steps} steps")  # fmt: skip
    print("| part | ms per step: median [IQR] |\n|---|---|")
    for name in names:
        q1, med, q3 = statistics.quantiles(times[name], n=4) if len(times[name]) > 1 else [times[name][0]] * 3
        print(f"| {name} | {statistics.median(times[name]):.2f} [{q1:.2f}, {q3:.2f}] |")


if __name__ == "__main__":
    main()
