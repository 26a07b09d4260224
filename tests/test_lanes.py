"""A loop's repeated steps batched back into one computation: the same function (value and
gradient) at other points, a smaller graph, and nothing batched where there is no loop."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import config_enumerate

import ppmodels.infer.graphs.loop_batching as lanes
from ppmodels.infer.density import Potential
from ppmodels.infer.graphs.loop_batching import MIN_LANES, batch_lanes
from ppmodels.infer.graphs.recorder import record

Y = torch.tensor([0.4, -1.1, 2.3, 0.8, -0.2, 1.7, 3.1, -2.2, 0.0, 0.9, 1.2, -0.6, 2.0, 0.3, -1.4, 0.5, 1.1, -0.9])


def steps(z):
    """A loop over the data, one small computation per step, its steps stacked (as a chain's
    scan stacks them) and summed otherwise; the even and odd steps differ in shape, as an
    enumerated HMM's do."""
    loc, log_scale = z[0], z[1]
    stacked, total = [], z.sum() * 0.0
    for t, y in enumerate(Y):
        lp = dist.Normal(loc * torch.ones(2, 1), log_scale.exp(), validate_args=False).log_prob(y)
        lp = lp if t % 2 == 0 else lp.transpose(0, 1)  # (2, 1) or (1, 2)
        stacked.append(lp.reshape(2))
        total = total + lp.sum() * (t + 1)  # each step read on its own too
    return torch.stack(stacked).logsumexp(0).sum() + total


def test_the_steps_batched_are_the_same_function_with_fewer_operations():
    z0 = torch.tensor([0.3, -0.2])
    graph = record(steps, z0)
    batched = batch_lanes(graph)
    assert batched is not None
    calls = [n for n in batched.graph.nodes if isinstance(n.target, lanes.Lanes)]
    assert calls  # the steps' operations are batched
    assert len(batched.graph.nodes) < len(graph.graph.nodes) / 2
    for z in (z0, torch.tensor([-1.5, 0.7]), torch.tensor([2.0, -1.0])):
        with torch.no_grad():
            assert torch.allclose(batched(z), steps(z), rtol=1e-6, atol=1e-5)
        z = z.clone().requires_grad_(True)
        (mine,) = torch.autograd.grad(batched(z), z)
        (theirs,) = torch.autograd.grad(steps(z), z)
        assert torch.allclose(mine, theirs, rtol=1e-5, atol=1e-5)


def test_fewer_copies_than_min_lanes_are_left_as_they_are():
    def few(z):
        return sum((z * float(t)).exp().sum() for t in range(MIN_LANES - 1))

    assert batch_lanes(record(few, torch.tensor([0.1, 0.2]))) is None


def test_copies_read_in_another_order_are_put_in_order():
    def reversed_steps(z):
        parts = [(z * torch.tensor(float(t))).sin() for t in range(2 * MIN_LANES)]
        return torch.stack(parts[::-1]).mul(torch.arange(2.0 * MIN_LANES).unsqueeze(-1)).sum()

    z0 = torch.tensor([0.3, -0.8])
    batched = batch_lanes(record(reversed_steps, z0))
    assert batched is not None
    z = torch.tensor([1.1, 0.4])
    with torch.no_grad():
        assert torch.allclose(batched(z), reversed_steps(z), rtol=1e-6)


def test_copies_that_differ_in_a_literals_sign_of_zero_are_not_one_computation():
    def signs(z):
        parts = [
            torch.copysign(torch.ones(2), z * torch.tensor(t + 1.0) * (0.0 if t % 2 else -0.0))
            for t in range(2 * MIN_LANES)
        ]
        return torch.stack(parts).mul(torch.arange(2.0 * MIN_LANES).unsqueeze(-1)).sum()

    z0 = torch.tensor([0.3, 0.8])
    batched = batch_lanes(record(signs, z0))
    assert batched is not None
    with torch.no_grad():
        assert torch.equal(batched(z0), signs(z0))


def test_a_running_total_of_copies_is_one_sum_of_their_lanes():
    def total(z):
        out = z.sum() * 0.0
        for t in range(3 * MIN_LANES):  # total = total + a copy, as Pyro sums a loop's sites
            out = out + (z * torch.tensor(float(t))).sin().sum()
        return out

    z0 = torch.tensor([0.3, -0.8])
    graph = record(total, z0)
    batched = batch_lanes(graph)
    adds = [n for n in batched.graph.nodes if n.target is torch.ops.aten.add.Tensor]
    assert len(adds) <= 2  # not 24
    for z in (z0, torch.tensor([1.1, 0.4])):
        with torch.no_grad():
            assert torch.allclose(batched(z), total(z), rtol=1e-5, atol=1e-6)


def assert_equals_eager_pyro(potential, seed):
    """The compiled potential's value and gradient equal eager Pyro's at three random points."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(3):
        z = potential.initial[0] + torch.randn(potential.dim, generator=generator, dtype=torch.float64).numpy()
        value, grad = potential(z)
        eager_value, eager_grad = potential.eager(torch.as_tensor(z, dtype=torch.float32))
        assert value == pytest.approx(float(eager_value), rel=1e-5)
        assert torch.allclose(torch.as_tensor(grad, dtype=torch.float32), eager_grad, rtol=1e-4, atol=1e-4)


X = torch.linspace(-2.0, 2.0, 40).unsqueeze(-1) * torch.tensor([1.0, -0.5])
OBSERVED = X @ torch.tensor([0.7, 1.3]) + 0.2 * torch.sin(torch.arange(40.0))


def regression_in_a_loop(x, y):
    """A loop over the data instead of a plate, as users write their first Pyro models."""
    w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
    for i in range(len(y)):
        pyro.sample(f"y_{i}", dist.Normal((x[i] * w).sum(), sigma), obs=y[i])


def test_a_loop_over_the_data_compiles_to_pyros_potential_as_a_plate_would(monkeypatch):
    potential = Potential(regression_in_a_loop, (X, OBSERVED), compile="inductor")
    assert potential.mode == "inductor" and potential.note is None
    assert_equals_eager_pyro(potential, seed=2)
    monkeypatch.setattr(lanes, "MIN_LANES", 10**9)
    one_by_one = Potential(regression_in_a_loop, (X, OBSERVED), compile="graph").nodes
    assert potential.nodes < one_by_one / 4


@config_enumerate
def hmm(y):
    """Pyro's hmm.py style: two states enumerated step by step, a learned transition, the
    locations ordered."""
    transition = pyro.sample("transition", dist.Dirichlet(torch.ones(2) + 3 * torch.eye(2)).to_event(1))
    low = pyro.sample("low", dist.Normal(0.0, 2.0))
    gap = pyro.sample("gap", dist.LogNormal(1.0, 0.5))
    locs = torch.stack([low, low + gap])
    x = None
    for t in pyro.markov(range(len(y))):
        probs = torch.ones(2) / 2 if x is None else transition[x]
        x = pyro.sample(f"x_{t}", dist.Categorical(probs))
        pyro.sample(f"y_{t}", dist.Normal(locs[x], 1.0), obs=y[t])


def test_an_enumerated_hmm_compiles_to_pyros_potential_with_its_steps_batched():
    potential = Potential(hmm, (Y,), max_plate_nesting=0)
    assert potential.mode == "inductor" and potential.chain is not None
    assert_equals_eager_pyro(potential, seed=1)


def test_the_hmms_graph_is_a_fraction_of_its_steps_one_by_one(monkeypatch):
    y = torch.cat([Y, Y.flip(0), Y])  # 54 steps
    batched = Potential(hmm, (y,), max_plate_nesting=0, compile="graph").nodes
    monkeypatch.setattr(lanes, "MIN_LANES", 10**9)
    one_by_one = Potential(hmm, (y,), max_plate_nesting=0, compile="graph").nodes
    assert batched < one_by_one / 2
