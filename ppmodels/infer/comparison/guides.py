"""compare's variational methods: a named Gaussian guide (:data:`GUIDES`) or the user's own,
trained by :func:`~ppmodels.infer.training.loop.fit` until its gradients are stationary, then
its draws and their diagnostics (:mod:`~ppmodels.infer.comparison.method_checks`)."""

from __future__ import annotations

import copy
import time

import pyro
import pyro.infer.autoguide as autoguide
import torch
from pyro import poutine

from .. import initialization as init
from ..training.callbacks import Callback
from ..training.convergence import GradientWindow, StopOnConvergence
from ..training.estimators import get_elbo
from ..training.loop import fit
from ..vi.laplace import whitened_guide
from .method_checks import draws_loo, guide_psis

#: guide names -> Pyro autoguides
GUIDES = {
    "meanfield": autoguide.AutoNormal,
    "fullrank": autoguide.AutoMultivariateNormal,
    "lowrank": autoguide.AutoLowRankMultivariateNormal,
}
#: the named guides that start at the Laplace approximation, whitened by it: name -> diagonal
WHITENED = {"meanfield": True, "fullrank": False}


class GuideMethod:
    """Variational inference with a guide: a named autoguide (:data:`GUIDES`) built on the
    model's continuous latents, or the user's own guide; full-batch SVI steps with Adam at
    ``lr`` until the gradients are stationary (``vi_stop="converged"``) or for ``vi_epochs``
    steps with the rate decaying 100-fold (``vi_stop="steps"``), discrete sites summed out by
    enumeration."""

    kind = "vi"

    def __init__(self, name, guide=None):
        self.name, self.guide = name, guide

    def fresh(self) -> GuideMethod:
        """The method with an untrained copy of its guide (a guide that is a module holds its
        parameters; a ``pyro.param`` guide's live in the store each run isolates)."""
        if isinstance(self.guide, torch.nn.Module):
            return GuideMethod(self.name, copy.deepcopy(self.guide))
        return self

    def run(self, problem, settings) -> tuple:
        pyro.set_rng_seed(settings.seed)
        guide, start_note = self.guide, None
        if guide is None:
            guide, start_note = self._named_guide(problem, settings)
        particles, particle_note = _particles(problem, settings.num_particles)
        elbo = get_elbo(
            "enum" if problem.discrete else "trace",
            particles,
            vectorize_particles=problem.broadcasts and particles > 1,
            max_plate_nesting=problem.nesting,
        )
        stopping = _VIStopping(settings)
        start = time.perf_counter()
        result = fit(
            (problem.model_fn, guide),
            problem.train,
            kwargs=problem.kwargs,
            epochs=settings.vi_epochs,
            lr=settings.lr,
            elbo=elbo,
            seed=settings.seed,
            progress=settings.progress,
            **stopping.fit_options(),
        )
        seconds = time.perf_counter() - start
        site_samples, draws_note = _vi_draws(guide, problem, settings.num_vi_samples)
        weighed = loo = psis_note = loo_note = None
        if settings.diagnostics:
            weighed, psis_note = guide_psis(problem, guide)
        if weighed is not None:  # LOO of the posterior: the guide's draws with their importance weights
            loo, loo_note = draws_loo(problem, weighed.draws, weighed.raw_log_weights)
        elif settings.diagnostics:
            loo, loo_note = draws_loo(problem, site_samples, None, why="the guide's draws taken as the posterior's: ")
        notes = [n for n in (start_note, particle_note, draws_note, stopping.note(result), psis_note, loo_note) if n]
        if problem.discrete:
            notes.append("discrete sites summed out by enumeration (elbo='enum')")
        method = problem.result(
            self,
            site_samples,
            seconds,
            final_loss=result.train_loss[-1],
            losses=result.losses,
            steps=result.num_steps,
            k_hat=weighed.k_hat if weighed is not None else None,
            psis_moments=problem.flatten_moments(weighed.moments) if weighed is not None else {},
            loo=loo,
            notes=notes,
        )
        warning = stopping.warning(self.name)
        return method, [warning] if warning else []

    def _named_guide(self, problem, settings) -> tuple:
        """The named autoguide; with ``vi_start="laplace"`` (the default) the mean-field and
        full-rank guides start at the Laplace approximation, whitened by it
        (:mod:`ppmodels.infer.vi.laplace`), else, or where there is no Laplace approximation,
        at Pyro's initialisation (the note says why)."""
        init_loc_fn = init.GUIDE_INIT[self.name]
        if settings.vi_start == "laplace" and self.name in WHITENED:
            try:
                guide = whitened_guide(
                    problem.bound(problem.model_fn),
                    problem.train,
                    WHITENED[self.name],
                    init_loc_fn,
                    guide_model=problem.bound(problem.continuous_model),
                    enumerate_plates=problem.nesting if problem.discrete else None,
                )
                return (
                    guide,
                    "started at the Laplace approximation (MAP by L-BFGS and Newton), in its whitened coordinates",
                )
            except (ValueError, RuntimeError) as error:  # RuntimeError: torch's linear algebra on a bad Hessian
                note = f"started at Pyro's initialisation: no Laplace approximation ({error})"
                return GUIDES[self.name](problem.continuous_model, init_loc_fn=init_loc_fn), note
        return GUIDES[self.name](problem.continuous_model, init_loc_fn=init_loc_fn), None


def _particles(problem, num_particles) -> tuple:
    """Particles per SVI step and, when the model does not broadcast over them, a note."""
    particles = num_particles if num_particles is not None else (8 if problem.broadcasts else 1)
    if problem.broadcasts:
        return particles, None
    how = (
        "1 particle per step was used (pass num_particles= for more; they run one after another)"
        if num_particles is None
        else f"its {particles} particles per step ran one after another"
    )
    why = "the model does not broadcast over a particle dimension (e.g. x @ w with w of shape (P, 1, D))"
    return particles, f"{why}, so {how}"


def _vi_draws(guide, problem, num, chunk=2000):
    """``num`` draws of the guide's latents, vectorised under a plate at the problem's particle
    dimension when the guide allows it, else one guide run at a time (at most 2000 then)."""
    args, kwargs, sites = problem.train, problem.kwargs, problem.sites
    with torch.no_grad(), pyro.validation_enabled(False):
        try:
            with pyro.plate("_draws", num, dim=problem.dim):
                trace = poutine.trace(guide).get_trace(*args, **kwargs)
            return {s: trace.nodes[s]["value"].reshape(num, *shape) for s, shape in sites.items()}, None
        except Exception:  # noqa: BLE001 (a guide that does not broadcast: draw sequentially)
            n = min(num, chunk)
            traces = [poutine.trace(guide).get_trace(*args, **kwargs) for _ in range(n)]
            draws = {
                s: torch.stack([t.nodes[s]["value"] for t in traces]).reshape(n, *shape) for s, shape in sites.items()
            }
            return draws, f"the guide does not broadcast over a draws dimension: {n} draws taken one at a time"


class _VIStopping:
    """How a VI method's training ends. ``vi_stop="converged"`` (compare's default):
    :class:`~ppmodels.infer.training.convergence.StopOnConvergence` from Adam at ``lr``, at most
    ``vi_epochs`` steps. ``"steps"``: exactly ``vi_epochs`` steps with ``lr`` decaying 100-fold.
    A run that ends at ``vi_epochs`` has its last tenth's gradients tested by the same rule
    (:meth:`warning`)."""

    def __init__(self, settings):
        self.settings = settings
        self.rule = StopOnConvergence() if settings.vi_stop == "converged" else None
        self.last = _LastSteps(max(10, settings.vi_epochs // 10), settings.vi_epochs)

    def fit_options(self) -> dict:
        if self.rule is not None:
            return {"callbacks": [self.rule, self.last]}
        gamma = 0.01 ** (1.0 / self.settings.vi_epochs)
        return {
            "callbacks": [self.last],
            "scheduler": lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma),
        }

    def warning(self, name) -> str | None:
        if self.rule is not None and self.rule.converged:
            return None
        return self.last.grads.not_converged_message(name)

    def note(self, result) -> str | None:
        if self.rule is None:
            return None
        if self.rule.converged:
            smallest = self.settings.lr * self.rule.factor**self.rule.decreases
            return f"stopped on convergence after {result.num_steps} steps (stationary gradients at lr {smallest:.3g})"
        return f"ran its maximum of {result.num_steps} steps (vi_epochs) before the convergence rule stopped it"


class _LastSteps(Callback):
    """The gradients of the last ``window`` of ``total`` steps."""

    def __init__(self, window, total):
        self.start = total - window
        self.grads = GradientWindow()

    def on_gradients(self, state):
        if state.step >= self.start:
            self.grads.add(state.named_parameters())


__all__ = ["GUIDES", "GuideMethod", "WHITENED"]
