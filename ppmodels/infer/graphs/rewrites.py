"""Rewrites of a traced aten graph before it is compiled: in-place operations made functional,
each repeated computation kept once, a loop's per-step copies batched.

Inductor's own entry for a traced graph (:func:`~ppmodels.infer.graphs.backends.inductor`)
expects a functional graph without repeats, which ``torch.compile`` would get from
AOTAutograd; these passes give it that.
"""

from __future__ import annotations

import operator
import warnings

import torch
import torch.utils._pytree as pytree

from .loop_batching import batch_lanes
from .tracing import GraphUnsupported, describe_failure, one_fake_mode


def functional(graph, z0, decompositions):
    """The graph without in-place operations, as inductor's entry for traced graphs expects
    (``torch.compile`` gets that from AOTAutograd, which this path skips). ``make_fx`` records
    a model's in-place operations as they are: Pyro's ``DiscreteHMM`` clamps a maximum in place
    (``_logmatmulexp``), and inductor compiled that graph to NaN everywhere.

    An in-place operation on a tensor that nothing else reads (autograd's backward of
    ``clamp(min, max)``, which every ``Categorical(probs)`` takes, computes its mask that way)
    is replaced by its out-of-place variant, which changes nothing. Where other in-place
    operations remain, the graph is re-traced through ``functionalize``, with inductor's
    decompositions again (the functional ops, ``clamp`` for ``clamp_``, need them), which
    costs as long as the first trace."""
    if not rewrite_in_place_on_unread_tensors(graph, decompositions):
        return graph
    from torch.func import functionalize
    from torch.fx.experimental.proxy_tensor import make_fx

    with torch.no_grad(), warnings.catch_warnings(), one_fake_mode():
        warnings.simplefilter("ignore")
        try:
            return make_fx(functionalize(graph, remove="mutations"), decomposition_table=decompositions)(z0)
        except Exception as error:  # noqa: BLE001 (an in-place operation functionalize cannot rewrite)
            raise GraphUnsupported(
                f"the potential's in-place operations could not be rewritten for inductor ({describe_failure(error)}); "
                "compile='graph' runs them as they are"
            ) from error


def rewrite_in_place_on_unread_tensors(graph, decompositions=None) -> bool:
    """Replace each in-place operation by its out-of-place variant where that changes nothing:
    it writes only its first argument, which is a new tensor (no view, no input of the graph),
    or a whole-tensor alias of one (``.data``, ``.detach()``: Pyro's ``_logmatmulexp`` clamps
    its maximum that way; or an alias of an alias, as a recorded backward has them) that
    nothing else reads, and no view was taken of that tensor. Reads
    before the change keep the tensor; reads after it take the variant's result (``make_fx``
    records a read after an in-place operation on the tensor itself as a read of the
    operation's result; through an alias, as a read of the tensor). The variant is decomposed
    as ``decompositions`` say (inductor's expect ``clamp`` as ``clamp_min`` and ``clamp_max``).
    Returns whether in-place operations remain."""
    # the nodes' places; a node inserted here comes before the one being rewritten: -1
    order = {node: i for i, node in enumerate(graph.graph.nodes)}
    remain = changed = False
    for node in list(graph.graph.nodes):
        if not (_is_op(node) and node.target._schema.is_mutable):
            continue
        arguments = node.target._schema.arguments
        written = [i for i, a in enumerate(arguments) if a.alias_info is not None and a.alias_info.is_write]
        out_of_place = _out_of_place(node.target)
        target = node.args[0] if node.args else None
        aliases, tensor = [], target  # a chain of whole aliases, each read only by the next
        while _is_whole_alias(tensor) and len(tensor.users) == 1:
            aliases.append(tensor)
            tensor = tensor.args[0]
        alias = aliases[-1] if aliases else target
        if written != [0] or out_of_place is None or not _writable(tensor, alias, node, order):
            remain = True
            continue
        replacement = _call(graph, node, out_of_place, decompositions or {})
        if replacement is None:
            remain = True
            continue
        node.replace_all_uses_with(replacement)
        later = [user for user in tensor.users if user is not alias and order.get(user, -1) > order[node]]
        for user in later:
            user.replace_input_with(tensor, replacement)
        graph.graph.erase_node(node)
        for link in aliases:  # from the one the operation wrote through
            if not link.users:
                graph.graph.erase_node(link)
        changed = True
    if changed:  # regenerating the graph's code takes a while on a large graph: only when needed
        graph.recompile()
    return remain


def _call(graph, node, op, decompositions):
    """``op`` on ``node``'s arguments, inserted before ``node``: one operation, or the
    operations of its decomposition (traced on zeros of the arguments' shapes). ``None`` where
    that cannot be done here (an argument without its traced value, a decomposition that makes
    constants)."""
    if op not in decompositions:
        with graph.graph.inserting_before(node):
            replacement = graph.graph.call_function(op, node.args, node.kwargs)
        replacement.meta = dict(node.meta)
        return replacement
    from torch.fx.experimental.proxy_tensor import make_fx

    flat, spec = pytree.tree_flatten((node.args, node.kwargs))
    places = [i for i, a in enumerate(flat) if isinstance(a, torch.fx.Node)]
    values = [flat[i].meta.get("val") for i in places]
    if not all(isinstance(v, torch.Tensor) for v in values):
        return None

    def call(*tensors):
        arguments = list(flat)
        for i, t in zip(places, tensors):
            arguments[i] = t
        args, kwargs = pytree.tree_unflatten(arguments, spec)
        return op(*args, **kwargs)

    zeros = [torch.empty_strided(v.shape, v.stride(), dtype=v.dtype, device=v.device).zero_() for v in values]
    with torch.no_grad(), warnings.catch_warnings(), one_fake_mode():
        warnings.simplefilter("ignore")
        try:
            decomposed = make_fx(call, decomposition_table=decompositions)(*zeros)
        except Exception:  # noqa: BLE001 (a decomposition that needs more than shapes: the second trace serves)
            return None
    if any(n.op == "get_attr" for n in decomposed.graph.nodes):
        return None
    inputs = [n for n in decomposed.graph.nodes if n.op == "placeholder"]
    with graph.graph.inserting_before(node):
        return graph.graph.graph_copy(decomposed.graph, {p: flat[i] for p, i in zip(inputs, places)})


def _is_whole_alias(node) -> bool:
    return _is_op(node) and node.target in (torch.ops.aten.alias.default, torch.ops.aten.detach.default)


def _writable(tensor, target, node, order) -> bool:
    """``tensor`` is new; every operation reading it before ``node`` makes a new tensor of it (a
    view would see the change later); ``target`` is it or its one whole alias."""
    return _is_new(tensor) and all(
        user in (target, node) or order.get(user, -1) > order[node] or (_is_op(user) and _makes_new_tensor(user))
        for user in tensor.users
    )


def _is_op(node) -> bool:
    return (
        isinstance(node, torch.fx.Node)
        and node.op == "call_function"
        and isinstance(node.target, torch._ops.OpOverload)
    )


def _is_new(node) -> bool:
    """``node`` is a new tensor: an operation's result that aliases none of its inputs, or one
    of several such results (``max(dim)``'s values)."""
    if isinstance(node, torch.fx.Node) and node.op == "call_function" and node.target is operator.getitem:
        node = node.args[0]
    return _is_op(node) and _makes_new_tensor(node)


def _makes_new_tensor(node) -> bool:
    """An operation whose results alias none of its inputs (no view, no in-place)."""
    schema = node.target._schema
    return not schema.is_mutable and all(r.alias_info is None for r in schema.returns)


def _out_of_place(target):
    """``aten.logical_and.default`` for ``aten.logical_and_.default``; ``None`` if there is none."""
    name = target.overloadpacket.__name__
    if not name.endswith("_"):
        return None
    op = getattr(getattr(torch.ops.aten, name[:-1], None), target._overloadname, None)
    return None if op is None or op._schema.is_mutable else op


def without_repeats(graph):
    """The graph with each repeated computation done once, and nothing it does not use.
    ``torch.compile`` does that before inductor (AOTAutograd's common-subexpression pass);
    the direct entry this module calls does not. The repeats are a model's own (a scale's
    ``log`` in each ``Normal`` built from it) and its gradient's."""
    try:
        from torch._functorch.compile_utils import fx_graph_cse
    except ImportError:  # torch moved it: inductor compiles the repeats too
        return graph
    graph.graph.eliminate_dead_code()
    return torch.fx.GraphModule(graph, fx_graph_cse(graph.graph))


def with_loops_batched(graph, z0):
    """The graph with a loop's repeated steps batched
    (:mod:`~ppmodels.infer.graphs.loop_batching`), where there are any and the batched graph
    gives the same value at ``z0``, quietly (torch warns where it has no batching rule for an
    operation and loops over the lanes instead); else as it is."""
    try:
        batched = batch_lanes(graph)
        if batched is None:
            return graph
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            same = torch.allclose(batched(z0), graph(z0), rtol=1e-5, atol=1e-6)
    except Exception:  # noqa: BLE001 (an operation torch cannot batch: the steps stay one by one)
        return graph
    return without_repeats(batched) if same and not caught else graph


__all__ = ["functional", "rewrite_in_place_on_unread_tensors", "with_loops_batched", "without_repeats"]
