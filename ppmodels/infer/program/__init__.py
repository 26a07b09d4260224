"""A user's Pyro program as every engine here reads it: a model/guide pair in any of the forms
Pyro users write it (:mod:`~ppmodels.infer.program.pairs`), and a model's sites as one trace
shows them (:mod:`~ppmodels.infer.program.sites`)."""

from .pairs import FunctionPair, as_pair
from .sites import is_discrete, latent_names, latent_sites, model_function, plate_nesting, prior_trace

__all__ = [
    "FunctionPair",
    "as_pair",
    "is_discrete",
    "latent_names",
    "latent_sites",
    "model_function",
    "plate_nesting",
    "prior_trace",
]
