r"""ZipVL: an adaptive important-token ratio, important-token prefill and a mixed-precision KV cache.

Paper: He et al., *ZipVL: Efficient Large Vision-Language Models with Dynamic Token
Sparsification and KV Cache Compression* (2024), https://arxiv.org/abs/2410.08584; its
predecessor's code ZipCache (https://github.com/ThisisBillhe/ZipCache) was read for the probe
scores and the quantisers.

Idea. Long visual inputs make prefill attention quadratic and the KV cache large. ZipVL measures,
per layer, how concentrated attention is and keeps just enough *important* tokens to hold a
fraction ``tau`` of the attention mass:

.. math::

  a_j = \sum_{i \in P} \sum_{h} A_{hij}, \qquad
  p = \min\Big\{ p : \sum_{r=1}^{p} a_{(r)} \ge \tau \sum_j a_j \Big\},

(``a_(r)`` sorted in decreasing order, ``A`` the softmax of a few *probe* queries ``P``, since
flash attention never materialises the full matrix). The ratio ``p / n`` adapts to the layer:
peaked attention needs few tokens, diffuse attention many. Which tokens: the top ``p`` by the
*normalised* score ``a_j / c_j``, where ``c_j`` counts the probe queries (and heads) allowed to see
``j`` under the causal mask, so early tokens do not win only because more queries see them.
Prefill then attends only the important keys, and the decode KV cache stores important tokens
at high precision (4 bits) and the others at low precision (2 bits).

What is implemented: :func:`probe_attention`, :func:`accumulated_scores`,
:func:`normalized_scores`, :func:`adaptive_keep_count`, :func:`select_important`,
:func:`important_token_prefill` (every query attends the important keys only, causally, through
:func:`bottleneck_jax.ops.attention` on the gathered keys), the quantisers of
:mod:`._kv_quant` (:func:`quantize_kv`, :func:`dequantize_kv`, :func:`pack_bits`,
:func:`unpack_bits`, :func:`kv_bits`), :class:`MixedKV`, :func:`build_mixed_kv` and
:func:`mixed_kv_decode_attention` (one softmax over both precision segments).

Departures from the paper / its code:

* Probe positions are an argument (ZipCache: the last 5% of tokens plus a random 5%); the
  default ``tau`` is not fixed here (the paper tunes it per model, about 0.97).
* Prefill sparsity is on the keys (every query row is computed, attending only important keys);
  the selection is shared by the heads of a layer (scores summed over KV heads).
* The mixed cache keeps static shapes: the high-precision segment has capacity
  ``max_important`` and the low-precision segment the whole sequence (slots of important tokens
  masked); :func:`mixed_kv_bits` counts what a compact store of the valid tokens holds.
* Dequantise-then-attend in XLA; no fused dequantising decode kernel.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from bottleneck_jax import ops
from bottleneck_jax.attention._kv_quant import QuantizedKV, dequantize_kv, quantize_kv
from bottleneck_jax.core import validation as V


def _qk(fn, q, k):
  V.check_rank(fn, "q", q, 4)
  V.check_floating(fn, "q", q)
  V.check_rank(fn, "k", k, 4)
  V.check_floating(fn, "k", k)
  if k.shape[0] != q.shape[0] or k.shape[3] != q.shape[3] or k.shape[2] < 1 or \
     q.shape[2] % k.shape[2] or min(k.shape) < 1 or min(q.shape) < 1:
    raise ValueError(f"{fn}: k must have shape [{q.shape[0]}, n, Hkv dividing {q.shape[2]}, "
                     f"{q.shape[3]}] (batch and head_dim of q), got {list(k.shape)}")


def probe_attention(
    q: Float[Array, "batch n heads head_dim"],
    k: Float[Array, "batch n kv_heads head_dim"],
    probe_idx: Int[Array, "probes"],
    *,
    causal: bool = True,
) -> Float[Array, "batch heads probes n"]:
  """Softmax attention rows of the probe queries only (f32), causal by position.

  Args:
    q: ``[B, n, H, D]``.
    k: ``[B, n, Hkv, D]`` (GQA when ``Hkv`` divides ``H``).
    probe_idx: integer ``[P]`` positions in ``[0, n)``.
    causal: probe ``i`` sees keys ``j <= i``.

  Returns:
    ``A [B, H, P, n]``; each row sums to 1.
  """
  fn = "probe_attention"
  _qk(fn, q, k)
  V.check_rank(fn, "probe_idx", probe_idx, 1)
  V.check_integer(fn, "probe_idx", probe_idx)
  if probe_idx.shape[0] < 1:
    raise ValueError(f"{fn}: probe_idx must name at least one probe, got shape "
                     f"{list(probe_idx.shape)}")
  if not isinstance(causal, bool):
    raise TypeError(f"{fn}: causal must be a bool, got {type(causal).__name__}")
  return _probe(q, k, jnp.clip(jnp.asarray(probe_idx).astype(jnp.int32), 0, q.shape[1] - 1),
                causal)


def _probe(q, k, probe_idx, causal):
  b, n, h, d = q.shape
  g = h // k.shape[2]
  qp = q[:, probe_idx].astype(jnp.float32)                              # [B, P, H, D]
  kf = jnp.repeat(k.astype(jnp.float32), g, axis=2)
  s = jnp.einsum("bphd,bnhd->bhpn", qp, kf, precision=jax.lax.Precision.HIGHEST) / math.sqrt(d)
  if causal:
    s = jnp.where(jnp.arange(n)[None, :] <= probe_idx[:, None], s, -jnp.inf)
  return jax.nn.softmax(s, axis=-1)


def accumulated_scores(
    attn: Float[Array, "batch heads probes n"],
    *,
    n_kv_heads: int,
) -> Float[Array, "batch kv_heads n"]:
  """``a_j``: attention received by each key, summed over the probes and the query heads of each
  KV group.

  Example:
    >>> a = accumulated_scores(jnp.full((1, 2, 3, 4), 0.25), n_kv_heads=1)
    >>> a[0, 0].tolist()
    [1.5, 1.5, 1.5, 1.5]
  """
  fn = "accumulated_scores"
  V.check_rank(fn, "attn", attn, 4)
  V.check_floating(fn, "attn", attn)
  V.check_scalar(fn, "n_kv_heads", n_kv_heads, low=1, integer=True)
  b, h, p, n = attn.shape
  if h % n_kv_heads:
    raise ValueError(f"{fn}: n_kv_heads must divide the {h} heads of attn, got {n_kv_heads}")
  return jnp.asarray(attn).astype(jnp.float32).reshape(b, n_kv_heads, h // n_kv_heads, p,
                                                       n).sum((2, 3))


def normalized_scores(
    attn: Float[Array, "batch heads probes n"],
    probe_idx: Int[Array, "probes"],
    *,
    n_kv_heads: int,
    causal: bool = True,
) -> Float[Array, "batch kv_heads n"]:
  """``a_j / c_j``: accumulated attention divided by the number of (probe, head) pairs that may
  attend key ``j`` (0 where none may).

  Example:
    >>> A = jnp.array([[[[1.0, 0.0], [0.5, 0.5]]]])   # probes at 0 and 1, uniform over the past
    >>> normalized_scores(A, jnp.array([0, 1]), n_kv_heads=1)[0, 0].tolist()
    [0.75, 0.5]
  """
  fn = "normalized_scores"
  V.check_rank(fn, "attn", attn, 4)
  V.check_floating(fn, "attn", attn)
  V.check_scalar(fn, "n_kv_heads", n_kv_heads, low=1, integer=True)
  if attn.shape[1] % n_kv_heads:
    raise ValueError(f"{fn}: n_kv_heads must divide the {attn.shape[1]} heads of attn, got "
                     f"{n_kv_heads}")
  acc = accumulated_scores(attn, n_kv_heads=n_kv_heads)
  V.check_rank(fn, "probe_idx", probe_idx, 1)
  V.check_integer(fn, "probe_idx", probe_idx)
  V.check_shape(fn, "probe_idx", probe_idx, (attn.shape[2],))
  b, h, p, n = attn.shape
  pos = jnp.asarray(probe_idx).astype(jnp.int32)
  if causal:
    count = jnp.sum(pos[:, None] >= jnp.arange(n)[None, :], axis=0)
  else:
    count = jnp.full((n,), p)
  count = (count * (h // n_kv_heads)).astype(jnp.float32)
  return jnp.where(count > 0, acc / jnp.maximum(count, 1.0), 0.0)


def adaptive_keep_count(
    scores: Float[Array, "*batch n"],
    tau: float,
) -> Int[Array, "*batch"]:
  r"""ZipVL's layer-wise count: the fewest tokens whose scores hold a ``tau`` share of the mass.

  ``p = min{p : sum_{r <= p} a_(r) >= tau * sum_j a_j}`` (scores sorted in decreasing order);
  ``tau = 1`` keeps every token.

  Args:
    scores: non-negative ``[..., n]`` (e.g. :func:`accumulated_scores`).
    tau: in ``(0, 1]``.

  Returns:
    int32 ``[...]`` in ``[1, n]``.

  Example:
    >>> a = 1.0 / jnp.arange(1.0, 101.0)            # Zipf over 100 keys
    >>> [int(adaptive_keep_count(a, t)) for t in (0.5, 0.9, 0.975, 1.0)]
    [8, 60, 88, 100]
  """
  fn = "adaptive_keep_count"
  V.check_rank(fn, "scores", scores, min_rank=1)
  V.check_floating(fn, "scores", scores)
  if scores.shape[-1] < 1:
    raise ValueError(f"{fn}: scores must have at least one token, got shape "
                     f"{list(scores.shape)}")
  V.check_scalar(fn, "tau", tau, low=0, low_inclusive=False, high=1)
  return _keep_count(jnp.asarray(scores), tau)


def _keep_count(scores, tau):
  s = -jnp.sort(-scores.astype(jnp.float32), axis=-1)
  c = jnp.cumsum(s, axis=-1)
  target = tau * c[..., -1:]
  p = jnp.sum(c < target, axis=-1) + 1
  return jnp.clip(p, 1, scores.shape[-1]).astype(jnp.int32)


def select_important(
    scores: Float[Array, "batch n"],
    count: Int[Array, "batch"],
    *,
    max_keep: int,
) -> tuple[Int[Array, "batch max_keep"], Bool[Array, "batch max_keep"]]:
  """The ``count`` best tokens per row, as positions sorted in increasing order.

  Args:
    scores: ``[B, n]`` (e.g. normalised scores summed over KV heads).
    count: integer ``[B]``, tokens to keep (at most ``max_keep`` are).
    max_keep: static capacity.

  Returns:
    ``(idx int32 [B, max_keep], valid bool [B, max_keep])``; invalid slots hold position 0.

  Example:
    >>> idx, ok = select_important(jnp.array([[0.1, 0.9, 0.5, 0.7]]), jnp.array([2]), max_keep=3)
    >>> idx.tolist(), ok.tolist()
    ([[1, 3, 0]], [[True, True, False]])
  """
  fn = "select_important"
  V.check_rank(fn, "scores", scores, 2)
  V.check_floating(fn, "scores", scores)
  b, n = scores.shape
  if n < 1:
    raise ValueError(f"{fn}: scores must have at least one token, got shape {[b, n]}")
  V.check_array(fn, "count", count)
  V.check_integer(fn, "count", count)
  V.check_shape(fn, "count", count, (b,))
  V.check_scalar(fn, "max_keep", max_keep, low=1, integer=True)
  return _select(jnp.asarray(scores), jnp.asarray(count).astype(jnp.int32), int(max_keep))


def _select(scores, count, max_keep):
  n = scores.shape[-1]
  kk = min(max_keep, n)
  _, top = jax.lax.top_k(scores.astype(jnp.float32), kk)
  ok = jnp.arange(kk)[None] < count[:, None]
  pos = jnp.where(ok, top, n)                                           # invalid sort last
  pos = jnp.sort(pos, axis=-1)
  valid = pos < n
  idx = jnp.where(valid, pos, 0).astype(jnp.int32)
  if kk < max_keep:
    idx = jnp.pad(idx, ((0, 0), (0, max_keep - kk)))
    valid = jnp.pad(valid, ((0, 0), (0, max_keep - kk)))
  return idx, valid


def important_token_prefill(
    q: Float[Array, "batch n heads head_dim"],
    k: Float[Array, "batch n kv_heads head_dim"],
    v: Float[Array, "batch n kv_heads head_dim"],
    idx: Int[Array, "batch max_keep"],
    valid: Bool[Array, "batch max_keep"],
    *,
    causal: bool = True,
    implementation=None,
) -> ops.AttentionOutput:
  """Prefill attention over the important keys only: gather, attend, no ``n x n`` work.

  Every query ``i`` attends the important keys ``j`` (``j <= i`` when causal). With every token
  important this is dense (causal) attention. Cost ``O(n * max_keep)``.

  Args:
    q: ``[B, n, H, D]``.
    k: ``[B, n, Hkv, D]``.
    v: ``[B, n, Hkv, D]``.
    idx: ``[B, max_keep]`` important positions (e.g. :func:`select_important`).
    valid: ``[B, max_keep]`` bool.
    causal: causal attention by position.
    implementation: of :func:`bottleneck_jax.ops.attention`.

  Returns:
    :class:`~bottleneck_jax.ops.AttentionOutput` ``(out [B, n, H, D], lse [B, H, n])``.
  """
  fn = "important_token_prefill"
  _qk(fn, q, k)
  V.check_same_shape(fn, "k", k, "v", v)
  V.check_floating(fn, "v", v)
  b, n = q.shape[:2]
  V.check_rank(fn, "idx", idx, 2)
  V.check_integer(fn, "idx", idx)
  if idx.shape[0] != b or idx.shape[1] < 1:
    raise ValueError(f"{fn}: idx must have shape [{b}, max_keep >= 1], got {list(idx.shape)}")
  V.check_array(fn, "valid", valid)
  if jnp.dtype(getattr(valid, "dtype", type(valid))) != jnp.bool_:
    raise TypeError(f"{fn}: valid must be a boolean array, got {V.describe(valid)}")
  V.check_same_shape(fn, "idx", idx, "valid", valid)
  for name, x in (("k", k), ("v", v)):
    if jnp.dtype(x.dtype) != jnp.dtype(q.dtype):
      raise TypeError(f"{fn}: {name} must have the dtype of q ({jnp.dtype(q.dtype).name}), got "
                      f"{jnp.dtype(x.dtype).name}")
  idx = jnp.clip(jnp.asarray(idx).astype(jnp.int32), 0, n - 1)
  rows = jnp.arange(b)[:, None]
  kg, vg = k[rows, idx], v[rows, idx]                                    # [B, m, Hkv, D]
  allowed = jnp.asarray(valid)[:, None, :]
  if causal:
    allowed = allowed & (idx[:, None, :] <= jnp.arange(n)[None, :, None])
  return ops.attention(q, kg, vg, mask=allowed[:, None], implementation=implementation)


class MixedKV(NamedTuple):
  """A mixed-precision KV cache: important tokens at high precision, the others at low.

  Attributes:
    hi_k, hi_v: :class:`QuantizedKV` of ``[B, max_important, Hkv, D]``.
    hi_valid: ``[B, max_important]`` bool.
    lo_k, lo_v: :class:`QuantizedKV` of ``[B, T, Hkv, D]`` (slots of high-precision tokens
      masked).
    lo_valid: ``[B, T]`` bool.
  """

  hi_k: QuantizedKV
  hi_v: QuantizedKV
  hi_valid: Bool[Array, "batch hi"]
  lo_k: QuantizedKV
  lo_v: QuantizedKV
  lo_valid: Bool[Array, "batch tokens"]


def build_mixed_kv(
    k: Float[Array, "batch tokens kv_heads head_dim"],
    v: Float[Array, "batch tokens kv_heads head_dim"],
    important: Bool[Array, "batch tokens"],
    *,
    max_important: int,
    hi_bits: int = 4,
    lo_bits: int = 2,
) -> MixedKV:
  """Quantises a cache at two precisions: keys per channel, values per token (ZipCache: 4/2 bits).

  Important tokens beyond ``max_important`` (in position order) go to the low-precision
  segment. Each segment's channel statistics are computed over its own tokens only.

  Args:
    k: ``[B, T, Hkv, D]``.
    v: same shape.
    important: ``[B, T]`` bool.
    max_important: static capacity of the high-precision segment.
    hi_bits, lo_bits: 2, 4 or 8.

  Returns:
    :class:`MixedKV`.
  """
  fn = "build_mixed_kv"
  for name, x in (("k", k), ("v", v)):
    V.check_rank(fn, name, x, 4)
    V.check_floating(fn, name, x)
  V.check_same_shape(fn, "k", k, "v", v)
  b, t = k.shape[:2]
  V.check_array(fn, "important", important)
  if jnp.dtype(important.dtype) != jnp.bool_:
    raise TypeError(f"{fn}: important must be boolean, got {jnp.dtype(important.dtype).name}")
  V.check_shape(fn, "important", important, (b, t))
  V.check_scalar(fn, "max_important", max_important, low=1, integer=True)
  for name, bits in (("hi_bits", hi_bits), ("lo_bits", lo_bits)):
    V.check_choice(fn, name, bits, (2, 4, 8))
  if min(k.shape) < 1 or k.shape[3] % 4:
    raise ValueError(f"{fn}: k must have non-empty axes and a head_dim divisible by 4, got "
                     f"shape {list(k.shape)}")
  imp = jnp.asarray(important)
  m = int(max_important)
  order = jnp.argsort(~imp, axis=-1, stable=True)[:, :m]
  if m > t:
    order = jnp.pad(order, ((0, 0), (0, m - t)))
  rows = jnp.arange(b)[:, None]
  hi_valid = imp[rows, order] & (jnp.arange(m)[None] < t)
  in_hi = jnp.zeros((b, t), bool).at[rows, order].max(hi_valid)
  lo_valid = ~in_hi

  def seg(x, ok, bits, mode):
    x = x.astype(jnp.float32)
    ok4 = ok[:, :, None, None]
    if mode == "channel":   # fill masked slots with the segment's channel mean: no range blow-up
      mean = jnp.sum(jnp.where(ok4, x, 0.0), 1, keepdims=True) / jnp.maximum(
          jnp.sum(ok4.astype(jnp.float32), 1, keepdims=True), 1.0)
      x = jnp.where(ok4, x, mean)
    else:
      x = jnp.where(ok4, x, 0.0)
    return quantize_kv(x, bits=bits, mode=mode)

  kh, vh = k[rows, order], v[rows, order]
  return MixedKV(seg(kh, hi_valid, hi_bits, "channel"), seg(vh, hi_valid, hi_bits, "token"),
                 hi_valid, seg(k, lo_valid, lo_bits, "channel"),
                 seg(v, lo_valid, lo_bits, "token"), lo_valid)


def mixed_kv_bits(mixed: MixedKV) -> Float[Array, ""]:
  """Bits a compact store of the valid tokens of a :class:`MixedKV` holds: codes of the valid
  tokens at their precision, plus the f32 scales and zeros of both segments."""
  if not isinstance(mixed, MixedKV):
    raise TypeError(f"mixed_kv_bits: mixed must be a MixedKV, got {type(mixed).__name__}")
  total = jnp.asarray(0.0, jnp.float32)
  for q, ok in ((mixed.hi_k, mixed.hi_valid), (mixed.hi_v, mixed.hi_valid),
                (mixed.lo_k, mixed.lo_valid), (mixed.lo_v, mixed.lo_valid)):
    per_token = q.codes.shape[2] * q.codes.shape[3] * 8.0
    n_ok = jnp.sum(ok.astype(jnp.float32))
    total = total + n_ok * per_token
    if q.mode == "channel":
      total = total + 32.0 * (q.scale.size + q.zero.size)
    else:   # per-token statistics: only the valid tokens' are stored
      total = total + 64.0 * n_ok * q.scale.size / (q.scale.shape[0] * q.scale.shape[1])
  return total


def mixed_kv_decode_attention(
    q: Float[Array, "batch heads head_dim"],
    mixed: MixedKV,
    *,
    implementation=None,
) -> ops.AttentionOutput:
  """Decode attention over a :class:`MixedKV`: one softmax over both precision segments.

  Args:
    q: ``[B, H, D]`` new queries (``H`` a multiple of the cache's KV heads).
    mixed: the cache.
    implementation: of :func:`bottleneck_jax.ops.attention`.

  Returns:
    :class:`~bottleneck_jax.ops.AttentionOutput` ``(out [B, H, D], lse [B, H])``.
  """
  fn = "mixed_kv_decode_attention"
  if not isinstance(mixed, MixedKV):
    raise TypeError(f"{fn}: mixed must be a MixedKV, got {type(mixed).__name__}")
  V.check_rank(fn, "q", q, 3)
  V.check_floating(fn, "q", q)
  b, h, d = q.shape
  hkv, dk = mixed.lo_k.codes.shape[2], mixed.lo_k.channels
  if mixed.lo_k.codes.shape[0] != b or dk != d or h < 1 or h % hkv:
    raise ValueError(f"{fn}: q must have shape [{mixed.lo_k.codes.shape[0]}, a multiple of "
                     f"{hkv}, {dk}] to match the cache, got {list(q.shape)}")
  k = jnp.concatenate([dequantize_kv(mixed.hi_k), dequantize_kv(mixed.lo_k)], axis=1)
  v = jnp.concatenate([dequantize_kv(mixed.hi_v), dequantize_kv(mixed.lo_v)], axis=1)
  ok = jnp.concatenate([mixed.hi_valid, mixed.lo_valid], axis=1).astype(jnp.int32)
  res = ops.attention(q.astype(jnp.float32)[:, None], k, v,
                      segment_ids=(jnp.ones((b, 1), jnp.int32), ok),
                      implementation=implementation)
  return ops.AttentionOutput(res.out[:, 0].astype(q.dtype), res.lse[..., 0])


__all__ = [
    "MixedKV",
    "accumulated_scores",
    "adaptive_keep_count",
    "build_mixed_kv",
    "important_token_prefill",
    "mixed_kv_bits",
    "mixed_kv_decode_attention",
    "normalized_scores",
    "probe_attention",
    "select_important",
]
