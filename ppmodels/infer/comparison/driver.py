"""Variational inference against MCMC on small problems: :func:`compare`.

:func:`compare` fits the same Pyro model with several variational guides (through
:func:`ppmodels.infer.fit`) and MCMC kernels (through :func:`ppmodels.infer.mcmc`: this
library's compiled NUTS, HMC or ChEES, or Pyro's own ``MCMC`` with
``kernel_options={"engine": "pyro"}``), and reports per-latent posterior means and standard
deviations, errors against the exact posterior where it is known, the Wasserstein-1 distance
of each method's marginals to the MCMC reference, held-out predictive log-likelihood, MCMC
diagnostics and wall times.

It is made of units, each one owner: :mod:`~ppmodels.infer.comparison.options` (the options,
checked once), :mod:`~ppmodels.infer.comparison.problem` (what the model's latents are, and
what is computed from draws), :mod:`~ppmodels.infer.comparison.methods` (one class per kind
of method: a guide, a kernel, the user's draws), :mod:`~ppmodels.infer.comparison.report`
(the scores and the report). :func:`compare` checks its arguments, inspects the problem and
runs each method in a parameter store of their own.
"""

from __future__ import annotations

import time
import warnings

from ..density.preparation import check_proper
from ..errors import ImproperPosteriorError, RandomDensityError
from ..program.sites import model_function
from ..training.params import isolated_store
from .kernels import KernelMethod
from .options import MAX_LATENTS, CompareOptions
from .problem import Problem
from .report import Comparison


def compare(
    model,
    train=None,
    test=None,
    *,
    guides=("meanfield", "fullrank"),
    mcmc=("nuts",),
    num_samples=1000,
    warmup_steps=500,
    num_chains=None,
    mcmc_compile="auto",
    vi_epochs=3000,
    lr=0.05,
    num_particles=None,
    num_vi_samples=20000,
    exact=None,
    seed=0,
    max_latents=MAX_LATENTS,
    kernel_options=None,
    progress=False,
    vi_start="laplace",
    vi_stop="converged",
) -> Comparison:
    """Fit ``model`` by VI with each guide and by MCMC with each kernel, on the same data.

    :param model: a Pyro model ``model(*train)`` (a callable: a function, a ``PyroModule``),
        or an object with ``.model`` (and optionally ``.exact_posterior(*train)``, used when
        ``exact`` is None, and ``.exact_discrete(*train)``), such as
        :class:`ppmodels.models.BayesianLinearRegression` or :class:`ppmodels.models.GaussianMixture`.
    :param train: the model's arguments for fitting, as it takes them: a tuple of positional
        arguments (tensors, and anything else — a flag, a function — passed unchanged) or a
        dict of keyword arguments (``model(x=..., y=...)``), as :func:`~ppmodels.infer.fit`
        takes ``data``. Not needed for a problem that brings its arguments (``model.args``: a
        :func:`ppmodels.posteriordb.load` posterior, whose ``reference`` then scores every
        method: mean error and Wasserstein-1 distance in reference sds, sd ratio).
    :param test: arguments for held-out data (a tuple or a dict, as ``train``); the
        predictive log-likelihood of the observed sites is reported per test point.
    :param guides: guide names (``"meanfield"``, ``"fullrank"``, ``"lowrank"``), or your own
        guides (callables, ``pyro.param`` guides, modules, autoguides built the usual way), or
        ``(name, guide)`` pairs. Guides train in a parameter store of their own: Pyro's global
        store is as it was when compare returns.
    :param mcmc: kernel names, ``"nuts"``, ``"hmc"`` and/or ``"chees"`` (the first is the
        reference for Wasserstein distances); Pyro's own kernels with ``kernel_options={"engine":
        "pyro"}``. They run before the guides train, so that a model MCMC
        refuses (a random or improper log density, docs/mcmc.md) stops compare at once.
        Without them (``mcmc=()``) an improper posterior is still refused before the guides
        train (:func:`~ppmodels.infer.density.preparation.check_proper`).
    :param int num_samples: MCMC samples per chain after ``warmup_steps`` warm-up steps.
    :param int vi_epochs: the most full-batch SVI steps per guide (with ``vi_stop="steps"``,
        exactly this many).
    :param int num_particles: particles per SVI step (default 8, vectorised; a model that
        does not broadcast over a particle dimension gets 1 unless you ask for more, which
        then run one after another; the report notes it).
    :param exact: ``{"names", "mean", "cov"}`` of a Gaussian exact posterior (or its moments),
        or None.
    :param int max_latents: refuse MCMC above this many latent dimensions.
    :param str vi_start: ``"laplace"`` (the default): the named ``meanfield`` and ``fullrank``
        guides start at the model's Laplace approximation (MAP by L-BFGS and Newton steps, the
        Hessian's inverse) and train in the coordinates it whitens, so that one learning rate
        suits posteriors of any scale and correlation (:mod:`ppmodels.infer.vi.laplace`); where
        there is no Laplace approximation (no finite mode, a Hessian that is not positive
        definite) they start as ``"prior"`` does, and the report's notes say why. ``"prior"``:
        Pyro's initialisation of the autoguide.
    :param str vi_stop: ``"converged"`` (the default): Adam at ``lr`` until the gradients are
        stationary, the rate then multiplied by 0.3 at each stationary window, four times,
        stopping when they are stationary at the smallest
        (:class:`~ppmodels.infer.training.convergence.StopOnConvergence`; the report gives the steps
        taken). ``"steps"``: ``vi_epochs`` steps with the rate decaying 100-fold over them.
    :param num_chains: MCMC chains (default: one per core, 2 to 4), run in parallel processes
        by :func:`~ppmodels.infer.sampling.driver.mcmc`; r-hat compares them.
    :param mcmc_compile: how MCMC's potential energy is compiled (``mcmc``'s ``compile``:
        ``"auto"``, ``"inductor"``, ``"graph"`` or ``None`` for eager Pyro).
    :param dict kernel_options: keyword arguments for :func:`~ppmodels.infer.sampling.driver.mcmc` and
        its kernels, e.g. ``{"max_tree_depth": 6}`` (NUTS; HMC leaves it), ``{"jitter": 0}``
        (HMC; NUTS leaves it) or ``{"engine": "pyro"}``; an option
        this library's kernel does not have (``{"jit_compile": True}``, ``{"full_mass": True}``)
        runs Pyro's ``MCMC`` instead, and the report's notes say so.
    :returns: :class:`Comparison`. Discrete latents are summed out: VI with ``enum`` (the
        guides cover the continuous latents), NUTS/HMC with Pyro's enumeration; each
        method's posterior marginals of the discrete sites are in ``method.discrete``.
        ``warnings`` lists what makes a method's answer doubtful (a VI guide whose gradients
        are still clearly non-zero at the end, see the rule in ``docs/vi_vs_mcmc.md``; MCMC's
        r-hat above 1.05, an effective sample size below 100, divergences).
    """
    (train, train_kwargs), test = _arguments(model, train, test)
    fields = set(CompareOptions.__dataclass_fields__)
    options = CompareOptions(**{k: v for k, v in locals().items() if k in fields})
    methods = options.methods()

    with isolated_store():
        problem = Problem.inspect(model, train, exact, particles=num_particles or 8, kwargs=train_kwargs)
        if options.mcmc and len(problem.names) > options.max_latents:
            raise ValueError(
                f"the model has {len(problem.names)} latent dimensions, more than "
                f"max_latents={options.max_latents} for MCMC; compare variational guides only (mcmc=()) or raise "
                "max_latents"
            )
        if not options.mcmc:  # MCMC refuses an improper posterior before its chains; guides alone would widen along it
            check_proper(problem.potential_model, problem.train, problem.kwargs, max_plate_nesting=problem.plates)
        # MCMC first: a model it refuses (a random or improper density) stops compare before
        # any guide has trained, not after; the results keep the order asked for
        results, found, failed = [None] * len(methods), [[] for _ in methods], []
        for i in sorted(range(len(methods)), key=lambda i: not isinstance(methods[i], KernelMethod)):
            results[i], found[i] = _run(methods[i], problem, options, failed)
        if all(r is None for r in results):
            reasons = "; ".join(f"{f['method']}: {f['error']}" for f in failed)
            raise RuntimeError(f"every method failed, so there is nothing to compare ({reasons})") from failed[0][
                "cause"
            ]
        results = [r for r in results if r is not None]
        for f in failed:
            del f["cause"]
        report_warnings = [w for ws in found for w in ws]
        if test is not None and not problem.discrete:  # with discrete latents it would need their sum per test point
            for m in results:
                m.predictive_log_likelihood = problem.predictive_log_likelihood(m.site_samples, *test)
    answered = {m.name for m in results}
    comparison = Comparison(
        problem.names,
        results,
        problem.exact,
        reference=options.mcmc[0] if options.mcmc and options.mcmc[0] in answered else None,
        discrete=list(problem.discrete),
        exact_discrete=problem.exact_discrete,
        warnings=report_warnings,
        posterior=getattr(model, "reference", None),
        to_posterior=getattr(model, "stan_draws", None),
        problem=problem,
        failed=failed,
    )
    comparison.warnings += comparison.disagreements()
    return comparison


def _run(method, problem, options, failed) -> tuple:
    """``method``'s result and warnings; ``(None, [])`` where it raised, its error appended to
    ``failed`` and said in a ``RuntimeWarning``, so that the other methods' results stand. The
    refusals of the model itself (a random or improper log density) stop compare."""
    start = time.perf_counter()
    try:
        return method.run(problem, options)
    except (ImproperPosteriorError, RandomDensityError):
        raise
    except Exception as error:  # noqa: BLE001 (one method's failure: its row holds the error)
        message = f"{type(error).__name__}: {str(error).strip()[:500]}"
        seconds = time.perf_counter() - start
        failed.append(
            {"method": method.name, "kind": method.kind, "seconds": seconds, "error": message, "cause": error}
        )
        warnings.warn(
            f"compare: {method.name} failed ({message}); its row holds the error, and the other methods' results stand",
            RuntimeWarning,
            stacklevel=3,
        )
        return None, []


def _arguments(model, train, test) -> tuple:
    """``((args, kwargs), test)``: ``train`` (a tuple of positional arguments or a dict of
    keyword ones), or the arguments a problem brings (``model.args``: a posteriordb
    posterior), and ``test`` as ``(args, kwargs)`` or ``None``; ``TypeError`` where the model
    is not one or the arguments are neither."""
    model_function(model)
    if train is None and isinstance(getattr(model, "args", None), tuple):
        train = model.args
    for name, value in (("train", train), ("test", test)):
        if not isinstance(value, (tuple, dict)) and not (name == "test" and value is None):
            raise TypeError(
                f"`{name}` must be a tuple of the model's arguments, e.g. (x, y), or a dict of its keyword "
                f"arguments, but got {type(value).__name__}"
            )

    def split(value):
        return ((), dict(value)) if isinstance(value, dict) else (tuple(value), {})

    return split(train), (split(test) if test is not None else None)


__all__ = ["compare"]
