"""``infer``: MindSpore's ``ELBO`` and ``SVI`` (``mindspore.nn.probability.infer``; also importable
as ``infer.variational``, ``infer.variational.elbo`` and ``infer.variational.svi``). Training
runs through :func:`ppmodels.infer.fit` with Pyro's ELBO."""

from ._variational import ELBO, SVI

__all__ = ["ELBO", "SVI"]
