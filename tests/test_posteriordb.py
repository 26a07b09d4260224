"""posteriordb's reference posteriors as problems (issue 17): the ports, their data and
references, scoring, and bad input. The NUTS runs of every port against its reference are
marked ``reference`` (11 minutes for all 16; ``pytest -m reference -n 0`` runs them)."""

import gzip
import io
import json
import zipfile

import pytest
import torch

from ppmodels import posteriordb
from ppmodels.infer import compare
from ppmodels.posteriordb import ports

FLAT_REGRESSIONS = ["mesquite-logmesquite_logvas", "earnings-logearn_interaction_z", "nes2000-nes"]


@pytest.mark.parametrize("name", posteriordb.names())
def test_every_port_loads_with_finite_data_and_a_reference_of_its_parameters(name):
    problem = posteriordb.load(name)
    assert all(torch.isfinite(a).all() for a in problem.args if isinstance(a, torch.Tensor))
    assert problem.reference.draws == 10_000
    for p in problem.reference.parameters:
        summary = problem.reference.summaries[p]
        assert summary["sd"] > 0 and len(summary["quantiles"]) == 100


@pytest.mark.parametrize("name", FLAT_REGRESSIONS)
def test_flat_prior_regressions_match_their_closed_form_posterior(name):
    """With flat priors on beta and on sigma > 0, beta | y is a multivariate t around the
    least-squares fit with covariance SSE / (n - k - 3) (X'X)^-1: the port's transformed data
    (logs, standardised heights, age indicators) must give the reference posterior's moments.
    The reference means carry Monte Carlo error of about 0.01 sd (10,000 draws)."""
    problem = posteriordb.load(name)
    X, y = (a.double() for a in problem.args)
    n, k = X.shape
    xtx_inv = torch.linalg.inv(X.T @ X)
    beta_hat = xtx_inv @ X.T @ y
    sse = float(((y - X @ beta_hat) ** 2).sum())
    sd = (sse / (n - k - 3) * xtx_inv.diagonal()).sqrt()
    for j in range(k):
        ref = problem.reference.summaries[f"beta[{j + 1}]"]
        assert abs(float(beta_hat[j]) - ref["mean"]) < 0.05 * ref["sd"], (j, float(beta_hat[j]), ref["mean"])
        assert abs(float(sd[j]) / ref["sd"] - 1) < 0.03, (j, float(sd[j]), ref["sd"])


def test_scores_are_in_reference_sds_and_compare_reports_them():
    problem = posteriordb.load("eight_schools-eight_schools_noncentered")
    ref = problem.reference
    g = torch.Generator().manual_seed(0)
    draws = {
        p: ref.summaries[p]["mean"] + 2 * ref.summaries[p]["sd"] + 0 * torch.randn(4000, generator=g)
        for p in ref.parameters
    }
    draws["mu"] = ref.summaries["mu"]["mean"] + ref.summaries["mu"]["sd"] * torch.randn(4000, generator=g).double()
    rows = {r["parameter"]: r for r in ref.score(draws)}
    assert rows["theta[1]"]["mean_error_sds"] == pytest.approx(2.0) and rows["theta[1]"]["sd_ratio"] == 0.0
    assert abs(rows["mu"]["mean_error_sds"]) < 0.1 and abs(rows["mu"]["sd_ratio"] - 1) < 0.1
    assert rows["mu"]["w1_sds"] < 0.15  # a normal with the right moments; mu's reference is near normal

    result = compare(problem, guides=("meanfield",), mcmc=(), vi_epochs=30, num_vi_samples=500)
    scored = result.posterior_rows()
    assert {r["parameter"] for r in scored} == set(ref.parameters)
    assert "Against the reference posterior eight_schools-eight_schools_noncentered" in result.to_markdown()
    summary = result.summary()[0]
    assert summary["max_abs_mean_error_sds"] == max(abs(r["mean_error_sds"]) for r in scored)
    assert json.loads(result.to_json())["posterior"] == problem.name


def test_an_unknown_name_lists_the_ports():
    with pytest.raises(ValueError, match=r"no posteriordb port named 'blr'; the ports are arK-arK, arma-arma11, .*"):
        posteriordb.load("blr")


def test_a_path_that_is_missing_or_not_posteriordb_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"posteriordb path '.*nowhere' does not exist"):
        posteriordb.load("sblrc-blr", path=tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"is not a posteriordb clone: it has no posterior_database/posteriors"):
        posteriordb.load("sblrc-blr", path=tmp_path)


def _zip_json(path, name, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, json.dumps(value))
    path.write_bytes(buffer.getvalue())


def _fake_clone(root, parameters):
    """A posteriordb clone holding eight schools, with reference draws of ``parameters``."""
    db = root / "posterior_database"
    (db / "posteriors").mkdir(parents=True)
    (db / "reference_posteriors").mkdir(parents=True)
    name = "eight_schools-eight_schools_noncentered"
    info = {"name": name, "model_name": "eight_schools_noncentered", "data_name": "eight_schools"}
    (db / "posteriors" / f"{name}.json").write_text(json.dumps(info))
    data = {"J": 8, "y": [28, 8, -3, 7, -1, 1, 18, 12], "sigma": [15, 10, 16, 11, 9, 11, 10, 18]}
    _zip_json(db / "data" / "data" / "eight_schools.json.zip", "eight_schools.json", data)
    g = torch.Generator().manual_seed(0)
    chains = [{p: torch.randn(100, generator=g).tolist() for p in parameters} for _ in range(2)]
    _zip_json(db / "reference_posteriors" / "draws" / "draws" / f"{name}.json.zip", f"{name}.json", chains)
    return name, chains


def test_a_local_clone_is_read_and_summarised(tmp_path):
    parameters = [*(f"theta[{j}]" for j in range(1, 9)), "mu", "tau"]
    name, chains = _fake_clone(tmp_path, parameters)
    problem = posteriordb.load(name, path=tmp_path)
    draws = torch.tensor(chains[0]["mu"] + chains[1]["mu"], dtype=torch.float64)
    assert problem.reference.draws == 200
    assert problem.reference.summaries["mu"]["mean"] == pytest.approx(float(draws.mean()))
    assert problem.reference.summaries["mu"]["sd"] == pytest.approx(float(draws.std()))


def test_a_reference_whose_parameters_do_not_match_the_port_is_named(tmp_path):
    name, _ = _fake_clone(tmp_path, ["mu", "tau", "theta_trans[1]"])
    with pytest.raises(
        ValueError,
        match=r"the port of 'eight_schools.*' does not match its reference posterior: "
        r"the reference has \['theta_trans\[1\]'\] that the port does not give",
    ):
        posteriordb.load(name, path=tmp_path)


def test_the_shipped_file_holds_the_ports_and_says_where_it_comes_from():
    with gzip.open(posteriordb.SHIPPED, "rt") as fh:
        shipped = json.load(fh)
    assert "stan-dev/posteriordb" in shipped["source"] and sorted(shipped["posteriors"]) == sorted(ports.PORTS)


@pytest.mark.reference
@pytest.mark.parametrize("name", posteriordb.names())
def test_nuts_on_the_port_matches_the_reference_posterior(name):
    """The port is the same posterior as the Stan program, and compare's NUTS samples it: every
    mean within 0.2 reference sds and every sd within [0.8, 1.2] of the reference's (compare's
    defaults: ``ppmodels.infer.mcmc``, the compiled potential, 2 chains)."""
    result = compare(posteriordb.load(name), guides=(), mcmc=("nuts",), num_samples=1000, warmup_steps=500, seed=1)
    for row in result.posterior_rows():
        assert abs(row["mean_error_sds"]) < 0.2, row
        assert 0.8 < row["sd_ratio"] < 1.2, row


def test_the_command_runs_a_benchmark_and_keeps_the_posteriors_done(tmp_path, capsys):
    from ppmodels.cli import main

    out = tmp_path / "bench"
    args = ["compare", "--problem", "posteriordb:eight_schools-eight_schools_noncentered,kidiq-kidscore_momiq"]
    args += ["--guides", "meanfield", "--mcmc", "none", "--vi-epochs", "20", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    table = (out / "benchmark.md").read_text()
    assert "| kidiq-kidscore_momiq | yes | meanfield |" in table and (out / "benchmark.png").is_file()
    assert json.loads((out / "kidiq-kidscore_momiq" / "comparison.json").read_text())["posterior_rows"]
    capsys.readouterr()
    assert main(args) == 0
    assert "kidiq-kidscore_momiq: done before, kept" in capsys.readouterr().out
    assert main([*args, "--vi-stop", "steps"]) == 0  # other settings: run again
    assert "done before, kept" not in capsys.readouterr().out
    summary = json.loads((out / "kidiq-kidscore_momiq" / "comparison.json").read_text())["summary"]
    assert summary[0]["steps"] == 20
    with pytest.raises(SystemExit) as exit_:
        main([*args[:2], "posteriordb:nope", *args[3:]])
    assert exit_.value.code == 2
    assert "no posteriordb port named 'nope'; the ports are arK-arK, arma-arma11" in capsys.readouterr().err


def test_the_reference_shape_is_judged_in_the_unconstrained_space():
    """Known answers: Gaussian quantiles for a real parameter and log-normal ones for a
    positive scale are Gaussian in the unconstrained space; Student-t(3) quantiles have heavy
    tails, and normal quantiles of a positive scale are skewed once logged."""
    import dataclasses

    from ppmodels.posteriordb.extract import LEVELS

    levels = torch.as_tensor(LEVELS, dtype=torch.float64)
    normal = torch.distributions.Normal(0.0, 1.0).icdf(levels)
    torch.manual_seed(0)
    student = torch.distributions.StudentT(torch.tensor(3.0, dtype=torch.float64)).sample((200_000,)).quantile(levels)

    def shape(**quantiles):
        base = posteriordb.load("eight_schools-eight_schools_noncentered")
        summaries = {p: {"mean": 0.0, "sd": 1.0, "quantiles": q.tolist()} for p, q in quantiles.items()}
        reference = posteriordb.Reference(base.name, list(quantiles), summaries, 10_000)
        return dataclasses.replace(base, reference=reference).reference_shape()

    gaussian = shape(mu=3 + 2 * normal, tau=(1 + 0.3 * normal).exp())
    assert gaussian["near_gaussian"] and abs(gaussian["worst"]["skew"]) < 1e-6
    assert gaussian["worst"]["tails"] == pytest.approx(1.0, abs=1e-3)
    heavy = shape(mu=normal, tau=(0.2 * normal).exp(), **{"theta[1]": student})
    assert not heavy["near_gaussian"] and heavy["worst"]["parameter"] == "theta[1]" and heavy["worst"]["tails"] > 1.3
    skewed = shape(mu=normal, tau=3 + normal)  # normal on the positive scale: skewed left once logged
    assert not skewed["near_gaussian"] and skewed["worst"]["parameter"] == "tau" and skewed["worst"]["skew"] < -0.1
