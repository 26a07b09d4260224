"""ELBO estimators by name, and one differentiable-loss interface over all of them."""

from __future__ import annotations

import pyro.infer
from pyro.poutine.runtime import effectful

from .._validate import check_positive_int

#: name -> (Pyro class, what it is)
ESTIMATORS = {
    "trace": (pyro.infer.Trace_ELBO, "Trace_ELBO: the standard Monte Carlo ELBO (the default)"),
    "meanfield": (pyro.infer.TraceMeanField_ELBO, "TraceMeanField_ELBO: analytic KL where it exists"),
    "tracegraph": (pyro.infer.TraceGraph_ELBO, "TraceGraph_ELBO: Rao-Blackwellised score-function terms"),
    "renyi": (pyro.infer.RenyiELBO, "RenyiELBO with alpha (default 0.5) over num_particles"),
    "iwae": (pyro.infer.RenyiELBO, "RenyiELBO with alpha=0: the importance-weighted bound (IWAE)"),
}
ELBO_NAMES = tuple(sorted(ESTIMATORS))
_DEFAULT_PARTICLES = {"iwae": 5, "renyi": 5}


def get_elbo(
    elbo="trace",
    num_particles: int | None = None,
    vectorize_particles: bool = False,
    alpha: float | None = None,
    max_plate_nesting: int | None = None,
) -> pyro.infer.ELBO:
    """A Pyro ELBO from a name, or ``elbo`` itself if it is already a ``pyro.infer.ELBO``.

    :param elbo: one of :data:`ELBO_NAMES` or a ``pyro.infer.ELBO`` instance.
    :param int num_particles: Monte Carlo particles per step (default 1; 5 for ``iwae``
        and ``renyi``, whose bounds need several).
    :param bool vectorize_particles: draw the particles in one vectorised pass.
    :param float alpha: the Renyi divergence order for ``renyi`` (default 0.5); ``iwae`` is
        alpha = 0 and takes no ``alpha``.
    :raises ValueError: an unknown name, listing the valid ones.
    """
    if isinstance(elbo, pyro.infer.ELBO):
        if num_particles is not None or alpha is not None or vectorize_particles:
            raise ValueError(
                "num_particles, vectorize_particles and alpha configure an ELBO chosen by name; "
                f"the ELBO instance {type(elbo).__name__} already has its own"
            )
        return elbo
    if not isinstance(elbo, str):
        raise TypeError(
            f"`elbo` must be a name in {list(ELBO_NAMES)} or a pyro.infer.ELBO instance, but got {type(elbo).__name__}"
        )
    if elbo not in ESTIMATORS:
        raise ValueError(
            f"unknown ELBO estimator {elbo!r}; valid names are {list(ELBO_NAMES)} (or pass a pyro.infer.ELBO instance)"
        )
    cls = ESTIMATORS[elbo][0]
    if num_particles is None:
        num_particles = _DEFAULT_PARTICLES.get(elbo, 1)
    kwargs = {
        "num_particles": check_positive_int(num_particles, "num_particles"),
        "vectorize_particles": bool(vectorize_particles),
    }
    if max_plate_nesting is not None:
        kwargs["max_plate_nesting"] = max_plate_nesting
    if elbo == "iwae":
        if alpha is not None:
            raise ValueError(f"`alpha` does not apply to 'iwae' (it is alpha=0), but got alpha={alpha!r}; use 'renyi'")
        kwargs["alpha"] = 0.0
    elif elbo == "renyi":
        kwargs["alpha"] = 0.5 if alpha is None else float(alpha)
        if kwargs["alpha"] == 1.0 or kwargs["alpha"] < 0:
            raise ValueError(f"`alpha` for 'renyi' must be >= 0 and != 1 (alpha=1 is 'trace'), but got {alpha!r}")
    elif alpha is not None:
        raise ValueError(f"`alpha` applies to 'renyi' only, but got alpha={alpha!r} with elbo={elbo!r}")
    return cls(**kwargs)


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

    Estimators with ``differentiable_loss`` (Trace, TraceMeanField) return a tensor that
    :meth:`backward_step` differentiates; the others run Pyro's own ``loss_and_grads``.
    """

    def __init__(self, elbo, model, guide):
        self.elbo, self.model, self.guide = elbo, model, guide
        self.differentiable = hasattr(elbo, "differentiable_loss")

    def _marked_guide(self, *args, **kwargs):
        _trainable_marker(name="_ppmodels_trainable")
        return self.guide(*args, **kwargs)

    def loss_and_grads(self, args, kwargs, check=None) -> float:
        """Compute the loss and accumulate its gradients; ``check(value)`` runs before
        backpropagation where the estimator allows it."""
        if self.differentiable:
            loss = self.elbo.differentiable_loss(self.model, self.guide, *args, **kwargs)
            value = loss.item()
            if check is not None:
                check(value)
            if loss.requires_grad:
                loss.backward()
            return value
        value = float(self.elbo.loss_and_grads(self.model, self._marked_guide, *args, **kwargs))
        if check is not None:
            check(value)
        return value

    def loss(self, args, kwargs) -> float:
        return float(self.elbo.loss(self.model, self.guide, *args, **kwargs))
