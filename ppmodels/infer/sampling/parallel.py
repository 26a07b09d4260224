"""Chains in parallel: NUTS/HMC chains run in forked processes, each on one thread, each with its
own random stream, so the same seed gives the same draws in parallel or one after another."""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass

import numpy as np
import torch

from ..._progress import progress_bar
from .nuts import Chain

_WORK = {}  # the parent's potential and settings, inherited by forked chain processes


@dataclass(frozen=True)
class ChainTask:
    """One chain to run: its index (its random stream and its progress bar's place), its
    starting point, the seed all chains share, its draws and warm-up, the threads its process
    may use (0: leave torch's setting) and whether it shows a progress bar."""

    index: int
    z0: np.ndarray
    seed: int
    num_samples: int
    warmup: int
    threads: int = 0
    progress: bool = False


def can_fork(potential, processes: int) -> bool:
    """Chains run in forked processes unless there is one process to run, this is a daemon
    (which may not start processes), the platform cannot fork, or the potential lives on a
    GPU (CUDA does not survive a fork): then one after another, with the same draws."""
    return (
        processes > 1
        and not multiprocessing.current_process().daemon
        and "fork" in multiprocessing.get_all_start_methods()
        and potential.device.type == "cpu"
    )


def run_chains(potential, settings, inits, *, seed, num_samples, warmup, processes, progress) -> list:
    """One :class:`~ppmodels.infer.sampling.nuts.Chain` from each of ``inits`` with
    ``settings``, on ``processes`` forked processes (one thread each: the chains share the
    cores) or one after another; a :class:`~ppmodels.infer.sampling.kernel.ChainResult` each."""
    threads = 1 if processes > 1 else 0
    tasks = [ChainTask(i, z0, seed, num_samples, warmup, threads, progress) for i, z0 in enumerate(inits)]
    _WORK.update(potential=potential, settings=settings)
    try:
        if processes <= 1:
            return [_run_chain(t) for t in tasks]
        # fork: the compiled potential is inherited, not rebuilt in each process
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            return pool.map(_run_chain, tasks, chunksize=1)
    finally:
        _WORK.clear()


def _run_chain(task: ChainTask):
    if task.threads:
        torch.set_num_threads(task.threads)
    potential, settings = _WORK["potential"], _WORK["settings"]
    rng = np.random.default_rng(np.random.SeedSequence(task.seed).spawn(task.index + 1)[task.index])
    total = task.num_samples + task.warmup
    with progress_bar(task.progress, total, f"chain {task.index}", position=task.index) as update:
        return Chain(potential, task.z0, rng, settings).run(task.num_samples, task.warmup, progress=update)


__all__ = ["ChainTask", "can_fork", "run_chains"]
