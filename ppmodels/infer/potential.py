"""A model's potential energy, compiled: the negative log joint in the unconstrained space and its
gradient, as one function of a flat vector.

Pyro builds the potential (:func:`pyro.infer.mcmc.util.initialize_model`: the transforms to the
unconstrained space with their Jacobians, discrete sites summed out by enumeration, flat
priors). Every leapfrog step of HMC or NUTS evaluates it and its gradient; eagerly that is
Pyro's messengers, a trace and the autograd engine at every step. Here the value and the
gradient are traced once into one graph whose only input is the flat vector (``make_fx``: the
potential alone, each repeated computation kept once, then that graph's value and gradient
through ``torch.autograd.grad``; an enumerated Markov chain summed out by a parallel scan,
:mod:`ppmodels.infer.chains`): ``"inductor"`` compiles that graph to C++ kernels (made
functional first, small matrix products, cumulative sums and accumulating index writes
fused; found again in inductor's on-disk cache for the same model and data),
``"graph"`` runs the traced graph with TorchScript (no compiler; also the choice for graphs of
more than :data:`INDUCTOR_MAX_NODES` operations, whose inductor compile was not measured),
``None`` stays eager.

The graph bakes in the model's arguments and their shapes: a :class:`Potential` belongs to one
``(model, args)`` and is never reused for others. A model that cannot be traced (data-dependent
Python control flow, ``.item()``) or whose compiled value or gradient disagree with eager Pyro
at a few points falls back to eager, and :attr:`Potential.fallback` says why.
"""

from __future__ import annotations

import contextlib
import math
import operator
import os
import time
import warnings

import numpy as np
import pyro
import torch
import torch.utils._pytree as pytree
from pyro.infer.mcmc.util import initialize_model

from .._validate import check_choice
from .chains import install as install_chain
from .compiled import GraphUnsupported, _cause, _import_inductor, one_fake_mode, without_support_checks
from .errors import ImproperPosteriorError
from .initialization import init_to_uniform
from .lanes import batch_lanes
from .problem import _prior_trace, plate_nesting
from .recording import record

COMPILE_MODES = ("inductor", "graph")
#: larger graphs are not given to inductor; TorchScript runs them. Inductor's compile time grows
#: with the graph (about 5-8 ms an operation: 11,799 operations, an HMM's 100 steps unrolled
#: before its chain was scanned and its shared factor differentiated once, took about 90 s; the
#: 4,130 they are now, 25 s) and was not measured beyond this
INDUCTOR_MAX_NODES = 20000
#: inductor's compile time per operation of the graph, about, measured (CPU, 2 cores: the
#: 100-step HMM's 11,799 operations took 88 s with the trace, posteriordb's GARCH's 6,565 34 s): a
#: graph larger than LARGE_GRAPH takes minutes, and the user is told so before it starts
INDUCTOR_SECONDS_PER_NODE = 0.008
LARGE_GRAPH = 10000
#: an element whose gradient is zero is flat (the posterior improper along it) only where the
#: potential's value is the same this far away, either way, in the unconstrained space; where
#: all such elements together are not, at most FLAT_SINGLES of them are tried one by one
FLAT_SHIFT = 10.0
FLAT_SINGLES = 64
#: compiled and eager potentials must agree this closely (relative, float32 arithmetic)
TOLERANCE = 1e-3
#: for inductor, a (batched) matrix product of at most this many multiply-adds is written as a
#: broadcast product and a sum (and a cumulative sum or product of at most this many elements
#: times its length as a masked sum or product), which inductor fuses with the operations
#: around it; as a BLAS call it costs about 2 us and splits the graph into separate C++
#: kernels, each one more ``gcc`` run. Pyro's ``DiscreteHMM`` (2 states, 100 steps): compile 11.9 s against 20.7 s, a
#: call 122 us against 193 us; the GP with a Cholesky: 124 us against 146 us
SMALL_MATMUL = 4096
#: on a CPU, a graph whose tensors have at most this many elements is compiled to scalar C++
#: loops, not vectorized ones. Measured on the benchmark's posteriors (one process each):
#: compiles 0.2-1.5 s shorter (blr 1.11 against 1.54 s, the mixture 2.87 against 3.83, the
#: DiscreteHMM 6.3 against 7.8), a call up to 2 us longer (AR(K) 21.9 against 19.8 us) or
#: 5 us shorter (the DiscreteHMM); the GP (a 1,331-element tensor) lost 10 us a call that
#: way, and stays vectorized
SCALAR_KERNELS_UP_TO = 1024
#: on a graph of more than FEW_FUSION_PAIRS_ABOVE operations, inductor's scheduler tries each
#: kernel's fusion with the next FUSION_PAIRS kernels that share a buffer with it, not 64.
#: Measured (one process each): the 100-step HMM's compile 88 s against 108, a call 891 us
#: against 882; posteriordb's GARCH 33.5 s against 36.6, a call 482 us against 486; on the
#: DiscreteHMM and the GP (under 1,000 operations) no change in compile or call
FEW_FUSION_PAIRS_ABOVE = 2000
FUSION_PAIRS = 8


def mode_for_size(mode: str, nodes: int) -> tuple:
    """``(mode, note)`` for a graph of ``nodes`` operations: inductor's compile time grows with
    the graph, so above :data:`INDUCTOR_MAX_NODES` it runs as TorchScript, and above
    :data:`LARGE_GRAPH` a warning says how long the compile will take."""
    if mode != "inductor" or nodes <= LARGE_GRAPH:
        return mode, None
    if nodes > INDUCTOR_MAX_NODES:
        return "graph", (
            f"the potential's graph has {nodes} operations (more than {INDUCTOR_MAX_NODES}: a loop unrolled, "
            "such as an HMM's steps): inductor would take tens of minutes to compile it, so it runs as TorchScript"
        )
    minutes = nodes * INDUCTOR_SECONDS_PER_NODE / 60
    note = (
        f"the potential's graph has {nodes} operations (a loop unrolled: an HMM's steps written with "
        f"pyro.markov, a recursion over time): inductor will take about {minutes:.0f} minutes to compile it. "
        "Where the model has a vectorized form it compiles in seconds: for an HMM, Pyro's DiscreteHMM "
        "distribution (docs/mcmc.md)"
    )
    warnings.warn(f"compiling: {note}", UserWarning, stacklevel=5)
    return mode, note


class Potential:
    """``potential(z) -> (U, dU/dz)`` for a flat numpy vector ``z`` in the unconstrained space.

    :ivar names, shapes, sizes: the latent sites' layout in ``z``.
    :ivar mode: the compile mode in use (``None`` when eager, also after a fallback).
    :ivar fallback: why the compiled potential was not used (``None`` if it is).
    :ivar compile_seconds: time to trace, compile and check it.
    :ivar note: why the mode differs from the one asked for (a graph too large for inductor).
    :ivar chain: the :class:`~ppmodels.infer.chains.ChainEvaluator` summing an enumerated
        Markov chain (``pyro.markov``) out by a parallel scan, or ``None`` (Pyro's contraction).
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
                unread = _unread_sites(model, args, kwargs) if "not have been used in the graph" in str(error) else []
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
            self.chain = install_chain(self._potential_fn, self._unflatten(self._tensor(self.initial[0])))
        self._graph = None
        self._plain = self._forward = None  # the traced graphs, kept for :meth:`batched`
        if compile is not None:
            self.compile(compile)

    def compile(self, mode: str) -> Potential:
        """Trace and compile the potential with ``mode`` (``"inductor"`` or ``"graph"``), once;
        on failure it stays eager and :attr:`fallback` says why. Returns ``self``."""
        check_choice(mode, "compile", list(COMPILE_MODES))
        if self._graph is not None or self.fallback is not None:
            raise RuntimeError(f"this potential is already compiled (mode {self.mode!r}, fallback {self.fallback!r})")
        if not self.dim:
            return self
        t0 = time.perf_counter()
        try:
            self._graph, self.mode = self._compiled(mode)
        except GraphUnsupported as error:
            self.fallback = str(error)
        self.compile_seconds = time.perf_counter() - t0
        return self

    # -- the function --------------------------------------------------------------------------
    def _unflatten(self, z):
        parts = torch.split(z, self.sizes, -1)
        return {n: p.reshape(s) for n, p, s in zip(self.names, parts, self.shapes)}

    def _value_and_grad(self, z):
        value = self._potential_fn(self._unflatten(z))
        (grad,) = torch.autograd.grad(value, z)
        return value.detach(), grad

    def eager(self, z: torch.Tensor) -> tuple:
        """Pyro's potential and its gradient at ``z`` (a tensor), eagerly."""
        with torch.enable_grad(), pyro.validation_enabled(False):
            return self._value_and_grad(z.detach().requires_grad_(True))

    def _tensor(self, z):
        return torch.as_tensor(z, dtype=self.dtype).to(self.device)

    def __call__(self, z: np.ndarray) -> tuple:
        """``(U, grad)`` at ``z``; ``(inf, nan)`` where the model's own linear algebra fails
        there (a Cholesky of a matrix that is not positive definite at an extreme point of a
        trajectory), which the sampler treats as a divergence, as Pyro's HMC does."""
        try:
            if self._graph is None:
                value, grad = self.eager(self._tensor(z))
                return float(value), grad.to("cpu", torch.float64).numpy()
            # the compiled graph records no autograd history (its input does not require grad)
            t = torch.from_numpy(z.astype(self._np_dtype))
            if self._on_cpu:
                value, grad = self._graph(t)
                return float(value), grad.numpy().astype(np.float64)
            value, grad = self._graph(t.to(self.device))
            return float(value), grad.cpu().numpy().astype(np.float64)
        except torch.linalg.LinAlgError:
            return math.inf, np.full(self.dim, np.nan)

    # -- compiling -----------------------------------------------------------------------------
    def _compiled(self, mode):
        z0 = self._tensor(self.initial[0])
        decompositions = _inductor_decompositions() if mode == "inductor" else None
        try:
            graph = self._traced_in_two_stages(z0, decompositions)
        except Exception:  # noqa: BLE001 (the forward graph's own gradient could not be traced: the model's, as before)
            graph = self._traced(lambda z: self._value_and_grad(z), z0.detach().requires_grad_(True), decompositions)
        if mode == "inductor":
            graph = _without_repeats(_functional(graph, z0, decompositions))
        self._plain = graph
        self.nodes = len(graph.graph.nodes)
        mode, self.note = mode_for_size(mode, self.nodes)
        if mode == "inductor":
            graph, slower = _inductor(graph, z0)
            if slower:
                self.note = f"{self.note}; {slower}" if self.note else slower
        else:
            graph = _torchscript(graph, z0)
        self._check(graph, z0)
        return graph, mode

    def _traced(self, f, z, decompositions=None):
        """``f`` traced at ``z`` into an aten graph; :class:`GraphUnsupported` saying where it
        could not be."""
        from torch.fx.experimental.proxy_tensor import make_fx

        with _tracing(), one_fake_mode():
            try:
                return make_fx(f, decomposition_table=decompositions)(z)
            except Exception as error:  # noqa: BLE001 (any failure to trace: say where, stay eager)
                raise GraphUnsupported(_cause(error)) from error

    def _traced_in_two_stages(self, z0, decompositions):
        """The value and the gradient traced in two stages: the potential alone, each repeated
        computation in it kept once; then that graph's value and gradient. Traced in one stage
        (the model's gradient, as autograd runs it), each use of a shared factor has its own
        backward: an enumerated HMM's transition factor, the same at every step, is
        differentiated once per step. In two, its gradients are summed and then differentiated
        once. The 100-step ``pyro.markov`` HMM: 4,130 operations against 6,268, inductor's
        compile 23 s against 130, a call 222 against 437 us; the small graphs the same size.
        A model that applies a ``torch.autograd.Function`` (Pyro's ``safe_log`` in its
        contraction of enumerated sites, a user's own derivative) is refused here: a graph of
        its forward's operations would be differentiated as they are, not by its backward."""

        def potential(z):
            return self._potential_fn(self._unflatten(z))

        with _custom_backwards() as seen:
            forward = self._recorded(potential, z0)
        if seen:  # their own backward, which the forward's aten operations do not carry
            raise GraphUnsupported(f"the model applies its own autograd.Function ({', '.join(sorted(set(seen)))})")
        forward = _batched_lanes(_without_repeats(_functional(forward, z0, None)), z0)
        self._forward = forward

        def value_and_grad(z):
            value = forward(z)
            (grad,) = torch.autograd.grad(value, z)
            return value.detach(), grad

        return self._recorded(value_and_grad, z0.detach().requires_grad_(True), decompositions, fold=False)

    def _recorded(self, f, z, decompositions=None, fold=True):
        """``f`` at ``z`` as an aten graph, recorded (:mod:`ppmodels.infer.recording`: 4-5 times
        faster than ``make_fx``; the 100-step HMM's stages 0.35 and 0.1 s against 2.5 and 0.5),
        or traced by ``make_fx`` where it cannot be, which says why where it cannot either."""
        try:
            with _tracing():
                return record(f, z, decompositions, fold=fold)
        except Exception:  # noqa: BLE001 (make_fx traces it, or says why it cannot)
            return self._traced(f, z, decompositions)

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
            with torch.no_grad():
                value_c, grad_c = graph(z)
            scale_v = TOLERANCE * (1 + value.abs())
            scale_g = TOLERANCE * (1 + grad.abs().max())
            if (value_c - value).abs() > scale_v or (grad_c - grad).abs().max() > scale_g:
                raise GraphUnsupported(
                    f"the compiled potential differs from Pyro's at a test point (value {float(value_c):.6g} against "
                    f"{float(value):.6g}, or in its gradient): the model's Python control flow depends on the "
                    "values of its latent variables, which a graph cannot follow, or the compiler got the graph wrong "
                    "(compile='graph' is the other compiler)"
                )

    # -- the posterior's support ------------------------------------------------------------------
    def flat_elements(self) -> dict:
        """``{site: [element index, ...]}``: the elements on which the potential does not depend,
        its gradient exactly zero there at three points around the initial one, and its value the
        same far along them (:meth:`_constant_along`). The posterior is
        then flat, improper, along them, and NUTS drifts along them without end (Pyro's would too):
        an element of a latent site that nothing reads and whose prior is flat or masked out
        (``pyro.sample(..., obs_mask=...)`` makes such a site, ``NAME_unobserved``, of the full
        shape, its observed elements masked out). Any proper prior makes the gradient nonzero."""
        generator = np.random.default_rng(0)
        flat = np.ones(self.dim, dtype=bool)
        finite = []
        for scale in (0.0, 0.5, 2.0):
            z = self.initial[0] + scale * generator.standard_normal(self.dim)
            value, grad = self(z)
            if np.isfinite(value) and np.isfinite(grad).all():
                flat &= grad == 0
                finite.append((z, value))
        if not finite or not flat.any():
            return {}
        confirmed = np.zeros(self.dim, dtype=bool)
        confirmed[self._constant_along(*finite[0], np.flatnonzero(flat))] = True
        out, start = {}, 0
        for name, shape, size in zip(self.names, self.shapes, self.sizes):
            where = np.flatnonzero(confirmed[start : start + size])
            if len(where):
                out[name] = [tuple(int(i) for i in np.unravel_index(k, shape)) if shape else () for k in where]
            start += size
        return out

    def _constant_along(self, z, value, elements) -> np.ndarray:
        """Those of ``elements`` along which the potential keeps its ``value`` at ``z`` exactly, moved
        :data:`FLAT_SHIFT` either way: all of them together, or else each alone (the first
        :data:`FLAT_SINGLES`). A zero gradient alone is also a plateau's: a location under a
        ``Uniform(a - 1, a + 1)`` likelihood, flat where the data allow it and impossible beyond,
        is a proper posterior."""

        def constant(which):
            for step in (FLAT_SHIFT, -FLAT_SHIFT):
                moved = z.copy()
                moved[which] += step
                if self(moved)[0] != value:
                    return False
            return True

        if constant(elements):
            return elements
        return np.array([i for i in elements[:FLAT_SINGLES] if constant([i])], dtype=int)

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


def improper_posterior(flat: dict, sizes: dict | None = None) -> ImproperPosteriorError:
    """The error for a posterior flat along ``flat`` (``{site: [element index, ...]}``, ``[()]``
    for a whole site; ``sizes`` the sites' element counts): NUTS would drift along them without
    end, its deepest trees at every step (Pyro's NUTS too, on the same potential), and a
    guide's scale along them would grow as long as it trains."""
    parts = []
    for name, elements in flat.items():
        shown = ", ".join(str(list(e)) for e in elements[:6]) + (", ..." if len(elements) > 6 else "")
        whole = not elements[0] or sizes is None
        parts.append(f"site {name!r}" + ("" if whole else f" ({len(elements)} of its {sizes[name]} elements: {shown})"))
    obs_mask = (
        "pyro.sample(..., obs_mask=...) makes its NAME_unobserved site of the full shape, its observed elements "
        "masked out (Pyro means it for guides): for MCMC, sample only the missing entries as a site of their own "
        "and put them into the data with index_put. "
    )
    return ImproperPosteriorError(
        f"the posterior is improper: the model's density does not depend on {'; '.join(parts)}. Nothing in the "
        "model reads them and their prior is flat or masked out, so NUTS would drift along them without end "
        "(and a guide's scale along them would grow as long as it trains). "
        + (obs_mask if any(name.endswith("_unobserved") for name in flat) else "")
        + "Give each a proper prior, or leave out the sites nothing reads."
    )


def _unread_sites(model, args, kwargs) -> list:
    """The continuous latent sites whose values the model's log density does not read."""
    trace = _prior_trace(model, tuple(args), kwargs)
    names = [n for n, site in trace.nodes.items() if site["type"] == "sample" and not site["is_observed"]]
    values = {n: trace.nodes[n]["value"].detach().requires_grad_(True) for n in names}
    values = {n: v for n, v in values.items() if v.is_floating_point()}
    with torch.enable_grad(), pyro.validation_enabled(False):
        again = pyro.poutine.trace(pyro.poutine.condition(model, data=values)).get_trace(*args, **(kwargs or {}))
        grads = torch.autograd.grad(again.log_prob_sum(), list(values.values()), allow_unused=True)
    return [n for n, g in zip(values, grads) if g is None]


@contextlib.contextmanager
def _tracing():
    """How the potential is traced: with gradients, quietly, and with Pyro's validation off,
    also for distributions made before with it on (``compiled.without_support_checks``: a
    ``PyroSample`` prior; Pyro's Bayesian regression tutorial ran eagerly, 63 s under
    ``mcmc``'s defaults against 7.8). No check decides anything in the unconstrained space,
    whose every point maps into the support."""
    with torch.enable_grad(), pyro.validation_enabled(False), without_support_checks(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


_WARNED_UNWATCHED = False


@contextlib.contextmanager
def _custom_backwards():
    """A list that names each ``torch.autograd.Function`` applied inside the block. ``apply``
    is a Python ``classmethod`` up to torch 2.13 and a C one from 2.14 (there the hook had
    seen nothing, every model took the one-stage path, and the 100-step ``pyro.markov`` HMM's
    graph had 8,240 operations against 537: inductor 86 s against about 6); both are wrapped by
    binding them to the class. Where torch's ``Function.apply`` is not where this expects it,
    the list says so at once (``"?"``), the caller takes the path that keeps every backward,
    and a warning says so, once a process: the next such change in torch is not silent."""
    global _WARNED_UNWATCHED
    seen = []
    function = torch.autograd.Function
    original = function.__dict__.get("apply")
    if not hasattr(original, "__get__") or not callable(original.__get__(None, function)):
        if not _WARNED_UNWATCHED:
            _WARNED_UNWATCHED = True
            warnings.warn(
                f"ppmodels cannot watch torch {torch.__version__}'s autograd.Function.apply: each potential is "
                "traced with its gradient in one stage, which is correct but slower to compile where a factor "
                "repeats (an HMM's steps: minutes, not seconds). Please report it with your torch version",
                RuntimeWarning,
                stacklevel=2,
            )
        seen.append("?")
        yield seen
        return

    def apply(cls, *args, **kwargs):
        seen.append(cls.__name__)
        return original.__get__(None, cls)(*args, **kwargs)

    function.apply = classmethod(apply)
    try:
        yield seen
    finally:
        function.apply = original


def _inductor_decompositions() -> dict:
    """Inductor's decompositions, and three more for small tensors (:data:`SMALL_MATMUL`):

    - a (batched) matrix product as a product and a sum, and a cumulative sum or product (a
      Dirichlet's stick-breaking transform, a model's ``cumsum``) as a masked sum or product
      over a triangle, exact. Inductor leaves them as calls between its kernels: those scans
      split the DiscreteHMM's graph into 3 kernels; as one, a call 85 against 115 us, the
      mixture's 48 against 60, a compile about 0.4 s shorter (one ``gcc`` run);
    - an accumulating ``index_put`` (the backward of indexing by a tensor: ``transition[x]``
      in an enumerated HMM) as a one-hot product and a sum. Inductor (torch 2.13, CPU)
      compiled a graph with many of them to a wrong gradient (a 30-step HMM's; the check
      against eager Pyro caught it and ran the model eagerly, 40 ms a call)."""
    _import_inductor()
    from torch._inductor.decomposition import select_decomp_table

    aten = torch.ops.aten

    def small(a, b):
        if math.prod(a.shape) * b.shape[-1] > SMALL_MATMUL:
            return NotImplemented  # make_fx keeps the BLAS call
        return (a.unsqueeze(-1) * b.unsqueeze(-3)).sum(-2)

    def scan(reduce, neutral):
        def scanned(x, dim, dtype=None):
            if x.dim() == 0 or x.numel() * x.shape[dim] > SMALL_MATMUL:
                return NotImplemented  # make_fx keeps aten's own
            x = (x if dtype is None else x.to(dtype)).movedim(dim, -1)
            index = torch.arange(x.shape[-1], device=x.device)
            upto = index.unsqueeze(-1) >= index  # [i, j]: j <= i
            return reduce(torch.where(upto, x.unsqueeze(-2), neutral), -1).movedim(-1, dim)

        return scanned

    def scatter_add(x, indices, values, accumulate=False):
        index = indices[0] if len(indices) == 1 else None
        if not accumulate or index is None or index.dtype != torch.long:
            return NotImplemented  # make_fx keeps aten's own
        rows, rest, m = x.shape[0], x.shape[1:], index.numel()
        if m * math.prod(x.shape) > SMALL_MATMUL:
            return NotImplemented
        index = torch.where(index < 0, index + rows, index).reshape(m)
        hits = (index.unsqueeze(-1) == torch.arange(rows, device=x.device)).to(values.dtype)
        values = values.expand(*indices[0].shape, *rest).reshape(m, 1, *rest)
        return x + (hits.reshape(m, rows, *[1] * len(rest)) * values).sum(0)

    return {
        **select_decomp_table(),
        aten.index_put.default: scatter_add,
        aten.mm.default: small,
        aten.bmm.default: small,
        aten.cumsum.default: scan(torch.sum, 0),
        aten.cumprod.default: scan(torch.prod, 1),
    }


def _functional(graph, z0, decompositions):
    """The graph without in-place operations, as inductor's entry for traced graphs expects
    (``torch.compile`` gets that from AOTAutograd, which this path skips). ``make_fx`` records
    a model's in-place operations as they are: Pyro's ``DiscreteHMM`` clamps a maximum in place
    (``_logmatmulexp``), and inductor compiled that graph to NaN everywhere.

    An in-place operation on a tensor that nothing else reads (autograd's backward of
    ``clamp(min, max)``, which every ``Categorical(probs)`` takes, computes its mask that way)
    is replaced by its out-of-place variant, which changes nothing. Where other in-place
    operations remain, the graph is re-traced through ``functionalize``, with inductor's
    decompositions again (the functional ops, ``clamp`` for ``clamp_``, need them): that
    trace costs as long as the first (10 s on the 100-step HMM's graph, whose only in-place
    operations are those masks, rewritten instead)."""
    if not _rewrite_in_place_on_unread_tensors(graph, decompositions):
        return graph
    from torch.func import functionalize
    from torch.fx.experimental.proxy_tensor import make_fx

    with torch.no_grad(), warnings.catch_warnings(), one_fake_mode():
        warnings.simplefilter("ignore")
        try:
            return make_fx(functionalize(graph, remove="mutations"), decomposition_table=decompositions)(z0)
        except Exception as error:  # noqa: BLE001 (an in-place operation functionalize cannot rewrite)
            raise GraphUnsupported(
                f"the potential's in-place operations could not be rewritten for inductor ({_cause(error)}); "
                "compile='graph' runs them as they are"
            ) from error


def _rewrite_in_place_on_unread_tensors(graph, decompositions=None) -> bool:
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


def _without_repeats(graph):
    """The graph with each repeated computation done once, and nothing it does not use.
    ``torch.compile`` does that before inductor (AOTAutograd's common-subexpression pass);
    the direct entry this module calls does not. The repeats are a model's own (a scale's
    ``log`` in each ``Normal`` built from it) and its gradient's: the 100-step HMM's graph
    shrank from 16,308 to 11,799 operations (compile 108 s against 120), the DiscreteHMM's from
    755 to 705 (a call 113 us against 120)."""
    try:
        from torch._functorch.compile_utils import fx_graph_cse
    except ImportError:  # torch moved it: inductor compiles the repeats too
        return graph
    graph.graph.eliminate_dead_code()
    return torch.fx.GraphModule(graph, fx_graph_cse(graph.graph))


def _batched_lanes(graph, z0):
    """The graph with a loop's repeated steps batched (:mod:`ppmodels.infer.lanes`), where
    there are any and the batched graph gives the same value at ``z0``, quietly (torch warns
    where it has no batching rule for an operation and loops over the lanes instead); else as
    it is. The 100-step ``pyro.markov`` HMM: 707 operations against 3,721, inductor's compile
    about 6.5 s against 20, a call 83-87 against 220-270 us."""
    try:
        batched = batch_lanes(graph)
        if batched is None:
            return graph
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            same = torch.allclose(batched(z0), graph(z0), rtol=1e-5, atol=1e-6)
    except Exception:  # noqa: BLE001 (an operation torch cannot batch: the steps stay one by one)
        return graph
    return _without_repeats(batched) if same and not caught else graph


def _torchscript(graph, z0):
    """The traced graph as TorchScript: the same operations, run by TorchScript's interpreter
    (2-8x faster per call than the FX graph's Python code; no compiler needed)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.jit.trace(graph, (z0,), check_trace=False)
        except Exception as error:  # noqa: BLE001 (an op TorchScript cannot hold: the FX graph serves)
            del error
            return graph


@contextlib.contextmanager
def _compile_threads(device):
    """On a CPU, inductor's C++ kernels are compiled by one ``gcc`` each (about a second
    apiece, with torch's headers precompiled: instantiating its vector templates, and linking
    against libtorch), one after another unless inductor has compile threads. Give it a
    thread per core (up to 4) for this compile, then stop them: the sampler forks its chains
    next, and a fork should not copy a process with idle threads.
    (CPU only: inductor's pool of compile processes, for GPU kernels, takes seconds to start
    and stays as inductor sets it up.)"""
    if device.type != "cpu":
        yield
        return
    import torch._inductor.config as inductor_config

    threads = max(1, min(4, os.cpu_count() or 1))
    with inductor_config.patch(compile_threads=threads):
        try:
            yield
        finally:
            _stop_compile_threads()


def _settings(graph, device) -> dict:
    """Inductor's settings for this graph, each rule measured on the benchmark's posteriors:

    - on a CPU, where no tensor of the graph has more than :data:`SCALAR_KERNELS_UP_TO`
      elements, scalar C++ loops (``cpp.simdlen=1``) instead of vectorized ones with scalar
      tails: less code to generate and compile, and on such sizes about as fast;
    - above :data:`FEW_FUSION_PAIRS_ABOVE` operations, each kernel's fusion is tried with the
      next :data:`FUSION_PAIRS` kernels that read a buffer it reads, not 64: on a long graph the
      scheduler's pairwise checks are most of inductor's time.
    """
    settings = {}
    if device.type == "cpu" and _largest_tensor(graph) <= SCALAR_KERNELS_UP_TO:
        settings["cpp.simdlen"] = 1
    if len(graph.graph.nodes) > FEW_FUSION_PAIRS_ABOVE:
        settings["max_fusion_buffer_group_pairwise_attempts"] = FUSION_PAIRS
    return settings


def _largest_tensor(graph) -> int:
    largest = 0
    for node in graph.graph.nodes:
        for value in pytree.tree_leaves(node.meta.get("val")):
            if isinstance(value, torch.Tensor):
                largest = max(largest, value.numel())
    return largest


def _stop_compile_threads():
    try:
        from torch._inductor.async_compile import AsyncCompile

        if AsyncCompile.pool.cache_info().currsize:  # the thread pool exists: stop it, forget it
            AsyncCompile.pool().shutdown(wait=True)
            AsyncCompile.pool.cache_clear()
    except (ImportError, AttributeError):  # inductor's internals moved: its threads stay idle
        pass


def _inductor(graph, z0):
    """The graph compiled by inductor into C++ kernels and a wrapper. Inductor's own entry point for an
    already-traced aten graph is called directly: through ``torch.compile`` every call pays
    for guards and wrappers (about 200 us against 13 us for the kernel itself on eight
    schools); if that entry point is missing or fails (it is internal to torch), ``torch.compile``,
    and the second value, a note, says so."""

    # torch's own deprecation notices while it compiles are not the user's warnings
    import torch._inductor.config as inductor_config

    try:
        settings = inductor_config.patch(_settings(graph, z0.device))
    except (AttributeError, KeyError):  # a torch whose inductor lacks one of them: its defaults
        settings = contextlib.nullcontext()
    with torch.no_grad(), _compile_threads(z0.device), settings, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from torch._inductor.compile_fx import compile_fx_inner

            # inductor's FX graph cache (same model and data: the DiscreteHMM's second compile 1.2 s,
            # not 4.2) keys on the example input's values too: a fixed one (zeros), so that chains
            # started elsewhere (another seed) find the graph compiled for this model and data
            with one_fake_mode(cacheable=True):
                compiled = compile_fx_inner(graph, [torch.zeros_like(z0)])
            compiled([z0.clone()])  # the first call through inductor's own entry finishes its caches
            # then its generated function directly: the entry's bookkeeping (autotune-cache and
            # profiler contexts, runtime metrics) is about 6 us of a 30 us call
            run = getattr(compiled, "current_callable", None) or compiled

            def call(z):
                return run([z])

            return call, None
        except Exception as error:  # noqa: BLE001 (internal API: the public one below serves, and the note says so)
            direct = _cause(error)
        try:
            public = torch.compile(graph, fullgraph=True, dynamic=False)
            public(z0)
            return public, (
                f"inductor's direct entry failed ({direct}); torch.compile runs the potential instead, whose "
                "guards cost about 100-200 us more a call"
            )
        except Exception as error:  # noqa: BLE001 (no C++ compiler, an unsupported op, ...)
            raise GraphUnsupported(f"inductor could not compile the potential ({_cause(error)})") from error


__all__ = ["COMPILE_MODES", "Potential"]
