"""Variational inference against Pyro's MCMC on small problems.

:func:`compare` fits the same Pyro model with several variational guides (through
:func:`ppmodels.infer.fit`) and with NUTS/HMC (through ``pyro.infer.MCMC``), and reports
per-latent posterior means and standard deviations, errors against the exact posterior where
it is known, the Wasserstein-1 distance of each method's marginals to the MCMC reference,
held-out predictive log-likelihood, MCMC diagnostics and wall times.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass, field

import pyro
import pyro.infer.autoguide as autoguide
import torch
from pyro import poutine
from pyro.infer import HMC, MCMC, NUTS, config_enumerate
from pyro.poutine.util import prune_subsample_sites

from .._validate import check_nonnegative_int, check_positive_int
from .callbacks import Callback
from .checks import is_discrete
from .elbo import get_elbo
from .fit import fit
from .params import isolated_store

#: guide names -> Pyro autoguides
GUIDES = {
    "meanfield": autoguide.AutoNormal,
    "fullrank": autoguide.AutoMultivariateNormal,
    "lowrank": autoguide.AutoLowRankMultivariateNormal,
}
#: kernel names -> Pyro MCMC kernels
KERNELS = {"nuts": NUTS, "hmc": HMC}
#: problems with more latent dimensions than this are refused for MCMC by default
MAX_LATENTS = 100


@dataclass
class MethodResult:
    """One method's posterior: flattened samples per latent, and what it cost."""

    name: str
    kind: str  # "vi" or "mcmc"
    samples: dict  # latent name -> (S,) tensor
    site_samples: dict  # site name -> (S, *shape) tensor
    seconds: float
    diagnostics: dict = field(default_factory=dict)  # latent -> {"r_hat", "ess"} (MCMC)
    predictive_log_likelihood: float | None = None
    final_loss: float | None = None  # VI: negative ELBO per data point at the end
    losses: list = field(default_factory=list)  # VI: the loss of every step
    discrete: dict = field(default_factory=dict)  # discrete site -> posterior marginal probabilities (..., K)
    notes: list = field(default_factory=list)  # how the method was run, where it differs from the defaults
    mcmc: object = None  # the pyro.infer.MCMC object (MCMC methods), for ArviZ


@dataclass
class Comparison:
    """The result of :func:`compare`; ``to_markdown()``, ``to_dict()`` and ``to_json()`` report it."""

    latent_names: list
    methods: list
    exact: dict | None = None  # latent -> {"mean", "sd"}
    reference: str | None = None  # the MCMC method Wasserstein distances are measured to
    discrete: list = field(default_factory=list)  # the model's discrete latent sites
    exact_discrete: dict | None = None  # discrete site -> exact posterior marginal probabilities
    warnings: list = field(default_factory=list)  # reasons to distrust a method's answer

    def method(self, name) -> MethodResult:
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(f"no method {name!r}; have {[m.name for m in self.methods]}")

    def moments(self, name) -> dict:
        """latent -> (mean, sd) under method ``name``."""
        m = self.method(name)
        return {k: (float(v.double().mean()), float(v.double().std())) for k, v in m.samples.items()}

    def rows(self) -> list:
        """One row per (latent, method)."""
        from scipy.stats import wasserstein_distance

        ref = self.method(self.reference) if self.reference else None
        rows = []
        for latent in self.latent_names:
            for m in self.methods:
                values = m.samples[latent].double()
                row = {"latent": latent, "method": m.name, "mean": float(values.mean()), "sd": float(values.std())}
                if self.exact:
                    ex = self.exact[latent]
                    row.update(
                        exact_mean=ex["mean"],
                        exact_sd=ex["sd"],
                        mean_error=row["mean"] - ex["mean"],
                        sd_ratio=row["sd"] / ex["sd"],
                    )
                if ref is not None and m is not ref:
                    row["w1_to_reference"] = float(wasserstein_distance(values.numpy(), ref.samples[latent].numpy()))
                if m.diagnostics:
                    row.update(m.diagnostics[latent])
                rows.append(row)
        return rows

    def summary(self) -> list:
        """One row per method: wall time, predictive log-likelihood, average errors, diagnostics."""
        rows = self.rows()
        out = []
        for m in self.methods:
            mine = [r for r in rows if r["method"] == m.name]
            row = {
                "method": m.name,
                "kind": m.kind,
                "seconds": m.seconds,
                "predictive_log_likelihood": m.predictive_log_likelihood,
            }
            if self.exact:
                row["mean_abs_mean_error"] = sum(abs(r["mean_error"]) for r in mine) / len(mine)
                row["mean_sd_ratio"] = sum(r["sd_ratio"] for r in mine) / len(mine)
            if any("w1_to_reference" in r for r in mine):
                row["mean_w1_to_reference"] = sum(r["w1_to_reference"] for r in mine) / len(mine)
            if m.diagnostics:
                row["max_r_hat"] = max(r["r_hat"] for r in mine)
                row["min_ess"] = min(r["ess"] for r in mine)
                row["min_ess_per_second"] = row["min_ess"] / m.seconds
            if self.exact_discrete and m.discrete:
                errors = [
                    (m.discrete[site] - self.exact_discrete[site]).abs().mean()
                    for site in self.exact_discrete
                    if site in m.discrete
                ]
                row["discrete_mean_abs_error"] = float(sum(errors) / len(errors))
            out.append(row)
        return out

    def discrete_rows(self) -> list:
        """One row per (discrete site, method): the posterior probability of each value, for
        every element of the site (e.g. each datum's assignment)."""
        rows = []
        for site in self.discrete:
            for m in self.methods:
                if site not in m.discrete:
                    continue
                probs = m.discrete[site]
                row = {"site": site, "method": m.name, "probs": probs.tolist()}
                if self.exact_discrete and site in self.exact_discrete:
                    row["max_abs_error"] = float((probs - self.exact_discrete[site]).abs().max())
                rows.append(row)
        return rows

    def to_arviz(self) -> dict:
        """``{method name: arviz.InferenceData}``: MCMC through ArviZ's Pyro converter (with its
        sample statistics), VI draws as a one-chain posterior group. Needs ArviZ
        (``pip install "ppmodels[arviz]"``)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # ArviZ announces its refactor on import
                import arviz as az
        except ImportError as exc:
            raise ImportError('to_arviz() needs ArviZ: pip install arviz (or pip install "ppmodels[arviz]")') from exc
        out = {}
        for m in self.methods:
            if m.mcmc is not None:
                out[m.name] = az.from_pyro(m.mcmc, log_likelihood=False)
            else:
                out[m.name] = az.from_dict(
                    posterior={k: v.detach().cpu().numpy()[None] for k, v in m.site_samples.items()}
                )
        return out

    def to_dict(self) -> dict:
        return {
            "latents": self.latent_names,
            "reference": self.reference,
            "summary": self.summary(),
            "latent_rows": self.rows(),
            "discrete_rows": self.discrete_rows(),
            "notes": {m.name: m.notes for m in self.methods if m.notes},
            "warnings": self.warnings,
        }

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), indent=2, **kwargs)

    def to_markdown(self) -> str:
        def fmt(v):
            if v is None:
                return "-"
            return f"{v:.4g}" if isinstance(v, float) else str(v)

        lines = []
        summary = self.summary()
        keys = [
            k
            for k in [
                "method",
                "kind",
                "seconds",
                "predictive_log_likelihood",
                "mean_abs_mean_error",
                "mean_sd_ratio",
                "mean_w1_to_reference",
                "discrete_mean_abs_error",
                "max_r_hat",
                "min_ess",
                "min_ess_per_second",
            ]
            if any(k in r for r in summary)
        ]
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in summary]
        rows = self.rows()
        keys = [
            k
            for k in [
                "latent",
                "method",
                "mean",
                "sd",
                "exact_mean",
                "exact_sd",
                "sd_ratio",
                "w1_to_reference",
                "r_hat",
                "ess",
            ]
            if any(k in r for r in rows)
        ]
        lines += ["", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
        notes = [f"- {m.name}: {note}" for m in self.methods for note in m.notes]
        if notes:
            lines += ["", "Notes:", *notes]
        if self.warnings:
            lines += ["", "Warnings:", *[f"- {w}" for w in self.warnings]]
        return "\n".join(lines) + "\n"


def _model_fn(model):
    fn = getattr(model, "model", model)
    if not callable(fn):
        raise TypeError(
            f"`model` must be a Pyro model (a callable) or have a .model method, but got {type(model).__name__}"
        )
    return fn


def _prior_trace(model_fn, args):
    with torch.no_grad(), poutine.block(hide_types=["param"]), pyro.validation_enabled(False):
        return prune_subsample_sites(poutine.trace(model_fn).get_trace(*args))


def latent_sites(model_fn, args) -> tuple:
    """The model's continuous latent sites and their shapes in execution order, its discrete
    latent sites, and how many batch dimensions its sites have at most (plates or not)."""
    trace = _prior_trace(model_fn, args)
    samples = [s for s in trace.nodes.values() if s["type"] == "sample"]
    sites = {s["name"]: tuple(s["value"].shape) for s in samples if not s["is_observed"] and not is_discrete(s["fn"])}
    discrete = {s["name"]: tuple(s["value"].shape) for s in samples if not s["is_observed"] and is_discrete(s["fn"])}
    batch = max([len(s["fn"].batch_shape) for s in samples] + [0])
    plates = max([len([f for f in s["cond_indep_stack"] if f.vectorized]) for s in samples] + [0])
    return sites, discrete, max(batch, plates), plates


def _broadcasts(model_fn, args, dim) -> bool:
    """Whether the model runs with its latents drawn under an extra plate at ``dim`` (what
    vectorised particles need: e.g. ``x @ w`` with ``w`` of shape (P, 1, D) does not)."""
    try:
        with torch.no_grad(), poutine.block(), pyro.validation_enabled(False), pyro.plate("_check", 2, dim=dim):
            poutine.trace(model_fn).get_trace(*args)
        return True
    except Exception:  # noqa: BLE001 (any failure means: not under a particle plate)
        return False


def _names(sites) -> list:
    names = []
    for site, shape in sites.items():
        if shape == ():
            names.append(site)
        else:
            names += (
                [f"{site}[{i}]" for i in range(math.prod(shape))]
                if len(shape) == 1
                else [
                    f"{site}[{','.join(map(str, idx))}]"
                    for idx in torch.cartesian_prod(*[torch.arange(d) for d in shape]).reshape(-1, len(shape)).tolist()
                ]
            )
    return names


def _flatten(site_samples, sites, names) -> dict:
    columns = [site_samples[s].reshape(site_samples[s].shape[0], -1) for s in sites]
    flat = torch.cat(columns, dim=1).detach()
    return {name: flat[:, i] for i, name in enumerate(names)}


def _traces_under_draws(model_fn, site_samples, args, max_draws):
    """Traces of the model conditioned on up to ``max_draws`` evenly spaced posterior draws."""
    s_total = next(iter(site_samples.values())).shape[0]
    idx = torch.linspace(0, s_total - 1, min(max_draws, s_total)).long()
    with torch.no_grad():
        for i in idx.tolist():
            conditioned = poutine.condition(model_fn, data={k: v[i] for k, v in site_samples.items()})
            yield prune_subsample_sites(poutine.trace(conditioned).get_trace(*args))


def mean_functions(model_fn, site_samples, args, site="y", max_draws=300):
    """The mean of the observed ``site``'s distribution under posterior draws: ``(S, N)``."""
    return torch.stack([t.nodes[site]["fn"].mean for t in _traces_under_draws(model_fn, site_samples, args, max_draws)])


def _predictive_log_likelihood(model_fn, site_samples, test, max_draws=500):
    """mean over test points of log (1/S) sum_s p(y_i | theta_s)."""
    per_draw = []
    for trace in _traces_under_draws(model_fn, site_samples, test, max_draws):
        trace.compute_log_prob()
        per_draw.append(
            sum(
                site["log_prob"]
                for site in trace.nodes.values()
                if site["type"] == "sample" and site["is_observed"] and site["name"] not in site_samples
            )
        )
    lp = torch.stack(per_draw)  # (S, N_test)
    return float((torch.logsumexp(lp, dim=0) - math.log(lp.shape[0])).mean())


def _vi_draws(guide, args, sites, num, dim, chunk=2000):
    """``num`` draws of the guide's latents, vectorised under a plate at ``dim`` when the guide
    allows it, else one guide run at a time (at most 2000 then)."""
    with torch.no_grad(), pyro.validation_enabled(False):
        try:
            with pyro.plate("_draws", num, dim=dim):
                trace = poutine.trace(guide).get_trace(*args)
            return {s: trace.nodes[s]["value"].reshape(num, *shape) for s, shape in sites.items()}, None
        except Exception:  # noqa: BLE001 (a guide that does not broadcast: draw sequentially)
            n = min(num, chunk)
            traces = [poutine.trace(guide).get_trace(*args) for _ in range(n)]
            draws = {
                s: torch.stack([t.nodes[s]["value"] for t in traces]).reshape(n, *shape) for s, shape in sites.items()
            }
            return draws, f"the guide does not broadcast over a draws dimension: {n} draws taken one at a time"


def _discrete_marginals(model_fn, site_samples, args, discrete, nesting, max_draws=200):
    """The posterior marginal of each discrete site, averaged over posterior draws of the
    continuous latents: given each draw, the discrete sites' posterior is exact (enumeration,
    TraceEnum_ELBO.compute_marginals)."""
    s_total = next(iter(site_samples.values())).shape[0]
    idx = torch.linspace(0, s_total - 1, min(max_draws, s_total)).long()
    totals = {}
    elbo = pyro.infer.TraceEnum_ELBO(max_plate_nesting=nesting)
    with torch.no_grad(), pyro.validation_enabled(False):
        for i in idx.tolist():
            conditioned = config_enumerate(poutine.condition(model_fn, data={k: v[i] for k, v in site_samples.items()}))
            marginals = elbo.compute_marginals(conditioned, lambda *a, **k: None, *args)
            for site in discrete:
                probs = _probs(marginals[site])
                totals[site] = probs if site not in totals else totals[site] + probs
    return {site: total / len(idx) for site, total in totals.items()}


def _probs(d):
    """The probabilities of a marginal over a discrete site, the values on the last dimension."""
    support = d.enumerate_support(expand=False)
    lp = d.log_prob(support)  # (K, *batch)
    return lp.movedim(0, -1).exp()


class _GradientMonitor(Callback):
    """Keeps the gradients of the last ``window`` steps (flattened, on the CPU)."""

    def __init__(self, total_steps):
        self.window = max(10, total_steps // 10)
        self.start = total_steps - self.window
        self.grads = []

    def on_gradients(self, state):
        if state.step >= self.start:
            grads = [t.grad.detach().reshape(-1) for _, t in state.named_parameters() if t.grad is not None]
            if grads:
                self.grads.append(torch.cat(grads).double().cpu())


def _vi_warning(name, monitor):
    """The rule: at an optimum the expected gradient is zero. Over the last tenth of the steps
    (at least 10), each parameter's mean gradient is compared with its standard error; if the
    largest ratio exceeds 3 + sqrt(2 ln P) (P parameters: what the largest of P standard
    normal ratios stays below), the guide had not converged."""
    if len(monitor.grads) < 10 or len({g.numel() for g in monitor.grads}) != 1:
        return None
    g = torch.stack(monitor.grads)
    n, p = g.shape
    z = g.mean(0) / (g.std(0) / math.sqrt(n) + 1e-12)
    limit = 3 + math.sqrt(2 * math.log(max(p, 2)))
    worst = float(z.abs().max())
    if worst > limit:
        return (
            f"{name}: not converged: over its last {n} steps a parameter's mean gradient is {worst:.1f} standard "
            f"errors from zero (the rule flags more than {limit:.1f} for {p} parameters); train longer (vi_epochs=)"
        )
    return None


def _mcmc_warnings(name, diagnostics, divergences):
    out = []
    r_hat = max((d["r_hat"] for d in diagnostics.values() if math.isfinite(d["r_hat"])), default=float("nan"))
    ess = min((d["ess"] for d in diagnostics.values()), default=float("nan"))
    if r_hat > 1.05:
        out.append(f"{name}: r-hat {r_hat:.3f} > 1.05: the chains have not mixed; the reference is unreliable")
    if ess < 100:
        out.append(f"{name}: the smallest effective sample size is {ess:.0f} < 100: Monte Carlo error is large")
    if divergences:
        out.append(
            f"{name}: {divergences} divergent transitions: the sampler missed part of the posterior (reparameterise "
            "the model, or raise the target acceptance probability)"
        )
    return out


def compare(
    model,
    train,
    test=None,
    *,
    guides=("meanfield", "fullrank"),
    mcmc=("nuts",),
    num_samples=1000,
    warmup_steps=500,
    num_chains=1,
    vi_epochs=3000,
    lr=0.05,
    num_particles=None,
    num_vi_samples=20000,
    exact=None,
    seed=0,
    max_latents=MAX_LATENTS,
    kernel_options=None,
    progress=False,
) -> Comparison:
    """Fit ``model`` by VI with each guide and by MCMC with each kernel, on the same data.

    :param model: a Pyro model ``model(*train)`` (a callable: a function, a ``PyroModule``),
        or an object with ``.model`` (and optionally ``.exact_posterior(*train)``, used when
        ``exact`` is None, and ``.exact_discrete(*train)``), such as
        :class:`ppmodels.models.BayesianLinearRegression` or :class:`ppmodels.models.GaussianMixture`.
    :param tuple train: the model's arguments for fitting, as it takes them: tensors, and
        anything else (a flag, a function — eight schools' ``(model, sigma, y)``), passed
        unchanged.
    :param tuple test: arguments for held-out data; the predictive log-likelihood of the
        observed sites is reported per test point.
    :param guides: guide names (``"meanfield"``, ``"fullrank"``, ``"lowrank"``), or your own
        guides (callables, ``pyro.param`` guides, modules, autoguides built the usual way), or
        ``(name, guide)`` pairs. Guides train in a parameter store of their own: Pyro's global
        store is as it was when compare returns.
    :param mcmc: kernel names, ``"nuts"`` and/or ``"hmc"`` (the first is the reference for
        Wasserstein distances).
    :param int num_samples: MCMC samples per chain after ``warmup_steps`` warm-up steps.
    :param int vi_epochs: full-batch SVI steps per guide (the learning rate decays 100-fold
        over them).
    :param int num_particles: particles per SVI step (default 8, vectorised; a model that
        does not broadcast over a particle dimension gets 1 unless you ask for more, which
        then run one after another; the report notes it).
    :param exact: ``{"names", "mean", "cov"}`` of a Gaussian exact posterior (or its moments),
        or None.
    :param int max_latents: refuse MCMC above this many latent dimensions.
    :param dict kernel_options: keyword arguments for the MCMC kernels, e.g.
        ``{"max_tree_depth": 6}`` (NUTS) or ``{"jit_compile": True}``.
    :returns: :class:`Comparison`. Discrete latents are summed out: VI with ``enum`` (the
        guides cover the continuous latents), NUTS/HMC with Pyro's enumeration; each
        method's posterior marginals of the discrete sites are in ``method.discrete``.
        ``warnings`` lists what makes a method's answer doubtful (a VI guide whose gradients
        are still clearly non-zero at the end, see the rule in ``docs/vi_vs_mcmc.md``; MCMC's
        r-hat above 1.05, an effective sample size below 100, divergences).
    """
    model_fn = _model_fn(model)
    if not isinstance(train, tuple):
        raise TypeError(
            f"`train` must be a tuple of the model's arguments, e.g. (x, y), but got {type(train).__name__}"
        )
    if test is not None and not isinstance(test, tuple):
        raise TypeError(f"`test` must be a tuple of the model's arguments, e.g. (x, y), but got {type(test).__name__}")
    num_samples = check_positive_int(num_samples, "num_samples")
    warmup_steps = check_nonnegative_int(warmup_steps, "warmup_steps")
    num_chains = check_positive_int(num_chains, "num_chains")
    vi_epochs = check_positive_int(vi_epochs, "vi_epochs")
    num_vi_samples = check_positive_int(num_vi_samples, "num_vi_samples")
    if num_particles is not None:
        check_positive_int(num_particles, "num_particles")
    guides = list(guides)
    mcmc = list(mcmc)
    for kernel in mcmc:
        if kernel not in KERNELS:
            raise ValueError(f"unknown MCMC kernel {kernel!r}; valid names are {sorted(KERNELS)}")
    named_guides = []
    for g in guides:
        if isinstance(g, str):
            if g not in GUIDES:
                raise ValueError(f"unknown guide {g!r}; valid names are {sorted(GUIDES)} (or pass your own guide)")
            named_guides.append((g, None))
        elif isinstance(g, tuple) and len(g) == 2 and isinstance(g[0], str) and callable(g[1]):
            named_guides.append(g)
        elif callable(g):
            named_guides.append((getattr(g, "__name__", type(g).__name__), g))
        else:
            raise TypeError(
                f"`guides` entries must be names in {sorted(GUIDES)}, callables or (name, guide) pairs, "
                f"but got {type(g).__name__}"
            )
    if not named_guides and not mcmc:
        raise ValueError("nothing to compare: give at least one guide or one MCMC kernel")

    with isolated_store():
        # one cheap trace first: the model's latents, batch dimensions and discrete sites,
        # before any guide or chain runs (a model that fails on its arguments fails here)
        try:
            sites, discrete, nesting, plates = latent_sites(model_fn, train)
        except Exception as error:
            raise ValueError(
                f"the model failed on `train` before any inference ran: {type(error).__name__}: {error}"
            ) from error
        names = _names(sites)
        if not names and not discrete:
            raise ValueError(
                "the model has no latent sites (every pyro.sample site in it is observed), so there is nothing to "
                "infer: compare needs at least one pyro.sample site without obs="
            )
        if mcmc and len(names) > max_latents:
            raise ValueError(
                f"the model has {len(names)} latent dimensions, more than max_latents={max_latents} for "
                "MCMC; compare variational guides only (mcmc=()) or raise max_latents"
            )
        if exact is None and hasattr(model, "exact_posterior"):
            exact = model.exact_posterior(*train)
        exact_moments = None
        if exact is not None:
            if list(exact["names"]) != names:
                raise ValueError(f"`exact` names {list(exact['names'])} do not match the model's latents {names}")
            sd = exact["cov"].diagonal().sqrt()
            exact_moments = {n: {"mean": float(exact["mean"][i]), "sd": float(sd[i])} for i, n in enumerate(names)}
        exact_discrete = model.exact_discrete(*train) if discrete and hasattr(model, "exact_discrete") else None
        dim = -(nesting + 1)
        broadcasts = _broadcasts(model_fn, train, dim)
        particles = num_particles if num_particles is not None else (8 if broadcasts else 1)
        particle_note = None
        if not broadcasts:
            particle_note = (
                "the model does not broadcast over a particle dimension (e.g. x @ w with w of shape (P, 1, D)), so "
                + (
                    "1 particle per step was used (pass num_particles= for more; they run one after another)"
                    if num_particles is None
                    else f"its {particles} particles per step ran one after another"
                )
            )
        continuous_model = poutine.block(model_fn, hide=list(discrete)) if discrete else model_fn

        results, report_warnings = [], []
        for name, own in named_guides:
            pyro.set_rng_seed(seed)
            guide = own if own is not None else GUIDES[name](continuous_model)
            start = time.perf_counter()
            gamma = 0.01 ** (1.0 / vi_epochs)
            elbo = get_elbo(
                "enum" if discrete else "trace",
                particles,
                vectorize_particles=broadcasts and particles > 1,
                max_plate_nesting=nesting,
            )
            monitor = _GradientMonitor(vi_epochs)
            result = fit(
                (model_fn, guide),
                train,
                epochs=vi_epochs,
                lr=lr,
                elbo=elbo,
                seed=seed,
                progress=progress,
                scheduler=lambda opt, gamma=gamma: torch.optim.lr_scheduler.ExponentialLR(opt, gamma),
                callbacks=[monitor],
            )
            seconds = time.perf_counter() - start
            site_samples, draws_note = _vi_draws(guide, train, sites, num_vi_samples, dim)
            notes = [n for n in (particle_note, draws_note) if n]
            if discrete:
                notes.append("discrete sites summed out by enumeration (elbo='enum')")
            method = MethodResult(
                name,
                "vi",
                _flatten(site_samples, sites, names),
                site_samples,
                seconds,
                final_loss=result.train_loss[-1],
                losses=result.losses,
                notes=notes,
            )
            if discrete:
                method.discrete = _discrete_marginals(model_fn, site_samples, train, discrete, plates)
            warning = _vi_warning(name, monitor)
            if warning:
                report_warnings.append(warning)
            results.append(method)

        for kernel in mcmc:
            pyro.set_rng_seed(seed)
            options = dict(kernel_options or {})
            if kernel == "hmc":
                options.pop("max_tree_depth", None)
            target = model_fn
            if discrete:
                target = config_enumerate(model_fn)
                options.setdefault("max_plate_nesting", plates)
            sampler = MCMC(
                KERNELS[kernel](target, **options),
                num_samples=num_samples,
                warmup_steps=warmup_steps,
                num_chains=num_chains,
                disable_progbar=not progress,
            )
            start = time.perf_counter()
            sampler.run(*train)
            seconds = time.perf_counter() - start
            site_samples = {s: v.reshape(-1, *sites[s]) for s, v in sampler.get_samples().items() if s in sites}
            diagnostics = {}
            raw = sampler.diagnostics()
            for s, shape in sites.items():
                ess = raw[s]["n_eff"].reshape(-1)
                r_hat = raw[s]["r_hat"].reshape(-1)
                for j, latent in enumerate(_names({s: shape})):
                    diagnostics[latent] = {"ess": float(ess[j]), "r_hat": float(r_hat[j])}
            divergences = sum(len(v) for v in (raw.get("divergences") or {}).values())
            method = MethodResult(
                kernel,
                "mcmc",
                _flatten(site_samples, sites, names),
                site_samples,
                seconds,
                diagnostics=diagnostics,
                notes=[f"discrete sites enumerated (max_plate_nesting={plates})"] if discrete else [],
                mcmc=sampler,
            )
            if discrete:
                method.discrete = _discrete_marginals(model_fn, site_samples, train, discrete, plates)
            report_warnings += _mcmc_warnings(kernel, diagnostics, divergences)
            results.append(method)

        if test is not None and not discrete:  # with discrete latents it would need their sum per test point
            for m in results:
                m.predictive_log_likelihood = _predictive_log_likelihood(model_fn, m.site_samples, test)
    return Comparison(
        names,
        results,
        exact_moments,
        reference=mcmc[0] if mcmc else None,
        discrete=list(discrete),
        exact_discrete=exact_discrete,
        warnings=report_warnings,
    )
