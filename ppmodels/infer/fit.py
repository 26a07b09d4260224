"""The training engine: any model/guide pair, Pyro's ELBO, a torch optimizer, callbacks.

:func:`fit` is a short loop (read it whole below) over a *step* — the loss and gradients
of one batch under Pyro's estimator — and :mod:`callbacks <ppmodels.infer.callbacks>` at a
few hook points. :class:`_Run` prepares what the loop needs: the pair in one form, the
batches as Pyro would pass them, the step, the first-step checks, the optimizer, and the
state a checkpoint restores.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import asdict, dataclass, field

import pyro
import pyro.optim
import torch
from pyro import poutine

from .._validate import (
    check_choice,
    check_device,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
)
from . import checkpoint as ckpt
from . import checks
from . import distributed as dist_
from .callbacks import Callback, Checkpoint, LRScheduler, NaNGuard, Progress, TrainState, Validation
from .compiled import CompiledStep, check_compilable, check_compile_options, estimator_loss
from .data import Batches, FullBatch, as_args, batch_size_of, check_batch_finite, make_batches, to_device
from .elbo import Objective, estimator_name, get_elbo, is_jit
from .pairs import as_pair, check_keywords, declares_data_size, names_keyword, signature_of


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the pair keeps the parameters of the last good step."""

    def __init__(self, message, epoch, step):
        super().__init__(message)
        self.epoch, self.step = epoch, step


@dataclass
class FitResult:
    """What :func:`fit` returns: per-epoch losses (negative ELBO, nats per sample), every
    step's loss, and timings.

    :ivar train_loss: mean training loss of each epoch, per sample (over the steps of that epoch).
    :ivar val_loss: validation loss after each epoch, or ``None`` entries without validation data.
    :ivar epoch_seconds: wall time of each epoch's training steps.
    :ivar losses: every step's loss as the estimator returned it (what ``pyro.infer.SVI.step``
        returns: the batch's negative ELBO as the model scales it).
    :ivar stopped: why training stopped before ``epochs`` (a callback's reason), else ``None``.
    :ivar per: what ``train_loss`` and ``val_loss`` are per: ``"sample"`` (each batch's loss
        over its samples, or the data set's size for a pair that scales its batches) or
        ``"datum of plate 'NAME' (N)"`` (a user's program: the plate its observed sites are
        the data of, as the first step's trace shows it).
    """

    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    epoch_seconds: list = field(default_factory=list)
    num_data: int = 0
    num_steps: int = 0
    estimator: str = "trace"
    losses: list = field(default_factory=list)
    stopped: str | None = None
    per: str = "sample"

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    @property
    def samples_per_second(self) -> float:
        seconds = sum(self.epoch_seconds)
        return self.num_data * self.epochs / seconds if seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["samples_per_second"] = self.samples_per_second
        return out


class _Callbacks(list):
    """The callbacks in order, called hook by hook."""

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(state):
            for cb in self:
                getattr(cb, hook)(state)

        return call


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
    :param callbacks: :class:`~ppmodels.infer.callbacks.Callback` instances, called in order
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
        :mod:`ppmodels.infer.compiled` for what it guards and refuses.
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
    run = _Run(**{k: v for k, v in locals().items()})
    state, cbs = run.state, run.callbacks
    with run.context():
        cbs.on_fit_start(state)
        try:
            for epoch in range(run.start_epoch, epochs if not state.stopping else 0):
                state.epoch = epoch
                run.start_epoch_(state)
                cbs.on_epoch_start(state)
                for i, (batch, indices) in enumerate(run.batches()):
                    run.begin_step(state, i, batch, indices)
                    cbs.on_step_start(state)
                    state.loss = run.step(state)  # loss and gradients (the first step also checks)
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
            run.clear_gradients()  # as after pyro.infer.SVI.step: nothing left for the next step to add to
    return run.finish()


class _Run:
    """Everything :func:`fit` sets up before its loop, and the bookkeeping of each step."""

    def __init__(self, **options):
        o = self.options = options
        if o["distributed"] and not isinstance(o["pair"], torch.nn.Module):
            raise TypeError(
                "fit(distributed=True) needs the pair to be a torch.nn.Module (its parameters are synchronised)"
            )
        self.pair = as_pair(o["pair"], o["model"], o["guide"])
        self.fixed_kwargs = _check_fixed_kwargs(o["kwargs"], o["data"])
        self.epochs = check_positive_int(o["epochs"], "epochs")
        check_choice(o["validate"], "validate", ["first", "always", "never"])
        if not isinstance(o["callbacks"], (list, tuple)) or not all(isinstance(c, Callback) for c in o["callbacks"]):
            got = o["callbacks"]
            got = [type(c).__name__ for c in got] if isinstance(got, (list, tuple)) else type(got).__name__
            raise TypeError(f"`callbacks` must be a list of ppmodels.infer.Callback instances, but got {got}")
        if o["progress"] not in (None, True, False, "log"):
            raise ValueError(f"`progress` must be True, False, None or 'log', but got {o['progress']!r}")
        if o["scheduler"] is not None and not callable(o["scheduler"]):
            raise TypeError(
                f"`scheduler` must be a factory optimizer -> LRScheduler, but got {type(o['scheduler']).__name__}"
            )
        if o["optimizer"] is not None and not (
            isinstance(o["optimizer"], (torch.optim.Optimizer, pyro.optim.PyroOptim)) or callable(o["optimizer"])
        ):
            make_optimizer(o["optimizer"], [], o["lr"])  # raises the TypeError now, before any work
        if o["optimizer"] is None:
            check_positive_float(o["lr"], "lr")
        self.nan_check_every = check_compile_options(o["compile"], o["nan_check_every"])
        if o["compile"] is not None and o["validate"] == "always":
            raise ValueError(
                "validate='always' runs Pyro's argument checks at every step, in Python, which a compiled graph "
                "cannot: use validate='first' (the default: the first, eager step is checked) with compile"
            )
        if o["compile"] is not None and o["distributed"]:
            raise ValueError(
                "fit(distributed=True) runs eager steps: DistributedDataParallel's gradient hooks are not part of a "
                "traced graph; use compile=None with distributed=True"
            )
        self.own = declares_data_size(self.pair)  # ppmodels' convention: the pair scales its batches
        pair, device = self.pair, check_device(o["device"])
        self.rank, self.world = 0, 1
        if o["distributed"]:
            self.rank, self.world, device = dist_.init_distributed(pair, device)
        self.device = device = torch.device(device) if device is not None else None
        if device is not None:
            pair.to(device)
        if o["seed"] is not None:
            pyro.set_rng_seed(check_nonnegative_int(o["seed"], "seed") + self.rank)  # each process its own draws
        data_seed = o["seed"] if o["seed"] is not None else int(torch.empty((), dtype=torch.int64).random_())
        if o["distributed"]:  # every process must shuffle alike: rank 0's seed
            data_seed = dist_.broadcast_int(data_seed, device)
        self.generator = torch.Generator().manual_seed(data_seed)
        self.shuffle = self.own if o["shuffle"] is None else bool(o["shuffle"])
        data = o["data"]
        if self.own and isinstance(data, (torch.Tensor, tuple, dict)):
            data = _match_dtype(as_args(data), pair)  # e.g. float64 data for a float32 pair
        if device is not None and isinstance(data, (torch.Tensor, tuple, dict)) and o["batch_size"] is None:
            data = to_device(as_args(data), device)  # the whole data set moves once
        self.internal_batches = isinstance(data, Batches)  # made by ppmodels itself (the facade)
        self.train = make_batches(
            data, o["batch_size"], shuffle=self.shuffle, generator=self.generator, name="data", full_batch=not self.own
        )
        if o["distributed"]:
            if isinstance(self.train.source, FullBatch):
                raise ValueError("fit(distributed=True) shards mini-batches: give `batch_size`")
            self.train = dist_.shard(self.train, o["batch_size"], self.shuffle, data_seed, self.rank, self.world)
        self.val = None
        if o["val_data"] is not None:
            val_data = o["val_data"]
            if self.own and isinstance(val_data, (torch.Tensor, tuple, dict)):
                val_data = _match_dtype(as_args(val_data), pair)
            o["val_data"] = val_data
            self.val = make_batches(
                o["val_data"], o["batch_size"], shuffle=False, name="val_data", full_batch=not self.own
            )
        n = self.train.num_data
        if self.own:
            pair.set_num_data(n)
        # per-sample losses: an own pair's batch loss estimates the whole data set's; a user's
        # program's denominator is set by the first step (the size of its observed sites' plate)
        self.denominator = n if self.own else None
        self.passes_indices = not self.own and names_keyword(getattr(pair, "model_fn", pair.model), "subsample")
        if self.passes_indices:
            check_keywords(pair, ["subsample"], "fit (the model takes `subsample`, so fit)")
            if not self.train.knows_indices:
                raise ValueError(
                    "the model takes `subsample` (fit passes each batch's indices there), but `data` is a shuffled "
                    "DataLoader whose indices fit cannot know; pass tensors (fit shuffles them with shuffle=True) "
                    "or a DataLoader with shuffle=False"
                )

        nesting = getattr(pair, "max_plate_nesting", None) if isinstance(o["elbo"], (str, tuple)) else None
        if isinstance(o["elbo"], tuple) and isinstance(o["elbo"][-1], dict) and "max_plate_nesting" in o["elbo"][-1]:
            nesting = None  # the options say it
        self.loss = get_elbo(o["elbo"], o["num_particles"], o["vectorize_particles"], max_plate_nesting=nesting)
        self.recorder = checks.SiteRecorder()
        self.objective = Objective(
            self.loss, self.recorder.role(pair.model, "model"), self.recorder.role(pair.guide, "guide")
        )
        self.adversary_step = getattr(pair, "adversary_step", None)
        if o["compile"] is not None:
            check_compilable(self.loss)
        if estimator_name(self.loss) == "tailadaptive":
            steps = _len_or_none(self.train.source)
            if self.train.sliced and (steps is None or steps > 1):
                raise ValueError(
                    "'tailadaptive' does not support data subsampling: train on the whole data set in one batch "
                    f"(batch_size >= {n}, got {o['batch_size']}) or use another estimator"
                )
        self._step = (
            dist_.distributed_step(pair, self.objective, self.adversary_step, device)
            if o["distributed"]
            else self.objective.loss_and_grads
        )
        self.optimizer = None
        self.params = []  # (name, tensor) the optimizer trains, known after the first step
        self.param_names = []  # pyro.param sites among them, by name
        self.result = FitResult(num_data=n, estimator=estimator_name(self.loss))
        self.state = TrainState(pair, self.result, self.epochs, n, trained=lambda: self.params)
        self.start_epoch = 0
        self.resume_state = self._resume(o["resume"]) if o["resume"] is not None else None
        self.callbacks = self._callbacks()
        self.checked_stream = self.train.tensors is not None

    # -- set-up pieces -------------------------------------------------------------------
    def _settings(self) -> dict:
        """What a resumed run must share with the run that wrote the checkpoint."""
        o = self.options
        return {
            "lr": float(o["lr"]) if o["optimizer"] is None else None,
            "batch_size": o["batch_size"],
            "estimator": estimator_name(self.loss),
            "num_particles": getattr(self.loss, "num_particles", None),
            "vectorize_particles": getattr(self.loss, "vectorize_particles", None),
            "shuffle": self.shuffle,
            "num_data": self.train.num_data,
        }

    def _callbacks(self) -> _Callbacks:
        o = self.options
        cbs = [NaNGuard(self.objective.reports_loss, self.nan_check_every)]
        if o["scheduler"] is not None:
            cbs.append(LRScheduler(o["scheduler"]))
        cbs.append(Validation(self._validation_loss if self.val is not None else None))
        cbs += [cb for cb in o["callbacks"] if not cb.after_checkpoint]
        if o["checkpoint"] is not None and self.rank == 0:
            cbs.append(Checkpoint(o["checkpoint"], self.save))
        cbs += [cb for cb in o["callbacks"] if cb.after_checkpoint]
        progress = False if self.rank != 0 else o["progress"]
        mode = {None: "auto", True: "bar", False: "off", "log": "log"}[progress]
        steps = _len_or_none(self.train.source)
        cbs.append(Progress(mode, (self.epochs - self.start_epoch) * steps if steps else None))
        return _Callbacks(cbs)

    @contextlib.contextmanager
    def context(self):
        with contextlib.ExitStack() as stack:
            # Pyro warns on a NaN loss; fit raises NonFiniteLossError with more to act on.
            stack.enter_context(warnings.catch_warnings())
            warnings.filterwarnings("ignore", message="Encountered (NaN|[+-]?inf)", category=UserWarning)
            if is_jit(self.loss):  # Pyro's JIT estimators trace with torch.jit.trace, which torch 2.x deprecates
                warnings.filterwarnings(
                    "ignore", message="`torch.jit.trace` is deprecated", category=DeprecationWarning
                )
            stack.enter_context(pyro.validation_enabled(self.options["validate"] == "always"))
            if self.resume_state is not None:
                self._load_callback_states()
            yield

    # -- the loop's bookkeeping ------------------------------------------------------------
    def batches(self):
        if self.options["distributed"] and hasattr(getattr(self.train.source, "sampler", None), "set_epoch"):
            self.train.source.sampler.set_epoch(self.state.epoch)
        return self.train.indexed()

    def call_arguments(self, batch):
        """A batch as the model's ``(args, kwargs)``, with ``fit(kwargs=...)`` added."""
        args, kwargs = (batch, {}) if isinstance(batch, tuple) else ((), batch)
        if self.fixed_kwargs:
            clash = sorted(set(kwargs) & set(self.fixed_kwargs))
            if clash:
                raise ValueError(
                    f"`kwargs` and the batch both pass the keyword argument(s) {clash}; give each argument once"
                )
            kwargs = {**kwargs, **self.fixed_kwargs}
        return args, kwargs

    def clear_gradients(self):
        """Drop the gradients of everything the optimizer trains (pyro.param sites and networks
        registered with pyro.module included), as ``pyro.infer.SVI.step`` leaves them."""
        tensors = [t for _, t in self.params]
        if self.optimizer is not None:
            tensors += [p for g in self.optimizer.param_groups for p in g["params"]]
        for t in tensors:
            t.grad = None

    def start_epoch_(self, state):
        if isinstance(self.pair, torch.nn.Module):
            self.pair.train()
        self.total, self.seen, self.values = 0.0, 0, []
        self.t0 = time.perf_counter()

    def begin_step(self, state, i, batch, indices):
        if not self.checked_stream:
            check_batch_finite(batch, "data", self.seen)
        batch = to_device(batch, self.device)
        args, kwargs = self.call_arguments(batch)
        if self.passes_indices and indices is not None:
            kwargs = {**kwargs, "subsample": indices.to(self.device) if self.device is not None else indices}
        state.step_in_epoch, state.batch, state.batch_size = i, (args, kwargs), batch_size_of(batch)
        state.kwargs = {}

    def step(self, state):
        args, kwargs = state.batch
        if state.kwargs:
            kwargs = {**kwargs, **state.kwargs}
        if self.adversary_step is not None:  # e.g. a GAN discriminator's update, before the ELBO step
            self.adversary_step(*args, **kwargs)
        if self.optimizer is None:
            return self._first_step(state, args, kwargs)
        # A user's program: gradients are zeroed, not dropped, as pyro.infer.SVI does, so that a
        # parameter a step leaves unused still takes its optimizer's momentum step as in Pyro.
        self.optimizer.zero_grad(set_to_none=self.own)
        return self._step(args, kwargs)

    def end_step(self, state):
        value, b = state.loss, state.batch_size
        self.values.append(value)
        self.total += (value / (self.denominator or b)) * b
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

    def finish(self) -> FitResult:
        self.result.stopped = self.state.stop_reason
        if isinstance(self.pair, torch.nn.Module):
            self.pair.eval()
        return self.result

    # -- the first step --------------------------------------------------------------------
    def _first_step(self, state, args, kwargs):
        """The first step runs under the site recorder; before the optimizer exists (so before
        any update), the recorded sites are checked, and the optimizer is built over the
        module parameters and the pyro.param sites the step met."""
        o = self.options
        if kwargs:
            check_keywords(
                self.pair,
                list(kwargs),
                "fit (a dict batch's keys, `kwargs` and callbacks' keywords are keyword arguments)",
            )
        if is_jit(self.loss):
            _check_jit_arguments(self.pair, args, estimator_name(self.loss))
        for p in _parameters(self.pair):
            p.grad = None
        with pyro.validation_enabled(o["validate"] != "never"), self.recorder:
            try:
                value = self._step(args, kwargs)
            except Exception as error:
                self._check_first_step(state, failed=error)
                raise
        self._check_first_step(state)
        module_params = _parameters(self.pair)
        known = {id(p) for p in module_params}
        leaves = _pyro_param_leaves(self.recorder, known)
        if o["distributed"] and leaves:
            raise ValueError(
                "fit(distributed=True) synchronises module parameters only, but this pair declares "
                f"{len(leaves)} with pyro.param; keep them in modules (PyroModule or nn.Parameter)"
            )
        named = {id(p): n for n, p in self.pair.named_parameters()}
        self.params = [(named.get(id(p), f"param{i}"), p) for i, p in enumerate(module_params)] + leaves
        self.param_names = [n for n, _ in leaves]
        self.optimizer = state.optimizer = self._build_optimizer([p for _, p in leaves], module_params)
        if o["compile"] is not None:
            self._step = self._compiled_step()
        return value

    def _compiled_step(self):
        store = pyro.get_param_store()
        trained = list(self.params)  # and whatever else the optimizer holds (a torch optimizer you built)
        known = {id(t) for _, t in trained}
        extra = [p for g in self.optimizer.param_groups for p in g["params"] if id(p) not in known]
        trained += [(f"optimizer.param{i}", p) for i, p in enumerate(extra)]
        index = {id(t): i for i, (_, t) in enumerate(trained)}
        store_names = {}
        for site in self.recorder.params():
            if site.name in store and id(store[site.name].unconstrained()) in index:
                store_names[site.name] = index[id(store[site.name].unconstrained())]
        objective, elbo = self.objective, self.loss

        def loss_fn(args, kwargs):
            loss = estimator_loss(elbo, objective.model, objective.guide, args, kwargs)
            return loss, loss

        functions = (self.pair.model_fn, self.pair.guide_fn) if hasattr(self.pair, "model_fn") else ()
        settings = tuple(sorted((k, v) for k, v in vars(elbo).items() if isinstance(v, (bool, int, float, str))))
        return CompiledStep(
            self.pair,
            loss_fn,
            trained,
            store_names,
            self.options["compile"],
            fallback=objective.loss_and_grads,
            functions=functions,
            extra_key=settings,
        )

    def _check_first_step(self, state, failed=None):
        rec = self.recorder
        try:
            named = list(self.pair.named_parameters())
            leaf_ids = {id(s.value.unconstrained()) for s in rec.params() if _has_leaf(s.value)}
            leaf_ids |= {id(s.value) for s in rec.params() if isinstance(s.value, torch.Tensor)}
            checks.check_estimator(self.loss, rec, named, leaf_ids)
            if failed is not None:
                return
            if not self.own and not self.internal_batches:
                n, b = self.train.num_data, state.batch_size
                if self.train.sliced and b < n:
                    option = (
                        f"`batch_size={self.options['batch_size']}`"
                        if self.options["batch_size"] is not None
                        else "`data` (mini-batches)"
                    )
                    scaling = checks.check_batch_scaling(rec, n, b, option)
                    self.denominator = n if scaling.scaled else None
                else:
                    plate = checks.data_plate(rec)
                    self.denominator = plate[1] if plate is not None else n
                    if plate is not None:
                        self.result.per = f"datum of plate {plate[0]!r} ({plate[1]})"
                if self.shuffle and not self.passes_indices:
                    checks.check_per_datum_params(rec, n)
        except ValueError as error:
            if failed is not None:
                raise error from failed
            raise

    def _build_optimizer(self, extra, module_params):
        o = self.options
        # Built after the first step's gradients, so that parameters a classic Pyro guide
        # declares with pyro.param (found in that step's trace) are trained too.
        if isinstance(o["optimizer"], torch.optim.Optimizer):
            built = o["optimizer"]
            if extra:
                built.add_param_group({"params": extra})
        else:
            built = make_optimizer(o["optimizer"], module_params + extra, o["lr"])
        if self.resume_state is not None and self.resume_state.get("optimizer") is not None:
            built.load_state_dict(self.resume_state["optimizer"])
        return built

    # -- validation --------------------------------------------------------------------------
    @torch.no_grad()
    def _validation_loss(self):
        pair = self.pair
        if isinstance(pair, torch.nn.Module):
            pair.eval()
        total, seen = 0.0, 0
        with pyro.validation_enabled(False):
            for batch in self.val:
                batch = to_device(as_args(batch), self.device)
                args, kwargs = self.call_arguments(batch)
                b = batch_size_of(batch)
                total += self.objective.loss(args, kwargs) / (self.denominator if self.own else b) * b
                seen += b
        if isinstance(pair, torch.nn.Module):
            pair.train()
        return total / max(seen, 1)

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, path):
        store = pyro.get_param_store()
        fit_state = {
            "result": asdict(self.result),
            "rng": _rng_state(self.generator, self.device),
            "data": self.train.state_dict(),
            "params": {n: store[n].unconstrained().detach().clone() for n in self.param_names if n in store},
            "callbacks": [
                {"type": type(cb).__name__, "state": cb.state_dict()} for cb in self.callbacks if _keeps_state(cb)
            ],
            "settings": self._settings(),
            "seed": self.options["seed"],
            "stopped": self.state.stop_reason,
        }
        self.result.stopped = self.state.stop_reason
        fit_state["result"]["stopped"] = self.state.stop_reason
        ckpt.save(path, self.pair, optimizer=self.optimizer, fit_state=fit_state)

    def _resume(self, path):
        state = ckpt.load_state(path, map_location=self.device or "cpu")
        fit_state = state.get("fit")
        if fit_state is None:
            raise ValueError(f"`resume`: {path} holds no training state (it was not written by fit(checkpoint=...))")
        result = FitResult(**fit_state["result"])
        if result.epochs > self.epochs:
            raise ValueError(
                f"`epochs={self.epochs}` is fewer than the {result.epochs} epochs the checkpoint {path} has already "
                "done; ask for at least as many epochs to resume"
            )
        saved = fit_state.get("settings")
        if saved is not None:
            now = self._settings()
            changed = {k: (saved[k], now.get(k)) for k in saved if k in now and saved[k] != now[k]}
            if fit_state.get("seed") is not None and self.options["seed"] not in (None, fit_state["seed"]):
                changed["seed"] = (fit_state["seed"], self.options["seed"])
            if changed:
                listed = ", ".join(f"{k}: {a!r} in the checkpoint, {b!r} now" for k, (a, b) in changed.items())
                raise ValueError(
                    f"`resume`: continuing {path} with other settings would not continue the same run ({listed}); "
                    "resume with the checkpoint's settings, or start a new run without `resume`"
                )
        self._declare(path)
        ckpt.restore_module(self.pair, state)
        self._restore_params(fit_state.get("params") or {}, path)
        self.result = self.state.result = result
        self.state.step = result.num_steps
        self.state.stop_reason = fit_state.get("stopped")
        self.start_epoch = result.epochs
        _set_rng_state(fit_state.get("rng") or {}, self.generator, self.device)
        self.train.load_state_dict(fit_state.get("data"))
        return state

    def _declare(self, path):
        """Run the guide and the model once on the first batch, without gradients, so that
        parameters created on first use (autoguides, pyro.param) exist before the checkpoint's
        values are loaded into them. The random state is restored from the checkpoint after."""
        if self.train.num_data == 0:
            return
        batch, indices = next(iter(self.train.indexed()))
        batch = to_device(batch, self.device)
        args, kwargs = self.call_arguments(batch)
        if self.passes_indices and indices is not None:
            kwargs = {**kwargs, "subsample": indices}
        try:
            with torch.no_grad(), pyro.validation_enabled(False), poutine.block():
                guide_trace = poutine.trace(self.pair.guide).get_trace(*args, **kwargs)
                poutine.replay(self.pair.model, trace=guide_trace)(*args, **kwargs)
        except Exception as error:
            raise ValueError(
                f"`resume`: running the guide and model once on the first batch (to create the parameters the "
                f"checkpoint {path} restores) failed: {type(error).__name__}: {error}"
            ) from error

    def _restore_params(self, saved, path):
        store = pyro.get_param_store()
        for name, value in saved.items():
            if name not in store:
                raise ValueError(
                    f"`resume`: the checkpoint {path} holds the parameter {name!r}, which the guide and model no "
                    "longer declare with pyro.param"
                )
            leaf = store[name].unconstrained()
            if leaf.shape != value.shape:
                raise ValueError(
                    f"`resume`: the parameter {name!r} has shape {tuple(leaf.shape)}, but the checkpoint {path} "
                    f"holds shape {tuple(value.shape)}"
                )
            with torch.no_grad():
                leaf.copy_(value)
        self.param_names = list(saved)

    def _load_callback_states(self):
        saved = (self.resume_state.get("fit") or {}).get("callbacks") or []
        keeping = [cb for cb in self.callbacks if _keeps_state(cb)]
        for cb, entry in zip(keeping, saved):
            if entry["type"] == type(cb).__name__:
                cb.load_state_dict(entry["state"])


def _check_fixed_kwargs(kwargs, data):
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise TypeError(
            "`kwargs` must be a dict of keyword arguments for the model and guide (names to values), but got "
            f"{type(kwargs).__name__}"
        )
    if "subsample" in kwargs:
        raise ValueError("`kwargs` may not hold 'subsample': fit passes each batch's indices there itself")
    if isinstance(data, dict):
        clash = sorted(set(data) & set(kwargs))
        if clash:
            raise ValueError(f"`data` (a dict of keyword arguments) and `kwargs` both give {clash}; give each once")
    return dict(kwargs)


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


def _match_dtype(batch, pair):
    """Floating-point data in another precision than the pair's parameters, converted to it
    (ppmodels' own pairs, whose networks take their parameters' dtype); integers (labels) stay."""
    dtype = next((p.dtype for p in pair.parameters() if p.is_floating_point()), None)
    if dtype is None:
        return batch

    def convert(t):
        return t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != dtype else t

    if isinstance(batch, dict):
        return {k: convert(v) for k, v in batch.items()}
    return tuple(convert(t) for t in batch)


def _keeps_state(cb) -> bool:
    return type(cb).state_dict is not Callback.state_dict and not cb.after_checkpoint


def _has_leaf(value) -> bool:
    return isinstance(value, torch.Tensor) and callable(getattr(value, "unconstrained", None))


def _parameters(pair):
    """What the ELBO's optimizer trains: ``pair.elbo_parameters()`` when the pair defines it
    (e.g. a VAE-GAN leaves its discriminator to its own update), else all module parameters."""
    if callable(getattr(pair, "elbo_parameters", None)):
        return list(pair.elbo_parameters())
    return list(pair.parameters()) if isinstance(pair, torch.nn.Module) else []


def make_optimizer(optimizer, params, lr):
    """A torch optimizer over ``params`` from ``None`` (Adam), an optimizer class or factory,
    a ``pyro.optim`` optimizer, or an already built ``torch.optim.Optimizer``."""
    if optimizer is None:
        return _adam(params, check_positive_float(lr, "lr"))
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if isinstance(optimizer, pyro.optim.PyroOptim):
        args = optimizer.pt_optim_args
        if callable(args):
            raise TypeError(
                "a pyro.optim optimizer with per-parameter (callable) arguments is not supported by fit; "
                "pass a dict of arguments or a torch optimizer"
            )
        return optimizer.pt_optim_constructor(params, **dict(args))
    if callable(optimizer):
        built = optimizer(params)
        if not isinstance(built, torch.optim.Optimizer):
            raise TypeError(
                f"`optimizer` called on the parameters must return a torch.optim.Optimizer, "
                f"but returned {type(built).__name__}"
            )
        return built
    raise TypeError(
        "`optimizer` must be None (Adam), a torch.optim.Optimizer, an optimizer class or factory "
        f"taking the parameters, or a pyro.optim optimizer, but got {type(optimizer).__name__}"
    )


def _adam(params, lr):
    """Adam, with torch's fused kernel where this torch and device have it: one pass over the
    parameters and the moments instead of one per tensor and operation (the same update; a
    third of the time on the seed VAE's 1.6M parameters here), else torch's default."""
    params = list(params)
    return torch.optim.Adam(params, lr=lr, fused=True if _can_fuse(params) else None)


def prefer_fused_adam(optimizer) -> bool:
    """Give a torch ``Adam``/``AdamW`` that left its kernel to torch (``fused=None`` and
    ``foreach=None``, the defaults) torch's fused kernel, as :func:`_adam` does, when it has
    taken no step yet and its parameters can use it: the same update, one pass over memory.
    An explicit ``fused=False`` or ``foreach=...`` is kept. Returns whether it switched."""
    if type(optimizer) not in (torch.optim.Adam, torch.optim.AdamW) or optimizer.state:
        return False
    groups = optimizer.param_groups
    if any(g.get("fused") is not None or g.get("foreach") is not None for g in groups):
        return False
    if any(g.get("differentiable") or g.get("capturable") for g in groups):
        return False
    if not _can_fuse([p for g in groups for p in g["params"]]):
        return False
    for g in groups:
        g["fused"] = True
    optimizer.defaults["fused"] = True
    optimizer._step_supports_amp_scaling = True  # what the constructor sets for fused=True
    return True


def _can_fuse(params) -> bool:
    """Whether torch's fused Adam takes these parameters: floating point, on one CPU or CUDA
    device that this torch build has the fused kernel for (CPU from torch 2.4)."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        supported = set(_get_fused_kernels_supported_devices()) & {"cpu", "cuda"}
    except ImportError:  # a torch without the query: keep its default kernel
        return False
    devices = {p.device.type for p in params}
    return bool(params) and len(devices) == 1 and devices <= supported and all(p.is_floating_point() for p in params)


def _pyro_param_leaves(recorder, known):
    """``(name, tensor)`` of the parameters a pair declares with ``pyro.param`` (a classic
    Pyro guide, an autoguide in Pyro's global store), found in the first step; module
    parameters (``known``) are skipped."""
    seen, leaves = set(known), []
    store = pyro.get_param_store()
    for site in recorder.params():
        value = store[site.name] if site.name in store else site.value  # the tensor now behind the name
        leaf = value.unconstrained() if _has_leaf(value) else value
        if isinstance(leaf, torch.Tensor) and leaf.requires_grad and leaf.is_leaf and id(leaf) not in seen:
            seen.add(id(leaf))
            leaves.append((site.name, leaf))
    return leaves


def _rng_state(generator, device):
    import random

    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "pyro": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "cuda": torch.cuda.get_rng_state_all() if device is not None and device.type == "cuda" else None,
        "generator": generator.get_state() if generator is not None else None,
    }


def _set_rng_state(rng, generator, device):
    import random

    import numpy as np

    if rng.get("pyro") is not None:
        torch.set_rng_state(rng["pyro"])
    if rng.get("python") is not None:
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))
    if rng.get("numpy") is not None:
        kind, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if rng.get("cuda") is not None and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state_all(rng["cuda"])
    if rng.get("generator") is not None and generator is not None:
        generator.set_state(rng["generator"])


def _len_or_none(source):
    try:
        return len(source)
    except TypeError:
        return None


__all__ = ["FitResult", "NonFiniteLossError", "fit", "make_optimizer"]
