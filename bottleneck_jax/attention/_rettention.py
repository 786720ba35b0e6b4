r"""Re-ttention: ultra-sparse attention for diffusion transformers by statistical reshape.

Paper: Chen et al., *Re-ttention: Ultra Sparse Visual Generation via Attention Statistical
Reshape* (NeurIPS 2025), https://arxiv.org/abs/2505.22918, code
https://github.com/cccrrrccc/Re-ttention.

Idea. A diffusion transformer attends the same tokens at every denoising step, and its attention
statistics change slowly across steps. Plain sparse attention over a static mask ``S`` (3.1% of
the keys) renormalises the softmax over ``S`` alone, a "normalisation shift" that ruins quality at
high sparsity. Re-ttention reuses statistics of an earlier full step instead: at a *refresh* step
it computes the full output and the sparse one, and caches per head and query row

.. math::

  \rho_i = \frac{\sum_{j \in S_i} e^{s_{ij}}}{\sum_j e^{s_{ij}}}
         = e^{\mathrm{lse}_{S,i} - \mathrm{lse}_i}, \qquad
  R_i = O^\mathrm{full}_i - \rho_i\, O^S_i ,

the softmax mass the mask captures and the residual contribution of the dropped keys. At the
following *sparse* steps only the masked attention ``O^S`` is computed and

.. math::  O_i = \rho_i\, O^S_i + R_i, \qquad \rho \leftarrow \rho + \lambda

(``lambda = 0.04`` per sparse step in the reference code). Because ``rho O^S`` is an elementwise
rescale of a standard sparse-attention output, any sparse kernel that returns the log-sum-exp is
enough: here :func:`bottleneck_jax.ops.attention` with a boolean mask, or
:func:`bottleneck_jax.ops.block_sparse_attention` with a block table (never a dense mask).

What is implemented: :class:`RettentionCache`, :func:`rettention_refresh`,
:func:`rettention_sparse`, :func:`rettention_step` (``lax.switch`` over the modes FULL=0,
REFRESH=1, SPARSE=2, so a ``lax.scan`` over denoising steps stays pure), :func:`rettention_schedule`,
:func:`band_block_table` (the PixArt band in whole blocks), and the NNX
:class:`RettentionSelfAttention`.

Departures from the paper / its code:

* The statistics are cached at the attention output (per head, before the output projection);
  the reference caches ``R`` after ``to_out``. The two are equivalent (``to_out`` is affine and its
  bias cancels in ``R``).
* The reference's mask module is missing from its repository; the band mask here is the PixArt
  band ``|i - j| <= w / 2``, ``w = floor(T * keep_ratio)``, rounded out to whole blocks (every key
  block that meets a query block's band), so slightly more than ``keep_ratio`` is kept. Any other
  static pattern can be passed as a boolean mask or a block table.
* ``ratio_increment`` (the reference's hard-coded ``+0.04``) is a parameter; ``rho`` is not
  clipped, as in the reference.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Bool, Float, Int

from bottleneck_jax import ops
from bottleneck_jax.core import validation as V
from bottleneck_jax.kernels import blocks as _blocks

FULL, REFRESH, SPARSE = 0, 1, 2


class RettentionCache(NamedTuple):
  """Statistics of the last refresh step.

  Attributes:
    ratio: ``[B, H, Lq]`` f32, the softmax mass ``rho`` the mask captured (plus the increments of
      the sparse steps since).
    residual: ``[B, Lq, H, D]``, ``O_full - rho O_S`` at the refresh step.
  """

  ratio: Float[Array, "batch heads q_len"]
  residual: Float[Array, "batch q_len heads head_dim"]


def _check(fn, q, k, v, mask, block_idx, block_size):
  for name, x in (("q", q), ("k", k), ("v", v)):
    V.check_rank(fn, name, x, 4)
    V.check_floating(fn, name, x)
  if (mask is None) == (block_idx is None):
    raise ValueError(f"{fn}: exactly one of mask (boolean [B|1, H|1, Lq, Lk]) and block_idx "
                     f"(a block table) must be given, got "
                     f"{'both' if mask is not None else 'neither'}")
  if block_idx is not None and block_size is None:
    raise ValueError(f"{fn}: block_size must be given with block_idx, got None")


def _attend(fn, q, k, v, mask, block_idx, block_valid, block_size, implementation):
  """The sparse attention (an ``AttentionOutput``) over the mask or the block table."""
  del fn
  if mask is not None:
    return ops.attention(q, k, v, mask=mask, implementation=implementation)
  return ops.block_sparse_attention(q, k, v, block_idx, block_valid=block_valid,
                                    block_size=block_size, implementation=implementation)


def _named(fn, thunk):
  """Runs ``thunk()``; input errors of the attention ops are re-raised naming ``fn``."""
  try:
    return thunk()
  except (TypeError, ValueError) as e:
    msg = str(e)
    for op in ("attention:", "block_sparse_attention:"):
      if msg.startswith(op):
        raise type(e)(f"{fn}:" + msg[len(op):]) from None
    raise


def _rescale(ratio, out_sparse):
  """``rho O_S`` with ``rho [B, H, Lq]`` and ``O_S [B, Lq, H, D]`` (f32)."""
  return jnp.swapaxes(ratio, 1, 2)[..., None] * out_sparse.astype(jnp.float32)


def _refresh(q, k, v, sparse_fn, implementation):
  full = ops.attention(q, k, v, implementation=implementation)
  sp = sparse_fn(q, k, v)
  ratio = jnp.where(jnp.isfinite(sp.lse), jnp.exp(sp.lse - full.lse), 0.0)
  residual = full.out.astype(jnp.float32) - _rescale(ratio, sp.out)
  return full.out, RettentionCache(ratio.astype(jnp.float32), residual.astype(q.dtype))


def _sparse(q, k, v, cache, sparse_fn, ratio_increment):
  if not isinstance(ratio_increment, jax.Array):
    ratio_increment = float(ratio_increment)
  sp = sparse_fn(q, k, v)
  out = _rescale(cache.ratio, sp.out) + cache.residual.astype(jnp.float32)
  return out.astype(q.dtype), RettentionCache(cache.ratio + ratio_increment, cache.residual)


def _sparse_fn(fn, mask, block_idx, block_valid, block_size, implementation):
  return lambda q, k, v: _attend(fn, q, k, v, mask, block_idx, block_valid, block_size,
                                 implementation)


def rettention_refresh(
    q: Float[Array, "batch q_len heads head_dim"],
    k: Float[Array, "batch kv_len kv_heads head_dim"],
    v: Float[Array, "batch kv_len kv_heads head_dim"],
    *,
    mask: Bool[Array, "#batch #heads q_len kv_len"] | None = None,
    block_idx: Int[Array, "#batch #kv_heads q_blocks entries"] | None = None,
    block_valid: Bool[Array, "#batch #kv_heads q_blocks entries"] | None = None,
    block_size: int | tuple[int, int] | None = None,
    implementation: Any = None,
) -> tuple[Float[Array, "batch q_len heads head_dim"], RettentionCache]:
  r"""A refresh step: the full attention output and the statistics of the sparse pattern.

  ``rho = exp(lse_S - lse)`` and ``R = O_full - rho O_S``, so ``rho O_S + R = O_full`` exactly on
  this step's inputs. The sparse pattern is a boolean ``mask`` or a block table (``block_idx``,
  ``block_valid``, ``block_size`` as in :func:`bottleneck_jax.ops.block_sparse_attention`).

  Args:
    q: ``[B, Lq, H, D]``.
    k: ``[B, Lk, Hkv, D]``.
    v: ``[B, Lk, Hkv, D]``.
    mask: boolean ``[B|1, H|1, Lq, Lk]`` (True = in the sparse set), or
    block_idx: a block table ``[B|1, Hkv|1, nq, K]``,
    block_valid: its validity (optional), and
    block_size: its block size.
    implementation: of the attention kernels.

  Returns:
    ``(out_full [B, Lq, H, D], RettentionCache)``.

  Example:
    >>> q = k = v = jnp.ones((1, 4, 1, 2))
    >>> out, cache = rettention_refresh(q, k, v, mask=jnp.eye(4, dtype=bool)[None, None])
    >>> round(float(cache.ratio[0, 0, 0]), 4)      # equal logits: one key of four
    0.25
  """
  fn = "rettention_refresh"
  _check(fn, q, k, v, mask, block_idx, block_size)
  sparse_fn = _sparse_fn(fn, mask, block_idx, block_valid, block_size, implementation)
  return _named(fn, lambda: _refresh(q, k, v, sparse_fn, implementation))


def rettention_sparse(
    q: Float[Array, "batch q_len heads head_dim"],
    k: Float[Array, "batch kv_len kv_heads head_dim"],
    v: Float[Array, "batch kv_len kv_heads head_dim"],
    cache: RettentionCache,
    *,
    mask: Bool[Array, "#batch #heads q_len kv_len"] | None = None,
    block_idx: Int[Array, "#batch #kv_heads q_blocks entries"] | None = None,
    block_valid: Bool[Array, "#batch #kv_heads q_blocks entries"] | None = None,
    block_size: int | tuple[int, int] | None = None,
    ratio_increment: float = 0.0,
    implementation: Any = None,
) -> tuple[Float[Array, "batch q_len heads head_dim"], RettentionCache]:
  r"""A sparse step: ``O = rho O_S + R`` from the cached statistics, then ``rho += lambda``.

  Only the sparse attention is computed. On the inputs of the refresh step it returns the full
  output (up to rounding).

  Args:
    q, k, v: as in :func:`rettention_refresh`.
    cache: the :class:`RettentionCache` of the last refresh.
    mask, block_idx, block_valid, block_size: the sparse pattern (one of the two forms).
    ratio_increment: ``lambda``, added to ``rho`` after the step (reference: 0.04).
    implementation: of the attention kernel.

  Returns:
    ``(out [B, Lq, H, D], the updated cache)``.
  """
  fn = "rettention_sparse"
  _check(fn, q, k, v, mask, block_idx, block_size)
  _check_cache(fn, q, cache)
  V.check_scalar(fn, "ratio_increment", ratio_increment)
  sparse_fn = _sparse_fn(fn, mask, block_idx, block_valid, block_size, implementation)
  return _named(fn, lambda: _sparse(q, k, v, cache, sparse_fn, ratio_increment))


def _check_cache(fn, q, cache):
  if not isinstance(cache, RettentionCache):
    raise TypeError(f"{fn}: cache must be a RettentionCache, got {type(cache).__name__}")
  b, lq, h, d = q.shape
  V.check_shape(fn, "cache.ratio", cache.ratio, (b, h, lq))
  V.check_shape(fn, "cache.residual", cache.residual, (b, lq, h, d))


def rettention_step(
    q: Float[Array, "batch q_len heads head_dim"],
    k: Float[Array, "batch kv_len kv_heads head_dim"],
    v: Float[Array, "batch kv_len kv_heads head_dim"],
    cache: RettentionCache,
    mode: Int[Array, ""] | int,
    *,
    mask: Bool[Array, "#batch #heads q_len kv_len"] | None = None,
    block_idx: Int[Array, "#batch #kv_heads q_blocks entries"] | None = None,
    block_valid: Bool[Array, "#batch #kv_heads q_blocks entries"] | None = None,
    block_size: int | tuple[int, int] | None = None,
    ratio_increment: float = 0.04,
    implementation: Any = None,
) -> tuple[Float[Array, "batch q_len heads head_dim"], RettentionCache]:
  """One denoising step in ``mode`` (0 FULL, 1 REFRESH, 2 SPARSE), traceable (``lax.switch``).

  FULL returns dense attention and leaves the cache; REFRESH is :func:`rettention_refresh`;
  SPARSE is :func:`rettention_sparse` with ``ratio_increment`` (reference: 0.04). Scan it over
  :func:`rettention_schedule`.

  Args:
    q, k, v, cache: as in :func:`rettention_sparse` (a zero cache before the first refresh).
    mode: int32 scalar (may be traced).
    mask, block_idx, block_valid, block_size: the sparse pattern.
    ratio_increment: ``lambda``.
    implementation: of the attention kernels.

  Returns:
    ``(out, cache)``.
  """
  fn = "rettention_step"
  _check(fn, q, k, v, mask, block_idx, block_size)
  _check_cache(fn, q, cache)
  V.check_array(fn, "mode", mode)
  if np.shape(mode) != ():
    raise ValueError(f"{fn}: mode must be a scalar, got shape {list(np.shape(mode))}")
  V.check_integer(fn, "mode", mode)
  V.check_scalar(fn, "ratio_increment", ratio_increment)
  sparse_fn = _sparse_fn(fn, mask, block_idx, block_valid, block_size, implementation)
  cache = RettentionCache(cache.ratio.astype(jnp.float32), cache.residual.astype(q.dtype))

  def full(c):
    return ops.attention(q, k, v, implementation=implementation).out, c

  def refresh(c):
    del c
    return _refresh(q, k, v, sparse_fn, implementation)

  def sparse(c):
    return _sparse(q, k, v, c, sparse_fn, ratio_increment)

  return _named(fn, lambda: jax.lax.switch(jnp.clip(jnp.asarray(mode), 0, 2),
                                           (full, refresh, sparse), cache))


def rettention_schedule(num_steps: int, warmup: int, refresh_every: int) -> np.ndarray:
  """The modes of a sampling run: FULL (0) for the first ``warmup`` steps, then REFRESH (1)
  every ``refresh_every`` steps starting at ``warmup``, SPARSE (2) in between.

  PixArt in the reference: ``(20, 5, 5)``; CogVideoX: ``(50, 15, 5)``.

  Returns:
    int32 NumPy array ``[num_steps]``.

  Example:
    >>> rettention_schedule(8, 2, 3).tolist()
    [0, 0, 1, 2, 2, 1, 2, 2]
  """
  fn = "rettention_schedule"
  V.check_scalar(fn, "num_steps", num_steps, low=1, integer=True)
  V.check_scalar(fn, "warmup", warmup, low=0, integer=True)
  V.check_scalar(fn, "refresh_every", refresh_every, low=1, integer=True)
  t = np.arange(num_steps)
  modes = np.where((t - warmup) % refresh_every == 0, REFRESH, SPARSE)
  return np.where(t < warmup, FULL, modes).astype(np.int32)


def band_block_table(
    seq_len: int,
    *,
    keep_ratio: float,
    block_size: int,
) -> tuple[Int[Array, "1 1 n_blocks entries"], Bool[Array, "1 1 n_blocks entries"]]:
  """The block table of the band ``|i - j| <= w / 2``, ``w = floor(seq_len * keep_ratio)``.

  Query block ``r`` gets every key block that meets its band; the result has shape
  ``[1, 1, nb, K]`` and broadcasts over batch and heads in
  :func:`bottleneck_jax.ops.block_sparse_attention`.

  Args:
    seq_len: tokens ``T`` (queries = keys).
    keep_ratio: in ``(0, 1]``; 1 keeps everything.
    block_size: the table's block size (queries and keys).

  Returns:
    ``(block_idx int32, block_valid bool)``.

  Example:
    >>> idx, ok = band_block_table(64, keep_ratio=0.125, block_size=16)   # w = 8
    >>> idx[0, 0, 1][ok[0, 0, 1]].tolist()
    [0, 1, 2]
  """
  fn = "band_block_table"
  V.check_scalar(fn, "seq_len", seq_len, low=1, integer=True)
  V.check_scalar(fn, "keep_ratio", keep_ratio, low=0, low_inclusive=False, high=1)
  V.check_scalar(fn, "block_size", block_size, low=1, integer=True)
  nb = _blocks.cdiv(seq_len, block_size)
  half = int(math.floor(seq_len * keep_ratio)) // 2
  if keep_ratio == 1:
    half = seq_len
  r = np.arange(nb)
  lo = np.maximum(r * block_size - half, 0) // block_size
  hi = np.minimum(np.minimum((r + 1) * block_size, seq_len) - 1 + half, seq_len - 1) // block_size
  width = int((hi - lo).max()) + 1
  idx = lo[:, None] + np.arange(width)[None]
  valid = idx <= hi[:, None]
  idx = np.where(valid, idx, 0)
  return (jnp.asarray(idx[None, None], jnp.int32), jnp.asarray(valid[None, None]))


class RettentionSelfAttention(nnx.Module):
  """Self-attention of a diffusion transformer block with Re-ttention's cached statistics.

  Owns the q/k/v/out projections; the :class:`RettentionCache` is an explicit argument and
  result, so a ``lax.scan`` over denoising steps (modes from :func:`rettention_schedule`) stays
  pure. The sparse pattern is the band of :func:`band_block_table`.

  Args:
    d_model: model width.
    n_heads: heads (``d_model`` divisible by it).
    seq_len: tokens per sample.
    keep_ratio: band width over ``seq_len`` (paper: 0.03125).
    block_size: block size of the band's table.
    ratio_increment: ``lambda`` per sparse step (reference: 0.04).
    rngs: ``nnx.Rngs``.
  """

  def __init__(self, d_model: int, n_heads: int, seq_len: int, *, keep_ratio: float = 0.03125,
               block_size: int = 16, ratio_increment: float = 0.04, rngs: nnx.Rngs):
    fn = "RettentionSelfAttention"
    V.check_scalar(fn, "d_model", d_model, low=1, integer=True)
    V.check_scalar(fn, "n_heads", n_heads, low=1, integer=True)
    if d_model % n_heads:
      raise ValueError(f"{fn}: n_heads must divide d_model ({d_model}), got {n_heads}")
    self.n_heads, self.head_dim = n_heads, d_model // n_heads
    self.block_size, self.ratio_increment = block_size, ratio_increment
    self.table = nnx.Variable(band_block_table(seq_len, keep_ratio=keep_ratio,
                                               block_size=block_size))
    self.qkv = nnx.Linear(d_model, 3 * d_model, rngs=rngs)
    self.out = nnx.Linear(d_model, d_model, rngs=rngs)

  def init_cache(self, batch: int, seq_len: int) -> RettentionCache:
    """A zero cache (before the first refresh)."""
    return RettentionCache(jnp.zeros((batch, self.n_heads, seq_len), jnp.float32),
                           jnp.zeros((batch, seq_len, self.n_heads, self.head_dim), jnp.float32))

  def __call__(self, x, cache: RettentionCache, mode):
    """``x [B, T, d_model]``, the cache and the step's mode -> ``(y, cache)``."""
    b, t, _ = x.shape
    q, k, v = jnp.split(self.qkv(x).reshape(b, t, 3 * self.n_heads, self.head_dim), 3, axis=2)
    idx, valid = self.table.get_value()
    o, cache = rettention_step(q, k, v, cache, mode, block_idx=idx, block_valid=valid,
                               block_size=self.block_size, ratio_increment=self.ratio_increment)
    return self.out(o.reshape(b, t, -1)), cache


__all__ = [
    "RettentionCache",
    "RettentionSelfAttention",
    "band_block_table",
    "rettention_refresh",
    "rettention_schedule",
    "rettention_sparse",
    "rettention_step",
]
