"""The facade's toolbox (UncertaintyEvaluation, VAEAnomalyDetection) and the core anomaly scores."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ppmodels.data import digits
from ppmodels.infer import fit
from ppmodels.infer.training.data import TensorBatches
from ppmodels.models import VAE
from ppmodels.nn import MLPDecoder, MLPEncoder
from ppmodels.probability.toolbox import UncertaintyEvaluation, VAEAnomalyDetection
from ppmodels.toolbox import anomaly_scores, roc


@pytest.fixture(scope="module")
def trained_classifier():
    torch.manual_seed(0)
    data = digits()
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(30):
        for i in torch.randperm(len(data.train_y)).split(128):
            opt.zero_grad()
            F.cross_entropy(net(data.train_x[i]), data.train_y[i]).backward()
            opt.step()
    return net.eval(), data


def test_uncertainty_evaluation_validation():
    net = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="The model must be Cell type."):
        UncertaintyEvaluation("net", [], "classification", 2)
    with pytest.raises(ValueError, match="The task should be regression or classification."):
        UncertaintyEvaluation(net, [], "clustering", 2)
    with pytest.raises(TypeError, match="`num_classes` must be a positive int, but got None"):
        UncertaintyEvaluation(net, [], "classification")
    with pytest.raises(ValueError, match="`epochs` must be a positive int, but got 0"):
        UncertaintyEvaluation(net, [], "regression", epochs=0)
    with pytest.raises(ValueError, match="If save_model is True, the epi_uncer_model_path and ale_uncer_model_path"):
        UncertaintyEvaluation(net, [], "regression", save_model=True, epi_uncer_model_path="a")
    with pytest.raises(TypeError, match="The type of `save_model` should be `bool`"):
        UncertaintyEvaluation(net, [], "regression", save_model=1)
    with pytest.raises(FileNotFoundError, match="`epi_uncer_model_path`: no checkpoint file at missing.pt"):
        UncertaintyEvaluation(net, [], "regression", epi_uncer_model_path="missing.pt")
    with pytest.raises(ValueError, match="The model has not Dense Layer"):
        UncertaintyEvaluation(
            nn.Conv1d(1, 1, 1), [(torch.zeros(2, 1, 3), torch.zeros(2, 1, 3))], "regression"
        ).eval_aleatoric_uncertainty(torch.zeros(2, 1, 3))


def test_epistemic_uncertainty_is_higher_out_of_distribution(trained_classifier, tmp_path):
    net, data = trained_classifier
    before = {k: v.clone() for k, v in net.state_dict().items()}
    batches = TensorBatches((data.train_x, data.train_y), 64, shuffle=True)
    evaluation = UncertaintyEvaluation(
        net,
        batches,
        "classification",
        num_classes=10,
        epochs=5,
        save_model=True,
        epi_uncer_model_path=str(tmp_path / "epi"),
        ale_uncer_model_path=str(tmp_path / "ale"),
    )
    epistemic = evaluation.eval_epistemic_uncertainty(data.test_x)
    aleatoric = evaluation.eval_aleatoric_uncertainty(data.test_x)
    assert epistemic.shape == (360, 10) and aleatoric.shape == (360,)
    assert isinstance(epistemic, np.ndarray) and (epistemic >= 0).all() and (aleatoric >= 0).all()
    noise = torch.rand(360, 1, 8, 8)
    ood = evaluation.eval_epistemic_uncertainty(noise)
    assert ood.sum(1).mean() > 2 * epistemic.sum(1).mean()
    for k, v in net.state_dict().items():  # the user's model is not changed
        assert torch.equal(v, before[k])
    assert (tmp_path / "epi" / "checkpoint_epi_uncer_model.pt").is_file()
    loaded = UncertaintyEvaluation(
        net, None, "classification", 10, epi_uncer_model_path=str(tmp_path / "epi" / "checkpoint_epi_uncer_model.pt")
    )
    torch.testing.assert_close(loaded.bayesian_model().posterior.loc[0], evaluation.bayesian_model().posterior.loc[0])


def test_regression_aleatoric_follows_the_noise():
    torch.manual_seed(0)
    x = torch.rand(512, 1) * 4 - 2
    y = torch.sin(x) + (0.05 + 0.4 * (x > 0).float()) * torch.randn(512, 1)
    net = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        F.mse_loss(net(x), y).backward()
        opt.step()
    evaluation = UncertaintyEvaluation(
        net, [(x[i : i + 64], y[i : i + 64]) for i in range(0, 512, 64)], "regression", epochs=150
    )
    grid = torch.tensor([[-1.5], [-1.0], [1.0], [1.5]])
    aleatoric = evaluation.eval_aleatoric_uncertainty(grid)
    assert aleatoric.shape == (4,) and evaluation.eval_epistemic_uncertainty(grid).shape == (4, 1)
    assert aleatoric[2:].min() > 3 * aleatoric[:2].max()  # noise sd 0.45 vs 0.05


@pytest.fixture(scope="module")
def trained_vae():
    torch.manual_seed(0)
    data = digits()
    vae = VAE(MLPEncoder((1, 8, 8), 4), MLPDecoder(4, (1, 8, 8)), latent_dim=4)
    fit(vae, data.train_x, epochs=40, batch_size=128, lr=3e-3, seed=0, progress=False)
    return vae, data


def test_core_scores_separate_corrupted_digits(trained_vae):
    vae, data = trained_vae
    corrupted = (data.test_x + 0.5 * torch.rand_like(data.test_x)).clamp(0, 1)
    for score in ("elbo", "log_likelihood"):
        normal = anomaly_scores(vae, data.test_x, score=score, num_samples=20, seed=0)
        result = roc(normal, anomaly_scores(vae, corrupted, score=score, num_samples=20, seed=0))
        assert normal.shape == (360,) and result.auroc > 0.95
        assert result.fpr[0] == 0 and result.tpr[-1] == 1
    with pytest.raises(ValueError, match=r"`score` must be one of \['elbo', 'log_likelihood'\]"):
        anomaly_scores(vae, data.test_x, score="recon")
    with pytest.raises(ValueError, match="`normal_scores` must be a non-empty 1-D tensor"):
        roc(torch.zeros(0), torch.ones(3))


def test_vae_anomaly_detection_scores_each_sample():
    torch.manual_seed(0)
    data = digits(image_size=8)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
    decoder = nn.Sequential(nn.Linear(32, 64), nn.Sigmoid(), nn.Unflatten(1, (1, 8, 8)))
    detector = VAEAnomalyDetection(encoder, decoder, hidden_size=32, latent_size=4)
    detector.train(TensorBatches((data.train_x, data.train_y), 64, shuffle=True), epochs=20)
    scores = detector.predict_outlier_score(data.test_x[:50])
    assert scores.shape == (50,)
    np.testing.assert_allclose(scores, detector.predict_outlier_score(data.test_x[:50]))  # reproducible
    noise_scores = detector.predict_outlier_score(torch.rand(50, 1, 8, 8))
    assert np.median(noise_scores) > 1.5 * np.median(scores)
    flags = detector.predict_outlier(data.test_x[:50], threshold=100)  # an int is accepted
    assert flags.shape == (50,) and flags.dtype == bool and not flags.any()
    assert detector.predict_outlier(torch.rand(50, 1, 8, 8), float(np.median(scores) * 1.5)).mean() > 0.5
    with pytest.raises(TypeError, match="The sample_x must be Tensor type."):
        detector.predict_outlier_score(np.zeros((2, 1, 8, 8)))
    with pytest.raises(TypeError, match="The `threshold` must be a positive float, but got bool"):
        detector.predict_outlier(data.test_x[:2], threshold=True)
    with pytest.raises(ValueError, match="The `threshold` must be a positive float, but got -1.0"):
        detector.predict_outlier(data.test_x[:2], threshold=-1.0)
