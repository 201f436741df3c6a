"""A directional finite-difference check of a gradient, shared by the tests of the objectives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest


def assert_gradient_matches_finite_differences(f, params: dict, n_directions: int = 3, eps: float = 1e-6) -> None:
    """jax.grad(f)(params) along random directions equals the central difference of f (run under float64)."""
    grads = jax.grad(f)(params)
    rng = np.random.default_rng(1)
    for _ in range(n_directions):
        direction = {k: jnp.asarray(rng.normal(size=v.shape)) for k, v in params.items()}
        plus = f({k: params[k] + eps * direction[k] for k in params})
        minus = f({k: params[k] - eps * direction[k] for k in params})
        numeric = (plus - minus) / (2 * eps)
        analytic = sum(jnp.vdot(grads[k], direction[k]) for k in params)
        assert float(analytic) == pytest.approx(float(numeric), rel=1e-6, abs=1e-8)
