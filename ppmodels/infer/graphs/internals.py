"""The torch and Pyro internals ppmodels' compiled paths use, in one list, each with what uses it,
what happens without it, and a check that it exists and behaves on the torch and Pyro installed.

No answer depends on one of them: where one is missing or has changed, the path that uses it
falls back (inductor's defaults, ``torch.compile``, TorchScript, or eager Pyro with an
:class:`~ppmodels.infer.errors.EagerFallbackWarning`) and says so. The checks say it *before*
a user meets the slower path: ``tests/test_internals.py`` runs every one, in seconds, on every
CI run, and :func:`check_all` runs them on any machine::

    python -c "from ppmodels.infer.graphs.internals import check_all; print(check_all())"

Public APIs are used where torch has them (``torch.func.functional_call`` to swap a module's
parameters, a shape environment's own guard evaluation, ``OpOverload.has_kernel_for_dispatch_key``).
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Internal:
    """One internal: its dotted ``name``, the code that uses it (``used_by``), what happens
    where it is missing (``without``), and ``check()``, which raises where it is missing or
    behaves otherwise than the code expects. ``since``: the first torch this library found it
    in, where an older supported torch lacks it (the code then takes ``without``)."""

    name: str
    used_by: str
    without: str
    check: Callable[[], None]
    since: str | None = None


def _attribute(dotted: str):
    """The object at ``dotted`` (a module path and attributes), importing what it needs quietly
    (torch's own deprecation notices on importing its internals are not the user's)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(dotted)


def _exists(dotted: str) -> Callable[[], None]:
    def check():
        if _attribute(dotted) is None:
            raise AttributeError(f"{dotted} is None")

    return check


def _inductor_setting(key, value):
    def check():
        import torch._inductor.config as config

        with config.patch({key: value}):  # torch checks a setting's name when the patch is entered
            pass

    return check


def _compile_pool():
    from torch._inductor.async_compile import AsyncCompile

    for name in ("cache_info", "cache_clear"):
        if not callable(getattr(AsyncCompile.pool, name, None)):
            raise AttributeError(f"AsyncCompile.pool has no {name}()")


def _decompositions():
    import torch
    from torch._inductor.decomposition import select_decomp_table

    table = select_decomp_table()
    if torch.ops.aten.addmm.default not in table and not table:
        raise ValueError("inductor's decomposition table is empty")


def _cse():
    import torch
    from torch._functorch.compile_utils import fx_graph_cse
    from torch.fx.experimental.proxy_tensor import make_fx

    graph = make_fx(lambda x: x.exp() + x.exp())(torch.ones(2))
    graph.graph.eliminate_dead_code()
    again = torch.fx.GraphModule(graph, fx_graph_cse(graph.graph))
    if sum(str(n.target) == "aten.exp.default" for n in again.graph.nodes) != 1:
        raise ValueError("fx_graph_cse kept a repeated computation")


def _fake_mode():
    from torch._guards import TracingContext, tracing
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    with tracing(TracingContext(FakeTensorMode(allow_fallback_kernels=True))):
        pass
    FakeTensorMode(allow_fallback_kernels=True, allow_non_fake_inputs=True, shape_env=ShapeEnv())


def _constant_names():
    import torch
    from torch.fx.experimental.proxy_tensor import make_fx

    constant = torch.tensor([1.0, 2.0])
    graph = make_fx(lambda x: x + constant, _allow_non_fake_inputs=True)(torch.ones(2))
    if not any(name.startswith("_tensor_constant") for name in dir(graph)):
        raise ValueError("make_fx no longer names a captured tensor _tensor_constant*")


def _shape_guards():
    import torch
    from torch.fx.experimental.proxy_tensor import make_fx

    graph = make_fx(lambda x: x * 2, tracing_mode="symbolic")(torch.ones(3))
    placeholders = [n.meta["val"] for n in graph.graph.nodes if n.op == "placeholder"]
    code = graph.shape_env.produce_guards_expression(placeholders, ignore_static=False)
    if code and not graph.shape_env.evaluate_guards_expression(compile(code, "<guards>", "eval"), [torch.ones(3)]):
        raise ValueError("the shape guards refuse the shape they were traced on")


def _apply_hook():
    import torch

    from .tracing import watch_custom_backwards

    class Double(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return 2 * x

        @staticmethod
        def backward(ctx, grad):
            return 2 * grad

    with watch_custom_backwards() as seen:
        Double.apply(torch.ones(1))
    if seen != ["Double"]:
        raise ValueError(f"the hook on autograd.Function.apply saw {seen}, not ['Double']")


def _validate_sample():
    import torch

    if "_validate_sample" not in torch.distributions.Distribution.__dict__:
        raise AttributeError("torch.distributions.Distribution defines no _validate_sample")


def _dispatch_mode_records():
    import torch

    from .recorder import record

    graph = record(lambda z: (z * 2.0).sum(), torch.ones(3))
    if float(graph(torch.ones(3))) != 6.0:
        raise ValueError("a TorchDispatchMode recording no longer computes what it recorded")


def _op_schemas():
    import torch

    op = torch.ops.aten.add_.Tensor
    if not op._schema.is_mutable or op.overloadpacket.__name__ != "add_" or op._overloadname != "Tensor":
        raise ValueError("an OpOverload's schema, packet or overload name reads otherwise")
    if not op._schema.arguments[0].alias_info.is_write:
        raise ValueError("an in-place operation's first argument is not marked as written")
    if not torch.ops.aten.reshape.default.has_kernel_for_dispatch_key("CompositeImplicitAutograd"):
        raise ValueError("aten.reshape is no longer a composite")
    for tag in ("nondeterministic_seeded", "data_dependent_output"):
        getattr(torch.Tag, tag)


#: the functions of Pyro's estimators that a traced ELBO step replaces (``torch_item`` reads a
#: loss out of its tensor, ``warn_if_nan`` branches on its value: a graph holds neither)
ESTIMATOR_FUNCTIONS = {
    "pyro.infer.trace_elbo": ("torch_item", "warn_if_nan"),
    "pyro.infer.trace_mean_field_elbo": ("torch_item", "warn_if_nan"),
    "pyro.infer.traceenum_elbo": ("warn_if_nan",),
}


def _pyro_estimator_parts():
    import pyro.infer

    for module, names in ESTIMATOR_FUNCTIONS.items():
        for name in names:
            if not callable(getattr(importlib.import_module(module), name, None)):
                raise AttributeError(f"{module} has no {name}")
    if not callable(getattr(pyro.infer.Trace_ELBO, "_get_traces", None)):
        raise AttributeError("pyro.infer.ELBO has no _get_traces")


def _pyro_enumeration():
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.infer import config_enumerate
    from pyro.infer.mcmc.util import initialize_model

    @config_enumerate
    def mixture(y):
        loc = pyro.sample("loc", dist.Normal(0.0, 1.0))
        z = pyro.sample("z", dist.Bernoulli(0.5))
        pyro.sample("y", dist.Normal(loc + z, 1.0), obs=y)

    _, potential_fn, _, _ = initialize_model(mixture, (torch.tensor(0.3),), max_plate_nesting=0)
    evaluator = potential_fn.__self__.trace_prob_evaluator
    for name in ("has_enumerable_sites", "_get_log_factors", "_enum_dims"):
        if not hasattr(evaluator, name):
            raise AttributeError(f"Pyro's {type(evaluator).__name__} has no {name}")


INTERNALS = (
    Internal(
        "torch._inductor.compile_fx.compile_fx_inner",
        "graphs.backends.inductor",
        "torch.compile compiles the log density; its guards cost more at every call",
        _exists("torch._inductor.compile_fx.compile_fx_inner"),
    ),
    Internal(
        "torch._inductor.config.cpp.simdlen",
        "graphs.backends.inductor_settings",
        "inductor's default (vectorized loops): longer compiles of small graphs",
        _inductor_setting("cpp.simdlen", 1),
    ),
    Internal(
        "torch._inductor.config.compile_threads",
        "graphs.backends._compile_threads",
        "inductor's default number of compile threads",
        _inductor_setting("compile_threads", 1),
    ),
    Internal(
        "torch._inductor.config.max_fusion_buffer_group_pairwise_attempts",
        "graphs.backends.inductor_settings",
        "inductor's default (64 fusion attempts a kernel): longer compiles of graphs above 2,000 operations",
        _inductor_setting("max_fusion_buffer_group_pairwise_attempts", 8),
        since="2.13",
    ),
    Internal(
        "torch._inductor.async_compile.AsyncCompile.pool",
        "graphs.backends._stop_compile_threads",
        "inductor's compile threads stay idle before the chains fork",
        _compile_pool,
    ),
    Internal(
        "torch._inductor.decomposition.select_decomp_table",
        "graphs.decompositions.inductor_decompositions",
        "the log density runs eagerly (EagerFallbackWarning)",
        _decompositions,
    ),
    Internal(
        "torch._functorch.compile_utils.fx_graph_cse",
        "graphs.rewrites.without_repeats",
        "inductor compiles repeated computations too",
        _cse,
    ),
    Internal(
        "torch._guards.TracingContext, torch._subclasses.fake_tensor.FakeTensorMode, ShapeEnv",
        "graphs.tracing.one_fake_mode",
        "make_fx makes a fake mode per operation (slower traces); inductor's graph cache is bypassed",
        _fake_mode,
    ),
    Internal(
        "make_fx(_allow_non_fake_inputs=...) naming captured tensors _tensor_constant*",
        "training.compiled_step._refuse_baked_trained_tensors",
        "a trained tensor baked in as a constant is not found by name (the step's check against it weakens)",
        _constant_names,
    ),
    Internal(
        "ShapeEnv.produce_guards_expression, ShapeEnv.evaluate_guards_expression",
        "training.compiled_step (symbolic graphs)",
        "the compiled step falls back to eager Pyro where shapes keep changing (EagerFallbackWarning)",
        _shape_guards,
    ),
    Internal(
        "torch.autograd.Function.apply (a classmethod the hook rebinds)",
        "graphs.tracing.watch_custom_backwards",
        "every log density is traced in one stage: correct, slower to compile where a factor repeats",
        _apply_hook,
    ),
    Internal(
        "torch.distributions.Distribution._validate_sample",
        "graphs.tracing.without_support_checks; models._normal",
        "a PyroSample prior made with validation on is not traced (the log density runs eagerly)",
        _validate_sample,
    ),
    Internal(
        "torch.utils._python_dispatch.TorchDispatchMode",
        "graphs.recorder.record",
        "make_fx traces every graph (several times slower)",
        _dispatch_mode_records,
    ),
    Internal(
        "OpOverload._schema, ._overloadname, .overloadpacket; torch.Tag",
        "graphs.recorder, graphs.rewrites, graphs.loop_batching",
        "the log density runs eagerly (EagerFallbackWarning)",
        _op_schemas,
    ),
    Internal(
        "torch.utils._pytree.tree_flatten, tree_unflatten, tree_leaves, tree_map",
        "graphs, training.compiled_step",
        "nothing compiles (EagerFallbackWarning)",
        _exists("torch.utils._pytree.tree_flatten"),
    ),
    Internal(
        "torch.fx.experimental.proxy_tensor.get_proxy_mode",
        "models.bnn (a prior's scale kept a tensor inside a trace)",
        "a Bayesian network's compiled step falls back to eager Pyro",
        _exists("torch.fx.experimental.proxy_tensor.get_proxy_mode"),
    ),
    Internal(
        "torch.utils._foreach_utils._get_fused_kernels_supported_devices",
        "training.optimizers.prefer_fused_adam",
        "Adam keeps torch's per-tensor default kernel",
        _exists("torch.utils._foreach_utils._get_fused_kernels_supported_devices"),
    ),
    Internal(
        "Pyro's ELBO._get_traces and its estimators' torch_item and warn_if_nan",
        "training.estimators (traceable, renyi_loss)",
        "the compiled step falls back to eager Pyro (EagerFallbackWarning)",
        _pyro_estimator_parts,
    ),
    Internal(
        "Pyro's TraceEinsumEvaluator (has_enumerable_sites, _get_log_factors, _enum_dims), "
        "initialize_model's potential_fn.__self__.trace_prob_evaluator",
        "density.markov_scan.install",
        "an enumerated Markov chain is summed by Pyro's contraction (a larger graph)",
        _pyro_enumeration,
    ),
)


def expected(internal: Internal) -> bool:
    """Whether this torch should have ``internal``: always, or from its ``since`` on."""
    import torch

    if internal.since is None:
        return True
    version = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    return version >= tuple(int(p) for p in internal.since.split("."))


def check_all() -> dict:
    """``{internal's name: None where it checks out, else why not}`` for every :data:`INTERNALS`."""
    out = {}
    for internal in INTERNALS:
        try:
            internal.check()
            out[internal.name] = None
        except Exception as error:  # noqa: BLE001 (any failure is the answer)
            out[internal.name] = f"{type(error).__name__}: {error}"
    return out


__all__ = ["ESTIMATOR_FUNCTIONS", "INTERNALS", "Internal", "check_all", "expected"]
