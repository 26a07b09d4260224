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
from dataclasses import dataclass, field

import pyro
import pyro.infer.autoguide as autoguide
import torch
from pyro import poutine
from pyro.infer import HMC, MCMC, NUTS
from pyro.poutine.util import prune_subsample_sites

from .._validate import check_nonnegative_int, check_positive_int
from .elbo import get_elbo
from .fit import fit

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


@dataclass
class Comparison:
    """The result of :func:`compare`; ``to_markdown()``, ``to_dict()`` and ``to_json()`` report it."""

    latent_names: list
    methods: list
    exact: dict | None = None  # latent -> {"mean", "sd"}
    reference: str | None = None  # the MCMC method Wasserstein distances are measured to

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
            out.append(row)
        return out

    def to_dict(self) -> dict:
        return {
            "latents": self.latent_names,
            "reference": self.reference,
            "summary": self.summary(),
            "latent_rows": self.rows(),
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
        return "\n".join(lines) + "\n"


def _model_fn(model):
    fn = getattr(model, "model", model)
    if not callable(fn):
        raise TypeError(
            f"`model` must be a Pyro model (a callable) or have a .model method, but got {type(model).__name__}"
        )
    return fn


def latent_sites(model_fn, args) -> dict:
    """The model's unobserved sample sites and their shapes, in execution order."""
    with torch.no_grad(), poutine.block(hide_types=["param"]):
        trace = prune_subsample_sites(poutine.trace(model_fn).get_trace(*args))
    sites = {
        name: tuple(site["value"].shape)
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"]
    }
    nesting = max([len(site["cond_indep_stack"]) for site in trace.nodes.values() if site["type"] == "sample"] + [0])
    return sites, nesting


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


class _Pair(torch.nn.Module):
    def __init__(self, model_fn, guide):
        super().__init__()
        self._model_fn = model_fn
        self.guide_module = guide if isinstance(guide, torch.nn.Module) else None
        self._guide_fn = guide

    def model(self, *args):
        return self._model_fn(*args)

    def guide(self, *args):
        return self._guide_fn(*args)


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
    num_particles=8,
    num_vi_samples=20000,
    exact=None,
    seed=0,
    max_latents=MAX_LATENTS,
    kernel_options=None,
    progress=False,
) -> Comparison:
    """Fit ``model`` by VI with each guide and by MCMC with each kernel, on the same data.

    :param model: a Pyro model ``model(*train)`` (a callable), or an object with ``.model``
        (and optionally ``.exact_posterior(*train)``, used when ``exact`` is None), such as
        :class:`ppmodels.models.BayesianLinearRegression`.
    :param tuple train: the model's arguments for fitting, e.g. ``(x, y)``.
    :param tuple test: arguments for held-out data; the predictive log-likelihood of the
        observed sites is reported per test point.
    :param guides: guide names (``"meanfield"``, ``"fullrank"``, ``"lowrank"``), or your own
        guides (callables or modules), or ``(name, guide)`` pairs.
    :param mcmc: kernel names, ``"nuts"`` and/or ``"hmc"`` (the first is the reference for
        Wasserstein distances).
    :param int num_samples: MCMC samples per chain after ``warmup_steps`` warm-up steps.
    :param int vi_epochs: full-batch SVI steps per guide (the learning rate decays 100-fold
        over them); ``num_particles`` vectorised particles per step.
    :param exact: ``{"names", "mean", "cov"}`` of a Gaussian exact posterior, or None.
    :param int max_latents: refuse MCMC above this many latent dimensions.
    :param dict kernel_options: keyword arguments for the MCMC kernels, e.g.
        ``{"max_tree_depth": 6}`` (NUTS) or ``{"jit_compile": True}``.
    :returns: :class:`Comparison`.
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

    sites, nesting = latent_sites(model_fn, train)
    names = _names(sites)
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

    results = []
    n = train[0].shape[0]
    for name, own in named_guides:
        pyro.set_rng_seed(seed)
        with pyro.settings.context(module_local_params=True):
            guide = own if own is not None else GUIDES[name](model_fn)
            pair = _Pair(model_fn, guide)
            start = time.perf_counter()
            gamma = 0.01 ** (1.0 / vi_epochs)
            elbo = get_elbo("trace", num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=nesting)
            result = fit(
                pair,
                train,
                epochs=vi_epochs,
                batch_size=n,
                lr=lr,
                elbo=elbo,
                seed=seed,
                progress=progress,
                shuffle=False,
                scheduler=lambda opt, gamma=gamma: torch.optim.lr_scheduler.ExponentialLR(opt, gamma),
            )
            seconds = time.perf_counter() - start
            with torch.no_grad(), pyro.plate("_draws", num_vi_samples, dim=-(nesting + 1)):
                trace = poutine.trace(guide).get_trace(*train)
            site_samples = {s: trace.nodes[s]["value"].reshape(num_vi_samples, *shape) for s, shape in sites.items()}
        results.append(
            MethodResult(
                name,
                "vi",
                _flatten(site_samples, sites, names),
                site_samples,
                seconds,
                final_loss=result.train_loss[-1],
            )
        )

    for kernel in mcmc:
        pyro.set_rng_seed(seed)
        options = dict(kernel_options or {})
        if kernel == "hmc":
            options.pop("max_tree_depth", None)
        sampler = MCMC(
            KERNELS[kernel](model_fn, **options),
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
        results.append(
            MethodResult(
                kernel, "mcmc", _flatten(site_samples, sites, names), site_samples, seconds, diagnostics=diagnostics
            )
        )

    if test is not None:
        for m in results:
            m.predictive_log_likelihood = _predictive_log_likelihood(model_fn, m.site_samples, test)
    return Comparison(names, results, exact_moments, reference=mcmc[0] if mcmc else None)
