"""Pyro programs written as Pyro's examples and tutorials write them (tests/pyro_corpus.py),
through ``mcmc``, ``fit`` with an autoguide and ``compare``, with small budgets: none crashes,
and a method that cannot answer says why in its row. The faults the corpus found are tested
on their own below."""

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoNormal

from ppmodels.infer import EagerFallbackWarning, compare, fit, mcmc, pointwise
from ppmodels.infer.comparison.problem import Problem
from ppmodels.infer.initialization import init_to_feasible

import pyro_corpus

PROGRAMS = pyro_corpus.programs()
IDS = [p.name for p in PROGRAMS]


def _train(program):
    return program.kwargs if program.kwargs else program.args


@pytest.mark.parametrize("program", PROGRAMS, ids=IDS)
def test_mcmc_samples_every_program_on_its_compiled_log_density(program):
    with warnings.catch_warnings():
        warnings.simplefilter("error", EagerFallbackWarning)  # every program compiles
        result = mcmc(
            program.model,
            *program.args,
            model_kwargs=program.kwargs,
            num_samples=20,
            warmup_steps=20,
            num_chains=2,
            compile="graph",
            max_plate_nesting=program.max_plate_nesting,
        )
    assert result.compile["mode"] == "graph"
    for site, draws in result.samples.items():
        assert draws.shape[:2] == (2, 20) and torch.isfinite(draws).all(), site


def _autoguide(program, **options):
    model = getattr(program.model, "model", program.model)
    if program.discrete:  # the guide covers the continuous latents; the discrete ones are summed out
        hidden = Problem.inspect(program.model, program.args, kwargs=program.kwargs).discrete
        return model, AutoNormal(poutine.block(model, hide=list(hidden)), **options)
    return model, AutoNormal(model, **options)


@pytest.mark.parametrize("program", PROGRAMS, ids=IDS)
def test_fit_trains_every_program_with_an_autoguide(program):
    pyro.clear_param_store()
    model, guide = _autoguide(program)
    options = dict(epochs=30, lr=0.01, seed=0, elbo="enum" if program.discrete else "trace")
    if program.flat_prior:  # Pyro's autoguides start from prior draws: fit says which init_loc_fn serves
        with pytest.raises(ValueError, match=r"drew from a flat prior .* init_loc_fn=ppmodels.infer.initialization"):
            fit((model, guide), _train(program), **options)
        pyro.clear_param_store()
        model, guide = _autoguide(program, init_loc_fn=init_to_feasible)
    if program.refused_by_pyro:  # Pyro's own check, as pyro.infer.SVI.step gives it; its estimator is right without
        with pytest.raises(ValueError, match="(?s)" + program.refused_by_pyro + r".*Try one of the following fixes"):
            fit((model, guide), _train(program), **options)
        pyro.clear_param_store()
        model, guide = _autoguide(program)
        options["validate"] = "never"
    result = fit((model, guide), _train(program), **options)
    assert len(result.losses) == 30 and all(torch.isfinite(torch.tensor(result.losses)))


@pytest.mark.slow
@pytest.mark.parametrize("program", PROGRAMS, ids=IDS)
def test_compare_answers_every_program_or_says_why_in_the_row(program):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="compare: .* failed", category=RuntimeWarning)
        result = compare(
            program.model,
            _train(program),
            num_samples=30,
            warmup_steps=30,
            vi_epochs=30,
            num_vi_samples=200,
            mcmc_compile="graph",
        )
    assert result.method("nuts").samples  # the reference always answers
    failed = {f["method"]: f["error"] for f in result.failed}
    assert set(failed) == set(program.cannot), failed
    for method, phrase in program.cannot.items():
        assert phrase in failed[method]
    assert {m.name for m in result.methods} | set(failed) == {"meanfield", "fullrank", "nuts"}
    assert set(failed).isdisjoint(result.to_markdown().split("Failed")[0].split("| method |")[0])


# -- the faults the corpus found, one by one ------------------------------------------------------
def test_a_model_whose_particles_meet_each_other_runs_its_particles_one_by_one():
    """``(x * w.unsqueeze(-2)).sum(-1)`` runs under a plate of particles but mixes particle i's
    weights with particle j's rows: the vectorised log joint is not the particles' own, so
    compare's guides take their particles one after another. Written as ``(x * w).sum(-1)``
    the same model broadcasts."""
    x = torch.randn(30, 2, generator=torch.Generator().manual_seed(3))
    y = x @ torch.tensor([1.0, -1.0])
    assert Problem.inspect(pyro_corpus.mixed_particles, (x, y)).broadcasts is False

    def broadcasting(x, y):
        w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal((x * w).sum(-1), 0.5), obs=y)

    assert Problem.inspect(broadcasting, (x, y)).broadcasts is True


def test_an_enumerated_hmm_indexing_its_transition_by_state_is_checked_in_milliseconds():
    """The ``pyro.markov`` HMM indexing ``probs_x[x]`` does not broadcast over particles; the
    check that says so had drawn its discrete states under the plate (7 steps: 24 s, 6.9 GB)."""
    import time

    start = time.perf_counter()
    problem = Problem.inspect(pyro_corpus.markov_hmm, pyro_corpus.hmm_data(), particles=8)
    assert problem.broadcasts is False and time.perf_counter() - start < 5.0


def test_loo_counts_the_observed_data_not_the_deterministic_sites():
    program = next(p for p in PROGRAMS if "deterministic" in p.name)
    result = mcmc(program.model, *program.args, num_samples=40, warmup_steps=40, num_chains=2, compile="graph")
    found = pointwise(program.model, result.get_samples(), *program.args)
    assert found.flat().shape == (80, len(program.args[1]))
    assert set(found.observed) == {"y"}


def test_ess_and_r_hat_leave_out_an_lkj_factors_constant_entries():
    program = next(p for p in PROGRAMS if p.name.startswith("LKJ"))
    result = mcmc(program.model, *program.args, num_samples=40, warmup_steps=40, num_chains=2, compile="graph")
    ess = result.diagnostics()["L_omega"]["n_eff"]
    constant = torch.tensor([[1, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=torch.bool)  # the diagonal's first and the upper
    assert torch.isnan(ess[constant]).all() and torch.isfinite(ess[~constant]).all()
    assert result.min_ess() == pytest.approx(
        float(min(ess[~constant].min(), result.diagnostics()["theta"]["n_eff"].min()))
    )


def test_summary_shows_the_divergences(capsys):
    result = mcmc(pyro_corpus.funnel, num_samples=100, warmup_steps=50, num_chains=2, compile="graph", seed=1)
    result.summary()
    out = capsys.readouterr().out
    assert f"Number of divergences: {result.num_divergences}" in out
    assert result.num_divergences == sum(len(v) for v in result.divergences.values())


def test_full_batch_fit_takes_arguments_of_any_shape_and_refuses_to_shuffle_them():
    program = next(p for p in PROGRAMS if p.name.startswith("missing"))
    pyro.clear_param_store()
    guide = AutoNormal(program.model)
    result = fit((program.model, guide), program.args, epochs=5, lr=0.01)
    assert result.num_data == 40 and len(result.losses) == 5
    with pytest.raises(ValueError, match=r"`shuffle`: the tensors of `data` have different first dimensions"):
        fit((program.model, AutoNormal(program.model)), program.args, epochs=1, shuffle=True)
    with pytest.raises(ValueError, match=r"to be split into mini-batches the tensors must share their first dimension"):
        fit((program.model, AutoNormal(program.model)), program.args, epochs=1, batch_size=10)


# -- this library's NUTS against Pyro's own ---------------------------------------------------------
#: a difference of more than this many Monte Carlo standard errors is a disagreement
MC_SIGMAS = 4.0
#: programs whose agreement with Pyro's NUTS runs on every CI run, Pyro's eager NUTS taking
#: 6-18 s on each; the rest run with ``pytest -m reference`` (20 s to 4 minutes each)
EVERY_RUN = (
    "regression tutorial (PyroModule, PyroSample)",
    "Dirichlet simplex",
    "enumerated change point",
    "Poisson GLM with pyro.deterministic",
    ".mask() on observations",
    "TransformReparam",
    "keyword data",
)


def _per_element(result, symmetric):
    """``{site: (means, sds, ess, r_hat)}`` per element over all chains; a symmetric site (a
    mixture's components, which may swap between chains) sorted within each draw first."""
    from pyro.ops.stats import effective_sample_size, split_gelman_rubin

    from ppmodels.infer.sampling.result import per_varying_element

    out = {}
    for site, value in result.samples.items():
        value = value.double()
        if site in symmetric:
            value = value.sort(-1).values
        ess = per_varying_element(effective_sample_size, value).reshape(-1)
        r_hat = per_varying_element(split_gelman_rubin, value).reshape(-1)
        flat = value.reshape(-1, *value.shape[2:])
        out[site] = (flat.mean(0).reshape(-1), flat.std(0).reshape(-1), ess, r_hat)
    return out


def _passes(result, elements) -> bool:
    """The sampler's own diagnostics: r-hat below 1.05, an ESS above 100 everywhere, no divergence."""
    r_hat = torch.cat([torch.nan_to_num(e[3], nan=1.0) for e in elements.values()])
    ess = torch.cat([e[2] for e in elements.values()])
    return bool(r_hat.max() < 1.05) and bool(ess[~torch.isnan(ess)].min() > 100) and result.num_divergences == 0


def _check_agreement(program, num_samples, warmup_steps):
    options = dict(num_samples=num_samples, warmup_steps=warmup_steps, num_chains=2, seed=1)
    options.update(model_kwargs=program.kwargs, max_plate_nesting=program.max_plate_nesting)
    ours = mcmc(program.model, *program.args, **options)
    a = _per_element(ours, program.symmetric)
    if program.funnel:  # judged by the warning: this library's NUTS says its draws are doubtful
        assert not _passes(ours, a), "a divergent posterior's draws passed every diagnostic"
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pyro's own notices (its validation, its chains' cores)
        theirs = mcmc(program.model, *program.args, engine="pyro", compile=None, **options)
    b = _per_element(theirs, program.symmetric)
    assert _passes(ours, a) and _passes(theirs, b), "both samplers must pass their diagnostics to be compared"
    for site in a:
        (ma, sa, ea, _), (mb, sb, eb, _) = a[site], b[site]
        varying = torch.isfinite(ea) & torch.isfinite(eb) & (sa > 0) & (sb > 0)
        mean_z = (ma - mb).abs() / torch.sqrt(sa**2 / ea + sb**2 / eb)
        sd_z = (sa / sb).log().abs() / torch.sqrt(1 / (2 * ea) + 1 / (2 * eb))
        assert (mean_z[varying] <= MC_SIGMAS).all(), (site, mean_z)
        assert (sd_z[varying] <= MC_SIGMAS).all(), (site, sd_z)


@pytest.mark.slow
@pytest.mark.parametrize(
    "program", [p for p in PROGRAMS if p.name in EVERY_RUN], ids=[n for n in IDS if n in EVERY_RUN]
)
def test_mcmc_agrees_with_pyros_nuts_within_monte_carlo_error(program):
    _check_agreement(program, num_samples=500, warmup_steps=300)


@pytest.mark.reference
@pytest.mark.parametrize(
    "program", [p for p in PROGRAMS if p.name not in EVERY_RUN], ids=[n for n in IDS if n not in EVERY_RUN]
)
def test_mcmc_agrees_with_pyros_nuts_on_every_program(program):
    _check_agreement(program, num_samples=1000, warmup_steps=1000)
