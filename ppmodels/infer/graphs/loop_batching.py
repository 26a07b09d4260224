"""The steps of a Python loop, recorded one after another, batched back into one computation.

A model written with a loop (``for t in pyro.markov(range(T))``: Pyro's ``hmm.py``, a
recursion over time) leaves the potential's graph one small computation per step: an HMM's
emissions are T copies of ``Normal(locs[x], 1).log_prob(y[t])``, each a dozen operations on a
small tensor. Inductor compiles each copy, and a call runs each as its own loop.

:func:`batch_lanes` finds operations that are the same computation on other inputs (the same
operation, on arguments that are themselves such copies, or the same tensor, or constants of
one shape) and replaces each set of at least :data:`MIN_LANES` of them by one operation on
their inputs stacked along a new first dimension (a lane per copy), written as
``torch.vmap`` of the operation, so that torch's own batching rules say what each operation
means on the stacked inputs. Where a copy's result is read by something that is not batched,
it reads its lane; a running total of copies (``total = total + copy``: Pyro's sum of a loop's
sites' log-probabilities) is one sum over their lanes. Copies are independent by
construction: their structures are equal trees, and one copy cannot contain another.
"""

from __future__ import annotations

import heapq
import operator

import torch
import torch.utils._pytree as pytree

from .recorder import value_key

#: sets of fewer copies are left as they are
MIN_LANES = 8


def batch_lanes(graph: torch.fx.GraphModule) -> torch.fx.GraphModule | None:
    """A new graph module computing what ``graph`` (a function of one tensor, each node's
    traced value in ``meta["val"]``) computes, with its repeated per-step computations
    batched; ``None`` where there are none."""
    classes = _classes(graph.graph)
    if not classes:
        return None
    return _Batcher(graph, classes).run()


class _Batcher:
    """Writes the new graph: each node not batched copied, each class as one operation, in an
    order where every operation comes after its inputs (a class after all its copies' inputs)."""

    def __init__(self, graph, classes):
        self.old, self.classes = graph, classes
        self.out, self.root = torch.fx.Graph(), torch.nn.Module()
        self.env, self.batched, self.lane_of = {}, {}, {}  # old node -> new; class -> new; old -> (class, lane)
        self.member_class = {m: c for c, members in classes.items() for m in members}
        self.constants = 0
        self.sums, self.skipped = _accumulations(graph.graph, self.member_class)

    def run(self):
        for unit in self._order():
            if isinstance(unit, torch.fx.Node):
                if unit in self.skipped:  # a partial sum of an accumulation, read only by the next
                    continue
                self.env[unit] = self._summed(unit) or self._gathered(unit) or self.out.node_copy(unit, self._read)
                if unit.op == "get_attr":
                    setattr(self.root, unit.target, getattr(self.old, unit.target))
            else:
                members = self.classes[unit]
                self.batched[unit] = self._batched(members)
                for lane, m in enumerate(members):
                    self.lane_of[m] = (unit, lane)
        return torch.fx.GraphModule(self.root, self.out)

    def _unit(self, node):
        return self.member_class.get(node, node)

    def _order(self):
        """The units (nodes, class ids) topologically sorted, the graph's order where free."""
        index = {node: i for i, node in enumerate(self.old.graph.nodes)}
        needs, users, rank = {}, {}, {}
        for node in self.old.graph.nodes:
            unit = self._unit(node)
            rank[unit] = min(rank.get(unit, index[node]), index[node])
            deps = needs.setdefault(unit, set())
            for n in node.all_input_nodes:
                if self._unit(n) != unit:
                    deps.add(self._unit(n))
        for unit, deps in needs.items():
            for d in deps:
                users.setdefault(d, []).append(unit)
        waiting = {unit: len(deps) for unit, deps in needs.items()}
        ready = [(rank[u], i, u) for i, u in enumerate(needs) if not waiting[u]]
        heapq.heapify(ready)
        order, counter = [], len(needs)
        while ready:
            _, _, unit = heapq.heappop(ready)
            order.append(unit)
            for user in users.get(unit, ()):
                waiting[user] -= 1
                if not waiting[user]:
                    counter += 1
                    heapq.heappush(ready, (rank[user], counter, user))
        if len(order) != len(needs):
            raise ValueError("the batched classes depend on each other")  # not expected: the caller keeps the graph
        return order

    def _summed(self, node):
        """The last ``add`` of an accumulation of copies (``total = total + copy``, as Pyro sums
        a loop's sites' log-probabilities) as its start plus the sum of the copies' lanes."""
        if node not in self.sums:
            return None
        start, items = self.sums[node]
        total = self.out.call_function(torch.ops.aten.sum.dim_IntList, (self._stacked(items), [0]))
        return self.out.call_function(torch.ops.aten.add.Tensor, (self._read(start), total))

    def _gathered(self, node):
        """A ``stack`` of batched copies (a chain's steps, stacked for its scan) as their lanes in
        order (:meth:`_in_order`), moved to the stack's dimension; ``None`` for anything else."""
        if node.target is not torch.ops.aten.stack.default or node.kwargs:
            return None
        items, dim = node.args[0], node.args[1] if len(node.args) > 1 else 0
        places = [self.lane_of.get(item) for item in items]
        if not items or any(p is None for p in places):
            return None
        whole = self._in_order(places)
        rank = node.meta["val"].dim()
        dim = dim % rank
        if dim:
            axes = list(range(1, rank))
            axes.insert(dim, 0)
            whole = self.out.call_function(torch.ops.aten.permute.default, (whole, axes))
        return whole

    def _in_order(self, places):
        """The lanes ``places`` ((class, lane) pairs) stacked in that order: their classes'
        batched results, put together where there are several, reordered where needed."""
        order = list(dict.fromkeys(c for c, _ in places))
        offset, start = {}, 0
        for c in order:
            offset[c] = start
            start += len(self.classes[c])
        parts = [self.batched[c] for c in order]
        whole = parts[0] if len(parts) == 1 else self.out.call_function(torch.ops.aten.cat.default, (parts,))
        lanes = [offset[c] + lane for c, lane in places]
        if lanes != list(range(start)):
            index = self._constant(torch.tensor(lanes))
            whole = self.out.call_function(torch.ops.aten.index_select.default, (whole, 0, index))
        return whole

    def _read(self, node):
        """The new graph's value for an old node read by an operation that is not batched: a
        lane of its class's batched result (made once), or the node's copy."""
        if node in self.env:
            return self.env[node]
        c, lane = self.lane_of[node]
        self.env[node] = self.out.call_function(torch.ops.aten.select.int, (self.batched[c], 0, lane))
        return self.env[node]

    def _batched(self, members):
        flat_args = [pytree.tree_flatten((m.args, m.kwargs)) for m in members]
        template, spec = flat_args[0]
        lane_inputs, shared_inputs, in_lanes, in_shared = [], [], [], []
        for position, value in enumerate(template):
            if not isinstance(value, torch.fx.Node):
                continue  # a literal, the same in every copy (their keys are equal)
            values = [f[0][position] for f in flat_args]
            if all(v is value for v in values):
                shared_inputs.append(self._read(value))
                in_shared.append(position)
            else:
                lane_inputs.append(self._stacked(values))
                in_lanes.append(position)
        if not lane_inputs:  # the same computation on the same inputs (no CSE before): once, for every lane
            flat = list(template)
            for position, value in zip(in_shared, shared_inputs):
                flat[position] = value
            args, kwargs = pytree.tree_unflatten(flat, spec)
            once = self.out.call_function(members[0].target, args, kwargs)
            shape = list(members[0].meta["val"].shape)
            once = self.out.call_function(torch.ops.aten.unsqueeze.default, (once, 0))
            return self.out.call_function(torch.ops.aten.expand.default, (once, [len(members), *shape]))
        call = Lanes(members[0].target, spec, list(template), in_lanes, in_shared)
        return self.out.call_function(call, (*lane_inputs, *shared_inputs))

    def _stacked(self, values):
        """The copies' arguments at one position, stacked: lanes of batched copies
        (:meth:`_in_order`), a new constant, or a stack."""
        places = [self.lane_of.get(v) for v in values]
        if all(p is not None for p in places):
            return self._in_order(places)
        if all(v.op == "get_attr" for v in values):
            return self._constant(torch.stack([getattr(self.old, v.target) for v in values]))
        return self.out.call_function(torch.ops.aten.stack.default, ([self._read(v) for v in values],))

    def _constant(self, tensor):
        name = f"_lanes{self.constants}"
        self.constants += 1
        setattr(self.root, name, tensor)
        return self.out.get_attr(name)


class Lanes:
    """One operation on every lane: ``torch.vmap`` of it over the stacked arguments."""

    __name__ = "lanes"

    def __init__(self, op, spec, template, in_lanes, in_shared):
        self.op, self.spec, self.template = op, spec, template
        self.in_lanes, self.in_shared = in_lanes, in_shared

    def __call__(self, *inputs):
        shared = inputs[len(self.in_lanes) :]

        def one(*lane):
            flat = list(self.template)
            for position, value in zip(self.in_lanes, lane):
                flat[position] = value
            for position, value in zip(self.in_shared, shared):
                flat[position] = value
            args, kwargs = pytree.tree_unflatten(flat, self.spec)
            return self.op(*args, **kwargs)

        return torch.vmap(one)(*inputs[: len(self.in_lanes)])

    def __repr__(self):
        return f"lanes({self.op})"


def _accumulations(graph, member_class):
    """``{last add: (start, copies)}`` for each chain of at least :data:`MIN_LANES` additions
    ``total = total + copy`` (either order) of copies of one class, all of one shape, each
    partial total read only by the next addition; and the set of those partial totals."""

    def link(node):
        """(the running total, the copy) where ``node`` adds a copy to a total of its shape."""
        if node.op != "call_function" or node.target is not torch.ops.aten.add.Tensor or node.kwargs:
            return None
        if len(node.args) != 2 or not all(isinstance(a, torch.fx.Node) for a in node.args):
            return None
        shapes = [getattr(v.meta.get("val"), "shape", None) for v in (node, *node.args)]
        if shapes[0] is None or shapes.count(shapes[0]) != 3:
            return None
        a, b = node.args
        if b in member_class and a not in member_class:
            return a, b
        if a in member_class and b not in member_class:
            return b, a
        return None

    sums, skipped = {}, set()
    for node in reversed(list(graph.nodes)):
        if node in skipped or link(node) is None:
            continue
        c = member_class[link(node)[1]]
        links, copies, current = [], [], node
        while (step := link(current)) is not None and member_class[step[1]] == c:
            total, copy = step
            links.append(current)
            copies.append(copy)
            if len(total.users) != 1:
                break
            current = total
        if len(links) >= MIN_LANES:
            sums[node] = (total, copies[::-1])
            skipped.update(links[1:])
    return sums, skipped


def _classes(graph) -> dict:
    """Class id -> the operations (in the graph's order) that are the same computation, for
    classes of at least :data:`MIN_LANES`."""
    keys, intern, members = {}, {}, {}
    for node in graph.nodes:
        key = _key(node, keys)
        keys[node] = intern.setdefault(key, len(intern))
        if _batchable(node):
            members.setdefault(keys[node], []).append(node)
    return {c: m for c, m in members.items() if len(m) >= MIN_LANES}


def _key(node, keys):
    val = node.meta.get("val")
    if node.op == "get_attr" and isinstance(val, torch.Tensor):
        return ("constant", val.dtype, tuple(val.shape), tuple(val.stride()), val.device)
    if not _batchable(node):
        return ("node", node)
    flat, spec = pytree.tree_flatten((node.args, node.kwargs))
    arguments = tuple(
        ("input", keys[a]) if isinstance(a, torch.fx.Node) else (value_key(a) or ("unhashable", id(a))) for a in flat
    )
    return (node.target, str(spec), arguments, val.dtype, tuple(val.shape))


def _batchable(node) -> bool:
    """An aten operation with one tensor result that neither writes nor draws."""
    if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
        return False
    if node.target is operator.getitem or node.target._schema.is_mutable:
        return False
    if torch.Tag.nondeterministic_seeded in node.target.tags:
        return False
    return isinstance(node.meta.get("val"), torch.Tensor)


__all__ = ["Lanes", "MIN_LANES", "batch_lanes"]
