"""Exact max-norm nearest-neighbour statistics over blocks of query rows (private).

The shared search behind :func:`~bottleneck_jax.information.kl_entropy` and
:func:`~bottleneck_jax.information.ksg_mi` (and so :func:`~bottleneck_jax.information.lossy_mi`).
For each query row ``i`` it needs the max-norm distances ``||z_j - z_i||_inf`` to all ``N``
points, the ``k``-th smallest of them over ``j != i`` (``jax.lax.top_k``, never a full sort), and
for KSG the marginal counts ``n_x(i) = #{j != i: ||x_j - x_i||_inf < eps_i}`` (``n_y`` alike,
strict ``<``). Rows are processed ``block_size`` at a time (``jax.lax.map`` with
``batch_size``: a scan over full blocks, then one block for the remainder), so only
``O(block_size * N)`` distances are alive at once instead of the ``N x N`` matrices. The point
itself is excluded by comparing its row index with a column iota, not with an ``N x N``
identity constant. The arithmetic per pair is the one of the dense formulation, so results are
bit-identical to it.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from bottleneck_jax.kernels.sharding import replicate

# bytes of pairwise temporaries one block may hold (a few [block, N] arrays)
_BLOCK_BYTES = 32 * 2**20
# [block, N] temporaries alive at once in the KSG block (x, y and joint distances, a mask)
_LIVE = 4


def knn_block_size(n: int, *, itemsize: int = 4, live: int = _LIVE,
                   budget_bytes: int = _BLOCK_BYTES) -> int:
  """Query rows per block so that ``live`` arrays of ``[rows, n]`` fit in ``budget_bytes``.

  At least 1 and at most ``n``; a multiple of 8 when below ``n`` (vector-friendly).
  """
  rows = int(budget_bytes) // max(1, int(live) * int(itemsize) * int(n))
  if rows >= n:
    return max(1, int(n))
  return max(1, rows - rows % 8) if rows >= 8 else max(1, rows)


def _resolve(n: int, itemsize: int, block_size: int | None) -> int:
  b = knn_block_size(n, itemsize=itemsize) if block_size is None else int(block_size)
  return max(1, min(b, n))


def _chebyshev_to_all(row, pts):
  """``[N]`` max-norm distances from one ``[d]`` row to every ``[N, d]`` point."""
  return jnp.max(jnp.abs(row[None, :] - pts), axis=-1)


def _kth_smallest_other(dist, i, k):
  """The ``k``-th smallest entry of ``dist [N]`` over positions ``!= i`` (``i`` a scalar)."""
  n = dist.shape[0]
  other = lax.iota(jnp.int32, n) != i
  top = lax.top_k(jnp.where(other, -dist, -jnp.inf), k)[0]
  # The barrier keeps XLA from rewriting "top_k, then take one column" into a full sort of the
  # row (measured: ~70x slower on CPU for N = 5000, k = 3).
  return -lax.optimization_barrier(top)[..., k - 1], other


def kth_neighbour_distance(x2, k: int, block_size: int | None = None):
  """``r_k(i)``: max-norm distance from each row of ``x2 [N, d]`` to its ``k``-th nearest other
  row, ``[N]``."""
  x2 = replicate(x2)
  n = x2.shape[0]
  b = _resolve(n, jnp.dtype(x2.dtype).itemsize, block_size)

  def one(args):
    i, row = args
    return _kth_smallest_other(_chebyshev_to_all(row, x2), i, k)[0]

  return lax.map(one, (jnp.arange(n, dtype=jnp.int32), x2), batch_size=b)


def ksg_counts(x2, y2, k: int, block_size: int | None = None):
  """KSG algorithm-1 counts ``(n_x, n_y)``, each ``[N]`` int32, for ``x2 [N, dx]``,
  ``y2 [N, dy]``: ``eps_i`` is the ``k``-th smallest joint max-norm distance to another point and
  ``n_x(i) = #{j != i: ||x_j - x_i||_inf < eps_i}``."""
  x2, y2 = replicate(x2), replicate(y2)
  n = x2.shape[0]
  b = _resolve(n, jnp.dtype(x2.dtype).itemsize, block_size)
  # Summing 1.0s in float32 is exact below 2^24 and about twice as fast on CPU as an int32 sum of
  # booleans (measured); the counts are converted back to int32.
  acc = jnp.float32 if n < 2**24 else jnp.int32

  def count(mask):
    return jnp.sum(jnp.where(mask, jnp.ones((), acc), jnp.zeros((), acc))).astype(jnp.int32)

  def one(args):
    i, rx, ry = args
    dx = _chebyshev_to_all(rx, x2)
    dy = _chebyshev_to_all(ry, y2)
    eps, other = _kth_smallest_other(jnp.maximum(dx, dy), i, k)
    return count((dx < eps) & other), count((dy < eps) & other)

  return lax.map(one, (jnp.arange(n, dtype=jnp.int32), x2, y2), batch_size=b)
