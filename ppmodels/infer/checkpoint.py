"""Checkpoints: a pair's state, how to rebuild it, and (from fit) the training state.

A checkpoint is one ``torch.save`` file holding only tensors and plain data, so it loads
with ``torch.load(weights_only=True)``. It is written to a temporary file in the same
folder and renamed into place, so a crash mid-write never leaves a truncated checkpoint.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch

from .._atomic import replaced_atomically
from .._spec import build, try_spec_of

FORMAT = "ppmodels-checkpoint"
VERSION = 1


def save(path, pair, *, optimizer=None, fit_state=None, metadata=None) -> Path:
    """Write ``pair`` (and optionally its optimizer and training state) to ``path`` atomically.

    :param pair: a ``torch.nn.Module``; ppmodels pairs also record how to rebuild themselves,
        so :func:`load` needs nothing else.
    :param dict metadata: plain data stored alongside (e.g. the command-line arguments).
    :returns: the path written.
    """
    if not isinstance(pair, torch.nn.Module):
        raise TypeError(f"`pair` must be a torch.nn.Module to be saved, but got {type(pair).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "spec": try_spec_of(pair),
        "state_dict": pair.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "fit": fit_state,
        "metadata": metadata or {},
    }
    # Serialised in memory first and written with Python's own file write: a failed write (a full
    # disk) is then an OSError with its errno, where torch's zip writer would report it as an
    # opaque RuntimeError ("[enforce fail at inline_container.cc] ... file write failed").
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with replaced_atomically(path) as fh:
        fh.write(buffer.getbuffer())
        fh.flush()
        os.fsync(fh.fileno())
    return path


def load_state(path, map_location="cpu") -> dict:
    """The raw checkpoint dictionary (tensors on ``map_location``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty: not a ppmodels checkpoint (an interrupted copy?)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 (torch raises EOFError, RuntimeError, UnpicklingError, KeyError...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{path} is not a readable ppmodels checkpoint: it is truncated, corrupt or of another kind "
            f"({type(exc).__name__}: {first[:200]})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a ppmodels checkpoint")
    if state.get("version", 0) > VERSION:
        raise ValueError(
            f"{path} was written by a newer ppmodels (checkpoint version {state['version']}); upgrade ppmodels"
        )
    return state


def restore_module(module, state) -> None:
    try:
        missing, unexpected = module.load_state_dict(state["state_dict"], strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(f"the checkpoint does not fit {type(module).__name__}: {exc}") from None
    if missing or unexpected:
        raise ValueError(
            f"the checkpoint does not fit {type(module).__name__}: missing keys {list(missing)}, "
            f"unexpected keys {list(unexpected)}"
        )


def load(path, into=None, map_location="cpu"):
    """Load a pair saved by :func:`save` (or by ``fit(checkpoint=...)``).

    :param into: a module of the same architecture to load the state into. Needed when the
        pair holds networks ppmodels cannot rebuild (your own ``nn.Module`` classes);
        ppmodels pairs built from ppmodels networks are rebuilt from the checkpoint alone.
    :returns: the pair, in evaluation mode.
    """
    state = load_state(path, map_location)
    if into is None:
        if state.get("spec") is None:
            raise ValueError(
                f"{path} holds a pair built from networks ppmodels cannot rebuild; build the same pair and "
                "pass it as load(path, into=pair)"
            )
        into = build(state["spec"])
    restore_module(into, state)
    if isinstance(map_location, (str, torch.device)):
        into.to(map_location)
    return into.eval()


def metadata(path) -> dict:
    return load_state(path).get("metadata", {})
