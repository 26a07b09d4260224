"""The graph machinery the compiled training step and the compiled log density share: a
function of tensors traced into an aten graph, rewritten, and run by TorchScript or compiled
by inductor. It imports nothing else from :mod:`ppmodels.infer`.

- :mod:`~ppmodels.infer.graphs.tracing`: tracing contexts, one fake mode per trace, why a
  trace failed (:class:`GraphUnsupported`);
- :mod:`~ppmodels.infer.graphs.recorder`: a function of one tensor recorded quickly;
- :mod:`~ppmodels.infer.graphs.loop_batching`: a Python loop's per-step copies batched back;
- :mod:`~ppmodels.infer.graphs.rewrites`: in-place operations made functional, repeats removed;
- :mod:`~ppmodels.infer.graphs.decompositions`: inductor's decompositions and small-tensor ones;
- :mod:`~ppmodels.infer.graphs.backends`: TorchScript or inductor, :data:`COMPILE_MODES`.
"""

from .backends import COMPILE_MODES
from .tracing import GraphUnsupported

__all__ = ["COMPILE_MODES", "GraphUnsupported"]
