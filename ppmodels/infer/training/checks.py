"""Checks on the first training step that catch what would otherwise train silently wrong.

The first step runs under a :class:`SiteRecorder`, which keeps every sample and param
site the guide and the model announce (with the role of the program that announced it).
Before the optimizer's first update, fit runs the checks below on what was recorded: data
scaling of user mini-batches, per-datum parameters under shuffling, and each estimator's
preconditions. Each failure is a ``ValueError`` naming the site, plate or parameter and the
fix.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import pyro.infer
from pyro.poutine.messenger import Messenger

from ..program.sites import is_discrete
from .estimators import estimator_name, is_jit

_PARTICLE_PLATE = "num_particles_vectorized"


@dataclass
class Site:
    name: str
    role: str  # "model" or "guide"
    type: str  # "sample" or "param"
    is_observed: bool = False
    fn: object = None
    shape: tuple = ()
    frames: tuple = ()  # the vectorised plates: CondIndepStackFrame, innermost first
    infer: dict = field(default_factory=dict)
    value: object = None  # param sites: the constrained value

    @property
    def is_subsample(self) -> bool:
        return type(self.fn).__name__ == "_Subsample"

    @property
    def is_factor(self) -> bool:
        return type(self.fn).__name__ == "Unit"


class SiteRecorder(Messenger):
    """Records the sites of the first step. ``role(fn, name)`` wraps the model and guide so
    that each site knows which program announced it; the wrappers cost one Python call per
    program run and record only while the recorder is active."""

    def __init__(self):
        super().__init__()
        self.sites = []
        self.current = None
        self.active = False

    def __enter__(self):
        self.sites, self.active = [], True
        return super().__enter__()

    def __exit__(self, *exc):
        self.active = False
        return super().__exit__(*exc)

    def role(self, fn, name):
        @functools.wraps(fn)
        def tagged(*args, **kwargs):
            if not self.active:
                return fn(*args, **kwargs)
            outer, self.current = self.current, name
            try:
                return fn(*args, **kwargs)
            finally:
                self.current = outer

        return tagged

    def _pyro_post_sample(self, msg):
        frames = tuple(f for f in msg["cond_indep_stack"] if f.vectorized and f.name != _PARTICLE_PLATE)
        value = msg["value"]
        self.sites.append(
            Site(
                msg["name"],
                self.current or "model",
                "sample",
                bool(msg["is_observed"]),
                msg["fn"],
                tuple(getattr(value, "shape", ())),
                frames,
                dict(msg.get("infer") or {}),
            )
        )

    def _pyro_post_param(self, msg):
        value = msg["value"]
        self.sites.append(
            Site(msg["name"], self.current or "model", "param", shape=tuple(getattr(value, "shape", ())), value=value)
        )

    # -- views -------------------------------------------------------------------------
    def samples(self, role):
        seen, out = set(), []
        for s in self.sites:
            if s.type == "sample" and s.role == role and not s.is_subsample and s.name not in seen:
                seen.add(s.name)
                out.append(s)
        return out

    def params(self):
        """Each param site once, in order of first appearance, with its latest value (a
        PyroModule may swap the tensor behind a name while it sets itself up)."""
        latest = {}
        for s in self.sites:
            if s.type == "param" and s.name != "_ppmodels_trainable":
                latest.setdefault(s.name, []).append(s)
        return [entries[-1] for entries in latest.values()]


# -- data scaling of a user's mini-batches ---------------------------------------------
@dataclass
class Scaling:
    """What the first step showed about how the model treats a mini-batch of B of N."""

    scaled: bool  # every observed site is in a plate of full size N subsampled to B
    local: bool  # every site is in a plate of size B: an unscaled batch is a constant multiple


def check_batch_scaling(recorder: SiteRecorder, num_data: int, batch: int, batch_option: str) -> Scaling:
    """Every observed site must sit in a plate of full size ``num_data`` whose subsample is
    the batch, so that Pyro scales the likelihood by N/B; or, failing that, the model must
    have nothing outside the batch's plate (no global latent, no global factor), in which
    case the unscaled batch loss is B/N times the whole ELBO and the optimum is the same."""
    observed = [s for s in recorder.samples("model") if s.is_observed]
    latent = [s for s in recorder.samples("model") if not s.is_observed]

    def scaled(site):
        return any(f.full_size == num_data and f.size == batch for f in site.frames)

    def in_batch_plate(site):  # a plate of the batch's size, or one sized by broadcasting (size -1)
        return any(f.size in (batch, -1) for f in site.frames)

    if all(scaled(s) for s in observed):
        return Scaling(True, all(in_batch_plate(s) for s in latent))
    if all(in_batch_plate(s) for s in observed + latent):
        return Scaling(False, True)
    bad = next(s for s in observed if not scaled(s))
    plate = next((f for f in bad.frames if f.size == batch), bad.frames[0] if bad.frames else None)
    where = (
        f"is in plate {plate.name!r} of size {plate.full_size} (subsample {plate.size})"
        if plate is not None
        else "is in no plate"
    )
    outside = [s.name for s in observed + latent if not in_batch_plate(s) and s is not bad][:4]
    plate_name = plate.name if plate is not None else "data"
    raise ValueError(
        f"{batch_option}: fit passes mini-batches of B={batch} of the N={num_data} samples, but the observed site "
        f"{bad.name!r} {where}, so Pyro does not scale its log-likelihood by N/B = {num_data}/{batch}, while the "
        f"model has sites outside the batch's plate ({', '.join(map(repr, outside))}): the ELBO would weigh them "
        f"{num_data / batch:.3g} times too much and the posterior would be wrong. Fixes: declare the plate with the "
        f"data set's size and the batch's indices, pyro.plate({plate_name!r}, size={num_data}, subsample=subsample), "
        "with a `subsample=None` keyword in the model and guide (fit passes each batch's indices into the data "
        f"set there); or pass the whole data set and subsample in the model, pyro.plate({plate_name!r}, "
        f"size={num_data}, subsample_size={batch}); or train full batch (batch_size=None)."
    )


def data_plate(recorder: SiteRecorder):
    """``(name, size)`` of the plate that the model's observed sites are the data of, from the
    first step: the plate they are subsampled from (its full size), else the outermost plate
    they all share; ``None`` when they share none (or the model observes nothing)."""
    observed = [s for s in recorder.samples("model") if s.is_observed and not s.is_factor]
    if not observed:
        return None
    for site in observed:
        for f in site.frames:
            if f.full_size is not None and f.size not in (-1, f.full_size) and f.full_size > 0:
                return f.name, int(f.full_size)
    shared = set.intersection(*({f.name for f in s.frames} for s in observed))
    for f in reversed(observed[0].frames):  # outermost first
        if f.name in shared and f.full_size is not None and f.full_size > 0:
            return f.name, int(f.full_size)
    return None


def check_per_datum_params(recorder: SiteRecorder, num_data: int):
    """``shuffle=True`` reorders the data at every pass; a ``pyro.param`` with a dimension of
    size N is indexed by position, so its rows would be matched to other data points."""
    for s in recorder.params():
        if "$$$" in s.name:  # a network registered with pyro.module
            continue
        if num_data in s.shape:
            raise ValueError(
                f"`shuffle=True` reorders the data at every pass, but the parameter {s.name!r} (shape {s.shape}) has "
                f"a dimension of size N={num_data}, the data set's size: a per-datum parameter would be matched to "
                "other data points. Train with shuffle=False (the default for your own pair), or take a "
                "`subsample=None` keyword in the model and guide and index the parameter with it (fit passes each "
                "batch's indices into the data set)."
            )


# -- estimator preconditions -----------------------------------------------------------
def unguided_discrete_sites(recorder: SiteRecorder) -> list:
    guided = {s.name for s in recorder.samples("guide")}
    return [
        s
        for s in recorder.samples("model")
        if not s.is_observed and s.name not in guided and not s.is_factor and is_discrete(s.fn)
    ]


def enumerates(elbo) -> bool:
    return isinstance(elbo, (pyro.infer.TraceEnum_ELBO, pyro.infer.JitTraceEnum_ELBO))


def check_estimator(elbo, recorder: SiteRecorder, module_params, param_leaf_ids):
    """Preconditions of the chosen estimator that the first step's sites can prove wrong."""
    name = estimator_name(elbo)
    if not enumerates(elbo):
        discrete = unguided_discrete_sites(recorder)
        if discrete:
            site = discrete[0]
            raise ValueError(
                f"the model's discrete site {site.name!r} ({type(site.fn).__name__}) is not sampled by the guide, so "
                f"{name!r} would draw it from the prior at every step (or fail): a discrete latent is summed out by "
                "enumeration. Use elbo='enum' (TraceEnum_ELBO), or sample the site in the guide"
            )
    if not enumerates(elbo):
        marked = [s for s in recorder.samples("guide") if s.infer.get("enumerate")]
        if marked:
            site = marked[0]
            raise ValueError(
                f"the guide marks its site {site.name!r} ({type(site.fn).__name__}) for enumeration "
                f"(infer={{'enumerate': {site.infer['enumerate']!r}}}), but {name!r} does not enumerate: it would "
                "sample the site instead of summing it out. Use elbo='enum' (TraceEnum_ELBO)"
            )
    if isinstance(elbo, pyro.infer.RenyiELBO):
        for s in recorder.samples("guide"):
            if not s.is_observed and not getattr(s.fn, "has_rsample", True) and not s.infer.get("enumerate"):
                raise ValueError(
                    f"{name!r} differentiates the importance weights through reparameterised draws only, but the "
                    f"guide's site {s.name!r} ({type(s.fn).__name__}) cannot be reparameterised: its score-function "
                    "term is zero in RenyiELBO, so the parameters behind it would never move. Use 'trace' or "
                    "'tracegraph' (score-function gradients), or a reparameterisable guide distribution"
                )
    if isinstance(elbo, (pyro.infer.TraceMeanField_ELBO, pyro.infer.JitTraceMeanField_ELBO)):
        _check_analytic_kl(recorder, name)
    if is_jit(elbo):
        unseen = [(n, p) for n, p in module_params if p.requires_grad and id(p) not in param_leaf_ids]
        if unseen:
            count = sum(p.numel() for _, p in unseen)
            raise ValueError(
                f"{name!r} compiles the loss with the parameters Pyro sees (pyro.param and pyro.module sites) as its "
                f"inputs, but {len(unseen)} module parameters ({count} values: {', '.join(n for n, _ in unseen[:3])}"
                f"{', ...' if len(unseen) > 3 else ''}) are used without being registered, so the JIT would bake "
                "them in as constants and never train them. Register each network with pyro.module(name, net) in "
                "the model or guide that uses it, or use the same estimator without 'jit-'"
            )


def _check_analytic_kl(recorder, name):
    from torch.distributions import kl_divergence

    model = {s.name: s for s in recorder.samples("model")}
    for q in recorder.samples("guide"):
        p = model.get(q.name)
        if p is None or p.is_observed:
            continue
        try:
            kl = kl_divergence(q.fn, p.fn)
        except NotImplementedError:
            continue
        try:
            value = float(kl.detach().sum())
        except Exception:  # noqa: BLE001 (a KL we cannot evaluate: not our precondition to judge)
            continue
        if math.isinf(value):
            raise ValueError(
                f"{name!r} uses the analytic KL(q || p) at site {q.name!r}, and it is infinite: the guide's "
                f"{type(q.fn).__name__} has support {_support(q.fn)}, wider than the prior's {type(p.fn).__name__} "
                f"support {_support(p.fn)}. Give the guide a distribution on the prior's support (e.g. a "
                "TransformedDistribution onto it, as autoguides do), or use 'trace' (Monte Carlo KL)"
            )


def _support(fn) -> str:
    support = getattr(fn, "support", None)
    base = getattr(support, "base_constraint", support)
    return type(base).__name__.lstrip("_") if base is not None else "unknown"
