"""Users' own Pyro programs through fit, with its defaults, against plain Pyro.

Each program is written the way Pyro's examples and tutorials write it (see
``user_programs.py``). "Agrees with plain Pyro" means: the same seed, so the same draws,
and the loss at every step within ``PYRO_LOSS_RTOL`` of ``pyro.infer.SVI.step``'s, the
parameters within ``PYRO_PARAM_ATOL`` at the end (fit's one torch Adam over all parameters
and pyro.optim's Adam per parameter round differently in the last bits).
"""

import math
from types import SimpleNamespace

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoDiagonalNormal
from torch.utils.data import DataLoader, TensorDataset

from ppmodels.data import digits
from ppmodels.infer import ClipParams, KwargSchedule, fit, linear_schedule

import user_programs as up
from tolerances import MEANFIELD_MEAN_SDS, MEANFIELD_SD_RTOL, PYRO_LOSS_RTOL, PYRO_PARAM_ATOL


def assert_store_close(expected, atol=PYRO_PARAM_ATOL):
    actual = pyro.get_param_store()
    assert set(actual.keys()) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(actual[name].detach(), value, rtol=0, atol=atol, msg=name)


def assert_losses_close(actual, expected):
    torch.testing.assert_close(
        torch.tensor(actual, dtype=torch.float64),
        torch.tensor(expected, dtype=torch.float64),
        rtol=PYRO_LOSS_RTOL,
        atol=0,
    )


# -- full batch: the whole data set, in its order, at every step ----------------------------
def test_eight_schools_with_fits_defaults_is_pyros_svi():
    steps = 400
    expected = up.svi_losses(up.schools_model, up.schools_guide, (up.SCHOOLS,), steps, lr=0.01, seed=0)
    params = up.store_snapshot()
    pyro.clear_param_store()
    result = fit((up.schools_model, up.schools_guide), up.SCHOOLS, epochs=steps, lr=0.01, seed=0)
    assert result.num_steps == steps and len(result.losses) == steps
    assert_losses_close(result.losses, expected)
    assert_store_close(params)
    assert result.train_loss[-1] == pytest.approx(result.losses[-1] / up.J)  # nats per school


def test_eight_schools_refuses_shuffling_its_per_school_parameters():
    with pytest.raises(
        ValueError,
        match=r"`shuffle=True` reorders the data .* the parameter 'loc_eta' \(shape \(8,\)\) has a dimension of "
        r"size N=8, the data set's size",
    ):
        fit((up.schools_model, up.schools_guide), up.SCHOOLS, epochs=5, shuffle=True, seed=0)


def test_per_school_parameters_do_not_move_when_refused():
    pyro.set_rng_seed(0)
    up.schools_guide(up.SCHOOLS)  # the parameters exist before fit
    before = up.store_snapshot()
    with pytest.raises(ValueError, match="`shuffle=True`"):
        fit((up.schools_model, up.schools_guide), up.SCHOOLS, epochs=5, shuffle=True)
    assert_store_close(before, atol=0)


def make_regression(seed=1):
    torch.manual_seed(seed)
    model = up.BayesianRegression(3, 1)
    return model, AutoDiagonalNormal(model)


def test_bayesian_regression_pyromodule_autoguide_with_defaults_is_pyros_svi():
    x, y = up.rugged_data()
    steps = 600
    model, guide = make_regression()
    expected = up.svi_losses(model, guide, (x, y), steps, lr=0.03, seed=2)
    expected_loc = guide.loc.detach().clone()
    pyro.clear_param_store()
    model, guide = make_regression()
    result = fit((model, guide), (x, y), epochs=steps, lr=0.03, seed=2)
    assert_losses_close(result.losses, expected)
    torch.testing.assert_close(guide.loc.detach(), expected_loc, rtol=0, atol=PYRO_PARAM_ATOL)
    # the vague prior's posterior mean is near least squares (posterior sd of the bias ~0.15)
    ols = torch.linalg.lstsq(torch.cat([x, torch.ones(len(x), 1)], 1), y.unsqueeze(-1)).solution.squeeze()
    assert float(guide.median()["linear.bias"]) == pytest.approx(float(ols[-1]), abs=0.15)


def test_minibatching_a_model_that_does_not_scale_is_refused_before_training():
    x, y = up.rugged_data()
    model, guide = make_regression()
    with pytest.raises(
        ValueError,
        match=r"`batch_size=128`: fit passes mini-batches of B=128 of the N=170 samples, but the observed site "
        r"'obs' is in plate 'data' of size 128 \(subsample 128\), so Pyro does not scale its log-likelihood by "
        r"N/B = 170/128, while the model has sites outside the batch's plate \('sigma', 'linear.weight', "
        r"'linear.bias'\).*pyro.plate\('data', size=170, subsample=subsample\)",
    ):
        fit((model, guide), (x, y), batch_size=128, epochs=3, seed=0)


def test_the_coin_list_of_zero_d_tensors_and_a_flag_reach_the_model_unchanged():
    steps = 300
    optim = {"lr": 0.0005, "betas": (0.90, 0.999)}
    for args in [(up.COIN,), (up.COIN, False)]:
        expected = up.svi_losses(up.coin_model, up.coin_guide, args, steps, seed=0, **optim)
        params = up.store_snapshot()
        pyro.clear_param_store()
        data = up.COIN if len(args) == 1 else args  # the list itself, or the argument tuple
        result = fit((up.coin_model, up.coin_guide), data, epochs=steps, optimizer=pyro.optim.Adam(dict(optim)), seed=0)
        assert_losses_close(result.losses, expected)
        assert_store_close(params)
        assert result.num_data == 10
        pyro.clear_param_store()


def test_function_pair_forms_are_equivalent():
    steps = 20
    results = []
    for form in ("tuple", "keywords", "namespace"):
        pyro.clear_param_store()
        if form == "tuple":
            r = fit((up.schools_model, up.schools_guide), up.SCHOOLS, epochs=steps, seed=4)
        elif form == "keywords":
            r = fit(model=up.schools_model, guide=up.schools_guide, data=up.SCHOOLS, epochs=steps, seed=4)
        else:
            pair = SimpleNamespace(model=up.schools_model, guide=up.schools_guide)
            r = fit(pair, up.SCHOOLS, epochs=steps, seed=4)
        results.append(r.losses)
    assert results[0] == results[1] == results[2]


# -- mini-batches that scale --------------------------------------------------------------
def test_minibatches_from_fit_with_subsample_indices_are_pyros_svi_on_the_same_batches():
    x, y = up.regression_data()
    epochs, batch = 3, 50
    generator = torch.Generator().manual_seed(0)  # fit's shuffling: one permutation per epoch
    order = [torch.randperm(len(x), generator=generator) for _ in range(epochs)]
    batches = [perm[i : i + batch] for perm in order for i in range(0, len(x), batch)]
    expected = up.svi_losses(
        up.subsampled_model,
        up.meanfield_guide,
        (),
        len(batches),
        lr=0.02,
        seed=0,
        kwargs_at=lambda step: {"x": x[batches[step]], "y": y[batches[step]], "subsample": batches[step]},
    )
    pyro.clear_param_store()
    result = fit(
        (up.subsampled_model, up.meanfield_guide),
        (x, y),
        batch_size=batch,
        shuffle=True,
        epochs=epochs,
        lr=0.02,
        seed=0,
    )
    assert_losses_close(result.losses, expected)
    assert result.train_loss[0] == pytest.approx(sum(expected[:8]) / 8 / len(x), rel=1e-4)  # scaled: per sample


@pytest.mark.slow
def test_minibatches_from_fit_with_subsample_indices_reach_the_exact_posterior():
    x, y = up.regression_data()
    mean, _, precision = up.exact_posterior(x, y)
    fit(
        (up.subsampled_model, up.meanfield_guide),
        (x, y),
        batch_size=50,
        shuffle=True,
        epochs=300,
        lr=0.05,
        seed=0,
        num_particles=16,
        vectorize_particles=True,
        scheduler=lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, 0.985),
    )
    sd = precision.diagonal().rsqrt()  # the mean-field optimum's sds for a Gaussian posterior
    torch.testing.assert_close(pyro.param("w_loc").detach(), mean, rtol=0, atol=MEANFIELD_MEAN_SDS * float(sd.min()))
    torch.testing.assert_close(pyro.param("w_scale").detach(), sd, rtol=MEANFIELD_SD_RTOL, atol=0)


def test_subsample_indices_match_per_datum_parameters_under_shuffling():
    """Per-datum Normal-Normal: z_i ~ N(0, 1), x_i ~ N(z_i, 0.5); the exact q(z_i) is
    N(0.8 x_i, sqrt(0.2)). Indices that did not match the batch would pair each parameter
    with other data (errors up to 3 here, against a tolerance of 0.1, a fifth of a posterior sd)."""
    n = 20
    x = torch.linspace(-2, 2, n)

    def model(x, subsample=None):
        with pyro.plate("data", size=n, subsample=subsample):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 0.5), obs=x)

    def guide(x, subsample=None):
        loc = pyro.param("loc", torch.zeros(n))
        scale = pyro.param("scale", torch.ones(n), constraint=dist.constraints.positive)
        with pyro.plate("data", size=n, subsample=subsample) as idx:
            pyro.sample("z", dist.Normal(loc[idx], scale[idx]))

    fit(
        (model, guide),
        x,
        batch_size=5,
        shuffle=True,
        epochs=150,
        lr=0.05,
        seed=0,
        elbo="meanfield",
        num_particles=16,
        vectorize_particles=True,
        scheduler=lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, 0.98),
    )
    torch.testing.assert_close(pyro.param("loc").detach(), 0.8 * x, rtol=0, atol=0.1)
    torch.testing.assert_close(pyro.param("scale").detach(), torch.full((n,), math.sqrt(0.2)), rtol=0.1, atol=0)


def test_a_model_that_subsamples_itself_gets_the_whole_data_and_agrees_with_pyro():
    x, y = up.regression_data()
    expected = up.svi_losses(up.subsampling_model, up.subsampling_guide, (x, y), 50, lr=0.02, seed=3)
    pyro.clear_param_store()
    result = fit((up.subsampling_model, up.subsampling_guide), (x, y), epochs=50, lr=0.02, seed=3)
    assert_losses_close(result.losses, expected)


# -- vae.py: networks registered with pyro.module, a DataLoader, the JIT ---------------------
@pytest.fixture(scope="module")
def pixels():
    return digits().train_x[:256].reshape(256, 64)


@pytest.mark.parametrize("jit", [False, True], ids=["trace", "jit-trace"])
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore:`torch.jit.trace` is deprecated")
def test_vae_py_through_a_dataloader_is_pyros_svi(pixels, jit):
    loader = DataLoader(TensorDataset(pixels), batch_size=64)

    def pyro_loop():
        pyro.clear_param_store()
        torch.manual_seed(0)
        vae = up.PyroVAE()
        pyro.set_rng_seed(1)
        loss = pyro.infer.JitTrace_ELBO() if jit else pyro.infer.Trace_ELBO()
        svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), loss=loss)
        return [svi.step(xb) for _ in range(3) for (xb,) in loader], vae

    expected, by_pyro = pyro_loop()
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = up.PyroVAE()
    result = fit(vae, loader, epochs=3, elbo="jit-trace" if jit else "trace", seed=1)
    assert_losses_close(result.losses, expected)
    for a, b in zip(vae.parameters(), by_pyro.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=PYRO_PARAM_ATOL)
    # a local-latent model that does not scale its batches: each batch loss counts per image
    assert result.train_loss[-1] == pytest.approx(sum(result.losses[-4:]) / 256)


# -- callbacks that Pyro's examples write by hand ---------------------------------------------
def test_sparse_gamma_def_with_clipping_is_the_examples_loop():
    x = up.gamma_counts()
    steps = 60
    pyro.set_rng_seed(0)
    model = up.SparseGammaDEF()
    expected = up.svi_losses(
        model.model,
        model.guide,
        (x,),
        steps,
        lr=0.01,
        seed=0,
        after_step=up.clip_gamma_params,
        loss=pyro.infer.TraceMeanField_ELBO(),
    )
    params = up.store_snapshot()
    pyro.clear_param_store()
    result = fit(
        up.SparseGammaDEF(),
        x,
        epochs=steps,
        elbo="meanfield",
        lr=0.01,
        seed=0,
        callbacks=[ClipParams({"alpha_*": (-2.5, None), "mean_*": (-4.5, None)})],
    )
    assert_losses_close(result.losses, expected)
    assert_store_close(params)
    assert min(float(v.detach().min()) for k, v in pyro.get_param_store().items() if k.startswith("mean_")) >= -4.5


def test_kl_annealing_keyword_is_the_examples_loop():
    x = torch.linspace(-1, 1, 16)
    schedule = linear_schedule(0.2, 1.0, 30)
    expected = up.svi_losses(
        up.annealed_model,
        up.annealed_guide,
        (x,),
        40,
        lr=0.05,
        seed=0,
        kwargs_at=lambda step: {"annealing_factor": schedule(step)},
    )
    pyro.clear_param_store()
    result = fit(
        (up.annealed_model, up.annealed_guide),
        x,
        epochs=40,
        lr=0.05,
        seed=0,
        callbacks=[KwargSchedule("annealing_factor", schedule)],
    )
    assert_losses_close(result.losses, expected)


def test_clip_params_names_what_exists_when_nothing_matches():
    with pytest.raises(ValueError, match=r"ClipParams: no trained parameter matches \['nothing_\*'\]; the trained "):
        fit(
            (up.schools_model, up.schools_guide),
            up.SCHOOLS,
            epochs=2,
            callbacks=[ClipParams({"nothing_*": (0, 1)})],
        )


# -- arguments --------------------------------------------------------------------------------
def test_dict_data_are_keyword_arguments_and_unknown_keys_are_named():
    x, y = up.regression_data(n=60)

    def model(x, y=None):
        w = pyro.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        with pyro.plate("data", len(x)):
            pyro.sample("y", dist.Normal(x @ w, 0.5), obs=y)

    guide = AutoDiagonalNormal(model)
    result = fit((model, guide), {"x": x, "y": y}, epochs=5, seed=0)
    assert len(result.losses) == 5
    with pytest.raises(
        TypeError,
        match=r"passes the keyword argument 'labels' to the model, but its signature .*model\(x, y=None\) does not "
        r"take it",
    ):
        fit((model, guide), {"x": x, "labels": y}, epochs=1)


def test_mini_batches_of_arguments_that_cannot_be_sliced_are_refused():
    x, y = up.regression_data(n=60)
    with pytest.raises(ValueError, match=r"`batch_size`: argument 1 of `data` is list, which fit cannot split"):
        fit((up.coin_model, up.coin_guide), (x, [1, 2, 3]), batch_size=10)
    with pytest.raises(ValueError, match=r"none of the arguments in `data` is a tensor with a first dimension"):
        fit((up.coin_model, up.coin_guide), up.COIN, batch_size=4)


# -- the deep Markov model: pre-made batches with a PackedSequence, KL annealing -------------
def test_dmm_minibatches_with_a_packed_sequence_and_annealing_are_pyros_svi():
    from ppmodels.infer import elbo, log_likelihood

    batches = up.dmm_batches()
    schedule = linear_schedule(0.2, 1.0, 6)

    def pyro_loop():
        pyro.clear_param_store()
        torch.manual_seed(0)
        dmm = up.MiniDMM()
        pyro.set_rng_seed(5)
        svi = pyro.infer.SVI(dmm.model, dmm.guide, pyro.optim.Adam({"lr": 0.01}), loss=pyro.infer.Trace_ELBO())
        steps = [(b, i) for i in range(3) for b in batches]
        return [svi.step(*b, annealing_factor=schedule(k)) for k, (b, _) in enumerate(steps)]

    expected = pyro_loop()
    pyro.clear_param_store()
    torch.manual_seed(0)
    dmm = up.MiniDMM()
    result = fit(dmm, batches, epochs=3, lr=0.01, seed=5, callbacks=[KwargSchedule("annealing_factor", schedule)])
    assert_losses_close(result.losses, expected)
    # evaluation with the same argument forms: the PackedSequence cannot be repeated K times
    # along the batch, so the K draws are taken one pass at a time
    x, packed, mask = batches[0]
    with_tensor = elbo(dmm, (x, x.flip(1), mask), seed=0, plate="z_minibatch")
    with_packed = elbo(dmm, (x, packed, mask), seed=0, plate="z_minibatch")
    torch.testing.assert_close(with_packed, with_tensor)
    ll = log_likelihood(dmm, (x, packed, mask), num_samples=50, seed=0, plate="z_minibatch")
    assert ll.shape == (4,) and bool(torch.isfinite(ll).all())
    assert float(ll.mean()) > float(elbo(dmm, (x, packed, mask), num_samples=50, seed=0, plate="z_minibatch").mean())
