"""What :func:`~ppmodels.infer.fit` returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class FitResult:
    """What :func:`fit` returns: per-epoch losses (negative ELBO, nats per sample), every
    step's loss, and timings.

    :ivar train_loss: mean training loss of each epoch, per sample (over the steps of that epoch).
    :ivar val_loss: validation loss after each epoch, or ``None`` entries without validation data.
    :ivar epoch_seconds: wall time of each epoch's training steps.
    :ivar losses: every step's loss as the estimator returned it (what ``pyro.infer.SVI.step``
        returns: the batch's negative ELBO as the model scales it).
    :ivar stopped: why training stopped before ``epochs`` (a callback's reason), else ``None``.
    :ivar per: what ``train_loss`` and ``val_loss`` are per: ``"sample"`` (each batch's loss
        over its samples, or the data set's size for a pair that scales its batches) or
        ``"datum of plate 'NAME' (N)"`` (a user's program: the plate its observed sites are
        the data of, as the first step's trace shows it).
    """

    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    epoch_seconds: list = field(default_factory=list)
    num_data: int = 0
    num_steps: int = 0
    estimator: str = "trace"
    losses: list = field(default_factory=list)
    stopped: str | None = None
    per: str = "sample"

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    @property
    def samples_per_second(self) -> float:
        seconds = sum(self.epoch_seconds)
        return self.num_data * self.epochs / seconds if seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["samples_per_second"] = self.samples_per_second
        return out


__all__ = ["FitResult"]
