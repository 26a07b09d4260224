"""ppmodels: deep generative models and Bayesian networks as Pyro model/guide pairs.

Subpackages: ``data``, ``nn``, ``models``, ``infer``, ``toolbox``, ``plots``, and the MindSpore-named
facade ``probability``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
