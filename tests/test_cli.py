import json
import subprocess
import sys

import pytest

from ppmodels.cli import main

from test_data import make_idx_folder

FAST = ["--epochs", "2", "--eval-samples", "5", "--hidden", "32"]


def test_train_vae_writes_metrics_checkpoint_and_figures(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "vae", "--latent-dim", "2", "--out", str(out), *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["train_loss"]) == len(metrics["test_loss"]) == 2
    assert metrics["test_log_likelihood"] < 0 and metrics["test_elbo"] <= metrics["test_log_likelihood"] + 1
    # 5 importance draws per datum are too few to fit a Pareto tail: the k-hat summary says so by None
    assert metrics["test_psis"]["k_hat_draws"] == 5 and metrics["test_psis"]["k_hat_median"] is None
    for name in ["model.pt", "loss.png", "reconstructions.png", "samples.png", "latent_scatter.png", "latent_walk.png"]:
        assert (out / name).stat().st_size > 0, name


def test_train_cvae_conv_and_sample_in_a_fresh_process(tmp_path):
    out = tmp_path / "cvae"
    assert (
        main(["train", "cvae", "--arch", "conv", "--elbo", "iwae", "--num-particles", "2", "--out", str(out), *FAST])
        == 0
    )
    assert (out / "class_samples.png").stat().st_size > 0
    assert not (out / "latent_walk.png").exists()  # latent dimension 8
    png = tmp_path / "s.png"
    done = subprocess.run(
        [sys.executable, "-m", "ppmodels", "sample", str(out), "--labels", "3,5", "--num", "4", "--out", str(png)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 8 samples" in done.stdout and png.stat().st_size > 0


def test_train_on_mnist_idx_files(tmp_path):
    make_idx_folder(tmp_path / "idx", n_train=40, n_test=10)
    out = tmp_path / "m"
    assert main(["train", "vae", "--data", f"mnist:{tmp_path / 'idx'}", "--out", str(out), *FAST]) == 0
    assert json.loads((out / "metrics.json").read_text())["num_train"] == 40


@pytest.mark.parametrize(
    "argv",
    [[], ["demo"], ["train"], ["train", "vae"], ["train", "cvae"], ["sample"]],
    ids=["top", "demo", "train", "vae", "cvae", "sample"],
)
def test_help_on_every_subcommand(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: ppmodels" in text and "--help" in text


def test_bad_arguments_give_clear_errors(tmp_path, capsys):
    assert main(["train", "vae", "--data", "cifar", "--out", str(tmp_path / "x")]) == 2
    assert "`data` must be one of ['digits', 'mnist', 'fashion-mnist'], but got 'cifar'" in capsys.readouterr().err
    assert main(["train", "vae", "--data", f"mnist:{tmp_path}", "--out", str(tmp_path / "x")]) == 2
    assert "missing train-images-idx3-ubyte" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "vae", "--elbo", "elbow"])
    assert "invalid choice: 'elbow'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "vae", "--epochs", "0"])
    assert "must be a positive int, got 0" in capsys.readouterr().err
    assert main(["sample", str(tmp_path)]) == 2  # as train's errors: one line, `error:`, status 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ppmodels sample: error: no checkpoint at") and "\n" not in err


def test_demo_smoke(tmp_path):
    assert main(["demo", "--epochs", "1", "--out", str(tmp_path / "demo")]) == 0
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["latent_dim"] == 2 and metrics["data"] == "digits"
    assert (tmp_path / "demo" / "latent_walk.png").stat().st_size > 0


def test_train_bnn_writes_metrics_and_figures(tmp_path):
    import json

    from ppmodels.cli import main

    out = tmp_path / "bnn"
    assert main(["train", "bnn", "--epochs", "1", "--eval-samples", "3", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test_ece"] <= 1.0 and metrics["num_random_weights"] == 61684
    assert set(metrics["ood_auroc_by_epistemic"]) == {"rotated 90°", "uniform noise"}
    assert {p.name for p in out.glob("*.png")} == {"loss.png", "reliability.png", "epistemic_ood.png"}
    # a mean-field guide over 61,684 weights after one epoch is far from the posterior, and k-hat says so
    assert metrics["train_psis"]["draws"] == 200 and metrics["train_psis"]["k_hat"] > 0.7
    converted = tmp_path / "converted"
    args = ["train", "bnn", "--convert", "--pretrain-epochs", "1", "--epochs", "1", "--eval-samples", "2"]
    args += ["--psis-samples", "0"]
    assert main([*args, "--out", str(converted), "--no-progress"]) == 0
    converted_metrics = json.loads((converted / "metrics.json").read_text())
    assert converted_metrics["pretrain"]["epochs"] == 1 and converted_metrics["train_psis"] is None
    assert main(["train", "bnn", "--lr-decay", "0", "--out", str(tmp_path / "x")]) == 2


def test_train_np_writes_metrics_and_figures(tmp_path):
    import json

    from ppmodels.cli import main

    out = tmp_path / "np"
    args = ["train", "np", "--epochs", "2", "--functions", "64", "--eval-functions", "20", "--eval-samples", "5"]
    assert main([*args, "--hidden", "8", "--latent-dim", "2", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    evaluation = metrics["evaluation"]
    assert 0 <= evaluation["coverage_inside"] <= 1 and evaluation["oracle_gap"] is not None
    assert len(metrics["history"]["KL(q(z|targets) || q(z|context))"]) == 2
    assert {p.name for p in out.glob("*.png")} == {"training.png", "predictions.png"}
    sine = tmp_path / "sine"
    assert main([*args, "--data", "sine", "--attention", "--hidden", "8", "--out", str(sine), "--no-progress"]) == 0
    assert json.loads((sine / "metrics.json").read_text())["evaluation"]["oracle_gap"] is None


def test_idx_labels_outside_the_classes_are_one_line_before_any_training(tmp_path, capsys):
    from test_data import write_idx

    folder = tmp_path / "idx"
    make_idx_folder(folder, n_train=40, n_test=10)
    write_idx(folder / "train-labels-idx1-ubyte.gz", [3] * 39 + [12], True)
    assert main(["train", "bnn", "--data", f"mnist:{folder}", "--epochs", "1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err  # no trace-shape table after it
    assert err.startswith("ppmodels train bnn: error: mnist train: ") and "holds label 12, outside [0, 10)" in err


def test_an_error_raised_inside_a_model_is_reported_without_pyros_shape_table():
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro import poutine

    from ppmodels.cli import _one_line

    def model():
        pyro.sample("z", dist.Normal(torch.zeros(3), 1.0).to_event(1))
        raise ValueError("`y` holds label 12, outside [0, 10)")

    with pytest.raises(ValueError) as info:
        poutine.trace(model).get_trace()
    assert "Trace Shapes" in str(info.value)  # what Pyro appends
    assert _one_line(info.value) == "`y` holds label 12, outside [0, 10)"
