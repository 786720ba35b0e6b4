"""Reference block-sparse attention: the block table expanded to a dense ``[B, H, Lq, Lk]``
attend-mask, then the reference dense attention of :mod:`bottleneck_jax.ops._attention`.

The oracle of the tests: it materialises everything (mask and f32 logits) and is differentiated
by plain autodiff.
"""

from __future__ import annotations

import jax.numpy as jnp

from bottleneck_jax.kernels import blocks as _blocks
from bottleneck_jax.ops._attention import reference as _dense
from bottleneck_jax.ops._block_sparse_attention.common import table_to_block_mask


def dense_mask(block_idx, block_valid, *, lq: int, lk: int, h: int, block_sizes):
  """The bool ``[B, H, Lq, Lk]`` mask of a normalised table ``[B, Hkv, nq, K]``."""
  bq, bk = block_sizes
  hkv = block_idx.shape[1]
  bm = table_to_block_mask(block_idx, block_valid, _blocks.cdiv(lk, bk))   # [B, Hkv, nq, nk]
  m = jnp.repeat(jnp.repeat(bm, bq, axis=2), bk, axis=3)[:, :, :lq, :lk]
  return jnp.repeat(m, h // hkv, axis=1)


def attention(q, k, v, block_idx, block_valid, q_seg, kv_seg, *, causal, scale, block_sizes):
  """``(out [B, Lq, H, D], lse [B, H, Lq] f32)`` through a dense mask."""
  mask = dense_mask(block_idx, block_valid, lq=q.shape[1], lk=k.shape[1], h=q.shape[2],
                    block_sizes=block_sizes)
  return _dense.attention(q, k, v, mask, q_seg, kv_seg, causal=causal, scale=scale)


def decode(q, k, v, block_idx, block_valid, lengths, *, scale, block_size):
  """``(out [B, H, D], lse [B, H] f32)`` of one query per row over the selected key blocks."""
  t, h = k.shape[1], q.shape[1]
  bm = table_to_block_mask(block_idx, block_valid, _blocks.cdiv(t, block_size))  # [B, Hkv, nk]
  m = jnp.repeat(bm, block_size, axis=2)[:, :, :t]
  m = m & (jnp.arange(t)[None, None, :] < lengths[:, None, None])
  m = jnp.repeat(m, h // k.shape[2], axis=1)[:, :, None, :]                     # [B, H, 1, T]
  out, lse = _dense.attention(q[:, None], k, v, m, None, None, causal=False, scale=scale)
  return out[:, 0], lse[..., 0]


__all__ = ["attention", "decode", "dense_mask"]
