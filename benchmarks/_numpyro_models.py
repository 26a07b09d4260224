"""The benchmarks' posteriors written for NumPyro (the peer a speed-seeking user picks): the same
priors, likelihoods and parameter names as the Pyro models they sit beside. NumPyro's
enumeration needs funsor, which the ``bench`` extra does not install, so the two enumerated
models sum their discrete states out by hand here (the same posterior over the continuous
sites: a mixture's log-sum-exp, an HMM's forward algorithm)."""

from __future__ import annotations


def models() -> dict:
    """name -> NumPyro model taking the same arguments as the Pyro model (as numpy arrays)."""
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as nd

    def blr(X, y):
        beta = numpyro.sample("beta", nd.Normal(0.0, 10.0).expand([X.shape[1]]).to_event(1))
        sigma = numpyro.sample("sigma", nd.HalfNormal(10.0))
        with numpyro.plate("data", len(y)):
            numpyro.sample("y", nd.Normal(X @ beta, sigma), obs=y)

    def eight_schools(y, sigma):
        mu = numpyro.sample("mu", nd.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", nd.HalfCauchy(5.0))
        with numpyro.plate("schools", len(y)):
            theta_trans = numpyro.sample("theta_trans", nd.Normal(0.0, 1.0))
            numpyro.sample("y", nd.Normal(theta_trans * tau + mu, sigma), obs=y)

    def ar_k(y, K):
        alpha = numpyro.sample("alpha", nd.Normal(0.0, 10.0))
        beta = numpyro.sample("beta", nd.Normal(0.0, 10.0).expand([K]).to_event(1))
        sigma = numpyro.sample("sigma", nd.HalfCauchy(2.5))
        T = len(y)
        lags = jnp.stack([y[K - k : T - k] for k in range(1, K + 1)], -1)
        numpyro.sample("y", nd.Normal(alpha + lags @ beta, sigma).to_event(1), obs=y[K:])

    def gp_regr(x, y):
        rho = numpyro.sample("rho", nd.Gamma(25.0, 4.0))
        alpha = numpyro.sample("alpha", nd.HalfNormal(2.0))
        sigma = numpyro.sample("sigma", nd.HalfNormal(1.0))
        d2 = (x[:, None] - x[None, :]) ** 2
        cov = alpha**2 * jnp.exp(-d2 / (2 * rho**2)) + sigma * jnp.eye(len(x))
        numpyro.sample("y", nd.MultivariateNormal(jnp.zeros(len(x)), scale_tril=jnp.linalg.cholesky(cov)), obs=y)

    def mixture(y):
        weights = numpyro.sample("weights", nd.Dirichlet(jnp.ones(2)))
        loc = numpyro.sample("loc", nd.Normal(0.0, 10.0))
        scale = numpyro.sample("scale", nd.LogNormal(0.0, 2.0))
        components = jnp.stack([nd.Normal(loc, scale).log_prob(y), nd.Normal(0.0, 10.0).log_prob(y)], -1)
        numpyro.factor("y", jax.nn.logsumexp(jnp.log(weights) + components, -1).sum())

    def hmm(y, num_states):
        transition = numpyro.sample(
            "transition", nd.Dirichlet(jnp.ones(num_states) + 4 * jnp.eye(num_states)).to_event(1)
        )
        low = numpyro.sample("low", nd.Normal(0.0, 1.0))
        gaps = numpyro.sample("gaps", nd.LogNormal(jnp.log(4.0), 0.5).expand([num_states - 1]).to_event(1))
        locs = jnp.concatenate([low[None], low + jnp.cumsum(gaps)])
        emit = nd.Normal(locs, 1.0).log_prob(y[:, None])  # [t, state]
        log_t = jnp.log(transition)

        def step(alpha, e):
            alpha = jax.nn.logsumexp(alpha[:, None] + log_t, 0) + e
            return alpha, None

        start = jnp.log(jnp.ones(num_states) / num_states) + emit[0]
        alpha, _ = jax.lax.scan(step, start, emit[1:])
        numpyro.factor("y", jax.nn.logsumexp(alpha))

    return {
        "blr": blr,
        "eight_schools": eight_schools,
        "ar_k": ar_k,
        "gp_regr": gp_regr,
        "mixture": mixture,
        "hmm": hmm,
        "hmm_dhmm": hmm,  # the same model as Pyro's DiscreteHMM form
    }
