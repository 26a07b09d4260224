"""Simulation-based calibration's runs: does an inference method return the posterior, averaged
over data the model itself makes?

Each simulation draws parameters ``theta*`` from the prior and data from the model given
them (observed ``pyro.sample`` sites drawn instead of observed, ``poutine.uncondition``),
runs the method on the model conditioned on those data, and records the rank of each
``theta*`` among ``num_draws`` of the method's posterior draws. For a method that returns
the posterior the ranks are uniform on ``0..num_draws``; too narrow a posterior piles them at
both ends, a biased one at one end. :mod:`~ppmodels.infer.comparison.sbc_ranks` tests them.

Simulations are written one JSON line each to ``out`` as they finish, so a rerun with the
same settings continues where the last stopped; ``workers`` processes run them in
parallel (the model and method must then be picklable: functions defined at a module's top
level). The method is one of compare's, run with compare's options.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites

from ..._progress import progress_bar
from ..._validate import check_positive_int
from ..program.sites import model_function, prior_trace
from ..sampling.options import MANY_CHAIN_KERNELS
from ..training.params import isolated_store
from .kernels import KERNELS
from .methods import method_of
from .options import METHOD_FIELDS, CompareOptions
from .problem import Problem
from .sbc_ranks import SBCResult


def simulate(model, args, seed: int) -> tuple:
    """One draw of the latents from the prior and of the data given them: ``(latents,
    data)``, ``{site: value}`` each (the data are the model's observed sample sites)."""
    sites = prior_trace(model, args).nodes
    data_sites = []
    for name, site in sites.items():
        if site["type"] != "sample":
            continue
        if type(site["fn"]).__name__ == "Unit":
            raise ValueError(
                f"the model cannot simulate its data: site {name!r} is a pyro.factor term, which weighs the joint "
                "density but cannot be drawn from; SBC needs a model whose every term is a pyro.sample site it can "
                "draw (data through obs=)"
            )
        if type(site["fn"]).__name__ == "ImproperUniform":
            raise ValueError(
                f"the model cannot simulate its parameters: site {name!r} has a flat (ImproperUniform) prior; SBC "
                "draws the parameters from the prior, so it needs a proper one"
            )
        if site["is_observed"]:
            data_sites.append(name)
    if not data_sites:
        raise ValueError("the model has no observed pyro.sample site (obs=), so it has no data to simulate")
    pyro.set_rng_seed(seed)
    with torch.no_grad(), poutine.block():
        trace = prune_subsample_sites(poutine.trace(poutine.uncondition(model)).get_trace(*args))
    latents, data = {}, {}
    for name, site in trace.nodes.items():
        if site["type"] == "sample":
            (data if name in data_sites else latents)[name] = site["value"]
    return latents, data


def _run_one(model, args, method, settings, j, seed, num_draws) -> dict:
    """One simulation: its ranks, the fractions below, how long, and the method's warnings."""

    latents, data = simulate(model, args, seed + j)
    conditioned = poutine.condition(model, data=data)
    start = time.perf_counter()
    with isolated_store():
        problem = Problem.inspect(conditioned, args)
        result, warnings = method.fresh().run(problem, dataclasses.replace(settings, seed=seed + j))
    seconds = time.perf_counter() - start
    site_samples = result.site_samples
    s = next(iter(site_samples.values())).shape[0]
    if s < num_draws:
        raise ValueError(
            f"`num_draws` ({num_draws}) is more than the {s} posterior draws {method.name} returns; lower it or "
            "raise the method's draws (num_samples, num_vi_samples)"
        )
    idx = torch.linspace(0, s - 1, num_draws).round().long()  # thinned: MCMC's draws are autocorrelated
    truth = problem.flatten({k: v.unsqueeze(0) for k, v in latents.items() if k in problem.sites})
    drawn = problem.flatten({k: v[idx] for k, v in site_samples.items()})
    ranks = {name: int((drawn[name] < truth[name][0]).sum()) for name in problem.names}
    return {
        "simulation": j,
        "ranks": ranks,
        "fractions": {name: r / num_draws for name, r in ranks.items()},
        "seconds": seconds,
        "warnings": warnings,
    }


def _run_in_process(payload) -> dict:
    """One simulation in a worker process, on one thread."""
    torch.set_num_threads(1)
    return _run_one(*payload)


def sbc(
    model,
    args=(),
    method="nuts",
    num_simulations: int = 100,
    num_draws: int = 99,
    seed: int = 0,
    out=None,
    workers: int = 1,
    progress: bool = False,
    **settings,
) -> SBCResult:
    """Simulation-based calibration of ``method`` on ``model``.

    :param model: a Pyro model (or an object with ``.model``, e.g. a compare problem) whose
        data are observed ``pyro.sample`` sites it can also draw, with proper priors.
    :param tuple args: the model's arguments (their observed values are replaced by each
        simulation's data; they fix the data's shape).
    :param method: a compare method name (``"meanfield"``, ``"fullrank"``, ``"lowrank"``,
        ``"nuts"``, ``"hmc"``, ``"chees"``), a ``(name, guide)`` pair (a guide of the user's, trained
        afresh for each simulation), or a callable ``(model, args) -> {site: (S, *shape)}``
        returning posterior draws (any inference of the user's).
    :param int num_draws: the posterior draws each rank is among (evenly spaced over the
        method's draws; ``num_draws + 1`` rank values).
    :param out: a folder: each simulation is saved there as it finishes, and a rerun with
        the same settings keeps those done.
    :param int workers: processes running simulations in parallel.
    :param settings: compare's settings for the method (``vi_epochs``, ``num_samples``,
        ``warmup_steps``, ``lr``, ``num_vi_samples``, ...; ``diagnostics``, PSIS and LOO
        after each fit, is off unless asked for; MCMC runs one chain, ``num_chains=1``, unless
        asked for more: the simulations are the parallel work; ChEES its 64 in one process).
    :returns: :class:`SBCResult`.
    """
    num_simulations = check_positive_int(num_simulations, "num_simulations")
    num_draws = check_positive_int(num_draws, "num_draws")
    workers = check_positive_int(workers, "workers")
    model_fn = model_function(model)
    if not isinstance(args, tuple):
        raise TypeError(f"`args` must be a tuple of the model's arguments, but got {type(args).__name__}")
    if not args and isinstance(getattr(model, "args", None), tuple):
        args = model.args  # a problem that brings its data (a posteriordb posterior)
    for name in ("seed", "progress"):
        if name in settings:
            raise TypeError(f"pass {name} to sbc itself, not as a method setting")
    for name in METHOD_FIELDS:
        if name in settings:
            raise TypeError(f"sbc runs one method, given as `method`: {name}= is compare's, not a method setting")
    chains = None if method in MANY_CHAIN_KERNELS else 1  # ChEES: its own 64 in one process
    methods = {"mcmc": (method,), "guides": ()} if isinstance(method, str) and method in KERNELS else {"mcmc": ()}
    chosen = CompareOptions.checked(seed=seed, **{"diagnostics": False, "num_chains": chains, **settings, **methods})
    runner = method_of(method)
    simulate(model_fn, args, seed)  # fails now, with its message, if the model cannot simulate
    done = _load(out, runner.name, num_draws, seed, chosen) if out is not None else {}
    todo = [j for j in range(num_simulations) if j not in done]
    start = time.perf_counter()
    for record in _execute(model_fn, args, runner, chosen, todo, seed, num_draws, workers, progress):
        done[record["simulation"]] = record
        if out is not None:
            with open(Path(out) / "simulations.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
    records = [done[j] for j in range(num_simulations)]
    names = list(records[0]["ranks"])
    return SBCResult(
        ranks={n: torch.tensor([r["ranks"][n] for r in records]) for n in names},
        fractions={n: torch.tensor([r["fractions"][n] for r in records], dtype=torch.float64) for n in names},
        num_draws=num_draws,
        method=runner.name,
        seconds=time.perf_counter() - start,
        warnings=[f"simulation {r['simulation']}: {w}" for r in records for w in r["warnings"]],
    )


def _execute(model, args, runner, settings, todo, seed, num_draws, workers, progress):
    with progress_bar(progress, len(todo), f"SBC {runner.name}") as update:
        if workers == 1 or len(todo) < 2:
            for j in todo:
                yield _run_one(model, args, runner, settings, j, seed, num_draws)
                if update is not None:
                    update()
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # one task per simulation, so each is saved as soon as it finishes
        payloads = [(model, args, runner, settings, j, seed, num_draws) for j in todo]
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(_run_in_process, p) for p in payloads]):
                yield future.result()
                if update is not None:
                    update()


def _load(out, method, num_draws, seed, settings) -> dict:
    """The simulations already done in ``out`` with these settings; a folder with other
    settings is refused rather than mixed."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {"method": method, "num_draws": num_draws, "seed": seed, "settings": _plain(settings)}
    saved = folder / "sbc_settings.json"
    if saved.is_file():
        previous = json.loads(saved.read_text())
        if previous != wanted:
            raise ValueError(
                f"`out` {str(folder)!r} holds simulations made with other settings ({previous}); use another folder "
                "or the same settings"
            )
    else:
        saved.write_text(json.dumps(wanted, indent=1))
    done = {}
    lines = folder / "simulations.jsonl"
    if lines.is_file():
        for line in lines.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by an interruption: that simulation runs again
                continue
            done[record["simulation"]] = record
    return done


def _plain(settings) -> dict:
    """The settings a saved run must share with this one (not the seed, the progress bar or the methods)."""
    skip = ("seed", "progress", *METHOD_FIELDS)
    return {k: v for k, v in vars(settings).items() if k not in skip and not callable(v)}


__all__ = ["sbc", "simulate"]
