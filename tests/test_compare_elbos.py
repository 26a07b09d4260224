import json

import pytest
import torch

from ppmodels.cli import main
from ppmodels.data import digits
from ppmodels.infer import compare_elbos, gradient_variance
from ppmodels.models import VAE
from ppmodels.nn import MLPDecoder, MLPEncoder


@pytest.fixture(scope="module")
def data():
    return digits()


def small_vae():
    torch.manual_seed(0)
    return VAE(MLPEncoder((1, 8, 8), 4, (32,)), MLPDecoder(4, (1, 8, 8), (32,)), 4)


def test_analytic_kl_lowers_the_gradient_variance_at_the_same_parameters(data):
    vae = small_vae()
    batch = (data.train_x[:128],)
    trace = gradient_variance(vae, batch, "trace", repeats=30)
    meanfield = gradient_variance(vae, batch, "meanfield", repeats=30)
    assert 0 < meanfield < trace
    assert gradient_variance(vae, batch, "trace", repeats=30) == trace  # seeded: reproducible
    with pytest.raises(ValueError, match=r"`repeats` must be at least 2 to estimate a variance, but got 1"):
        gradient_variance(vae, batch, "trace", repeats=1)


def test_estimators_start_alike_and_are_reported_alike(data):
    result = compare_elbos(
        small_vae(), data.train_x[:512], data.test_x[:64], ("trace", "tracegraph", "iwae"), epochs=2, eval_samples=20
    )
    rows = {r.estimator: r for r in result.results}
    assert list(rows) == ["trace", "tracegraph", "iwae"]
    # every site is reparameterised, so TraceGraph's estimator is Trace's: the same runs, up to
    # the order of floating-point sums
    assert rows["trace"].train_loss == pytest.approx(rows["tracegraph"].train_loss, rel=1e-5)
    assert rows["trace"].test_log_likelihood == pytest.approx(rows["tracegraph"].test_log_likelihood, rel=1e-5)
    assert rows["iwae"].train_loss != rows["trace"].train_loss
    for r in rows.values():
        assert r.test_elbo <= r.test_log_likelihood + 3 * r.test_log_likelihood_stderr
        assert r.gradient_variance > 0 and r.seconds_per_epoch > 0
    assert "| estimator | test log-lik (K=20) |" in result.to_markdown()
    assert len(json.loads(result.to_json())["rows"]) == 3


def test_bad_estimators_are_refused_before_training(data):
    with pytest.raises(ValueError, match=r"unknown ELBO estimator 'elbow'; valid names are"):
        compare_elbos(small_vae(), data.train_x, data.test_x, ("trace", "elbow"))
    with pytest.raises(ValueError, match=r"`estimators` is empty"):
        compare_elbos(small_vae(), data.train_x, data.test_x, ())


def test_compare_elbo_command(tmp_path):
    out = tmp_path / "ce"
    assert (
        main(
            [
                "compare-elbo",
                "--epochs",
                "1",
                "--eval-samples",
                "5",
                "--hidden",
                "32",
                "--estimators",
                "trace,meanfield",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    for name in ["elbo_comparison.md", "elbo_comparison.json", "elbo_comparison.png"]:
        assert (out / name).stat().st_size > 0
    assert main(["compare-elbo", "--estimators", "trace,elbow", "--out", str(out)]) == 2
