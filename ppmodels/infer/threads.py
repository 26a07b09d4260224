"""How many threads a small model's training runs on.

torch runs its CPU operations on a pool of one thread per core whose idle threads spin. A
step of a small model (a regression's weights, compare's Gaussian guides) is many operations
on tensors under torch's grain size (32,768 elements, below which an operation is not split
over threads), so a second thread gains it nothing on a quiet machine; beside another busy
process it is what collapses the step: every parallel region waits for a thread that is not
running (``benchmarks/README.md``, "threads", has the figures). So while ``fit`` trains a
small model, torch runs on one thread, and the count is restored after.

A model is small when every tensor it trains and one batch of every data tensor have fewer
elements than the grain size. A choice of yours is kept: ``PPMODELS_THREADS`` (a count, or ``omp`` for
torch's own) or ``OMP_NUM_THREADS`` in the environment, or a count set with
``torch.set_num_threads`` after ppmodels was imported.
"""

from __future__ import annotations

import contextlib
import os

import torch

#: torch's grain size: operations on fewer elements run on the calling thread alone
GRAIN_SIZE = 32768
#: the environment variables that say the user chose the threads
USER_VARIABLES = ("PPMODELS_THREADS", "OMP_NUM_THREADS")
_AT_IMPORT = torch.get_num_threads()


def user_chose(environ=None) -> bool:
    """Whether the threads are the user's choice (see the module's docstring)."""
    environ = os.environ if environ is None else environ
    return any(environ.get(v, "").strip() for v in USER_VARIABLES) or torch.get_num_threads() != _AT_IMPORT


def is_small(sizes) -> bool:
    """Whether every size (a tensor's number of elements) is below :data:`GRAIN_SIZE`;
    ``None`` (sizes unknown, e.g. batches streamed from a DataLoader) is not small."""
    return sizes is not None and all(n < GRAIN_SIZE for n in sizes)


@contextlib.contextmanager
def one_thread():
    """One torch thread inside the block; torch's count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def one_thread_if_small(sizes, device=None):
    """One torch thread inside the block when ``sizes`` (the elements of each tensor a step
    reads) are small (:func:`is_small`), the device is the CPU and the threads are not the
    user's choice; torch's count is restored after."""
    on_cpu = device is None or torch.device(device).type == "cpu"
    if not on_cpu or user_chose() or torch.get_num_threads() == 1 or not is_small(sizes):
        yield
        return
    with one_thread():
        yield


__all__ = ["GRAIN_SIZE", "USER_VARIABLES", "is_small", "one_thread", "one_thread_if_small", "user_chose"]
