"""A model's potential energy, compiled: the negative log joint in the unconstrained space and its
gradient, as one function of a flat vector.

Pyro builds the potential (:func:`pyro.infer.mcmc.util.initialize_model`: the transforms to the
unconstrained space with their Jacobians, discrete sites summed out by enumeration, flat
priors). Every leapfrog step of HMC or NUTS evaluates it and its gradient; eagerly that is
Pyro's messengers, a trace and the autograd engine at every step. Here the value and the
gradient are traced once into one graph whose only input is the flat vector: the potential
alone, each repeated computation kept once, then that graph's value and gradient through
``torch.autograd.grad`` (an enumerated Markov chain summed out by a parallel scan,
:mod:`~ppmodels.infer.density.markov_scan`). ``"inductor"`` compiles that graph to C++
kernels, ``"graph"`` runs it with TorchScript (:mod:`ppmodels.infer.graphs.backends`),
``None`` stays eager.

The graph bakes in the model's arguments and their shapes: a :class:`Potential` belongs to one
``(model, args)`` and is never reused for others. A model that cannot be traced (data-dependent
Python control flow, ``.item()``) or whose compiled value or gradient disagree with eager Pyro
at a few points falls back to eager, and :attr:`Potential.fallback` says why.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pyro
import torch
from pyro.infer.mcmc.util import initialize_model

from ..._validate import check_choice
from ..errors import EagerFallbackWarning
from ..graphs.backends import COMPILE_MODES, inductor, mode_for_size, torchscript
from ..graphs.decompositions import inductor_decompositions
from ..graphs.rewrites import functional, with_loops_batched, without_repeats
from ..graphs.tracing import (
    GraphUnsupported,
    describe_failure,
    detach_constants,
    record_or_trace,
    trace,
    watch_custom_backwards,
)
from ..initialization import init_to_uniform
from ..program.sites import plate_nesting
from .markov_scan import install as install_chain
from .support import improper_posterior, unread_sites

#: compiled and eager potentials must agree this closely (relative, float32 arithmetic)
TOLERANCE = 1e-3


class Potential:
    """``potential(z) -> (U, dU/dz)`` for a flat numpy vector ``z`` in the unconstrained space.

    :ivar names, shapes, sizes: the latent sites' layout in ``z``.
    :ivar initial: ``(num_chains, dim)`` float64 starting points, from ``init_strategy``.
    :ivar mode: the compile mode in use (``None`` when eager, also after a fallback).
    :ivar fallback: why the compiled potential was not used (``None`` if it is).
    :ivar compile_seconds: time to trace, compile and check it.
    :ivar note: why the mode differs from the one asked for (a graph too large for inductor).
    :ivar chain: the :class:`~ppmodels.infer.density.markov_scan.ChainEvaluator` summing an
        enumerated Markov chain (``pyro.markov``) out by a parallel scan, or ``None`` (Pyro's
        contraction).
    :ivar forward_graph: the traced potential alone (before its gradient), or ``None`` where
        it was traced in one stage; :ivar traced_graph: the traced value-and-gradient graph
        before compiling. :class:`~ppmodels.infer.density.many_points.BatchedPotential` maps them
        over chains.
    """

    def __init__(self, model, args=(), kwargs=None, *, compile="inductor", max_plate_nesting=None, num_chains=1,
                 init_strategy=init_to_uniform, transforms=None):  # fmt: skip
        if compile is not None:
            check_choice(compile, "compile", list(COMPILE_MODES))  # before the model runs
        if max_plate_nesting is None:
            max_plate_nesting = plate_nesting(model, args, kwargs)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*max_plate_nesting.*")
            try:
                init, self._potential_fn, self.transforms, self.prototype = initialize_model(
                    model,
                    model_args=tuple(args),
                    model_kwargs=dict(kwargs or {}),
                    max_plate_nesting=max_plate_nesting,
                    num_chains=num_chains,
                    init_strategy=init_strategy,
                    transforms=transforms,
                )
            except RuntimeError as error:  # autograd's words for a site the density does not read
                unread = unread_sites(model, args, kwargs) if "not have been used in the graph" in str(error) else []
                if not unread:
                    raise
                raise improper_posterior({name: [()] for name in unread}) from error
        self.names = list(init)
        lead = 1 if num_chains > 1 else 0
        self.shapes = [tuple(init[n].shape[lead:]) for n in self.names]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.dim = sum(self.sizes)
        first = init[self.names[0]] if self.names else torch.zeros(())
        self.dtype, self.device = first.dtype, first.device
        self._on_cpu = self.device.type == "cpu"
        self._np_dtype = torch.empty((), dtype=self.dtype).numpy().dtype
        flat = [init[n].reshape(num_chains, -1) if lead else init[n].reshape(1, -1) for n in self.names]
        self.initial = torch.cat(flat, -1).detach().to("cpu", torch.float64).numpy() if flat else np.zeros((1, 0))
        self.mode, self.fallback, self.compile_seconds = None, None, 0.0
        self.note, self.nodes = None, 0
        self.chain = None
        if self.dim:  # an enumerated Markov chain summed out by a parallel scan, where Pyro agrees
            self.chain = install_chain(self._potential_fn, self._unflatten(self.as_tensor(self.initial[0])))
        self._graph = None
        self.traced_graph = self.forward_graph = None
        if compile is not None:
            self.compile(compile)

    def compile(self, mode: str) -> Potential:
        """Trace and compile the potential with ``mode`` (``"inductor"`` or ``"graph"``), once.
        Whatever fails while it is traced, compiled or first run (a model a graph cannot hold,
        a compiler error, a torch whose internals moved), it stays eager, :attr:`fallback`
        says why and an :class:`~ppmodels.infer.errors.EagerFallbackWarning` says so once.
        Returns ``self``."""
        check_choice(mode, "compile", list(COMPILE_MODES))
        if self._graph is not None or self.fallback is not None:
            raise RuntimeError(f"this potential is already compiled (mode {self.mode!r}, fallback {self.fallback!r})")
        if not self.dim:
            return self
        t0 = time.perf_counter()
        try:
            self._graph, self.mode = self._compiled(mode)
        except Exception as error:  # noqa: BLE001 (the contract: any failure to trace, compile or run it is eager)
            self.fallback = describe_failure(error)
            warnings.warn(
                f"compile={mode!r}: the log density runs eagerly, with the same answers, more slowly: "
                f"{self.fallback} (torch {torch.__version__})",
                EagerFallbackWarning,
                stacklevel=2,
            )
        self.compile_seconds = time.perf_counter() - t0
        return self

    # -- the function --------------------------------------------------------------------------
    def _unflatten(self, z):
        parts = torch.split(z, self.sizes, -1)
        return {n: p.reshape(s) for n, p, s in zip(self.names, parts, self.shapes)}

    def value_and_grad(self, z: torch.Tensor) -> tuple:
        """Pyro's potential at ``z`` (a tensor that requires grad) and its gradient, as autograd
        runs them (what the one-stage trace records)."""
        value = self._potential_fn(self._unflatten(z))
        (grad,) = torch.autograd.grad(value, z)
        return value.detach(), grad

    def eager(self, z: torch.Tensor) -> tuple:
        """Pyro's potential and its gradient at ``z`` (a tensor), eagerly."""
        with torch.enable_grad(), pyro.validation_enabled(False):
            return self.value_and_grad(z.detach().requires_grad_(True))

    def as_tensor(self, z) -> torch.Tensor:
        """``z`` (numpy or a tensor) as a tensor of the potential's dtype, on its device."""
        return torch.as_tensor(z, dtype=self.dtype).to(self.device)

    def __call__(self, z: np.ndarray) -> tuple:
        """``(U, grad)`` at ``z``; ``(inf, nan)`` where the model's own linear algebra fails
        there (a Cholesky of a matrix that is not positive definite at an extreme point of a
        trajectory), which the sampler treats as a divergence, as Pyro's HMC does."""
        try:
            if self._graph is None:
                value, grad = self.eager(self.as_tensor(z))
                return float(value), grad.to("cpu", torch.float64).numpy()
            return self._run(self._graph, z)
        except torch.linalg.LinAlgError:
            return math.inf, np.full(self.dim, np.nan)

    def _run(self, graph, z: np.ndarray) -> tuple:
        """A compiled graph's ``(U, grad)`` at ``z``, as every call takes it: no autograd
        history (the graph's input does not require grad and its constants are detached)."""
        t = torch.from_numpy(z.astype(self._np_dtype))
        if self._on_cpu:
            value, grad = graph(t)
            value, grad = float(value), grad.numpy().astype(np.float64)
        else:
            value, grad = graph(t.to(self.device))
            value, grad = float(value), grad.cpu().numpy().astype(np.float64)
        if value != value:  # a compiled Cholesky that failed gives NaN where eager raises: outside the domain
            return math.inf, np.full(self.dim, np.nan)
        return value, grad

    # -- compiling -----------------------------------------------------------------------------
    def _compiled(self, mode):
        z0 = self.as_tensor(self.initial[0])
        decompositions = inductor_decompositions() if mode == "inductor" else None
        try:
            graph = self._traced_in_two_stages(z0, decompositions)
        except Exception:  # noqa: BLE001 (the forward graph's own gradient could not be traced: the model's, as before)
            graph = trace(lambda z: self.value_and_grad(z), z0.detach().requires_grad_(True), decompositions)
        if mode == "inductor":
            graph = without_repeats(functional(graph, z0, decompositions))
        graph = detach_constants(graph)
        self.traced_graph = graph
        self.nodes = len(graph.graph.nodes)
        mode, self.note = mode_for_size(mode, self.nodes)
        if mode == "inductor":
            graph, slower = inductor(graph, z0)
            if slower:
                self.note = f"{self.note}; {slower}" if self.note else slower
        else:
            graph = torchscript(graph, z0)
        self._check(graph, z0)
        return graph, mode

    def _traced_in_two_stages(self, z0, decompositions):
        """The value and the gradient traced in two stages: the potential alone, each repeated
        computation in it kept once; then that graph's value and gradient. Traced in one stage
        (the model's gradient, as autograd runs it), each use of a shared factor has its own
        backward: an enumerated HMM's transition factor, the same at every step, is
        differentiated once per step. In two, its gradients are summed and then differentiated
        once. A model that applies a ``torch.autograd.Function`` (Pyro's ``safe_log`` in its
        contraction of enumerated sites, a user's own derivative) is refused here: a graph of
        its forward's operations would be differentiated as they are, not by its backward."""

        def potential(z):
            return self._potential_fn(self._unflatten(z))

        with watch_custom_backwards() as seen:
            forward = record_or_trace(potential, z0)
        if seen:  # their own backward, which the forward's aten operations do not carry
            raise GraphUnsupported(f"the model applies its own autograd.Function ({', '.join(sorted(set(seen)))})")
        forward = with_loops_batched(without_repeats(functional(forward, z0, None)), z0)
        self.forward_graph = forward

        def value_and_grad(z):
            value = forward(z)
            (grad,) = torch.autograd.grad(value, z)
            return value.detach(), grad

        return record_or_trace(value_and_grad, z0.detach().requires_grad_(True), decompositions, fold=False)

    def _check(self, graph, z0):
        """The compiled potential must equal eager Pyro's at the initial point and at two points
        around it (a graph that baked in one branch of a data-dependent ``if`` differs)."""
        generator = torch.Generator().manual_seed(0)
        for scale in (0.0, 0.5, 2.0):
            noise = torch.randn(z0.shape, generator=generator, dtype=z0.dtype).to(z0.device)
            z = z0 + scale * noise
            try:
                value, grad = self.eager(z)
            except torch.linalg.LinAlgError:  # outside the model's domain there: no test
                continue
            if not (torch.isfinite(value) and torch.isfinite(grad).all()):
                continue
            value_c, grad_c = self._run(graph, z.detach().cpu().numpy())  # as every call runs it
            value, grad = float(value), grad.to("cpu", torch.float64).numpy()
            scale_v = TOLERANCE * (1 + abs(value))
            scale_g = TOLERANCE * (1 + np.abs(grad).max())
            if abs(value_c - value) > scale_v or np.abs(grad_c - grad).max() > scale_g:
                raise GraphUnsupported(
                    f"the compiled potential differs from Pyro's at a test point (value {float(value_c):.6g} against "
                    f"{float(value):.6g}, or in its gradient): the model's Python control flow depends on the "
                    "values of its latent variables, which a graph cannot follow, or the compiler got the graph wrong "
                    "(compile='graph' is the other compiler)"
                )

    # -- draws ---------------------------------------------------------------------------------
    def constrain(self, z: np.ndarray) -> dict:
        """Flat unconstrained draws ``(..., dim)`` -> ``{site: (..., *shape)}`` in each site's
        support."""
        t = torch.as_tensor(z, dtype=self.dtype).to(self.device)
        lead = t.shape[:-1]
        parts = torch.split(t, self.sizes, -1)
        out = {}
        for n, p, s in zip(self.names, parts, self.shapes):
            value = p.reshape(*lead, *s)
            transform = self.transforms.get(n)
            out[n] = transform.inv(value) if transform is not None else value
        return out

    def labels(self) -> list:
        """One name per element of ``z``: the site, and ``[j]`` for an element of a site with several."""
        return [f"{n}[{j}]" if size > 1 else n for n, size in zip(self.names, self.sizes) for j in range(size)]


__all__ = ["Potential", "TOLERANCE"]
