"""The training loop: any model/guide pair, Pyro's ELBO, a torch optimizer, callbacks.

:func:`fit` is a short loop (read it whole below) over a *step* — the loss and gradients
of one batch under Pyro's estimator — and :mod:`callbacks <ppmodels.infer.training.callbacks>`
at a few hook points. The units it is made of, each the one owner of its part:

- :mod:`~ppmodels.infer.training.options`: fit's keywords as one frozen, checked value;
- :mod:`~ppmodels.infer.training.data`: the batches as Pyro would pass them, and a batch's
  ``(args, kwargs)``;
- :mod:`~ppmodels.infer.training.step`: the training step (the objective, the first step's
  checks, the optimizer, eager or compiled);
- :mod:`~ppmodels.infer.training.params`: what is trained (module parameters and
  ``pyro.param`` values), the only reader of Pyro's parameter store;
- :mod:`~ppmodels.infer.training.checkpoints`: saving and resuming a run;
- :class:`_Run` here: the set-up that joins them (device, seeds, data) and the bookkeeping of
  each step and epoch (losses per datum, timings).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import asdict

import pyro
import torch

from ..program.pairs import as_pair, check_keywords, declares_data_size, names_keyword
from ..threads import one_thread_if_small
from . import checkpoints as ckpt
from . import distributed as dist_
from .callbacks import CallbackList, TrainState
from .data import (
    FullBatch,
    batch_size_of,
    call_arguments,
    check_batch_finite,
    fit_batches,
    num_batches,
    to_device,
)
from .engine_callbacks import Checkpoint, LRScheduler, NaNGuard, Progress, Validation
from .estimators import estimator_name
from .options import FitOptions
from .result import FitResult
from .step import TrainingStep


def fit(
    pair=None,
    data=None,
    *,
    kwargs: dict | None = None,
    model=None,
    guide=None,
    epochs: int = 10,
    batch_size: int | None = None,
    elbo="trace",
    num_particles: int | None = None,
    vectorize_particles: bool | None = None,
    optimizer=None,
    lr: float = 1e-3,
    val_data=None,
    seed: int | None = None,
    device=None,
    progress=None,
    checkpoint=None,
    resume=None,
    shuffle: bool | None = None,
    validate: str = "first",
    scheduler=None,
    callbacks=(),
    distributed: bool = False,
    compile: str | None = None,
    nan_check_every: int = 1,
) -> FitResult:
    """Train a model/guide pair with one of Pyro's ELBOs and a torch optimizer.

    :param pair: anything with ``.model`` and ``.guide`` (a ppmodels pair, your own
        ``nn.Module``/``PyroModule``, a ``SimpleNamespace``), or a ``(model, guide)`` tuple
        of callables; or give ``model=`` and ``guide=``. Module parameters are trained, and
        so are the ``pyro.param`` sites met in the first step. A pair may define
        ``elbo_parameters()`` to restrict what the optimizer trains, and
        ``adversary_step(*batch)``, run before every ELBO step (a GAN discriminator's update,
        as :class:`ppmodels.models.VAEGAN` does).
    :param data: what the model takes: a tensor (one argument), a tuple (the positional
        arguments), a dict (keyword arguments), ``None`` (none); or a ``Dataset``, a
        ``DataLoader`` or a re-iterable of batches (each a tuple or a dict). How it is
        passed depends on the pair:

        - a pair that declares its data-set size (``num_data``/``set_num_data``: ppmodels'
          own pairs) gets shuffled mini-batches of ``batch_size`` (default 128), its
          ``num_data`` set to the data set's size so that it scales them;
        - any other pair (your Pyro program) gets the whole data set, in its order, at every
          step (one step per epoch), as ``pyro.infer.SVI.step(*data)`` would. Mini-batches
          only when asked for (``batch_size=``, a ``DataLoader`` or a list of batches); then
          the first step must show that the model scales them (every observed site in a plate
          of the data set's full size subsampled to the batch), and a model whose signature
          names ``subsample`` gets each batch's indices into the data set as
          ``subsample=...`` (for ``pyro.plate(name, size=N, subsample=subsample)``).

        In a tuple or dict, tensors with a first dimension are the data (sliced into
        mini-batches); flags, numbers, ``None``, 0-d tensors and lists reach the model
        unchanged at every step.
    :param dict kwargs: keyword arguments for the model and guide at every step, unchanged,
        beside the positional ones in ``data``: ``fit(pair, (x, lengths), kwargs={"args":
        args, "batch_size": 8})`` is ``SVI.step(x, lengths, args=args, batch_size=8)``. With
        Pyro's JIT estimators (``jit-*``) this is where non-tensor arguments go, as Pyro asks.
    :param int epochs: total number of epochs (with ``resume``, counting those already done).
    :param int batch_size: mini-batch size for tensors and datasets (see ``data``).
    :param elbo: an estimator name (see :data:`ppmodels.infer.ELBO_NAMES`), a name with its
        options as ``(name, {option: value})`` (e.g. ``("enum", {"max_plate_nesting": 2})``;
        see :func:`ppmodels.infer.get_elbo`), or a ``pyro.infer.ELBO`` instance.
    :param optimizer: ``None`` (Adam with ``lr``), a ``torch.optim.Optimizer``, an optimizer
        class or factory ``params -> Optimizer``, or a ``pyro.optim`` optimizer.
    :param val_data: data for the validation loss after each epoch (passed like ``data``).
    :param int seed: seeds Pyro, torch and the shuffling.
    :param device: move the pair and every batch there (e.g. ``"cuda"``).
    :param progress: ``True`` (a bar), ``False``, ``None`` (a bar only on a terminal), or
        ``"log"`` (a plain line per epoch on stderr, for log files).
    :param checkpoint: a path; a checkpoint is written there (atomically) after every epoch:
        the pair's modules, its ``pyro.param`` values, the optimizer, the random states, the
        callbacks' states.
    :param resume: a checkpoint path written by ``checkpoint=``; training continues from it,
        exactly as if it had not stopped. Settings that would change the run (learning rate,
        batch size, estimator, ...) must be the same, and ``epochs`` at least those done.
    :param shuffle: reshuffle the data every epoch (default: ``True`` for pairs that declare
        their data-set size, ``False`` otherwise).
    :param scheduler: a factory ``optimizer -> torch.optim.lr_scheduler.LRScheduler``; the
        scheduler steps once per epoch (e.g. ``lambda opt: ExponentialLR(opt, 0.99)``).
    :param callbacks: :class:`~ppmodels.infer.training.callbacks.Callback` instances, called in order
        after fit's own (NaN guard, scheduler, validation) and before its checkpoint and
        progress display (those with ``after_checkpoint = True`` after the checkpoint).
    :param str validate: ``"first"`` checks the model's shapes and distribution arguments
        on the first step only (the fast default), ``"always"`` on every step, ``"never"``.
    :param bool distributed: train with ``torch.nn.parallel.DistributedDataParallel`` across
        the processes ``torchrun`` starts (gloo on CPU, NCCL on GPUs; the process group is
        initialised from torchrun's environment unless it already is). Each process takes
        its share of every global batch of ``batch_size x world_size`` samples (tensors are
        sliced, datasets go through a ``DistributedSampler``); the likelihood is still scaled
        by the full data set's size, and the gradients are averaged, so the steps are those
        of one process with the global batch. Rank 0 alone writes checkpoints and shows the
        progress bar; the reported losses are those of the global batches.
    :param str compile: ``None`` (eager Pyro, the default), ``"graph"`` or ``"inductor"``: after
        the first (eager, checked) step, each step runs one ELBO step traced into an FX graph
        with every trained tensor as an input, as is (``"graph"``: seconds to trace) or compiled
        by ``torch.compile`` (``"inductor"``: a minute or more the first time); see
        :mod:`ppmodels.infer.training.compiled_step` for what it guards and refuses.
    :param int nan_check_every: check the loss for NaN every this many steps (default every
        step). Each check reads the loss back from the device, which a GPU waits for; with N > 1
        the parameters and optimizer state are kept at each good check, and a NaN found later
        restores them before :class:`NonFiniteLossError` is raised.
    :returns: :class:`FitResult` with per-epoch losses in nats per sample (``FitResult.per``
        says per what). When ``fit`` returns (or raises), no trained tensor holds a gradient.
    :raises NonFiniteLossError: the loss became NaN or infinite (epoch and step named).
    :raises ValueError: before any update, when the first step shows the run would be
        silently wrong (unscaled mini-batches of a model with global latents, per-datum
        parameters under shuffling, an estimator's precondition); the message names the
        site, plate or parameter and the fix.

    Example::

        >>> import torch
        >>> from ppmodels.infer import fit
        >>> from ppmodels.models import VAE
        >>> from ppmodels.nn import MLPEncoder, MLPDecoder
        >>> vae = VAE(MLPEncoder((4,), 2), MLPDecoder(2, (4,)), latent_dim=2)
        >>> result = fit(vae, torch.rand(64, 4), epochs=2, batch_size=32, seed=0)
        >>> len(result.train_loss)
        2
    """
    options = FitOptions.for_fit(
        pair, data, **{k: v for k, v in locals().items() if k not in ("pair", "data", "model", "guide")}
    )
    run = _Run(as_pair(pair, model, guide), data, options)
    state, cbs, step = run.state, run.callbacks, run.step
    with run.context():
        cbs.on_fit_start(state)
        try:
            for epoch in range(run.first_epoch, epochs if not state.stopping else 0):
                state.epoch = epoch
                run.begin_epoch(state)
                cbs.on_epoch_start(state)
                for i, (batch, indices) in enumerate(run.batches()):
                    run.begin_step(state, i, batch, indices)
                    cbs.on_step_start(state)
                    state.loss = step(state)  # loss and gradients (the first step also checks)
                    cbs.on_gradients(state)  # the NaN guard: stop before a bad update
                    state.optimizer.step()
                    cbs.on_step_end(state)
                    run.end_step(state)
                    if state.stopping:
                        break
                run.end_epoch(state)
                cbs.on_epoch_end(state)
                if state.stopping:
                    break
        except BaseException as error:
            state.error = error
            raise
        finally:
            cbs.on_fit_end(state)
            # as after pyro.infer.SVI.step: nothing left for the next step to add to
            step.params.clear_gradients(step.optimizer)
    return run.finish()


class _Run:
    """What joins fit's units: the device, the seeds, the data, the step, the callbacks and a
    resumed checkpoint; and the bookkeeping of each step and epoch."""

    def __init__(self, pair, data, options: FitOptions):
        o = self.options = options
        self.pair = pair
        self.scales_batches = scales_batches = declares_data_size(
            pair
        )  # ppmodels' convention: the pair scales its batches
        self.rank, self.world, device = 0, 1, o.device
        if o.distributed:
            self.rank, self.world, device = dist_.init_distributed(pair, device)
        self.device = device = torch.device(device) if device is not None else None
        if device is not None:
            pair.to(device)
        if o.seed is not None:
            pyro.set_rng_seed(o.seed + self.rank)  # each process its own draws
        data_seed = o.seed if o.seed is not None else int(torch.empty((), dtype=torch.int64).random_())
        if o.distributed:  # every process must shuffle alike: rank 0's seed
            data_seed = dist_.broadcast_int(data_seed, device)
        self.generator = torch.Generator().manual_seed(data_seed)
        self.shuffle = scales_batches if o.shuffle is None else bool(o.shuffle)
        self.train, self.val, internal = fit_batches(
            data, o, pair if scales_batches else None, shuffle=self.shuffle, generator=self.generator, device=device
        )
        if o.distributed:
            if isinstance(self.train.source, FullBatch):
                raise ValueError("fit(distributed=True) shards mini-batches: give `batch_size`")
            self.train = dist_.shard(self.train, o.batch_size, self.shuffle, data_seed, self.rank, self.world)
        n = self.train.num_data
        if scales_batches:
            pair.set_num_data(n)
        self.passes_indices = not scales_batches and names_keyword(getattr(pair, "model_fn", pair.model), "subsample")
        if self.passes_indices:
            check_keywords(pair, ["subsample"], "fit (the model takes `subsample`, so fit)")
            if not self.train.knows_indices:
                raise ValueError(
                    "the model takes `subsample` (fit passes each batch's indices there), but `data` is a shuffled "
                    "DataLoader whose indices fit cannot know; pass tensors (fit shuffles them with shuffle=True) "
                    "or a DataLoader with shuffle=False"
                )
        self.step = TrainingStep(
            pair,
            o,
            self.train,
            scales_batches=scales_batches,
            internal=internal,
            shuffle=self.shuffle,
            passes_indices=self.passes_indices,
            device=device,
        )
        self.result = FitResult(num_data=n, estimator=estimator_name(self.step.elbo))
        self.state = TrainState(pair, self.result, o.epochs, n, trained=lambda: self.step.params.named)
        self.first_epoch = 0
        self.resumed = self._resume(o.resume) if o.resume is not None else None
        self.callbacks = self._callbacks()
        self.checked_stream = self.train.tensors is not None

    def settings(self) -> dict:
        """What a resumed run must share with the run that wrote the checkpoint."""
        o, elbo = self.options, self.step.elbo
        return {
            "lr": float(o.lr) if o.optimizer is None else None,
            "batch_size": o.batch_size,
            "estimator": estimator_name(elbo),
            "num_particles": getattr(elbo, "num_particles", None),
            "vectorize_particles": getattr(elbo, "vectorize_particles", None),
            "shuffle": self.shuffle,
            "num_data": self.train.num_data,
        }

    def _callbacks(self) -> CallbackList:
        o = self.options
        cbs = [NaNGuard(self.step.reports_loss, o.nan_check_every)]
        if o.scheduler is not None:
            cbs.append(LRScheduler(o.scheduler))
        validate = (lambda: self.step.validation_loss(self.val, self.device)) if self.val is not None else None
        cbs.append(Validation(validate))
        cbs += [cb for cb in o.callbacks if not cb.after_checkpoint]
        if o.checkpoint is not None and self.rank == 0:
            cbs.append(Checkpoint(o.checkpoint, self.save))
        cbs += [cb for cb in o.callbacks if cb.after_checkpoint]
        mode = {None: "auto", True: "bar", False: "off", "log": "log"}[False if self.rank != 0 else o.progress]
        steps = num_batches(self.train.source)
        cbs.append(Progress(mode, (o.epochs - self.first_epoch) * steps if steps else None))
        return CallbackList(cbs)

    @contextlib.contextmanager
    def context(self):
        with warnings.catch_warnings():
            # Pyro warns on a NaN loss; fit raises NonFiniteLossError with more to act on.
            warnings.filterwarnings("ignore", message="Encountered (NaN|[+-]?inf)", category=UserWarning)
            with (
                pyro.validation_enabled(self.options.validate == "always"),
                one_thread_if_small(self.step_sizes(), self.device),
            ):
                if self.resumed is not None:
                    self.callbacks.load_state_dicts((self.resumed.get("fit") or {}).get("callbacks") or [])
                yield

    def step_sizes(self) -> list | None:
        """The elements of each tensor a step reads: the pair's parameters and one batch of
        each data tensor (``None`` when the batches are streamed and their sizes unknown)."""
        tensors = self.train.tensors
        if tensors is None:
            return None
        rows = getattr(self.train.source, "batch_size", None)
        sizes = [p.numel() for p in self.pair.parameters()] if isinstance(self.pair, torch.nn.Module) else []
        for t in tensors:
            n = t.shape[0] if t.dim() else 1
            sizes.append(t.numel() if rows is None or n == 0 else min(rows, n) * (t.numel() // n))
        return sizes

    # -- the loop's bookkeeping ------------------------------------------------------------
    def batches(self):
        if self.options.distributed and hasattr(getattr(self.train.source, "sampler", None), "set_epoch"):
            self.train.source.sampler.set_epoch(self.state.epoch)
        return self.train.indexed()

    def begin_epoch(self, state):
        if isinstance(self.pair, torch.nn.Module):
            self.pair.train()
        self.total, self.seen, self.values = 0.0, 0, []
        self.t0 = time.perf_counter()

    def begin_step(self, state, i, batch, indices):
        if not self.checked_stream:
            check_batch_finite(batch, "data", self.seen)
        batch = to_device(batch, self.device)
        state.step_in_epoch, state.batch, state.batch_size = i, self._call(batch, indices), batch_size_of(batch)
        state.kwargs = {}

    def _call(self, batch, indices):
        """A batch (on the device) as the model's ``(args, kwargs)``: ``fit(kwargs=...)`` added,
        and the batch's indices as ``subsample=`` for a model that takes them."""
        args, kwargs = call_arguments(batch, self.options.kwargs)
        if self.passes_indices and indices is not None:
            kwargs = {**kwargs, "subsample": indices.to(self.device) if self.device is not None else indices}
        return args, kwargs

    def end_step(self, state):
        value, b = state.loss, state.batch_size
        self.values.append(value)
        self.total += (value / (self.step.denominator or b)) * b
        self.seen += b
        self.result.num_steps += 1
        state.step += 1

    def end_epoch(self, state):
        elapsed = time.perf_counter() - self.t0
        self.checked_stream = True
        if self.values and all(isinstance(v, torch.Tensor) for v in self.values):  # one read-back per epoch
            self.result.losses += torch.stack([v.detach().double() for v in self.values]).tolist()
        else:
            self.result.losses += [float(v) for v in self.values]
        self.result.train_loss.append(float(self.total) / max(self.seen, 1))
        self.result.epoch_seconds.append(elapsed)
        self.result.per = self.step.per

    def finish(self) -> FitResult:
        self.result.stopped = self.state.stop_reason
        if isinstance(self.pair, torch.nn.Module):
            self.pair.eval()
        return self.result

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, path):
        self.result.stopped = self.state.stop_reason
        ckpt.save_training(
            path,
            self.pair,
            self.step.optimizer,
            generator=self.generator,
            device=self.device,
            result=asdict(self.result),
            data=self.train.state_dict(),
            params=self.step.params.state_dict(),
            callbacks=self.callbacks.state_dicts(),
            settings=self.settings(),
            seed=self.options.seed,
            stopped=self.state.stop_reason,
        )

    def _resume(self, path):
        o = self.options
        state = ckpt.load_training(path, device=self.device, epochs=o.epochs, settings=self.settings(), seed=o.seed)
        fit_state = state["fit"]
        if self.train.num_data > 0:  # create the parameters first used in a step, to load their values
            batch, indices = next(iter(self.train.indexed()))
            self.step.params.declare(*self._call(to_device(batch, self.device), indices), path)
        ckpt.restore_module(self.pair, state)
        self.step.params.load_state_dict(fit_state.get("params") or {}, path)
        self.step.optimizer_state = state.get("optimizer")
        self.result = self.state.result = FitResult(**fit_state["result"])
        self.state.step = self.result.num_steps
        self.state.stop_reason = fit_state.get("stopped")
        self.first_epoch = self.result.epochs
        ckpt.set_random_state(fit_state.get("rng") or {}, self.generator, self.device)
        self.train.load_state_dict(fit_state.get("data"))
        return state


__all__ = ["fit"]
