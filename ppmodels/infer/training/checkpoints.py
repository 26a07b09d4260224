"""Checkpoints: a pair's state, how to rebuild it, and (from fit) the training state.

:func:`save`/:func:`load` write and read a pair; :func:`save_training` and
:func:`load_training` are fit's side: the training state beside the pair (the losses so far,
the random states, the data order, the ``pyro.param`` values, the callbacks' states) and the
check that a resumed run has the settings of the run that wrote it.

A checkpoint is one ``torch.save`` file holding only tensors and plain data, so it loads
with ``torch.load(weights_only=True)``. It is written to a temporary file in the same
folder and renamed into place, so a crash mid-write never leaves a truncated checkpoint.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch

from ..._atomic import replaced_atomically
from ..._spec import build, try_spec_of

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


# -- fit's training state --------------------------------------------------------------------
def save_training(path, pair, optimizer, *, generator=None, device=None, **fit_state) -> Path:
    """Write a checkpoint of a run: ``pair``, ``optimizer``, this process's random states (and
    ``generator``'s, the data order's) and ``fit_state`` (plain data and tensors: the result
    so far, the data's and the callbacks' states, the pyro.param values, the settings, the seed)."""
    fit_state = {**fit_state, "rng": random_state(generator, device)}
    return save(path, pair, optimizer=optimizer, fit_state=fit_state)


def load_training(path, *, device=None, epochs, settings, seed) -> dict:
    """The checkpoint at ``path`` to resume a run from (its training state under ``"fit"``),
    checked: it holds a training state, has done at most ``epochs`` epochs, and was written
    with ``settings`` and ``seed`` (a ``ValueError`` listing what differs)."""
    state = load_state(path, map_location=device or "cpu")
    fit_state = state.get("fit")
    if fit_state is None:
        raise ValueError(f"`resume`: {path} holds no training state (it was not written by fit(checkpoint=...))")
    done = len(fit_state["result"]["train_loss"])
    if done > epochs:
        raise ValueError(
            f"`epochs={epochs}` is fewer than the {done} epochs the checkpoint {path} has already "
            "done; ask for at least as many epochs to resume"
        )
    saved = fit_state.get("settings")
    if saved is not None:
        changed = {k: (saved[k], settings.get(k)) for k in saved if k in settings and saved[k] != settings[k]}
        if fit_state.get("seed") is not None and seed not in (None, fit_state["seed"]):
            changed["seed"] = (fit_state["seed"], seed)
        if changed:
            listed = ", ".join(f"{k}: {a!r} in the checkpoint, {b!r} now" for k, (a, b) in changed.items())
            raise ValueError(
                f"`resume`: continuing {path} with other settings would not continue the same run ({listed}); "
                "resume with the checkpoint's settings, or start a new run without `resume`"
            )
    return state


def random_state(generator=None, device=None) -> dict:
    """Every random state a run draws from: torch's (Pyro's), Python's, numpy's, CUDA's on a
    CUDA ``device``, and ``generator``'s; tensors and plain data only (``weights_only`` loads it)."""
    import random

    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "pyro": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "cuda": torch.cuda.get_rng_state_all() if device is not None and device.type == "cuda" else None,
        "generator": generator.get_state() if generator is not None else None,
    }


def set_random_state(rng: dict, generator=None, device=None) -> None:
    """Put back what :func:`random_state` returned."""
    import random

    import numpy as np

    if rng.get("pyro") is not None:
        torch.set_rng_state(rng["pyro"])
    if rng.get("python") is not None:
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))
    if rng.get("numpy") is not None:
        kind, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if rng.get("cuda") is not None and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state_all(rng["cuda"])
    if rng.get("generator") is not None and generator is not None:
        generator.set_state(rng["generator"])
