"""Comparing ELBO estimators on one model/guide pair: same start, same seeds, same budget."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import torch

from ..._random import seeded
from ..._validate import check_positive_int
from ..diagnostics.evaluate import elbo as elbo_per_sample
from ..diagnostics.evaluate import log_likelihood
from ..training.data import as_args, call_arguments, make_batches
from ..training.estimators import Objective, get_elbo
from ..training.loop import fit


def gradient_variance(pair, batch, elbo, repeats: int = 20, seed: int = 0) -> float:
    """Mean over parameter coordinates of the variance, across ``repeats`` draws, of the
    estimator's gradient on one fixed ``batch`` at the pair's current parameters."""
    repeats = check_positive_int(repeats, "repeats")
    if repeats < 2:
        raise ValueError(f"`repeats` must be at least 2 to estimate a variance, but got {repeats}")
    objective = Objective(get_elbo(elbo) if isinstance(elbo, str) else elbo, pair.model, pair.guide)
    params = [p for p in pair.parameters() if p.requires_grad]
    batch = as_args(batch)
    args, kwargs = call_arguments(batch)
    grads = []
    with seeded(seed, params[0].device if params else None), pyro.validation_enabled(False):
        for _ in range(repeats):
            for p in params:
                p.grad = None
            objective.loss_and_grads(args, kwargs)
            grads.append(
                torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
            )
    for p in params:
        p.grad = None
    return float(torch.stack(grads).var(dim=0).mean())


@dataclass
class EstimatorResult:
    estimator: str
    train_loss: list
    seconds: float
    seconds_per_epoch: float
    test_elbo: float
    test_log_likelihood: float
    test_log_likelihood_stderr: float
    gradient_variance: float


@dataclass
class ElboComparison:
    """What :func:`compare_elbos` returns; ``to_markdown()``, ``to_dict()``, ``to_json()``."""

    results: list = field(default_factory=list)
    eval_samples: int = 1000

    def to_dict(self) -> dict:
        return {"eval_samples": self.eval_samples, "rows": [vars(r) for r in self.results]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        lines = [
            f"| estimator | test log-lik (K={self.eval_samples}) | test ELBO | gradient variance | train s | s/epoch |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.results:
            lines.append(
                f"| {r.estimator} | {r.test_log_likelihood:.3f} ± {r.test_log_likelihood_stderr:.3f} | "
                f"{r.test_elbo:.3f} | {r.gradient_variance:.4g} | {r.seconds:.1f} | "
                f"{r.seconds_per_epoch:.3f} |"
            )
        return "\n".join(lines) + "\n"


def compare_elbos(
    pair,
    train,
    test,
    estimators=("trace", "meanfield", "iwae"),
    *,
    epochs: int = 10,
    batch_size: int | None = 128,
    num_particles: int | None = None,
    vectorize_particles: bool | None = None,
    lr: float = 1e-3,
    eval_samples: int = 1000,
    gradient_repeats: int = 20,
    seed: int = 0,
    progress=None,
    device=None,
    checkpoint_dir=None,
) -> ElboComparison:
    """Train copies of ``pair`` (same initial parameters) with each estimator, same seed and
    budget, and evaluate them alike.

    :param pair: a model/guide ``nn.Module``; each estimator trains a deep copy of it.
    :param train: training data, as for :func:`fit`.
    :param test: held-out data for the importance-weighted log-likelihood (``eval_samples``
        draws), the ELBO (Trace, one draw averaged over 10) and the gradient variance (on the
        first test batch, ``gradient_repeats`` draws, at the trained parameters).
    :param estimators: names (see :data:`ppmodels.infer.ELBO_NAMES`); ``num_particles`` and
        ``vectorize_particles`` apply to the multi-particle bounds (``iwae``, ``renyi``,
        ``tailadaptive``), while ``trace``, ``meanfield`` and ``tracegraph`` use one particle.
    :param checkpoint_dir: a folder: each estimator's training is checkpointed there after
        every epoch (``ESTIMATOR.pt``) and its finished result kept (``ESTIMATOR.json``); called
        again with the same folder, finished estimators are not trained again and an
        interrupted one resumes exactly where it stopped.
    :returns: :class:`ElboComparison`.
    """
    check_positive_int(epochs, "epochs")
    check_positive_int(eval_samples, "eval_samples")
    estimators = list(estimators)
    if not estimators:
        raise ValueError("`estimators` is empty: name at least one estimator")
    for name in estimators:  # validate every name and its options before any training
        get_elbo(name, _particles(name, num_particles), vectorize_particles)
    first_test = next(iter(make_batches(test, batch_size, shuffle=False, name="test")))
    comparison = ElboComparison(eval_samples=eval_samples)
    _untimed_step(pair, first_test, seed, device)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    for name in estimators:
        done = folder / f"{name}.json" if folder is not None else None
        if done is not None and done.is_file():
            comparison.results.append(EstimatorResult(**json.loads(done.read_text())))
            continue
        candidate = copy.deepcopy(pair)
        particles = _particles(name, num_particles)
        ck = folder / f"{name}.pt" if folder is not None else None
        result = fit(
            candidate,
            train,
            epochs=epochs,
            batch_size=batch_size,
            elbo=name,
            num_particles=particles,
            vectorize_particles=vectorize_particles,
            lr=lr,
            seed=seed,
            progress=progress,
            device=device,
            checkpoint=ck,
            resume=ck if ck is not None and ck.is_file() else None,
        )
        seconds = sum(result.epoch_seconds)  # training only, across a resume too
        ll = log_likelihood(candidate, test, num_samples=eval_samples, seed=seed, device=device)
        test_elbo = elbo_per_sample(candidate, test, num_samples=10, seed=seed, device=device)
        variance = gradient_variance(
            candidate, first_test, get_elbo(name, particles, vectorize_particles), gradient_repeats, seed
        )
        row = EstimatorResult(
            estimator=name,
            train_loss=result.train_loss,
            seconds=seconds,
            seconds_per_epoch=sum(result.epoch_seconds) / len(result.epoch_seconds),
            test_elbo=float(test_elbo.mean()),
            test_log_likelihood=float(ll.mean()),
            test_log_likelihood_stderr=float(ll.std() / math.sqrt(len(ll))),
            gradient_variance=variance,
        )
        comparison.results.append(row)
        if done is not None:
            done.write_text(json.dumps(vars(row)))
    return comparison


def _particles(name, num_particles):
    """The particles an estimator is given: ``num_particles`` for the multi-particle bounds,
    one (its default) for ``trace``, ``meanfield`` and ``tracegraph``."""
    return num_particles if name not in ("trace", "meanfield", "tracegraph") else None


def _untimed_step(pair, batch, seed, device):
    """One untimed step on a copy of ``pair``, so that one-off start-up costs do not land on
    the first estimator's time."""
    fit(copy.deepcopy(pair), batch, epochs=1, batch_size=None, elbo="trace", seed=seed, progress=False, device=device)


__all__ = ["ElboComparison", "EstimatorResult", "compare_elbos", "gradient_variance"]
