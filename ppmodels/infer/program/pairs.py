"""A model/guide pair in any of the forms Pyro users write it, as one ``nn.Module``.

``fit`` accepts an object with ``.model`` and ``.guide`` (a ppmodels pair, your own
``nn.Module`` or ``PyroModule``, a ``SimpleNamespace``, a plain class), a ``(model, guide)``
tuple of callables, or ``model=``/``guide=`` keywords. Anything that is not already an
``nn.Module`` is wrapped in :class:`FunctionPair`, whose submodules are the modules the
pair is made of (a ``PyroModule`` model, an autoguide, the owner of bound methods), so that
their parameters are trained, moved to a device and saved in checkpoints.
"""

from __future__ import annotations

import inspect

import torch


class FunctionPair(torch.nn.Module):
    """``model`` and ``guide`` callables as a pair; modules among them (or owning them) are
    registered as submodules."""

    def __init__(self, model, guide, owner=None):
        super().__init__()
        self.__dict__["_fns"] = (model, guide)
        self.parts = torch.nn.ModuleDict()
        for role, fn in (("model", model), ("guide", guide)):
            module = fn if isinstance(fn, torch.nn.Module) else getattr(fn, "__self__", None)
            if isinstance(module, torch.nn.Module) and not any(module is m for m in self.parts.values()):
                self.parts[role] = module
        if owner is not None and not isinstance(owner, torch.nn.Module):
            for key, value in sorted(vars(owner).items()):
                if isinstance(value, torch.nn.Module) and not any(value is m for m in self.parts.values()):
                    self.parts[f"owner_{key}"] = value

    def model(self, *args, **kwargs):
        return self._fns[0](*args, **kwargs)

    def guide(self, *args, **kwargs):
        return self._fns[1](*args, **kwargs)

    @property
    def model_fn(self):
        return self._fns[0]

    @property
    def guide_fn(self):
        return self._fns[1]


def as_pair(pair=None, model=None, guide=None) -> torch.nn.Module:
    """The pair as an ``nn.Module`` with ``.model`` and ``.guide``.

    :raises TypeError: naming what is missing or not callable.
    """
    if pair is not None and (model is not None or guide is not None):
        raise TypeError("give either `pair` or `model=` and `guide=`, not both")
    if pair is None:
        if model is None or guide is None:
            missing = [n for n, v in (("model", model), ("guide", guide)) if v is None]
            raise TypeError(
                f"fit needs a pair (an object with .model and .guide, or a (model, guide) tuple) or both "
                f"`model=` and `guide=`, but {' and '.join(f'`{m}`' for m in missing)} is missing"
            )
        pair = (model, guide)
    if isinstance(pair, tuple):
        if len(pair) != 2:
            raise TypeError(f"`pair` as a tuple must be (model, guide), but it has {len(pair)} items")
        for role, fn in zip(("model", "guide"), pair):
            if not callable(fn):
                raise TypeError(f"`pair`: the {role} must be callable, but got {type(fn).__name__}")
        return FunctionPair(*pair)
    for role in ("model", "guide"):
        if not callable(getattr(pair, role, None)):
            raise TypeError(
                f"`pair` must have callable .model and .guide methods (a model/guide pair), "
                f"but {type(pair).__name__} has no callable .{role}"
            )
    if isinstance(pair, torch.nn.Module):
        return pair
    return FunctionPair(pair.model, pair.guide, owner=pair)


def declares_data_size(pair) -> bool:
    """ppmodels' convention: a pair marked ``scales_by_num_data = True`` (a
    :class:`ppmodels.models.DataSizeMixin`, as ppmodels' own pairs are) scales its own
    mini-batches to the data set's size, which ``fit`` gives it with ``set_num_data``. A
    ``num_data`` attribute alone does not count: Pyro's own modules may have one with another
    meaning (``pyro.contrib.gp``'s VariationalSparseGP scales its likelihood by it)."""
    return getattr(type(pair), "scales_by_num_data", False) is True and callable(getattr(pair, "set_num_data", None))


def signature_of(fn):
    """``fn``'s signature (a module's ``forward``), or ``None`` when it has none to read."""
    target = fn.forward if isinstance(fn, torch.nn.Module) else fn
    try:
        return inspect.signature(target)
    except (TypeError, ValueError):
        return None


def accepts_keyword(fn, name) -> bool | None:
    """Whether ``fn`` takes a keyword argument ``name`` (``None``: cannot tell)."""
    sig = signature_of(fn)
    if sig is None:
        return None
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return True
        if p.name == name and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            return True
    return False


def names_keyword(fn, name) -> bool:
    """Whether ``fn``'s signature names ``name`` explicitly (``**kwargs`` does not count)."""
    sig = signature_of(fn)
    if sig is None:
        return False
    p = sig.parameters.get(name)
    return p is not None and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def describe_signature(fn) -> str:
    sig = signature_of(fn)
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    return f"{name}{sig}" if sig is not None else name


def check_keywords(pair, keys, what):
    """Every keyword in ``keys`` must be taken by the model and the guide."""
    for role in ("model", "guide"):
        fn = getattr(pair, f"{role}_fn", None)
        fn = getattr(pair, role) if fn is None else fn
        for key in keys:
            if accepts_keyword(fn, key) is False:
                raise TypeError(
                    f"{what} passes the keyword argument {key!r} to the {role}, but its signature "
                    f"{describe_signature(fn)} does not take it; rename the key or add `{key}=None` to the {role}"
                )
