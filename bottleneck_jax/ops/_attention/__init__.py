"""Scaled dot-product attention with masks, segment ids and the log-sum-exp, memory linear in L.

A shared op: every family that runs a transformer (packed fine-tuning, sparse and KV-compressed
attention, the information-bottleneck encoders) calls :func:`attention`. Files: ``reference.py``
(materialises the ``[B, H, Lq, Lk]`` logits, the oracle), ``xla.py`` (blocked online softmax and
the FlashAttention-2 backward, shared by the fused implementations), ``pallas.py`` (a Pallas
forward kernel), ``common.py`` (tile sizes and sharding helpers).

Semantics, identical in every implementation:

* layout ``[batch, length, heads, head_dim]`` (the layout of ``jax.nn.dot_product_attention``);
  ``k``/``v`` may have fewer heads than ``q`` (GQA/MQA: ``Hkv`` dividing ``H``, query head ``h``
  uses key/value head ``h // (H / Hkv)``);
* query ``i`` may attend key ``j`` iff ``mask[b, h, i, j]`` (when given), the segment ids agree
  and are positive (when given; 0 marks padding, as in :mod:`bottleneck_jax.data.packing`), and
  ``j <= i`` (when ``causal``; queries and keys are aligned at position 0, so with ``Lq < Lk`` the
  last ``Lk - Lq`` keys are seen by nobody, top-left alignment as in
  ``jax.nn.dot_product_attention``);
* a query row with no key to attend (fully masked, e.g. a padding token) gets ``out = 0``,
  ``lse = -inf`` and a zero gradient, never NaN;
* keys that no query attends (and queries that attend nothing) are zeroed before any product:
  a NaN or Inf stored there (uninitialised padding, a cache slot) never reaches the outputs or the
  gradients. (A NaN in a value that *some* query attends does poison that tile's product, as in
  any matmul-based attention.)
* bf16/f16 inputs: logits, softmax statistics and accumulators are f32; ``out`` has the input
  dtype, ``lse`` is f32.

Implementations (``implementation=``, see :mod:`bottleneck_jax.kernels`):

* ``"reference"``: f32 logits ``[B, H, Lq, Lk]``, plain autodiff (stores the probabilities);
* ``"xla"``: ``lax.fori_loop`` over query blocks and key blocks with the online softmax
  (Rabe & Staats 2021; Dao 2022), ``custom_vjp`` whose backward recomputes each tile from
  ``(q, k, v, out, lse)`` (Dao 2023): temporaries ``O((Lq + Lk) H D + B H bq bk)``, nothing of
  size ``Lq x Lk``. Causal calls skip the tiles above the diagonal. Default on CPU, fallback
  everywhere;
* ``"pallas"``: a Pallas forward kernel (Triton on GPU, interpret mode on CPU) and the XLA
  backward; picked by default only on GPU (the only platform it is registered as validated on).

Tiles come from one helper, :func:`.common.block_sizes` (``block_sizes=`` overrides it).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.kernels import Op
from bottleneck_jax.ops._attention import pallas as _pallas
from bottleneck_jax.ops._attention import reference as _reference
from bottleneck_jax.ops._attention import xla as _xla


class AttentionOutput(NamedTuple):
  """What :func:`attention` returns.

  Attributes:
    out: ``[B, Lq, H, D]`` in the input dtype; 0 for fully masked query rows.
    lse: ``[B, H, Lq]`` f32, ``log sum_j exp(scale q_i . k_j)`` over the attended keys; ``-inf``
      for fully masked query rows.
  """

  out: Float[Array, "batch q_len heads head_dim"]
  lse: Float[Array, "batch heads q_len"]


ATTENTION = Op("attention", {"reference": _reference.attention, "xla": _xla.attention,
                             "pallas": _pallas.attention},
               validated_on={"pallas": ("gpu",)})


# --------------------------------------------------------------------------- validation


def _segment_pair(fn: str, segment_ids, b: int, lq: int, lk: int):
  if segment_ids is None:
    return None, None
  if isinstance(segment_ids, tuple):
    if len(segment_ids) != 2:
      raise ValueError(f"{fn}: segment_ids must be an array [B, L] or a pair (q_segment_ids "
                       f"[B, Lq], kv_segment_ids [B, Lk]), got a {type(segment_ids).__name__} of "
                       f"length {len(segment_ids)}")
    pair = tuple(segment_ids)
    names = ("segment_ids[0] (q_segment_ids)", "segment_ids[1] (kv_segment_ids)")
  else:
    if lq != lk:
      raise ValueError(f"{fn}: segment_ids must be a pair (q_segment_ids [B, {lq}], "
                       f"kv_segment_ids [B, {lk}]) when Lq != Lk, got a single array")
    pair = (segment_ids, segment_ids)
    names = ("segment_ids", "segment_ids")
  for name, seg, length in zip(names, pair, (lq, lk)):
    V.check_array(fn, name, seg)
    V.check_integer(fn, name, seg)
    V.check_shape(fn, name, seg, (b, length))
  return jnp.asarray(pair[0]), jnp.asarray(pair[1])


def _validate(fn, q, k, v, mask, causal, scale, block_sizes):
  for name, x in (("q", q), ("k", k), ("v", v)):
    V.check_rank(fn, name, x, 4)
    V.check_floating(fn, name, x)
  for name, x in (("k", k), ("v", v)):
    if jnp.dtype(x.dtype) != jnp.dtype(q.dtype):
      raise TypeError(f"{fn}: {name} must have the same dtype as q ({jnp.dtype(q.dtype).name}), "
                      f"got {jnp.dtype(x.dtype).name}")
  V.check_same_shape(fn, "k", k, "v", v)
  b, lq, h, d = q.shape
  _, lk, hkv, dk = k.shape
  if min(q.shape) < 1 or min(k.shape) < 1:
    raise ValueError(f"{fn}: q and k must have non-empty axes, got shapes {list(q.shape)} and "
                     f"{list(k.shape)}")
  if k.shape[0] != b:
    raise ValueError(f"{fn}: k must have the batch size of q ({b}) on axis 0, got shape "
                     f"{list(k.shape)}")
  if dk != d:
    raise ValueError(f"{fn}: k must have the head_dim of q ({d}) on axis 3, got shape "
                     f"{list(k.shape)}")
  if h % hkv:
    raise ValueError(f"{fn}: k must have a number of heads dividing q's {h} (GQA/MQA), got "
                     f"{hkv} (shape {list(k.shape)})")
  if mask is not None:
    V.check_rank(fn, "mask", mask, 4)
    if jnp.dtype(mask.dtype) != jnp.bool_:
      raise TypeError(f"{fn}: mask must be a boolean array (True = attend), got "
                      f"{jnp.dtype(mask.dtype).name}")
    mb, mh, mq, mk = mask.shape
    if mb not in (1, b) or mh not in (1, h) or (mq, mk) != (lq, lk):
      raise ValueError(f"{fn}: mask must have shape [{b} or 1, {h} or 1, {lq}, {lk}] "
                       f"([B|1, H|1, Lq, Lk]), got {list(mask.shape)}")
  if not isinstance(causal, bool):
    raise TypeError(f"{fn}: causal must be a Python bool, got {type(causal).__name__}")
  if scale is not None:
    V.check_scalar(fn, "scale", scale, low=0, low_inclusive=False, static=True)
  if block_sizes is not None:
    if not isinstance(block_sizes, (tuple, list)) or len(block_sizes) != 2:
      raise TypeError(f"{fn}: block_sizes must be None or a pair (block_q, block_k) of ints, got "
                      f"{block_sizes!r}")
    for name, bs in zip(("block_sizes[0]", "block_sizes[1]"), block_sizes):
      V.check_scalar(fn, name, bs, low=1, integer=True)


# --------------------------------------------------------------------------- public API


def attention(
    q: Float[Array, "batch q_len heads head_dim"],
    k: Float[Array, "batch kv_len kv_heads head_dim"],
    v: Float[Array, "batch kv_len kv_heads head_dim"],
    *,
    mask: Bool[Array, "#batch #heads q_len kv_len"] | None = None,
    segment_ids: (Int[Array, "batch len"]
                  | tuple[Int[Array, "batch q_len"], Int[Array, "batch kv_len"]] | None) = None,
    causal: bool = False,
    scale: float | None = None,
    block_sizes: tuple[int, int] | None = None,
    implementation: Any = None,
) -> AttentionOutput:
  r"""Scaled dot-product attention returning the output and the log-sum-exp of the logits.

  .. math::

    s_{ij} = \mathrm{scale}\; q_i \cdot k_j, \qquad
    \mathrm{lse}_i = \log \sum_{j \in A(i)} e^{s_{ij}}, \qquad
    \mathrm{out}_i = \sum_{j \in A(i)} e^{s_{ij} - \mathrm{lse}_i}\, v_j,

  per batch element and head, where ``A(i)`` is the set of keys query ``i`` may attend: those
  allowed by ``mask``, in the same positive segment, and ``j <= i`` when ``causal``. A query with
  ``A(i)`` empty gets ``out_i = 0`` and ``lse_i = -inf`` (and zero gradients). Differentiable in
  ``q``, ``k``, ``v`` (including through ``lse``); the fused implementations never store an
  ``Lq x Lk`` array.

  Args:
    q: queries ``[B, Lq, H, D]`` (f32, bf16 or f16).
    k: keys ``[B, Lk, Hkv, D]``, same dtype as ``q``; ``Hkv`` divides ``H`` (GQA/MQA).
    v: values, same shape and dtype as ``k``.
    mask: optional boolean ``[B|1, H|1, Lq, Lk]``, True = attend.
    segment_ids: optional integer ``[B, L]`` (queries and keys alike, needs ``Lq == Lk``) or a
      pair ``(q_segment_ids [B, Lq], kv_segment_ids [B, Lk])``: a query attends only keys of its
      own segment; id 0 (or negative) marks padding, which attends and is attended by nothing
      (``PackedBatch.segment_ids`` of :func:`bottleneck_jax.data.packing.pack_sequences` as is).
      Number real segments from 1.
    causal: query ``i`` attends keys ``j <= i`` (positions aligned at 0 when ``Lq != Lk``).
    scale: static positive float multiplying the logits; default ``1 / sqrt(D)``.
    block_sizes: optional ``(block_q, block_k)`` tiles of the ``"xla"`` / ``"pallas"``
      implementations (default: chosen per platform, implementation, length and head size by
      the op's one block-size helper; powers of two >= 16 for the native Pallas kernel).
    implementation: ``None`` (platform default), ``"reference"``, ``"xla"``, ``"pallas"`` or a
      sequence of them to try in order.

  Returns:
    :class:`AttentionOutput` ``(out [B, Lq, H, D] in q's dtype, lse [B, H, Lq] f32)``.

  Example:
    >>> q = jnp.ones((1, 3, 2, 4)); k = v = jnp.ones((1, 5, 2, 4))
    >>> res = attention(q, k, v, causal=True)
    >>> res.out.shape, res.lse.shape
    ((1, 3, 2, 4), (1, 2, 3))
    >>> round(float(res.lse[0, 0, 2]), 4)  # 3 keys with logit 4 / sqrt(4) = 2: 2 + log 3
    3.0986
    >>> seg = jnp.array([[1, 1, 0]])     # the last query is padding
    >>> res = attention(q, k[:, :3], v[:, :3], segment_ids=seg)
    >>> res.out[0, 2, 0].tolist(), float(res.lse[0, 0, 2])
    ([0.0, 0.0, 0.0, 0.0], -inf)

  References:
    Rabe & Staats, *Self-attention Does Not Need O(n^2) Memory*, 2021,
    https://arxiv.org/abs/2112.05682.

    Dao et al., *FlashAttention: Fast and Memory-Efficient Exact Attention with IO-Awareness*,
    NeurIPS 2022, https://arxiv.org/abs/2205.14135.

    Dao, *FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning*,
    2023, https://arxiv.org/abs/2307.08691.
  """
  fn = "attention"
  _validate(fn, q, k, v, mask, causal, scale, block_sizes)
  b, lq, _, d = q.shape
  lk = k.shape[1]
  q_seg, kv_seg = _segment_pair(fn, segment_ids, b, lq, lk)
  scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
  block_sizes = None if block_sizes is None else (int(block_sizes[0]), int(block_sizes[1]))
  mask = None if mask is None else jnp.asarray(mask)
  out, lse = ATTENTION(q, k, v, mask, q_seg, kv_seg, causal=causal, scale=scale,
                       block_sizes=block_sizes, implementation=implementation)
  return AttentionOutput(out, lse)


__all__ = ["ATTENTION", "AttentionOutput", "attention"]
