"""A model's potential made ready for a sampler, in one sequence: built from the model and its
data with its chains' starts drawn from a seed (:func:`build`), then checked and compiled
(:func:`prepare`): a random density refused, the graph compiled in the mode chosen, a fallback
noted, an improper posterior refused. Every MCMC path runs this sequence;
:func:`check_proper` is its last check alone, for inference that runs no MCMC.
"""

from __future__ import annotations

import pyro

from ..errors import ImproperPosteriorError
from ..initialization import init_to_uniform
from .potential import Potential
from .support import refuse_a_random_density, refuse_flat_directions


def build(
    model, args=(), kwargs=None, *, num_chains=1, seed=0, max_plate_nesting=None, init_strategy=init_to_uniform
) -> Potential:
    """The model's potential, not yet compiled, with ``num_chains`` starting points drawn by
    ``init_strategy`` from ``seed``; ``ValueError`` where the model has no continuous latent
    site to sample."""
    pyro.set_rng_seed(seed)
    potential = Potential(
        model,
        args,
        kwargs,
        compile=None,
        max_plate_nesting=max_plate_nesting,
        num_chains=num_chains,
        init_strategy=init_strategy,
    )
    if not potential.dim:
        raise ValueError("the model has no continuous latent sites to sample (every site is observed or discrete)")
    return potential


def prepare(potential: Potential, mode: str | None) -> list:
    """Check and compile ``potential`` (from :func:`build`) with ``mode`` (``"inductor"``,
    ``"graph"`` or ``None`` for eager): a random density is refused before anything is
    compiled, an improper posterior after (its check evaluates the compiled potential).
    Returns the notes a result carries: why the compiled potential was not used, or why its
    mode differs from ``mode``."""
    refuse_a_random_density(potential)
    if mode is not None:
        potential.compile(mode)
    notes = []
    if potential.fallback:
        notes.append(f"compile={mode!r} was not used: {potential.fallback}; the potential ran eagerly")
    if potential.note:
        notes.append(potential.note)
    refuse_flat_directions(potential)
    return notes


def check_proper(model, args=(), kwargs=None, max_plate_nesting=None) -> None:
    """Raise :class:`~ppmodels.infer.errors.ImproperPosteriorError`, as ``mcmc`` does before its
    chains, where the posterior is flat along some latent elements (a site nothing reads, the
    masked-out elements of an ``obs_mask`` site): for inference that runs no MCMC (``compare``
    with guides only), whose guides would otherwise widen along them as long as they train.
    The check evaluates Pyro's potential three times, eagerly; where Pyro cannot build one for
    the model (a discrete site it cannot enumerate, a subsample plate), nothing is checked."""
    try:
        potential = Potential(model, args, kwargs, compile=None, max_plate_nesting=max_plate_nesting)
    except ImproperPosteriorError:
        raise
    except Exception:  # noqa: BLE001 (no potential to check with: the inference runs as it would)
        return
    if potential.dim:
        refuse_flat_directions(potential)


__all__ = ["build", "check_proper", "prepare"]
