"""The compiled step: the same losses and gradients as eager Pyro from the same seed, fresh
draws at every step, graphs guarded by what they baked in, clear refusals and fallbacks."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoDiagonalNormal

from ppmodels.data import ContextTargetBatches, digits, gp_functions
from ppmodels.infer import NonFiniteLossError, fit
from ppmodels.infer.training.compiled_step import CompiledStep
from ppmodels.models import VAE, BayesianNetwork, NeuralProcess
from ppmodels.nn import MLPDecoder, MLPEncoder

import user_programs as up

#: compiled against eager from the same seed: the graph runs the same kernels in the same
#: order, so the losses agree to float rounding of a few steps
GRAPH_RTOL = 1e-5


@pytest.fixture(scope="module")
def pixels():
    return digits().train_x[:256]


def small_vae(seed=0):
    torch.manual_seed(seed)
    return VAE(MLPEncoder((1, 8, 8), 3, (32,)), MLPDecoder(3, (1, 8, 8), (32,)), 3)


def both(make, data, **kwargs):
    """Losses (and the trained pair) of the same run eagerly and as a graph; ``data`` may be a
    callable making the data afresh for each run (a source that shuffles with its own state)."""
    out = []
    for mode in (None, "graph"):
        pyro.clear_param_store()
        pair = make()
        result = fit(pair, data() if callable(data) else data, compile=mode, **kwargs)
        out.append((result, pair))
    return out


def close(a, b, rtol=GRAPH_RTOL):
    torch.testing.assert_close(
        torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64), rtol=rtol, atol=0
    )


def test_a_vae_trains_as_eagerly_with_fresh_draws_and_a_graph_for_the_last_partial_batch(pixels):
    (eager, a), (graph, b) = both(small_vae, pixels[:200], epochs=3, batch_size=64, seed=0)
    close(graph.losses, eager.losses)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    assert len(set(graph.losses)) == len(graph.losses)  # every step drew afresh


def test_the_graph_draws_afresh_and_returns_the_gradients(pixels):
    pair = small_vae()
    params = list(pair.parameters())

    def loss_fn(args, kwargs):
        loss = pyro.infer.Trace_ELBO().differentiable_loss(pair.model, pair.guide, *args)
        return loss, loss

    step = CompiledStep(pair, loss_fn, [(f"p{i}", p) for i, p in enumerate(params)], {}, "graph")
    x = pixels[:32]
    values = [float(step((x,), {})) for _ in range(5)]
    assert len(set(values)) == 5 and step.num_graphs == 1
    pyro.set_rng_seed(3)
    graph_value = float(step((x,), {}))
    graph_grads = [p.grad.clone() for p in params]
    pyro.set_rng_seed(3)
    for p in params:
        p.grad = None
    loss = pyro.infer.Trace_ELBO().differentiable_loss(pair.model, pair.guide, x)
    loss.backward()
    assert graph_value == pytest.approx(float(loss.detach()), rel=GRAPH_RTOL)
    for g, p in zip(graph_grads, params):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6)


def test_a_bayesian_network_of_pyro_samples(pixels):
    y = digits().train_y[:256]

    def make():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
        return BayesianNetwork(net)

    (eager, _), (graph, _) = both(make, (pixels, y), epochs=2, batch_size=64, seed=1)
    close(graph.losses, eager.losses, rtol=1e-4)


def test_classic_pyro_param_and_autoguide_programs():
    (eager, _), (graph, _) = both(lambda: (up.schools_model, up.schools_guide), up.SCHOOLS, epochs=30, seed=0)
    close(graph.losses, eager.losses)
    x, y = up.rugged_data(n=60)

    def make():
        torch.manual_seed(1)
        model = up.BayesianRegression(3, 1)
        return model, AutoDiagonalNormal(model)

    (eager, _), (graph, _) = both(make, (x, y), epochs=30, lr=0.03, seed=2)
    close(graph.losses, eager.losses)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_networks_registered_with_pyro_module():
    x = digits().train_x[:128].reshape(128, 64)

    def make():
        torch.manual_seed(0)
        return up.PyroVAE()

    (eager, _), (graph, _) = both(make, x, epochs=5, seed=0)
    close(graph.losses, eager.losses)


def test_neural_process_context_sizes_share_one_symbolic_graph():
    data = gp_functions("rbf", num_functions=64, num_points=20, seed=0)

    def batches():
        return ContextTargetBatches(data, batch_size=16, min_context=3, max_context=12, seed=0)

    def make():
        torch.manual_seed(0)
        return NeuralProcess(hidden=8, latent_dim=4)

    (eager, _), (graph, _) = both(make, batches, epochs=3, seed=0)
    close(graph.losses, eager.losses, rtol=1e-4)


def test_a_changed_python_attribute_is_a_new_graph_not_a_stale_one(pixels):
    y = digits().train_y[:256]

    from ppmodels.infer import Callback

    class ChangeKLWeight(Callback):
        def on_step_start(self, state):
            if state.step == 3:
                state.pair.kl_weight = 0.25

    def make():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8), torch.nn.ReLU(), torch.nn.Linear(8, 10))
        return BayesianNetwork(net)

    (eager, _), (graph, _) = both(make, (pixels, y), epochs=2, batch_size=64, seed=0, callbacks=[ChangeKLWeight()])
    close(graph.losses, eager.losses, rtol=1e-4)
    assert abs(eager.losses[4] - eager.losses[3]) > 0  # the weight did change the loss


def test_estimators_that_cannot_be_compiled_are_refused():
    with pytest.raises(ValueError, match=r"compile: 'tracegraph' fits baselines and Rao-Blackwellises"):
        fit(small_vae(), torch.rand(16, 1, 8, 8), elbo="tracegraph", compile="graph")
    with pytest.raises(ValueError, match=r"compile: 'tailadaptive' computes gradients only"):
        fit(small_vae(), torch.rand(16, 1, 8, 8), elbo="tailadaptive", batch_size=16, compile="graph")
    with pytest.raises(ValueError, match=r"`compile` must be one of \['graph', 'inductor'\], but got 'fast'"):
        fit(small_vae(), torch.rand(16, 1, 8, 8), compile="fast")
    with pytest.raises(ValueError, match=r"`nan_check_every` must be a positive int, but got 0"):
        fit(small_vae(), torch.rand(16, 1, 8, 8), nan_check_every=0)


def test_iwae_compiled_is_iwae(pixels):
    (eager, _), (graph, _) = both(small_vae, pixels[:128], epochs=2, batch_size=64, seed=0, elbo="iwae")
    close(graph.losses, eager.losses, rtol=1e-4)


def test_data_dependent_control_flow_falls_back_to_eager_with_the_cause():
    x = torch.randn(20)

    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        if mu > 0:  # a branch on a sampled value
            mu = mu * 1.0
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        pyro.sample("mu", dist.Normal(pyro.param("loc", torch.tensor(0.0)), 1.0))

    with pytest.warns(UserWarning, match=r"compile='graph': this step cannot be traced into a graph .*data-dependent"):
        result = fit((model, guide), x, epochs=5, compile="graph", seed=0)
    assert len(result.losses) == 5 and all(math.isfinite(v) for v in result.losses)


def test_a_tensor_trained_outside_the_pair_is_not_baked_in():
    x = torch.randn(20)
    hidden = torch.zeros((), requires_grad=True)  # not a module parameter, not a pyro.param

    def model(x):
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(hidden, 1.0), obs=x)

    def guide(x):
        pass

    with pytest.warns(UserWarning, match=r"the trained tensor 'optimizer.param0' was read outside the pair's modules"):
        fit((model, guide), x, epochs=3, compile="graph", optimizer=torch.optim.SGD([hidden], lr=0.01))


def test_nan_checked_every_few_steps_restores_the_last_good_state():
    from test_fit import Exploding

    pair = Exploding()
    x = torch.ones(20)
    with pytest.raises(NonFiniteLossError, match=r"checked every 3 steps: they are those before step \d+"):
        fit(
            pair, (x,), epochs=5, batch_size=4, optimizer=torch.optim.SGD(pair.parameters(), lr=1e-4), nan_check_every=3
        )
    assert float(pair.w.detach()) <= 0.0035  # a state whose loss was finite


def test_resume_with_a_compiled_step_is_exact(tmp_path, pixels):
    straight = fit(small_vae(), pixels, epochs=4, seed=3, compile="graph")
    fit(small_vae(), pixels, epochs=2, seed=3, compile="graph", checkpoint=tmp_path / "ck.pt")
    resumed = fit(small_vae(), pixels, epochs=4, seed=3, compile="graph", resume=tmp_path / "ck.pt")
    assert resumed.losses == straight.losses


@pytest.mark.slow
def test_inductor_trains_as_eager_within_noise(pixels):
    """One small inductor compile (its random stream is its own, so the draws differ from
    eager's): the trained VAEs' losses agree within the runs' noise."""
    results = {}
    for mode in (None, "inductor"):
        results[mode] = fit(small_vae(), pixels, epochs=15, seed=0, compile=mode).train_loss[-1]
    assert results["inductor"] == pytest.approx(results[None], rel=0.03)


def test_the_facades_bnn_cells_and_svi_run_compiled_as_eagerly(pixels):
    from ppmodels.probability import TrainOneStepCell, WithLossCell, bnn_layers, dpn
    from ppmodels.probability.infer import ELBO, SVI

    y = digits().train_y[:64]
    x = pixels[:64].reshape(64, 64)
    losses = {}
    for mode in (None, "graph"):
        torch.manual_seed(0)
        net = torch.nn.Sequential(bnn_layers.DenseReparam(64, 16, activation="relu"), bnn_layers.DenseReparam(16, 10))
        cell = bnn_layers.WithBNNLossCell(net, torch.nn.CrossEntropyLoss(), dnn_factor=64)
        step = TrainOneStepCell(cell, torch.optim.Adam(net.parameters(), lr=1e-3), compile=mode)
        pyro.set_rng_seed(0)
        losses[mode] = [float(step(x[i : i + 16], y[i : i + 16])) for _ in range(3) for i in range(0, 64, 16)]
    close(losses["graph"], losses[None], rtol=1e-4)
    with pytest.raises(ValueError, match=r"`compile` must be one of \['graph', 'inductor'\] or None, but got 'jit'"):
        TrainOneStepCell(cell, torch.optim.Adam(net.parameters()), compile="jit")
    run = {}
    for mode in (None, "graph"):
        torch.manual_seed(0)
        vae = dpn.VAE(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32)), torch.nn.Linear(32, 64), 32, 4)
        svi = SVI(WithLossCell(vae, ELBO()), torch.optim.Adam(vae.parameters(), lr=1e-3))
        svi.run([pixels[i : i + 32].reshape(32, 64) for i in range(0, 128, 32)], epochs=3, seed=0, compile=mode)
        run[mode] = svi.result.losses
    close(run["graph"], run[None])
