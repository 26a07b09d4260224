"""A user's own program, second round: more of Pyro's programs through fit with its defaults,
each against the program's own loop (same seed, so the same draws).

- amortised LDA (examples/lda.py): a guide bound to its network with functools.partial, the
  network registered with pyro.module, data of shape (words, documents), positional data
  and keyword arguments together, TraceEnum_ELBO(max_plate_nesting=2), ClippedAdam;
- hmm.py's models 1 and 5 (the second with a network registered with pyro.module), an
  AutoDelta guide over the probabilities, a namespace of options by keyword, plain and JIT;
- the GP tutorial's three ``pyro.contrib.gp`` models, whose model and guide take no
  arguments, one of which (VariationalSparseGP) has a ``num_data`` of its own.
"""

import functools
from argparse import Namespace

import pyro
import pyro.contrib.gp as gp
import pytest
import torch
from pyro.infer import SVI, JitTraceEnum_ELBO, TraceEnum_ELBO
from pyro.optim import Adam, ClippedAdam

from ppmodels.infer import fit

import user_programs as up
from test_user_programs import assert_losses_close, assert_store_close
from tolerances import PYRO_PARAM_ATOL

LDA = Namespace(num_topics=3, num_words=20, num_docs=40, num_words_per_doc=8, hidden=(16,))
LDA_STEPS, LDA_BATCH = 30, 10


def lda_pyro_loop(data, steps=LDA_STEPS, seed=0):
    """lda.py's loop: SVI with TraceEnum_ELBO(max_plate_nesting=2) and ClippedAdam."""
    pyro.clear_param_store()
    predictor = up.lda_predictor(LDA)
    guide = functools.partial(up.lda_guide, predictor)
    pyro.set_rng_seed(seed)
    svi = SVI(up.lda_model, guide, ClippedAdam({"lr": 0.01}), TraceEnum_ELBO(max_plate_nesting=2))
    losses = [svi.step(data, args=LDA, batch_size=LDA_BATCH) for _ in range(steps)]
    return losses, predictor


def lda_fit(data, steps=LDA_STEPS, seed=0, predictor=None, all_by_keyword=False):
    """lda.py through fit: the data by position and the options by keyword, as its loop passes
    them; or (``all_by_keyword``) every argument by keyword in one dict, with the estimator as
    an instance (a form fit has taken from the start)."""
    predictor = predictor if predictor is not None else up.lda_predictor(LDA)
    guide = functools.partial(up.lda_guide, predictor)
    if all_by_keyword:
        data, options = {"data": data, "args": LDA, "batch_size": LDA_BATCH}, {}
        elbo = TraceEnum_ELBO(max_plate_nesting=2)
    else:
        options = {"kwargs": {"args": LDA, "batch_size": LDA_BATCH}}
        elbo = ("enum", {"max_plate_nesting": 2})
    result = fit(
        (up.lda_model, guide), data, elbo=elbo, optimizer=ClippedAdam({"lr": 0.01}), epochs=steps, seed=seed, **options
    )
    return result, predictor


def test_lda_with_positional_data_and_keyword_options_is_pyros_svi():
    data = up.lda_data(LDA)
    expected, pyro_net = lda_pyro_loop(data)
    params = up.store_snapshot()
    pyro.clear_param_store()
    result, net = lda_fit(data)
    assert_losses_close(result.losses, expected)
    assert_store_close(params)
    for a, b in zip(net.parameters(), pyro_net.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=PYRO_PARAM_ATOL)


def test_lda_losses_are_per_document_not_per_word():
    data = up.lda_data(LDA)  # (8 words, 40 documents): the first dimension is not the data set
    result, _ = lda_fit(data, steps=3, all_by_keyword=True)
    assert result.train_loss[-1] == pytest.approx(result.losses[-1] / LDA.num_docs)
    assert result.per == "datum of plate 'documents' (40)"


def test_a_pyro_module_network_keeps_no_gradient_and_two_fits_are_the_same_run():
    data = up.lda_data(LDA)
    first, net = lda_fit(data, steps=5, all_by_keyword=True)
    assert all(p.grad is None for p in net.parameters()), "fit left gradients on the pyro.module network"
    assert all(pyro.param(n).unconstrained().grad is None for n in pyro.get_param_store())
    pyro.clear_param_store()
    second, _ = lda_fit(data, steps=5, predictor=up.lda_predictor(LDA), all_by_keyword=True)
    assert second.losses == first.losses


def test_a_second_fit_on_a_network_with_stale_gradients_is_unaffected():
    """Gradients left on the network by the user's own work before fit do not reach fit's first step."""
    data = up.lda_data(LDA)
    clean, _ = lda_fit(data, steps=4, all_by_keyword=True)
    pyro.clear_param_store()
    net = up.lda_predictor(LDA)
    for p in net.parameters():
        p.grad = torch.full_like(p, 10.0)
    stale, _ = lda_fit(data, steps=4, predictor=net, all_by_keyword=True)
    assert stale.losses == clean.losses


def test_fit_then_svi_step_is_svi_step_from_the_same_state():
    data = up.lda_data(LDA)
    _, net = lda_fit(data, steps=5, all_by_keyword=True)
    guide = functools.partial(up.lda_guide, net)
    store = pyro.get_param_store()
    saved = {k: store[k].unconstrained().detach().clone() for k in store}  # net's weights among them

    def one_step():
        pyro.set_rng_seed(7)
        svi = SVI(up.lda_model, guide, ClippedAdam({"lr": 0.01}), TraceEnum_ELBO(max_plate_nesting=2))
        loss = svi.step(data, args=LDA, batch_size=LDA_BATCH)
        return loss, {k: store[k].unconstrained().detach().clone() for k in store}

    after_fit = one_step()
    with torch.no_grad():  # the same tensors, back to the same values, with no gradient: SVI's own state
        for k, value in saved.items():
            leaf = store[k].unconstrained()
            leaf.copy_(value)
            leaf.grad = None
    alone = one_step()
    assert after_fit[0] == alone[0]
    for k in saved:
        torch.testing.assert_close(after_fit[1][k], alone[1][k], rtol=0, atol=0, msg=k)


# -- hmm.py's models --------------------------------------------------------------------------
HMM_STEPS = 15


def hmm_options(jit=False):
    return Namespace(hidden_dim=3, jit=jit)


def hmm_pyro_loop(model, data, args, jit=False, seed=0):
    pyro.clear_param_store()
    guide = up.hmm_guide(model)
    pyro.set_rng_seed(seed)
    elbo = (JitTraceEnum_ELBO if jit else TraceEnum_ELBO)(max_plate_nesting=2)
    svi = SVI(model, guide, Adam({"lr": 0.05}), elbo)
    return [svi.step(*data, args=args, batch_size=3) for _ in range(HMM_STEPS)]


def hmm_fit(model, data, args, jit=False, seed=0):
    return fit(
        (model, up.hmm_guide(model)),
        data,
        kwargs={"args": args, "batch_size": 3},
        elbo=("jit-enum" if jit else "enum", {"max_plate_nesting": 2}),
        optimizer=Adam({"lr": 0.05}),
        epochs=HMM_STEPS,
        seed=seed,
    )


@pytest.mark.parametrize("jit", [False, True], ids=["enum", "jit-enum"])
@pytest.mark.parametrize("which", ["model_1", "model_5"])
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore:`torch.jit.trace` is deprecated")
def test_hmm_models_with_tensors_by_position_and_options_by_keyword_are_pyros_svi(which, jit):
    data = up.hmm_sequences()
    args = hmm_options(jit)

    def model():
        if which == "model_1":
            return up.hmm_model_1, None
        torch.manual_seed(3)
        net = up.TonesNet(args.hidden_dim, data[0].shape[-1])
        return up.make_hmm_model_5(net), net

    loop_model, loop_net = model()
    expected = hmm_pyro_loop(loop_model, data, args, jit=jit)
    params = up.store_snapshot()
    pyro.clear_param_store()
    fit_model, fit_net = model()
    result = hmm_fit(fit_model, data, args, jit=jit)
    assert_losses_close(result.losses, expected)
    assert_store_close(params)
    assert result.per == "datum of plate 'sequences' (6)"
    if fit_net is not None:
        assert all(p.grad is None for p in fit_net.parameters())


def test_jit_with_a_namespace_passed_by_position_names_the_argument():
    data = up.hmm_sequences()
    model = up.hmm_model_1
    with pytest.raises(ValueError) as info:
        fit((model, up.hmm_guide(model)), (*data, hmm_options(True)), elbo=("jit-enum", {"max_plate_nesting": 2}))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        "elbo='jit-enum' (Pyro's JIT) takes tensors as positional arguments, but argument 2 ('args') of the model "
        "is a Namespace: pass it by keyword, fit(..., kwargs={...})"
    )


def test_an_estimator_name_carries_its_options_as_pyro_would_build_it():
    """enum by name with max_plate_nesting is the program's TraceEnum_ELBO(max_plate_nesting=2):
    no guess drawing random numbers, so the runs agree from the first step."""
    data = up.hmm_sequences()
    args = hmm_options()
    expected = hmm_pyro_loop(up.hmm_model_1, data, args)
    pyro.clear_param_store()
    result = hmm_fit(up.hmm_model_1, data, args)
    assert result.losses == pytest.approx(expected, rel=1e-5)
    assert result.estimator == "enum"


# -- the GP tutorial's pyro.contrib.gp models -------------------------------------------------
def gp_data(n=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 5 * torch.rand(n, generator=g)
    y = 0.5 * torch.sin(3 * x) + 0.2 * torch.randn(n, generator=g)
    return x, y


def make_gp(kind):
    x, y = gp_data()
    kernel = gp.kernels.RBF(input_dim=1, variance=torch.tensor(1.0), lengthscale=torch.tensor(0.5))
    if kind == "GPRegression":
        return gp.models.GPRegression(x, y, kernel, noise=torch.tensor(0.1))
    xu = torch.linspace(0.0, 5.0, 6)
    if kind == "SparseGPRegression":
        return gp.models.SparseGPRegression(x, y, kernel, Xu=xu, noise=torch.tensor(0.1), approx="VFE")
    return gp.models.VariationalSparseGP(x, y, kernel, Xu=xu, likelihood=gp.likelihoods.Gaussian(), num_data=100)


def gp_tutorial_loop(module, steps, lr, seed=0):
    """The tutorial's loop: torch Adam over the module's parameters and Trace_ELBO's
    differentiable loss of model and guide, which take no arguments."""
    pyro.set_rng_seed(seed)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    loss_fn = pyro.infer.Trace_ELBO().differentiable_loss
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(module.model, module.guide)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("kind", ["GPRegression", "SparseGPRegression", "VariationalSparseGP"])
def test_contrib_gp_models_train_as_in_the_gp_tutorial(kind):
    steps, lr = 60, 0.01
    pyro.set_rng_seed(0)
    tutorial = make_gp(kind)
    expected = gp_tutorial_loop(tutorial, steps, lr)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    module = make_gp(kind)
    result = fit(module, None, epochs=steps, lr=lr, seed=0)
    assert_losses_close(result.losses, expected)
    for (name, a), (_, b) in zip(module.named_parameters(), tutorial.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=PYRO_PARAM_ATOL, msg=name)
    if kind == "VariationalSparseGP":
        assert module.num_data == 100  # its own likelihood scale, left alone


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options,error,message",
    [
        ({"kwargs": [("args", 1)]}, TypeError, r"^`kwargs` must be a dict of keyword arguments .* but got list$"),
        ({"kwargs": {"subsample": None}}, ValueError, r"^`kwargs` may not hold 'subsample'"),
        ({"data": {"y": torch.ones(3)}, "kwargs": {"y": 1}}, ValueError, r"^`data` .* and `kwargs` both give \['y'\]"),
        ({"elbo": ("enum", 2)}, TypeError, r"^`elbo` as a tuple must be \(name, \{option: value\}\)"),
        ({"elbo": ("trace", {"bogus": 1})}, ValueError, r"^`elbo`: 'trace' \(Trace_ELBO\) takes no option \['bogus'\]"),
        (
            {"elbo": ("trace", {"num_particles": 2}), "num_particles": 3},
            ValueError,
            r"^`elbo`: \['num_particles'\] given both in the estimator's options and as arguments",
        ),
    ],
    ids=["kwargs-type", "kwargs-subsample", "kwargs-clash", "elbo-tuple", "elbo-option", "elbo-twice"],
)
def test_bad_keyword_arguments_and_estimator_options_are_named(options, error, message):
    import pyro.distributions as dist

    def model(y=None, **_):
        pyro.sample("y", dist.Normal(0.0, 1.0).expand([3]).to_event(1), obs=y)

    def guide(y=None, **_):
        pass

    options = {"data": (torch.ones(3),), **options}
    with pytest.raises(error, match=message):
        fit((model, guide), options.pop("data"), epochs=1, **options)
