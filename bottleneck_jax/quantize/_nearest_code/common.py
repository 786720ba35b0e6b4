"""Shared pieces of the nearest-code implementations."""

from __future__ import annotations

import jax.numpy as jnp

NORM_EPS = 1e-6


def normalise(x):
  """``x / max(||x||, 1e-6)`` along the last axis."""
  norm = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
  return x / jnp.maximum(norm, jnp.asarray(NORM_EPS, x.dtype))


def row_distance(z, code, metric):
  """Distance between matching rows of ``z`` and ``code`` (both ``[N, d]``, already normalised
  for ``"cosine"``), with the same expansion as the ``[N, K]`` matrix of the reference."""
  if metric == "cosine":
    return 1.0 - jnp.sum(z * code, axis=-1)
  return jnp.sum(z * z, axis=-1) - 2.0 * jnp.sum(z * code, axis=-1) + jnp.sum(code * code, axis=-1)


def compute_dtype(dtype):
  """f32 for inputs of less than 32 bits (bf16, f16), else the input dtype."""
  dtype = jnp.dtype(dtype)
  return dtype if dtype.itemsize >= 4 else jnp.dtype(jnp.float32)

