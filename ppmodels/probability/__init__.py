"""``ppmodels.probability``: MindSpore's ``nn.probability`` names on Pyro and PyTorch.

Change ``from mindspore.nn.probability import dpn, infer`` to
``from ppmodels.probability import dpn, infer`` and use ``torch.nn`` modules where
MindSpore has Cells. ``WithLossCell`` and ``TrainOneStepCell`` (``mindspore.nn`` in
MindSpore) live here too.
"""

from . import bnn_layers, dpn, infer, toolbox, transforms
from .cells import TrainOneStepCell, WithLossCell

__all__ = ["TrainOneStepCell", "WithLossCell", "bnn_layers", "dpn", "infer", "toolbox", "transforms"]
