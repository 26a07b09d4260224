"""Simulation-based calibration (issue 18): the exact posterior passes, a too-narrow one fails
and is named, NUTS and a user's guide run through it, the false-rejection rate, resuming,
parallel workers, bad input."""

import json

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from ppmodels.infer import DrawsMethod, sbc
from ppmodels.infer.comparison.sbc_ranks import ecdf_band


def two_means(y):
    """Two independent normal means, each seen through 10 unit-noise data."""
    a = pyro.sample("a", dist.Normal(0.0, 1.0))
    b = pyro.sample("b", dist.Normal(0.0, 1.0))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Normal(torch.stack([a, b], -1).expand(y.shape), 1.0).to_event(1), obs=y)


Y = torch.zeros(10, 2)


def exact_draws(model, args, width_b=1.0, num=500):
    """The exact posterior of two_means given the data the conditioned model carries; b's
    sd scaled by ``width_b``."""
    y = poutine.trace(model).get_trace(*args).nodes["y"]["value"]
    precision = 1 + y.shape[0]
    z = torch.randn(num, 2)
    z[:, 1] *= width_b
    d = y.sum(0) / precision + precision**-0.5 * z
    return {"a": d[:, 0], "b": d[:, 1]}


def narrow(model, args):
    return exact_draws(model, args, width_b=0.5)


EXACT, NARROW = DrawsMethod("exact", exact_draws), DrawsMethod("narrow", narrow)


def test_the_exact_posterior_passes_and_a_too_narrow_one_fails_naming_the_parameter():
    good = sbc(two_means, (Y,), EXACT, num_simulations=200)
    assert good.failing() == [] and min(good.p_values().values()) > 0.01
    assert good.ranks["a"].shape == (200,) and int(good.ranks["a"].max()) <= 99
    bad = sbc(two_means, (Y,), NARROW, num_simulations=200)
    assert bad.failing() == ["b"]  # a is the exact posterior's in both
    assert "not calibrated" in bad.verdict and "b (p = " in bad.verdict
    # too narrow: the true values fall outside the draws, ranks pile at both ends
    assert float(((bad.ranks["b"] == 0) | (bad.ranks["b"] == 99)).double().mean()) > 0.2


def test_vsbc_flags_a_biased_posterior_that_sbc_also_sees_and_passes_a_symmetric_one():
    def biased(model, args):
        d = exact_draws(model, args)
        return {"a": d["a"] + 0.3, "b": d["b"]}  # 1 posterior sd too high

    result = sbc(two_means, (Y,), DrawsMethod("biased", biased), num_simulations=200)
    v = result.vsbc_p_values()
    assert v["a"] < 0.01 < v["b"]
    assert result.rows()[0]["mean_fraction_below"] < 0.4  # the truth is mostly below the draws


@pytest.mark.slow
def test_the_false_rejection_rate_of_an_exact_sampler_is_near_its_level():
    """30 repeats of a 40-simulation SBC of the exact posterior: at level 0.05 (Bonferroni
    over 2 parameters: 0.025 each) about 5% reject, 1.5 of 30; 7 or more happens with
    probability 0.0006 for a test at its level. A test that rejected far too rarely would be
    useless (the too-narrow posterior above shows it is not)."""
    rejected = sum(
        bool(sbc(two_means, (Y,), EXACT, num_simulations=40, num_draws=39, seed=1000 * r).failing()) for r in range(30)
    )
    assert rejected <= 6


@pytest.mark.slow
def test_nuts_passes_on_the_conjugate_model():
    result = sbc(two_means, (Y,), "nuts", num_simulations=20, num_samples=100, warmup_steps=50, num_draws=19)
    assert result.failing() == [], result.to_markdown()


@pytest.mark.slow
def test_chees_passes_on_the_conjugate_model_with_its_own_chains():
    """SBC's one chain per simulation would leave ChEES nothing to adapt from: it runs its own."""
    result = sbc(two_means, (Y,), "chees", num_simulations=20, num_samples=20, warmup_steps=50, num_draws=19,
                 num_chains=16)  # fmt: skip
    assert result.failing() == [], result.to_markdown()


def test_a_users_guide_is_trained_afresh_for_each_simulation():
    def guide(y):
        for name in ("a", "b"):
            loc = pyro.param(f"{name}_loc", torch.tensor(0.0))
            scale = pyro.param(f"{name}_scale", torch.tensor(1.0), constraint=dist.constraints.positive)
            pyro.sample(name, dist.Normal(loc, scale))

    result = sbc(
        two_means, (Y,), ("mine", guide), num_simulations=8, num_draws=19, vi_epochs=300, vi_stop="steps",
        num_vi_samples=200,
    )  # fmt: skip
    assert result.method == "mine" and result.num_simulations == 8 and set(result.ranks) == {"a", "b"}
    # afresh: the last simulation run on its own (nothing trained before it) gives the same ranks
    last = sbc(two_means, (Y,), ("mine", guide), num_simulations=1, seed=7, num_draws=19, vi_epochs=300,
               vi_stop="steps", num_vi_samples=200)  # fmt: skip
    assert int(last.ranks["a"][0]) == int(result.ranks["a"][7]) and int(last.ranks["b"][0]) == int(result.ranks["b"][7])


def test_an_interrupted_run_resumes_and_other_settings_are_refused(tmp_path, monkeypatch):
    import ppmodels.infer.comparison.sbc_runs as module

    full = sbc(two_means, (Y,), EXACT, num_simulations=12)
    real, calls = module._run_one, []

    def stop_after_five(*args):
        calls.append(args[4])
        if len(calls) > 5:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(module, "_run_one", stop_after_five)
    with pytest.raises(KeyboardInterrupt):
        sbc(two_means, (Y,), EXACT, num_simulations=12, out=tmp_path)
    assert len((tmp_path / "simulations.jsonl").read_text().splitlines()) == 5
    monkeypatch.setattr(module, "_run_one", real)
    resumed = sbc(two_means, (Y,), EXACT, num_simulations=12, out=tmp_path)
    assert torch.equal(resumed.ranks["a"], full.ranks["a"]) and torch.equal(resumed.ranks["b"], full.ranks["b"])
    assert json.loads((tmp_path / "sbc_settings.json").read_text())["method"] == "exact"
    with pytest.raises(ValueError, match="holds simulations made with other settings"):
        sbc(two_means, (Y,), EXACT, num_simulations=12, num_draws=49, out=tmp_path)


def test_two_workers_give_the_ranks_of_one():
    one = sbc(two_means, (Y,), EXACT, num_simulations=6)
    two = sbc(two_means, (Y,), EXACT, num_simulations=6, workers=2)
    assert torch.equal(one.ranks["a"], two.ranks["a"]) and torch.equal(one.ranks["b"], two.ranks["b"])


def test_the_ecdf_band_holds_a_uniform_ecdf_about_95_percent_of_the_time():
    import numpy as np

    n = 50
    z, lower, upper = ecdf_band(n, num_points=40)
    rng = np.random.default_rng(1)
    inside = 0
    for _ in range(400):
        u = np.sort(rng.random(n))
        diff = np.searchsorted(u, z, side="right") / n - z
        inside += bool(np.all((diff >= lower - 1e-12) & (diff <= upper + 1e-12)))
    assert 0.91 <= inside / 400 <= 0.99  # simultaneous, not pointwise (pointwise would be far lower)


def test_a_model_that_cannot_simulate_is_one_line_naming_the_site():
    def with_factor(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        pyro.factor("lik", dist.Normal(mu, 1.0).log_prob(y).sum())

    with pytest.raises(ValueError, match=r"cannot simulate its data: site 'lik' is a pyro.factor term"):
        sbc(with_factor, (torch.zeros(3),), EXACT)

    def flat(y):
        mu = pyro.sample("mu", dist.ImproperUniform(dist.constraints.real, (), ()))
        pyro.sample("y", dist.Normal(mu, 1.0).expand([3]).to_event(1), obs=y)

    with pytest.raises(ValueError, match=r"site 'mu' has a flat \(ImproperUniform\) prior"):
        sbc(flat, (torch.zeros(3),), EXACT)
    with pytest.raises(ValueError, match=r"unknown method 'nutz'; valid names are guides"):
        sbc(two_means, (Y,), "nutz")
    with pytest.raises(ValueError, match=r"`num_simulations` must be a positive int, but got 0"):
        sbc(two_means, (Y,), EXACT, num_simulations=0)
    with pytest.raises(TypeError, match=r"unknown settings \['vi_epoch'\]"):
        sbc(two_means, (Y,), EXACT, vi_epoch=3)
    with pytest.raises(ValueError, match=r"`num_draws` \(999\) is more than the 500 posterior draws exact returns"):
        sbc(two_means, (Y,), EXACT, num_simulations=2, num_draws=999)


def test_the_figure_draws_each_parameters_histogram_and_ecdf(tmp_path):
    from ppmodels import plots

    result = sbc(two_means, (Y,), NARROW, num_simulations=40)
    fig = plots.sbc_ranks(result)
    assert len(fig.axes) == 4 and "b\np = " in fig.axes[1].get_title()
    assert plots.save(fig, tmp_path / "sbc.png").stat().st_size > 10_000


def test_the_command_writes_its_report_and_continues_in_the_same_folder(tmp_path, capsys):
    from ppmodels.cli import main

    argv = ["sbc", "--problem", "linreg", "--method", "fullrank", "--simulations", "3", "--draws", "9"]
    argv += ["--vi-epochs", "50", "--vi-samples", "100", "--workers", "1", "--out", str(tmp_path)]
    assert main(argv) == 0
    report = json.loads((tmp_path / "sbc.json").read_text())
    assert report["num_simulations"] == 3 and {r["parameter"] for r in report["parameters"]} == {"w[0]", "w[1]", "b"}
    assert "too few to test" in report["verdict"] and (tmp_path / "sbc.png").is_file()
    assert main([*argv[:6], "5", *argv[7:]]) == 0  # two more: the first three are kept
    assert len((tmp_path / "simulations" / "simulations.jsonl").read_text().splitlines()) == 5
    assert main(["sbc", "--method", "advi", "--out", str(tmp_path / "x")]) == 2
    assert "--method 'advi': choose from meanfield, fullrank, lowrank, nuts, hmc" in capsys.readouterr().err
