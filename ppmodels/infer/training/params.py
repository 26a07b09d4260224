"""The trained parameters: the one object that knows what a run trains — the pair's module
parameters and the ``pyro.param`` values its programs declare — and the only code in ppmodels
that reads Pyro's global parameter store.

Pyro keeps ``pyro.param`` values (a classic guide's, an autoguide's, a network registered
with ``pyro.module``) in one process-wide store; a run finds them in its first step's trace.
The compiled step, the NaN guard, checkpoints and the gradient clearing all go through
:class:`TrainedParameters`, and :func:`isolated_store` is how a unit (``compare``) runs
programs in a store of their own.
"""

from __future__ import annotations

import contextlib

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger


class TrainedParameters:
    """What a run's optimizer trains, as ``(name, tensor)``: module parameters by their path in
    the pair, then the ``pyro.param`` values met in the first step, by their Pyro names (the
    unconstrained tensor, which is what is trained). Known after :meth:`collect`."""

    def __init__(self, pair):
        self.pair = pair
        self.named = []  # (name, tensor)
        self.store_names = []  # the pyro.param sites among them

    # -- the first step ---------------------------------------------------------------------
    def module_parameters(self) -> list:
        """What the ELBO's optimizer trains of the pair's modules: ``pair.elbo_parameters()``
        when the pair defines it (a VAE-GAN leaves its discriminator to its own update), else
        all module parameters."""
        pair = self.pair
        if callable(getattr(pair, "elbo_parameters", None)):
            return list(pair.elbo_parameters())
        return list(pair.parameters()) if isinstance(pair, torch.nn.Module) else []

    def fresh_gradients(self) -> Messenger:
        """For the first step: every trained tensor starts without a gradient, as after
        ``pyro.infer.SVI.step``. Module parameters are cleared now; a ``pyro.param`` value
        (a network registered with ``pyro.module`` that kept gradients from earlier work,
        another fit or the user's own loop) the first time the step announces it, in its
        forward pass, before any backward pass of the step."""
        for p in self.module_parameters():
            p.grad = None
        return _ClearOnFirstSight()

    def collect(self, recorder) -> tuple:
        """After the first step: the trained tensors from the pair's modules and the param
        sites ``recorder`` saw. Returns ``(module parameters, pyro.param leaves)``."""
        module_params = self.module_parameters()
        seen, leaves = {id(p) for p in module_params}, []
        store = pyro.get_param_store()
        for site in recorder.params():
            value = store[site.name] if site.name in store else site.value  # the tensor now behind the name
            leaf = unconstrained(value)
            if isinstance(leaf, torch.Tensor) and leaf.requires_grad and leaf.is_leaf and id(leaf) not in seen:
                seen.add(id(leaf))
                leaves.append((site.name, leaf))
        named = {id(p): n for n, p in self.pair.named_parameters()}
        self.named = [(named.get(id(p), f"param{i}"), p) for i, p in enumerate(module_params)] + leaves
        self.store_names = [n for n, _ in leaves]
        return module_params, [p for _, p in leaves]

    def for_compiled_step(self, optimizer, recorder) -> tuple:
        """``(trained, store_params)`` for :class:`~ppmodels.infer.training.compiled_step.CompiledStep`: every
        tensor the optimizer holds (a torch optimizer the user built may hold more than the
        pair's), and ``{pyro.param name: (index into trained, constraint)}`` for the sites
        whose value Pyro's store gives."""
        trained = list(self.named)
        known = {id(t) for _, t in trained}
        extra = [p for g in optimizer.param_groups for p in g["params"] if id(p) not in known]
        trained += [(f"optimizer.param{i}", p) for i, p in enumerate(extra)]
        index = {id(t): i for i, (_, t) in enumerate(trained)}
        store = pyro.get_param_store()
        constraints = store.get_state()["constraints"]
        store_params = {}
        for site in recorder.params():
            if site.name in store and id(store[site.name].unconstrained()) in index:
                store_params[site.name] = (index[id(store[site.name].unconstrained())], constraints[site.name])
        return trained, store_params

    def clear_gradients(self, optimizer=None) -> None:
        """Drop the gradients of everything trained (the optimizer's tensors included), as
        ``pyro.infer.SVI.step`` leaves them."""
        tensors = [t for _, t in self.named]
        if optimizer is not None:
            tensors += [p for g in optimizer.param_groups for p in g["params"]]
        for t in tensors:
            t.grad = None

    # -- checkpoints ------------------------------------------------------------------------
    def declare(self, args, kwargs, source) -> None:
        """Run the guide and the model once on a batch's ``(args, kwargs)``, without gradients,
        so that parameters created on first use (autoguides, ``pyro.param``) exist before a
        checkpoint's values are loaded into them (``source`` names the checkpoint in errors)."""
        try:
            with torch.no_grad(), pyro.validation_enabled(False), poutine.block():
                guide_trace = poutine.trace(self.pair.guide).get_trace(*args, **kwargs)
                poutine.replay(self.pair.model, trace=guide_trace)(*args, **kwargs)
        except Exception as error:
            raise ValueError(
                f"`resume`: running the guide and model once on the first batch (to create the parameters the "
                f"checkpoint {source} restores) failed: {type(error).__name__}: {error}"
            ) from error

    def state_dict(self) -> dict:
        """The ``pyro.param`` values trained (unconstrained copies), by name; module parameters
        are in the pair's own ``state_dict``."""
        store = pyro.get_param_store()
        return {n: store[n].unconstrained().detach().clone() for n in self.store_names if n in store}

    def load_state_dict(self, saved: dict, source) -> None:
        """Put ``saved`` (from :meth:`state_dict`) into the store's parameters, which the
        programs must have declared already; ``source`` names the checkpoint in errors."""
        store = pyro.get_param_store()
        for name, value in saved.items():
            if name not in store:
                raise ValueError(
                    f"`resume`: the checkpoint {source} holds the parameter {name!r}, which the guide and model no "
                    "longer declare with pyro.param"
                )
            leaf = store[name].unconstrained()
            if leaf.shape != value.shape:
                raise ValueError(
                    f"`resume`: the parameter {name!r} has shape {tuple(leaf.shape)}, but the checkpoint {source} "
                    f"holds shape {tuple(value.shape)}"
                )
            with torch.no_grad():
                leaf.copy_(value)
        self.store_names = list(saved)


class _ClearOnFirstSight(Messenger):
    def __init__(self):
        super().__init__()
        self.cleared = set()

    def _pyro_post_param(self, msg):
        leaf = unconstrained(msg["value"])
        if isinstance(leaf, torch.Tensor) and id(leaf) not in self.cleared:
            self.cleared.add(id(leaf))
            if leaf.grad is not None:
                leaf.grad = None


def unconstrained(value):
    """The tensor trained behind a ``pyro.param`` value (its unconstrained leaf), or ``value``."""
    return value.unconstrained() if has_leaf(value) else value


def has_leaf(value) -> bool:
    return isinstance(value, torch.Tensor) and callable(getattr(value, "unconstrained", None))


@contextlib.contextmanager
def isolated_store():
    """Run the block with an empty parameter store; the store is put back afterwards as it
    was (compare's guides, and a user's, train in a store of their own)."""
    store = pyro.get_param_store()
    saved = store.get_state()
    store.clear()
    try:
        yield
    finally:
        store.clear()
        store.set_state(saved)


def stored_shape(name: str):
    """The shape of the ``pyro.param`` named ``name`` in Pyro's store, or ``None``."""
    store = pyro.get_param_store()
    return tuple(store[name].shape) if name in store else None


__all__ = ["TrainedParameters", "isolated_store", "stored_shape"]
