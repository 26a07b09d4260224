"""Constructor specs: how a checkpoint rebuilds a ppmodels object in a fresh process.

Classes decorated with :func:`recorded` remember the arguments they were built with. A
spec is plain data (dicts, lists, strings, numbers), so checkpoints load with
``torch.load(weights_only=True)`` and never unpickle code. Only ppmodels classes are
rebuilt from a spec; anything else needs the caller to build the
object and load the state into it.
"""

from __future__ import annotations

import functools
import importlib
import inspect

import torch

_ALLOWED_PREFIXES = ("ppmodels.",)


class NotRecordable(TypeError):
    """Raised when an object cannot be described by a spec."""


def recorded(cls):
    """Class decorator: remember ``__init__``'s arguments on the instance."""
    original = cls.__init__
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        arguments.pop(next(iter(signature.parameters)))
        for pname, param in signature.parameters.items():
            if param.kind is inspect.Parameter.VAR_KEYWORD and pname in arguments:
                arguments.update(arguments.pop(pname))
            elif param.kind is inspect.Parameter.VAR_POSITIONAL and pname in arguments:
                raise NotRecordable(f"{cls.__name__} takes *{pname}; it cannot be recorded")
        # The outermost class finishes last, so a subclass's record wins.
        object.__setattr__(self, "_ppmodels_init", (type(self), cls, arguments))

    cls.__init__ = __init__
    return cls


def _encode(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise NotRecordable("dict keys must be strings")
        return {"__dict__": {k: _encode(v) for k, v in value.items()}}
    if isinstance(value, torch.nn.Module):
        return {"__module__": spec_of(value)}
    raise NotRecordable(f"cannot record a value of type {type(value).__name__}")


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if "__tuple__" in value:
            return tuple(_decode(v) for v in value["__tuple__"])
        if "__dict__" in value:
            return {k: _decode(v) for k, v in value["__dict__"].items()}
        if "__module__" in value:
            return build(value["__module__"])
    return value


def spec_of(obj) -> dict:
    """The spec of ``obj``, or raise :class:`NotRecordable`."""
    record = getattr(obj, "_ppmodels_init", None)
    if record is None or record[0] is not record[1]:
        raise NotRecordable(
            f"{type(obj).__name__} does not record its constructor arguments; build it yourself "
            "and pass it to load(..., into=obj)"
        )
    cls, _, arguments = record
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "args": {k: _encode(v) for k, v in arguments.items()}}


def try_spec_of(obj):
    try:
        return spec_of(obj)
    except NotRecordable:
        return None


def build(spec: dict):
    """Rebuild an object from :func:`spec_of`'s output."""
    path = spec["class"]
    if not path.startswith(_ALLOWED_PREFIXES):
        raise ValueError(f"refusing to build {path!r} from a checkpoint: only {_ALLOWED_PREFIXES} classes are rebuilt")
    module_name, _, qualname = path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), qualname)
    return cls(**{k: _decode(v) for k, v in spec["args"].items()})
