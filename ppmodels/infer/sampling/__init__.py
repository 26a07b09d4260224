"""MCMC: :func:`mcmc` and the units it is made of, as Pyro's ``infer/mcmc`` and BlackJAX's
``mcmc/`` + ``adaptation/`` split them.

- :mod:`~ppmodels.infer.sampling.driver`: :func:`mcmc`, from its options to its result;
- :mod:`~ppmodels.infer.sampling.options`: mcmc's keywords as one frozen, checked value;
- :mod:`~ppmodels.infer.sampling.kernel`: the contract between a kernel and the driver;
- :mod:`~ppmodels.infer.sampling.nuts`: NUTS and HMC, one chain;
- :mod:`~ppmodels.infer.sampling.chees`: ChEES-HMC, many chains in lockstep;
- :mod:`~ppmodels.infer.sampling.adaptation`: warm-up (Stan's windows, dual averaging, Welford);
- :mod:`~ppmodels.infer.sampling.parallel`: chains in forked processes, one stream each;
- :mod:`~ppmodels.infer.sampling.many_chains`: ChEES's run, from its NUTS start to its r-hat check;
- :mod:`~ppmodels.infer.sampling.pyro_engine`: Pyro's own ``MCMC``, one option away;
- :mod:`~ppmodels.infer.sampling.result`: what mcmc returns.

The potential every kernel runs on is :mod:`ppmodels.infer.density`'s.
"""

from .chees import CheesSettings
from .driver import auto_compile, mcmc
from .nuts import KernelSettings
from .options import CHEES_CHAINS, ENGINES, KERNELS, MANY_CHAIN_KERNELS, MCMCOptions, cores, default_chains
from .result import MCMCResult

__all__ = [
    "CHEES_CHAINS",
    "CheesSettings",
    "ENGINES",
    "KERNELS",
    "KernelSettings",
    "MANY_CHAIN_KERNELS",
    "MCMCOptions",
    "MCMCResult",
    "auto_compile",
    "cores",
    "default_chains",
    "mcmc",
]
