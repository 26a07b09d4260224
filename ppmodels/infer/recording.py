"""A function of one tensor recorded as an FX graph of aten operations, quickly.

``make_fx`` does this with the full tracing machinery: every operation goes through a proxy
tensor, a fake tensor for its metadata, the Python stack for its provenance, and
decompositions. For the potential energy's first stage (the model run once, no gradient, no
decompositions) that costs 0.5-0.6 ms an operation: 2.4-2.7 s on the 100-step ``pyro.markov``
HMM (4,455 operations) whose eager run takes 42 ms.

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
    constant is a buffer it reads (the 100-step HMM's call 310 against 84 us)."""
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
        # what is computed from equal constants is then a repeat that common-subexpression
        # elimination removes (the 100-step HMM: 2,343 operations, not 3,112)
        self._by_content = {}

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
            name = f"_constant{len(self._by_content) + len(self._constants)}"
            setattr(self.root, name, value.detach())
            node = self.graph.get_attr(name)
            node.meta["val"] = value.detach()
            if key is not None:
                self._by_content[key] = node
        self._constants[id(value)] = (value, node)
        return node

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat, spec = pytree.tree_flatten((args, kwargs))
        depends = [isinstance(a, torch.Tensor) and self._node(a) is not None for a in flat]
        if torch.Tag.nondeterministic_seeded in func.tags:
            raise NotRecordable(f"{func} draws random numbers")
        data_dependent = torch.Tag.data_dependent_output in func.tags or func is torch.ops.aten.is_nonzero.default
        if not any(depends) and (self.fold or data_dependent):  # a constant: computed once, here
            return func(*args, **kwargs)
        if data_dependent:
            raise NotRecordable(f"{func} reads a value out of a tensor that depends on the input")
        decomposition = self.decompositions.get(func)
        if decomposition is None and _composite(func):
            # inside a decomposition (below autograd) torch's own composites (``to``, ``reshape``,
            # ``movedim``) reach the mode whole; written as torch writes them, as make_fx does
            decomposition = func.decompose
        if decomposition is not None:
            with self:  # its operations recorded in its place
                out = decomposition(*args, **kwargs)
            if out is not NotImplemented:
                return out
        schema = func._schema
        if schema.is_mutable:
            for i, argument in enumerate(schema.arguments):
                if argument.alias_info is None or not argument.alias_info.is_write:
                    continue
                value = args[i] if i < len(args) else kwargs.get(argument.name)
                if isinstance(value, torch.Tensor) and self._node(value) is None:
                    raise NotRecordable(f"{func} writes a value that depends on the input into a constant")
        out = func(*args, **kwargs)
        node_args, node_kwargs = pytree.tree_unflatten([self.argument(a) for a in flat], spec)
        node = self.graph.call_function(func, node_args, node_kwargs)
        node.meta["val"] = out
        if isinstance(out, torch.Tensor):
            self.track(out, node)
        elif isinstance(out, (tuple, list)) and all(isinstance(o, torch.Tensor) for o in out):
            for i, o in enumerate(out):
                item = self.graph.call_function(operator.getitem, (node, i))
                item.meta["val"] = o
                self.track(o, item)
        elif out is not None:  # None: a check (``_linalg_check_errors``), kept in the graph
            raise NotRecordable(f"{func} returned {type(out).__name__}")
        return out


def _composite(func) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), "CompositeImplicitAutograd")


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


__all__ = ["NotRecordable", "record"]
