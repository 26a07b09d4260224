"""An enumerated Markov chain (``pyro.markov``) summed out by a parallel scan: the same potential
as Pyro's contraction and as summing over every path, and Pyro's contraction wherever the
enumerated variables are not one chain."""

from __future__ import annotations

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import config_enumerate

from ppmodels.infer.density import Potential

TRANSITION = torch.tensor([[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.25, 0.25, 0.5]])
LOCS = torch.tensor([-2.0, 0.5, 3.0])
Y = torch.tensor([-1.7, -2.4, 0.2, 3.1, 2.6, 0.9])


@config_enumerate
def hmm(y):
    """Pyro's hmm.py style: a shift of the emission locations, three states enumerated step by
    step, the first one uniform."""
    shift = pyro.sample("shift", dist.Normal(0.0, 1.0))
    x = None
    for t in pyro.markov(range(len(y))):
        probs = torch.ones(3) / 3 if x is None else TRANSITION[x]
        x = pyro.sample(f"x_{t}", dist.Categorical(probs))
        pyro.sample(f"y_{t}", dist.Normal(LOCS[x] + shift, 1.0), obs=y[t])


def every_path(y, shift):
    """minus the log joint of ``shift`` and ``y``, summing over all 3**T paths (float64)."""
    transition, locs, y = TRANSITION.double(), LOCS.double(), y.double()
    terms = []
    for path in itertools.product(range(3), repeat=len(y)):
        term = -math.log(3.0)
        for t, state in enumerate(path):
            if t:
                term += math.log(transition[path[t - 1], state])
            term += float(dist.Normal(locs[state] + shift, 1.0).log_prob(y[t]))
        terms.append(term)
    prior = float(dist.Normal(0.0, 1.0).log_prob(torch.tensor(shift, dtype=torch.float64)))
    return -(prior + float(torch.tensor(terms, dtype=torch.float64).logsumexp(0)))


def pyros(potential, z):
    """Pyro's own contraction's potential at ``z``."""
    maker = potential._potential_fn.__self__
    mine, maker.trace_prob_evaluator = maker.trace_prob_evaluator, potential.chain.pyro
    try:
        return potential.eager(z)
    finally:
        maker.trace_prob_evaluator = mine


def test_a_markov_chain_is_summed_out_by_the_scan_and_agrees_with_every_path():
    potential = Potential(hmm, (Y,), compile=None, max_plate_nesting=0)
    assert potential.chain is not None
    for shift in (-0.7, 0.0, 1.3):
        z = torch.tensor([shift])
        value, grad = potential.eager(z)
        assert potential.chain.used
        assert float(value) == pytest.approx(every_path(Y, shift), rel=1e-5)
        step = 1e-3  # the gradient against a central difference of the exact sum
        numeric = (every_path(Y, shift + step) - every_path(Y, shift - step)) / (2 * step)
        assert float(grad) == pytest.approx(numeric, rel=1e-4, abs=1e-5)  # float32 sums
        value_p, grad_p = pyros(potential, z)
        assert float(value) == pytest.approx(float(value_p), rel=1e-6)
        assert float(grad) == pytest.approx(float(grad_p), rel=1e-5, abs=1e-5)


@config_enumerate
def sequences(y):
    """Independent sequences (the columns of ``y``) in a plate, each a chain, as Pyro's hmm.py
    writes a batch of sequences."""
    shift = pyro.sample("shift", dist.Normal(0.0, 1.0))
    with pyro.plate("sequences", y.shape[1]):
        x = None
        for t in pyro.markov(range(y.shape[0])):
            probs = torch.ones(3) / 3 if x is None else TRANSITION[x]
            x = pyro.sample(f"x_{t}", dist.Categorical(probs))
            pyro.sample(f"y_{t}", dist.Normal(LOCS[x] + shift, 1.0), obs=y[t])


def test_chains_in_a_plate_are_summed_out_each_and_the_plate_multiplied():
    y = torch.stack([Y, Y.flip(0) + 0.5], -1)
    potential = Potential(sequences, (y,), compile=None, max_plate_nesting=1)
    assert potential.chain is not None
    z = torch.tensor([0.4])
    value, grad = potential.eager(z)
    value_p, grad_p = pyros(potential, z)
    assert float(value) == pytest.approx(float(value_p), rel=1e-6)
    assert float(grad) == pytest.approx(float(grad_p), rel=1e-5, abs=1e-5)
    # each sequence alone is its own chain: the plate adds their log likelihoods
    prior = float(dist.Normal(0.0, 1.0).log_prob(z))
    alone = sum(every_path(y[:, i], 0.4) + prior for i in range(2))
    assert float(value) == pytest.approx(alone - prior, rel=1e-5)


@config_enumerate
def second_order(y):
    """x_t depends on x_{t-1} and x_{t-2} (``pyro.markov(history=2)``): not a chain of pairs."""
    shift = pyro.sample("shift", dist.Normal(0.0, 1.0))
    x1 = x2 = None
    for t in pyro.markov(range(len(y)), history=2):
        if x2 is None:
            probs = torch.ones(3) / 3 if x1 is None else TRANSITION[x1]
        else:
            probs = (TRANSITION[x1] + TRANSITION[x2]) / 2
        x1, x2 = pyro.sample(f"x_{t}", dist.Categorical(probs)), x1
        pyro.sample(f"y_{t}", dist.Normal(LOCS[x1] + shift, 1.0), obs=y[t])


@config_enumerate
def mixture(y):
    """One enumerated variable per datum, in a plate: no chain."""
    shift = pyro.sample("shift", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(y)):
        x = pyro.sample("x", dist.Categorical(torch.ones(3) / 3))
        pyro.sample("y", dist.Normal(LOCS[x] + shift, 1.0), obs=y)


@config_enumerate
def local_states(y):
    """The chain's emissions go through a second enumerated variable local to an inner plate
    (a state per datum): Pyro's contraction, not the scan."""
    shift = pyro.sample("shift", dist.Normal(0.0, 1.0))
    x = None
    for t in pyro.markov(range(y.shape[0])):
        probs = torch.ones(3) / 3 if x is None else TRANSITION[x]
        x = pyro.sample(f"x_{t}", dist.Categorical(probs))
        with pyro.plate(f"tones_{t}", y.shape[1]):
            k = pyro.sample(f"k_{t}", dist.Categorical(TRANSITION[x]))
            pyro.sample(f"y_{t}", dist.Normal(LOCS[k] + shift, 1.0), obs=y[t])


@pytest.mark.parametrize(
    "model, args, nesting",
    [
        (second_order, (Y,), 0),
        (mixture, (Y,), 1),
        (hmm, (Y[:2],), 0),  # a chain of two: Pyro's contraction is as short
        (local_states, (torch.stack([Y, Y + 1.0], -1),), 1),
    ],
    ids=["history-2", "mixture", "two-steps", "local-states"],
)
def test_what_is_not_one_chain_is_left_to_pyros_contraction(model, args, nesting):
    potential = Potential(model, args, compile=None, max_plate_nesting=nesting)
    assert potential.chain is None
    assert type(potential._potential_fn.__self__.trace_prob_evaluator).__name__ == "TraceEinsumEvaluator"


def test_a_scan_that_disagrees_with_pyro_is_not_installed(monkeypatch):
    import ppmodels.infer.density.markov_scan as chains

    monkeypatch.setattr(chains, "_sum_chain", lambda *plan: torch.tensor(0.0))
    potential = Potential(hmm, (Y,), compile=None, max_plate_nesting=0)
    assert potential.chain is None
    assert float(potential.eager(torch.tensor([0.0]))[0]) == pytest.approx(every_path(Y, 0.0), rel=1e-5)


@config_enumerate
def learned_hmm(y):
    """Two states whose transition matrix is a latent variable too (Dirichlet rows)."""
    transition = pyro.sample("transition", dist.Dirichlet(torch.ones(2) + 4 * torch.eye(2)).to_event(1))
    x = None
    for t in pyro.markov(range(len(y))):
        probs = torch.ones(2) / 2 if x is None else transition[x]
        x = pyro.sample(f"x_{t}", dist.Categorical(probs))
        pyro.sample(f"y_{t}", dist.Normal(LOCS[1:][x], 1.0), obs=y[t])


def test_the_scanned_chain_compiles_to_the_same_potential():
    """Twenty steps: inductor compiled this graph's gradient (the transition's) wrong until the
    accumulating ``index_put`` of ``transition[x]``'s backward was written as a sum (test_mcmc);
    the check against eager Pyro then sent it to eager, at about 40 ms a call."""
    y = torch.cat([Y, Y.flip(0), Y + 0.3, Y[:2]])
    potential = Potential(learned_hmm, (y,), compile="inductor", max_plate_nesting=0)
    assert potential.chain is not None
    assert potential.mode == "inductor" and potential.fallback is None, potential.fallback
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        z = torch.randn(2, generator=generator)
        value, grad = potential(z.numpy())
        value_e, grad_e = pyros(potential, z)
        assert value == pytest.approx(float(value_e), rel=1e-5)
        assert grad == pytest.approx(grad_e.numpy(), rel=1e-4, abs=1e-4)
