"""The errors and warnings a user may catch or filter by type (kept apart so that every part
of :mod:`ppmodels.infer` imports them without importing another)."""

from __future__ import annotations


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the pair keeps the parameters of the last good step."""

    def __init__(self, message, epoch, step):
        super().__init__(message)
        self.epoch, self.step = epoch, step


class EagerFallbackWarning(UserWarning):
    """A compiled path (the compiled log density, the compiled training step) could not be
    traced, compiled or run and runs eagerly instead, with the same answers; the message names
    the cause and the torch version."""


class ImproperPosteriorError(ValueError):
    """The model's density does not depend on some latent elements and their prior is flat
    or masked out: the posterior is improper along them (``mcmc`` and ``compare`` refuse it)."""


class RandomDensityError(ValueError):
    """The model's log density differs between two evaluations at one point: it draws random
    numbers outside ``pyro.sample`` (``mcmc`` and ``compare`` refuse it)."""


__all__ = ["EagerFallbackWarning", "ImproperPosteriorError", "NonFiniteLossError", "RandomDensityError"]
