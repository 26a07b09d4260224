"""Discrete latents by enumeration: the 'enum' estimator against brute-force sums and plain
Pyro, infer_discrete, and the GMM tutorial and SS-VAE M2 programs through fit."""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate

from ppmodels.data import digits
from ppmodels.infer import ELBO_NAMES, fit, get_elbo, infer_discrete

import user_programs as up
from tolerances import PYRO_LOSS_RTOL, PYRO_PARAM_ATOL

ENUM_RTOL = 1e-5  # enumeration against a brute-force sum in float64: summation order only


def test_enum_names_are_registered():
    assert "enum" in ELBO_NAMES and "jit-enum" in ELBO_NAMES
    assert isinstance(get_elbo("enum", max_plate_nesting=1), TraceEnum_ELBO)
    assert get_elbo("enum", enumerate_guide=True).enumerate_guide
    with pytest.raises(ValueError, match=r"`enumerate_guide` applies to 'enum' and 'jit-enum' only"):
        get_elbo("trace", enumerate_guide=True)
    with pytest.raises(ValueError, match=r"`max_plate_nesting` must be a non-negative int, but got -1"):
        get_elbo("enum", max_plate_nesting=-1)


def mixture_params():
    torch.manual_seed(0)
    return {
        "weights": torch.tensor([0.3, 0.7], dtype=torch.float64, requires_grad=True),
        "locs": torch.tensor([-1.0, 2.0], dtype=torch.float64, requires_grad=True),
        "scale": torch.tensor(0.8, dtype=torch.float64, requires_grad=True),
    }


DATA = torch.tensor([-1.2, 0.3, 2.5], dtype=torch.float64)


def mixture_model(data, p):
    weights, locs, scale = p["weights"] / p["weights"].sum(), p["locs"], p["scale"]
    with pyro.plate("data", len(data)):
        a = pyro.sample("a", dist.Categorical(weights))
        pyro.sample("obs", dist.Normal(locs[a], scale), obs=data)


def test_enumerated_mixture_loss_and_gradient_equal_the_brute_force_sum():
    p = mixture_params()
    loss = get_elbo("enum", max_plate_nesting=1).differentiable_loss(
        lambda d: mixture_model(d, p), lambda d: None, DATA
    )
    grads = torch.autograd.grad(loss, list(p.values()))

    q = mixture_params()
    w = q["weights"] / q["weights"].sum()
    terms = []
    for assignment in itertools.product(range(2), repeat=len(DATA)):  # all 8 assignments
        a = torch.tensor(assignment)
        terms.append((w[a].log() + dist.Normal(q["locs"][a], q["scale"]).log_prob(DATA)).sum())
    brute = -torch.logsumexp(torch.stack(terms), 0)
    brute_grads = torch.autograd.grad(brute, list(q.values()))
    torch.testing.assert_close(loss, brute, rtol=ENUM_RTOL, atol=0)
    for g, b in zip(grads, brute_grads):
        torch.testing.assert_close(g, b, rtol=ENUM_RTOL, atol=1e-12)


def test_enumerated_hmm_equals_the_brute_force_sum_over_state_sequences():
    """Dependent discrete sites (a Markov chain): the loss with point-mass globals is
    -log p(data, trans, locs), summed over all 2^3 state sequences of each sequence."""
    trans = torch.tensor([[0.8, 0.2], [0.3, 0.7]])
    locs = torch.tensor([0.1, 2.1])

    def guide(data):
        pyro.sample("trans", dist.Delta(trans, event_dim=2))
        pyro.sample("locs", dist.Delta(locs, event_dim=1))

    loss = get_elbo("enum", max_plate_nesting=1).loss(up.hmm_model, guide, up.HMM_DATA)
    log_prior = (
        dist.Dirichlet(torch.ones(2, 2)).log_prob(trans).sum()
        + dist.Normal(torch.tensor([0.0, 2.0]), 1.0).log_prob(locs).sum()
    )
    total = log_prior
    for seq in up.HMM_DATA:
        paths = []
        for states in itertools.product(range(2), repeat=len(seq)):
            lp, prev = 0.0, 0
            for t, s in enumerate(states):
                lp = lp + trans[prev, s].log() + dist.Normal(locs[s], 0.5).log_prob(seq[t])
                prev = s
            paths.append(lp)
        total = total + torch.logsumexp(torch.stack(paths), 0)
    assert loss == pytest.approx(-float(total), rel=1e-5)


def gmm_seed():
    """The tutorial's initialisation: the best of 100 random starts by initial loss."""

    def initial_loss(seed):
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        return TraceEnum_ELBO(max_plate_nesting=1).loss(config_enumerate(up.gmm_model), up.gmm_guide(), up.GMM_DATA)

    return min((initial_loss(seed), seed) for seed in range(100))[1]


def test_gmm_tutorial_map_fit_with_enum_is_pyros_svi():
    optim = {"lr": 0.1, "betas": (0.8, 0.99)}
    seed = gmm_seed()

    def plain():
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        guide = up.gmm_guide()
        svi = pyro.infer.SVI(
            config_enumerate(up.gmm_model),
            guide,
            pyro.optim.Adam(dict(optim)),
            loss=TraceEnum_ELBO(max_plate_nesting=1),
        )
        return [svi.step(up.GMM_DATA) for _ in range(200)], guide

    expected, guide = plain()
    map_expected = {k: v.detach() for k, v in guide(up.GMM_DATA).items()}
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    guide = up.gmm_guide()
    result = fit(
        (up.gmm_model, guide),
        up.GMM_DATA,
        epochs=200,
        elbo=get_elbo("enum", max_plate_nesting=1),
        optimizer=pyro.optim.Adam(dict(optim)),
        seed=seed,
    )
    torch.testing.assert_close(
        torch.tensor(result.losses), torch.tensor(expected), rtol=PYRO_LOSS_RTOL, atol=PYRO_LOSS_RTOL
    )
    map_fit = guide(up.GMM_DATA)
    for name, value in map_expected.items():
        torch.testing.assert_close(map_fit[name].detach(), value, rtol=0, atol=PYRO_PARAM_ATOL)
    # the tutorial's answer: the two clusters' centres, the smaller cluster's weight 2/5
    locs = map_fit["locs"].detach().sort().values
    assert locs.tolist() == pytest.approx([0.5, 11.0], abs=0.1)
    assignment = infer_discrete((up.gmm_model, guide), up.GMM_DATA)["assignment"]
    low = int(map_fit["locs"].detach().argmin())
    assert assignment.tolist() == [low, low, 1 - low, 1 - low, 1 - low]
    draws = infer_discrete((up.gmm_model, guide), up.GMM_DATA, temperature=1, num_samples=20, seed=0)["assignment"]
    assert draws.shape == (20, 5) and bool((draws[:, 0] == low).all())


def test_enum_finds_max_plate_nesting_when_not_given():
    pyro.set_rng_seed(7)
    guide = up.gmm_guide()
    result = fit((up.gmm_model, guide), up.GMM_DATA, epochs=5, elbo="enum", lr=0.1, seed=7)
    assert all(math.isfinite(v) for v in result.losses)


@pytest.fixture(scope="module")
def pixels():
    d = digits()
    return d.train_x[:96].reshape(96, 64).round(), torch.nn.functional.one_hot(d.train_y[:96], 10).float()


def test_ss_vae_m2_program_with_enum_is_pyros_svi(pixels):
    x, y = pixels
    batches = [(x[:32], y[:32]), (x[32:64],), (x[64:],)]  # a labelled batch, then unlabelled ones

    def plain():
        pyro.clear_param_store()
        torch.manual_seed(0)
        m2 = up.M2()
        pyro.set_rng_seed(1)
        guide = config_enumerate(m2.guide, "parallel", expand=True)
        elbo = TraceEnum_ELBO(max_plate_nesting=1, strict_enumeration_warning=False)  # labelled batches: none
        svi = pyro.infer.SVI(m2.model, guide, pyro.optim.Adam({"lr": 1e-3}), loss=elbo)
        return [svi.step(*b) for _ in range(3) for b in batches], m2

    expected, by_pyro = plain()
    pyro.clear_param_store()
    torch.manual_seed(0)
    m2 = up.M2()
    guide = config_enumerate(m2.guide, "parallel", expand=True)
    elbo = get_elbo("enum", max_plate_nesting=1)
    elbo.strict_enumeration_warning = False
    result = fit((m2.model, guide), batches, epochs=3, elbo=elbo, seed=1)
    torch.testing.assert_close(torch.tensor(result.losses), torch.tensor(expected), rtol=PYRO_LOSS_RTOL, atol=0)
    for a, b in zip(m2.parameters(), by_pyro.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=PYRO_PARAM_ATOL)


def test_enumerate_guide_marks_the_guides_discrete_sites(pixels):
    """Unmarked, the guide's y is sampled (score-function gradients); with
    enumerate_guide=True it is summed out, as config_enumerate on the guide does."""
    x, _ = pixels
    torch.manual_seed(0)
    m2 = up.M2()
    pyro.set_rng_seed(3)
    by_hand = TraceEnum_ELBO(max_plate_nesting=1).loss(m2.model, config_enumerate(m2.guide, "parallel"), x[:16])
    pyro.set_rng_seed(3)
    ours = get_elbo("enum", max_plate_nesting=1, enumerate_guide=True).loss(m2.model, m2.guide, x[:16])
    assert ours == pytest.approx(by_hand, rel=1e-6)
