"""compare's MCMC methods: a named kernel run by :func:`~ppmodels.infer.sampling.driver.mcmc`
on the model with its discrete sites enumerated, its r-hat, effective sample sizes and
divergences turned into the report's warnings."""

from __future__ import annotations

import math
import warnings

from .. import initialization as init
from ..program.sites import latent_names
from ..sampling.driver import mcmc as run_mcmc
from ..sampling.options import CHEES_OPTIONS, MANY_CHAIN_KERNELS, OWN_OPTIONS
from ..sampling.options import KERNELS as MCMC_KERNELS
from .method_checks import draws_loo

#: Pyro's own kernels, run by Pyro's ``MCMC`` (``mcmc(..., engine="pyro")``): the reference
#: this library's compiled samplers are checked against
PYRO_KERNELS = ("pyro-hmc", "pyro-nuts")
#: MCMC kernel names (run by :func:`~ppmodels.infer.sampling.driver.mcmc`)
KERNELS = (*MCMC_KERNELS, *MANY_CHAIN_KERNELS, *PYRO_KERNELS)
#: options one family of kernels has and the other has not: compare's ``kernel_options`` are
#: shared, so each kernel leaves the other's (as NUTS leaves HMC's ``jitter``)
NUTS_ONLY = OWN_OPTIONS - CHEES_OPTIONS
CHEES_ONLY = CHEES_OPTIONS - OWN_OPTIONS


def kernel_options_for(kernel: str, shared: dict | None) -> dict:
    """compare's shared ``kernel_options`` as ``kernel`` takes them: HMC's ``jitter`` left to
    HMC, each kernel family's own options left to that family."""
    options = dict(shared or {})
    if kernel != "hmc":
        options.pop("jitter", None)  # HMC's option (CompareOptions refuses it where no HMC runs)
    for name in NUTS_ONLY if kernel in MANY_CHAIN_KERNELS else CHEES_ONLY:
        options.pop(name, None)
    return options


class KernelMethod:
    """MCMC with a named kernel (:data:`KERNELS`; ``pyro-nuts`` and ``pyro-hmc`` are Pyro's own
    ``MCMC``) through :func:`~ppmodels.infer.sampling.driver.mcmc`: the
    compiled potential, several chains in parallel, Pyro's initialisation (``init_to_uniform``,
    with flat priors too), discrete sites enumerated; r-hat, effective sample sizes and
    divergences checked."""

    kind = "mcmc"

    def __init__(self, name):
        self.name = name

    def fresh(self) -> KernelMethod:
        return self

    def run(self, problem, settings) -> tuple:
        options = kernel_options_for(self.name, settings.kernel_options)
        kernel = self.name
        if self.name in PYRO_KERNELS:
            kernel, options["engine"] = self.name[len("pyro-") :], "pyro"
        options.setdefault("init_strategy", init.init_to_uniform)  # Pyro's, with flat priors too
        options.setdefault("max_plate_nesting", problem.plates)  # Pyro's guess would draw from flat priors
        options.setdefault("compile", settings.mcmc_compile)
        with warnings.catch_warnings():  # ChEES's unmixed chains: in the report's notes and r-hat warnings instead
            warnings.filterwarnings("ignore", r"the \d+ chains have not mixed", RuntimeWarning)
            sampler = run_mcmc(
                problem.potential_model,
                *problem.train,
                model_kwargs=problem.kwargs,
                kernel=kernel,
                num_samples=settings.num_samples,
                warmup_steps=settings.warmup_steps,
                num_chains=settings.num_chains,
                seed=settings.seed,
                progress=settings.progress,
                **options,
            )
        seconds = sampler.seconds
        sites = problem.sites
        site_samples = {s: v.reshape(-1, *sites[s]) for s, v in sampler.get_samples().items() if s in sites}
        diagnostics = {}
        raw = sampler.diagnostics()
        for s, shape in sites.items():
            ess = raw[s]["n_eff"].reshape(-1)
            r_hat = raw[s]["r_hat"].reshape(-1)
            for j, latent in enumerate(latent_names({s: shape})):
                diagnostics[latent] = {"ess": float(ess[j]), "r_hat": float(r_hat[j])}
        divergences = sum(len(v) for v in (raw.get("divergences") or {}).values())
        loo, loo_note = (
            draws_loo(problem, site_samples, None, chains=sampler.num_chains) if settings.diagnostics else (None, None)
        )
        notes = [f"discrete sites enumerated (max_plate_nesting={problem.plates})"] if problem.discrete else []
        notes += sampler.notes
        method = problem.result(
            self,
            site_samples,
            seconds,
            diagnostics=diagnostics,
            loo=loo,
            notes=notes + ([loo_note] if loo_note else []),
            mcmc=sampler,
        )
        return method, _mcmc_warnings(self.name, diagnostics, divergences)


def _mcmc_warnings(name, diagnostics, divergences):
    """The warnings of an MCMC run's diagnostics, over the latents that vary (a constant
    element, an ``LKJCholesky`` factor's fixed entries, has no ESS or r-hat)."""
    out = []
    r_hat = max((d["r_hat"] for d in diagnostics.values() if math.isfinite(d["r_hat"])), default=float("nan"))
    ess = min((d["ess"] for d in diagnostics.values() if math.isfinite(d["ess"])), default=float("nan"))
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


__all__ = ["CHEES_ONLY", "KERNELS", "KernelMethod", "NUTS_ONLY", "PYRO_KERNELS", "kernel_options_for"]
