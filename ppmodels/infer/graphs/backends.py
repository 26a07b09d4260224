"""What runs a traced graph: TorchScript (no compiler) or inductor (C++ kernels), and which one
a graph of a given size gets.

``"graph"`` runs the traced graph with TorchScript's interpreter; ``"inductor"`` compiles it to
C++ kernels and a wrapper through inductor's own entry for an already-traced aten graph
(``torch.compile`` adds guards and wrappers to every call; it serves where that entry fails).
Inductor's compile time grows with the graph, so the largest graphs run as TorchScript
(:func:`mode_for_size`). The figures behind each rule are in ``benchmarks/README.md``.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import torch
import torch.utils._pytree as pytree

from .tracing import GraphUnsupported, describe_failure, one_fake_mode

#: the compile modes, for the training step and the log density alike
COMPILE_MODES = ("graph", "inductor")
#: larger graphs are not given to inductor (its compile would take tens of minutes); TorchScript runs them
INDUCTOR_MAX_NODES = 20000
#: inductor's compile time per operation of a graph, about (CPU, 2 cores)
INDUCTOR_SECONDS_PER_NODE = 0.008
#: above this many operations the user is told, before the compile starts, how long it will take
LARGE_GRAPH = 10000
#: on a CPU, a graph whose tensors have at most this many elements is compiled to scalar C++
#: loops, not vectorized ones with scalar tails: less code to generate and compile, about as
#: fast on such sizes
SCALAR_KERNELS_UP_TO = 1024
#: on a graph of more than FEW_FUSION_PAIRS_ABOVE operations, inductor's scheduler tries each
#: kernel's fusion with the next FUSION_PAIRS kernels that share a buffer with it, not 64: on a
#: long graph its pairwise checks are most of the compile
FEW_FUSION_PAIRS_ABOVE = 2000
FUSION_PAIRS = 8


def import_inductor():
    """Import inductor's compiler now, quietly: its first import defines TorchScript modules
    (``torch.utils.mkldnn``) whose deprecation warnings would otherwise surface, at the first
    compiled call, as a compiler failure in programs that turn warnings into errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import torch._inductor.compile_fx  # noqa: F401


def mode_for_size(mode: str, nodes: int) -> tuple:
    """``(mode, note)`` for a graph of ``nodes`` operations: above :data:`INDUCTOR_MAX_NODES` it
    runs as TorchScript, and above :data:`LARGE_GRAPH` a warning says how long inductor's
    compile will take."""
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


def torchscript(graph, z0):
    """The traced graph as TorchScript: the same operations, run by TorchScript's interpreter
    (faster per call than the FX graph's Python code; no compiler needed); the FX graph itself
    where TorchScript cannot hold an operation."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.jit.trace(graph, (z0,), check_trace=False)
        except Exception as error:  # noqa: BLE001 (an op TorchScript cannot hold: the FX graph serves)
            del error
            return graph


def inductor(graph, z0) -> tuple:
    """``(compiled, note)``: the graph compiled by inductor into C++ kernels and a wrapper,
    through inductor's own entry for an already-traced aten graph (``torch.compile`` pays for
    guards and wrappers at every call). If that entry, internal to torch, is missing or fails,
    ``torch.compile`` compiles it and ``note`` says so; :class:`GraphUnsupported` where neither
    can."""
    # torch's own deprecation notices while it compiles are not the user's warnings
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        stack.enter_context(_compile_threads(z0.device))
        for key, value in inductor_settings(graph, z0.device).items():
            _enter_setting(stack, key, value)
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        try:
            from torch._inductor.compile_fx import compile_fx_inner

            # inductor's FX graph cache keys on the example input's values too: a fixed one (zeros),
            # so that chains started elsewhere (another seed) find the graph compiled for this model and data
            with one_fake_mode(cacheable=True):
                compiled = compile_fx_inner(graph, [torch.zeros_like(z0)])
            compiled([z0.clone()])  # the first call through inductor's own entry finishes its caches
            # then its generated function directly, without the entry's bookkeeping (autotune-cache and
            # profiler contexts, runtime metrics) at every call
            run = getattr(compiled, "current_callable", None) or compiled

            def call(z):
                return run([z])

            return call, None
        except Exception as error:  # noqa: BLE001 (internal API: the public one below serves, and the note says so)
            direct = describe_failure(error)
        try:
            public = torch.compile(graph, fullgraph=True, dynamic=False)
            public(z0)
            return public, (
                f"inductor's direct entry failed ({direct}); torch.compile runs the potential instead, whose "
                "guards add to every call"
            )
        except Exception as error:  # noqa: BLE001 (no C++ compiler, an unsupported op, ...)
            raise GraphUnsupported(f"inductor could not compile the potential ({describe_failure(error)})") from error


def inductor_settings(graph, device) -> dict:
    """Inductor's settings for this graph:

    - on a CPU, where no tensor of the graph has more than :data:`SCALAR_KERNELS_UP_TO`
      elements, scalar C++ loops (``cpp.simdlen=1``);
    - above :data:`FEW_FUSION_PAIRS_ABOVE` operations, each kernel's fusion is tried with the
      next :data:`FUSION_PAIRS` kernels that read a buffer it reads.
    """
    settings = {}
    if device.type == "cpu" and _largest_tensor(graph) <= SCALAR_KERNELS_UP_TO:
        settings["cpp.simdlen"] = 1
    if len(graph.graph.nodes) > FEW_FUSION_PAIRS_ABOVE:
        settings["max_fusion_buffer_group_pairwise_attempts"] = FUSION_PAIRS
    return settings


def _enter_setting(stack: contextlib.ExitStack, key: str, value) -> bool:
    """Enter inductor's setting ``key = value`` on ``stack``; where this torch's inductor has
    no such setting (its config checks the names when the patch is entered), leave its default.
    Returns whether the setting took."""
    import torch._inductor.config as inductor_config

    try:
        stack.enter_context(inductor_config.patch({key: value}))
    except (AttributeError, KeyError, TypeError, ValueError):
        return False
    return True


def _largest_tensor(graph) -> int:
    largest = 0
    for node in graph.graph.nodes:
        for value in pytree.tree_leaves(node.meta.get("val")):
            if isinstance(value, torch.Tensor):
                largest = max(largest, value.numel())
    return largest


@contextlib.contextmanager
def _compile_threads(device):
    """On a CPU, inductor's C++ kernels are compiled by one ``gcc`` each, one after another
    unless inductor has compile threads. Give it a thread per core (up to 4) for this compile,
    then stop them: the sampler forks its chains next, and a fork should not copy a process
    with idle threads. (CPU only: inductor's pool of compile processes, for GPU kernels, takes
    seconds to start and stays as inductor sets it up.)"""
    if device.type != "cpu":
        yield
        return
    threads = max(1, min(4, os.cpu_count() or 1))
    with contextlib.ExitStack() as stack:
        _enter_setting(stack, "compile_threads", threads)
        try:
            yield
        finally:
            _stop_compile_threads()


def _stop_compile_threads():
    try:
        from torch._inductor.async_compile import AsyncCompile

        if AsyncCompile.pool.cache_info().currsize:  # the thread pool exists: stop it, forget it
            AsyncCompile.pool().shutdown(wait=True)
            AsyncCompile.pool.cache_clear()
    except (ImportError, AttributeError):  # inductor's internals moved: its threads stay idle
        pass


__all__ = [
    "COMPILE_MODES",
    "FEW_FUSION_PAIRS_ABOVE",
    "FUSION_PAIRS",
    "INDUCTOR_MAX_NODES",
    "LARGE_GRAPH",
    "SCALAR_KERNELS_UP_TO",
    "import_inductor",
    "inductor",
    "inductor_settings",
    "mode_for_size",
    "torchscript",
]
