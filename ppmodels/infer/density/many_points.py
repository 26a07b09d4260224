"""A model's potential for many chains at once: one call evaluates every chain's point.

A many-chain sampler (:mod:`ppmodels.infer.sampling.chees`) moves all its chains together, so
it asks for the potential and its gradient at ``chains`` points at a time. On a small model a
call of the compiled potential is mostly fixed cost (inductor's wrapper, the conversion to
numpy), so one call for all the chains costs little more than one for a single chain.

:class:`BatchedPotential` takes the graph :class:`~ppmodels.infer.density.potential.Potential` traced
for one chain and maps it over a leading chain dimension with ``torch.vmap`` (torch's own
batching rules say what each operation means on a batch), records that as one graph, and
compiles it as the single-chain graph was compiled. Where the graph cannot be mapped (an
operation without a batching rule, a value read out of a tensor), or the mapped graph does not
agree with the single-chain one, it evaluates the chains one after another and :attr:`note`
says why.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..graphs.backends import inductor, mode_for_size, torchscript
from ..graphs.decompositions import inductor_decompositions
from ..graphs.recorder import record
from ..graphs.rewrites import functional, without_repeats
from ..graphs.tracing import describe_failure, detach_constants, trace
from .potential import TOLERANCE, Potential


class BatchedPotential:
    """``potential(Z) -> (U, dU/dZ)`` for ``Z`` of shape ``(chains, dim)``: ``U`` of shape
    ``(chains,)``; ``inf`` (and a NaN gradient) for a chain whose point is outside the model's
    domain (its own Cholesky fails there), as the single-chain potential gives.

    :ivar mode: the compile mode of the batched graph, or ``None`` (chains one at a time).
    :ivar note: why the chains are evaluated one at a time, or why the batched graph is not
        compiled by inductor (its size), or ``None``.
    :ivar compile_seconds: time to map, record, compile and check the batched graph.
    """

    def __init__(self, potential: Potential, chains: int, mode: str | None = None):
        self.single, self.chains, self.dim = potential, chains, potential.dim
        self.mode, self.note, self._graph = None, None, None
        mode = potential.mode if mode is None else mode
        start = time.perf_counter()
        if potential.mode is None:
            self.note = "the potential is not compiled, so each chain is evaluated on its own"
        else:
            try:
                self._graph, self.mode = self._compiled(mode)
            except Exception as error:  # noqa: BLE001 (no batched graph: each chain on its own, and the note says why)
                cause = f"{describe_failure(error)}; torch {torch.__version__}"
                self.note = f"the potential could not be mapped over chains ({cause}): each chain is evaluated alone"
        self.compile_seconds = time.perf_counter() - start

    def __call__(self, z: np.ndarray) -> tuple:
        if self._graph is not None:
            try:
                value, grad = self._run(self._graph, z)
            except torch.linalg.LinAlgError:  # one chain outside the domain: find which, one by one
                return self._one_by_one(z)
            outside = np.isnan(value)  # mapped over chains, a failed Cholesky leaves NaN, not an error
            if outside.any():
                value[outside], grad[outside] = math.inf, math.nan
            return value, grad
        return self._one_by_one(z)

    def _run(self, graph, z):
        """The batched graph's ``(U, grad)`` at the rows of ``z``, as every call takes it."""
        value, grad = graph(self.single.as_tensor(z))
        return value.to("cpu", torch.float64).numpy(), grad.to("cpu", torch.float64).numpy()

    def _one_by_one(self, z):
        values, grads = np.empty(len(z)), np.empty(z.shape)
        for i, point in enumerate(z):
            values[i], grads[i] = self.single(point)
        return values, grads

    # -- the batched graph -------------------------------------------------------------------------
    def _compiled(self, mode):
        z = torch.as_tensor(self._points(), dtype=self.single.dtype).to(self.single.device)
        decompositions = inductor_decompositions() if mode == "inductor" else None
        forward, plain = self.single.forward_graph, self.single.traced_graph
        if forward is not None:  # the potential alone, mapped; its gradient, of the sum over chains

            def value_and_grad(batch):
                value = torch.vmap(forward)(batch)
                (grad,) = torch.autograd.grad(value.sum(), batch)
                return value.detach(), grad

            graph = record(value_and_grad, z.detach().requires_grad_(True), decompositions, fold=False)
        else:  # traced in one stage (the model's own autograd.Function): the value-and-gradient graph, mapped
            z0 = z[0].detach().requires_grad_(True)
            if self.single.mode == "inductor":  # its decompositions leave operations vmap cannot batch: trace without
                plain = trace(lambda point: self.single.value_and_grad(point), z0)
            plain = functional(plain, z0, None)  # in-place operations (clamp_) have no batching rule
            with torch.no_grad():
                graph = record(torch.vmap(plain), z, decompositions)
        if mode == "inductor":
            graph = without_repeats(functional(graph, z, decompositions))
        graph = detach_constants(graph)
        mode, self.note = mode_for_size(mode, len(graph.graph.nodes))
        if mode == "inductor":
            graph, _ = inductor(graph, z)
        else:
            graph = torchscript(graph, z)
        self._check(graph)
        return graph, mode

    def _points(self):
        """The chains' initial points, and more around them where there are fewer than chains."""
        initial = self.single.initial
        generator = np.random.default_rng(0)
        rows = [initial[i % len(initial)] + (i >= len(initial)) * generator.standard_normal(self.dim)
                for i in range(self.chains)]  # fmt: skip
        return np.stack(rows)

    def _check(self, graph):
        """The batched graph must give each chain what the single-chain one gives it."""
        generator = np.random.default_rng(1)
        for scale in (0.0, 0.5):
            z = self._points() + scale * generator.standard_normal((self.chains, self.dim))
            value, grad = self._run(graph, z)  # as every call runs it
            for i in range(self.chains):
                u, g = self.single(z[i])
                if not (math.isfinite(u) and np.isfinite(g).all()):
                    continue
                if abs(value[i] - u) > TOLERANCE * (1 + abs(u)) or np.abs(grad[i] - g).max() > TOLERANCE * (
                    1 + np.abs(g).max()
                ):
                    raise ValueError(f"chain {i}'s potential mapped over chains is {value[i]:.6g}, alone {u:.6g}")


__all__ = ["BatchedPotential"]
