"""An enumerated Markov chain summed out by a parallel scan, for the potential energy.

A model written the way Pyro's ``hmm.py`` writes it (``for t in pyro.markov(range(T))``, each
state ``x_t`` enumerated) gives Pyro's evaluator (:class:`pyro.infer.mcmc.util.TraceEinsumEvaluator`)
a factor per step; its contraction sums the states out one step after another. Traced into
a graph, that is T small steps forward and T backward, each its own kernel.

:class:`ChainEvaluator` recognises the chain in the factors themselves (each enumerated
variable appears only with its predecessor and its successor) and sums the states out as
:class:`pyro.distributions.DiscreteHMM` does: one matrix per step, stacked, multiplied in log
space as a balanced tree (about log2(T) batched products). The result is the same number,
summed in another order; anything that is not such a chain (a variable that reaches two steps
back, states of different sizes, an enumerated variable local to an inner plate, factors
broadcast over a plate) is left to Pyro's contraction. :func:`install` puts it in front of
Pyro's evaluator only where it agrees with it on the model's first point.

With it, the potential traced in two stages (the transition factor, the same at every
step, differentiated once: :class:`~ppmodels.infer.density.potential.Potential`) and the
emissions' per-step copies batched (:mod:`ppmodels.infer.graphs.loop_batching`), a
``pyro.markov`` HMM's graph is about the size of a ``DiscreteHMM``'s.
"""

from __future__ import annotations

import torch

#: chains of fewer enumerated variables are left to Pyro's contraction (already short)
MIN_CHAIN = 3


class ChainEvaluator:
    """Pyro's evaluator's ``log_prob(model_trace)``, with the enumerated variables summed out by
    a parallel scan where they form one Markov chain (see the module's docstring); Pyro's
    contraction otherwise. :ivar used: whether the last call took the scan."""

    def __init__(self, pyro_evaluator):
        self.pyro = pyro_evaluator
        self.used = False

    def log_prob(self, model_trace):
        self.used = False
        pyro_ = self.pyro
        if not pyro_.has_enumerable_sites:
            return pyro_.log_prob(model_trace)
        factors = pyro_._get_log_factors(model_trace)  # {ordinal: [packed log-prob tensors]}
        plan = _plan(factors, pyro_._enum_dims)
        if plan is None:
            return pyro_.log_prob(model_trace)
        self.used = True
        return _sum_chain(*plan)


def install(potential_fn, point) -> ChainEvaluator | None:
    """Put a :class:`ChainEvaluator` in front of the evaluator of Pyro's ``potential_fn`` (from
    :func:`pyro.infer.mcmc.util.initialize_model`) when the model's enumerated variables form a
    chain at ``point`` (a dict of unconstrained values) and the scan's potential equals Pyro's
    there (relative 1e-4). Returns it, or ``None`` where it does not apply (no chain, a Pyro
    whose evaluator lacks what it reads) and Pyro's evaluator stays."""
    maker = getattr(potential_fn, "__self__", None)
    evaluator = getattr(maker, "trace_prob_evaluator", None)
    needed = ("has_enumerable_sites", "_get_log_factors", "_enum_dims")
    if evaluator is None or not all(hasattr(evaluator, n) for n in needed):
        return None
    if not evaluator.has_enumerable_sites:
        return None
    chain = ChainEvaluator(evaluator)
    with torch.no_grad():
        maker.trace_prob_evaluator = chain
        try:
            mine = potential_fn(point)
        except Exception:  # noqa: BLE001 (the scan could not run on this trace: Pyro's contraction stays)
            chain.used = False
        finally:
            maker.trace_prob_evaluator = evaluator
        if not chain.used:
            return None
        theirs = potential_fn(point)
    if not torch.isclose(mine, theirs, rtol=1e-4, atol=1e-4):
        return None
    maker.trace_prob_evaluator = chain
    return chain


def _plan(factors, enum_symbols):
    """The arguments of :func:`_sum_chain` (the factors without states; each variable's own
    factors and those with its predecessor, in the chain's order; the variables' symbols; the
    plates' symbols and sizes; the number of states), or ``None`` where the factors are not one
    chain of at least :data:`MIN_CHAIN` enumerated variables, all with the same number of
    states, sharing one set of plates."""
    constant, carrying, ordinal = [], [], None
    for key, tensors in factors.items():
        for tensor in tensors:
            dims = getattr(tensor, "_pyro_dims", None)
            if dims is None or len(dims) != tensor.dim():
                return None
            own_plates = frozenset(d for d in dims if d not in enum_symbols)
            if own_plates != frozenset(key):  # broadcast over a plate of its ordinal: Pyro's rules
                return None
            if len(own_plates) == len(dims):
                constant.append(tensor)
                continue
            if ordinal is None:
                ordinal = key
            if key != ordinal:  # an enumerated variable inside an inner plate
                return None
            carrying.append(tensor)
    order = list(dict.fromkeys(d for tensor in carrying for d in tensor._pyro_dims if d in enum_symbols))
    if len(order) < MIN_CHAIN:
        return None
    position = {d: i for i, d in enumerate(order)}
    unary, pairwise = [[] for _ in order], [[] for _ in order]
    size, plate_sizes = None, {}
    for tensor in carrying:
        states = [d for d in tensor._pyro_dims if d in enum_symbols]
        for d, n in zip(tensor._pyro_dims, tensor.shape):
            if d in enum_symbols:
                if size not in (None, n):
                    return None
                size = n
            elif plate_sizes.setdefault(d, n) != n:
                return None
        steps = sorted(position[d] for d in states)
        if len(steps) == 1:
            unary[steps[0]].append(tensor)
        elif len(steps) == 2 and steps[1] - steps[0] == 1:
            pairwise[steps[1]].append(tensor)
        else:
            return None
    if any(not p for p in pairwise[1:]):  # two chains, not one
        return None
    plates = sorted(plate_sizes)
    return constant, unary, pairwise, order, plates, [plate_sizes[p] for p in plates], size


def _aligned(tensor, dims):
    """``tensor`` (its dimensions named by ``tensor._pyro_dims``) with the dimensions ``dims``
    in that order, size 1 where it has none."""
    own = tensor._pyro_dims
    present = [d for d in dims if d in own]
    out = tensor.permute([own.index(d) for d in present]) if present else tensor
    return out.reshape([tensor.shape[own.index(d)] if d in own else 1 for d in dims])


def _sum_chain(constant, unary, pairwise, order, plates, plate_sizes, size):
    """log of the sum over the chain's states of the product of its factors, times the
    factors without states, summed over the plates."""
    total = sum(t.sum() for t in constant) if constant else 0.0
    shape = [*plate_sizes, size]
    first = sum(_aligned(t, [*plates, order[0]]) for t in unary[0]) if unary[0] else None
    steps = []
    for i in range(1, len(order)):
        dims = [*plates, order[i - 1], order[i]]
        step = sum(_aligned(t, dims) for t in pairwise[i])
        if unary[i]:
            step = step + sum(_aligned(t, [*plates, order[i]]) for t in unary[i]).unsqueeze(-2)
        steps.append(step.expand([*plate_sizes, size, size]))
    product = _tree_product(torch.stack(steps))
    if first is not None:
        product = product + first.expand(shape).unsqueeze(-1)
    return total + product.logsumexp((-2, -1)).sum()


def _tree_product(mats):
    """The log-space product ``mats[0] @ mats[1] @ ...`` (over the first dimension) as a
    balanced tree of batched products: about log2(len) steps, each a broadcast sum and a
    ``logsumexp`` (the states are few; inductor fuses them)."""
    while mats.shape[0] > 1:
        even = mats.shape[0] // 2 * 2
        a, b = mats[:even].reshape(even // 2, 2, *mats.shape[1:]).unbind(1)
        pairs = (a.unsqueeze(-1) + b.unsqueeze(-3)).logsumexp(-2)
        mats = torch.cat([pairs, mats[even:]]) if even < mats.shape[0] else pairs
    return mats[0]


__all__ = ["ChainEvaluator", "MIN_CHAIN", "install"]
