"""Pallas nearest-code search: a row-tiled kernel that streams the codebook in blocks and keeps
a running ``(min, argmin)`` per row; the ``N x K`` distance matrix never exists.

Grid ``(N / BN,)``: program ``i`` owns ``BN`` rows of ``z`` and loops (``lax.fori_loop``) over
``BK``-wide codebook blocks; each step computes the ``[BN, BK]`` tile
``||z||^2 - 2 z e^T + ||e||^2`` (or ``1 - z e^T`` on normalised inputs), masks codes past ``K``,
takes the block's minimum and its first index (``min`` of the iota where the tile equals the
minimum, so ties go to the smallest index as in ``jnp.argmin``), and replaces the running pair
only on a strictly smaller value (an earlier block keeps an equal distance). A NaN distance is
treated as ``-inf`` in the comparison, so the first NaN wins, as in ``jnp.argmin``.

Rows are padded to a multiple of ``BN``, codes to a multiple of ``BK`` and the feature axis to a
power of two (zeros change no distance). Like the ``"xla"`` implementation the search runs on
stopped gradients and the returned distance is recomputed from the gathered code, so the
backward pass is that of a gather.

Validated in interpret mode (CPU) only: the op never picks it by default (``validated_on`` is
empty); ``implementation="pallas"`` runs it explicitly, compiled on GPU/TPU at the caller's risk.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from bottleneck_jax.kernels import next_power_of_2, pallas_interpret, round_up
from bottleneck_jax.kernels.sharding import take
from bottleneck_jax.quantize._nearest_code.common import (
    compute_dtype,
    normalise,
    row_distance,
)

_NT = (((1,), (1,)), ((), ()))
BLOCK_N = 64
BLOCK_K = 128


def _kernel(z_ref, cb_ref, ee_ref, idx_ref, *, k, bk, n_blocks, metric):
  z = z_ref[...]                                    # [BN, d]
  bn = z.shape[0]
  zz = jnp.sum(z * z, axis=1, keepdims=True)        # [BN, 1]
  big = jnp.iinfo(jnp.int32).max

  def step(j, carry):
    best_d, best_i = carry
    start = j * bk
    e = cb_ref[pl.ds(start, bk), :]                 # [BK, d]
    dots = lax.dot_general(z, e, _NT, preferred_element_type=z.dtype)
    if metric == "cosine":
      dist = 1.0 - dots
    else:
      dist = zz - 2.0 * dots + ee_ref[pl.ds(start, bk)][None, :]
    col = start + lax.broadcasted_iota(jnp.int32, (bn, bk), 1)
    key = jnp.where(jnp.isnan(dist), -jnp.inf, dist)
    key = jnp.where(col < k, key, jnp.inf)
    blk_d = jnp.min(key, axis=1)
    blk_i = jnp.min(jnp.where(key == blk_d[:, None], col, big), axis=1)
    better = blk_d < best_d
    return jnp.where(better, blk_d, best_d), jnp.where(better, blk_i, best_i)

  init = (jnp.full((bn,), jnp.inf, z.dtype), jnp.zeros((bn,), jnp.int32))
  _, best_i = lax.fori_loop(0, n_blocks, step, init)
  idx_ref[...] = best_i


def _search(z, codebook, metric, block_size):
  n, d = z.shape
  k = codebook.shape[0]
  bk = next_power_of_2(int(block_size)) if block_size is not None else BLOCK_K
  bk = min(bk, next_power_of_2(k))
  bn = min(BLOCK_N, next_power_of_2(max(n, 1)))
  n_pad, k_pad, d_pad = round_up(n, bn), round_up(k, bk), next_power_of_2(d)
  zp = jnp.pad(z, ((0, n_pad - n), (0, d_pad - d)))
  cbp = jnp.pad(codebook, ((0, k_pad - k), (0, d_pad - d)))
  ee = jnp.sum(cbp * cbp, axis=-1)
  idx = pl.pallas_call(
      functools.partial(_kernel, k=k, bk=bk, n_blocks=k_pad // bk, metric=metric),
      grid=(n_pad // bn,),
      in_specs=[pl.BlockSpec((bn, d_pad), lambda i: (i, 0)),
                pl.BlockSpec((k_pad, d_pad), lambda i: (0, 0)),
                pl.BlockSpec((k_pad,), lambda i: (0,))],
      out_specs=pl.BlockSpec((bn,), lambda i: (i,)),
      out_shape=jax.ShapeDtypeStruct((n_pad,), jnp.int32),
      interpret=pallas_interpret(),
      cost_estimate=pl.CostEstimate(flops=2 * n_pad * k_pad * d_pad, transcendentals=0,
                                    bytes_accessed=(n_pad + k_pad) * d_pad * z.dtype.itemsize),
  )(zp, cbp, ee)
  return idx[:n]


def nearest_code(z, codebook, *, metric, block_size=None):
  """``(indices [N] int32, distances [N])`` for ``z [N, d]``; see the package docstring."""
  out_dtype = z.dtype
  cdt = compute_dtype(z.dtype)
  z, codebook = z.astype(cdt), codebook.astype(cdt)
  if metric == "cosine":
    z, codebook = normalise(z), normalise(codebook)
  if z.shape[0] == 0:
    idx = jnp.zeros((0,), jnp.int32)
  else:
    idx = _search(jax.lax.stop_gradient(z), jax.lax.stop_gradient(codebook), metric, block_size)
  code = take(codebook, idx)
  return idx, row_distance(z, code, metric).astype(out_dtype)
