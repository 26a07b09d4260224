"""compare's methods, one unit per kind: :class:`GuideMethod` (variational inference with a
guide, trained by :func:`~ppmodels.infer.fit`) and :class:`KernelMethod` (Pyro's MCMC with a
kernel). Each runs on a :class:`~ppmodels.infer.problem.Problem` with compare's
:class:`Settings` and returns its :class:`~ppmodels.infer.comparison.MethodResult` and the
warnings its own diagnostics raise. A new kind of method is a new class with the same
``run``.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass

import pyro
import pyro.infer.autoguide as autoguide
import torch
from pyro import poutine

from .._validate import check_choice, check_nonnegative_int, check_positive_int
from . import initialization as init
from .callbacks import Callback
from .chees import CheesSettings
from .comparison import MethodResult
from .convergence import GradientWindow, StopOnConvergence
from .elbo import get_elbo
from .fit import fit
from .laplace import whitened_guide
from .loo import pointwise, psis_loo, relative_efficiency
from .nuts import KernelSettings
from .potential import COMPILE_MODES
from .problem import _names
from .psis import USABLE, psis
from .sampling import KERNELS as MCMC_KERNELS
from .sampling import MANY_CHAIN_KERNELS
from .sampling import mcmc as run_mcmc

#: guide names -> Pyro autoguides
GUIDES = {
    "meanfield": autoguide.AutoNormal,
    "fullrank": autoguide.AutoMultivariateNormal,
    "lowrank": autoguide.AutoLowRankMultivariateNormal,
}
#: the named guides that start at the Laplace approximation, whitened by it: name -> diagonal
WHITENED = {"meanfield": True, "fullrank": False}
#: MCMC kernel names (run by :func:`~ppmodels.infer.sampling.mcmc`)
KERNELS = (*MCMC_KERNELS, *MANY_CHAIN_KERNELS)
#: options one family of kernels has and the other has not: compare's ``kernel_options`` are
#: shared, so each kernel leaves the other's (as NUTS leaves HMC's ``jitter``)
NUTS_ONLY = set(KernelSettings.__dataclass_fields__) - set(CheesSettings.__dataclass_fields__)
CHEES_ONLY = set(CheesSettings.__dataclass_fields__) - set(KernelSettings.__dataclass_fields__)


@dataclass(frozen=True)
class Settings:
    """compare's settings, as its methods read them."""

    seed: int = 0
    progress: bool = False
    vi_epochs: int = 3000
    lr: float = 0.05
    num_particles: int | None = None
    num_vi_samples: int = 20000
    num_samples: int = 1000
    warmup_steps: int = 500
    num_chains: int | None = None  # MCMC chains: one per core, 2 to 4 (sampling.default_chains)
    mcmc_compile: str | None = "auto"  # the potential's compile mode (mcmc's compile=)
    kernel_options: dict | None = None
    vi_start: str = "laplace"
    vi_stop: str = "converged"
    diagnostics: bool = True  # PSIS k-hat (VI) and PSIS-LOO after each method

    @classmethod
    def checked(cls, **options) -> Settings:
        """Settings from keywords, each checked (a clear error naming it)."""
        unknown = sorted(set(options) - set(cls.__dataclass_fields__))
        if unknown:
            raise TypeError(f"unknown settings {unknown}; the settings are {sorted(cls.__dataclass_fields__)}")
        for name in ("num_samples", "vi_epochs", "num_vi_samples"):
            if name in options:
                check_positive_int(options[name], name)
        if options.get("num_chains") is not None:
            check_positive_int(options["num_chains"], "num_chains")
        if options.get("mcmc_compile") is not None:
            check_choice(options["mcmc_compile"], "mcmc_compile", ["auto", *COMPILE_MODES])
        if "warmup_steps" in options:
            check_nonnegative_int(options["warmup_steps"], "warmup_steps")
        if options.get("num_particles") is not None:
            check_positive_int(options["num_particles"], "num_particles")
        if "vi_start" in options:
            check_choice(options["vi_start"], "vi_start", ["laplace", "prior"])
        if "vi_stop" in options:
            check_choice(options["vi_stop"], "vi_stop", ["converged", "steps"])
        return cls(**options)


class GuideMethod:
    """Variational inference with a guide: a named autoguide (:data:`GUIDES`) built on the
    model's continuous latents, or the user's own guide; full-batch SVI steps with Adam at
    ``lr`` decaying 100-fold, discrete sites summed out by enumeration."""

    kind = "vi"

    def __init__(self, name, guide=None):
        self.name, self.guide = name, guide

    def fresh(self) -> GuideMethod:
        """The method with an untrained copy of its guide (a guide that is a module holds its
        parameters; a ``pyro.param`` guide's live in the store each run isolates)."""
        if isinstance(self.guide, torch.nn.Module):
            return GuideMethod(self.name, copy.deepcopy(self.guide))
        return self

    def run(self, problem, settings: Settings) -> tuple:
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
            epochs=settings.vi_epochs,
            lr=settings.lr,
            elbo=elbo,
            seed=settings.seed,
            progress=settings.progress,
            **stopping.fit_options(),
        )
        seconds = time.perf_counter() - start
        site_samples, draws_note = _vi_draws(guide, problem.train, problem.sites, settings.num_vi_samples, problem.dim)
        weighed = loo = psis_note = loo_note = None
        if settings.diagnostics:
            weighed, psis_note = _psis(problem, guide)
        if weighed is not None:  # LOO of the posterior: the guide's draws with their importance weights
            loo, loo_note = _loo(problem, weighed.draws, weighed.raw_log_weights)
        elif settings.diagnostics:
            loo, loo_note = _loo(problem, site_samples, None, why="the guide's draws taken as the posterior's: ")
        notes = [n for n in (start_note, particle_note, draws_note, stopping.note(result), psis_note, loo_note) if n]
        if problem.discrete:
            notes.append("discrete sites summed out by enumeration (elbo='enum')")
        method = _result(
            self,
            problem,
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
        (:mod:`ppmodels.infer.laplace`), else, or where there is no Laplace approximation,
        at Pyro's initialisation (the note says why)."""
        init_loc_fn = init.GUIDE_INIT[self.name]
        if settings.vi_start == "laplace" and self.name in WHITENED:
            try:
                guide = whitened_guide(
                    problem.model_fn,
                    problem.train,
                    WHITENED[self.name],
                    init_loc_fn,
                    guide_model=problem.continuous_model,
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


class KernelMethod:
    """MCMC with a named kernel (:data:`KERNELS`) through :func:`~ppmodels.infer.sampling.mcmc`: the
    compiled potential, several chains in parallel, Pyro's initialisation (``init_to_uniform``,
    with flat priors too), discrete sites enumerated; r-hat, effective sample sizes and
    divergences checked."""

    kind = "mcmc"

    def __init__(self, name):
        self.name = name

    def fresh(self) -> KernelMethod:
        return self

    def run(self, problem, settings: Settings) -> tuple:
        options = dict(settings.kernel_options or {})
        options.setdefault("init_strategy", init.init_to_uniform)  # Pyro's, with flat priors too
        options.setdefault("max_plate_nesting", problem.plates)  # Pyro's guess would draw from flat priors
        options.setdefault("compile", settings.mcmc_compile)
        if self.name != "hmc":
            options.pop("jitter", None)  # HMC's option, shared in compare's kernel_options (compare checks it)
        for name in NUTS_ONLY if self.name in MANY_CHAIN_KERNELS else CHEES_ONLY:
            options.pop(name, None)
        with warnings.catch_warnings():  # ChEES's unmixed chains: in the report's notes and r-hat warnings instead
            warnings.filterwarnings("ignore", r"the \d+ chains have not mixed", RuntimeWarning)
            sampler = run_mcmc(
                problem.potential_model,
                *problem.train,
                kernel=self.name,
                num_samples=settings.num_samples,
                warmup_steps=settings.warmup_steps,
                num_chains=settings.num_chains,
                seed=settings.seed,
                progress=settings.progress,
                **options,
            )
        seconds = sampler.seconds
        sites = problem.sites
        site_samples = {s: v.reshape(-1, *sites[s]) for s, v in sampler.get_samples().items() if s in sites}
        diagnostics = {}
        raw = sampler.diagnostics()
        for s, shape in sites.items():
            ess = raw[s]["n_eff"].reshape(-1)
            r_hat = raw[s]["r_hat"].reshape(-1)
            for j, latent in enumerate(_names({s: shape})):
                diagnostics[latent] = {"ess": float(ess[j]), "r_hat": float(r_hat[j])}
        divergences = sum(len(v) for v in (raw.get("divergences") or {}).values())
        loo, loo_note = (
            _loo(problem, site_samples, None, chains=sampler.num_chains) if settings.diagnostics else (None, None)
        )
        notes = [f"discrete sites enumerated (max_plate_nesting={problem.plates})"] if problem.discrete else []
        notes += sampler.notes
        method = _result(
            self,
            problem,
            site_samples,
            seconds,
            diagnostics=diagnostics,
            loo=loo,
            notes=notes + ([loo_note] if loo_note else []),
            mcmc=sampler,
        )
        return method, _mcmc_warnings(self.name, diagnostics, divergences)


class DrawsMethod:
    """Any inference of the user's as a method: ``draws(model, args)`` returns posterior draws
    ``{latent site: (S, *shape)}`` (e.g. the exact posterior of a conjugate model, or another
    library's sampler)."""

    kind = "draws"

    def __init__(self, name, draws):
        if not callable(draws):
            raise TypeError(
                f"`draws` must be a callable (model, args) -> {{site: draws}}, but got {type(draws).__name__}"
            )
        self.name, self.draws = name, draws

    def fresh(self) -> DrawsMethod:
        return self

    def run(self, problem, settings: Settings) -> tuple:
        pyro.set_rng_seed(settings.seed)
        start = time.perf_counter()
        site_samples = self.draws(problem.model_fn, problem.train)
        seconds = time.perf_counter() - start
        missing = [s for s in problem.sites if s not in site_samples]
        if not isinstance(site_samples, dict) or missing:
            raise ValueError(
                f"method {self.name!r} must return {{latent site: (S, *shape) draws}} for every latent site; it misses "
                f"{missing or 'all (not a dict)'}"
            )
        sizes = {k: v.shape[0] for k, v in site_samples.items() if k in problem.sites}
        site_samples = {s: site_samples[s].reshape(sizes[s], *shape) for s, shape in problem.sites.items()}
        return _result(self, problem, site_samples, seconds), []


def method_of(spec):
    """A compare method from how a user names it: a guide name (:data:`GUIDES`), a kernel
    name (:data:`KERNELS`), a guide (a callable, named by its ``__name__``), a ``(name,
    guide)`` pair, or a method object (:class:`GuideMethod`, :class:`KernelMethod`,
    :class:`DrawsMethod`)."""
    if isinstance(spec, str):
        if spec in GUIDES:
            return GuideMethod(spec)
        if spec in KERNELS:
            return KernelMethod(spec)
        raise ValueError(
            f"unknown method {spec!r}; valid names are guides {sorted(GUIDES)} and MCMC kernels {sorted(KERNELS)} "
            "(or pass your own guide)"
        )
    if isinstance(spec, (GuideMethod, KernelMethod, DrawsMethod)):
        return spec
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and callable(spec[1]):
        return GuideMethod(*spec)
    if callable(spec):
        return GuideMethod(getattr(spec, "__name__", type(spec).__name__), spec)
    raise TypeError(
        f"a method must be a name in {sorted(GUIDES) + sorted(KERNELS)}, a guide (a callable), a (name, guide) pair or "
        f"a DrawsMethod, but got {type(spec).__name__}"
    )


def _result(method, problem, site_samples, seconds, **details) -> MethodResult:
    """A method's result: its draws by site and by latent, with the discrete sites' posterior
    marginals when the model has discrete sites."""
    result = MethodResult(method.name, method.kind, problem.flatten(site_samples), site_samples, seconds, **details)
    if problem.discrete:
        result.discrete = problem.discrete_marginals(site_samples)
    return result


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


def _vi_draws(guide, args, sites, num, dim, chunk=2000):
    """``num`` draws of the guide's latents, vectorised under a plate at ``dim`` when the guide
    allows it, else one guide run at a time (at most 2000 then)."""
    with torch.no_grad(), pyro.validation_enabled(False):
        try:
            with pyro.plate("_draws", num, dim=dim):
                trace = poutine.trace(guide).get_trace(*args)
            return {s: trace.nodes[s]["value"].reshape(num, *shape) for s, shape in sites.items()}, None
        except Exception:  # noqa: BLE001 (a guide that does not broadcast: draw sequentially)
            n = min(num, chunk)
            traces = [poutine.trace(guide).get_trace(*args) for _ in range(n)]
            draws = {
                s: torch.stack([t.nodes[s]["value"] for t in traces]).reshape(n, *shape) for s, shape in sites.items()
            }
            return draws, f"the guide does not broadcast over a draws dimension: {n} draws taken one at a time"


def _psis(problem, guide, num_samples=2000) -> tuple:
    """PSIS of a trained guide against the model (:func:`~ppmodels.infer.psis.psis`), and a
    note when it is not computed (discrete sites summed out) or k-hat is above 0.7."""
    if problem.discrete:
        return None, None
    try:
        result = psis(problem.model_fn, guide, *problem.train, num_samples=num_samples)
    except (RuntimeError, ValueError) as error:
        return None, f"no PSIS k-hat: {error}"
    return result, (result.verdict if result.k_hat >= USABLE else None)


def _loo(problem, draws, log_weights, chains=1, why="", max_draws=2000) -> tuple:
    """PSIS-LOO of the draws (:mod:`ppmodels.infer.loo`; ``log_weights`` for draws that are
    not the posterior's), and a note when it is not computed or some observations' k-hat are
    above 0.7."""
    if problem.discrete:
        return None, None  # the pointwise likelihood needs the discrete sites summed out
    try:
        if log_weights is None:
            step = max(1, -(-next(iter(draws.values())).shape[0] // max_draws))
            draws = {name: v[::step] for name, v in draws.items()}
        ll = pointwise(problem.model_fn, draws, *problem.train).flat()
        reff = relative_efficiency(ll, chains) if log_weights is None else 1.0
        result = psis_loo(ll, log_weights, reff)
    except (RuntimeError, ValueError) as error:
        return None, f"no PSIS-LOO: {error}"
    note = None if not result.bad else f"PSIS-LOO: {result.verdict}"
    if why and note is None:
        note = f"PSIS-LOO from {why.rstrip(': ')}"
    elif why:
        note = f"PSIS-LOO from {why}{result.verdict}"
    return result, note


class _VIStopping:
    """How a VI method's training ends. ``vi_stop="converged"`` (compare's default):
    :class:`~ppmodels.infer.convergence.StopOnConvergence` from Adam at ``lr``, at most
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


def _mcmc_warnings(name, diagnostics, divergences):
    out = []
    r_hat = max((d["r_hat"] for d in diagnostics.values() if math.isfinite(d["r_hat"])), default=float("nan"))
    ess = min((d["ess"] for d in diagnostics.values()), default=float("nan"))
    if r_hat > 1.05:
        out.append(f"{name}: r-hat {r_hat:.3f} > 1.05: the chains have not mixed; the reference is unreliable")
    if ess < 100:
        out.append(f"{name}: the smallest effective sample size is {ess:.0f} < 100: Monte Carlo error is large")
    if divergences:
        out.append(
            f"{name}: {divergences} divergent transitions: the sampler missed part of the posterior (reparameterise "
            "the model, or raise the target acceptance probability)"
        )
    return out


__all__ = ["GUIDES", "KERNELS", "DrawsMethod", "GuideMethod", "KernelMethod", "Settings", "method_of"]
