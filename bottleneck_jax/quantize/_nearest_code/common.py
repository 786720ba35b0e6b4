"""Shared pieces of the nearest-code implementations."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bottleneck_jax.kernels import explicit_spec

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


def gather_rows(table, idx):
  """``table[idx]`` (rows); under an Explicit mesh the rows come out sharded like ``idx``."""
  spec = explicit_spec(idx)
  if spec is None:
    return jnp.take(table, idx, axis=0)
  spec = tuple(spec) + (None,) * (idx.ndim - len(spec))
  return table.at[idx].get(out_sharding=jax.sharding.PartitionSpec(*spec, None))


def segment_sum(values, idx, num_segments):
  """``jax.ops.segment_sum`` (indices outside ``[0, num_segments)`` dropped) that also works when
  ``idx`` is sharded on an Explicit mesh (the per-code result is replicated)."""
  if explicit_spec(idx) is None:
    return jax.ops.segment_sum(values, idx, num_segments=num_segments)
  out = jnp.zeros((num_segments, *values.shape[1:]), values.dtype)
  return out.at[idx].add(values, mode="drop", out_sharding=jax.sharding.PartitionSpec())


def take_rows(x, idx):
  """``x[idx]`` (rows) replicated, also when ``x`` is row-sharded on an Explicit mesh."""
  if explicit_spec(x) is None:
    return jnp.take(x, idx, axis=0)
  return x.at[idx].get(out_sharding=jax.sharding.PartitionSpec())
