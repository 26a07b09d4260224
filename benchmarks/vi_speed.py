"""compare's default VI against a hand-written PyTorch loop and NumPyro's SVI, on posteriordb
posteriors: time to an answer and how right the answer is.

Per posterior (``--posteriors``, default ``sblrc-blr`` and eight schools), in one process,
rounds alternating the methods:

- (a) compare's full-rank guide with its defaults: the Laplace start (MAP by L-BFGS and
  Newton, float64 Hessian), whitened coordinates, 8 vectorised particles, Adam 0.05 stopped
  on convergence (``compare(problem, guides=("fullrank",), mcmc=())``); its ``seconds``
  cover the Laplace step and the SVI steps, not the 20,000 draws for scoring;
- (a') the same with the fixed 3,000-step schedule (``vi_stop="steps"``);
- (b) a hand-written PyTorch loop doing (a)'s SVI arithmetic for ``sblrc-blr`` (the same
  whitened full-rank Gaussian, 8 reparameterised particles, the log joint written by hand,
  ``torch.optim.Adam``) for the same number of steps (a) took: what Pyro costs per step;
- (b') ``fit`` on the same whitened guide for the same steps, eager and with
  ``compile="graph"`` (the compiled step), to set beside (b) per step;
- (c) NumPyro's SVI with ``AutoMultivariateNormal`` as a user would run it: Adam 0.01 for
  10,000 steps (``svi.run``, jit-compiled, its compile included), from NumPyro's
  initialisation (``pip install -e ".[bench]"``; skipped without jax and numpyro).

Each answer is scored against the reference draws: the worst |mean error| in reference sds
and the range of sd ratios.

    python benchmarks/vi_speed.py --rounds 3      # ~5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import pyro
import torch

from ppmodels import posteriordb
from ppmodels.infer import compare


def score(problem, site_samples) -> tuple:
    rows = problem.reference.score(problem.stan_draws(site_samples))
    return (
        max(abs(r["mean_error_sds"]) for r in rows),
        min(r["sd_ratio"] for r in rows),
        max(r["sd_ratio"] for r in rows),
    )


def run_compare(problem, seed, vi_stop):
    result = compare(problem, guides=("fullrank",), mcmc=(), seed=seed, vi_stop=vi_stop)
    m = result.method("fullrank")
    return m.seconds, m.steps, score(problem, m.site_samples)


def hand_written_blr(problem, steps, seed):
    """(a)'s arithmetic for sblrc-blr by hand: z = c + L0 (m + S eps), the log joint of
    normal(0, 10) coefficients, a half-normal(10) scale (log-transformed, with its Jacobian)
    and the normal likelihood; 8 particles; Adam 0.05."""
    from ppmodels.infer import laplace_guide

    X, y = problem.args
    pyro.clear_param_store()
    guide = laplace_guide(problem.model, problem.args)
    center, factor = guide.center, guide.factor
    d = center.numel()
    torch.manual_seed(seed)
    m = torch.zeros(d, requires_grad=True)
    log_s = torch.zeros(d, requires_grad=True)
    tril = torch.zeros(d, d, requires_grad=True)
    opt = torch.optim.Adam([m, log_s, tril], lr=0.05)
    prior = torch.distributions.Normal(0.0, 10.0)
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        eps = torch.randn(8, d)
        lower = torch.tril(tril, -1) + torch.eye(d)
        scale_tril = factor @ (log_s.exp().unsqueeze(-1) * lower)
        z = center + factor @ m + eps @ scale_tril.T
        beta, log_sigma = z[:, :-1], z[:, -1]
        sigma = log_sigma.exp()
        log_joint = (
            prior.log_prob(beta).sum(-1)
            + prior.log_prob(sigma)
            + math.log(2.0)
            + log_sigma
            + torch.distributions.Normal(beta @ X.T, sigma.unsqueeze(-1)).log_prob(y).sum(-1)
        )
        entropy = scale_tril.diagonal().abs().log().sum()
        loss = -(log_joint.mean() + entropy)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def fit_steps(problem, steps, seed, compile):
    """(a)'s SVI steps through ``fit`` on the whitened full-rank guide, without stopping."""
    from ppmodels.infer import fit, get_elbo, laplace_guide

    pyro.clear_param_store()
    guide = laplace_guide(problem.model, problem.args)
    elbo = get_elbo("trace", 8, vectorize_particles=True, max_plate_nesting=1)
    start = time.perf_counter()
    fit((problem.model, guide), problem.args, epochs=steps, seed=seed, progress=False, elbo=elbo, compile=compile)
    return time.perf_counter() - start


def numpyro_fullrank(name, problem, seed, steps=10_000, lr=0.01):
    import jax
    import numpyro
    from _numpyro_models import models
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoMultivariateNormal

    written = {"sblrc-blr": "blr", "eight_schools-eight_schools_noncentered": "eight_schools"}
    if name not in written:
        return None
    model = models()[written[name]]
    args = tuple(a.numpy() for a in problem.args)
    guide = AutoMultivariateNormal(model)
    svi = SVI(model, guide, numpyro.optim.Adam(lr), Trace_ELBO())
    start = time.perf_counter()
    result = svi.run(jax.random.PRNGKey(seed), steps, *args, progress_bar=False)
    jax.block_until_ready(result.params)
    seconds = time.perf_counter() - start
    draws = guide.sample_posterior(jax.random.PRNGKey(seed + 1), result.params, sample_shape=(20_000,))
    sites = problem_sites(problem)
    site_samples = {k: torch.tensor(jax.device_get(v).tolist()) for k, v in draws.items() if k in sites}
    return seconds, steps, score(problem, site_samples)


def problem_sites(problem):
    from ppmodels.infer.program import latent_sites

    return latent_sites(problem.model, problem.args)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posteriors", default="sblrc-blr,eight_schools-eight_schools_noncentered")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        import numpyro  # noqa: F401

        have_numpyro = True
    except ImportError:
        have_numpyro = False
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, threads {torch.get_num_threads()}")
    print("| posterior | method | seconds (median over rounds) | steps | max abs mean error (ref sds) | sd ratios |")
    print("|---|---|---|---|---|---|")
    for name in args.posteriors.split(","):
        problem = posteriordb.load(name)
        results = {}
        for r in range(args.rounds):
            order = ["a", "a'", "b", "b-eager", "b-graph", "c"]
            order = order[r % len(order) :] + order[: r % len(order)]
            for method in order:
                if method == "a":
                    out = run_compare(problem, r, "converged")
                elif method == "a'":
                    out = run_compare(problem, r, "steps")
                elif method == "b":
                    if name != "sblrc-blr" or "a" not in results:
                        continue
                    steps = results["a"][-1][1]
                    out = (hand_written_blr(problem, steps, r), steps, None)
                elif method.startswith("b-"):
                    if name != "sblrc-blr" or "a" not in results:
                        continue
                    steps = results["a"][-1][1]
                    out = (fit_steps(problem, steps, r, None if method == "b-eager" else "graph"), steps, None)
                else:
                    if not have_numpyro:
                        continue
                    out = numpyro_fullrank(name, problem, r)
                    if out is None:
                        continue
                results.setdefault(method, []).append(out)
        labels = {
            "a": "(a) compare, fullrank, stop on convergence",
            "a'": "(a') compare, fullrank, 3,000 steps",
            "b": "(b) hand-written PyTorch loop, (a)'s steps",
            "b-eager": "(b') fit, eager, (a)'s steps",
            "b-graph": "(b') fit, compile='graph', (a)'s steps",
            "c": "(c) NumPyro AutoMultivariateNormal, Adam 0.01, 10,000 steps",
        }
        for method, outs in results.items():
            seconds = statistics.median(o[0] for o in outs)
            steps = statistics.median(o[1] for o in outs)
            scored = [o[2] for o in outs if o[2] is not None]
            err = f"{max(s[0] for s in scored):.3g}" if scored else "-"
            ratios = f"{min(s[1] for s in scored):.3g}-{max(s[2] for s in scored):.3g}" if scored else "-"
            print(f"| {name} | {labels[method]} | {seconds:.2f} | {steps:.0f} | {err} | {ratios} |", flush=True)


if __name__ == "__main__":
    main()
