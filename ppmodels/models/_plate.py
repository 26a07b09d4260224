from __future__ import annotations

import pyro
import torch

from .._validate import check_positive_int


class DataSizeMixin:
    """Gives a pair a ``num_data`` attribute and the ``"data"`` plate that uses it.

    With ``num_data`` set the plate has that size and a batch of B is scaled by
    ``num_data / B``; with ``None`` the plate is the batch itself (scale 1). ``num_data``
    travels in the module's ``state_dict`` (as extra state), so checkpoints keep it.
    """

    num_data = None
    #: the marker :func:`ppmodels.infer.fit` reads to treat a pair as one that scales its own
    #: mini-batches by ``num_data`` (a name no Pyro class has: Pyro's own modules may have a
    #: ``num_data`` attribute of their own, e.g. ``pyro.contrib.gp``'s VariationalSparseGP)
    scales_by_num_data = True

    def set_num_data(self, num_data):
        self.num_data = None if num_data is None else check_positive_int(num_data, "num_data")
        return self

    def data_plate(self, x: torch.Tensor, name: str = "data"):
        batch = x.shape[0]
        if self.num_data is None:
            return pyro.plate(name, batch)
        return pyro.plate(name, size=self.num_data, subsample=torch.arange(batch, device=x.device))

    def get_extra_state(self):
        return {"num_data": self.num_data}

    def set_extra_state(self, state):
        self.num_data = state.get("num_data") if isinstance(state, dict) else None
