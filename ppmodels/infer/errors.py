"""The errors training raises that a user may catch by type (kept apart so that the engine
and its callbacks both import them without importing each other)."""

from __future__ import annotations


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the pair keeps the parameters of the last good step."""

    def __init__(self, message, epoch, step):
        super().__init__(message)
        self.epoch, self.step = epoch, step


__all__ = ["NonFiniteLossError"]
