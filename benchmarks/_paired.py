"""Paired timing shared by the benchmarks: each round runs every method once, in a rotating
order, and each method's ratio to the reference is taken within the round, so the slow drift
of a shared virtual machine cancels."""

from __future__ import annotations

import statistics
import time


def clock():
    return time.perf_counter(), time.process_time()


def since(start):
    """(wall seconds, CPU seconds of this process) since ``start``."""
    return time.perf_counter() - start[0], time.process_time() - start[1]


def rotations(names, rounds):
    """For each round, the method names in that round's order."""
    names = list(names)
    for r in range(rounds):
        k = r % len(names)
        yield r, names[k:] + names[:k]


def paired(rates: dict, name: str, reference: str):
    """Median and interquartile range of ``rates[name][r] / rates[reference][r]`` over rounds."""
    ratios = sorted(a / b for a, b in zip(rates[name], rates[reference]))
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
    return statistics.median(ratios), q1, q3
