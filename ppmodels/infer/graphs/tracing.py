"""Tracing a function of tensors into an aten graph: the contexts it runs in, one fake-tensor
mode for a whole trace, and the user's line that made a trace fail.

A graph holds no Python control flow, no argument checks and no ``.item()``: what needs them
cannot be traced, and :class:`GraphUnsupported` says why (:func:`describe_failure`). The
compiled training step and the compiled log density both trace through these helpers.
"""

from __future__ import annotations

import contextlib
import traceback
import warnings

import pyro
import torch

from .recorder import record


class GraphUnsupported(RuntimeError):
    """The function cannot be traced or compiled into a graph; the message says why."""


def describe_failure(error) -> str:
    """The user's line that made tracing fail, and torch's one-line reason; a
    :class:`GraphUnsupported`'s own message (it already says why)."""
    if isinstance(error, GraphUnsupported):
        return str(error)
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "site-packages" not in f.filename]
    where = f" at {frames[-1].filename}:{frames[-1].lineno} ({frames[-1].line})" if frames else ""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "data-dependent" in str(error) or "_local_scalar_dense" in str(error) or "item()" in str(error):
        text = "data-dependent Python control flow or .item() in the model or guide"
    return f"{type(error).__name__}: {text[:200]}{where}"


@contextlib.contextmanager
def one_fake_mode(real: bool = True, *, cacheable: bool = False):
    """One fake-tensor mode for a whole ``make_fx`` trace in its "real" mode. Without a mode in
    the tracing context, ``make_fx`` makes a new one for every operation, each capturing the
    Python stack. A symbolic trace brings its own mode (with its shape environment):
    ``real=False`` leaves it alone.

    ``cacheable=True`` is the context for compiling an already-traced graph with inductor's
    own entry: the mode has a shape environment, which inductor's FX graph cache needs
    (without one it bypasses the cache, "No shape env"), and accepts the graph's real
    constants."""
    if not real:
        yield
        return
    try:
        from torch._guards import TracingContext, tracing
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.experimental.symbolic_shapes import ShapeEnv
    except ImportError:  # an older or newer torch without these: trace (or compile) as it does
        yield
        return
    options = {"allow_non_fake_inputs": True, "shape_env": ShapeEnv()} if cacheable else {}
    with tracing(TracingContext(FakeTensorMode(allow_fallback_kernels=True, **options))):
        yield


@contextlib.contextmanager
def without_support_checks():
    """While a graph is traced, no distribution checks that a value is in its support. Pyro's
    ``validation_enabled(False)`` reaches only the distributions made while it is on; one made
    before with validation on (a ``PyroSample`` prior, made when the user built the module, as
    Pyro's tutorials do) checks at every ``log_prob`` with a Python ``if`` on the value, which
    a graph cannot hold. The distributions themselves are left as they are."""
    distribution = torch.distributions.Distribution
    saved = distribution.__dict__["_validate_sample"]
    distribution._validate_sample = lambda self, value: None
    try:
        yield
    finally:
        distribution._validate_sample = saved


@contextlib.contextmanager
def quiet_jit_deprecation():
    """Inside the block, torch's notice that ``torch.jit.trace`` is deprecated (a
    ``DeprecationWarning`` up to torch 2.13, a ``FutureWarning`` from 2.14) is not shown. Pyro's
    JIT estimators and its ``jit_compile`` trace with it; where this library runs them, the
    notice is not the user's to act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`torch.jit.trace` is deprecated", category=Warning)
        yield


@contextlib.contextmanager
def tracing_context():
    """How a log density is traced: with gradients, quietly, and with Pyro's validation off,
    also for distributions made before with it on (:func:`without_support_checks`: a
    ``PyroSample`` prior). No check decides anything in the unconstrained space, whose every
    point maps into the support."""
    with torch.enable_grad(), pyro.validation_enabled(False), without_support_checks(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def trace(f, z: torch.Tensor, decompositions=None) -> torch.fx.GraphModule:
    """``f`` traced at ``z`` into an aten graph by ``make_fx``; :class:`GraphUnsupported`
    saying where it could not be."""
    from torch.fx.experimental.proxy_tensor import make_fx

    with tracing_context(), one_fake_mode():
        try:
            return make_fx(f, decomposition_table=decompositions)(z)
        except Exception as error:  # noqa: BLE001 (any failure to trace: say where, stay eager)
            raise GraphUnsupported(describe_failure(error)) from error


def record_or_trace(f, z: torch.Tensor, decompositions=None, fold: bool = True) -> torch.fx.GraphModule:
    """``f`` at ``z`` as an aten graph, recorded (:func:`~ppmodels.infer.graphs.recorder.record`,
    several times faster than ``make_fx``), or traced by ``make_fx`` where it cannot be, which
    says why where it cannot either."""
    try:
        with tracing_context():
            return record(f, z, decompositions, fold=fold)
    except Exception:  # noqa: BLE001 (make_fx traces it, or says why it cannot)
        return trace(f, z, decompositions)


def detach_constants(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``graph`` with every tensor it holds (a model's module parameters, baked in as
    constants: ``make_fx`` keeps them as parameters that require grad) detached, in place: a
    graph of a log density or a loss differentiates with respect to its inputs alone, and an
    output that required grad would carry autograd history through every call. Returns it."""
    for name, value in list(graph.named_parameters(recurse=False)):
        del graph._parameters[name]
        graph.register_buffer(name, value.detach())
    for name, value in list(vars(graph).items()):
        if isinstance(value, torch.Tensor) and value.requires_grad:
            setattr(graph, name, value.detach())
    return graph


class _Probe(torch.autograd.Function):
    """A Function applied once a process to prove the hook sees a Function's ``apply``."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad


_WARNED_UNWATCHED = False
_HOOK_SEES = None  # whether the hook saw the probe on this torch (probed once a process)


@contextlib.contextmanager
def watch_custom_backwards():
    """A list that names each ``torch.autograd.Function`` applied inside the block. ``apply``
    is a Python ``classmethod`` up to torch 2.13 and a C one from 2.14; both are wrapped by
    binding them to the class. Where torch's ``Function.apply`` is not where this expects it,
    or the wrapper is not called when a Function is applied (the probe, once a process), the
    list says so at once (``"?"``), the caller takes the path that keeps every backward, and a
    warning says so, once a process: the next such change in torch is not silent."""
    global _HOOK_SEES
    seen = []
    function = torch.autograd.Function
    original = function.__dict__.get("apply")
    if not hasattr(original, "__get__") or not callable(original.__get__(None, function)):
        _unwatched(seen)
        yield seen
        return

    def apply(cls, *args, **kwargs):
        seen.append(cls.__name__)
        return original.__get__(None, cls)(*args, **kwargs)

    function.apply = classmethod(apply)
    try:
        if _HOOK_SEES is None:
            with torch.no_grad():
                _Probe.apply(torch.zeros(1))
            _HOOK_SEES = seen == ["_Probe"]
            seen.clear()
        if not _HOOK_SEES:
            _unwatched(seen)
        yield seen
    finally:
        function.apply = original


def _unwatched(seen):
    global _WARNED_UNWATCHED
    if not _WARNED_UNWATCHED:
        _WARNED_UNWATCHED = True
        warnings.warn(
            f"ppmodels cannot watch torch {torch.__version__}'s autograd.Function.apply: each potential is "
            "traced with its gradient in one stage, which is correct but slower to compile where a factor "
            "repeats (an HMM's steps: minutes, not seconds). Please report it with your torch version",
            RuntimeWarning,
            stacklevel=3,
        )
    seen.append("?")


__all__ = [
    "GraphUnsupported",
    "describe_failure",
    "detach_constants",
    "one_fake_mode",
    "quiet_jit_deprecation",
    "record_or_trace",
    "trace",
    "tracing_context",
    "watch_custom_backwards",
    "without_support_checks",
]
