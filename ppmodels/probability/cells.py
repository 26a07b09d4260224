"""``WithLossCell`` and ``TrainOneStepCell``: MindSpore's training wrappers, on torch."""

from __future__ import annotations

import pyro.optim
import torch
from torch import nn

from ..infer.training.optimizers import prefer_fused_adam
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
    :param str compile: ppmodels: ``"graph"`` or ``"inductor"`` run each call's loss and
        gradients as one traced graph of the network (as :func:`ppmodels.infer.fit` does; the
        first call runs eagerly), ``None`` (default) eagerly. A call whose graph cannot be
        traced falls back to eager with a warning.
    """

    def __init__(self, network, optimizer, compile=None):
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
        prefer_fused_adam(optimizer)  # MindSpore's Adam is one fused kernel; torch's default is not
        self.optimizer = optimizer
        if compile is not None:
            from ..infer.graphs.backends import COMPILE_MODES

            if compile not in COMPILE_MODES:
                raise ValueError(f"`compile` must be one of {list(COMPILE_MODES)} or None, but got {compile!r}")
        self.compile = compile
        self.__dict__["_compiled"] = None

    def _objective(self, *inputs):
        """``(loss to differentiate, value to return)``."""
        if callable(getattr(self.network, "loss_and_objective", None)):  # WithBNNLossCell: the KL once
            loss, objective = self.network.loss_and_objective(*inputs)
            return objective, loss
        loss = self.network(*inputs)
        return (loss.sum() if loss.dim() else loss), loss

    def _eager(self, inputs):
        objective, loss = self._objective(*inputs)
        objective.backward()
        return loss

    def forward(self, *inputs):
        self.optimizer.zero_grad(set_to_none=True)
        if self._compiled is not None:
            loss = self._compiled(inputs, {})
        else:
            loss = self._eager(inputs)
            if self.compile is not None:  # the first call ran eagerly; the next ones run a graph
                self._compiled = self._compiled_step()
        self.optimizer.step()
        return loss.detach()

    def _compiled_step(self):
        from ..infer.training.compiled_step import CompiledStep

        trained = [(f"param{i}", p) for i, p in enumerate(q for g in self.optimizer.param_groups for q in g["params"])]

        def loss_fn(args, kwargs):
            return self._objective(*args)

        def fallback(args, kwargs):
            return self._eager(args)

        return CompiledStep(self.network, loss_fn, trained, {}, self.compile, fallback=fallback)
