"""mcmc's options as one frozen value: built from :func:`~ppmodels.infer.sampling.driver.mcmc`'s
keywords and checked here, each on its own and every rule between them, before any work; the
kernel's own settings resolved from its options.

``mcmc``'s signature and docstring are the public contract; this is the one place that checks
it. A new option is one field here, its rule in :meth:`MCMCOptions.__post_init__`, and the unit
that acts on it reads ``options.NAME``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from ..._validate import check_choice, check_nonnegative_int, check_positive_int
from ..density.preparation import build
from ..graphs.backends import COMPILE_MODES
from ..initialization import init_to_uniform
from .chees import CheesSettings
from .nuts import KernelSettings

#: kernels that run one chain each (NUTS, and HMC with a fixed or jittered integration time)
KERNELS = ("nuts", "hmc")
#: kernels that move many chains in lockstep, the potential evaluated for all in one call
MANY_CHAIN_KERNELS = ("chees",)
ENGINES = ("ppmodels", "pyro")
#: ChEES-HMC's chains by default: on a small model, one call of the potential for 64 chains
#: costs little more than one for a single chain
CHEES_CHAINS = 64
#: at most this many chains by default
DEFAULT_MAX_CHAINS = 4
#: the kernel options this library's NUTS/HMC runs; any other goes to Pyro's kernel
OWN_OPTIONS = frozenset(KernelSettings.__dataclass_fields__)
#: ChEES-HMC's options
CHEES_OPTIONS = frozenset(CheesSettings.__dataclass_fields__)


def cores() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_chains() -> int:
    """Chains by default: one per core, at most :data:`DEFAULT_MAX_CHAINS`, at least 2 (r-hat
    needs several)."""
    return max(2, min(DEFAULT_MAX_CHAINS, cores()))


@dataclass(frozen=True)
class MCMCOptions:
    """Every keyword of :func:`~ppmodels.infer.sampling.driver.mcmc` but the model and its
    arguments, checked. ``num_chains`` and ``processes`` are resolved (their defaults filled
    in), ``model_kwargs`` and ``kernel_options`` are copies.

    :ivar settings: the kernel's frozen settings (:class:`~ppmodels.infer.sampling.nuts.KernelSettings`
        or :class:`~ppmodels.infer.sampling.chees.CheesSettings`), ``None`` where Pyro's kernel runs.
    :ivar foreign: the kernel options only Pyro's kernel has (they send the run to Pyro's ``MCMC``).
    """

    kernel: str = "nuts"
    num_samples: int = 1000
    warmup_steps: int = 500
    num_chains: int | None = None
    compile: str | None = "auto"
    seed: int = 0
    progress: bool = False
    engine: str = "ppmodels"
    max_plate_nesting: int | None = None
    init_strategy: object = init_to_uniform
    model_kwargs: dict | None = None
    processes: int | None = None
    kernel_options: dict = field(default_factory=dict)
    settings: object = field(default=None, init=False)
    foreign: tuple = field(default=(), init=False)

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen: normalise once)
        check_choice(self.kernel, "kernel", [*KERNELS, *MANY_CHAIN_KERNELS])
        check_choice(self.engine, "engine", list(ENGINES))
        check_positive_int(self.num_samples, "num_samples")
        check_nonnegative_int(self.warmup_steps, "warmup_steps")
        if self.compile is not None:
            check_choice(self.compile, "compile", ["auto", *COMPILE_MODES])
        chains = self.num_chains
        if chains is None:
            chains = CHEES_CHAINS if self.many_chains else default_chains()
        set_("num_chains", check_positive_int(chains, "num_chains"))
        processes = self.processes
        set_("processes", min(chains, cores()) if processes is None else check_positive_int(processes, "processes"))
        set_("model_kwargs", dict(self.model_kwargs or {}))
        options = dict(self.kernel_options)
        set_("kernel_options", options)
        if self.many_chains:
            set_("settings", self._chees_settings(options))
            return
        foreign = tuple(sorted(set(options) - OWN_OPTIONS))
        set_("foreign", foreign)
        if "jitter" in options and (self.kernel != "hmc" or self.engine == "pyro" or foreign):
            other = "NUTS" if self.kernel != "hmc" else "Pyro's HMC"
            raise ValueError(
                f"jitter={options['jitter']!r} is an option of this library's HMC (kernel='hmc', engine='ppmodels', "
                f"no option only Pyro's kernel has), not of {other}: got kernel={self.kernel!r}, "
                f"engine={self.engine!r}" + (f", options {list(foreign)}" if foreign else "")
            )
        if not self.runs_pyro:
            set_("settings", _kernel_settings(self.kernel, options))

    def _chees_settings(self, options) -> CheesSettings:
        if self.engine != "ppmodels":
            raise ValueError(
                "kernel='chees' is this library's kernel (Pyro has none): engine must be 'ppmodels', "
                f"got {self.engine!r}"
            )
        unknown = sorted(set(options) - CHEES_OPTIONS)
        if unknown:
            raise ValueError(
                f"kernel='chees' has no option {', '.join(map(repr, unknown))}; its options are {sorted(CHEES_OPTIONS)}"
            )
        settings = CheesSettings(**options)
        if self.num_chains < 2:
            raise ValueError(
                f"kernel='chees' adapts its trajectory length from how far its chains spread: num_chains must be at "
                f"least 2 (64 by default), got {self.num_chains}"
            )
        return settings

    def build_potential(self, model, args):
        """The model's potential as these options describe it: its chains' starts drawn by
        ``init_strategy`` from ``seed``, not yet compiled (:func:`~ppmodels.infer.density.preparation.build`)."""
        return build(
            model,
            args,
            self.model_kwargs,
            num_chains=self.num_chains,
            seed=self.seed,
            max_plate_nesting=self.max_plate_nesting,
            init_strategy=self.init_strategy,
        )

    @property
    def many_chains(self) -> bool:
        """The kernel moves many chains in lockstep (ChEES)."""
        return self.kernel in MANY_CHAIN_KERNELS

    @property
    def runs_pyro(self) -> bool:
        """Pyro's own ``MCMC`` runs: asked for, or sent there by an option only Pyro's kernel has."""
        return self.engine == "pyro" or bool(self.foreign)


def _kernel_settings(kernel, options) -> KernelSettings:
    values = dict(options)
    if kernel == "hmc":
        values.pop("max_tree_depth", None)
        if values.get("num_steps") is None and values.get("trajectory_length") is None:
            values["trajectory_length"] = 2 * math.pi
    return KernelSettings(**values)


__all__ = [
    "CHEES_CHAINS",
    "ENGINES",
    "KERNELS",
    "MANY_CHAIN_KERNELS",
    "MCMCOptions",
    "OWN_OPTIONS",
    "cores",
    "default_chains",
]
