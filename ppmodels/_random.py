"""Seeded randomness that leaves the caller's random state as it was."""

from __future__ import annotations

import contextlib

import pyro
import torch

from ._validate import check_device


@contextlib.contextmanager
def seeded(seed, device=None):
    """Run the block with ``pyro.set_rng_seed(seed)`` (nothing happens for ``None``); torch's
    generators (CPU, and ``device`` if it is a GPU) are restored afterwards."""
    if seed is None:
        yield
        return
    device = check_device(device)
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        pyro.set_rng_seed(seed)
        yield
