"""Helpers shared by the block-sparse attention implementations (private).

The prefill implementations take ``(q, k, v, block_idx, block_valid, q_segment_ids,
kv_segment_ids, *, causal, scale, block_sizes)`` already validated and normalised by the public
:func:`bottleneck_jax.ops.block_sparse_attention`:

* ``q [B, Lq, H, D]``, ``k, v [B, Lk, Hkv, D]`` of one floating dtype, ``H % Hkv == 0``;
* ``block_idx [B, Hkv, nq, K]`` int32 and ``block_valid [B, Hkv, nq, K]`` bool, the output of
  :func:`normalise_table`: every valid entry names a key block in ``[0, nk)``, no key block is
  valid twice in a row of the table, and invalid entries point at block 0;
* ``q_segment_ids [B, Lq]``, ``kv_segment_ids [B, Lk]``: both ``None`` or both int32;
* ``block_sizes = (bq, bk)``: the query-block and key-block sizes of the table;

and return ``(out [B, Lq, H, D] in q's dtype, lse [B, H, Lq] f32)``.

The decode implementations take ``(q, k, v, block_idx, block_valid, lengths, *, scale,
block_size)`` with ``q [B, H, D]``, ``k, v [B, T, Hkv, D]``, a normalised table
``[B, Hkv, K]`` and ``lengths [B]`` int32, and return ``(out [B, H, D], lse [B, H] f32)``.
"""

from __future__ import annotations

import jax.numpy as jnp

F32 = jnp.float32
NEG_INF = float("-inf")


def normalise_table(block_idx, block_valid, n_blocks: int):
  """``(idx int32, valid bool)``: entries outside ``[0, n_blocks)`` and repeats of a block already
  valid earlier in the same row become invalid; invalid entries point at block 0.

  A row of the table is a *set* of key blocks: every implementation then visits each selected
  block exactly once, so a repeated index can never count its keys twice.
  """
  idx = block_idx.astype(jnp.int32)
  valid = block_valid & (idx >= 0) & (idx < n_blocks)
  k = idx.shape[-1]
  if k > 1:
    same = (idx[..., :, None] == idx[..., None, :]) & valid[..., None, :]
    earlier = jnp.tril(jnp.ones((k, k), bool), -1)
    valid = valid & ~jnp.any(same & earlier, axis=-1)
  return jnp.where(valid, idx, 0), valid


def table_to_block_mask(block_idx, block_valid, n_blocks: int):
  """The bool ``[..., n_blocks]`` block mask of a normalised table ``[..., K]``."""
  onehot = (block_idx[..., None] == jnp.arange(n_blocks, dtype=jnp.int32)) & block_valid[..., None]
  return jnp.any(onehot, axis=-2)


def pad_axis(x, axis: int, size: int, value=0):
  """``x`` padded at the end of ``axis`` to ``size`` (no copy when already that long)."""
  if x is None or x.shape[axis] == size:
    return x
  pads = [(0, 0)] * x.ndim
  pads[axis] = (0, size - x.shape[axis])
  return jnp.pad(x, pads, constant_values=value)


__all__ = ["F32", "NEG_INF", "normalise_table", "pad_axis", "table_to_block_mask"]
