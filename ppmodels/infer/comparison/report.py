"""compare's result and its report: each method's posterior (:class:`MethodResult`) and the
scores, tables and exports of all of them (:class:`Comparison`: rows per latent and method,
a summary per method, markdown, JSON, ArviZ). A new score is a new column here."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from .arviz_export import to_arviz


@dataclass
class MethodResult:
    """One method's posterior: flattened samples per latent, and what it cost."""

    name: str
    kind: str  # "vi", "mcmc" or "draws" (the method's ``kind``)
    samples: dict  # latent name -> (S,) tensor
    site_samples: dict  # site name -> (S, *shape) tensor
    seconds: float
    diagnostics: dict = field(default_factory=dict)  # latent -> {"r_hat", "ess"} (MCMC)
    predictive_log_likelihood: float | None = None
    final_loss: float | None = None  # VI: negative ELBO per data point at the end
    losses: list = field(default_factory=list)  # VI: the loss of every step
    steps: int | None = None  # VI: the SVI steps taken
    k_hat: float | None = None  # VI: PSIS's Pareto k of the guide against the model (ppmodels.infer.psis)
    psis_moments: dict = field(default_factory=dict)  # VI: latent -> PSIS-corrected (mean, sd)
    loo: object = None  # PSIS-LOO of the training data (ppmodels.infer.diagnostics.loo.LOOResult)
    discrete: dict = field(default_factory=dict)  # discrete site -> posterior marginal probabilities (..., K)
    notes: list = field(default_factory=list)  # how the method was run, where it differs from the defaults
    mcmc: object = None  # MCMC methods: the sampler's result (an MCMCResult), for ArviZ


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
    posterior: object = None  # a published reference posterior (ppmodels.posteriordb.Reference)
    to_posterior: object = None  # a method's site draws -> the reference's parameters
    problem: object = None  # the model and its data (comparison.problem.Problem), for ArviZ's groups
    failed: list = field(default_factory=list)  # {"method", "kind", "error"} of each method that raised

    def posterior_rows(self) -> list:
        """One row per (reference parameter, method): the method's mean and sd against the
        reference's, the mean error and the Wasserstein-1 distance in reference sds, the sd
        ratio. Empty without a reference posterior."""
        if self.posterior is None:
            return []
        rows = []
        for m in self.methods:
            for row in self.posterior.score(self.to_posterior(m.site_samples)):
                rows.append({"parameter": row.pop("parameter"), "method": m.name, **row})
        return rows

    def method(self, name) -> MethodResult:
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(f"no method {name!r}; have {[m.name for m in self.methods]}")

    def moments(self, name) -> dict:
        """latent -> (mean, sd) under method ``name``."""
        m = self.method(name)
        return {k: (float(v.double().mean()), float(v.double().std())) for k, v in m.samples.items()}

    def disagreements(self, sigmas: float = 4.0) -> list:
        """Where a VI method and the MCMC reference disagree by more than their Monte Carlo
        error, one line per VI method saying so, the worst latent, and which answer to
        believe: the MCMC one when it passed its own diagnostics (r-hat, effective sample
        size, divergences), else neither.

        A latent disagrees when the means differ by more than ``sigmas`` standard errors
        (MCMC's sd / sqrt(ESS) and the VI draws' sd / sqrt(S), combined) and by more than
        0.1 of MCMC's sd, or when the sds differ by a ratio outside [0.8, 1.25] and by more
        than ``sigmas`` standard errors of their logarithm (1 / sqrt(2 ESS) and
        1 / sqrt(2 S), combined)."""
        return disagreements(self, sigmas)

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
                if latent in m.psis_moments:
                    row["psis_mean"], row["psis_sd"] = m.psis_moments[latent]
                if ref is not None and m is not ref:
                    row["w1_to_reference"] = float(wasserstein_distance(values.numpy(), ref.samples[latent].numpy()))
                if m.diagnostics:
                    row.update(m.diagnostics[latent])
                rows.append(row)
        return rows

    def summary(self) -> list:
        """One row per method: wall time, predictive log-likelihood, average errors, diagnostics."""
        rows = self.rows()
        posterior = self.posterior_rows()
        out = []
        for m in self.methods:
            mine = [r for r in rows if r["method"] == m.name]
            row = {
                "method": m.name,
                "kind": m.kind,
                "sampler": _sampler(m),
                "seconds": m.seconds,
                "steps": m.steps,
                "k_hat": m.k_hat,
                "predictive_log_likelihood": m.predictive_log_likelihood,
            }
            if m.loo is not None:
                row.update(elpd_loo=m.loo.elpd, elpd_loo_se=m.loo.se, p_loo=m.loo.p_loo, loo_bad_k=m.loo.bad)
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
            scored = [r for r in posterior if r["method"] == m.name]
            if scored:
                row["max_abs_mean_error_sds"] = max(abs(r["mean_error_sds"]) for r in scored)
                row["min_sd_ratio"] = min(r["sd_ratio"] for r in scored)
                row["max_sd_ratio"] = max(r["sd_ratio"] for r in scored)
                row["max_w1_sds"] = max(r["w1_sds"] for r in scored)
            out.append(row)
        return out + [dict(f) for f in self.failed]

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

    def to_arviz(self, max_vi_draws: int = 4000) -> dict:
        """``{method name: arviz.InferenceData}``: the draws as the ``posterior`` group (MCMC's
        by chain, with its ``sample_stats``; VI's as one chain of at most ``max_vi_draws``
        evenly spaced draws), and, for models whose data are observed ``pyro.sample`` sites
        (no discrete latents), ``log_likelihood`` (each observation under each draw),
        ``posterior_predictive`` (data replicated with each draw) and ``observed_data``, so
        ``az.loo``, ``az.compare`` and ``az.plot_ppc`` work on them. ArviZ's LOO of VI draws
        takes them as posterior draws; the ``elpd_loo`` of :meth:`summary` weighs them by
        ``p / q`` instead. Needs ArviZ (``pip install "ppmodels[arviz]"``)."""
        return to_arviz(self, max_vi_draws)

    def to_dict(self) -> dict:
        return {
            "latents": self.latent_names,
            "reference": self.reference,
            "summary": self.summary(),
            "latent_rows": self.rows(),
            "discrete_rows": self.discrete_rows(),
            "posterior": self.posterior.name if self.posterior is not None else None,
            "posterior_rows": self.posterior_rows(),
            "loo_k_hat": {m.name: m.loo.k_hat.tolist() for m in self.methods if m.loo is not None},
            "notes": {m.name: m.notes for m in self.methods if m.notes},
            "warnings": self.warnings,
            "failed": self.failed,
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
                "sampler",
                "seconds",
                "steps",
                "k_hat",
                "predictive_log_likelihood",
                "elpd_loo",
                "elpd_loo_se",
                "p_loo",
                "loo_bad_k",
                "mean_abs_mean_error",
                "mean_sd_ratio",
                "mean_w1_to_reference",
                "discrete_mean_abs_error",
                "max_abs_mean_error_sds",
                "min_sd_ratio",
                "max_sd_ratio",
                "max_w1_sds",
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
                "psis_mean",
                "psis_sd",
                "w1_to_reference",
                "r_hat",
                "ess",
            ]
            if any(k in r for r in rows)
        ]
        lines += ["", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
        scored = self.posterior_rows()
        if scored:
            keys = ["parameter", "method", "mean", "sd", "ref_mean", "ref_sd", "mean_error_sds", "sd_ratio", "w1_sds"]
            lines += [
                "",
                f"Against the reference posterior {self.posterior.name} ({self.posterior.draws} Stan NUTS draws; "
                "errors in reference sds):",
                "",
                "| " + " | ".join(keys) + " |",
                "|" + "---|" * len(keys),
            ]
            lines += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in scored]
        notes = [f"- {m.name}: {note}" for m in self.methods for note in m.notes]
        if notes:
            lines += ["", "Notes:", *notes]
        if self.warnings:
            lines += ["", "Warnings:", *[f"- {w}" for w in self.warnings]]
        if self.failed:
            lines += ["", "Failed (no answer; the other methods' results stand):"]
            lines += [f"- {f['method']}: {f['error']}" for f in self.failed]
        return "\n".join(lines) + "\n"


def _sampler(method) -> str | None:
    """Who drew an MCMC method's draws: this library's compiled sampler (and its compile
    mode) or Pyro's own ``MCMC``."""
    result = method.mcmc
    if result is None:
        return None
    if result.engine == "pyro":
        return "Pyro's MCMC" + (" (jit)" if result.compile.get("mode") else " (eager)")
    mode = result.compile.get("mode")
    return f"ppmodels ({mode or 'eager'})"


def disagreements(comparison, sigmas: float = 4.0) -> list:
    """:meth:`Comparison.disagreements` of ``comparison``."""

    ref = comparison.method(comparison.reference) if comparison.reference else None
    if ref is None or not ref.diagnostics:
        return []
    trusted = not any(w.startswith(f"{ref.name}:") for w in comparison.warnings)
    out = []
    for m in comparison.methods:
        if m.kind != "vi":
            continue
        flagged = []
        for latent in comparison.latent_names:
            a, b = m.samples[latent].double(), ref.samples[latent].double()
            ess, n = max(ref.diagnostics[latent]["ess"], 1.0), a.numel()
            sd_a, sd_b = float(a.std()), float(b.std())
            mean_se = math.sqrt(sd_b**2 / ess + sd_a**2 / n)
            delta = abs(float(a.mean()) - float(b.mean()))
            ratio = sd_a / sd_b if sd_b > 0 else math.inf
            log_se = math.sqrt(1 / (2 * ess) + 1 / (2 * n))
            mean_off = delta > sigmas * mean_se and delta > 0.1 * sd_b
            sd_off = not 0.8 <= ratio <= 1.25 and abs(math.log(ratio)) > sigmas * log_se
            if mean_off or sd_off:
                flagged.append((delta / sd_b if sd_b > 0 else math.inf, latent, delta / mean_se, ratio))
        if not flagged:
            continue
        size, latent, z, ratio = max(flagged)
        verdict = (
            f"{ref.name} passed its own diagnostics, so believe {ref.name}: {m.name}'s family cannot represent "
            "this posterior there, or it had not converged"
            if trusted
            else f"{ref.name} failed its own diagnostics (above), so neither answer is established: run more or "
            "longer chains"
        )
        out.append(
            f"{m.name} and {ref.name} disagree beyond Monte Carlo error on {len(flagged)} of "
            f"{len(comparison.latent_names)} latents (the largest: {latent}, means {size:.2f} {ref.name} sds apart, "
            f"{z:.1f} standard errors; sd ratio {ratio:.2f}); {verdict}"
        )
    return out


__all__ = ["Comparison", "MethodResult", "disagreements"]
