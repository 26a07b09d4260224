"""Turning what users pass as data into batches: tensors, datasets, loaders, iterables."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from .._validate import check_finite, check_positive_int

DEFAULT_BATCH_SIZE = 128


class Batches:
    """A re-iterable source of batches with a known number of samples.

    Each batch is a tuple of tensors (positional arguments of ``model``/``guide``) or a dict
    (keyword arguments).
    """

    def __init__(self, source, num_data: int, tensors=None):
        self.source = source
        self.num_data = num_data
        self.tensors = tensors  # the full tensors when known (checked up front)

    def __iter__(self):
        for batch in self.source:
            yield as_args(batch)


class TensorBatches:
    """Mini-batches of in-memory tensors by slicing a (shuffled) index, as a hand-written loop
    does; far cheaper than a ``DataLoader``, which fetches and collates sample by sample."""

    def __init__(self, tensors, batch_size, shuffle, generator=None):
        self.tensors, self.batch_size, self.shuffle, self.generator = tensors, batch_size, shuffle, generator
        self.num_data = int(tensors[0].shape[0])

    def __len__(self):
        return -(-self.num_data // self.batch_size)

    def __iter__(self):
        n, b = self.num_data, self.batch_size
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator)
            for start in range(0, n, b):
                idx = order[start : start + b]
                yield tuple(t[idx] for t in self.tensors)
        else:
            for start in range(0, n, b):
                yield tuple(t[start : start + b] for t in self.tensors)


def as_args(batch):
    if isinstance(batch, torch.Tensor):
        return (batch,)
    if isinstance(batch, Mapping):
        return dict(batch)
    if isinstance(batch, (tuple, list)):
        return tuple(batch)
    raise TypeError(f"a batch must be a tensor, a tuple/list of tensors or a dict, but got {type(batch).__name__}")


def batch_size_of(batch) -> int:
    first = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
    return int(first.shape[0])


def to_device(batch, device):
    if device is None:
        return batch
    move = lambda t: t.to(device, non_blocking=True) if isinstance(t, torch.Tensor) else t  # noqa: E731
    if isinstance(batch, dict):
        return {k: move(v) for k, v in batch.items()}
    return tuple(move(t) for t in batch)


def _tensor_dataset(tensors, name):
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError(f"`{name}` as a tuple must hold tensors, but got {[type(t).__name__ for t in tensors]}")
    sizes = {int(t.shape[0]) if t.dim() else -1 for t in tensors}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(
            f"`{name}`: the tensors must share their first dimension, but got shapes "
            f"{[tuple(t.shape) for t in tensors]}"
        )
    return TensorDataset(*tensors)


def make_batches(data, batch_size=None, shuffle=True, generator=None, name="data", check=True) -> Batches:
    """Wrap ``data`` as :class:`Batches`.

    ``data`` may be a tensor, a tuple of tensors (one data set, split along the first
    dimension), a ``Dataset``, a ``DataLoader``, or any re-iterable of batches (a *list*
    of tensors, tuples or dicts).
    NaN or infinite values in tensors are rejected here, naming the first bad sample.
    """
    if isinstance(data, Batches):
        return data
    if isinstance(data, torch.Tensor):
        data = TensorDataset(data)
    elif isinstance(data, tuple):  # a tuple of tensors is one data set split along dim 0
        data = _tensor_dataset(data, name)
    if isinstance(data, DataLoader):
        if batch_size is not None:
            raise ValueError(
                f"`batch_size` applies to tensors and datasets; the DataLoader passed as `{name}` "
                f"already has batch_size={data.batch_size}"
            )
        dataset = data.dataset
        loader = data
    elif isinstance(data, Dataset) and not isinstance(data, IterableDataset):
        bs = DEFAULT_BATCH_SIZE if batch_size is None else check_positive_int(batch_size, "batch_size")
        if len(data) == 0:
            raise ValueError(f"`{name}` is empty: it holds no samples")
        dataset = data
        if isinstance(data, TensorDataset):
            loader = TensorBatches(data.tensors, bs, shuffle, generator)
        else:
            loader = DataLoader(data, batch_size=bs, shuffle=shuffle, generator=generator)
    elif isinstance(data, Iterable) and not isinstance(data, (Iterator, str, Mapping)):
        dataset, loader = None, data
    else:
        raise TypeError(
            f"`{name}` must be a tensor, a tuple of tensors, a torch Dataset, a DataLoader or a re-iterable "
            f"of batches, but got {type(data).__name__}"
            + (
                " (an iterator can be read only once; pass a list or a DataLoader)"
                if isinstance(data, Iterator)
                else ""
            )
        )
    tensors = dataset.tensors if isinstance(dataset, TensorDataset) else None
    if dataset is not None and not isinstance(dataset, IterableDataset):
        num_data = len(dataset)
    elif isinstance(getattr(loader, "num_data", None), int):  # e.g. TensorBatches
        num_data = loader.num_data
    else:  # count with one pass over the batches
        num_data = sum(batch_size_of(as_args(b)) for b in loader)
    if num_data == 0:
        raise ValueError(f"`{name}` is empty: it holds no samples")
    if check and tensors is not None:
        for i, t in enumerate(tensors):
            check_finite(t, name if len(tensors) == 1 else f"{name}[{i}]")
    return Batches(loader, num_data, tensors)


def check_batch_finite(batch, name, offset):
    values = batch.values() if isinstance(batch, dict) else batch
    for t in values:
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = (~torch.isfinite(t.reshape(t.shape[0], -1))).any(dim=1).nonzero()
            raise ValueError(
                f"`{name}` holds NaN or infinite values: the first bad sample is index "
                f"{offset + int(bad[0, 0])} (in reading order)"
            )
