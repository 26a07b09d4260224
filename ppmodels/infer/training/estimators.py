"""ELBO estimators by name, one differentiable-loss interface over all of them, and the form of
each that a graph can trace (the compiled training step's)."""

from __future__ import annotations

import contextlib
import importlib
import math

import pyro.infer
import torch
from pyro.distributions.util import is_identically_zero
from pyro.infer import config_enumerate
from pyro.infer.util import get_dependent_plate_dims, torch_sum
from pyro.poutine.runtime import effectful

from ..._validate import check_nonnegative_int, check_positive_int
from ..graphs.internals import ESTIMATOR_FUNCTIONS
from ..graphs.tracing import GraphUnsupported, quiet_jit_deprecation, without_support_checks


class _Enumerates:
    """Marks the model's discrete sites for parallel enumeration at every step, keeping any
    setting the user gave a site; with ``enumerate_guide`` the guide's discrete sites too
    (otherwise only those the user marked, e.g. with ``@config_enumerate``). A discrete
    model site the guide samples is replayed from the guide, so marking it changes nothing."""

    enumerate_guide = False

    def _get_traces(self, model, guide, args, kwargs):
        model = config_enumerate(model, "parallel")
        if self.enumerate_guide:
            guide = config_enumerate(guide, "parallel")
        yield from super()._get_traces(model, guide, args, kwargs)


class EnumELBO(_Enumerates, pyro.infer.TraceEnum_ELBO):
    """``TraceEnum_ELBO`` that enumerates the model's discrete latents without
    ``@config_enumerate``: what ``elbo="enum"`` builds. ``max_plate_nesting`` is found from the
    first trace when not given (Pyro's guess)."""

    def __init__(self, *, enumerate_guide: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.enumerate_guide = bool(enumerate_guide)


class JitEnumELBO(_Enumerates, pyro.infer.JitTraceEnum_ELBO):
    """:class:`EnumELBO`, compiled with Pyro's JIT: ``elbo="jit-enum"``."""

    def __init__(self, *, enumerate_guide: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.enumerate_guide = bool(enumerate_guide)


#: name -> (Pyro class, what it is)
ESTIMATORS = {
    "trace": (pyro.infer.Trace_ELBO, "Trace_ELBO: the standard Monte Carlo ELBO (the default)"),
    "meanfield": (pyro.infer.TraceMeanField_ELBO, "TraceMeanField_ELBO: analytic KL where it exists"),
    "tracegraph": (pyro.infer.TraceGraph_ELBO, "TraceGraph_ELBO: Rao-Blackwellised score-function terms"),
    "renyi": (pyro.infer.RenyiELBO, "RenyiELBO with alpha (default 0.5) over num_particles"),
    "iwae": (pyro.infer.RenyiELBO, "RenyiELBO with alpha=0: the importance-weighted bound (IWAE)"),
    "tailadaptive": (
        pyro.infer.TraceTailAdaptive_ELBO,
        "TraceTailAdaptive_ELBO: adaptive f-divergence; several vectorised particles, no subsampling, "
        "gradients only (its loss value is not computed)",
    ),
    "enum": (
        EnumELBO,
        "TraceEnum_ELBO: discrete latents the guide does not sample are summed out exactly (parallel "
        "enumeration), continuous ones as Trace_ELBO",
    ),
    "jit-enum": (JitEnumELBO, "JitTraceEnum_ELBO: enum, compiled with the PyTorch JIT"),
    "jit-trace": (pyro.infer.JitTrace_ELBO, "JitTrace_ELBO: Trace_ELBO compiled with the PyTorch JIT"),
    "jit-meanfield": (pyro.infer.JitTraceMeanField_ELBO, "JitTraceMeanField_ELBO: TraceMeanField_ELBO, compiled"),
    "jit-tracegraph": (pyro.infer.JitTraceGraph_ELBO, "JitTraceGraph_ELBO: TraceGraph_ELBO, compiled"),
}
ELBO_NAMES = tuple(sorted(ESTIMATORS))
_DEFAULT_PARTICLES = {"iwae": 5, "renyi": 5, "tailadaptive": 8}
JIT_NAMES = ("jit-enum", "jit-meanfield", "jit-trace", "jit-tracegraph")
ENUM_NAMES = ("enum", "jit-enum")


def is_jit(elbo) -> bool:
    return isinstance(
        elbo,
        (
            pyro.infer.JitTrace_ELBO,
            pyro.infer.JitTraceMeanField_ELBO,
            pyro.infer.JitTraceGraph_ELBO,
            pyro.infer.JitTraceEnum_ELBO,
        ),
    )


def get_elbo(
    elbo="trace",
    num_particles: int | None = None,
    vectorize_particles: bool | None = None,
    alpha: float | None = None,
    max_plate_nesting: int | None = None,
    enumerate_guide: bool | None = None,
) -> pyro.infer.ELBO:
    """A Pyro ELBO from a name, or ``elbo`` itself if it is already a ``pyro.infer.ELBO``.

    :param elbo: one of :data:`ELBO_NAMES`, a name with its options as ``(name, {option:
        value})`` — the keywords below and any keyword of the Pyro class the name builds, e.g.
        ``("enum", {"max_plate_nesting": 2})`` or ``("jit-enum", {"jit_options": {...}})`` —
        or a ``pyro.infer.ELBO`` instance.
    :param int num_particles: Monte Carlo particles per step (default 1; 5 for ``iwae``
        and ``renyi``, whose bounds need several).
    :param bool vectorize_particles: draw the particles in one vectorised pass (default: only
        for ``tailadaptive``, which requires it).
    :param float alpha: the Renyi divergence order for ``renyi`` (default 0.5); ``iwae`` is
        alpha = 0 and takes no ``alpha``.
    :param int max_plate_nesting: how many plates nest at most (enumeration allocates its
        dimensions to their left); found from the first trace when not given.
    :param bool enumerate_guide: for ``enum``/``jit-enum``: also enumerate the guide's
        discrete sites (default: only those the user marked, e.g. with ``@config_enumerate``;
        the model's unguided discrete sites are always enumerated).
    :raises ValueError: an unknown name, listing the valid ones.
    """
    if isinstance(elbo, pyro.infer.ELBO):
        if num_particles is not None or alpha is not None or vectorize_particles is not None or enumerate_guide:
            raise ValueError(
                "num_particles, vectorize_particles, alpha and enumerate_guide configure an ELBO chosen by name; "
                f"the ELBO instance {type(elbo).__name__} already has its own"
            )
        return elbo
    extra = {}
    if isinstance(elbo, tuple):
        given = {
            "num_particles": num_particles,
            "vectorize_particles": vectorize_particles,
            "alpha": alpha,
            "max_plate_nesting": max_plate_nesting,
            "enumerate_guide": enumerate_guide,
        }
        elbo, given, extra = _name_and_options(elbo, given)
        num_particles, vectorize_particles, alpha = given["num_particles"], given["vectorize_particles"], given["alpha"]
        max_plate_nesting, enumerate_guide = given["max_plate_nesting"], given["enumerate_guide"]
    if not isinstance(elbo, str):
        raise TypeError(
            f"`elbo` must be a name in {list(ELBO_NAMES)}, a (name, options) tuple or a pyro.infer.ELBO instance, "
            f"but got {type(elbo).__name__}"
        )
    if elbo not in ESTIMATORS:
        raise ValueError(
            f"unknown ELBO estimator {elbo!r}; valid names are {list(ELBO_NAMES)} (or pass a pyro.infer.ELBO instance)"
        )
    cls = ESTIMATORS[elbo][0]
    if num_particles is None:
        num_particles = _DEFAULT_PARTICLES.get(elbo, 1)
    if vectorize_particles is None:
        vectorize_particles = elbo == "tailadaptive"
    kwargs = {
        "num_particles": check_positive_int(num_particles, "num_particles"),
        "vectorize_particles": bool(vectorize_particles),
    }
    if elbo == "tailadaptive" and (kwargs["num_particles"] < 2 or not kwargs["vectorize_particles"]):
        raise ValueError(
            "'tailadaptive' needs several vectorised particles: num_particles >= 2 and vectorize_particles=True, "
            f"but got num_particles={num_particles}, vectorize_particles={vectorize_particles}"
        )
    if max_plate_nesting is not None:
        kwargs["max_plate_nesting"] = check_nonnegative_int(max_plate_nesting, "max_plate_nesting")
    if elbo in ENUM_NAMES:
        kwargs["enumerate_guide"] = bool(enumerate_guide)
    elif enumerate_guide is not None:
        raise ValueError(
            f"`enumerate_guide` applies to 'enum' and 'jit-enum' only, but got enumerate_guide={enumerate_guide!r} "
            f"with elbo={elbo!r}"
        )
    kwargs.update(_alpha(elbo, alpha))
    if extra:
        accepted = _constructor_keywords(cls)
        unknown = sorted(k for k in extra if k not in accepted or k in kwargs)
        if unknown:
            raise ValueError(
                f"`elbo`: {elbo!r} ({cls.__name__}) takes no option {unknown}; its options are "
                f"{sorted(set(accepted) | {'num_particles', 'vectorize_particles', 'max_plate_nesting'})}"
            )
        kwargs.update(extra)
    return cls(**kwargs)


def _name_and_options(elbo: tuple, given: dict) -> tuple:
    """``(name, given, extra)`` from ``elbo = (name, {option: value})``: the options that are
    :func:`get_elbo`'s own keywords taken into ``given`` (each given once), the rest ``extra``."""
    if len(elbo) != 2 or not isinstance(elbo[0], str) or not isinstance(elbo[1], dict):
        raise TypeError(
            "`elbo` as a tuple must be (name, {option: value}), e.g. ('enum', {'max_plate_nesting': 2}), "
            f"but got {elbo!r}"
        )
    name, options = elbo[0], dict(elbo[1])
    twice = sorted(k for k in options if k in given and given[k] is not None)
    if twice:
        raise ValueError(f"`elbo`: {twice} given both in the estimator's options and as arguments; give each once")
    given = {k: options.pop(k, v) for k, v in given.items()}
    return name, given, options


def _alpha(elbo: str, alpha) -> dict:
    """The Rényi order an estimator is built with: 0 for ``iwae``, 0.5 by default for ``renyi``,
    none for the others (a given ``alpha`` is refused there)."""
    if elbo == "iwae":
        if alpha is not None:
            raise ValueError(f"`alpha` does not apply to 'iwae' (it is alpha=0), but got alpha={alpha!r}; use 'renyi'")
        return {"alpha": 0.0}
    if elbo == "renyi":
        value = 0.5 if alpha is None else float(alpha)
        if value == 1.0 or value < 0:
            raise ValueError(f"`alpha` for 'renyi' must be >= 0 and != 1 (alpha=1 is 'trace'), but got {alpha!r}")
        return {"alpha": value}
    if alpha is not None:
        raise ValueError(f"`alpha` applies to 'renyi' only, but got alpha={alpha!r} with elbo={elbo!r}")
    return {}


def _constructor_keywords(cls) -> set:
    """The keyword arguments a Pyro ELBO class's constructor takes (through its bases)."""
    import inspect

    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                names.add(p.name)
    names.discard("kwargs")
    return names


def estimator_name(elbo) -> str:
    """A short name for an ELBO instance (its registry name when it has one)."""
    for name, (cls, _) in ESTIMATORS.items():
        if type(elbo) is cls:
            if cls is pyro.infer.RenyiELBO:
                return "iwae" if elbo.alpha == 0 else "renyi"
            return name
    return type(elbo).__name__


# Pyro's RenyiELBO.loss_and_grads only backpropagates when a trace holds a "param" site.
# ppmodels' pairs keep their parameters in modules (no pyro.param), so the guide announces
# one marker site; it touches no parameter store.
_trainable_marker = effectful(lambda: None, type="param")


class Objective:
    """``model``/``guide`` under one ELBO, giving loss values with gradients accumulated.

    Estimators with ``differentiable_loss`` (Trace, TraceMeanField, TailAdaptive and the JIT
    Trace ones) return a tensor that is differentiated here; the others run Pyro's own
    ``loss_and_grads``. ``reports_loss`` is False for TailAdaptive, which computes gradients
    only: its loss is then ``nan`` and the evaluation loss comes from a Trace_ELBO.
    """

    def __init__(self, elbo, model, guide):
        self.elbo, self.model, self.guide = elbo, model, guide
        # Pyro's JitTrace_ELBO.differentiable_loss returns loss + (surrogate - surrogate.detach())
        # with the loss not detached, which doubles every gradient; its loss_and_grads is right.
        self.differentiable = hasattr(elbo, "differentiable_loss") and not isinstance(
            elbo, (pyro.infer.JitTraceGraph_ELBO, pyro.infer.JitTrace_ELBO)
        )
        self.reports_loss = not isinstance(elbo, pyro.infer.TraceTailAdaptive_ELBO)
        self._monitor = (
            None
            if self.reports_loss
            else pyro.infer.Trace_ELBO(
                num_particles=elbo.num_particles,
                vectorize_particles=elbo.vectorize_particles,
                max_plate_nesting=elbo.max_plate_nesting,
            )
        )

    def _marked_guide(self, *args, **kwargs):
        _trainable_marker(name="_ppmodels_trainable")
        return self.guide(*args, **kwargs)

    def loss_and_grads(self, args, kwargs, check=None) -> float:
        """Compute the loss and accumulate its gradients; ``check(value)`` runs before
        backpropagation where the estimator allows it."""
        with quiet_jit_deprecation():  # Pyro's JIT estimators
            return self._loss_and_grads(args, kwargs, check)

    def _loss_and_grads(self, args, kwargs, check):
        if self.differentiable and not self.reports_loss:
            self.elbo.differentiable_loss(self.model, self.guide, *args, **kwargs).backward()
            return float("nan")
        if self.differentiable:
            loss = self.elbo.differentiable_loss(self.model, self.guide, *args, **kwargs)
            value = loss.item()
            if check is not None:
                check(value)
            if loss.requires_grad:
                loss.backward()
            return value
        # the JIT keys its compiled graph on the guide's identity: give it the same object each step
        guide = self.guide if is_jit(self.elbo) else self._marked_guide
        value = float(self.elbo.loss_and_grads(self.model, guide, *args, **kwargs))
        if check is not None:
            check(value)
        return value

    def loss(self, args, kwargs) -> float:
        elbo = self.elbo if self.reports_loss else self._monitor
        with quiet_jit_deprecation():
            return float(elbo.loss(self.model, self.guide, *args, **kwargs))


# -- the estimators' traceable form (the compiled step's) -----------------------------------------
def check_compilable(elbo):
    """Refuse estimators whose step has no static structure we can trace, naming why."""
    name = type(elbo).__name__
    if isinstance(elbo, pyro.infer.TraceTailAdaptive_ELBO):
        raise ValueError("compile: 'tailadaptive' computes gradients only (no loss to trace); use compile=None")
    if isinstance(elbo, (pyro.infer.TraceGraph_ELBO, pyro.infer.JitTraceGraph_ELBO)):
        raise ValueError(
            "compile: 'tracegraph' fits baselines and Rao-Blackwellises per step in Python; use 'trace' (the same "
            "estimator without its variance reduction) or compile=None"
        )
    if type(elbo).__module__.startswith("pyro.infer") and "Jit" in name:
        raise ValueError(f"compile: {name} is already compiled by Pyro's JIT; use the estimator without 'jit-'")
    if not (isinstance(elbo, pyro.infer.RenyiELBO) or hasattr(elbo, "differentiable_loss")):
        raise ValueError(f"compile: {name} has no differentiable loss to trace; use compile=None")


# -- Pyro's estimators made traceable ---------------------------------------------------------
def _keep_tensor(x):
    return x.detach() if isinstance(x, torch.Tensor) else x


@contextlib.contextmanager
def traceable():
    """While a graph is traced, Pyro's ``torch_item`` keeps its tensor (``loss + (s -
    s.detach())`` is the same value and gradient either way) and ``warn_if_nan`` is skipped (a
    data-dependent branch; fit's NaN guard checks the loss the graph returns)."""
    saved = []
    replacements = {"torch_item": _keep_tensor, "warn_if_nan": lambda value, *a, **k: value}
    for name, attrs in ESTIMATOR_FUNCTIONS.items():
        module = importlib.import_module(name)
        for attr in attrs:
            if hasattr(module, attr):  # where Pyro moved one, the trace meets it and the step runs eagerly
                saved.append((module, attr, getattr(module, attr)))
                setattr(module, attr, replacements[attr])
    try:
        with without_support_checks():  # the first, eager step has checked them
            yield
    finally:
        for module, attr, old in saved:
            setattr(module, attr, old)


def renyi_loss(elbo, model, guide, args, kwargs):
    """The Rényi bound's loss with the gradient of RenyiELBO's estimator (Li & Turner 2016):
    the value ``-1/(1-a) log mean_k w_k^(1-a)`` and the surrogate ``-sum_k stopgrad(w~_k) s_k``,
    ``w~`` the self-normalised weights, ``s_k`` particle k's log p - log q (reparameterised
    guides: the first step checks there is no score-function term)."""
    alpha = elbo.alpha
    log_w, surrogate = [], []
    for model_trace, guide_trace in elbo._get_traces(model, guide, args, kwargs):
        dims = get_dependent_plate_dims(model_trace.nodes.values())
        lw = 0.0
        for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
            for site in trace.nodes.values():
                if site["type"] == "sample":
                    lw = lw + sign * torch_sum(site["log_prob"], dims)
        if is_identically_zero(lw):
            raise GraphUnsupported("the Rényi bound of a model with no sample sites")
        log_w.append(lw)
    log_w = log_w[0] if elbo.vectorize_particles and elbo.num_particles > 1 else torch.stack(log_w)
    scaled = (1.0 - alpha) * log_w
    value = -(torch.logsumexp(scaled.detach(), 0) - math.log(elbo.num_particles)).sum() / (1.0 - alpha)
    weights = torch.softmax(scaled.detach(), 0)
    surrogate = -(weights * log_w).sum()
    return value + (surrogate - surrogate.detach())


def estimator_loss(elbo, model, guide, args, kwargs):
    """The loss a graph traces for ``elbo``: its ``differentiable_loss``, or the Rényi bound's
    (:func:`renyi_loss`)."""
    if isinstance(elbo, pyro.infer.RenyiELBO):
        return renyi_loss(elbo, model, guide, args, kwargs)
    return elbo.differentiable_loss(model, guide, *args, **kwargs)


__all__ = [
    "ELBO_NAMES",
    "ENUM_NAMES",
    "ESTIMATORS",
    "EnumELBO",
    "JIT_NAMES",
    "JitEnumELBO",
    "Objective",
    "check_compilable",
    "estimator_loss",
    "estimator_name",
    "get_elbo",
    "is_jit",
    "renyi_loss",
    "traceable",
]
