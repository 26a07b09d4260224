"""``transforms.TransformToBNN``: turn a trainable deterministic network into a Bayesian one,
MindSpore's way (``torch.nn.Linear``/``Conv2d`` stand where MindSpore has ``nn.Dense``/``nn.Conv2d``).

As in MindSpore, the layers are replaced **in place** in the backbone, so the user's network
object becomes the Bayesian network; the new layers start from fresh posteriors (MindSpore's
initialisation), not from the deterministic weights. For a converter that leaves the network
untouched and starts from its weights, use :func:`ppmodels.models.to_bayesian`.
"""

from __future__ import annotations

import inspect

from torch import nn

from ..bnn_layers._layers import ConvReparam, DenseLocalReparam, DenseReparam, WithBNNLossCell, check_factor
from ..cells import TrainOneStepCell


def _dense_args(layer):
    return {"in_channels": layer.in_features, "out_channels": layer.out_features, "has_bias": layer.bias is not None}


def _conv_args(layer):
    if layer.padding_mode != "zeros":
        raise ValueError(
            f"ConvReparam pads with zeros only, but the layer has padding_mode={layer.padding_mode!r}; "
            "use ppmodels.models.to_bayesian, which keeps the padding mode"
        )
    if isinstance(layer.padding, str):
        pad_mode, padding = layer.padding, 0
    else:
        top, left = layer.padding
        pad_mode, padding = ("pad", (top, top, left, left)) if (top or left) else ("valid", 0)
    return {
        "in_channels": layer.in_channels,
        "out_channels": layer.out_channels,
        "kernel_size": tuple(layer.kernel_size),
        "stride": tuple(layer.stride),
        "pad_mode": pad_mode,
        "padding": padding,
        "dilation": tuple(layer.dilation),
        "group": layer.groups,
        "has_bias": layer.bias is not None,
    }


_DNN_LAYERS = {nn.Linear: "nn.Linear", nn.Conv2d: "nn.Conv2d"}
_BNN_LAYERS = (DenseReparam, DenseLocalReparam, ConvReparam)


class TransformToBNN:
    """``TransformToBNN(trainable_dnn, dnn_factor=1, bnn_factor=1)``.

    :param trainable_dnn: ``TrainOneStepCell(WithLossCell(backbone, loss_fn), optimizer)``.
    :param dnn_factor: scales the data term (see
        :class:`~ppmodels.probability.bnn_layers.WithBNNLossCell`).
    :param bnn_factor: scales the KL.
    """

    def __init__(self, trainable_dnn, dnn_factor=1, bnn_factor=1):
        if not isinstance(trainable_dnn, TrainOneStepCell):
            raise TypeError(
                "`trainable_dnn` must be a TrainOneStepCell(WithLossCell(backbone, loss_fn), optimizer), "
                f"but got {type(trainable_dnn).__name__}"
            )
        net_with_loss = trainable_dnn.network
        self.optimizer = trainable_dnn.optimizer
        self.backbone = net_with_loss.backbone_network
        self.loss_fn = net_with_loss._loss_fn
        self.dnn_factor = check_factor(dnn_factor, "dnn_factor")
        self.bnn_factor = check_factor(bnn_factor, "bnn_factor")

    def transform_to_bnn_model(
        self, get_dense_args=_dense_args, get_conv_args=_conv_args, add_dense_args=None, add_conv_args=None
    ):
        """Replace every ``nn.Linear`` with ``DenseReparam`` and every ``nn.Conv2d`` with
        ``ConvReparam``; returns ``TrainOneStepCell(WithBNNLossCell(...), optimizer)`` with a
        new optimizer of the same class and settings over the Bayesian parameters."""
        self._replace(nn.Linear, DenseReparam, get_dense_args, add_dense_args or {})
        self._replace(nn.Conv2d, ConvReparam, get_conv_args, add_conv_args or {})
        return self._trainable()

    def transform_to_bnn_layer(
        self, dnn_layer_type=None, bnn_layer_type=None, get_args=None, add_args=None, *, dnn_layer=None, bnn_layer=None
    ):
        """Replace the layers of one type: ``transform_to_bnn_layer(nn.Linear, DenseReparam)``.
        The documented keywords ``dnn_layer``/``bnn_layer`` and the code's
        ``dnn_layer_type``/``bnn_layer_type`` both work."""
        dnn_layer_type = dnn_layer_type if dnn_layer_type is not None else dnn_layer
        bnn_layer_type = bnn_layer_type if bnn_layer_type is not None else bnn_layer
        if dnn_layer_type not in _DNN_LAYERS:
            raise ValueError(
                f" 'dnn_layer'{dnn_layer_type}, should be one of values in {', '.join(_DNN_LAYERS.values())}."
            )
        if bnn_layer_type not in _BNN_LAYERS:
            names = ", ".join(c.__name__ for c in _BNN_LAYERS)
            raise ValueError(f" 'bnn_layer'{bnn_layer_type}, should be one of values in {names}.")
        if get_args is None:
            get_args = _dense_args if dnn_layer_type is nn.Linear else _conv_args
        self._replace(dnn_layer_type, bnn_layer_type, get_args, add_args or {})
        return self._trainable()

    def _replace(self, dnn_type, bnn_type, get_args, add_args):
        def walk(module):
            for name, child in module.named_children():
                if type(child) is dnn_type:
                    new = bnn_type(**get_args(child), **add_args)
                    device = next(child.parameters()).device
                    setattr(module, name, new.to(device))
                else:
                    walk(child)

        walk(self.backbone)

    def _trainable(self):
        cls = type(self.optimizer)
        accepted = inspect.signature(cls.__init__).parameters
        settings = {k: v for k, v in self.optimizer.defaults.items() if k in accepted}
        optimizer = cls(self.backbone.parameters(), **settings)
        loss = WithBNNLossCell(self.backbone, self.loss_fn, self.dnn_factor, self.bnn_factor)
        return TrainOneStepCell(loss, optimizer)


__all__ = ["TransformToBNN"]
