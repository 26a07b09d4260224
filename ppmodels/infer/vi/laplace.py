"""Variational inference that does not depend on the posterior's scale: start at the Laplace
approximation, then optimise in the coordinates it whitens.

Adam's steps have about the same size, ``lr``, in every coordinate. A posterior whose sds
span 1e-4 to 1e4 (a regression on an unscaled covariate, a flat prior) or whose coordinates
are correlated 0.99 then needs a learning rate per problem, and the default one leaves the
guide tens of sds from its optimum (posteriordb's ``kidiq`` and ``mesquite``). Here:

1. the MAP point in the unconstrained space is found by L-BFGS (a deterministic
   optimisation of the log joint, scale-free up to its line search);
2. the Hessian there gives the Laplace approximation ``N(c, H^-1)``;
3. the guide is written relative to it, ``z = c + L0 (m + S eps)`` with ``L0`` the
   Cholesky factor of ``H^-1``, and ``m = 0``, ``S = I`` to start: the ELBO's steps then move
   ``m`` and ``S`` in units of posterior sds, where one learning rate suits every problem.
   Mean field keeps its family factorised: ``z = c + L0 m + D s eps`` with ``D`` the
   diagonal ``1 / sqrt(diag H)`` (its optimum for a Gaussian posterior) and ``s`` a vector.
   Its location still moves in the whitened coordinates: scaled by the diagonal alone, a
   posterior correlated at -0.99999 (kilpisjarvi's intercept and slope on an uncentred year)
   leaves a ridge with almost no curvature, along which Adam's noisy steps drift.

For a Gaussian posterior the start is the exact answer; for one near Gaussian in the
unconstrained space (regressions, AR/ARMA, GP hyper-parameters) it is close, and the ELBO
moves it to the family's optimum. Where there is no finite MAP (a funnel, an improper
posterior) or the Hessian is not positive definite, :func:`laplace` raises ``ValueError``
with the reason and compare falls back to Pyro's initialisation, saying so.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import pyro
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, config_enumerate
from pyro.infer.autoguide import AutoContinuous, AutoLaplaceApproximation
from pyro.nn import PyroParam

from .. import initialization as init
from ..training.params import isolated_store, stored_shape

#: Newton steps after L-BFGS: each roughly doubles the digits of a mode that L-BFGS left at
#: float32's tolerance (on posteriordb's kidiq, whose coefficients' sds differ 100-fold and
#: correlate -0.99, L-BFGS alone stopped 4 posterior sds from the mode)
NEWTON_STEPS = 3
#: further MAP searches from random starts (uniform in (-2, 2) in the unconstrained space)
#: when the first stops at a saddle or diverges: posteriordb's ARMA(1, 1), started at its
#: prior medians, stopped at a saddle, and from each of 4 random starts found the mode
RESTARTS = 3
#: the loss L-BFGS sees where the model's density is not finite
_WALL = 1e30
#: a Hessian eigenvalue below minus this at the end of the search means it diverged (a funnel's
#: neck, an improper direction: the density grows without bound), not that it met a saddle
DIVERGED_CURVATURE = 1e12


class NoModeError(ValueError):
    """The MAP search diverged: the posterior has no finite mode to start from (a funnel, an
    improper direction), from any start."""


def _gradient_and_hessian(elbo, model, guide, loc, args):
    loss = elbo.differentiable_loss(model, guide, *args)
    (grad,) = torch.autograd.grad(loss, loc, create_graph=True)
    rows = [torch.autograd.grad(g, loc, retain_graph=True)[0] for g in grad]
    hessian = torch.stack(rows).detach().double()
    return grad.detach().double(), (hessian + hessian.T) / 2


def laplace(model, args, init_loc_fn, *, guide_model=None, enumerate_plates=None, max_iter=1000):
    """``(center, covariance)`` of the Laplace approximation of ``model(*args)``'s posterior in
    the unconstrained space, in the packing order of an ``AutoContinuous`` guide on
    ``guide_model`` (default ``model``; the model with its discrete sites hidden when they are
    summed out). ``enumerate_plates``: the model's ``max_plate_nesting`` when discrete sites
    are summed out (``TraceEnum_ELBO``). Raises ``ValueError`` naming why there is none."""
    map_guide = AutoLaplaceApproximation(guide_model or model, init_loc_fn=init_loc_fn)
    if enumerate_plates is None:
        elbo = Trace_ELBO()
    else:
        elbo, model = TraceEnum_ELBO(max_plate_nesting=enumerate_plates), config_enumerate(model)
    # the line search may try points where the model's density is not finite (an ARMA's
    # recursion explodes): Pyro warns at each; a mode that is not finite is refused below
    # the mode search's guide lives in a store of its own: it neither reads a parameter of
    # the same name left by an earlier model nor leaves one behind
    with isolated_store(), poutine.block(), pyro.validation_enabled(False), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Encountered (NaN|[+-]?inf)", category=UserWarning)
        map_guide(*args)  # its parameters now exist
        loc = map_guide.loc
        optimizer = torch.optim.LBFGS(
            [loc], lr=1.0, max_iter=max_iter, tolerance_grad=1e-7, tolerance_change=1e-12, line_search_fn="strong_wolfe"
        )

        def closure():
            optimizer.zero_grad()
            loss = elbo.differentiable_loss(model, map_guide, *args)
            if not bool(torch.isfinite(loss)):  # outside the density's finite region: a wall the line search backs off
                return loss.new_tensor(_WALL)
            loss.backward()
            return loss

        optimizer.step(closure)
        for _ in range(NEWTON_STEPS):  # L-BFGS stops at float32's tolerance; Newton steps finish the mode
            grad, hessian = _gradient_and_hessian(elbo, model, map_guide, loc, args)
            if not bool(torch.isfinite(hessian).all()) or float(torch.linalg.eigvalsh(hessian).min()) <= 0:
                break
            with torch.no_grad():
                loc -= torch.linalg.solve(hessian, grad).to(loc.dtype)
        if not bool(torch.isfinite(loc).all()):
            raise NoModeError("the MAP search diverged (no finite mode: an improper posterior or a funnel)")
        _, hessian = _gradient_and_hessian(elbo, model, map_guide, loc, args)
    if not bool(torch.isfinite(hessian).all()):
        raise NoModeError("the Hessian at the MAP point is not finite (no finite mode: a funnel's neck?)")
    eigen = torch.linalg.eigvalsh(hessian)
    if float(eigen.min()) < -DIVERGED_CURVATURE:
        raise NoModeError(
            f"the MAP search diverged: the Hessian's smallest eigenvalue is {float(eigen.min()):.3g} (no finite "
            "mode: a funnel's neck or an improper direction)"
        )
    if float(eigen.min()) <= 0:
        raise ValueError(
            f"the Hessian at the MAP point is not positive definite (smallest eigenvalue {float(eigen.min()):.3g}): "
            "the mode is a saddle or on a ridge"
        )
    return loc.detach().clone(), torch.linalg.inv(hessian).to(loc.dtype)


class WhitenedNormal(AutoContinuous):
    """A Gaussian guide on the unconstrained latents written relative to a Laplace
    approximation ``N(center, covariance)``, ``L0`` the Cholesky factor of ``covariance``;
    ``m = 0`` and ``S = I`` at the start. Full rank: ``z = center + L0 (m + S eps)``, ``S``
    lower triangular (per-coordinate scales times a unit lower-triangular factor, as Pyro's
    ``AutoMultivariateNormal``). ``diagonal=True`` is mean field, ``z = center + L0 m +
    D (s * eps)``: factorised, with ``D = 1 / sqrt(diag(covariance^-1))`` (the conditional
    sds, the family's optimum for a Gaussian posterior) and the location whitened as in full
    rank."""

    def __init__(self, model, center, covariance, diagonal=False, init_loc_fn=None):
        kwargs = {} if init_loc_fn is None else {"init_loc_fn": init_loc_fn}
        super().__init__(model, **kwargs)
        self.diagonal = diagonal
        self._center, self._covariance = center, covariance

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        center = self._center.to(self._init_loc())
        if center.shape != (self.latent_dim,):
            raise ValueError(f"the Laplace center has shape {tuple(center.shape)}, the guide {self.latent_dim} latents")
        self.register_buffer("center", center)
        for name in ("m", "s", "tril"):  # Pyro would hand this guide another model's parameters
            key = f"{self._pyro_name}.{name}"
            stale = stored_shape(key)
            if stale is not None and stale[-1] != self.latent_dim:
                raise ValueError(
                    f"Pyro's parameter store holds {key} of shape {stale} from another "
                    f"model ({self.latent_dim} latents here): call pyro.clear_param_store() before building this guide"
                )
        cholesky = torch.linalg.cholesky(self._covariance.double())
        self.register_buffer("factor", cholesky.to(center))
        if self.diagonal:  # the conditional sds, 1 / sqrt(diag(precision))
            self.register_buffer("scale", torch.cholesky_inverse(cholesky).diagonal().rsqrt().to(center))
        self.m = torch.nn.Parameter(torch.zeros_like(center))
        self.s = PyroParam(torch.ones_like(center), constraints.positive)
        if not self.diagonal:
            self.tril = PyroParam(torch.eye(self.latent_dim).to(center), constraints.unit_lower_cholesky)

    def get_posterior(self, *args, **kwargs):
        if self.diagonal:
            return pyro.distributions.Normal(self.center + self.factor @ self.m, self.scale * self.s).to_event(1)
        scale_tril = self.factor @ (self.s.unsqueeze(-1) * self.tril)
        return pyro.distributions.MultivariateNormal(self.center + self.factor @ self.m, scale_tril=scale_tril)

    def _loc_scale(self, *args, **kwargs):
        posterior = self.get_posterior()
        if self.diagonal:
            return posterior.base_dist.loc, posterior.base_dist.scale
        return posterior.loc, posterior.covariance_matrix.diagonal().sqrt()


@contextlib.contextmanager
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def laplace_in_float64(model, args, start, **kwargs):
    """:func:`laplace` with the model run in float64 (its floating-point arguments and the
    default dtype), where the model allows it; else ``None``. A float32 Hessian cannot resolve
    a posterior whose scales differ 1e4-fold and correlate: on a regression on an unscaled
    covariate (x around 5,000) its rounding error exceeds the smallest eigenvalue, which then
    looks negative.

    The model allows it when one run of it in float64 succeeds and every site it draws or
    observes is float64; a model holding float32 tensors of its own (a module's weights, a
    constant made with ``dtype=torch.float32``) fails or mixes dtypes, and stays in its dtype."""
    doubled = tuple(a.double() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)
    with _float64():
        if not _runs_in_float64(model, doubled):
            return None
        return laplace(model, doubled, start, **kwargs)


def _runs_in_float64(model, args) -> bool:
    with isolated_store(), poutine.block(), pyro.validation_enabled(False), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            trace = poutine.trace(model).get_trace(*args)
        except Exception:  # noqa: BLE001 (any failure in float64: the model's own dtype decides)
            return False
    return all(
        site["value"].dtype == torch.float64
        for site in trace.nodes.values()
        if site["type"] == "sample" and torch.is_tensor(site["value"]) and site["value"].is_floating_point()
    )


def whitened_guide(model, args, diagonal, init_loc_fn, guide_model=None, enumerate_plates=None):
    """A :class:`WhitenedNormal` on ``guide_model`` (default ``model``) at the Laplace
    approximation of ``model``'s posterior (see :func:`laplace`; in float64 where the model
    runs in it)."""
    failures = []
    for start in (init_loc_fn, *[init.init_to_uniform] * RESTARTS):
        try:
            options = {"guide_model": guide_model, "enumerate_plates": enumerate_plates}
            found = laplace_in_float64(model, args, start, **options)
            center, covariance = found if found is not None else laplace(model, args, start, **options)
            break
        except NoModeError:  # no start finds a mode that is not there
            raise
        except (ValueError, RuntimeError) as error:  # RuntimeError: torch's linear algebra, an overflow
            failures.append(str(error))
    else:
        raise ValueError(f"{failures[0]}; also from {RESTARTS} random starts")
    guide = WhitenedNormal(guide_model or model, center, covariance, diagonal=diagonal, init_loc_fn=init_loc_fn)
    with poutine.block(), torch.no_grad():
        guide(*args)
    if not math.isfinite(float(guide.factor.sum())):
        raise ValueError("the Laplace covariance is not finite")
    return guide


def laplace_guide(model, args, family: str = "fullrank", init_loc_fn=None) -> WhitenedNormal:
    """A Gaussian guide for ``model(*args)`` that starts at its Laplace approximation and
    trains in the coordinates it whitens, so ``fit``'s default learning rate suits posteriors
    of any scale and correlation (compare's default guides, for your own model):

    >>> guide = laplace_guide(model, (x, y))                                   # doctest: +SKIP
    >>> fit((model, guide), (x, y), epochs=5000, callbacks=[StopOnConvergence()])  # doctest: +SKIP

    :param tuple args: the model's arguments (full-batch data: the mode is of this posterior).
    :param str family: ``"fullrank"`` (a multivariate normal) or ``"meanfield"`` (factorised).
    :param init_loc_fn: where the mode search starts (default: compare's start for the
        family, :data:`ppmodels.infer.initialization.GUIDE_INIT`: the priors' medians for full
        rank, zero in the unconstrained space for mean field; flat priors in their support).
    :raises ValueError: when there is no Laplace approximation (no finite mode, a Hessian
        that is not positive definite), saying which; an autoguide from Pyro's
        initialisation is then the alternative.
    """
    if family not in ("fullrank", "meanfield"):
        raise ValueError(f"`family` must be 'fullrank' or 'meanfield', but got {family!r}")
    if not isinstance(args, tuple):
        raise TypeError(f"`args` must be a tuple of the model's arguments, e.g. (x, y), but got {type(args).__name__}")
    diagonal = family == "meanfield"
    start = init_loc_fn or init.GUIDE_INIT[family]
    return whitened_guide(model, args, diagonal, start)


__all__ = ["NoModeError", "WhitenedNormal", "laplace", "laplace_guide", "laplace_in_float64", "whitened_guide"]
