"""The errors training raises that a user may catch by type (kept apart so that the engine
and its callbacks both import them without importing each other)."""

from __future__ import annotations


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the pair keeps the parameters of the last good step."""

    def __init__(self, message, epoch, step):
        super().__init__(message)
        self.epoch, self.step = epoch, step


class ImproperPosteriorError(ValueError):
    """The model's density does not depend on some latent elements and their prior is flat
    or masked out: the posterior is improper along them (``mcmc`` and ``compare`` refuse it)."""


__all__ = ["ImproperPosteriorError", "NonFiniteLossError"]
