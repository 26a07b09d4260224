"""fit as a small loop: callbacks and their hooks, exact resume for every guide kind, and the
estimator preconditions checked on the first step."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoDiagonalNormal, AutoNormal

from ppmodels.data import digits
from ppmodels.infer import Callback, EarlyStopping, KwargSchedule, TensorBoard, fit
from ppmodels.models import VAE
from ppmodels.nn import MLPDecoder, MLPEncoder

import user_programs as up


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def __getattribute__(self, name):
        if name.startswith("on_"):
            calls = object.__getattribute__(self, "calls")
            return lambda state: calls.append((name, state.epoch, state.step_in_epoch))
        return object.__getattribute__(self, name)


def small_vae():
    torch.manual_seed(0)
    return VAE(MLPEncoder((6,), 2, (8,)), MLPDecoder(2, (6,), (8,)), 2)


def test_hooks_run_in_order_with_the_state():
    rec = Recorder()
    fit(small_vae(), torch.rand(8, 6), epochs=2, batch_size=4, seed=0, callbacks=[rec])
    step = ["on_step_start", "on_gradients", "on_step_end"]
    expected = (
        [("on_fit_start", 0, 0)]
        + [("on_epoch_start", 0, 0)]
        + [(h, 0, i) for i in range(2) for h in step]
        + [("on_epoch_end", 0, 1), ("on_epoch_start", 1, 1)]
        + [(h, 1, i) for i in range(2) for h in step]
        + [("on_epoch_end", 1, 1), ("on_fit_end", 1, 1)]
    )
    assert rec.calls == expected


def test_callbacks_see_the_loss_the_optimizer_and_can_stop_mid_epoch():
    seen = []

    class StopAfterThree(Callback):
        def on_step_end(self, state):
            seen.append((state.step, state.loss_value, state.optimizer is not None, state.pair is pair))
            if state.step == 2:
                state.stop("three steps are enough")

    pair = small_vae()
    result = fit(pair, torch.rand(40, 6), epochs=5, batch_size=4, seed=0, callbacks=[StopAfterThree()])
    assert [s[0] for s in seen] == [0, 1, 2] and all(s[2] and s[3] for s in seen)
    assert result.num_steps == 3 and result.stopped == "three steps are enough"
    assert [s[1] for s in seen] == pytest.approx(result.losses)


def test_early_stopping_on_a_relative_elbo_tolerance():
    # full batch, a tiny model: the loss flattens within a few hundred steps
    result = fit(
        (up.schools_model, up.schools_guide),
        up.SCHOOLS,
        epochs=5000,
        lr=0.05,
        seed=0,
        callbacks=[EarlyStopping(rtol=1e-3, patience=20)],
    )
    assert result.epochs < 5000 and result.stopped.startswith("early stopping: train_loss improved by less than")
    best = min(result.train_loss[:-20])
    assert all(v > best - 1e-3 * abs(best) for v in result.train_loss[-20:])  # 20 epochs without improvement


def test_callback_arguments_are_validated():
    with pytest.raises(TypeError, match=r"`callbacks` must be a list of ppmodels.infer.Callback instances, but got"):
        fit(small_vae(), torch.rand(8, 6), callbacks=[lambda state: None])
    with pytest.raises(ValueError, match=r"`patience` must be a positive int, but got 0"):
        EarlyStopping(patience=0)
    with pytest.raises(ValueError, match=r"`monitor` must be one of \['train_loss', 'val_loss'\]"):
        EarlyStopping(monitor="loss")
    with pytest.raises(TypeError, match=r"`schedule` must be a callable step -> value"):
        KwargSchedule("beta", 0.5)
    with pytest.raises(ValueError, match=r"`progress` must be True, False, None or 'log'"):
        fit(small_vae(), torch.rand(8, 6), progress="yes")


def test_a_schedule_keyword_the_model_does_not_take_is_named():
    with pytest.raises(TypeError, match=r"passes the keyword argument 'beta' to the model, but its signature"):
        fit(small_vae(), torch.rand(8, 6), epochs=1, callbacks=[KwargSchedule("beta", lambda step: 1.0)])


def test_tensorboard_logs_the_losses(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = fit(
        small_vae(),
        torch.rand(16, 6),
        epochs=3,
        batch_size=8,
        val_data=torch.rand(8, 6),
        seed=0,
        callbacks=[TensorBoard(tmp_path)],
    )
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    steps = [e.value for e in events.Scalars("loss/step")]
    assert steps == pytest.approx(result.losses, rel=1e-6)
    assert [e.value for e in events.Scalars("loss/train")] == pytest.approx(result.train_loss, rel=1e-6)
    assert [e.value for e in events.Scalars("loss/val")] == pytest.approx(result.val_loss, rel=1e-6)


def test_progress_log_prints_a_line_per_epoch(capsys):
    fit(small_vae(), torch.rand(8, 6), epochs=3, batch_size=4, progress="log")
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(" loss ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]


# -- exact resume ---------------------------------------------------------------------------
def schools_run(epochs, **kwargs):
    return fit((up.schools_model, up.schools_guide), up.SCHOOLS, epochs=epochs, lr=0.02, seed=3, **kwargs)


def test_resume_of_a_classic_pyro_param_guide_is_exact(tmp_path):
    straight = schools_run(40)
    expected = up.store_snapshot()
    pyro.clear_param_store()
    schools_run(20, checkpoint=tmp_path / "ck.pt")
    pyro.clear_param_store()  # as in a fresh process
    resumed = schools_run(40, resume=tmp_path / "ck.pt")
    assert resumed.losses == straight.losses and resumed.train_loss == straight.train_loss
    actual = up.store_snapshot()
    assert all(torch.equal(actual[k], expected[k]) for k in expected)
    assert set(actual) == set(expected)


@pytest.mark.parametrize("guide_kind", [AutoDiagonalNormal, AutoNormal], ids=["AutoDiagonalNormal", "AutoNormal"])
def test_resume_of_an_autoguide_is_exact(tmp_path, guide_kind):
    x, y = up.rugged_data()

    def run(epochs, **kwargs):
        torch.manual_seed(1)
        model = up.BayesianRegression(3, 1)
        guide = guide_kind(model)
        result = fit((model, guide), (x, y), epochs=epochs, lr=0.03, seed=2, **kwargs)
        return result, [p.detach().clone() for p in guide.parameters()]

    straight, expected = run(30)
    pyro.clear_param_store()
    run(12, checkpoint=tmp_path / "ck.pt")
    pyro.clear_param_store()
    resumed, actual = run(30, resume=tmp_path / "ck.pt")
    assert resumed.losses == straight.losses
    assert len(actual) == len(expected) > 0 and all(torch.equal(a, b) for a, b in zip(actual, expected))


def test_resume_keeps_the_callbacks_state_and_a_finished_early_stop(tmp_path):
    def run(epochs, **kwargs):
        return schools_run(epochs, callbacks=[EarlyStopping(rtol=1e-3, patience=20)], **kwargs)

    straight = run(3000)
    assert straight.stopped is not None
    pyro.clear_param_store()
    run(straight.epochs - 10, checkpoint=tmp_path / "ck.pt")  # before the stop, mid-patience
    pyro.clear_param_store()
    resumed = run(3000, resume=tmp_path / "ck.pt", checkpoint=tmp_path / "ck.pt")
    assert resumed.losses == straight.losses and resumed.stopped == straight.stopped
    again = run(3000, resume=tmp_path / "ck.pt")  # a run that had stopped stays stopped
    assert again.losses == straight.losses


def test_resume_refuses_to_change_the_run(tmp_path):
    schools_run(5, checkpoint=tmp_path / "ck.pt")
    with pytest.raises(ValueError, match=r"with other settings would not continue the same run \(lr: 0.02 in the "):
        fit((up.schools_model, up.schools_guide), up.SCHOOLS, epochs=10, lr=0.1, resume=tmp_path / "ck.pt")
    with pytest.raises(ValueError, match=r"`epochs=3` is fewer than the 5 epochs the checkpoint .* has already done"):
        schools_run(3, resume=tmp_path / "ck.pt")


def test_resume_names_a_parameter_the_guide_no_longer_declares(tmp_path):
    schools_run(2, checkpoint=tmp_path / "ck.pt")
    pyro.clear_param_store()

    def other_guide(data):
        pyro.sample("eta", dist.Normal(pyro.param("m", torch.zeros(8)), 1.0).to_event(1))

    def other_model(data):
        pyro.sample("eta", dist.Normal(torch.zeros(8), 1.0).to_event(1))

    with pytest.raises(ValueError, match=r"holds the parameter 'loc_eta', which the guide and model no longer"):
        fit((other_model, other_guide), up.SCHOOLS, epochs=4, lr=0.02, resume=tmp_path / "ck.pt")


# -- estimator preconditions ------------------------------------------------------------------
def test_iwae_refuses_a_guide_it_cannot_differentiate():
    x = torch.randn(20)

    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.tensor(0.0))
        pyro.sample("mu", dist.Normal(loc, 1.0).has_rsample_(False))

    for elbo in ("iwae", "renyi"):
        with pytest.raises(
            ValueError, match=rf"'{elbo}' differentiates the importance weights .* site 'mu' \(Normal\) cannot be "
        ):
            fit((model, guide), x, elbo=elbo, epochs=2)
        assert float(pyro.param("loc").detach()) == 0.0


def test_meanfield_names_an_infinite_analytic_kl():
    x = torch.rand(10)

    def model(x):
        p = pyro.sample("p", dist.Uniform(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(p, 0.3), obs=x)

    def guide(x):
        pyro.sample("p", dist.Normal(pyro.param("loc", torch.tensor(0.5)), 0.1))

    with pytest.raises(
        ValueError,
        match=r"'meanfield' uses the analytic KL\(q \|\| p\) at site 'p', and it is infinite: the guide's Normal has "
        r"support Real, wider than the prior's Uniform support Interval",
    ):
        fit((model, guide), x, elbo="meanfield", epochs=2)


@pytest.mark.parametrize("elbo", ["trace", "meanfield", "iwae"])
def test_an_unguided_discrete_site_is_named_with_the_fix(elbo):
    data = torch.tensor([0.0, 1.0, 10.0, 11.0])

    def model(data):
        locs = pyro.sample("locs", dist.Normal(0.0, 10.0).expand([2]).to_event(1))
        with pyro.plate("data", len(data)):
            assignment = pyro.sample("assignment", dist.Categorical(torch.ones(2) / 2))
            pyro.sample("obs", dist.Normal(locs[assignment], 1.0), obs=data)

    guide = AutoNormal(pyro.poutine.block(model, expose=["locs"]))
    with pytest.raises(
        ValueError,
        match=rf"the model's discrete site 'assignment' \(Categorical\) is not sampled by the guide, so '{elbo}' "
        r"would draw it from the prior .* Use elbo='enum'",
    ):
        fit((model, guide), data, elbo=elbo, epochs=2)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_jit_trains_a_pair_whose_networks_are_registered_with_pyro_module():
    x = digits().train_x[:256].reshape(256, 64)
    vae = up.PyroVAE()
    before = [p.detach().clone() for p in vae.parameters()]
    result = fit(vae, x, epochs=20, lr=0.01, elbo="jit-trace", seed=0)  # full batch: 20 steps
    assert result.train_loss[-1] < result.train_loss[0] - 5
    assert all(not torch.equal(a, b) for a, b in zip(before, vae.parameters()))
