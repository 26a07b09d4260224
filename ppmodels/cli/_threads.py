"""How the command's process computes with threads: chosen before torch loads, and per phase.

torch's CPU kernels (and MKL's) run on an OpenMP pool of one thread per core whose threads
spin-wait at the end of every parallel operation. On a quiet machine that is the fastest
choice; but when another process takes a core (a second training, a shared virtual
machine's neighbour), each parallel operation waits for a thread that is not running while
the others spin on the cores it needs: measured here, ``ppmodels demo --epochs 20`` beside a
second two-thread Pyro training took 2.5x its quiet time (1.8-3.6x; 372 s instead of 19 s
once, in an issue's report). What the command does (``benchmarks/busy_machine.py``; figures
in ``benchmarks/README.md``):

- The training steps of small networks (the MLP VAEs and the demo, the neural process, the
  SS-VAE) run on one thread. A Pyro step of such a network is many small operations: a second
  thread gains ~20% of the training time on a quiet machine and is what stalls on a busy one.
  The demo then takes 1.5x its quiet time beside the two-thread training, and 8% longer on a
  quiet machine. Evaluation (importance sampling with hundreds of draws per image: large
  operations) keeps every thread.
- ``train bnn`` (LeNet-5's convolutions, which use both threads: one thread costs 28% there)
  keeps every thread and lets waiting threads sleep instead of spinning (OpenMP's
  ``OMP_WAIT_POLICY=PASSIVE``, which must be set before torch loads): 1.55x its quiet time
  beside the same training instead of 2.7x, for 6% more on a quiet machine. (Sleeping
  threads would cost the small networks' training twice its time: each of their many small
  operations would wake a thread.)

Settings:

- ``PPMODELS_THREADS`` unset: the above (the default);
- ``PPMODELS_THREADS=N``: N threads throughout (``OMP_NUM_THREADS=N``);
- ``PPMODELS_THREADS=omp``: OpenMP's and torch's own defaults throughout;
- an ``OMP_NUM_THREADS`` you set is kept, and no phase changes the thread count then; an
  ``OMP_WAIT_POLICY`` you set is kept.

Only a process that has not loaded torch yet is configured (``python -m ppmodels`` and the
``ppmodels`` script). A program that calls :func:`ppmodels.cli.main` after importing torch
keeps its own settings throughout. Inside the library, ``fit`` also trains a small model on
one thread unless the threads are the user's choice (:mod:`ppmodels.infer.threads`; the
command's one thread counts as a choice and is kept).
"""

from __future__ import annotations

import contextlib
import os
import sys

VARIABLE = "PPMODELS_THREADS"


def configure(environ=None, passive: bool = False) -> dict:
    """Set OpenMP's variables for this process before torch loads (``passive``: waiting
    threads sleep, for commands that keep every thread); returns those it set.

    :raises ValueError: ``PPMODELS_THREADS`` is neither a positive int nor ``omp``.
    """
    environ = os.environ if environ is None else environ
    choice = environ.get(VARIABLE, "").strip().lower()
    count = None
    if choice not in ("", "omp"):
        try:
            count = int(choice)
        except ValueError:
            count = 0
        if count <= 0:
            raise ValueError(f"{VARIABLE} must be a positive int or 'omp', but got {environ.get(VARIABLE)!r}")
    global _per_phase
    _per_phase = False
    if choice == "omp" or "torch" in sys.modules:
        return {}
    wanted = {"OMP_WAIT_POLICY": "PASSIVE"} if passive else {}
    if count is not None:
        wanted.update(OMP_NUM_THREADS=str(count), MKL_NUM_THREADS=str(count))
    changed = {k: v for k, v in wanted.items() if k not in environ}
    environ.update(changed)
    _per_phase = count is None and not passive and "OMP_NUM_THREADS" not in environ
    return changed


_per_phase = False  # configure() chose the threads: small networks train on one


@contextlib.contextmanager
def training(small: bool):
    """The training phase: one thread for a small network's steps when :func:`configure`
    chose the threads (see the module's docstring), every thread otherwise."""
    if not (small and _per_phase):
        yield
        return
    from ..infer.threads import one_thread

    with one_thread():
        yield
