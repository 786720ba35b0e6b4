"""Blocked nearest-code search: a ``lax.scan`` over codebook blocks with a running
``(min, argmin)``; temporaries ``O(N * block + K * d)``, never ``N x K``.

The search runs on stopped gradients; the returned distance is recomputed from the chosen code
(:func:`.common.row_distance`), so the backward pass is that of a gather, not of the scan.
Ties go to the first index, as ``jnp.argmin``: within a block by ``argmin``, across blocks by a
strict ``<`` (an earlier block keeps its index on an equal distance).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from bottleneck_jax.kernels import round_up
from bottleneck_jax.kernels.sharding import take
from bottleneck_jax.quantize._nearest_code.common import (
    compute_dtype,
    normalise,
    row_distance,
)

DEFAULT_BLOCK = 256


def _search(z, codebook, metric, block):
  k, d = codebook.shape
  kp = round_up(k, block)
  nb = kp // block
  cb = jnp.pad(codebook, ((0, kp - k), (0, 0))).reshape(nb, block, d)
  valid = (jnp.arange(kp) < k).reshape(nb, block)
  zz = jnp.sum(z * z, axis=-1, keepdims=True)
  inf = jnp.asarray(jnp.inf, z.dtype)

  def body(carry, xs):
    best_d, best_i = carry
    e, ok, b = xs
    if metric == "cosine":
      dist = 1.0 - z @ e.T
    else:
      dist = zz - 2.0 * (z @ e.T) + jnp.sum(e * e, axis=-1)[None, :]
    dist = jnp.where(ok[None, :], dist, inf)
    blk_i = jnp.argmin(dist, axis=-1).astype(jnp.int32)
    blk_d = jnp.take_along_axis(dist, blk_i[:, None], axis=-1)[:, 0]
    # NaN in a block wins, as in jnp.argmin (the first NaN is the argmin)
    better = (blk_d < best_d) | (jnp.isnan(blk_d) & ~jnp.isnan(best_d))
    return (jnp.where(better, blk_d, best_d),
            jnp.where(better, blk_i + b * block, best_i)), None

  # carries derived from z so that they keep its (row) sharding under an Explicit mesh
  init = (zz[:, 0] * 0 + inf, jnp.zeros_like(zz[:, 0], jnp.int32))
  (_, idx), _ = lax.scan(body, init, (cb, valid, jnp.arange(nb, dtype=jnp.int32)))
  return idx


def nearest_code(z, codebook, *, metric, block_size=None):
  """``(indices [N] int32, distances [N])`` for ``z [N, d]``; see the package docstring."""
  out_dtype = z.dtype
  cdt = compute_dtype(z.dtype)
  z, codebook = z.astype(cdt), codebook.astype(cdt)
  k = codebook.shape[0]
  block = int(block_size) if block_size is not None else min(DEFAULT_BLOCK, round_up(k, 8))
  if metric == "cosine":
    z, codebook = normalise(z), normalise(codebook)
  idx = _search(jax.lax.stop_gradient(z), jax.lax.stop_gradient(codebook), metric, block)
  code = take(codebook, idx)
  return idx, row_distance(z, code, metric).astype(out_dtype)
