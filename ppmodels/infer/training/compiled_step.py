"""The compiled training step: one ELBO step (loss and gradients) traced once into an FX graph.

Pyro's Python — messengers, traces, ``log_prob`` and score parts, plates — runs only when a
graph is traced; every later step runs the graph, whose inputs are every trained tensor
(module parameters and ``pyro.param`` values), the buffers and the batch's tensors, and
whose random draws (``aten.normal`` and friends) are graph operations that draw afresh at
each call from torch's generator. ``"graph"`` runs the FX graph as it is; ``"inductor"``
compiles it with ``torch.compile``. Pyro's estimators are traced in the form
:func:`~ppmodels.infer.training.estimators.traceable` gives them.

A graph is reused only while everything it baked in is unchanged: the batch's shapes, dtypes,
devices and non-tensor values, train/eval modes, the trained tensors, ``num_data``, grad and
validation modes, the default dtype, the estimator's settings, and the simple Python
attributes (numbers, strings, flags) of every submodule and of a function pair's closures and
globals — a changed ``kl_weight`` is a new graph, never a stale one. When shapes keep
changing (a neural process's context sizes), one symbolic trace serves them all, guarded by
the shape relations it assumed. A step that cannot be traced (data-dependent Python control
flow, ``.item()`` in the model) falls back to eager Pyro with a warning naming the cause.
"""

from __future__ import annotations

import time
import warnings
from collections import OrderedDict

import pyro
import torch
import torch.utils._pytree as pytree
from pyro.poutine.messenger import Messenger

from ..._validate import check_choice
from ..errors import EagerFallbackWarning
from ..graphs.backends import COMPILE_MODES, import_inductor
from ..graphs.tracing import GraphUnsupported, describe_failure, one_fake_mode
from .estimators import traceable

#: at most this many graphs are kept (least recently used dropped)
MAX_GRAPHS = 8
_SIMPLE = (bool, int, float, str, type(None))


# -- trained tensors as graph inputs ------------------------------------------------------------
class _ParamsAsInputs(Messenger):
    """Inside the trace, a ``pyro.param`` site whose tensor is a graph input takes its value
    from that input (constrained as the store constrains it)."""

    def __init__(self, values):
        super().__init__()
        self.values = values  # name -> (input tensor, constraint)

    def _pyro_param(self, msg):
        entry = self.values.get(msg["name"])
        if entry is not None:
            value, constraint = entry
            constrained = torch.distributions.transform_to(constraint)(value)
            msg["value"], msg["done"] = constrained, True


class _Root(torch.nn.Module):
    """The pair as one module whose call runs a function: ``torch.func.functional_call`` swaps
    the pair's parameters and buffers for the graph's inputs while the loss runs."""

    def __init__(self, pair):
        super().__init__()
        self.pair = pair

    def forward(self, run):
        return run()


# -- the step ---------------------------------------------------------------------------------
class CompiledStep:
    """``step(args, kwargs) -> loss`` (a 0-d tensor), with ``.grad`` set on every trained tensor.

    :param pair: the pair (an ``nn.Module``); its parameters and buffers are graph inputs.
    :param loss_fn: ``(args, kwargs) -> (loss to differentiate, value to return)``.
    :param trained: ``[(name, tensor)]`` of every trained tensor (module parameters and the
        unconstrained ``pyro.param`` values), as the optimizer holds them.
    :param store_params: ``{pyro.param name: (index into trained, constraint)}`` for the
        sites whose value Pyro's store gives (classic guides, autoguides in the global store):
        see :meth:`ppmodels.infer.training.params.TrainedParameters.for_compiled_step`.
    :param str mode: ``"graph"`` or ``"inductor"``.
    :param fallback: the eager step, run when the step cannot be traced.
    :param functions: the user's model/guide functions (closures and globals are guarded).
    """

    def __init__(self, pair, loss_fn, trained, store_params, mode="graph", fallback=None, functions=(), extra_key=()):
        self.pair, self.loss_fn, self.mode = pair, loss_fn, check_choice(mode, "compile", list(COMPILE_MODES))
        self.root = _Root(pair)
        self.trained = [t for _, t in trained]
        self.trained_names = [n for n, _ in trained]
        named = dict(self.root.named_parameters())
        by_id = {id(p): n for n, p in named.items()}
        self.module_slots = {i: by_id[id(t)] for i, t in enumerate(self.trained) if id(t) in by_id}
        self.frozen = {n: p for n, p in named.items() if id(p) not in {id(t) for t in self.trained}}
        self.buffer_names, self.buffers = [], []
        for n, b in self.root.named_buffers():
            self.buffer_names.append(n)
            self.buffers.append(b)
        self.store_params = dict(store_params)
        self.fallback, self.functions, self.extra_key = fallback, tuple(functions), tuple(extra_key)
        self.graphs = OrderedDict()  # key -> [(guard, fn)]
        self.symbolic = False
        self.shapes_seen = {}
        self.failed = None  # why tracing failed (then every step is eager)
        self.trace_seconds, self.first_call_seconds = [], []
        self._warned_cap = False
        self.traces = 0
        self._modules = list(pair.modules())
        self._plain = _PlainValues(self._modules, self.functions)

    # -- guards --------------------------------------------------------------------------
    def _split(self, args, kwargs):
        leaves, spec = pytree.tree_flatten((args, kwargs))
        tensors, meta = [], []
        for leaf in leaves:
            if isinstance(leaf, torch.Tensor):
                tensors.append(leaf)
                shape = ("T", leaf.dim()) if self.symbolic else ("T", tuple(leaf.shape), leaf.stride())
                meta.append((*shape, leaf.dtype, leaf.device, leaf.requires_grad))
            elif isinstance(leaf, _SIMPLE):
                meta.append(("C", leaf))
            else:
                raise GraphUnsupported(
                    f"an argument of type {type(leaf).__name__} is neither a tensor nor a plain value, so it can be "
                    "neither a graph input nor a guard"
                )
        return tensors, leaves, spec, tuple(meta)

    def key(self, meta):
        return (
            meta,
            tuple(m.training for m in self._modules),
            tuple((id(t), tuple(t.shape), t.dtype, t.device) for t in self.trained),
            tuple((tuple(b.shape), b.dtype, b.device) for b in self.buffers),
            getattr(self.pair, "num_data", None),
            torch.is_grad_enabled(),
            torch.get_default_dtype(),
            self._plain.snapshot(),
            self.extra_key,
        )

    # -- tracing ---------------------------------------------------------------------------
    def _function(self, spec, leaves, used):
        tensor_slots = [i for i, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor)]
        module_slots, store_params = self.module_slots, self.store_params

        def step(trained, buffers, tensors):
            state = dict(self.frozen)
            state.update({module_slots[i]: t for i, t in enumerate(trained) if i in module_slots})
            state.update(zip(self.buffer_names, buffers))
            flat = list(leaves)
            for slot, t in zip(tensor_slots, tensors):
                flat[slot] = t
            args, kwargs = pytree.tree_unflatten(flat, spec)
            inputs = {name: (trained[i], c) for name, (i, c) in store_params.items()}
            with _ParamsAsInputs(inputs):
                loss, value = torch.func.functional_call(self.root, state, (lambda: self.loss_fn(args, kwargs),))
            grads = torch.autograd.grad(loss, trained, allow_unused=True) if trained else ()
            used[:] = [g is not None for g in grads]  # a tensor the loss does not use keeps grad None, as eagerly
            return (value.detach(), *[g for g in grads if g is not None])

        return step

    def _trace(self, spec, leaves, tensors):
        from torch.fx.experimental.proxy_tensor import make_fx

        used = []
        fn = self._function(spec, leaves, used)
        # a real-mode trace runs the step once: on copies of the buffers, so that running statistics
        # are not updated by it, and with the draws given back
        inputs = (
            [t.detach().requires_grad_(True) for t in self.trained],
            [b.clone() for b in self.buffers],
            list(tensors),
        )
        devices = [t.device for t in tensors if t.device.type == "cuda"]
        t0 = time.perf_counter()
        # Pyro's and torch's argument checks are data-dependent branches: a graph runs without them
        # (fit checks the first step eagerly, with them)
        with torch.random.fork_rng(devices=devices), torch.enable_grad(), traceable(), pyro.validation_enabled(False):
            try:  # a real-mode trace draws for real; fork_rng gives the draws back
                with warnings.catch_warnings(), one_fake_mode(real=not self.symbolic):
                    warnings.simplefilter("ignore")
                    gm = make_fx(fn, tracing_mode="symbolic" if self.symbolic else "real", _allow_non_fake_inputs=True)(
                        *inputs
                    )
            except GraphUnsupported:
                raise
            except Exception as error:  # noqa: BLE001 (any failure to trace: say where, run eagerly)
                raise GraphUnsupported(describe_failure(error)) from error
        self.trace_seconds.append(time.perf_counter() - t0)
        _refuse_baked_trained_tensors(gm, self.trained_names, self.trained)
        guard = None
        if self.symbolic:  # the shape relations the trace assumed, checked by its shape environment at every step
            placeholders = [n.meta["val"] for n in gm.graph.nodes if n.op == "placeholder"]
            shape_env = gm.shape_env
            code = shape_env.produce_guards_expression(placeholders, ignore_static=False)
            if code:
                compiled_code = compile(code, "<shape guards>", "eval")

                def guard(flat):
                    return shape_env.evaluate_guards_expression(compiled_code, flat)

        if self.mode == "inductor":
            import_inductor()
            gm = torch.compile(gm, dynamic=self.symbolic, fullgraph=True)
        return guard, gm, list(used)

    # -- running ---------------------------------------------------------------------------------
    def _lookup(self, key, tensors):
        entries = self.graphs.get(key)
        if not entries:
            return None
        self.graphs.move_to_end(key)
        if not self.symbolic:
            return entries[0][1:]
        flat = pytree.tree_leaves((self.trained, list(self.buffers), list(tensors)))
        for guard, fn, used in entries:
            if guard is None or guard(flat):
                return fn, used
        return None

    def __call__(self, args, kwargs):
        if self.failed is not None:
            return self.fallback(args, kwargs)
        try:  # the contract: whatever fails while a graph is traced, compiled or first run, eager Pyro runs
            tensors, leaves, spec, meta = self._split(args, kwargs)
            key = self.key(meta)
            found = self._lookup(key, tensors)
            if found is None:
                fn, used = self._new_graph(key, meta, spec, leaves, tensors)
                t0 = time.perf_counter()
                out = self._run(fn, tensors)
                self.first_call_seconds.append(time.perf_counter() - t0)
        except Exception as error:  # noqa: BLE001 (any failure: a model a graph cannot hold, a compiler error, a moved internal)
            self.failed = describe_failure(error)
            warnings.warn(
                f"compile={self.mode!r}: this step cannot be traced into a graph ({self.failed}; torch "
                f"{torch.__version__}); training continues with eager Pyro, with the same estimator",
                EagerFallbackWarning,
                stacklevel=2,
            )
            return self.fallback(args, kwargs)
        if found is not None:
            fn, used = found
            out = self._run(fn, tensors)
        value, grads = out[0], iter(out[1:])
        for t, u in zip(self.trained, used):
            t.grad = next(grads) if u else None
        return value

    def _run(self, fn, tensors):
        with torch.no_grad():
            return fn(self.trained, list(self.buffers), list(tensors))

    def _new_graph(self, key, meta, spec, leaves, tensors):
        self.traces += 1
        if self.traces > 4 * MAX_GRAPHS:
            raise GraphUnsupported(
                f"what the graph bakes in changes at nearly every step ({self.traces} traces): a Python number "
                "that changes every step (a KL-annealing weight: pass it as a 0-d tensor), or shapes, modes or "
                "attributes that keep changing"
            )
        if not self.symbolic:
            shapes = self.shapes_seen.setdefault(key[1:], set())
            shapes.add(meta)
            if len(shapes) > 2:  # shapes keep changing beyond a last partial batch: one symbolic graph
                self.symbolic = True
                self.graphs.clear()
                tensors, leaves, spec, meta = self._split(*pytree.tree_unflatten(leaves, spec))
                key = self.key(meta)
        guard, fn, used = self._trace(spec, leaves, tensors)
        if self.num_graphs >= MAX_GRAPHS:
            self.graphs.popitem(last=False)
            if not self._warned_cap:
                self._warned_cap = True
                warnings.warn(
                    f"compile: more than {MAX_GRAPHS} graphs were traced (what they bake in keeps changing: "
                    "shapes, modes or attributes); the least recently used are dropped and retraced when needed",
                    UserWarning,
                    stacklevel=3,
                )
        self.graphs.setdefault(key, []).append((guard, fn, used))
        return fn, used

    @property
    def num_graphs(self) -> int:
        return sum(len(v) for v in self.graphs.values())


class _PlainValues:
    """The plain-valued attributes (numbers, strings, flags, None) a graph bakes in: those of
    every module of the pair, found once so that a step costs a getattr per attribute, and
    those of a function pair's closures and globals."""

    def __init__(self, modules, functions):
        self.functions = functions
        self.attributes = []
        for m in modules:
            names = [
                k for k, v in vars(m).items() if k != "training" and not k.startswith("__") and isinstance(v, _SIMPLE)
            ]
            if names:
                self.attributes.append((m, tuple(names)))

    def snapshot(self) -> tuple:
        snap = [tuple(getattr(m, k, None) for k in names) for m, names in self.attributes]
        for fn in self.functions:
            code = getattr(fn, "__code__", None)
            for cell in getattr(fn, "__closure__", None) or ():
                try:
                    value = cell.cell_contents
                except ValueError:
                    continue
                if isinstance(value, _SIMPLE):
                    snap.append((id(fn), "closure", value))
            if code is not None:
                g = getattr(fn, "__globals__", {})
                for name in code.co_names:
                    value = g.get(name)
                    if isinstance(value, _SIMPLE):
                        snap.append((id(fn), name, value))
        return tuple(snap)


def _refuse_baked_trained_tensors(gm, names, tensors):
    """No trained tensor may be baked into the graph as a constant."""
    trained = {t.untyped_storage().data_ptr(): n for n, t in zip(names, tensors) if t.numel()}
    for name in dir(gm):
        if not name.startswith("_tensor_constant"):
            continue
        const = getattr(gm, name)
        if not isinstance(const, torch.Tensor) or not const.numel():
            continue
        ptr = const.untyped_storage().data_ptr()
        if ptr in trained:
            raise GraphUnsupported(
                f"the trained tensor {trained[ptr]!r} was read outside the pair's modules and Pyro's parameter "
                "store (a network registered with pyro.module but not held by the pair?), so the graph would "
                "bake it in as a constant"
            )
        if const.requires_grad:
            raise GraphUnsupported(
                f"a tensor that requires grad (shape {tuple(const.shape)}) is used by the model or guide but is "
                "neither a parameter of the pair's modules nor a pyro.param: the graph would bake it in"
            )


__all__ = ["CompiledStep", "MAX_GRAPHS"]
