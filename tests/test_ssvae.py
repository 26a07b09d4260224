"""The semi-supervised VAE (M2): its scaling, its ELBO against TraceEnum_ELBO's, the batches
that mix labelled and unlabelled data, and what it learns from few labels."""

import math

import pyro
import pytest
import torch
from pyro import poutine

from ppmodels.data import SemiSupervisedBatches, digits, split_labelled
from ppmodels.infer import fit, get_elbo
from ppmodels.models import SSVAE
from ppmodels.nn import MLPClassifier, MLPDecoder, MLPEncoder

from tolerances import MC_SIGMAS

SHAPE = (1, 8, 8)


def small(aux=0.0, latent=3, hidden=(16,)):
    torch.manual_seed(0)
    return SSVAE(
        MLPClassifier(SHAPE, 10, hidden),
        MLPEncoder(SHAPE, latent, hidden, cond_dim=10),
        MLPDecoder(latent, SHAPE, hidden, cond_dim=10),
        latent,
        10,
        aux_weight=aux,
    )


@pytest.fixture(scope="module")
def data():
    return digits()


def test_each_part_is_scaled_to_its_whole_set(data):
    m = small(aux=2.0)
    x, y = data.train_x[:4], data.train_y[:4]
    trace = poutine.trace(m.model).get_trace(x, y, x_unlabelled=data.train_x[4:10], sizes=(40, 600))
    assert trace.nodes["x_l"]["scale"] == pytest.approx(40 / 4)
    assert trace.nodes["x_u"]["scale"] == pytest.approx(600 / 6)
    assert trace.nodes["y_aux"]["scale"] == pytest.approx(2.0 * 40 / 4)
    assert trace.nodes["y_l"]["is_observed"] and not trace.nodes["y_u"]["is_observed"]


def test_the_per_sample_elbo_is_trace_enums_in_expectation(data):
    """Unlabelled: sum over y of q(y|x) [log p(y) + ELBO(x | y)] + H(q(y|x)); labelled: the
    ELBO given y. TraceEnum_ELBO computes the same sum; both draw z, so compare means."""
    m = small()
    x, y = data.train_x[:8], data.train_y[:8]
    elbo = get_elbo("enum", max_plate_nesting=1)
    elbo.strict_enumeration_warning = False
    for labels in (None, y):
        reps = 300
        ours = torch.tensor([float(m.elbo(x, labels).sum()) for _ in range(reps)])
        pyros = torch.tensor([-elbo.loss(m.model, m.guide, x, labels) for _ in range(reps)])
        se = math.sqrt(ours.var() / reps + pyros.var() / reps)
        assert abs(float(ours.mean() - pyros.mean())) < MC_SIGMAS * se, (labels is None, ours.mean(), pyros.mean())


def test_an_estimator_that_does_not_enumerate_is_refused(data):
    m = small()
    batches = SemiSupervisedBatches((data.train_x[:20], data.train_y[:20]), data.train_x[20:100], 40)
    with pytest.raises(ValueError, match=r"the guide marks its site 'y_u' \(OneHotCategorical\) for enumeration"):
        fit(m, batches, elbo="trace", epochs=1)
    with pytest.raises(ValueError, match=r"`aux_weight` must be a number >= 0, but got -1"):
        small(aux=-1)
    with pytest.raises(ValueError, match=r"`y` holds label 12, outside \[0, 10\)"):
        m.model(data.train_x[:2], torch.tensor([1, 12]))


def test_semi_supervised_batches_cover_the_unlabelled_data_once_per_epoch(data):
    x_l, y_l, x_u = split_labelled(data.train_x, data.train_y, 25, 10, seed=0)
    assert torch.bincount(y_l, minlength=10).tolist() == [3] * 5 + [2] * 5
    assert len(x_u) == len(data.train_x) - 25
    batches = SemiSupervisedBatches((x_l, y_l), x_u, batch_size=128, labelled_batch_size=10, seed=0)
    seen = torch.cat([b["x_unlabelled"] for b in batches])
    assert len(seen) == len(x_u) and len(batches) == math.ceil(len(x_u) / 128)
    assert all(b["sizes"] == (25, len(x_u)) and len(b["y"]) == 10 for b in batches)
    with pytest.raises(ValueError, match=r"`num_labels` must be at least the number of classes \(10\)"):
        split_labelled(data.train_x, data.train_y, 5, 10)


def test_fit_reports_losses_per_training_image(data):
    x_l, y_l, x_u = split_labelled(data.train_x[:300], data.train_y[:300], 30, 10, seed=0)
    m = small()
    result = fit(m, SemiSupervisedBatches((x_l, y_l), x_u, 64, seed=0), elbo="enum", epochs=2, seed=0)
    assert result.num_data == 300 and m.num_data == 300
    assert result.train_loss[-1] < result.train_loss[0]
    assert 20 < result.train_loss[-1] < 60  # nats per 8x8 image: the same scale as the VAE's


@pytest.mark.slow
def test_m2_with_100_labels_classifies_far_above_chance_and_the_aux_loss_helps(data):
    x_l, y_l, x_u = split_labelled(data.train_x, data.train_y, 100, 10, seed=0)
    accuracy = {}
    for aux in (0.0, 144.0):
        m = small(aux=aux, latent=8, hidden=(256,))
        fit(m, SemiSupervisedBatches((x_l, y_l), x_u, 128, seed=0), elbo="enum", epochs=40, lr=3e-3, seed=0)
        accuracy[aux] = float((m.classify(data.test_x) == data.test_y).float().mean())
        pyro.clear_param_store()
    assert accuracy[0.0] > 0.75 and accuracy[144.0] > 0.85
