"""``WithLossCell`` and ``TrainOneStepCell``: MindSpore's training wrappers, on torch."""

from __future__ import annotations

import pyro.optim
import torch
from torch import nn

from ._checks import check_cell


class WithLossCell(nn.Module):
    """``loss_fn(backbone(data), label)``, as MindSpore's ``nn.WithLossCell``.

    A :class:`~ppmodels.probability.dpn.ConditionalVAE` backbone is called as
    ``backbone(data, label)``, so a CVAE needs no hand-written ``WithLossCell`` subclass
    (MindSpore's docs ask for one; such a subclass still works).

    :param backbone: the network (a ``torch.nn.Module``).
    :param loss_fn: the loss (a ``torch.nn.Module`` or callable).
    """

    def __init__(self, backbone, loss_fn):
        super().__init__()
        self._backbone = check_cell(backbone, "The backbone must be Cell type")
        if not callable(loss_fn):
            raise TypeError(f"The loss_fn must be callable (a Cell), but got {type(loss_fn).__name__}")
        self._loss_fn = loss_fn

    def forward(self, data, label=None):
        from .dpn import ConditionalVAE

        out = self._backbone(data, label) if isinstance(self._backbone, ConditionalVAE) else self._backbone(data)
        return self._loss_fn(out, label)

    @property
    def backbone_network(self):
        return self._backbone


class TrainOneStepCell(nn.Module):
    """One optimizer step per call, returning the loss computed before the update.

    :param network: a loss network such as :class:`WithLossCell`.
    :param optimizer: a ``torch.optim.Optimizer`` over the network's parameters.
    """

    def __init__(self, network, optimizer):
        super().__init__()
        self.network = check_cell(network, "The network must be Cell type")
        if isinstance(optimizer, pyro.optim.PyroOptim):
            from ..infer import make_optimizer

            optimizer = make_optimizer(optimizer, list(network.parameters()), None)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"The optimizer must be Cell type (a torch.optim.Optimizer in ppmodels), "
                f"but got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer

    def forward(self, *inputs):
        self.optimizer.zero_grad(set_to_none=True)
        if callable(getattr(self.network, "loss_and_objective", None)):  # WithBNNLossCell: the KL once
            loss, objective = self.network.loss_and_objective(*inputs)
            objective.backward()
        else:
            loss = self.network(*inputs)
            loss.sum().backward() if loss.dim() else loss.backward()
        self.optimizer.step()
        return loss.detach()
