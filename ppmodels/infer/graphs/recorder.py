"""A function of one tensor recorded as an FX graph of aten operations, quickly.

``make_fx`` does this with the full tracing machinery: every operation goes through a proxy
tensor, a fake tensor for its metadata, the Python stack for its provenance, and
decompositions, which costs far more than running the function (``benchmarks/README.md``).

:func:`record` runs the function on the real input under a ``TorchDispatchMode`` and writes
down each aten operation whose arguments depend on the input, with its real result as the
node's ``val``. Operations that do not depend on it (the data's slices, a model's
``torch.arange``) are run once and enter the graph as constants. Anything this cannot record
exactly raises :class:`NotRecordable`, and the caller traces with ``make_fx`` instead (whose
messages name the cause for the user): a value read out of a dependent tensor (``.item()``, a
Python ``if`` on it), a random operation, an in-place write of a dependent value into a
constant, a result that is not a tensor.
"""

from __future__ import annotations

import operator

import torch
import torch.utils._pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

#: constants up to this many elements are made one graph input per distinct value
SMALL_CONSTANT = 4096


class NotRecordable(Exception):
    """The function does something :func:`record` does not write down exactly."""


def record(f, z: torch.Tensor, decompositions=None, *, fold=True) -> torch.fx.GraphModule:
    """``f`` (a function of the tensor ``z`` returning a tensor or a tuple of tensors) as a
    graph of aten operations with ``z`` its one input, each operation found in
    ``decompositions`` (a table as ``make_fx`` takes) written as its decomposition;
    :class:`NotRecordable` where it cannot be. With ``fold=False``, operations that do not
    depend on ``z`` are recorded too (as ``make_fx`` records them), not run once: inductor
    folds a decomposition's ``arange`` or ``full`` into its index arithmetic, while a
    constant is a buffer it reads."""
    recorder = _Recorder(decompositions or {}, fold)
    placeholder = recorder.graph.placeholder("z")
    placeholder.meta["val"] = z
    recorder.track(z, placeholder)
    with recorder:
        out = f(z)
    if not isinstance(out, torch.Tensor) and not (
        isinstance(out, tuple) and all(isinstance(o, torch.Tensor) for o in out)
    ):
        raise NotRecordable(f"the function returned {type(out).__name__}, not a tensor")
    recorder.graph.output(pytree.tree_map(recorder.argument, out))
    return torch.fx.GraphModule(recorder.root, recorder.graph)


class _Recorder(TorchDispatchMode):
    def __init__(self, decompositions, fold):
        super().__init__()
        self.decompositions, self.fold = decompositions, fold
        self.graph = torch.fx.Graph()
        self.root = torch.nn.Module()
        # id -> (tensor, node); the tensors are held, so that no id is reused while recording
        self._nodes, self._constants = {}, {}
        # small constants by content: a model's loop makes the same ``arange`` at every step, and
        # what is computed from equal constants is then a repeat, recorded once (below)
        self._by_content, self._made = {}, 0
        # each functional operation recorded, by its node arguments: its repeats are not recorded
        # again, until an in-place operation makes two equal-looking reads differ
        self._recorded, self._mutated, self._known = {}, False, {}

    def track(self, tensor, node):
        self._nodes[id(tensor)] = (tensor, node)

    def _node(self, value):
        entry = self._nodes.get(id(value))
        return entry[1] if entry is not None and entry[0] is value else None

    def argument(self, value):
        """The graph's value for an argument: a dependent tensor's node, a constant's
        ``get_attr`` (made once per tensor), anything else as it is."""
        if not isinstance(value, torch.Tensor):
            return value
        node = self._node(value)
        if node is not None:
            return node
        entry = self._constants.get(id(value))
        if entry is not None and entry[0] is value:
            return entry[1]
        key = _content(value)
        node = self._by_content.get(key) if key is not None else None
        if node is None:
            name = f"_constant{self._made}"
            self._made += 1
            setattr(self.root, name, value.detach())
            node = self.graph.get_attr(name)
            node.meta["val"] = value.detach()
            if key is not None:
                self._by_content[key] = node
        self._constants[id(value)] = (value, node)
        return node

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        random, data_dependent, composite, written, functional = self._facts(func)
        if random:
            raise NotRecordable(f"{func} draws random numbers")
        tensors = _leaves((args, tuple(kwargs.values())), [])
        depends = any(isinstance(a, torch.Tensor) and self._node(a) is not None for a in tensors)
        if not depends and (self.fold or data_dependent):  # a constant: computed once, here
            return func(*args, **kwargs)
        if data_dependent:
            raise NotRecordable(f"{func} reads a value out of a tensor that depends on the input")
        decomposition = self.decompositions.get(func)
        if decomposition is None and composite:
            # inside a decomposition (below autograd) torch's own composites (``to``, ``reshape``,
            # ``movedim``) reach the mode whole; written as torch writes them, as make_fx does
            decomposition = func.decompose
        if decomposition is not None:
            with self:  # its operations recorded in its place
                out = decomposition(*args, **kwargs)
            if out is not NotImplemented:
                return out
        for i, name in written:
            value = args[i] if i < len(args) else kwargs.get(name)
            if isinstance(value, torch.Tensor) and self._node(value) is None:
                raise NotRecordable(f"{func} writes a value that depends on the input into a constant")
        if written:
            self._mutated = True
        out = func(*args, **kwargs)
        if func is torch.ops.aten.lift_fresh.default:  # ``torch.tensor(...)``: a copy in the graph, as make_fx
            func = torch.ops.aten.lift_fresh_copy.default  # writes it (inductor has no lowering of the original)
        node_args = _mapped(args, self.argument)
        node_kwargs = {k: _mapped(v, self.argument) for k, v in kwargs.items()}
        key = None
        if functional and not self._mutated:  # the same operation on the same inputs: its first node
            key = value_key((func, node_args, node_kwargs))
            if key is not None and key in self._recorded:
                self._track_result(out, self._recorded[key])
                return out
        node = self.graph.call_function(func, node_args, node_kwargs)
        node.meta["val"] = out
        if isinstance(out, torch.Tensor):
            result = node
        elif isinstance(out, (tuple, list)) and all(isinstance(o, torch.Tensor) for o in out):
            result = []
            for i, o in enumerate(out):
                item = self.graph.call_function(operator.getitem, (node, i))
                item.meta["val"] = o
                result.append(item)
        elif out is None:  # a check (``_linalg_check_errors``), kept in the graph
            return out
        else:
            raise NotRecordable(f"{func} returned {type(out).__name__}")
        self._track_result(out, result)
        if key is not None:
            self._recorded[key] = result
        return out

    def _track_result(self, out, result):
        if isinstance(result, list):
            for o, item in zip(out, result):
                self.track(o, item)
        else:
            self.track(out, result)

    def _facts(self, func):
        """What the recorder asks of an operation, once per operation: whether it draws, reads a
        value out, is one of torch's composites; the arguments it writes (place, name); whether
        it writes nothing (a view is a value too until something is written in place)."""
        facts = self._known.get(func)
        if facts is None:
            schema = func._schema
            written = tuple(
                (i, a.name) for i, a in enumerate(schema.arguments) if a.alias_info and a.alias_info.is_write
            )
            facts = (
                torch.Tag.nondeterministic_seeded in func.tags,
                torch.Tag.data_dependent_output in func.tags or func is torch.ops.aten.is_nonzero.default,
                _composite(func),
                written,
                not schema.is_mutable,
            )
            self._known[func] = facts
        return facts


def _leaves(value, out):
    """The leaves of nested tuples and lists (an operation's arguments), appended to ``out``."""
    if isinstance(value, (tuple, list)):
        for v in value:
            _leaves(v, out)
    else:
        out.append(value)
    return out


def _mapped(value, f):
    """``value`` (nested tuples and lists) with ``f`` applied to its leaves."""
    if isinstance(value, list):
        return [_mapped(v, f) for v in value]
    if isinstance(value, tuple):
        return tuple(_mapped(v, f) for v in value)
    return f(value)


def value_key(value):
    """A key for ``value`` (nested tuples, lists and dicts of nodes and literals) equal only for
    equal values of the same types, or ``None`` where a leaf cannot be hashed."""
    if isinstance(value, (list, tuple)):
        items = [value_key(v) for v in value]
        return None if any(i is None for i in items) else (type(value).__name__, *items)
    if isinstance(value, dict):
        return value_key(tuple(sorted(value.items())))
    if isinstance(value, float):  # -0.0 and 0.0 are equal, and NaN is not equal to itself
        return ("float", repr(value))
    try:
        hash(value)
    except TypeError:
        return None
    return (type(value).__name__, value)


def _composite(func) -> bool:
    return func.has_kernel_for_dispatch_key("CompositeImplicitAutograd")


def _content(tensor):
    """A key equal for tensors of the same layout and values (up to :data:`SMALL_CONSTANT`
    elements); ``None`` for larger ones, which are told apart by identity."""
    if tensor.numel() > SMALL_CONSTANT or tensor.is_sparse or tensor.requires_grad:
        return None
    try:
        data = tensor.detach().to("cpu").numpy().tobytes()
    except (TypeError, RuntimeError):  # a dtype numpy lacks (bfloat16): told apart by identity
        return None
    return tensor.dtype, tuple(tensor.shape), tuple(tensor.stride()), tensor.device, data


__all__ = ["NotRecordable", "record", "value_key"]
