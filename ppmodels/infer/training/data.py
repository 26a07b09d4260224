"""Turning what users pass as data into batches: tensors, argument tuples, datasets, loaders, iterables.

Two rules, one per kind of pair (see ``docs/model_guide_contract.md``):

- A pair that declares its data-set size (``num_data`` / ``set_num_data``, as ppmodels'
  pairs do) gets shuffled mini-batches of 128 by default and scales them itself.
- Any other pair (a user's Pyro program) gets its arguments as ``pyro.infer.SVI.step``
  would pass them: the whole data set, in its order, at every step, unless the user asks
  for mini-batches (``batch_size=``, a ``DataLoader`` or a list of batches).

In an argument tuple (or dict), tensors with a first dimension are the data and are sliced
into mini-batches when mini-batches are asked for; everything else (flags, numbers,
``None``, 0-d tensors, lists, functions) reaches the model unchanged at every step.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator, Mapping

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler, TensorDataset

from ..._validate import check_finite, check_positive_int

DEFAULT_BATCH_SIZE = 128


class Batches:
    """A re-iterable source of batches with a known number of samples.

    Each batch is a tuple (positional arguments of ``model``/``guide``) or a dict
    (keyword arguments). :meth:`indexed` also yields each batch's indices into the data
    set when they are known (``None`` otherwise).
    """

    def __init__(self, source, num_data: int, tensors=None, sliced: bool = True):
        self.source = source
        self.num_data = num_data
        self.tensors = tensors  # the full tensors when known (checked up front)
        self.sliced = sliced  # False: every step sees the whole data set

    def __iter__(self):
        for batch in self.source:
            yield as_args(batch)

    def __len__(self):
        return len(self.source)

    def indexed(self):
        """``(batch, indices)`` pairs; ``indices`` is a ``LongTensor`` into the data set, or
        ``None`` when the source's order is not known (a shuffled ``DataLoader`` other than one
        over a ``TensorDataset``, which is read by :class:`SlicedLoader`)."""
        if hasattr(self.source, "indexed"):
            yield from self.source.indexed()
            return
        ordered = self.knows_indices  # a plain sequence of batches, or a loader that does not shuffle
        offset = 0
        for batch in self:
            b = batch_size_of(batch)
            yield batch, (torch.arange(offset, offset + b) if ordered else None)
            offset += b

    @property
    def knows_indices(self) -> bool:
        if hasattr(self.source, "indexed"):
            return True
        return not isinstance(self.source, DataLoader) or isinstance(self.source.sampler, SequentialSampler)

    def state_dict(self):
        """The source's iteration state (its shuffling generator), for exact resume."""
        fn = getattr(self.source, "state_dict", None)
        return fn() if callable(fn) else None

    def load_state_dict(self, state):
        if state is not None and callable(getattr(self.source, "load_state_dict", None)):
            self.source.load_state_dict(state)


class TensorBatches:
    """Mini-batches of in-memory tensors by slicing a (shuffled) index, as a hand-written loop
    does; far cheaper than a ``DataLoader``, which fetches and collates sample by sample.

    :param tensors: a tuple of tensors sharing their first dimension (positional arguments),
        or an :class:`Arguments` (tensors to slice among arguments passed unchanged).
    """

    def __init__(self, tensors, batch_size, shuffle, generator=None):
        self.arguments = tensors if isinstance(tensors, Arguments) else Arguments(tuple(tensors))
        self.tensors = self.arguments.data_tensors()
        self.batch_size, self.shuffle, self.generator = batch_size, shuffle, generator
        self.num_data = self.arguments.num_data

    def __len__(self):
        return -(-self.num_data // self.batch_size)

    def indexed(self):
        n, b = self.num_data, self.batch_size
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator)
            for start in range(0, n, b):
                idx = order[start : start + b]
                yield self.arguments.take(idx), idx
        else:
            for start in range(0, n, b):
                idx = slice(start, start + b)
                yield self.arguments.take(idx), torch.arange(start, min(start + b, n))

    def __iter__(self):
        for batch, _ in self.indexed():
            yield batch

    def state_dict(self):
        return {"generator": self.generator.get_state()} if self.generator is not None else None

    def load_state_dict(self, state):
        if state and self.generator is not None and state.get("generator") is not None:
            self.generator.set_state(state["generator"])


class FullBatch:
    """The whole data set as one batch, the same arguments at every step (what
    ``pyro.infer.SVI.step(*args)`` does); ``shuffle=True`` permutes the data tensors'
    rows at every step."""

    def __init__(self, arguments: Arguments, shuffle=False, generator=None):
        self.arguments, self.shuffle, self.generator = arguments, shuffle, generator
        self.num_data = arguments.num_data
        self.tensors = arguments.data_tensors()
        self._whole = arguments.take(None)

    def __len__(self):
        return 1

    def indexed(self):
        if self.shuffle and self.arguments.sliced:
            idx = torch.randperm(self.num_data, generator=self.generator)
            yield self.arguments.take(idx), idx
        else:
            yield self._whole, None

    def __iter__(self):
        for batch, _ in self.indexed():
            yield batch

    state_dict = TensorBatches.state_dict
    load_state_dict = TensorBatches.load_state_dict


class SlicedLoader:
    """A ``DataLoader`` over in-memory tensors (a ``TensorDataset``, the default collate, no
    workers): the same batches, from the same sampler in the same order, taken by slicing each
    tensor with the batch's indices instead of fetching and stacking sample by sample (the
    loader's own way, which costs more than a step of a small model). Each pass draws the
    number the loader's own iterator draws first, so the random stream is the same too."""

    def __init__(self, loader):
        self.loader = loader
        self.tensors = loader.dataset.tensors

    @staticmethod
    def applies(loader) -> bool:
        from torch.utils.data import default_collate

        return (
            isinstance(loader.dataset, TensorDataset)
            and loader.collate_fn is default_collate
            and loader.num_workers == 0
            and loader.batch_sampler is not None
            and not loader.pin_memory
        )

    def __len__(self):
        return len(self.loader)

    @property
    def sampler(self):
        return self.loader.sampler

    @property
    def dataset(self):
        return self.loader.dataset

    def indexed(self):
        torch.empty((), dtype=torch.int64).random_(generator=self.loader.generator)  # the iterator's base seed
        for idx in self.loader.batch_sampler:
            idx = torch.as_tensor(idx, dtype=torch.long)
            yield tuple(t[idx] for t in self.tensors), idx

    def __iter__(self):
        for batch, _ in self.indexed():
            yield batch


def is_constant(value) -> bool:
    """Arguments that can be passed unchanged alongside mini-batches of the data tensors."""
    if value is None or isinstance(value, (bool, numbers.Number, str)) or callable(value):
        return True
    return isinstance(value, torch.Tensor) and value.dim() == 0


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return type(value).__name__


class Arguments:
    """A model's arguments (a tuple of positional ones, or a dict of keyword ones) split
    into the data tensors (a first dimension: sliced into mini-batches) and the rest
    (passed unchanged at every step).

    With ``ragged=True`` (the whole data set at every step, as ``SVI.step`` takes it) the
    tensors need not share their first dimension (40 observations beside a 3-element index of
    the missing ones): they are then :attr:`ragged`, never sliced or shuffled, and
    ``num_data`` is the largest first dimension."""

    def __init__(self, values, name="data", ragged=False):
        self.values, self.name = values, name
        items = values.items() if isinstance(values, dict) else enumerate(values)
        self.sliced = [k for k, v in items if isinstance(v, torch.Tensor) and v.dim() > 0]
        sizes = {int(self.values[k].shape[0]) for k in self.sliced}
        self.ragged = len(sizes) > 1
        if self.ragged and not ragged:
            raise ValueError(
                f"`{name}`: to be split into mini-batches the tensors must share their first dimension (the data "
                f"set's size), but got shapes {[tuple(self.values[k].shape) for k in self.sliced]}; train on the "
                "whole data set (batch_size=None) or pass mini-batches yourself"
            )
        if sizes:
            self.num_data = max(sizes)
        else:  # e.g. the coin tutorial's list of 0-d tensors
            sized = [
                len(v) for _, v in (values.items() if isinstance(values, dict) else enumerate(values)) if _sized(v)
            ]
            self.num_data = sized[0] if sized else 1

    def data_tensors(self):
        return tuple(self.values[k] for k in self.sliced) or None

    def take(self, idx):
        """The arguments with each data tensor indexed by ``idx`` (``None``: whole)."""
        if idx is None:
            return dict(self.values) if isinstance(self.values, dict) else tuple(self.values)
        if isinstance(self.values, dict):
            return {k: (v[idx] if k in self.sliced else v) for k, v in self.values.items()}
        return tuple(v[idx] if i in self.sliced else v for i, v in enumerate(self.values))

    def check_batchable(self):
        """Refuse mini-batches of arguments that cannot be sliced consistently."""
        if not self.sliced:
            raise ValueError(
                f"`batch_size`: none of the arguments in `{self.name}` is a tensor with a first dimension to split "
                "into mini-batches; train full batch (batch_size=None) or pass tensors"
            )
        items = self.values.items() if isinstance(self.values, dict) else enumerate(self.values)
        for k, v in items:
            if k not in self.sliced and not is_constant(v):
                where = f"`{self.name}[{k!r}]`" if isinstance(self.values, dict) else f"argument {k} of `{self.name}`"
                raise ValueError(
                    f"`batch_size`: {where} is {_describe(v)}, which fit cannot split into mini-batches alongside the "
                    "data tensors (only tensors with a first dimension are sliced; numbers, flags, None and 0-d "
                    "tensors are passed unchanged). Pass mini-batches yourself as a list of argument tuples, or "
                    "train full batch (batch_size=None)"
                )


def _sized(value) -> bool:
    return isinstance(value, (list, tuple)) and not isinstance(value, str)


def as_args(batch):
    if isinstance(batch, torch.Tensor):
        return (batch,)
    if isinstance(batch, Mapping):
        return dict(batch)
    if isinstance(batch, (tuple, list)):
        return tuple(batch)
    raise TypeError(f"a batch must be a tensor, a tuple/list of tensors or a dict, but got {type(batch).__name__}")


def batch_size_of(batch) -> int:
    """The number of samples in a batch: the first dimension of its first data tensor (1 when
    no argument has one)."""
    values = batch.values() if isinstance(batch, dict) else batch
    for v in values:
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            return int(v.shape[0])
    for v in values:
        if _sized(v):
            return len(v)
    return 1


def to_device(batch, device):
    if device is None:
        return batch
    move = lambda t: t.to(device, non_blocking=True) if isinstance(t, torch.Tensor) else t  # noqa: E731
    if isinstance(batch, dict):
        return {k: move(v) for k, v in batch.items()}
    return tuple(move(t) for t in batch)


def call_arguments(batch, fixed=None):
    """A batch (a tuple of positional arguments or a dict of keyword ones) as the model's
    ``(args, kwargs)``, with the keyword arguments ``fixed`` (``fit(kwargs=...)``) added; a
    keyword given by both is a ``ValueError``."""
    args, kwargs = (batch, {}) if isinstance(batch, tuple) else ((), batch)
    if fixed:
        clash = sorted(set(kwargs) & set(fixed))
        if clash:
            raise ValueError(
                f"`kwargs` and the batch both pass the keyword argument(s) {clash}; give each argument once"
            )
        kwargs = {**kwargs, **fixed}
    return args, kwargs


def _is_argument_list(data) -> bool:
    """A list of 0-d tensors or numbers (the SVI tutorial's coin flips) is one argument, not
    a list of batches."""
    return (
        isinstance(data, list)
        and len(data) > 0
        and all(
            (isinstance(v, torch.Tensor) and v.dim() == 0)
            or (isinstance(v, numbers.Number) and not isinstance(v, bool))
            for v in data
        )
    )


def make_batches(
    data,
    batch_size=None,
    shuffle=True,
    generator=None,
    name="data",
    check=True,
    full_batch=False,
) -> Batches:
    """Wrap ``data`` as :class:`Batches`.

    ``data`` may be a tensor (one argument), a tuple (the positional arguments) or a dict
    (the keyword arguments) whose tensors share their first dimension, a ``Dataset``, a
    ``DataLoader``, or any re-iterable of batches (a *list* of tensors, tuples or dicts);
    ``None`` means no arguments.

    :param bool full_batch: with ``batch_size=None``, one batch holding the whole data set,
        in its order, at every pass (the default for a user's own Pyro program); otherwise
        ``batch_size`` defaults to 128.

    NaN or infinite values in tensors are rejected here, naming the first bad sample.
    """
    if isinstance(data, Batches):
        return data
    if data is None or _is_argument_list(data):
        data = () if data is None else (data,)
    if isinstance(data, torch.Tensor):
        data = (data,)
    if isinstance(data, TensorDataset):
        data = tuple(data.tensors)
    if isinstance(data, (tuple, dict)):  # the model's arguments: data tensors and constants
        return _argument_batches(data, batch_size, shuffle, generator, name, check, full_batch)
    if isinstance(data, DataLoader):
        if batch_size is not None:
            raise ValueError(
                f"`batch_size` applies to tensors and datasets; the DataLoader passed as `{name}` "
                f"already has batch_size={data.batch_size}"
            )
        dataset = data.dataset
        loader = SlicedLoader(data) if SlicedLoader.applies(data) else data
    elif isinstance(data, Dataset) and not isinstance(data, IterableDataset):
        if len(data) == 0:
            raise ValueError(f"`{name}` is empty: it holds no samples")
        if full_batch and batch_size is None:
            bs = len(data)
        else:
            bs = DEFAULT_BATCH_SIZE if batch_size is None else check_positive_int(batch_size, "batch_size")
        dataset = data
        loader = DataLoader(data, batch_size=bs, shuffle=shuffle, generator=generator)
    elif isinstance(data, Iterable) and not isinstance(data, (Iterator, str, Mapping)):
        if batch_size is not None:
            raise ValueError(
                f"`batch_size` applies to tensors and datasets; `{name}` is already a sequence of batches "
                f"({type(data).__name__}); leave batch_size=None"
            )
        dataset, loader = None, data
    else:
        raise TypeError(
            f"`{name}` must be a tensor, a tuple or dict of the model's arguments, a torch Dataset, a DataLoader or "
            f"a re-iterable of batches, but got {type(data).__name__}"
            + (
                " (an iterator can be read only once; pass a list or a DataLoader)"
                if isinstance(data, Iterator)
                else ""
            )
        )
    if dataset is not None and not isinstance(dataset, IterableDataset):
        num_data = len(dataset)
    elif isinstance(getattr(loader, "num_data", None), int):  # e.g. TensorBatches
        num_data = loader.num_data
    else:  # count with one pass over the batches
        num_data = sum(batch_size_of(as_args(b)) for b in loader)
    if num_data == 0:
        raise ValueError(f"`{name}` is empty: it holds no samples")
    return Batches(loader, num_data)


def _argument_batches(data, batch_size, shuffle, generator, name, check, full_batch) -> Batches:
    """:func:`make_batches` of the model's arguments (a tuple or a dict): the whole data set
    at every step, or mini-batches of its data tensors."""
    if isinstance(data, tuple) and not data and not full_batch:
        raise ValueError(f"`{name}` is empty: it holds no arguments")
    arguments = Arguments(data, name, ragged=full_batch and batch_size is None)
    tensors = arguments.data_tensors()
    if tensors is not None and arguments.num_data == 0:
        raise ValueError(f"`{name}` is empty: it holds no samples")
    if check and tensors is not None:
        for key, t in zip(arguments.sliced, tensors):
            check_finite(t, name if len(arguments.values) == 1 else f"{name}[{key!r}]")
    if full_batch and batch_size is None:
        if arguments.ragged and shuffle:
            raise ValueError(
                f"`shuffle`: the tensors of `{name}` have different first dimensions "
                f"{[tuple(t.shape) for t in tensors]}, so their rows cannot be shuffled together; "
                "train with shuffle=False (the whole data set in its order, as SVI.step takes it)"
            )
        return Batches(FullBatch(arguments, shuffle, generator), arguments.num_data, tensors, sliced=False)
    bs = DEFAULT_BATCH_SIZE if batch_size is None else check_positive_int(batch_size, "batch_size")
    arguments.check_batchable()
    return Batches(TensorBatches(arguments, bs, shuffle, generator), arguments.num_data, tensors)


def fit_batches(data, options, pair=None, *, shuffle, generator, device=None):
    """fit's training and validation batches: ``(train, val, internal)``. ``pair``: a pair
    that scales its batches (ppmodels' own), whose floating-point data is converted to its
    parameters' precision and which gets mini-batches; otherwise the whole data set at each
    step unless mini-batches are asked for. ``internal``: the data are batches ppmodels made
    (the facade's), whose scaling fit does not check."""
    scales_batches = pair is not None
    if scales_batches and isinstance(data, (torch.Tensor, tuple, dict)):
        data = _match_dtype(as_args(data), pair)  # e.g. float64 data for a float32 pair
    if device is not None and isinstance(data, (torch.Tensor, tuple, dict)) and options.batch_size is None:
        data = to_device(as_args(data), device)  # the whole data set moves once
    train = make_batches(
        data, options.batch_size, shuffle=shuffle, generator=generator, name="data", full_batch=not scales_batches
    )
    val = options.val_data
    if val is not None:
        if scales_batches and isinstance(val, (torch.Tensor, tuple, dict)):
            val = _match_dtype(as_args(val), pair)
        val = make_batches(val, options.batch_size, shuffle=False, name="val_data", full_batch=not scales_batches)
    return train, val, isinstance(data, Batches)


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


def num_batches(source):
    """The number of batches ``source`` gives, or ``None`` when it has no length."""
    try:
        return len(source)
    except TypeError:
        return None


def check_batch_finite(batch, name, offset):
    values = batch.values() if isinstance(batch, dict) else batch
    for t in values:
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() and not bool(torch.isfinite(t).all()):
            bad = (~torch.isfinite(t.reshape(t.shape[0], -1))).any(dim=1).nonzero()
            raise ValueError(
                f"`{name}` holds NaN or infinite values: the first bad sample is index "
                f"{offset + int(bad[0, 0])} (in reading order)"
            )
