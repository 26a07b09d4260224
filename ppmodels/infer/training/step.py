"""The training step: one batch's loss and gradients under Pyro's estimator.

:class:`TrainingStep` owns the objective (the estimator with the model and guide), the
first step's checks, the optimizer (built after the first step, when the ``pyro.param``
sites are known) and the switch between the eager step and the compiled one. What it trains
is a :class:`~ppmodels.infer.training.params.TrainedParameters`.
"""

from __future__ import annotations

import pyro
import torch

from ..program.pairs import check_keywords, signature_of
from . import checks
from . import distributed as dist_
from .compiled_step import CompiledStep
from .data import as_args, batch_size_of, call_arguments, num_batches, to_device
from .estimators import Objective, check_compilable, estimator_loss, estimator_name, get_elbo, is_jit
from .optimizers import make_optimizer
from .params import TrainedParameters, has_leaf


class TrainingStep:
    """``step(state) -> loss``: the loss of ``state.batch`` with every trained tensor's
    gradient set, before the optimizer's update (which the loop makes).

    The first call runs eagerly under a :class:`~ppmodels.infer.training.checks.SiteRecorder`; the
    recorded sites are checked before any update, then the optimizer is built over the
    module parameters and the ``pyro.param`` sites the step met (``state.optimizer``), and,
    with ``compile=``, the later steps run the compiled step.

    :ivar elbo: the ``pyro.infer.ELBO`` instance.
    :ivar denominator: what a batch's loss is divided by to be per datum (``None``: the
        batch's size), set by the first step for a user's program.
    :ivar per: what the losses are per (:attr:`FitResult.per <ppmodels.infer.FitResult.per>`).
    """

    def __init__(
        self, pair, options, data, *, scales_batches, internal, shuffle, passes_indices, device, optimizer_state=None
    ):
        self.pair, self.options, self.data = pair, options, data
        self.scales_batches, self.internal, self.shuffle, self.passes_indices = (
            scales_batches,
            internal,
            shuffle,
            passes_indices,
        )
        self.optimizer_state = optimizer_state
        elbo = options.elbo
        nesting = getattr(pair, "max_plate_nesting", None) if isinstance(elbo, (str, tuple)) else None
        if isinstance(elbo, tuple) and isinstance(elbo[-1], dict) and "max_plate_nesting" in elbo[-1]:
            nesting = None  # the options say it
        self.elbo = get_elbo(elbo, options.num_particles, options.vectorize_particles, max_plate_nesting=nesting)
        self.recorder = checks.SiteRecorder()
        self.objective = Objective(
            self.elbo, self.recorder.role(pair.model, "model"), self.recorder.role(pair.guide, "guide")
        )
        self.adversary_step = getattr(pair, "adversary_step", None)
        if options.compile is not None:
            check_compilable(self.elbo)
        if estimator_name(self.elbo) == "tailadaptive":
            steps = num_batches(data.source)
            if data.sliced and (steps is None or steps > 1):
                raise ValueError(
                    "'tailadaptive' does not support data subsampling: train on the whole data set in one batch "
                    f"(batch_size >= {data.num_data}, got {options.batch_size}) or use another estimator"
                )
        self.eager = (
            dist_.distributed_step(pair, self.objective, self.adversary_step, device)
            if options.distributed
            else self.objective.loss_and_grads
        )
        self.params = TrainedParameters(pair)
        self.optimizer = None
        self.compiled = None  # the compiled step, from the second step on with compile=
        self.denominator = data.num_data if scales_batches else None
        self.per = "sample"

    def __call__(self, state):
        args, kwargs = state.batch
        if state.kwargs:
            kwargs = {**kwargs, **state.kwargs}
        if self.adversary_step is not None:  # e.g. a GAN discriminator's update, before the ELBO step
            self.adversary_step(*args, **kwargs)
        if self.optimizer is None:
            value = self._first(args, kwargs, state.batch_size)
            state.optimizer = self.optimizer
            return value
        # A user's program: gradients are zeroed, not dropped, as pyro.infer.SVI does, so that a
        # parameter a step leaves unused still takes its optimizer's momentum step as in Pyro.
        self.optimizer.zero_grad(set_to_none=self.scales_batches)
        if self.compiled is not None:
            return self.compiled(args, kwargs)
        return self.eager(args, kwargs)

    @property
    def reports_loss(self) -> bool:
        return self.objective.reports_loss

    @torch.no_grad()
    def validation_loss(self, batches, device=None) -> float:
        """The loss per datum over ``batches``, without gradients, checks or updates."""
        pair = self.pair
        if isinstance(pair, torch.nn.Module):
            pair.eval()
        total, seen = 0.0, 0
        with pyro.validation_enabled(False):
            for batch in batches:
                batch = to_device(as_args(batch), device)
                b = batch_size_of(batch)
                total += self.objective.loss(*call_arguments(batch, self.options.kwargs)) / (self.denominator or b) * b
                seen += b
        if isinstance(pair, torch.nn.Module):
            pair.train()
        return total / max(seen, 1)

    # -- the first step --------------------------------------------------------------------
    def _first(self, args, kwargs, batch_size):
        if kwargs:
            check_keywords(
                self.pair,
                list(kwargs),
                "fit (a dict batch's keys, `kwargs` and callbacks' keywords are keyword arguments)",
            )
        if is_jit(self.elbo):
            _check_jit_arguments(self.pair, args, estimator_name(self.elbo))
        with pyro.validation_enabled(self.options.validate != "never"), self.recorder:
            with self.params.fresh_gradients():
                try:
                    value = self.eager(args, kwargs)
                except Exception as error:
                    self._check(batch_size, failed=error)
                    if _sampled_a_flat_prior(error):
                        raise ValueError(
                            "the first step drew from a flat prior (pyro.distributions.ImproperUniform), which has no "
                            "draws: Pyro's autoguides start from prior draws. Build the autoguide with "
                            "init_loc_fn=ppmodels.infer.initialization.init_to_feasible (or init_to_median, "
                            "init_to_uniform: Pyro's strategies, with flat priors started in the unconstrained space)"
                        ) from error
                    raise
        self._check(batch_size)
        module_params, leaves = self.params.collect(self.recorder)
        if self.options.distributed and leaves:
            raise ValueError(
                "fit(distributed=True) synchronises module parameters only, but this pair declares "
                f"{len(leaves)} with pyro.param; keep them in modules (PyroModule or nn.Parameter)"
            )
        self.optimizer = self._build_optimizer(leaves, module_params)
        if self.options.compile is not None:
            self.compiled = self._compile()
        return value

    def _check(self, batch_size, failed=None):
        """The checks on the first step's sites (see :mod:`ppmodels.infer.training.checks`); for a user's
        program, what its losses are per."""
        rec, data, options = self.recorder, self.data, self.options
        try:
            named = list(self.pair.named_parameters())
            leaf_ids = {id(s.value.unconstrained()) for s in rec.params() if has_leaf(s.value)}
            leaf_ids |= {id(s.value) for s in rec.params() if isinstance(s.value, torch.Tensor)}
            checks.check_estimator(self.elbo, rec, named, leaf_ids)
            if failed is not None:
                return
            if not self.scales_batches and not self.internal:
                n = data.num_data
                if data.sliced and batch_size < n:
                    given = options.batch_size
                    option = f"`batch_size={given}`" if given is not None else "`data` (mini-batches)"
                    scaling = checks.check_batch_scaling(rec, n, batch_size, option)
                    self.denominator = n if scaling.scaled else None
                else:
                    plate = checks.data_plate(rec)
                    self.denominator = plate[1] if plate is not None else n
                    if plate is not None:
                        self.per = f"datum of plate {plate[0]!r} ({plate[1]})"
                if self.shuffle and not self.passes_indices:
                    checks.check_per_datum_params(rec, n)
        except ValueError as error:
            if failed is not None:
                raise error from failed
            raise

    def _build_optimizer(self, extra, module_params):
        # Built after the first step's gradients, so that parameters a classic Pyro guide
        # declares with pyro.param (found in that step's trace) are trained too.
        given = self.options.optimizer
        if isinstance(given, torch.optim.Optimizer):
            built = given
            if extra:
                built.add_param_group({"params": extra})
        else:
            built = make_optimizer(given, module_params + extra, self.options.lr)
        if self.optimizer_state is not None:
            built.load_state_dict(self.optimizer_state)
        return built

    def _compile(self):
        trained, store_params = self.params.for_compiled_step(self.optimizer, self.recorder)
        objective, elbo = self.objective, self.elbo

        def loss_fn(args, kwargs):
            loss = estimator_loss(elbo, objective.model, objective.guide, args, kwargs)
            return loss, loss

        functions = (self.pair.model_fn, self.pair.guide_fn) if hasattr(self.pair, "model_fn") else ()
        settings = tuple(sorted((k, v) for k, v in vars(elbo).items() if isinstance(v, (bool, int, float, str))))
        return CompiledStep(
            self.pair,
            loss_fn,
            trained,
            store_params,
            self.options.compile,
            fallback=objective.loss_and_grads,
            functions=functions,
            extra_key=settings,
        )


def _sampled_a_flat_prior(error) -> bool:
    while error is not None:
        if isinstance(error, NotImplementedError) and "ImproperUniform" in str(error):
            return True
        error = error.__cause__
    return False


def _check_jit_arguments(pair, args, name):
    """Pyro's JIT estimators trace the positional arguments as tensors (and key their compiled
    graphs on the keyword ones): anything else there fails deep in torch's tracer."""
    for i, value in enumerate(args):
        if isinstance(value, torch.Tensor):
            continue
        sig = signature_of(getattr(pair, "model_fn", pair.model))
        names = list(sig.parameters) if sig is not None else []
        label = f"argument {i} ({names[i]!r})" if i < len(names) else f"argument {i}"
        raise ValueError(
            f"elbo={name!r} (Pyro's JIT) takes tensors as positional arguments, but {label} of the model is a "
            f"{type(value).__name__}: pass it by keyword, fit(..., kwargs={{...}}), as SVI.step(*tensors, **others) "
            "would, or use the estimator without 'jit-'"
        )


__all__ = ["TrainingStep"]
