"""Codebook initialisation by k-means and dead-code restarts, both jit-safe.

References: the k-means initialisation of SoundStream's residual VQ (Zeghidour et al.,
"SoundStream: An End-to-End Neural Audio Codec", 2021, https://arxiv.org/abs/2107.03312) and the
dead-code expiry of Jukebox / SoundStream as implemented in ``lucidrains/vector-quantize-pytorch``.

k-means (Lloyd): ``K`` initial means drawn from the batch (without replacement when ``N >= K``,
with replacement otherwise), then ``iters`` rounds of: assign every vector to its nearest mean
(the :func:`~bottleneck_jax.quantize.nearest_code` op, never the ``N x K`` matrix), ``bins_k``
= number of vectors of cluster ``k``, new mean = sum of its vectors / ``max(bins_k, 1)``; an empty
cluster keeps its old mean; with ``metric="cosine"`` means are l2-normalised. Fixed iteration
count (``lax.fori_loop``), ``jax.ops.segment_sum`` for the statistics: no host sync, no
data-dependent shapes.

Dead-code restarts: a code whose EMA count ``n_k`` is below ``threshold`` is replaced by a random
vector of the batch, its count reset to ``threshold`` and its running sum to that vector times
``threshold`` (so the next EMA step starts from the new code):
``E = where(dead, S, E)``, ``n = where(dead, threshold, n)``, ``m = where(dead, S * threshold, m)``
with ``S = z[randint(key, K)]``. Fixed shapes; it never divides by a count, so an all-dead
codebook or a batch smaller than ``K`` is fine.

Departures: the replacement vectors are drawn with replacement (vector-quantize-pytorch uses a
multinomial draw too); k-means returns the counts of its last assignment so that an EMA state
can start from them (:func:`vq_ema_init` with ``cluster_size=counts`` semantics is done by
:class:`~bottleneck_jax.quantize.VectorQuantizer`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.quantize._kmeans_core import _kmeans, _replace
from bottleneck_jax.quantize._nearest_code import METRICS
from bottleneck_jax.quantize._vq import VQEMAState


class KMeans(NamedTuple):
  """What :func:`kmeans` returns.

  Attributes:
    codebook: ``[K, d]`` the cluster means.
    counts: int32 ``[K]`` the number of vectors assigned to each mean in the last round.
  """

  codebook: Float[Array, "k d"]
  counts: Int[Array, "k"]


def _check_key(fn, key):
  if not (hasattr(key, "dtype") and (jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
                                     or (key.dtype == jnp.uint32 and key.shape == (2,)))):
    raise TypeError(f"{fn}: key must be a jax.random key, got {V.describe(key)}")


def kmeans(key: Any, x: Float[Array, "*batch d"], num_codes: int, *, iters: int = 10,
           metric: str = "l2", implementation: Any = None) -> KMeans:
  """Lloyd's k-means with a fixed number of rounds, jit-safe (a VQ codebook initialiser).

  .. math::
    \\mu_k \\leftarrow \\frac{\\sum_n [k^*_n = k]\\, x_n}{\\max(\\sum_n [k^*_n = k], 1)}
    \\ \\text{(kept when the cluster is empty)},\\qquad
    k^*_n = \\operatorname{argmin}_k d(x_n, \\mu_k)

  Args:
    key: ``jax.random`` key for the initial means (batch vectors).
    x: vectors ``[*batch, d]``, floating, at least one.
    num_codes: ``K >= 1`` (static).
    iters: rounds ``>= 0`` (static).
    metric: ``"l2"`` or ``"cosine"`` (means l2-normalised).
    implementation: of the nearest-code search.

  Returns:
    :class:`KMeans` ``(codebook [K, d], counts int32 [K])``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.quantize import kmeans
    >>> x = jnp.array([[0.0], [0.2], [10.0], [10.4]])
    >>> res = kmeans(jax.random.key(0), x, 2, iters=5)
    >>> sorted(round(v, 3) for v in res.codebook[:, 0].tolist()), sorted(res.counts.tolist())
    ([0.1, 10.2], [2, 2])

  References:
    Zeghidour et al., "SoundStream: An End-to-End Neural Audio Codec", 2021,
    https://arxiv.org/abs/2107.03312.
  """
  fn = "kmeans"
  _check_key(fn, key)
  V.check_rank(fn, "x", x, min_rank=1)
  V.check_floating(fn, "x", x)
  V.check_scalar(fn, "num_codes", num_codes, low=1, integer=True, static=True)
  V.check_scalar(fn, "iters", iters, low=0, integer=True, static=True)
  V.check_choice(fn, "metric", metric, METRICS)
  x = jnp.asarray(x)
  x = x.reshape(-1, x.shape[-1])
  if x.shape[0] < 1:
    raise ValueError(f"{fn}: x must hold at least one vector, got {V.describe(x)}")
  means, bins = _kmeans(key, jax.lax.stop_gradient(x), int(num_codes), int(iters), metric,
                        implementation)
  return KMeans(means, bins)


def replace_dead_codes(key: Any, state: VQEMAState, z: Float[Array, "*batch d"], *,
                       threshold: float | Float[Array, ""] = 2.0) -> VQEMAState:
  """Replaces the codes whose EMA count is below ``threshold`` by random vectors of the batch.

  .. math::
    \\text{dead}_k = [n_k < t],\\; s_k = z_{u_k},\\, u_k \\sim U\\{0..N-1\\}:\\quad
    e_k \\leftarrow s_k,\\; n_k \\leftarrow t,\\; m_k \\leftarrow t\\, s_k \\quad (\\text{dead } k)

  Jit-safe (fixed shapes); a threshold of 0 replaces nothing.

  Args:
    key: ``jax.random`` key for the replacement draw.
    state: :class:`~bottleneck_jax.quantize.VQEMAState` (after :func:`vq_ema_update`).
    z: the batch ``[*batch, d]`` (the raw encoder outputs), dtype of the state, at least one.
    threshold: ``t >= 0`` (may be traced); vector-quantize-pytorch recommends 2.

  Returns:
    The new :class:`~bottleneck_jax.quantize.VQEMAState` (no gradient flows through it).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.quantize import vq_ema_init, replace_dead_codes
    >>> state = vq_ema_init(jnp.zeros((3, 2)))._replace(cluster_size=jnp.array([5.0, 0.1, 3.0]))
    >>> new = replace_dead_codes(jax.random.key(0), state, jnp.full((4, 2), 7.0))
    >>> new.codebook.tolist(), new.cluster_size.tolist()
    ([[0.0, 0.0], [7.0, 7.0], [0.0, 0.0]], [5.0, 2.0, 3.0])

  References:
    Dhariwal et al., "Jukebox: A Generative Model for Music", 2020,
    https://arxiv.org/abs/2005.00341; Zeghidour et al., SoundStream, 2021.
  """
  fn = "replace_dead_codes"
  _check_key(fn, key)
  if not isinstance(state, VQEMAState):
    raise TypeError(f"{fn}: state must be a VQEMAState (from vq_ema_init), got "
                    f"{type(state).__name__}")
  V.check_rank(fn, "state.codebook", state.codebook, 2)
  d = state.codebook.shape[1]
  V.check_rank(fn, "z", z, min_rank=1)
  V.check_floating(fn, "z", z)
  V.check_axis_size(fn, "z", z, -1, d, "the codebook's d")
  if jnp.dtype(z.dtype) != jnp.dtype(state.codebook.dtype):
    raise TypeError(f"{fn}: z must have the dtype of the state "
                    f"({jnp.dtype(state.codebook.dtype).name}), got {V.describe(z)}")
  V.check_scalar(fn, "threshold", threshold, low=0.0)
  x = jax.lax.stop_gradient(jnp.asarray(z)).reshape(-1, d)
  if x.shape[0] < 1:
    raise ValueError(f"{fn}: z must hold at least one vector, got {V.describe(z)}")
  return _replace(key, state, x, threshold)


__all__ = ["KMeans", "kmeans", "replace_dead_codes"]
