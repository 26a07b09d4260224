"""The training engine: any model/guide pair, Pyro's ELBO, a torch optimizer."""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field

import pyro
import pyro.optim
import torch
from pyro import poutine
from tqdm.auto import tqdm

from .._validate import check_choice, check_nonnegative_int, check_positive_float, check_positive_int
from . import checkpoint as ckpt
from .data import DEFAULT_BATCH_SIZE, Batches, as_args, batch_size_of, check_batch_finite, make_batches, to_device
from .elbo import Objective, estimator_name, get_elbo, is_jit


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the pair keeps the parameters of the last good step."""

    def __init__(self, message, epoch, step):
        super().__init__(message)
        self.epoch, self.step = epoch, step


@dataclass
class FitResult:
    """What :func:`fit` returns: per-epoch losses (negative ELBO, nats per sample) and timings.

    :ivar train_loss: mean training loss of each epoch (over the steps of that epoch).
    :ivar val_loss: validation loss after each epoch, or ``None`` entries without validation data.
    :ivar epoch_seconds: wall time of each epoch's training steps.
    """

    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    epoch_seconds: list = field(default_factory=list)
    num_data: int = 0
    num_steps: int = 0
    estimator: str = "trace"

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


def _check_pair(pair):
    for role in ("model", "guide"):
        if not callable(getattr(pair, role, None)):
            raise TypeError(
                f"`pair` must have callable .model and .guide methods (a model/guide pair), "
                f"but {type(pair).__name__} has no callable .{role}"
            )


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
        return torch.optim.Adam(params, lr=check_positive_float(lr, "lr"))
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


def _pyro_param_leaves(trace, known):
    """Parameters a pair declares with ``pyro.param`` (a classic Pyro guide), found in the
    first step's trace; module parameters (``known``) are skipped."""
    seen, leaves = set(known), []
    for site in trace.nodes.values():
        if site["type"] != "param" or site["name"] == "_ppmodels_trainable":
            continue
        value = site["value"]
        leaf = value.unconstrained() if hasattr(value, "unconstrained") else value
        if isinstance(leaf, torch.Tensor) and leaf.requires_grad and leaf.is_leaf and id(leaf) not in seen:
            seen.add(id(leaf))
            leaves.append(leaf)
    return leaves


def _rng_state(generator):
    return {"pyro": pyro.util.get_rng_state()["torch"], "generator": generator.get_state() if generator else None}


def fit(
    pair,
    data,
    *,
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
    shuffle: bool = True,
    validate: str = "first",
    scheduler=None,
    distributed: bool = False,
) -> FitResult:
    """Train a model/guide pair with one of Pyro's ELBOs and a torch optimizer.

    :param pair: anything with ``.model(*batch)`` and ``.guide(*batch)``; a
        ``torch.nn.Module`` whose parameters are trained (``pyro.param`` sites met in the
        first step are trained too). A pair may define ``elbo_parameters()`` to restrict what
        the optimizer trains, and ``adversary_step(*batch)``, run before every ELBO step (a
        GAN discriminator's update, as :class:`ppmodels.models.VAEGAN` does). If the pair has
        ``num_data`` (as ppmodels pairs do), it is set to the number of training samples so
        that mini-batches are scaled to the whole data set.
    :param data: a tensor, a tuple of tensors, a ``Dataset``, a ``DataLoader`` or a
        re-iterable of batches; a batch is a tuple (positional arguments) or a dict (keyword
        arguments).
    :param int epochs: total number of epochs (with ``resume``, counting those already done).
    :param int batch_size: for tensors and datasets (default 128).
    :param elbo: an estimator name (see :data:`ppmodels.infer.ELBO_NAMES`) or a
        ``pyro.infer.ELBO`` instance.
    :param optimizer: ``None`` (Adam with ``lr``), a ``torch.optim.Optimizer``, an optimizer
        class or factory ``params -> Optimizer``, or a ``pyro.optim`` optimizer.
    :param val_data: data for the validation loss after each epoch.
    :param int seed: seeds Pyro, torch and the shuffling.
    :param device: move the pair and every batch there (e.g. ``"cuda"``).
    :param progress: show a progress bar: ``True``, ``False``, or ``None`` (only on a terminal).
    :param checkpoint: a path; a checkpoint is written there (atomically) after every epoch.
    :param resume: a checkpoint path written by ``checkpoint=``; training continues from it.
    :param scheduler: a factory ``optimizer -> torch.optim.lr_scheduler.LRScheduler``; the
        scheduler steps once per epoch (e.g. ``lambda opt: ExponentialLR(opt, 0.99)``).
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
    :returns: :class:`FitResult` with per-epoch losses in nats per sample.
    :raises NonFiniteLossError: the loss became NaN or infinite (epoch and step named).

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
    _check_pair(pair)
    epochs = check_positive_int(epochs, "epochs")
    check_choice(validate, "validate", ["first", "always", "never"])
    rank, world = 0, 1
    if distributed:
        rank, world, device = _init_distributed(pair, device)
    device = torch.device(device) if device is not None else None
    if device is not None and isinstance(pair, torch.nn.Module):
        pair.to(device)
    if seed is not None:
        pyro.set_rng_seed(check_nonnegative_int(seed, "seed") + rank)  # each process its own draws
    data_seed = seed if seed is not None else int(torch.empty((), dtype=torch.int64).random_())
    if distributed:  # every process must shuffle alike: rank 0's seed
        data_seed = _broadcast_int(data_seed, device)
    generator = torch.Generator()
    generator.manual_seed(data_seed)
    train = make_batches(data, batch_size, shuffle=shuffle, generator=generator, name="data")
    if distributed:
        train = _shard(train, batch_size, shuffle, data_seed, rank, world)
        progress = False if rank != 0 else progress
    val = make_batches(val_data, batch_size, shuffle=False, name="val_data") if val_data is not None else None
    if hasattr(pair, "set_num_data"):
        pair.set_num_data(train.num_data)
    elif hasattr(pair, "num_data"):
        pair.num_data = train.num_data
    per_sample_denominator = train.num_data if getattr(pair, "num_data", None) else None

    loss = get_elbo(elbo, num_particles, vectorize_particles)
    objective = Objective(loss, pair.model, pair.guide)
    if not (
        optimizer is None or isinstance(optimizer, (torch.optim.Optimizer, pyro.optim.PyroOptim)) or callable(optimizer)
    ):
        make_optimizer(optimizer, [], lr)  # raises the TypeError now, before any work
    module_params = _parameters(pair)
    adversary_step = getattr(pair, "adversary_step", None)
    _check_estimator_preconditions(loss, module_params, train, batch_size, pair)
    step_loss = objective.loss_and_grads
    if distributed:
        step_loss = _distributed_step(pair, objective, adversary_step, device)
    resume_state = None
    result = FitResult(num_data=train.num_data, estimator=estimator_name(loss))
    start_epoch = 0
    if resume is not None:
        resume_state = ckpt.load_state(resume, map_location=device or "cpu")
        if resume_state.get("fit") is None:
            raise ValueError(f"`resume`: {resume} holds no training state (it was not written by fit(checkpoint=...))")
        ckpt.restore_module(pair, resume_state)
        fit_state = resume_state["fit"]
        result = FitResult(**fit_state["result"])
        start_epoch = result.epochs
        rng = fit_state.get("rng") or {}
        if rng.get("pyro") is not None:
            torch.set_rng_state(rng["pyro"])
        if rng.get("generator") is not None:
            generator.set_state(rng["generator"])
    opt = None
    sched = None
    if scheduler is not None and not callable(scheduler):
        raise TypeError(f"`scheduler` must be a factory optimizer -> LRScheduler, but got {type(scheduler).__name__}")

    def build_optimizer(extra):
        # Built after the first step's gradients, so that parameters a classic Pyro guide
        # declares with pyro.param (found in that step's trace) are trained too.
        if isinstance(optimizer, torch.optim.Optimizer):
            built = optimizer
            if extra:
                built.add_param_group({"params": extra})
        else:
            built = make_optimizer(optimizer, module_params + extra, lr)
        if resume_state is not None and resume_state.get("optimizer") is not None:
            built.load_state_dict(resume_state["optimizer"])
        return built

    def per_sample(value, batch):
        return value / (per_sample_denominator or batch_size_of(batch))

    steps_per_epoch = _len_or_none(train.source)
    bar = tqdm(
        total=(epochs - start_epoch) * steps_per_epoch if steps_per_epoch else None,
        disable=(not progress) if progress is not None else None,
        unit="step",
        leave=False,
    )
    first_step = True
    checked_stream = train.tensors is not None
    with contextlib.ExitStack() as stack:
        stack.callback(bar.close)
        # Pyro warns on a NaN loss; fit raises NonFiniteLossError with more to act on.
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", message="Encountered (NaN|[+-]?inf)", category=UserWarning)
        if is_jit(loss):  # Pyro's JIT estimators trace with torch.jit.trace, which torch 2.x deprecates
            warnings.filterwarnings("ignore", message="`torch.jit.trace` is deprecated", category=DeprecationWarning)
        stack.enter_context(pyro.validation_enabled(validate == "always"))
        for epoch in range(start_epoch, epochs):
            if isinstance(pair, torch.nn.Module):
                pair.train()
            if distributed and hasattr(getattr(train.source, "sampler", None), "set_epoch"):
                train.source.sampler.set_epoch(epoch)
            total, seen, step = 0.0, 0, 0
            t0 = time.perf_counter()
            for step, batch in enumerate(train):
                if not checked_stream:
                    check_batch_finite(batch, "data", seen)
                batch = to_device(batch, device)
                args, kwargs = (batch, {}) if isinstance(batch, tuple) else ((), batch)
                b = batch_size_of(batch)

                def check(value, epoch=epoch, step=step):
                    if not math.isfinite(value):
                        raise NonFiniteLossError(
                            f"the loss became {value} at epoch {epoch + 1}, step {step + 1}; training stopped and "
                            "the pair keeps the parameters of the last good step. Lower the learning rate, check "
                            "the data, or bound the decoder's output.",
                            epoch + 1,
                            step + 1,
                        )

                if adversary_step is not None:  # e.g. a GAN discriminator's update, before the ELBO step
                    adversary_step(*args, **kwargs)
                if first_step:
                    for p in module_params:
                        p.grad = None
                    with pyro.validation_enabled(validate != "never"), poutine.trace(param_only=True) as capture:
                        value = step_loss(args, kwargs, check)
                    known = {id(p) for p in module_params}
                    leaves = _pyro_param_leaves(capture.trace, known)
                    if distributed and leaves:
                        raise ValueError(
                            "fit(distributed=True) synchronises module parameters only, but this pair declares "
                            f"{len(leaves)} with pyro.param; keep them in modules (PyroModule or nn.Parameter)"
                        )
                    opt = build_optimizer(leaves)
                    if scheduler is not None:
                        sched = scheduler(opt)
                        if resume_state is not None and (resume_state["fit"] or {}).get("scheduler") is not None:
                            sched.load_state_dict(resume_state["fit"]["scheduler"])
                    first_step = False
                else:
                    opt.zero_grad(set_to_none=True)
                    value = step_loss(args, kwargs, check)
                if not objective.reports_loss and not _grads_finite(p for g in opt.param_groups for p in g["params"]):
                    check(float("nan"))
                opt.step()
                total += per_sample(value, batch) * b
                seen += b
                result.num_steps += 1
                bar.update(1)
            if sched is not None:
                sched.step()
            elapsed = time.perf_counter() - t0
            checked_stream = True
            result.train_loss.append(total / max(seen, 1))
            result.epoch_seconds.append(elapsed)
            result.val_loss.append(
                _evaluate_loss(pair, objective, val, device, per_sample_denominator) if val is not None else None
            )
            bar.set_postfix(epoch=epoch + 1, loss=f"{result.train_loss[-1]:.4g}")
            if checkpoint is not None and rank == 0:
                ckpt.save(
                    checkpoint,
                    pair,
                    optimizer=opt,
                    fit_state={
                        "result": asdict(result),
                        "rng": _rng_state(generator),
                        "scheduler": sched.state_dict() if sched is not None else None,
                    },
                )
    if isinstance(pair, torch.nn.Module):
        pair.eval()
    return result


_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _init_distributed(pair, device):
    """Join (or start, from torchrun's environment) the process group; returns rank, world
    size and the device for this process."""
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError("fit(distributed=True): this torch build has no torch.distributed")
    if not isinstance(pair, torch.nn.Module):
        raise TypeError(
            "fit(distributed=True) needs the pair to be a torch.nn.Module (its parameters are synchronised)"
        )
    if not dist.is_initialized():
        missing = [k for k in _TORCHRUN_ENV if k not in os.environ]
        if missing:
            raise RuntimeError(
                f"fit(distributed=True) needs the environment torchrun sets, but {', '.join(missing)} "
                "is not set: launch with `torchrun --nproc_per_node=N your_script.py` (or `torchrun ... -m ppmodels "
                "train ...`), or call torch.distributed.init_process_group yourself first"
            )
        use_cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if use_cuda else "gloo")
        # Whoever starts the group ends it, at exit (not after fit, so the group stays usable
        # for the rest of the program): see _end_process_group.
        atexit.register(_end_process_group)
    if dist.get_backend() == "nccl" and (device is None or torch.device(device).type == "cuda"):
        device = torch.device("cuda", torch.cuda.current_device())
    return dist.get_rank(), dist.get_world_size(), device


def _end_process_group():
    """At exit: destroy the process group, then give gloo's worker threads a moment with the
    interpreter still alive. A worker drops each finished collective after the caller has
    moved on, and that needs the GIL; if the interpreter is already finalising, the thread is
    killed mid-destructor and the whole process aborts (SIGABRT, "terminate called without an
    active exception") after training has succeeded. Seen about once in 20 two-process runs
    here; the core dump shows ProcessGroupGloo::runLoop destroying an AsyncWork in
    take_gil during Py_FinalizeEx."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    time.sleep(0.1)  # releases the GIL: pending work destructors finish now


def _broadcast_int(value, device):
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(t, src=0)
    return int(t.item())


class _ShardedTensorBatches:
    """Each global batch of ``batch_size x world`` samples of one shared permutation, split
    evenly across processes; this process yields its part."""

    def __init__(self, tensors, batch_size, shuffle, seed, rank, world):
        self.tensors, self.batch_size, self.shuffle = tensors, batch_size, shuffle
        self.rank, self.world = rank, world
        self.generator = torch.Generator().manual_seed(seed)
        self.num_data = int(tensors[0].shape[0])
        if self.num_data < world:
            raise ValueError(f"`data` has {self.num_data} samples, fewer than the {world} processes")

    def __len__(self):
        return -(-self.num_data // (self.batch_size * self.world))

    def __iter__(self):
        n, g = self.num_data, self.batch_size * self.world
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, n, g):
            part = order[start : start + g].tensor_split(self.world)[self.rank]
            if len(part):
                yield tuple(t[part] for t in self.tensors)


def _shard(train, batch_size, shuffle, seed, rank, world):
    from torch.utils.data import DataLoader, DistributedSampler

    b = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    if train.tensors is not None:
        return Batches(
            _ShardedTensorBatches(train.tensors, b, shuffle, seed, rank, world), train.num_data, train.tensors
        )
    dataset = getattr(train.source, "dataset", None)
    if dataset is None or not hasattr(dataset, "__len__"):
        raise ValueError(
            "fit(distributed=True) shards tensors and map-style datasets; pass the data as tensors or a Dataset "
            "(not a loader of a dataset without a length, or a list of batches)"
        )
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
    return Batches(DataLoader(dataset, batch_size=b, sampler=sampler), train.num_data)


class _ElboLoss(torch.nn.Module):
    """The pair's differentiable ELBO loss as a module's forward, for DistributedDataParallel."""

    def __init__(self, pair, objective):
        super().__init__()
        self.pair = pair
        self.__dict__["objective"] = objective

    def forward(self, args, kwargs):
        o = self.objective
        return o.elbo.differentiable_loss(o.model, o.guide, *args, **kwargs)


def _distributed_step(pair, objective, adversary_step, device):
    from torch.nn.parallel import DistributedDataParallel

    if adversary_step is not None:
        raise ValueError("fit(distributed=True) does not support pairs with an adversary_step (e.g. VAEGAN)")
    if not objective.differentiable or not objective.reports_loss:
        raise ValueError(
            f"fit(distributed=True) needs an estimator with a differentiable loss ('trace', 'meanfield', "
            f"'jit-trace'...), but got {estimator_name(objective.elbo)!r}"
        )
    device_ids = [device] if device is not None and device.type == "cuda" else None
    ddp = DistributedDataParallel(_ElboLoss(pair, objective), device_ids=device_ids)

    import torch.distributed as dist

    def step(args, kwargs, check=None):
        try:
            loss = ddp(args, kwargs)
        except RuntimeError as error:
            if "unused parameters" not in str(error) and "find_unused_parameters" not in str(error):
                raise
            unused = [n for n, p in pair.named_parameters() if p.requires_grad and p.grad is None]
            raise ValueError(
                "fit(distributed=True): some parameters get no gradient from the ELBO "
                f"({', '.join(unused[:5]) or 'see above'}); freeze them with requires_grad_(False)"
            ) from error
        # The mean over processes: the loss of the global batch, the same on every process,
        # so a non-finite loss stops them all (none is left waiting).
        mean = loss.detach().reshape(1).to(torch.float64)
        dist.all_reduce(mean)
        value = mean.item() / dist.get_world_size()
        if check is not None:
            check(value)
        loss.backward()
        return value

    return step


def _check_estimator_preconditions(loss, module_params, train, batch_size, pair):
    name = estimator_name(loss)
    if is_jit(loss) and any(p.requires_grad for p in module_params):
        raise ValueError(
            f"{name!r} compiles the loss with Pyro's parameter store as its inputs, but this pair keeps "
            f"{sum(p.numel() for p in module_params if p.requires_grad)} parameters in its modules (the JIT would "
            "bake them in as constants); use the same estimator without 'jit-', or declare the parameters with "
            "pyro.param / pyro.module"
        )
    if name == "tailadaptive":
        steps = _len_or_none(train.source)
        if getattr(pair, "num_data", None) and (steps is None or steps > 1):
            raise ValueError(
                "'tailadaptive' does not support data subsampling: train on the whole data set in one batch "
                f"(batch_size >= {train.num_data}, got {batch_size}) or use another estimator"
            )


def _grads_finite(params) -> bool:
    return all(bool(torch.isfinite(p.grad).all()) for p in params if p.grad is not None)


def _len_or_none(source):
    try:
        return len(source)
    except TypeError:
        return None


@torch.no_grad()
def _evaluate_loss(pair, objective, batches: Batches, device, denominator):
    if isinstance(pair, torch.nn.Module):
        pair.eval()
    total, seen = 0.0, 0
    with pyro.validation_enabled(False):
        for batch in batches:
            batch = to_device(as_args(batch), device)
            args, kwargs = (batch, {}) if isinstance(batch, tuple) else ((), batch)
            b = batch_size_of(batch)
            total += objective.loss(args, kwargs) / (denominator or b) * b
            seen += b
    if isinstance(pair, torch.nn.Module):
        pair.train()
    return total / max(seen, 1)


__all__ = ["FitResult", "NonFiniteLossError", "fit", "make_optimizer"]
