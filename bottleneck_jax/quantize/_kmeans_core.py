"""Unchecked cores of :func:`~bottleneck_jax.quantize.kmeans` and
:func:`~bottleneck_jax.quantize.replace_dead_codes` (shared with the EMA ``VectorQuantizer``
without an import cycle); see ``_kmeans.py`` for the algorithms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from bottleneck_jax.kernels.sharding import segment_sum, take
from bottleneck_jax.quantize._nearest_code import nearest_code
from bottleneck_jax.quantize._nearest_code.common import normalise


def _kmeans(key, x, k, iters, metric, implementation):
  n = x.shape[0]
  if n >= k:
    init = jax.random.choice(key, n, (k,), replace=False)
  else:
    init = jax.random.randint(key, (k,), 0, n)
  means = take(x, init)
  if metric == "cosine":
    means = normalise(means)

  def stats(means):
    idx = nearest_code(x, means, metric=metric, implementation=implementation).indices
    bins = segment_sum(jnp.ones((n,), jnp.int32), idx, k)
    sums = segment_sum(x, idx, k)
    return bins, sums

  def body(_, means):
    bins, sums = stats(means)
    new = sums / jnp.maximum(bins, 1).astype(x.dtype)[:, None]
    if metric == "cosine":
      new = normalise(new)
    return jnp.where((bins > 0)[:, None], new, means)

  means = lax.fori_loop(0, iters, body, means)
  bins, _ = stats(means)
  return means, bins


def _replace(key, state, x, threshold):
  k = state.codebook.shape[0]
  dead = state.cluster_size < threshold
  pick = jax.random.randint(key, (k,), 0, x.shape[0])
  sample = take(x, pick)
  thr = jnp.asarray(threshold, state.codebook.dtype)
  return state._replace(cluster_size=jnp.where(dead, thr, state.cluster_size),
                        embed_avg=jnp.where(dead[:, None], sample * thr, state.embed_avg),
                        codebook=jnp.where(dead[:, None], sample, state.codebook))
