"""The training engine: :func:`fit` and the units it is made of.

- :mod:`~ppmodels.infer.training.loop`: :func:`fit`, a short loop over steps and callbacks;
- :mod:`~ppmodels.infer.training.options`: fit's keywords as one frozen, checked value;
- :mod:`~ppmodels.infer.training.data`: what users pass as data, as batches;
- :mod:`~ppmodels.infer.training.step`: one step (objective, first-step checks, optimizer);
- :mod:`~ppmodels.infer.training.checks`: what the first step refuses, and why;
- :mod:`~ppmodels.infer.training.estimators`: Pyro's ELBOs by name, and their traceable form;
- :mod:`~ppmodels.infer.training.compiled_step`: the step traced into a graph, guarded;
- :mod:`~ppmodels.infer.training.params`: what is trained; the one reader of Pyro's store;
- :mod:`~ppmodels.infer.training.optimizers`: the optimizer from what the user gave;
- :mod:`~ppmodels.infer.training.callbacks`, :mod:`~ppmodels.infer.training.engine_callbacks`,
  :mod:`~ppmodels.infer.training.convergence`: what happens around the steps;
- :mod:`~ppmodels.infer.training.checkpoints`: saving and resuming a run;
- :mod:`~ppmodels.infer.training.distributed`: the same across processes (DDP);
- :mod:`~ppmodels.infer.training.result`: what fit returns.
"""

from .callbacks import (
    Callback,
    ClipParams,
    EarlyStopping,
    KwargSchedule,
    ProjectParams,
    TensorBoard,
    TrainState,
    linear_schedule,
)
from .checkpoints import load, save
from .convergence import StopOnConvergence
from .estimators import ELBO_NAMES, ESTIMATORS, EnumELBO, Objective, get_elbo
from .loop import fit
from .optimizers import make_optimizer
from .options import FitOptions
from .result import FitResult

__all__ = [
    "Callback",
    "ClipParams",
    "ELBO_NAMES",
    "ESTIMATORS",
    "EarlyStopping",
    "EnumELBO",
    "FitOptions",
    "FitResult",
    "KwargSchedule",
    "Objective",
    "ProjectParams",
    "StopOnConvergence",
    "TensorBoard",
    "TrainState",
    "fit",
    "get_elbo",
    "linear_schedule",
    "load",
    "make_optimizer",
    "save",
]
