"""How many threads the command's process computes with, set before torch loads.

torch's CPU kernels run on an OpenMP pool of one thread per core, whose threads spin-wait at
the end of every parallel operation. On a quiet machine that is the fastest choice, but when
another process takes a core (a second training, a browser, a shared virtual machine's
neighbour) each of the many small operations of a Pyro step waits for a thread that is not
running: measured here, ``ppmodels demo`` beside a second two-thread Pyro training slowed
about 2x (372 s instead of 19 s once in an issue's report), while with one thread it slowed
about 1.4x and cost nothing measurable on a quiet machine (``benchmarks/busy_machine.py``).
The models the command trains are small enough that one thread is the better default:

- ``PPMODELS_THREADS=N`` (default 1): N threads for torch's operations (OpenMP and MKL);
- ``PPMODELS_THREADS=omp``: leave OpenMP's own defaults (a thread per core);
- ``OMP_NUM_THREADS`` set by you is always kept (torchrun sets it to 1 per process).

Only a process that has not loaded torch yet is configured (``python -m ppmodels`` and the
``ppmodels`` script); a program that calls :func:`ppmodels.cli.main` after importing torch
keeps its own settings. Library users choose for themselves: see ``docs/getting_started.md``.
"""

from __future__ import annotations

import os
import sys

VARIABLE = "PPMODELS_THREADS"


def configure(environ=None) -> str | None:
    """Set ``OMP_NUM_THREADS`` (and ``MKL_NUM_THREADS``) for this process before torch loads;
    returns the thread count set, or ``None`` when nothing was changed.

    :raises ValueError: ``PPMODELS_THREADS`` is neither a positive int nor ``omp``.
    """
    environ = os.environ if environ is None else environ
    choice = environ.get(VARIABLE, "1").strip().lower()
    if choice != "omp":
        try:
            count = int(choice)
        except ValueError:
            count = 0
        if count <= 0:
            raise ValueError(f"{VARIABLE} must be a positive int or 'omp', but got {environ.get(VARIABLE)!r}")
    if choice == "omp" or "OMP_NUM_THREADS" in environ or "torch" in sys.modules:
        return None
    environ["OMP_NUM_THREADS"] = str(count)
    environ.setdefault("MKL_NUM_THREADS", str(count))
    return str(count)
