"""Loss terms (docs/method.md §4) as pure functions returning per-element values.

Reduction is the caller's job, as in optax. Every function is jit- and grad-safe.

References: Gropp et al. 2020 (IGR), Sitzmann et al. 2020 (SIREN), Ma et al. 2021 (Neural-Pull),
Härenstam-Nielsen et al. 2024 (DiffCD).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

SDF = Callable[[jax.Array], jax.Array]
"""f(x): points (N, 3) -> values (N,), parameters already bound."""


def safe_norm(x: jax.Array, axis: int = -1) -> jax.Array:
    """Euclidean norm whose gradient is 0 (not NaN) at 0."""
    squared = jnp.sum(x * x, axis=axis)
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def values_and_gradients(sdf: SDF, points: jax.Array) -> tuple[jax.Array, jax.Array]:
    """f(x) and the spatial gradient ∇ₓf(x) for every point, from one forward pass."""
    values, pullback = jax.vjp(sdf, points)
    (gradients,) = pullback(jnp.ones_like(values))
    return values, gradients


def eikonal(gradients: jax.Array) -> jax.Array:
    """(1 - |∇ₓf|)² per point."""
    return (1.0 - safe_norm(gradients)) ** 2


def area(values: jax.Array, *, alpha: float = 100.0) -> jax.Array:
    """exp(-alpha |f|) per point: SIREN's off-surface term, a surface-area penalty."""
    return jnp.exp(-alpha * jnp.abs(values))


def project_to_surface(sdf: SDF, points: jax.Array, *, steps: int = 4) -> jax.Array:
    """Newton-like steps x <- x - f(x) ∇f/|∇f| that move points onto the zero level set."""

    def step(x, _):
        values, gradients = values_and_gradients(sdf, x)
        direction = gradients / jnp.maximum(safe_norm(gradients), 1e-12)[:, None]
        return x - values[:, None] * direction, None

    # Unrolled: a handful of steps, and XLA then counts every one in its cost analysis.
    projected, _ = jax.lax.scan(step, points, None, length=steps, unroll=True)
    return projected


def pulled_points(sdf: SDF, queries: jax.Array) -> jax.Array:
    """Neural-Pull: q - f(q) ∇f(q)/|∇f(q)|, differentiable in the network parameters."""
    values, gradients = values_and_gradients(sdf, queries)
    direction = gradients / jnp.maximum(safe_norm(gradients), 1e-12)[:, None]
    return queries - values[:, None] * direction


def implicit_surface_loss(
    values: jax.Array,
    points: jax.Array,
    gradients: jax.Array,
    point_loss: Callable[[jax.Array], jax.Array],
) -> jax.Array:
    """A loss of points s on the zero level set that differentiates through s(θ).

    s moves with θ by the implicit function theorem, ∂s/∂θ = -∇ₓf (∂f/∂θ)ᵀ / |∇ₓf|². With
    v = ∂ℓ/∂s the chain rule gives ∂ℓ/∂θ = -(v·∇ₓf / |∇ₓf|²) ∂f(θ, s)/∂θ, which is the gradient of
    the surrogate -Σ stop_gradient(c_s) f(θ, s): one batched backward pass instead of one
    parameter gradient per point.

    Args:
      values: f(θ, s), (N,), the only input the θ-gradient flows through.
      points: s, (N, 3), treated as constants.
      gradients: ∇ₓf(s), (N, 3), treated as constants.
      point_loss: ℓ, a scalar function of the points (N, 3).
    Returns:
      A scalar whose value is ℓ(s) and whose θ-gradient is the implicit one.
    """
    points = jax.lax.stop_gradient(points)
    gradients = jax.lax.stop_gradient(gradients)
    value, v = jax.value_and_grad(point_loss)(points)
    squared = jnp.maximum(jnp.sum(gradients * gradients, axis=-1), 1e-12)
    coefficients = jax.lax.stop_gradient(jnp.sum(v * gradients, axis=-1) / squared)
    surrogate = -jnp.sum(coefficients * values)
    return jax.lax.stop_gradient(value) + surrogate - jax.lax.stop_gradient(surrogate)
