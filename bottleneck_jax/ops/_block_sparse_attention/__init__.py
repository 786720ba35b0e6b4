"""Block-sparse attention and block-sparse flash-decode over a block table.

A *block table* names, for every query block (prefill) or every query (decode) and every key/value
head, the key blocks to attend: ``block_idx[..., e]`` is a key-block number (keys
``idx * bk .. idx * bk + bk - 1``), ``block_valid[..., e]`` says whether entry ``e`` is used. No
implementation ever builds a ``Lq x Lk`` mask (except ``"reference"``, the oracle). The sparse
attention papers of the library (block top-k decoding, banded masks for diffusion transformers,
important-token prefill) all reduce to this op.

Semantics, identical in every implementation:

* layout as :func:`bottleneck_jax.ops.attention` (``[batch, length, heads, head_dim]``, GQA when
  ``Hkv`` divides ``H``; the table is per *key/value* head, shared by the ``H / Hkv`` query heads
  of the group);
* a row of the table is a **set**: entries outside ``[0, n_key_blocks)``, invalid entries and
  repeats of a block already named earlier in the row are ignored;
* query ``i`` (in query block ``i // bq``) attends key ``j`` iff ``j``'s block is in its row, and
  ``j < Lk``, and (``causal``) ``j <= i``, and (``segment_ids``) the segments agree and are
  positive; a query with nothing to attend gets ``out = 0``, ``lse = -inf``, zero gradients;
* with every block selected the op *is* dense attention (same values, same log-sum-exp);
* bf16/f16 inputs: f32 statistics, ``out`` in the input dtype, ``lse`` f32.

Implementations (``implementation=``, see :mod:`bottleneck_jax.kernels`): ``"reference"``
(the table expanded to a dense mask, then dense reference attention), ``"xla"`` (a loop over the
table with the online softmax; ``custom_vjp`` recomputing each tile; decode gathers the selected
blocks), ``"pallas"`` (kernels reading key/value blocks through the table; interpret mode on CPU,
Triton on GPU, the only platform they are registered as validated on).
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.kernels import Op
from bottleneck_jax.kernels import blocks as _blocks
from bottleneck_jax.ops._attention import AttentionOutput, _segment_pair
from bottleneck_jax.ops._block_sparse_attention import pallas as _pallas
from bottleneck_jax.ops._block_sparse_attention import reference as _reference
from bottleneck_jax.ops._block_sparse_attention import xla as _xla
from bottleneck_jax.ops._block_sparse_attention.common import normalise_table

BLOCK_SPARSE_ATTENTION = Op(
    "block_sparse_attention",
    {"reference": _reference.attention, "xla": _xla.attention, "pallas": _pallas.attention},
    validated_on={"pallas": ("gpu",)})
BLOCK_SPARSE_DECODE = Op(
    "block_sparse_decode",
    {"reference": _reference.decode, "xla": _xla.decode, "pallas": _pallas.decode},
    validated_on={"pallas": ("gpu",)})


def _check_qkv(fn, q, k, v, q_rank):
  for name, x, r in (("q", q, q_rank), ("k", k, 4), ("v", v, 4)):
    V.check_rank(fn, name, x, r)
    V.check_floating(fn, name, x)
  for name, x in (("k", k), ("v", v)):
    if jnp.dtype(x.dtype) != jnp.dtype(q.dtype):
      raise TypeError(f"{fn}: {name} must have the same dtype as q ({jnp.dtype(q.dtype).name}), "
                      f"got {jnp.dtype(x.dtype).name}")
  V.check_same_shape(fn, "k", k, "v", v)
  if min(q.shape) < 1 or min(k.shape) < 1:
    raise ValueError(f"{fn}: q and k must have non-empty axes, got shapes {list(q.shape)} and "
                     f"{list(k.shape)}")
  h, d = q.shape[-2], q.shape[-1]
  if k.shape[0] != q.shape[0]:
    raise ValueError(f"{fn}: k must have the batch size of q ({q.shape[0]}) on axis 0, got "
                     f"shape {list(k.shape)}")
  if k.shape[3] != d:
    raise ValueError(f"{fn}: k must have the head_dim of q ({d}) on axis 3, got shape "
                     f"{list(k.shape)}")
  if h % k.shape[2]:
    raise ValueError(f"{fn}: k must have a number of heads dividing q's {h} (GQA/MQA), got "
                     f"{k.shape[2]} (shape {list(k.shape)})")


def _check_table(fn, block_idx, block_valid, shape):
  """Validates the table against ``shape`` (leading axes may be 1) and broadcasts it."""
  V.check_array(fn, "block_idx", block_idx)
  V.check_integer(fn, "block_idx", block_idx)
  V.check_rank(fn, "block_idx", block_idx, len(shape) + 1)
  bshape = tuple(block_idx.shape)
  ok = all(s in (1, e) for s, e in zip(bshape[:2], shape[:2])) and bshape[2:-1] == shape[2:]
  if not ok or bshape[-1] < 1:
    exp = ", ".join([f"{shape[0]} or 1", f"{shape[1]} or 1", *map(str, shape[2:]), "K >= 1"])
    raise ValueError(f"{fn}: block_idx must have shape [{exp}], got {list(bshape)}")
  full = tuple(shape) + (bshape[-1],)
  if block_valid is None:
    valid = jnp.ones(full, bool)
  else:
    V.check_array(fn, "block_valid", block_valid)
    if jnp.dtype(block_valid.dtype) != jnp.bool_:
      raise TypeError(f"{fn}: block_valid must be a boolean array, got "
                      f"{jnp.dtype(block_valid.dtype).name}")
    V.check_same_shape(fn, "block_idx", block_idx, "block_valid", block_valid)
    valid = jnp.broadcast_to(jnp.asarray(block_valid), full)
  return jnp.broadcast_to(jnp.asarray(block_idx), full), valid


def _block_pair(fn, block_size):
  if isinstance(block_size, (tuple, list)):
    if len(block_size) != 2:
      raise TypeError(f"{fn}: block_size must be an int or a pair (block_q, block_k), got "
                      f"{block_size!r}")
    pair = tuple(block_size)
  else:
    pair = (block_size, block_size)
  for name, b in zip(("block_size[0]", "block_size[1]"), pair):
    V.check_scalar(fn, name if isinstance(block_size, (tuple, list)) else "block_size", b,
                   low=1, integer=True)
  return int(pair[0]), int(pair[1])


def block_sparse_attention(
    q: Float[Array, "batch q_len heads head_dim"],
    k: Float[Array, "batch kv_len kv_heads head_dim"],
    v: Float[Array, "batch kv_len kv_heads head_dim"],
    block_idx: Int[Array, "#batch #kv_heads q_blocks k_entries"],
    *,
    block_size: int | tuple[int, int],
    block_valid: Bool[Array, "#batch #kv_heads q_blocks k_entries"] | None = None,
    segment_ids: (Int[Array, "batch len"]
                  | tuple[Int[Array, "batch q_len"], Int[Array, "batch kv_len"]] | None) = None,
    causal: bool = False,
    scale: float | None = None,
    implementation: Any = None,
) -> AttentionOutput:
  r"""Attention restricted to the key blocks a block table selects, with the log-sum-exp.

  .. math::

    A(i) = \{\, j : \lfloor j / b_k \rfloor \in T[\lfloor i / b_q \rfloor] \,\}
      \cap \{\text{causal, segment constraints}\}, \qquad
    \mathrm{out}_i = \sum_{j \in A(i)} \mathrm{softmax}_{A(i)}(\mathrm{scale}\, q_i\cdot k_j)\, v_j,

  per batch element and query head, where ``T[r]`` is the set of valid entries of row ``r`` of
  the table of the head's key/value head. The cost is proportional to the number of selected
  blocks; the fused implementations never store a ``Lq x Lk`` array and recompute tiles in the
  backward pass. Differentiable in ``q``, ``k``, ``v`` (also through ``lse``).

  Args:
    q: queries ``[B, Lq, H, D]`` (f32, bf16 or f16).
    k: keys ``[B, Lk, Hkv, D]``, same dtype; ``Hkv`` divides ``H``.
    v: values, same shape and dtype as ``k``.
    block_idx: integer ``[B|1, Hkv|1, nq, K]`` with ``nq = ceil(Lq / block_q)``: the key blocks
      of each query block (any order; out-of-range and repeated entries are ignored).
    block_size: ``block_k`` for both, or a pair ``(block_q, block_k)``: the table's granularity.
    block_valid: optional boolean, same shape as ``block_idx``; False entries are ignored.
    segment_ids: optional integer ``[B, L]`` or a pair ``(q_segment_ids, kv_segment_ids)``, as in
      :func:`bottleneck_jax.ops.attention` (0 marks padding).
    causal: query ``i`` attends keys ``j <= i`` only.
    scale: static positive float; default ``1 / sqrt(D)``.
    implementation: ``None``, ``"reference"``, ``"xla"``, ``"pallas"`` or a sequence of them.

  Returns:
    :class:`~bottleneck_jax.ops.AttentionOutput` ``(out [B, Lq, H, D], lse [B, H, Lq] f32)``.

  Example:
    >>> q = k = v = jnp.ones((1, 8, 1, 4))
    >>> idx = jnp.array([[[[0], [1]]]])              # query block r attends key block r
    >>> res = block_sparse_attention(q, k, v, idx, block_size=4)
    >>> round(float(res.lse[0, 0, 0]), 4)            # 4 keys with logit 4 / sqrt(4) = 2
    3.3863

  References:
    Dao et al., *FlashAttention: Fast and Memory-Efficient Exact Attention with IO-Awareness*,
    NeurIPS 2022, https://arxiv.org/abs/2205.14135 (block-sparse FlashAttention, Sec. 3.3).
  """
  fn = "block_sparse_attention"
  _check_qkv(fn, q, k, v, 4)
  bq, bk = _block_pair(fn, block_size)
  if not isinstance(causal, bool):
    raise TypeError(f"{fn}: causal must be a Python bool, got {type(causal).__name__}")
  if scale is not None:
    V.check_scalar(fn, "scale", scale, low=0, low_inclusive=False, static=True)
  b, lq, _, d = q.shape
  lk, hkv = k.shape[1], k.shape[2]
  nq, nk = _blocks.cdiv(lq, bq), _blocks.cdiv(lk, bk)
  idx, valid = _check_table(fn, block_idx, block_valid, (b, hkv, nq))
  q_seg, kv_seg = _segment_pair(fn, segment_ids, b, lq, lk)
  idx, valid = normalise_table(idx, valid, nk)
  scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
  out, lse = BLOCK_SPARSE_ATTENTION(q, k, v, idx, valid, q_seg, kv_seg, causal=causal,
                                    scale=scale, block_sizes=(bq, bk),
                                    implementation=implementation)
  return AttentionOutput(out, lse)


def block_sparse_decode(
    q: Float[Array, "batch heads head_dim"],
    k: Float[Array, "batch cache_len kv_heads head_dim"],
    v: Float[Array, "batch cache_len kv_heads head_dim"],
    block_idx: Int[Array, "#batch #kv_heads k_entries"],
    *,
    block_size: int,
    block_valid: Bool[Array, "#batch #kv_heads k_entries"] | None = None,
    lengths: Int[Array, "batch"] | None = None,
    scale: float | None = None,
    implementation: Any = None,
) -> AttentionOutput:
  r"""Flash-decode of one new query per sequence over the key blocks a block table selects.

  .. math::

    \mathrm{out}_h = \sum_{j \in A} \mathrm{softmax}_A(\mathrm{scale}\, q_h \cdot k_j)\, v_j,
    \qquad A = \{\, j < \mathrm{length} : \lfloor j / b \rfloor \in T[h_{kv}] \,\},

  for each batch element and query head ``h`` (whose key/value head is ``h_kv = h // G``). The
  ``G`` query heads of a group share the row of the table, so every selected key/value block is
  read once per group: memory traffic proportional to ``Hkv * K * block_size``, not to the cache.

  Args:
    q: the new queries ``[B, H, D]``.
    k: the key cache ``[B, T, Hkv, D]`` (same dtype); ``Hkv`` divides ``H``.
    v: the value cache, same shape and dtype.
    block_idx: integer ``[B|1, Hkv|1, K]``: the key blocks to read (repeats and out-of-range
      entries ignored).
    block_size: the number of keys per block.
    block_valid: optional boolean, same shape as ``block_idx``.
    lengths: optional integer ``[B]``: keys ``j >= lengths[b]`` (unwritten cache slots) are never
      attended; default ``T``.
    scale: static positive float; default ``1 / sqrt(D)``.
    implementation: ``None``, ``"reference"``, ``"xla"``, ``"pallas"`` or a sequence of them.

  Returns:
    :class:`~bottleneck_jax.ops.AttentionOutput` ``(out [B, H, D], lse [B, H] f32)``.

  Example:
    >>> q = jnp.ones((1, 2, 4)); k = v = jnp.ones((1, 8, 1, 4))
    >>> res = block_sparse_decode(q, k, v, jnp.array([[[1]]]), block_size=4,
    ...                           lengths=jnp.array([6]))
    >>> round(float(res.lse[0, 0]), 4)               # keys 4 and 5: 2 + log 2
    2.6931

  References:
    Dao et al., *Flash-Decoding for long-context inference*, 2023,
    https://crfm.stanford.edu/2023/10/12/flashdecoding.html.
  """
  fn = "block_sparse_decode"
  _check_qkv(fn, q, k, v, 3)
  V.check_scalar(fn, "block_size", block_size, low=1, integer=True)
  if scale is not None:
    V.check_scalar(fn, "scale", scale, low=0, low_inclusive=False, static=True)
  b, _, d = q.shape
  t, hkv = k.shape[1], k.shape[2]
  idx, valid = _check_table(fn, block_idx, block_valid, (b, hkv))
  if lengths is None:
    lengths = jnp.full((b,), t, jnp.int32)
  else:
    V.check_array(fn, "lengths", lengths)
    V.check_integer(fn, "lengths", lengths)
    V.check_shape(fn, "lengths", lengths, (b,))
    lengths = jnp.asarray(lengths).astype(jnp.int32)
  idx, valid = normalise_table(idx, valid, _blocks.cdiv(t, int(block_size)))
  scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
  out, lse = BLOCK_SPARSE_DECODE(q, k, v, idx, valid, lengths, scale=scale,
                                 block_size=int(block_size), implementation=implementation)
  return AttentionOutput(out, lse)


def block_mask_to_table(
    block_mask: Bool[Array, "*batch n_blocks"],
    *,
    max_blocks: int,
) -> tuple[Int[Array, "*batch max_blocks"], Bool[Array, "*batch max_blocks"]]:
  """The block table ``(block_idx, block_valid)`` of a boolean block mask.

  Row ``r`` lists the indices of its True blocks in increasing order, then invalid entries;
  True blocks beyond ``max_blocks`` are dropped (the first ``max_blocks`` are kept).

  Args:
    block_mask: boolean ``[..., n_blocks]`` (e.g. ``[B, Hkv, nq, nk]``).
    max_blocks: the static table width ``K >= 1``.

  Returns:
    ``(block_idx int32 [..., K], block_valid bool [..., K])``.

  Example:
    >>> idx, valid = block_mask_to_table(jnp.array([False, True, True, False]), max_blocks=3)
    >>> idx.tolist(), valid.tolist()
    ([1, 2, 0], [True, True, False])
  """
  fn = "block_mask_to_table"
  V.check_rank(fn, "block_mask", block_mask, min_rank=1)
  if jnp.dtype(block_mask.dtype) != jnp.bool_:
    raise TypeError(f"{fn}: block_mask must be a boolean array, got "
                    f"{jnp.dtype(block_mask.dtype).name}")
  if block_mask.shape[-1] < 1:
    raise ValueError(f"{fn}: block_mask must have at least one block on its last axis, got "
                     f"shape {list(block_mask.shape)}")
  V.check_scalar(fn, "max_blocks", max_blocks, low=1, integer=True)
  mask = jnp.asarray(block_mask)
  n = mask.shape[-1]
  order = jnp.argsort(~mask, axis=-1, stable=True)[..., :max_blocks].astype(jnp.int32)
  valid = jnp.take_along_axis(mask, order, axis=-1)
  if max_blocks > n:
    order = jnp.pad(order, [(0, 0)] * (mask.ndim - 1) + [(0, max_blocks - n)])
    valid = jnp.pad(valid, [(0, 0)] * (mask.ndim - 1) + [(0, max_blocks - n)])
  return jnp.where(valid, order, 0), valid


__all__ = ["BLOCK_SPARSE_ATTENTION", "BLOCK_SPARSE_DECODE", "block_mask_to_table",
           "block_sparse_attention", "block_sparse_decode"]
