"""compare's options as one frozen value: built from :func:`~ppmodels.infer.comparison.driver.compare`'s
keywords (or :func:`~ppmodels.infer.comparison.sbc_runs.sbc`'s method settings) and checked
here, each on its own and every rule between them, before any work. The methods read it as
they run.

A new option is one field here, its rule in :meth:`CompareOptions.__post_init__`, and the
method that acts on it reads ``options.NAME``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..._validate import check_choice, check_nonnegative_int, check_positive_int
from ..graphs.backends import COMPILE_MODES
from .guides import GUIDES
from .kernels import KERNELS
from .methods import method_of

#: problems with more latent dimensions than this are refused for MCMC by default
MAX_LATENTS = 100
#: the fields that say which methods run (not how): sbc's saved settings leave them out
METHOD_FIELDS = ("guides", "mcmc", "max_latents")


@dataclass(frozen=True)
class CompareOptions:
    """compare's options, as its methods read them; see :func:`~ppmodels.infer.compare` for
    each. ``guides`` and ``mcmc`` are tuples."""

    guides: tuple = ("meanfield", "fullrank")
    mcmc: tuple = ("nuts",)
    max_latents: int = MAX_LATENTS
    seed: int = 0
    progress: bool = False
    vi_epochs: int = 3000
    lr: float = 0.05
    num_particles: int | None = None
    num_vi_samples: int = 20000
    num_samples: int = 1000
    warmup_steps: int = 500
    num_chains: int | None = None  # MCMC chains: one per core, 2 to 4 (sampling.options.default_chains)
    mcmc_compile: str | None = "auto"  # the potential's compile mode (mcmc's compile=)
    kernel_options: dict | None = None
    vi_start: str = "laplace"
    vi_stop: str = "converged"
    diagnostics: bool = True  # PSIS k-hat (VI) and PSIS-LOO after each method

    @classmethod
    def checked(cls, **options) -> CompareOptions:
        """The options from keywords; ``TypeError`` naming any keyword that is not one."""
        unknown = sorted(set(options) - set(cls.__dataclass_fields__))
        if unknown:
            known = sorted(set(cls.__dataclass_fields__) - set(METHOD_FIELDS))
            raise TypeError(f"unknown settings {unknown}; the settings are {known}")
        return cls(**options)

    def __post_init__(self):
        for name in ("num_samples", "vi_epochs", "num_vi_samples"):
            check_positive_int(getattr(self, name), name)
        if self.num_chains is not None:
            check_positive_int(self.num_chains, "num_chains")
        if self.mcmc_compile is not None:
            check_choice(self.mcmc_compile, "mcmc_compile", ["auto", *COMPILE_MODES])
        check_nonnegative_int(self.warmup_steps, "warmup_steps")
        if self.num_particles is not None:
            check_positive_int(self.num_particles, "num_particles")
        check_choice(self.vi_start, "vi_start", ["laplace", "prior"])
        check_choice(self.vi_stop, "vi_stop", ["converged", "steps"])
        object.__setattr__(self, "mcmc", tuple(self.mcmc))
        object.__setattr__(self, "guides", tuple(self.guides))
        for kernel in self.mcmc:
            if kernel not in KERNELS:
                raise ValueError(f"unknown MCMC kernel {kernel!r}; valid names are {sorted(KERNELS)}")
        jitter = (self.kernel_options or {}).get("jitter", None)
        if "jitter" in (self.kernel_options or {}) and "hmc" not in self.mcmc:  # HMC's alone; NUTS leaves it
            raise ValueError(
                f"kernel_options={{'jitter': {jitter!r}}} is HMC's option (its integration time), "
                f"but mcmc={self.mcmc!r} runs no HMC: add 'hmc' or leave jitter out"
            )
        for g in self.guides:
            if isinstance(g, str) and g not in GUIDES:
                raise ValueError(f"unknown guide {g!r}; valid names are {sorted(GUIDES)} (or pass your own guide)")
            if not (isinstance(g, (str, tuple)) or callable(g)):
                raise TypeError(
                    f"`guides` entries must be names in {sorted(GUIDES)}, callables or (name, guide) pairs, "
                    f"but got {type(g).__name__}"
                )

    def methods(self) -> list:
        """The methods to run: the guides, then the kernels, in the order given."""
        methods = [method_of(g) for g in self.guides] + [method_of(kernel) for kernel in self.mcmc]
        if not methods:
            raise ValueError("nothing to compare: give at least one guide or one MCMC kernel")
        return methods


__all__ = ["CompareOptions", "MAX_LATENTS", "METHOD_FIELDS"]
