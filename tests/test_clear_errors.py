"""Raw tracebacks users met, each now a one-line error naming the argument and the fix; and the
facade's MindSpore fidelity (import paths, the loss's shape, one-sample outlier flags)."""

import gzip
import importlib

import numpy as np
import pytest
import torch

from ppmodels.data import read_idx
from ppmodels.infer import fit
from ppmodels.models import VAE, BayesianLeNet5, NeuralProcess
from ppmodels.nn import LeNet5, MLPDecoder, MLPEncoder

MINDSPORE_PATHS = {
    "dpn.vae": ["VAE", "ConditionalVAE"],
    "dpn.vae.vae": ["VAE"],
    "dpn.vae.cvae": ["ConditionalVAE"],
    "infer.variational": ["ELBO", "SVI"],
    "infer.variational.elbo": ["ELBO"],
    "infer.variational.svi": ["SVI"],
    "bnn_layers.dense_variational": ["DenseReparam", "DenseLocalReparam"],
    "bnn_layers.conv_variational": ["ConvReparam"],
    "bnn_layers.bnn_cell_wrapper": ["WithBNNLossCell"],
    "bnn_layers.layer_distribution": ["NormalPrior", "NormalPosterior", "normal_post_fn"],
    "toolbox.uncertainty_evaluation": ["UncertaintyEvaluation"],
    "toolbox.anomaly_detection": ["VAEAnomalyDetection"],
    "toolbox.vae_anomaly_detection": ["VAEAnomalyDetection"],
    "transforms.transform_bnn": ["TransformToBNN"],
}


@pytest.mark.parametrize("path", sorted(MINDSPORE_PATHS))
def test_mindsporess_submodule_paths_name_the_same_objects(path):
    module = importlib.import_module(f"ppmodels.probability.{path}")
    package = importlib.import_module(f"ppmodels.probability.{path.split('.')[0]}")
    for name in MINDSPORE_PATHS[path]:
        assert getattr(module, name) is getattr(package, name)


def bnn_net():
    from ppmodels.probability import bnn_layers

    torch.manual_seed(0)
    return bnn_layers.DenseReparam(16, 1)


def soft_cross_entropy(out, label):  # SoftmaxCrossEntropyWithLogits(sparse=False): unreduced, per sample
    return -(label * out.log_softmax(-1)).sum(-1)


def test_with_bnn_loss_cell_keeps_the_loss_shape_and_trains_on_the_kl_once():
    from ppmodels.probability import TrainOneStepCell, bnn_layers

    data, label = torch.ones(2, 16) * 0.01, torch.ones(2, 1)
    cell = bnn_layers.WithBNNLossCell(bnn_net(), soft_cross_entropy, dnn_factor=3, bnn_factor=0.5)
    value, objective = cell.loss_and_objective(data, label)
    assert value.shape == (2,) and objective.shape == ()  # MindSpore's docstring example prints (2,)
    per_sample = cell.core().last_loss.detach()  # the loss function's own output for this draw
    kl = value.detach() - 3 * per_sample  # MindSpore's value: dnn_factor * loss + bnn_factor * kl
    torch.testing.assert_close(kl, kl[:1].expand(2))  # the same KL on every element
    torch.testing.assert_close(objective.detach(), 3 * per_sample.sum() + kl[0])  # the KL counted once
    assert cell(data, label).shape == (2,)
    # training: TrainOneStepCell differentiates the objective, not value.sum() (which counts the KL twice)
    net = bnn_net()
    cell = bnn_layers.WithBNNLossCell(net, soft_cross_entropy, dnn_factor=3, bnn_factor=0.5)
    step = TrainOneStepCell(cell, torch.optim.SGD(net.parameters(), lr=0.0))
    torch.manual_seed(1)
    assert step(data, label).shape == (2,)
    grads = [p.grad.clone() for p in net.parameters()]
    torch.manual_seed(1)
    for p in net.parameters():
        p.grad = None
    cell.loss_and_objective(data, label)[1].backward()
    for g, p in zip(grads, net.parameters()):
        torch.testing.assert_close(g, p.grad)


def test_a_single_sample_outlier_flag_is_a_python_bool():
    from torch import nn

    from ppmodels.probability.toolbox import VAEAnomalyDetection

    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
    decoder = nn.Sequential(nn.Linear(32, 64), nn.Sigmoid(), nn.Unflatten(1, (1, 8, 8)))
    detector = VAEAnomalyDetection(encoder, decoder, hidden_size=32, latent_size=4)
    one = torch.rand(1, 1, 8, 8)
    assert isinstance(detector.predict_outlier(one, threshold=0.5), bool)  # `if ood.predict_outlier(x):`
    assert isinstance(detector.predict_outlier_score(one), float)
    flags = detector.predict_outlier(torch.rand(3, 1, 8, 8), threshold=0.5)
    assert isinstance(flags, np.ndarray) and flags.shape == (3,)


def test_a_truncated_gzip_idx_file_names_the_file(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2, 3, 4, 5]))[:-6])
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz is not a complete gzip file \(EOFError"):
        read_idx(path)


def small_vae():
    return VAE(MLPEncoder((4,), 2), MLPDecoder(2, (4,)), 2)


def test_fit_on_integer_float64_data_and_a_device_that_does_not_exist():
    with pytest.raises(TypeError, match=r"`x` must hold floating-point values .* got dtype torch.int64; convert with"):
        fit(small_vae(), torch.randint(0, 2, (8, 4)), epochs=1)
    result = fit(small_vae(), torch.rand(8, 4, dtype=torch.float64), epochs=1)  # converted to the pair's float32
    assert result.epochs == 1
    with pytest.raises(ValueError, match=r"`device` must be a torch device such as 'cpu', 'cuda' or 'cuda:0', but got"):
        fit(small_vae(), torch.rand(8, 4), device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"`device`='cuda': this torch build .* has no CUDA device"):
            fit(small_vae(), torch.rand(8, 4), device="cuda")


@pytest.mark.parametrize(
    "shape,match",
    [
        ((4, 1, 28, 28), r"LeNet5 takes images of shape \(N, 1, 32, 32\) .* but got \(4, 1, 28, 28\)$"),
        ((4, 32, 32), r"but got \(4, 32, 32\); add the channel dimension with x.unsqueeze\(1\)"),
        ((4, 3, 32, 32), r"built with in_channels=1, image_size=32\), but got \(4, 3, 32, 32\)"),
    ],
    ids=["28x28", "no-channel", "3-channels"],
)
def test_lenet5_names_the_input_shape_it_takes(shape, match):
    with pytest.raises(ValueError, match=match):
        LeNet5(10)(torch.rand(shape))
    with pytest.raises(ValueError, match=match):
        BayesianLeNet5(10).predict(torch.rand(shape), 2)


def test_bnn_labels_outside_the_classes_are_named():
    from ppmodels.infer import fit as train

    x, y = torch.rand(8, 1, 32, 32), torch.tensor([0, 1, 2, 3, 12, 5, 6, 7])
    with pytest.raises(ValueError, match=r"`y` holds label 12, outside \[0, 10\): the network has 10 outputs"):
        train(BayesianLeNet5(10), (x, y), epochs=1)


def test_neural_process_context_and_targets_of_other_functions():
    pair = NeuralProcess(hidden=8, latent_dim=2)
    with pytest.raises(ValueError, match=r"`x_context` has 4 functions \(shape \(4, 5, 1\)\) but `x_target` has 3"):
        pair.predict(torch.rand(4, 5, 1), torch.rand(4, 5, 1), torch.rand(3, 7, 1))
    with pytest.raises(TypeError, match=r"`x_context` must hold floating-point values, but got dtype torch.int64"):
        pair.predict(torch.ones(4, 5, 1, dtype=torch.long), torch.rand(4, 5, 1), torch.rand(4, 7, 1))
