"""Training across processes: ``fit(..., distributed=True)`` under ``torchrun`` with
``DistributedDataParallel`` (gloo on CPU, NCCL on GPUs)."""

from __future__ import annotations

import atexit
import math
import os
import time

import torch

from .data import DEFAULT_BATCH_SIZE, Batches, TensorBatches
from .estimators import estimator_name

_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def init_distributed(pair, device):
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


def broadcast_int(value, device):
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


def shard(train, batch_size, shuffle, seed, rank, world):
    from torch.utils.data import DataLoader, DistributedSampler

    b = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    source = train.source
    if isinstance(source, TensorBatches):
        if len(source.arguments.sliced) != len(source.arguments.values):
            raise ValueError(
                "fit(distributed=True) shards tensor data; the arguments in `data` hold values that are not "
                "tensors with a first dimension"
            )
        return Batches(
            _ShardedTensorBatches(source.tensors, b, shuffle, seed, rank, world), train.num_data, train.tensors
        )
    dataset = getattr(source, "dataset", None)
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


def distributed_step(pair, objective, adversary_step, device):
    from torch.nn.parallel import DistributedDataParallel

    if adversary_step is not None:
        raise ValueError("fit(distributed=True) does not support pairs with an adversary_step (e.g. VAEGAN)")
    if not objective.differentiable or not objective.reports_loss:
        raise ValueError(
            f"fit(distributed=True) needs an estimator with a differentiable loss ('trace', 'meanfield', 'enum', "
            f"'jit-meanfield'...), but got {estimator_name(objective.elbo)!r}"
        )
    device_ids = [device] if device is not None and device.type == "cuda" else None
    ddp = DistributedDataParallel(_ElboLoss(pair, objective), device_ids=device_ids)

    import torch.distributed as dist

    def step(args, kwargs):
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
        if math.isfinite(value):  # a non-finite loss is not applied (fit's NaN guard stops first)
            loss.backward()
        return value

    return step
