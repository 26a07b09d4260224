"""The potential's first stage recorded by a dispatch mode: the same function as the code it
ran, at other inputs too; refused (so that ``make_fx`` traces it, or says why not) wherever a
recorded graph would not be that function."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

from ppmodels.infer.density import Potential
from ppmodels.infer.errors import EagerFallbackWarning
from ppmodels.infer.graphs.recorder import NotRecordable, record


def at(graph, z):
    with torch.no_grad():
        return graph(z)


def test_a_pyro_models_potential_is_the_same_function_at_other_points():
    y = torch.tensor([0.3, -1.2, 2.2, 0.7])

    def model():
        loc = pyro.sample("loc", dist.Normal(0.0, 3.0))
        scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.StudentT(4.0, loc, scale), obs=y)

    potential = Potential(model, compile=None)
    z0 = torch.as_tensor(potential.initial[0], dtype=torch.float32)

    def f(z):
        with pyro.validation_enabled(False):  # as the potential is traced: no checks of values
            return potential._potential_fn(potential._unflatten(z))

    graph = record(f, z0)
    assert all(n.op != "call_module" for n in graph.graph.nodes)
    for z in (z0, z0 + torch.tensor([1.5, -0.7]), torch.tensor([-3.0, 2.0])):
        with torch.no_grad():
            assert torch.equal(at(graph, z), f(z))


def test_an_in_place_operation_on_a_dependent_tensor_is_replayed():
    def f(z):
        x = z * 2.0
        x.add_(1.0)  # in place, then read
        y = x.clone()
        y.mul_(z)
        return (x + y).sum()

    graph = record(f, torch.tensor([1.0, 2.0]))
    z = torch.tensor([-0.5, 4.0])
    assert torch.equal(at(graph, z), f(z))


def test_equal_constants_are_one_input_and_their_repeats_can_be_removed():
    def f(z):
        total = z.sum() * 0.0
        for _ in range(10):  # a loop making the same constant at every step, as a model's does
            total = total + (z * torch.arange(3.0)).sum()
        return total

    graph = record(f, torch.ones(3))
    constants = [n for n in graph.graph.nodes if n.op == "get_attr"]
    assert len(constants) == 1
    z = torch.tensor([0.5, -2.0, 3.0])
    assert torch.allclose(at(graph, z), f(z))


@pytest.mark.parametrize(
    ("f", "cause"),
    [
        (lambda z: z * 2 if z.sum().item() > 0 else z, "_local_scalar_dense"),
        (lambda z: z * 2 if z.sum() > 0 else z, "value out of a tensor"),
        (lambda z: z + torch.randn(3), "random"),
        (lambda z: torch.zeros(3).index_put_((torch.tensor([0]),), z[:1]).sum() + z.sum(), "into a constant"),
        (lambda z: (z * 2).tolist(), "returned list"),
    ],
    ids=["item", "python-if", "random", "write-into-constant", "returns-a-list"],
)
def test_what_a_graph_would_not_reproduce_is_refused_with_its_cause(f, cause):
    with pytest.raises(NotRecordable, match=cause):
        record(f, torch.tensor([1.0, -2.0, 0.5]))


def test_a_model_with_a_data_dependent_branch_still_falls_back_with_make_fxs_message():
    def model():
        x = pyro.sample("x", dist.Normal(0.0, 1.0))
        if x.item() > 0:  # a Python branch on a sampled value
            pyro.sample("y", dist.Normal(x, 1.0), obs=torch.tensor(0.5))

    with pytest.warns(EagerFallbackWarning, match="data-dependent Python control flow"):
        potential = Potential(model)
    assert potential.mode is None
    assert "data-dependent Python control flow" in potential.fallback
    assert "test_recording.py" in potential.fallback  # where, in the user's code


def test_a_decomposition_is_recorded_in_its_operations_place_with_torchs_composites_inside_it_written_out():
    aten = torch.ops.aten

    def exp_as_power(x):
        return torch.pow(2.718281828459045, x.reshape(x.shape))  # reshape: one of torch's composites

    def f(z):
        return z.exp().sum(), z * 2.0

    graph = record(f, torch.tensor([0.5, -1.0]), {aten.exp.default: exp_as_power})
    targets = {n.target for n in graph.graph.nodes}
    assert aten.exp.default not in targets and aten.pow.Scalar in targets
    assert aten.reshape.default not in targets
    z = torch.tensor([1.5, 0.25])
    total, doubled = at(graph, z)
    assert torch.allclose(total, z.exp().sum()) and torch.equal(doubled, z * 2.0)


def test_unfolded_the_operations_that_do_not_depend_on_the_input_are_in_the_graph():
    def f(z):
        return (z + torch.arange(3.0)).sum()

    folded = record(f, torch.ones(3))
    unfolded = record(f, torch.ones(3), fold=False)
    assert any("arange" in str(n.target) for n in unfolded.graph.nodes)
    assert not any("arange" in str(n.target) for n in folded.graph.nodes)
    z = torch.tensor([0.1, 0.2, 0.3])
    assert torch.equal(at(folded, z), at(unfolded, z))


def test_a_repeated_operation_is_recorded_once_until_something_is_written_in_place():
    def f(z):
        a, b = z.exp(), z.exp()  # the same operation on the same input: one node
        c = z * 2.0
        c.add_(1.0)  # from here on, an equal-looking operation may read a changed tensor
        d = z * 2.0
        return a.sum() + b.sum() + c.sum() + d.sum()

    graph = record(f, torch.tensor([0.5, -1.0]))
    targets = [n.target for n in graph.graph.nodes]
    assert targets.count(torch.ops.aten.exp.default) == 1
    assert targets.count(torch.ops.aten.mul.Tensor) == 2
    z = torch.tensor([1.5, 0.25])
    assert torch.allclose(at(graph, z), f(z))


def test_a_tensor_made_inside_is_a_copy_of_its_constant_as_make_fx_writes_it():
    def f(z):
        return z * torch.tensor(3.0)  # torch.tensor: lift_fresh on a new constant

    graph = record(f, torch.tensor([1.0, 2.0]), fold=False)
    targets = {n.target for n in graph.graph.nodes}
    assert torch.ops.aten.lift_fresh_copy.default in targets and torch.ops.aten.lift_fresh.default not in targets
    assert torch.equal(at(graph, torch.tensor([0.5, -1.0])), torch.tensor([1.5, -3.0]))
