"""VI against MCMC: known answers on Bayesian linear regression, and the comparison's report."""

import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from ppmodels.cli import main
from ppmodels.data import linear_regression_data, logistic_regression_data
from ppmodels.infer import compare
from ppmodels.models import BayesianLinearRegression, BayesianLogisticRegression

from tolerances import MC_SIGMAS

#: NUTS against the exact posterior: within this many Monte Carlo standard errors (10 checks
#: at 3 would fail a correct sampler about once in 40 runs)
MCSE_SIGMAS = MC_SIGMAS
#: the full-rank Gaussian guide's marginal standard deviations against the exact ones
FULLRANK_SD_RTOL = 0.02


@pytest.fixture(scope="module")
def linreg():
    train, test = linear_regression_data(num_train=100, correlation=0.95, seed=0)
    result = compare(
        BayesianLinearRegression(2),
        train,
        test,
        guides=("meanfield", "fullrank"),
        mcmc=("nuts",),
        num_samples=1000,
        warmup_steps=300,
        vi_epochs=4000,
        seed=0,
    )
    return result


@pytest.mark.slow
def test_nuts_matches_the_exact_posterior_within_monte_carlo_error(linreg):
    for row in [r for r in linreg.rows() if r["method"] == "nuts"]:
        mcse_mean = row["exact_sd"] / math.sqrt(row["ess"])
        mcse_sd = row["exact_sd"] / math.sqrt(2 * row["ess"])
        assert abs(row["mean"] - row["exact_mean"]) <= MCSE_SIGMAS * mcse_mean, row
        assert abs(row["sd"] - row["exact_sd"]) <= MCSE_SIGMAS * mcse_sd, row
        assert row["r_hat"] < 1.05


@pytest.mark.slow
def test_fullrank_guide_recovers_the_exact_standard_deviations(linreg):
    for row in [r for r in linreg.rows() if r["method"] == "fullrank"]:
        assert row["sd_ratio"] == pytest.approx(1.0, abs=FULLRANK_SD_RTOL), row


@pytest.mark.slow
def test_meanfield_underestimates_marginal_spread_of_a_correlated_posterior(linreg):
    rows = {r["latent"]: r for r in linreg.rows() if r["method"] == "meanfield"}
    # features correlated 0.95 make w[0], w[1] strongly correlated a posteriori: a factorised
    # Gaussian matches the conditional, not the marginal, spread (about sqrt(1 - rho^2) of it)
    assert rows["w[0]"]["sd_ratio"] < 0.6 and rows["w[1]"]["sd_ratio"] < 0.6
    # the intercept is nearly uncorrelated with w (centred features): there mean-field is right
    assert rows["b"]["sd_ratio"] == pytest.approx(1.0, abs=0.05)


@pytest.mark.slow
def test_the_report_says_where_vi_and_nuts_disagree_and_which_to_believe(linreg):
    said = [w for w in linreg.warnings if "disagree beyond Monte Carlo error" in w]
    # mean-field's sds of the correlated weights are under 0.6 of NUTS's; full rank matches NUTS
    assert len(said) == 1 and said[0].startswith("meanfield and nuts disagree beyond Monte Carlo error on 2 of 3")
    assert "nuts passed its own diagnostics, so believe nuts" in said[0]
    assert "Warnings:" in linreg.to_markdown()


@pytest.mark.slow
def test_report_holds_distances_predictive_scores_and_diagnostics(linreg):
    summary = {r["method"]: r for r in linreg.summary()}
    assert summary["nuts"]["min_ess"] > 100 and summary["nuts"]["min_ess_per_second"] > 0
    assert summary["fullrank"]["mean_w1_to_reference"] < summary["meanfield"]["mean_w1_to_reference"]
    assert all(r["predictive_log_likelihood"] is not None for r in summary.values())
    assert summary["fullrank"]["predictive_log_likelihood"] > summary["meanfield"]["predictive_log_likelihood"] - 0.05
    text = linreg.to_markdown()
    assert "| latent | method | mean | sd | exact_mean |" in text
    assert json.loads(linreg.to_json())["reference"] == "nuts"


def test_user_guide_and_logistic_problem_smoke():
    train, test = logistic_regression_data(num_train=60, num_test=30)

    def my_guide(x, y=None):
        loc = pyro.param("my_loc", torch.zeros(3))
        pyro.sample("w", dist.Normal(loc, 0.3).to_event(1))
        pyro.sample("b", dist.Normal(pyro.param("my_b", torch.tensor(0.0)), 0.3))

    result = compare(
        BayesianLogisticRegression(3),
        train,
        test,
        guides=[("mine", my_guide), "meanfield"],
        mcmc=("nuts",),
        num_samples=30,
        warmup_steps=20,
        vi_epochs=30,
        num_vi_samples=200,
    )
    assert [m.name for m in result.methods] == ["mine", "meanfield", "nuts"]
    assert result.latent_names == ["w[0]", "w[1]", "w[2]", "b"]
    assert result.exact is None and result.reference == "nuts"


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"guides": ("meanfeld",)}, ValueError, r"unknown guide 'meanfeld'; valid names are \['fullrank', 'lowrank', "),
        (
            {"mcmc": ("mala",)},
            ValueError,
            r"unknown MCMC kernel 'mala'; valid names are \['chees', 'hmc', 'nuts', 'pyro-hmc', 'pyro-nuts'\]",
        ),
        (
            {"max_latents": 2},
            ValueError,
            r"3 latent dimensions, more than max_latents=2 for MCMC; compare variational "
            r"guides only \(mcmc=\(\)\)",
        ),
        ({"num_samples": 0}, ValueError, r"`num_samples` must be a positive int, but got 0"),
        ({"warmup_steps": -1}, ValueError, r"`warmup_steps` must be a non-negative int, but got -1"),
        ({"guides": (), "mcmc": ()}, ValueError, r"nothing to compare"),
        ({"guides": (3,)}, TypeError, r"`guides` entries must be names"),
        (
            {"kernel_options": {"jitter": 0}},
            ValueError,
            r"kernel_options=\{'jitter': 0\} is HMC's option .* mcmc=\('nuts',\) runs no HMC: add 'hmc'",
        ),
    ],
    ids=["guide", "kernel", "too-many-latents", "samples", "warmup", "nothing", "guide-type", "jitter-without-hmc"],
)
def test_bad_arguments(kwargs, error, match):
    train, _ = linear_regression_data(num_train=20)
    with pytest.raises(error, match=match):
        compare(BayesianLinearRegression(2), train, **kwargs)


def test_a_shared_hmc_option_reaches_hmc_and_not_nuts():
    """compare's kernel_options go to every kernel: HMC's ``jitter`` is left out of NUTS's, as
    NUTS's ``max_tree_depth`` is out of HMC's."""
    train, _ = linear_regression_data(num_train=20)
    result = compare(BayesianLinearRegression(2), train, guides=(), mcmc=("nuts", "hmc"), num_samples=20,
                     warmup_steps=10, kernel_options={"jitter": 0, "max_tree_depth": 4})  # fmt: skip
    assert [m.name for m in result.methods] == ["nuts", "hmc"]


def test_chees_in_compare_takes_its_own_options_and_leaves_nuts_its_own():
    """ChEES leaves NUTS's ``max_tree_depth``, NUTS leaves ChEES's ``max_leapfrogs`` (which
    would otherwise send NUTS to Pyro's kernel, which has no such option)."""
    train, _ = linear_regression_data(num_train=20)
    result = compare(BayesianLinearRegression(2), train, guides=(), mcmc=("nuts", "chees"), num_samples=40,
                     warmup_steps=40, kernel_options={"max_tree_depth": 4, "max_leapfrogs": 50})  # fmt: skip
    nuts, chees = result.methods
    assert (nuts.name, chees.name) == ("nuts", "chees")
    assert not any("Pyro" in note for note in nuts.notes)
    assert len(next(iter(chees.samples.values()))) == 64 * 40  # 64 chains by default


def test_a_model_with_no_latent_sites_has_nothing_to_infer():
    def model(y):
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(0.0, 1.0), obs=y)

    with pytest.raises(ValueError, match=r"^the model has no latent sites .* nothing to infer"):
        compare(model, (torch.randn(5),), mcmc=())


def test_wrong_data_shape_names_the_argument():
    with pytest.raises(ValueError, match=r"`x` must have shape \(N, 2\), but got \(20, 3\)"):
        compare(BayesianLinearRegression(2), (torch.randn(20, 3), torch.randn(20)), mcmc=())
    with pytest.raises(TypeError, match=r"`train` must be a tuple"):
        compare(BayesianLinearRegression(2), [torch.randn(20, 2), torch.randn(20)])


def test_compare_command_writes_report_and_figures(tmp_path):
    out = tmp_path / "cmp"
    assert (
        main(
            [
                "compare",
                "--problem",
                "linreg",
                "--guides",
                "meanfield",
                "--num-samples",
                "40",
                "--warmup",
                "20",
                "--vi-epochs",
                "40",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    for name in ["comparison.md", "comparison.json", "marginals.png"]:
        assert (out / name).stat().st_size > 0
    assert main(["compare", "--guides", "meanfeld", "--out", str(out)]) == 2
