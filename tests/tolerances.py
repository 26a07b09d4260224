"""Tolerances used across the tests, in one place, each with its reason."""

#: Monte Carlo checks: an estimate must be within this many standard errors of its target
#: (a false failure rate of about 6e-5 per check for a normal estimate).
MC_SIGMAS = 4.0

#: pPCA known answer (nats per sample). The linear VAE's optimum equals the exact pPCA
#: maximum likelihood; SGD noise and a finite budget leave a small gap. 0.02 nats is under
#: 5% of the ~0.5 nats separating the 2-component from the 1-component pPCA on this data,
#: so a VAE that missed a component fails it.
PPCA_LL_ATOL = 0.02

#: get_train_loss against MindSpore's loss evaluated directly, parameters fixed: both are
#: Monte Carlo averages over ~1,400 digits (one z draw each); their noise is ~0.2%.
FACADE_LOSS_RTOL = 0.01

#: A conjugate Normal-Normal posterior fitted by SVI: absolute tolerance on mean and std.
CONJUGATE_ATOL = 0.03

#: Mean-field SVI against an exact posterior that factorises (a Bayesian layer on an orthogonal
#: design): means within this many posterior sds (SGD noise with 4 particles), sds within
#: this relative error. A likelihood scaled by N/B twice would move the sds by sqrt(N/B).
MEANFIELD_MEAN_SDS = 0.25
MEANFIELD_SD_RTOL = 0.10

#: Two processes under DDP against one process with the same global batch, on a pair with no
#: Monte Carlo noise: the same arithmetic up to the order of float32 sums.
DDP_RTOL = 1e-5

#: A user's Pyro program through fit against the plain Pyro loop, same seed and draws: fit
#: runs one torch Adam over all parameters, pyro.optim one per parameter, and Trace_ELBO's
#: differentiable_loss and loss_and_grads sum in other orders, so the two agree to float32
#: rounding that compounds over a few hundred steps (measured: ~1e-6 relative on the losses).
PYRO_LOSS_RTOL = 1e-4
PYRO_PARAM_ATOL = 1e-4


def mcse_of_mean(draws):
    """The Monte Carlo standard error of the mean of ``draws`` (one chain, draws on the first
    dimension; any shape after it): sd / sqrt(ESS), with the ESS of these draws (Pyro's
    estimator, Geyer's initial monotone sequence). A seeded Monte Carlo figure is checked
    against ``MC_SIGMAS`` of these, computed on the run itself, never against a figure
    measured once: another platform's float order or library version moves the draws."""
    import math

    from pyro.ops.stats import effective_sample_size

    draws = draws.double()
    ess = effective_sample_size(draws.unsqueeze(0), chain_dim=0, sample_dim=1).clamp(min=1.0)
    return draws.std(0) / ess.sqrt() if draws.shape[0] > 1 else draws.new_full(draws.shape[1:], math.inf)
