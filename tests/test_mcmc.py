"""mcmc(): this library's NUTS/HMC on a compiled potential, against closed forms and Pyro."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import config_enumerate
from pyro.infer.mcmc.adaptation import WarmupAdapter
from pyro.nn import PyroModule, PyroSample

from ppmodels import posteriordb
from ppmodels.infer import mcmc
from ppmodels.infer.density import Potential
from ppmodels.infer.errors import EagerFallbackWarning
from ppmodels.infer.sampling import auto_compile
from ppmodels.infer.sampling.adaptation import adaptation_windows


# -- a conjugate regression: the posterior is Gaussian, in closed form --------------------------
def _data():
    g = torch.Generator().manual_seed(3)
    base = torch.randn(50, 1, generator=g)
    X = torch.cat([base, base + 0.3 * torch.randn(50, 1, generator=g), torch.randn(50, 1, generator=g)], 1)
    y = X @ torch.tensor([1.0, -0.5, 2.0]) + torch.randn(50, generator=g)
    return X, y


def regression(X, y):
    beta = pyro.sample("beta", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(X @ beta, 1.0), obs=y)


def _exact(X, y):
    X, y = X.double(), y.double()
    cov = torch.linalg.inv(X.T @ X + torch.eye(3, dtype=torch.float64))
    return cov @ X.T @ y, cov.diagonal().sqrt()


def _check_against_exact(result, X, y, tol_sd=0.15):
    mean, sd = _exact(X, y)
    draws = result.get_samples()["beta"].double()
    ess = result.diagnostics()["beta"]["n_eff"].double()
    # the mean within 4.5 Monte Carlo standard errors; the sd within tol_sd
    assert ((draws.mean(0) - mean).abs() < 4.5 * sd / ess.sqrt()).all(), (draws.mean(0), mean, ess)
    assert ((draws.std(0) / sd - 1).abs() < tol_sd).all(), (draws.std(0), sd)


@pytest.fixture(scope="module")
def compiled_run():
    X, y = _data()
    return X, y, mcmc(regression, X, y, num_samples=500, warmup_steps=300, num_chains=2, seed=0, compile="inductor")


def test_compiled_nuts_matches_the_closed_form_posterior(compiled_run):
    X, y, result = compiled_run
    assert result.compile["mode"] == "inductor" and result.compile["fallback"] is None
    assert result.engine == "ppmodels" and result.num_chains == 2
    assert result.samples["beta"].shape == (2, 500, 3)
    _check_against_exact(result, X, y)
    r_hat = result.diagnostics()["beta"]["r_hat"]
    assert (r_hat < 1.05).all()
    assert not any(result.divergences.values())


def test_eager_and_hmc_also_match_the_closed_form():
    X, y = _data()
    eager = mcmc(regression, X, y, num_samples=300, warmup_steps=200, num_chains=2, compile=None, seed=1)
    assert eager.compile["mode"] is None
    _check_against_exact(eager, X, y, tol_sd=0.2)
    hmc = mcmc(regression, X, y, kernel="hmc", num_samples=300, warmup_steps=200, num_chains=2, compile="graph", seed=2)
    assert hmc.compile["mode"] == "graph"
    _check_against_exact(hmc, X, y, tol_sd=0.2)


def test_hmc_jitters_its_integration_time_where_pyros_is_fixed():
    """Once the mass matrix has adapted to this Gaussian posterior, its dynamics have period
    2 pi, Pyro's fixed integration time: a trajectory returns near where it began (min ESS
    1-45 of 600 draws here, Pyro's own HMC 4-188; ``benchmarks/hmc_jitter.py``). With
    ``jitter=0`` every draw takes Pyro's ``int(2 pi / step_size)`` steps; by default each
    takes from 1 to that many, and the draws are the posterior's."""
    X, y = _data()
    settings = dict(kernel="hmc", num_samples=300, warmup_steps=200, num_chains=2, compile="graph", seed=2)
    fixed = mcmc(regression, X, y, jitter=0, **settings)
    jittered = mcmc(regression, X, y, **settings)
    for chain in range(2):
        full = int(2 * math.pi / fixed.stats["step_size"][chain])
        assert (fixed.stats["leapfrogs"][chain] == full).all()
        full = int(2 * math.pi / jittered.stats["step_size"][chain])
        steps = jittered.stats["leapfrogs"][chain]
        assert steps.min() >= 1 and steps.max() <= full and len(set(steps.tolist())) > full / 2, (full, steps)
    _check_against_exact(jittered, X, y, tol_sd=0.2)
    assert jittered.min_ess() > 150


@pytest.mark.parametrize(
    "options, words",
    [
        (dict(kernel="hmc", jitter=1.5), ["jitter must be a number from 0 to 1", "1.5"]),
        (dict(kernel="hmc", jitter="all"), ["jitter must be a number from 0 to 1", "'all'"]),
        (dict(jitter=0.5), ["jitter=0.5", "not of NUTS", "kernel='nuts'"]),
        (dict(kernel="hmc", engine="pyro", jitter=0.5), ["not of Pyro's HMC", "engine='pyro'"]),
        (dict(kernel="hmc", full_mass=True, jitter=0.5), ["not of Pyro's HMC", "['full_mass']"]),
    ],
)
def test_a_jitter_that_cannot_apply_is_refused(options, words):
    X, y = _data()
    with pytest.raises(ValueError) as error:
        mcmc(regression, X, y, num_samples=5, warmup_steps=5, num_chains=1, **options)
    for word in words:
        assert word in str(error.value)


def test_pyros_hmc_is_said_to_have_a_fixed_integration_time():
    X, y = _data()
    result = mcmc(regression, X, y, kernel="hmc", engine="pyro", num_samples=5, warmup_steps=5, num_chains=1)
    assert any("fixed time" in note for note in result.notes), result.notes


def test_the_compiled_potential_equals_pyros():
    X, y = _data()
    pyro.set_rng_seed(0)
    potential = Potential(regression, (X, y), compile="graph")
    z = np.array([0.3, -0.2, 1.1])
    value, grad = potential(z)
    eager_value, eager_grad = potential.eager(torch.tensor(z, dtype=torch.float32))
    assert value == pytest.approx(float(eager_value), rel=1e-6)
    assert np.allclose(grad, eager_grad.double().numpy(), rtol=1e-5)
    # the closed form: U = |y - X b|^2 / 2 + |b|^2 / 2 + const; dU/db = -X'(y - X b) + b
    b = torch.tensor(z, dtype=torch.float64)
    expected = -X.double().T @ (y.double() - X.double() @ b) + b
    assert np.allclose(grad, expected.numpy(), rtol=1e-4, atol=1e-3)


def test_chains_are_reproducible_by_seed_in_parallel_or_not(compiled_run):
    X, y, first = compiled_run
    again = mcmc(regression, X, y, num_samples=500, warmup_steps=300, num_chains=2, seed=0, processes=1)
    assert again.stats["processes"] == 1 and first.stats["processes"] == 2
    assert torch.equal(first.samples["beta"], again.samples["beta"])
    other = mcmc(regression, X, y, num_samples=20, warmup_steps=10, num_chains=2, seed=5, processes=1)
    assert not torch.equal(first.samples["beta"][:, :20], other.samples["beta"])
    assert other.compile["mode"] == "graph"  # compile="auto" on 2 x 30 iterations


def test_auto_compile_picks_inductor_where_its_compile_pays():
    # compare's defaults: 2 chains of 1,500 on 2 cores; the same one after the other; short runs
    assert auto_compile(1500, 2, 2) == "inductor"
    assert auto_compile(600, 2, 1) == "inductor"
    assert auto_compile(600, 2, 2) == "graph"
    assert auto_compile(30, 4, 2) == "graph"


def test_auto_compile_counts_the_processes_that_really_run(monkeypatch):
    # where the chains cannot fork (a daemon, a GPU) they run one after another in one process:
    # "auto" must price that, not the processes asked for
    import ppmodels.infer.sampling.driver as sampling

    asked = []

    def recording(iterations, num_chains, processes):
        asked.append((iterations, num_chains, processes))
        return auto_compile(iterations, num_chains, processes)

    monkeypatch.setattr(sampling, "auto_compile", recording)
    monkeypatch.setattr(sampling, "can_fork", lambda potential, processes: False)
    X, y = _data()
    result = mcmc(regression, X, y, num_samples=20, warmup_steps=10, num_chains=2, processes=2, seed=0)
    assert asked == [(30, 2, 1)]
    assert result.stats["processes"] == 1 and result.compile["mode"] == "graph"


def test_a_large_graph_is_announced_before_inductor_compiles_it(monkeypatch):
    # a 100-step HMM written with pyro.markov is 11,799 operations, 90 s of compiling: the
    # user hears it before the wait, with the way out (a small threshold stands in for it here)
    import ppmodels.infer.graphs.backends as potential_module

    monkeypatch.setattr(potential_module, "LARGE_GRAPH", 10)
    X, y = _data()
    with pytest.warns(UserWarning, match=r"compiling: the potential.s graph has \d+ operations .* DiscreteHMM"):
        potential = Potential(regression, (X, y), compile="inductor")
    assert potential.mode == "inductor" and "minutes to compile" in potential.note


def test_a_second_potential_of_the_same_model_and_data_is_found_in_inductors_cache():
    """Inductor's FX graph cache hits for the same model and data whatever the initial point
    (another seed); other data are other constants of the graph, hashed by value, so a graph
    found for them (from an earlier run: the cache is on disk) computes their potential."""
    from torch._dynamo.utils import counters

    X, y = _data()
    pyro.set_rng_seed(1)
    first = Potential(regression, (X, y), compile="inductor")
    hits = counters["inductor"]["fxgraph_cache_hit"]
    pyro.set_rng_seed(2)
    again = Potential(regression, (X, y), compile="inductor")
    assert counters["inductor"]["fxgraph_cache_hit"] == hits + 1
    assert not np.array_equal(first.initial, again.initial)
    other = Potential(regression, (X, y + 1.0), compile="inductor")
    z = np.array([0.3, -0.2, 1.1])
    assert other(z)[0] == pytest.approx(float(other.eager(torch.tensor(z, dtype=torch.float32))[0]), rel=1e-6)
    assert other(z)[0] != pytest.approx(again(z)[0])


def test_when_inductors_direct_entry_fails_torch_compile_serves_and_the_note_says_so(monkeypatch):
    import torch._inductor.compile_fx as compile_fx

    def fails(*args, **kwargs):
        raise RuntimeError("an internal change")

    monkeypatch.setattr(compile_fx, "compile_fx_inner", fails)
    X, y = _data()
    potential = Potential(regression, (X, y), compile="inductor")
    assert potential.mode == "inductor" and potential.fallback is None
    assert potential.note.startswith("inductor's direct entry failed (RuntimeError: an internal change")
    assert "torch.compile runs the potential instead" in potential.note
    z = np.array([0.3, -0.2, 1.1])
    assert potential(z)[0] == pytest.approx(float(potential.eager(torch.tensor(z, dtype=torch.float32))[0]), rel=1e-6)


def test_inductors_settings_follow_the_graphs_size():
    from torch.fx.experimental.proxy_tensor import make_fx

    from ppmodels.infer.graphs.backends import (
        FEW_FUSION_PAIRS_ABOVE,
        FUSION_PAIRS,
        SCALAR_KERNELS_UP_TO,
        inductor_settings,
    )

    cpu = torch.device("cpu")
    # scalar loops up to SCALAR_KERNELS_UP_TO elements in a tensor, vectorized above
    assert inductor_settings(make_fx(lambda x: (x * 2.0).sum())(torch.ones(SCALAR_KERNELS_UP_TO)), cpu) == {
        "cpp.simdlen": 1
    }
    assert inductor_settings(make_fx(lambda x: (x * 2.0).sum())(torch.ones(SCALAR_KERNELS_UP_TO + 1)), cpu) == {}

    # fewer fusion pairs tried above FEW_FUSION_PAIRS_ABOVE operations
    def chain(n):
        def f(x):
            for _ in range(n):
                x = x * 1.5
            return x

        return f

    for n, pairs in [(FEW_FUSION_PAIRS_ABOVE - 10, None), (FEW_FUSION_PAIRS_ABOVE, FUSION_PAIRS)]:
        graph = make_fx(chain(n))(torch.ones(3))
        settings = inductor_settings(graph, cpu)
        assert settings.get("max_fusion_buffer_group_pairwise_attempts") == pairs, len(graph.graph.nodes)


def test_small_accumulating_index_puts_are_dense_sums_and_exact():
    """The backward of indexing by a tensor (``transition[x]`` in an enumerated HMM) accumulates
    with ``index_put``; inductor (torch 2.13, CPU) compiled many of them in one graph to wrong
    gradients (the 30-step HMM's), so small ones are written as a one-hot product and a sum:
    the same values and gradients, repeated and negative indices included."""
    from ppmodels.infer.graphs.decompositions import SMALL_MATMUL, inductor_decompositions

    put = inductor_decompositions()[torch.ops.aten.index_put.default]
    index = torch.tensor([[2, 0], [-1, 2]])  # repeated, and -1 for the last row
    cases = [(torch.randn(3, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64)),
             (torch.randn(3, 4, dtype=torch.float64), torch.randn(2, 2, 4, dtype=torch.float64)),
             (torch.randn(3, 4, dtype=torch.float64), torch.randn(4, dtype=torch.float64))]  # fmt: skip
    for x, values in cases:
        x.requires_grad_(True)
        values.requires_grad_(True)
        mine = put(x, [index], values, True)
        theirs = torch.ops.aten.index_put(x, [index], values, True)
        assert torch.allclose(mine, theirs, rtol=1e-12, atol=1e-12)
        weights = torch.randn(theirs.shape, dtype=torch.float64)
        grads = torch.autograd.grad((mine * weights).sum(), (x, values))
        expected = torch.autograd.grad((theirs * weights).sum(), (x, values))
        assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-12) for a, b in zip(grads, expected))
    x, values = torch.zeros(3), torch.ones(2, 2)
    assert put(x, [index], values, False) is NotImplemented  # a write, not a sum: aten's own
    assert put(x, [index > 0], values, True) is NotImplemented  # a mask
    assert put(torch.zeros(3, 3), [index, index], values, True) is NotImplemented  # two indices
    big = torch.zeros(SMALL_MATMUL)
    assert put(big, [torch.tensor([0, 1])], torch.ones(2), True) is NotImplemented


def test_small_cumulative_sums_and_products_are_fused_and_exact():
    """A Dirichlet's stick-breaking transform and a model's ``cumsum`` are aten's scans, which
    inductor leaves as calls between kernels on a CPU; small ones are written as masked sums and
    products (one kernel), with the same values and gradients, zeros and negatives included."""
    from torch.fx.experimental.proxy_tensor import make_fx

    from ppmodels.infer.graphs.decompositions import SMALL_MATMUL, inductor_decompositions

    decompositions = inductor_decompositions()
    x = torch.tensor([[0.5, -1.5, 0.0, 2.0], [1.25, 3.0, -0.5, 0.75], [0.0, 0.0, 1.0, -2.0]], dtype=torch.float64)

    def scanned(scan, dim):
        def f(x):
            y = scan(x, dim)
            (grad,) = torch.autograd.grad((y * torch.arange(1.0, 5.0, dtype=x.dtype)).sum(), x)
            return y, grad

        return f

    for scan in (torch.cumsum, torch.cumprod):
        for dim in (0, 1, -1):
            f = scanned(scan, dim)
            graph = make_fx(f, decomposition_table=decompositions)(x.clone().requires_grad_(True))
            targets = {str(n.target) for n in graph.graph.nodes if n.op == "call_function"}
            assert not targets & {"aten.cumsum.default", "aten.cumprod.default"}, (scan, dim)
            y, grad = graph(x.clone().requires_grad_(True))
            y_ref, grad_ref = f(x.clone().requires_grad_(True))
            assert torch.allclose(y, y_ref, rtol=1e-12, atol=1e-12), (scan, dim)
            assert torch.allclose(grad, grad_ref, rtol=1e-12, atol=1e-12), (scan, dim)

    zeros = x == 0  # cumprod's backward counts zeros this way: the same integer result and dtype
    graph = make_fx(lambda m: torch.cumsum(m, 1), decomposition_table=decompositions)(zeros)
    assert graph(zeros).dtype == torch.cumsum(zeros, 1).dtype and torch.equal(graph(zeros), torch.cumsum(zeros, 1))

    large = torch.ones(SMALL_MATMUL // 64 + 1, 64)  # over SMALL_MATMUL multiply-adds: aten's own scan
    graph = make_fx(lambda x: torch.cumsum(x, -1), decomposition_table=decompositions)(large)
    assert "aten.cumsum.default" in {str(n.target) for n in graph.graph.nodes}


def test_a_computation_repeated_in_the_model_is_compiled_once(monkeypatch):
    """Each Normal built from ``scale.exp()`` takes its log again, and its gradient repeats that
    too: the compiled graph holds each computation once, and computes the same potential."""
    import ppmodels.infer.density.potential as potential_module

    def repeated(y):
        scale = pyro.sample("scale", dist.Normal(0.0, 1.0))
        pyro.sample("y1", dist.Normal(0.0, scale.exp()), obs=y[0])
        pyro.sample("y2", dist.Normal(0.0, scale.exp()), obs=y[1])

    y = torch.tensor([0.4, -1.3])
    compiled = Potential(repeated, (y,), compile="inductor")
    assert compiled.mode == "inductor" and compiled.fallback is None
    z = np.array([0.7])
    assert compiled(z)[0] == pytest.approx(float(compiled.eager(torch.tensor(z, dtype=torch.float32))[0]), rel=1e-6)
    monkeypatch.setattr(potential_module, "without_repeats", lambda graph: graph)
    assert compiled.nodes < Potential(repeated, (y,), compile="inductor").nodes


def test_a_potential_compiles_once():
    X, y = _data()
    potential = Potential(regression, (X, y), compile=None)
    assert potential.mode is None
    with pytest.raises(ValueError, match="`compile` must be one of .*got 'jit'"):
        potential.compile("jit")
    assert potential.compile("graph").mode == "graph"
    with pytest.raises(RuntimeError, match="already compiled"):
        potential.compile("graph")


def test_adaptation_windows_are_pyros():
    for warmup in (10, 19, 20, 100, 150, 500, 1000, 1234):
        adapter = WarmupAdapter()
        adapter._warmup_steps = warmup
        pyros = [(w.start, w.end) for w in adapter._build_adaptation_schedule()]
        assert adaptation_windows(warmup) == pyros, warmup


# -- discrete sites summed out by enumeration --------------------------------------------------
@config_enumerate
def shifted_mixture(y):
    """y_i is an equal mixture of normal(mu - 2, 1) and normal(mu + 2, 1), the component a
    discrete site per datum; mu ~ normal(0, 1)."""
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(y)):
        k = pyro.sample("k", dist.Bernoulli(0.5))
        pyro.sample("y", dist.Normal(mu + 4.0 * k - 2.0, 1.0), obs=y)


def test_enumerated_discrete_sites_are_summed_out_in_the_compiled_potential():
    y = torch.tensor([-1.2, 2.9, 3.4, -0.1, 2.2, -1.9])
    result = mcmc(shifted_mixture, y, num_samples=800, warmup_steps=300, num_chains=2, seed=0, max_plate_nesting=1)
    assert result.compile["mode"] == "inductor", result.compile
    # exact: the one-dimensional posterior of mu on a fine grid
    grid = torch.linspace(-6.0, 6.0, 24001, dtype=torch.float64)
    yy = y.double()
    log_lik = torch.logaddexp(
        dist.Normal(grid[:, None] - 2, 1.0).log_prob(yy), dist.Normal(grid[:, None] + 2, 1.0).log_prob(yy)
    ).sum(-1)
    w = (log_lik + dist.Normal(0.0, 1.0).log_prob(grid)).softmax(0)
    exact_mean = float((w * grid).sum())
    exact_sd = float((w * (grid - exact_mean) ** 2).sum().sqrt())
    draws = result.get_samples()["mu"]
    assert draws.shape == (1600,)
    ess = float(result.diagnostics()["mu"]["n_eff"])
    assert abs(float(draws.mean()) - exact_mean) < 4.5 * exact_sd / math.sqrt(ess)
    assert abs(float(draws.std()) / exact_sd - 1) < 0.15


# -- tracing in two stages ------------------------------------------------------------------------
class LowerGamma(torch.autograd.Function):
    """The regularised lower incomplete gamma function, with the derivative in its shape that
    torch lacks (by a central difference), as a user supplies one."""

    @staticmethod
    def forward(ctx, shape, x):
        ctx.save_for_backward(shape, x)
        return torch.igamma(shape, x)

    @staticmethod
    def backward(ctx, grad):
        shape, x = ctx.saved_tensors
        step = 1e-3
        return grad * (torch.igamma(shape + step, x) - torch.igamma(shape - step, x)) / (2 * step), None


def censored(x):
    shape = pyro.sample("shape", dist.LogNormal(0.0, 0.5))
    pyro.factor("below", LowerGamma.apply(shape, x).log().sum())


def test_a_gradient_only_the_model_can_take_is_traced_through_the_model(monkeypatch):
    """The potential is traced alone and then differentiated as a graph (each repeated factor's
    gradient summed before it is differentiated); a graph of aten operations loses the model's
    own backward (here ``igamma``'s in its shape, which aten has not), so a model that applies
    an ``autograd.Function`` is traced through the model, as autograd runs it."""
    failures = []
    two_stages = Potential._traced_in_two_stages

    def recording(self, *args):
        try:
            return two_stages(self, *args)
        except Exception as error:
            failures.append(str(error))
            raise

    monkeypatch.setattr(Potential, "_traced_in_two_stages", recording)
    x = torch.tensor([0.5, 1.0, 2.0])
    potential = Potential(censored, (x,), compile="inductor")
    assert len(failures) == 1 and "LowerGamma" in failures[0]
    assert potential.mode == "inductor" and potential.fallback is None
    for z in (-0.4, 0.3):
        value, grad = potential(np.array([z]))
        value_e, grad_e = potential.eager(torch.tensor([z]))
        assert value == pytest.approx(float(value_e), rel=1e-5)
        assert grad[0] == pytest.approx(float(grad_e), rel=1e-4)


class DampedLog(torch.autograd.Function):
    """``log``, whose gradient is damped below 0.5 (as Pyro's ``safe_log`` clamps its own)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.log()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / x.clamp(min=0.5)


def damped(y):
    scale = pyro.sample("scale", dist.LogNormal(-1.0, 0.3))
    pyro.factor("damped", DampedLog.apply(scale) * len(y))


def test_a_models_own_backward_is_kept_in_the_compiled_gradient():
    """Differentiating the forward's operations would give ``1 / x`` where the model's backward
    gives ``1 / 0.5``: the compiled gradient is the model's, as eager Pyro's is."""
    potential = Potential(damped, (torch.ones(3),), compile="inductor")
    assert potential.mode == "inductor" and potential.fallback is None
    z = np.array([-1.5])  # scale exp(-1.5) = 0.22, under 0.5
    value, grad = potential(z)
    value_e, grad_e = potential.eager(torch.tensor(z, dtype=torch.float32))
    assert value == pytest.approx(float(value_e), rel=1e-5)
    assert grad[0] == pytest.approx(float(grad_e), rel=1e-4)


def test_the_hook_names_each_autograd_function_applied_on_this_torch():
    """``Function.apply`` is a Python classmethod up to torch 2.13 and a C one from 2.14: the
    hook must see the model's Function on either (on 2.14 it had seen only ``"?"``, and every
    model's potential lost its two-stage trace), and the Function must still run and
    differentiate as its own backward says."""
    from ppmodels.infer.graphs.tracing import watch_custom_backwards

    x = torch.tensor(0.25, requires_grad=True)
    with watch_custom_backwards() as seen:
        y = DampedLog.apply(x)
        z = torch.exp(x)  # an operation, not a Function
    (grad,) = torch.autograd.grad(y + z, x)
    assert seen == ["DampedLog"]
    assert float(grad) == pytest.approx(1 / 0.5 + math.exp(0.25))
    assert DampedLog.apply(torch.tensor(2.0)) == pytest.approx(math.log(2.0))  # apply restored after the block
    with watch_custom_backwards() as after:
        pass
    assert after == []


def test_the_hook_says_when_it_cannot_watch_this_torch(monkeypatch):
    """Where ``Function.apply`` is not a descriptor the hook can bind (a future torch), every
    potential takes the one-stage path: correct, slower to compile, and said once."""
    import ppmodels.infer.graphs.tracing as potential_module

    monkeypatch.setattr(potential_module, "_WARNED_UNWATCHED", False)
    monkeypatch.setattr(torch.autograd.Function, "apply", 42)
    with pytest.warns(RuntimeWarning, match="cannot watch torch .* one stage"):
        with potential_module.watch_custom_backwards() as seen:
            pass
    assert seen == ["?"]
    with potential_module.watch_custom_backwards() as again:  # said once a process
        pass
    assert again == ["?"]


def test_a_repeated_factor_is_differentiated_once():
    """An enumerated HMM's transition factor is the same at each step: traced in two stages, its
    gradients are summed first, so the graph grows by a few operations a step, not by a
    backward per step (the benchmark's 100-step HMM: 4,130 operations against 6,268)."""
    from ppmodels.infer.graphs.rewrites import without_repeats
    from ppmodels.infer.graphs.tracing import trace

    from test_chains import Y, learned_hmm

    potential = Potential(learned_hmm, (torch.cat([Y, Y, Y, Y]),), compile=None, max_plate_nesting=0)
    z0 = potential.as_tensor(potential.initial[0])
    two = without_repeats(potential._traced_in_two_stages(z0, None))
    one = without_repeats(trace(lambda z: potential.value_and_grad(z), z0.detach().requires_grad_(True)))
    assert len(two.graph.nodes) < 0.8 * len(one.graph.nodes), (len(two.graph.nodes), len(one.graph.nodes))
    value, grad = two(z0.detach().requires_grad_(True))
    value_e, grad_e = potential.eager(z0)
    assert torch.allclose(value, value_e, rtol=1e-5) and torch.allclose(grad, grad_e, rtol=1e-4, atol=1e-4)


# -- a PyroModule with PyroSample priors, as Pyro's tutorials write it ------------------------------
class LinearModule(PyroModule):
    """The conjugate regression above as a ``PyroModule``: its prior is made once, when the
    module is built, with Pyro's validation on (its default)."""

    def __init__(self):
        super().__init__()
        self.linear = PyroModule[torch.nn.Linear](3, 1, bias=False)
        self.linear.weight = PyroSample(dist.Normal(0.0, 1.0).expand([1, 3]).to_event(2))

    def forward(self, X, y=None):
        mean = self.linear(X).squeeze(-1)
        with pyro.plate("data", X.shape[0]):
            pyro.sample("y", dist.Normal(mean, 1.0), obs=y)


def test_a_pyromodule_with_pyrosample_priors_compiles_and_matches_the_closed_form():
    """A prior made with validation on checks its support at every ``log_prob`` with a Python
    ``if`` on the value; the compiled potential leaves that check out (every point of the
    unconstrained space is in the support), as it does for the distributions made inside the
    model. Before, such a model ran eagerly, about 100 times slower a call."""
    X, y = _data()
    with pyro.validation_enabled(True):
        module = LinearModule()
    prior = module.linear._pyro_samples["weight"]
    for mode in ("graph", "inductor"):
        potential = Potential(module, (X, y), compile=mode)
        assert potential.mode == mode and potential.fallback is None, potential.fallback
        z = np.array([0.3, -0.2, 1.1])
        value, grad = potential(z)
        b = torch.tensor(z, dtype=torch.float64)
        expected = -X.double().T @ (y.double() - X.double() @ b) + b  # as for `regression`
        assert np.allclose(grad, expected.numpy(), rtol=1e-4, atol=1e-3)
    # the user's prior keeps its checks
    assert prior.base_dist._validate_args
    result = mcmc(module, X, y, num_samples=400, warmup_steps=300, num_chains=2, seed=0, compile="graph")
    assert result.compile["mode"] == "graph" and result.compile["fallback"] is None
    mean, sd = _exact(X, y)
    draws = result.get_samples()["linear.weight"].reshape(-1, 3).double()
    ess = result.diagnostics()["linear.weight"]["n_eff"].reshape(3).double()
    assert ((draws.mean(0) - mean).abs() < 4.5 * sd / ess.sqrt()).all(), (draws.mean(0), mean, ess)
    assert ((draws.std(0) / sd - 1).abs() < 0.2).all(), (draws.std(0), sd)


# -- a model whose log density is random -------------------------------------------------------------
class DropoutRegression(PyroModule):
    def __init__(self):
        super().__init__()
        self.drop = torch.nn.Dropout(0.2)
        self.linear = PyroModule[torch.nn.Linear](3, 1, bias=False)
        self.linear.weight = PyroSample(dist.Normal(0.0, 1.0).expand([1, 3]).to_event(2))

    def forward(self, X, y=None):
        mean = self.linear(self.drop(X)).squeeze(-1)
        with pyro.plate("data", X.shape[0]):
            pyro.sample("y", dist.Normal(mean, 1.0), obs=y)


def noisy_data(X, y):
    beta = pyro.sample("beta", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(X @ beta, 1.0), obs=y + 0.1 * torch.randn(len(y)))


def test_a_model_whose_log_density_is_random_is_refused():
    """NUTS on a random density runs (Pyro's too) and returns draws that are not the
    posterior's; a dropout layer left in training mode is the usual cause."""
    X, y = _data()
    with pytest.raises(ValueError, match=r"log density is random.*\.eval\(\)"):
        mcmc(noisy_data, X, y, num_samples=10, warmup_steps=10, num_chains=1)
    module = DropoutRegression()
    with pytest.raises(ValueError, match="log density is random"):
        mcmc(module, X, y, num_samples=10, warmup_steps=10, num_chains=1)
    module.eval()
    result = mcmc(module, X, y, num_samples=10, warmup_steps=10, num_chains=1, compile=None)
    assert result.samples["linear.weight"].shape == (1, 10, 1, 3)


def rounding_noise(X, y):
    """The regression (a log density of about -350 at the first point), moved by up to 1e-3
    at each evaluation: 3e-6 relative, more than float32's rounding there (3e-5), as a GPU's
    atomic additions move a sum."""
    regression(X, y)
    pyro.factor("roundings", 1e-3 * torch.rand(()))


def test_a_log_density_a_few_roundings_apart_is_not_called_random():
    X, y = _data()
    result = mcmc(rounding_noise, X, y, num_samples=10, warmup_steps=10, num_chains=1, compile=None)
    assert result.samples["beta"].shape == (1, 10, 3)


# -- the fallback and Pyro's engine -------------------------------------------------------------
def branching(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    shift = 1.0 if mu > 0 else -1.0  # Python control flow on a latent's value
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu + shift, 1.0), obs=y)


def test_a_model_that_cannot_be_traced_runs_eagerly_and_says_why():
    y = torch.tensor([0.5, 1.5])
    with pytest.warns(EagerFallbackWarning, match=r"compile='graph': the log density runs eagerly.*torch \d"):
        result = mcmc(branching, y, num_samples=30, warmup_steps=20, num_chains=1, seed=0)
    assert result.compile["mode"] is None
    assert "data-dependent" in result.compile["fallback"] or "differs" in result.compile["fallback"]
    assert any("ran eagerly" in note for note in result.notes)
    assert result.samples["mu"].shape == (1, 30)


def test_an_option_this_kernel_lacks_runs_pyros_mcmc_and_says_so():
    X, y = _data()
    result = mcmc(regression, X, y, num_samples=20, warmup_steps=10, num_chains=1, full_mass=True, compile=None)
    assert result.engine == "pyro"
    assert "full_mass" in result.notes[0]
    assert result.samples["beta"].shape == (1, 20, 3)
    assert "n_eff" in result.diagnostics()["beta"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kernel": "gibbs"}, r"kernel.*nuts.*'gibbs'"),
        ({"num_samples": 0}, "num_samples"),
        ({"compile": "fast"}, r"compile.*'fast'"),
        ({"engine": "stan"}, r"engine.*'stan'"),
        ({"num_chains": -1}, "num_chains"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    X, y = _data()
    with pytest.raises(ValueError, match=match):
        mcmc(regression, X, y, **kwargs)


def test_a_model_that_is_not_callable_is_refused():
    with pytest.raises(TypeError, match="model must be a callable"):
        mcmc("regression")


# -- a reference posterior ---------------------------------------------------------------------
def test_eight_schools_matches_posteriordbs_reference():
    problem = posteriordb.load("eight_schools-eight_schools_noncentered")
    result = mcmc(problem.model, *problem.args, num_chains=2, seed=0)
    rows = problem.reference.score(problem.stan_draws(result.get_samples()))
    assert max(abs(r["mean_error_sds"]) for r in rows) < 0.15
    assert all(0.85 < r["sd_ratio"] < 1.15 for r in rows)
    data = result.to_arviz()
    assert data.posterior["mu"].shape == (2, 1000)


def correlated_pair(y):
    """A correlation r with a flat prior on the real line: the Cholesky of [[1, r], [r, 1]]
    fails wherever |r| >= 1."""
    r = pyro.sample("r", dist.Normal(0.0, 0.3))
    cov = torch.stack([torch.stack([torch.ones_like(r), r]), torch.stack([r, torch.ones_like(r)])])
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.MultivariateNormal(torch.zeros(2), scale_tril=torch.linalg.cholesky(cov)), obs=y)


def gaussian_hmm(y):
    """A two-state Gaussian HMM as Pyro's DiscreteHMM distribution (the states summed out by a
    parallel scan, which clamps a maximum in place in Pyro's ``_logmatmulexp``)."""
    transition = pyro.sample("transition", dist.Dirichlet(torch.ones(2) + 4 * torch.eye(2)).to_event(1))
    locs = pyro.sample("locs", dist.Normal(torch.tensor([0.0, 4.0]), 1.0).to_event(1))
    hmm = dist.DiscreteHMM(torch.zeros(2), transition.log(), dist.Normal(locs.unsqueeze(-2), 1.0), duration=len(y))
    pyro.sample("y", hmm, obs=y)


def test_a_model_with_in_place_operations_compiles_to_the_same_potential():
    """Inductor's entry for traced graphs expects no in-place operations; the potential's are
    rewritten first (here a clamp through ``.data``, out of place). Without that, inductor
    compiled this model's potential wrong (111.6 against 110.9 here; NaN everywhere on a
    100-step version): the check caught it, and the chains ran eagerly, 40 times slower."""
    y = torch.tensor([0.1, -0.4, 4.2, 3.9, 4.4, 0.3, 0.0, 3.7, 4.1, -0.2])
    pyro.set_rng_seed(0)
    potential = Potential(gaussian_hmm, (y,), compile="inductor")
    assert potential.mode == "inductor" and potential.fallback is None, potential.fallback
    assert potential.note is None, potential.note  # inductor's own entry took the rewritten graph
    for z in np.random.default_rng(0).normal(size=(3, potential.dim)):
        value, grad = potential(z)
        eager_value, eager_grad = potential.eager(torch.tensor(z, dtype=torch.float32))
        assert value == pytest.approx(float(eager_value), rel=1e-5)
        assert np.allclose(grad, eager_grad.double().numpy(), rtol=1e-4, atol=1e-4)


def writes_through_a_view(y):
    """The second location is twice the first, written in place through a slice of a copy."""
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    loc = mu.expand(2).clone()
    loc[1:].mul_(2.0)
    pyro.sample("y", dist.Normal(loc, 1.0).to_event(1), obs=y)


def test_an_in_place_operation_through_a_view_is_made_functional_by_a_second_trace():
    y = torch.tensor([0.7, 1.9])
    potential = Potential(writes_through_a_view, (y,), compile="inductor")
    assert potential.mode == "inductor" and potential.fallback is None, potential.fallback
    for mu in (-0.4, 0.9):
        exact = 0.5 * mu**2 + 0.5 * (0.7 - mu) ** 2 + 0.5 * (1.9 - 2 * mu) ** 2 + 1.5 * math.log(2 * math.pi)
        value, grad = potential(np.array([mu]))
        assert value == pytest.approx(exact, rel=1e-5)
        assert grad[0] == pytest.approx(mu - (0.7 - mu) - 2 * (1.9 - 2 * mu), abs=1e-4)


def test_an_out_of_place_variant_is_decomposed_as_inductor_expects_or_left_to_the_second_trace():
    """Inductor refuses ``clamp`` undecomposed; the variant is traced through the decomposition
    table on zeros of its arguments' shapes. Where that trace fails, the in-place operation
    stays, for functionalize's trace of the whole graph."""
    from torch.fx.experimental.proxy_tensor import make_fx

    from ppmodels.infer.graphs.decompositions import inductor_decompositions
    from ppmodels.infer.graphs.rewrites import rewrite_in_place_on_unread_tensors

    def targets(graph):
        return [str(n.target) for n in graph.graph.nodes if n.op == "call_function"]

    def clamped(x):
        return (x * 2.0).clamp_(0.0, 1.0) + 1.0

    x = torch.tensor([-0.5, 0.3, 0.9])
    decompositions = inductor_decompositions()
    graph = make_fx(clamped)(x)
    assert rewrite_in_place_on_unread_tensors(graph, decompositions) is False
    assert "aten.clamp_min.default" in targets(graph) and "aten.clamp.default" not in targets(graph)
    assert torch.equal(graph(x), clamped(x))

    def refuses(*args, **kwargs):
        raise RuntimeError("needs the values")

    graph = make_fx(clamped)(x)
    assert rewrite_in_place_on_unread_tensors(graph, {**decompositions, torch.ops.aten.clamp.default: refuses})
    assert "aten.clamp_.default" in targets(graph) and torch.equal(graph(x), clamped(x))


def test_in_place_operations_that_cannot_be_rewritten_leave_the_potential_eager(monkeypatch):
    def refuses(*args, **kwargs):
        raise NotImplementedError("functionalize: an operation without a functional variant")

    monkeypatch.setattr(torch.func, "functionalize", refuses)
    y = torch.tensor([0.7, 1.9])
    with pytest.warns(EagerFallbackWarning, match="in-place operations could not be rewritten"):
        potential = Potential(writes_through_a_view, (y,), compile="inductor")
    assert potential.mode is None
    assert potential.fallback.startswith("the potential's in-place operations could not be rewritten for inductor")
    assert "NotImplementedError: functionalize: an operation without a functional variant" in potential.fallback
    assert "compile='graph'" in potential.fallback
    assert math.isfinite(potential(np.zeros(potential.dim))[0])


def test_an_in_place_operation_on_a_tensor_nothing_else_reads_becomes_out_of_place():
    from torch.fx.experimental.proxy_tensor import make_fx

    from ppmodels.infer.graphs.rewrites import rewrite_in_place_on_unread_tensors

    def mutated(graph):
        return [str(n.target) for n in graph.graph.nodes if n.op == "call_function" and n.target._schema.is_mutable]

    x = torch.tensor([-0.5, 0.3, 0.9, 1.4])
    # autograd's backward of clamp(min, max) makes its mask this way
    mask = make_fx(lambda x: (x >= 0).logical_and_(x <= 1).float() * x)(x)
    expected = mask(x)
    assert mutated(mask) == ["aten.logical_and_.default"]
    assert rewrite_in_place_on_unread_tensors(mask) is False
    assert mutated(mask) == [] and torch.equal(mask(x), expected)

    def read_after(x):
        y = x * 2.0
        total = y.sum()  # read before the change: the rewrite is exact
        y.add_(1.0)
        return y * total

    rewritten = make_fx(read_after)(x)
    assert rewrite_in_place_on_unread_tensors(rewritten) is False
    assert mutated(rewritten) == [] and torch.equal(rewritten(x), read_after(x))

    def through_a_view(x):
        y = x * 2.0
        head = y[:2]
        y.add_(1.0)
        return head * 1.0  # the view sees the change: the rewrite would be wrong

    kept = make_fx(through_a_view)(x)
    assert rewrite_in_place_on_unread_tensors(kept) is True
    assert mutated(kept) == ["aten.add_.Tensor"] and torch.equal(kept(x), through_a_view(x))


def test_a_categorical_with_probabilities_compiles_without_a_second_trace(monkeypatch):
    # Categorical(probs) clamps them; the clamp's backward mask is the only in-place operation
    def refuses(*args, **kwargs):
        raise AssertionError("functionalize is not needed here")

    monkeypatch.setattr(torch.func, "functionalize", refuses)
    y = torch.tensor([0, 2, 2, 1, 2])
    dirichlet = dist.Dirichlet(torch.ones(3))

    def categorical(y):
        probs = pyro.sample("probs", dirichlet)
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Categorical(probs), obs=y)

    pyro.set_rng_seed(0)
    potential = Potential(categorical, (y,), compile="inductor")
    assert potential.mode == "inductor" and potential.fallback is None, potential.fallback
    assert potential.note is None, potential.note
    z = np.array([0.2, -0.6])
    value, grad = potential(z)
    eager_value, eager_grad = potential.eager(torch.tensor(z, dtype=torch.float32))
    assert value == pytest.approx(float(eager_value), rel=1e-6)
    assert np.allclose(grad, eager_grad.double().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", [None, "inductor"])
def test_a_failing_cholesky_is_an_infinite_potential_not_a_crash(mode):
    y = torch.tensor([[0.5, 0.4], [-1.0, -0.7], [0.2, 0.3]])
    pyro.set_rng_seed(0)
    potential = Potential(correlated_pair, (y,), compile=mode)
    assert potential.mode == mode, potential.fallback
    value, grad = potential(np.array([1.5]))
    assert value == math.inf and np.isnan(grad).all()
    assert math.isfinite(potential(np.array([0.3]))[0])
    result = mcmc(correlated_pair, y, num_samples=100, warmup_steps=100, num_chains=1, compile=mode, seed=0)
    assert (result.samples["r"].abs() < 1).all()
