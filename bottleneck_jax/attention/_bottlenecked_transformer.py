r"""Bottlenecked Transformers: periodic consolidation of the KV cache by a cache processor.

Paper: *Bottlenecked Transformers: Periodic KV Cache Consolidation for Generalised Reasoning*
(2025), https://arxiv.org/abs/2505.16950.

Idea. A decoder never re-encodes what it has cached, so its KV "memory" keeps more of the input
than prediction needs. The paper adds a *cache processor* ``P_phi``: at the end of every
reasoning step (a newline token) it rewrites, in place, the KV entries written during the step
(consolidation) and a few earlier entries the step attended most (reconsolidation):

.. math::

  (\Delta K, \Delta V) = P_\phi(K[\mathcal I], V[\mathcal I]), \qquad
  K[\ell, \mathcal I] \leftarrow K[\ell, \mathcal I] + \Delta K_\ell, \quad
  V[\ell, \mathcal I] \leftarrow V[\ell, \mathcal I] + \Delta V_\ell,

with ``I`` = the step's positions plus the top-``k`` recalled earlier positions. The cache keeps
its length; later tokens attend the rewritten entries. The processor is a small non-causal
transformer over the selected entries; its output projection starts at zero, so an untrained
processor leaves the cache unchanged.

What is implemented: :func:`step_boundaries`, :func:`recall_indices` (attention of the step's
queries to earlier positions, averaged over layers, heads and queries, top-``k``),
:func:`kv_rewrite` (masked in-place add), the NNX :class:`CacheProcessor` (per-position features
from every layer's K and V, a shared bidirectional trunk, a zero-initialised output projection)
and :func:`consolidate` (gather, process, rewrite; static capacities, so it works under ``jit``
and ``vmap``).

Departures: no public code exists; the processor's depth and width, sharing across layers, ``k``
and the recall aggregation are configuration here (the abstract does not fix them); deltas are
not gated.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Bool, Float, Int

from bottleneck_jax import ops
from bottleneck_jax.core import validation as V


def step_boundaries(tokens: Int[Array, "*batch length"],
                    newline_ids: Int[Array, "n"] | Any) -> Bool[Array, "*batch length"]:
  """True where a token ends a reasoning step (is one of ``newline_ids``).

  Example:
    >>> step_boundaries(jnp.array([5, 1, 7, 1, 2]), jnp.array([1])).tolist()
    [False, True, False, True, False]
  """
  fn = "step_boundaries"
  V.check_rank(fn, "tokens", tokens, min_rank=1)
  V.check_integer(fn, "tokens", tokens)
  V.check_array(fn, "newline_ids", newline_ids)
  ids = jnp.asarray(newline_ids)
  if ids.ndim != 1 or ids.size < 1 or not jnp.issubdtype(ids.dtype, jnp.integer):
    raise ValueError(f"{fn}: newline_ids must be a non-empty 1-D integer array, got "
                     f"{V.describe(ids)}")
  return jnp.any(jnp.asarray(tokens)[..., None] == ids.astype(jnp.asarray(tokens).dtype), -1)


def recall_indices(
    attn: Float[Array, "layers heads queries length"],
    seg_start: Int[Array, ""] | int,
    k: int,
) -> tuple[Int[Array, "k"], Bool[Array, "k"]]:
  """The ``k`` earlier positions the step's queries attended most (reconsolidation targets).

  Scores are the attention probabilities averaged over layers, heads and the step's queries;
  only positions before ``seg_start`` are candidates (never the step itself).

  Args:
    attn: ``[L, H, S, T]`` attention of the step's ``S`` queries to the ``T`` cache positions.
    seg_start: first position of the step (may be traced).
    k: static number of positions.

  Returns:
    ``(idx int32 [k], valid bool [k])``; fewer than ``k`` candidates leave invalid entries.
  """
  fn = "recall_indices"
  V.check_rank(fn, "attn", attn, 4)
  V.check_floating(fn, "attn", attn)
  V.check_scalar(fn, "k", k, low=1, integer=True)
  V.check_array(fn, "seg_start", seg_start)
  if jnp.ndim(seg_start) != 0:
    raise ValueError(f"{fn}: seg_start must be a scalar, got {V.describe(seg_start)}")
  V.check_integer(fn, "seg_start", seg_start)
  t = attn.shape[-1]
  if t < 1:
    raise ValueError(f"{fn}: attn must have at least one position, got shape {list(attn.shape)}")
  score = jnp.mean(jnp.asarray(attn).astype(jnp.float32), axis=(0, 1, 2))
  ok = jnp.arange(t) < seg_start
  score = jnp.where(ok, score, -jnp.inf)
  kk = min(int(k), t)
  val, idx = jax.lax.top_k(score, kk)
  valid = val > -jnp.inf
  idx = jnp.where(valid, idx, 0).astype(jnp.int32)
  if kk < k:
    idx, valid = jnp.pad(idx, (0, k - kk)), jnp.pad(valid, (0, k - kk))
  return idx, valid


def kv_rewrite(
    k_cache: Float[Array, "layers length kv_heads head_dim"],
    v_cache: Float[Array, "layers length kv_heads head_dim"],
    idx: Int[Array, "m"],
    dk: Float[Array, "layers m kv_heads head_dim"],
    dv: Float[Array, "layers m kv_heads head_dim"],
    valid: Bool[Array, "m"] | None = None,
) -> tuple[Float[Array, "layers length kv_heads head_dim"],
           Float[Array, "layers length kv_heads head_dim"]]:
  """Adds ``dk``/``dv`` to the cache entries at ``idx`` (all layers); invalid entries add 0.

  Example:
    >>> kc = vc = jnp.zeros((1, 3, 1, 1))
    >>> k2, _ = kv_rewrite(kc, vc, jnp.array([2]), jnp.ones((1, 1, 1, 1)), jnp.ones((1, 1, 1, 1)))
    >>> k2[0, :, 0, 0].tolist()
    [0.0, 0.0, 1.0]
  """
  fn = "kv_rewrite"
  for name, x in (("k_cache", k_cache), ("v_cache", v_cache)):
    V.check_rank(fn, name, x, 4)
    V.check_floating(fn, name, x)
  V.check_same_shape(fn, "k_cache", k_cache, "v_cache", v_cache)
  V.check_rank(fn, "idx", idx, 1)
  V.check_integer(fn, "idx", idx)
  n_l, _, hkv, d = k_cache.shape
  m = idx.shape[0]
  for name, x in (("dk", dk), ("dv", dv)):
    V.check_floating(fn, name, x)
    V.check_shape(fn, name, x, (n_l, m, hkv, d))
  if valid is None:
    valid = jnp.ones((m,), bool)
  else:
    V.check_array(fn, "valid", valid)
    V.check_shape(fn, "valid", valid, (m,))
  return _rewrite(k_cache, v_cache, jnp.asarray(idx).astype(jnp.int32), dk, dv,
                  jnp.asarray(valid).astype(bool))


def _rewrite(k_cache, v_cache, idx, dk, dv, valid):
  w = valid[None, :, None, None]
  k_new = k_cache.at[:, idx].add(jnp.where(w, dk, 0.0).astype(k_cache.dtype))
  v_new = v_cache.at[:, idx].add(jnp.where(w, dv, 0.0).astype(v_cache.dtype))
  return k_new, v_new


class CacheProcessor(nnx.Module):
  """A small bidirectional transformer that proposes KV deltas for selected cache entries.

  Per selected position the features are every layer's key and value (``L * 2 * Hkv * D``), an
  input projection maps them to ``width``, ``depth`` pre-norm blocks of non-causal attention
  (over the valid selected positions only) and MLP form the trunk, and a zero-initialised output
  projection maps back to ``(dK, dV)``: the processor is the identity rewrite at initialisation.

  Args:
    n_layers, n_kv_heads, head_dim: the backbone cache's geometry.
    width: trunk width; ``n_heads`` divides it.
    depth: trunk blocks.
    n_heads: trunk attention heads.
    rngs: ``nnx.Rngs``.
  """

  def __init__(self, n_layers: int, n_kv_heads: int, head_dim: int, *, width: int = 64,
               depth: int = 1, n_heads: int = 4, rngs: nnx.Rngs):
    fn = "CacheProcessor"
    for name, val in (("n_layers", n_layers), ("n_kv_heads", n_kv_heads),
                      ("head_dim", head_dim), ("width", width), ("depth", depth),
                      ("n_heads", n_heads)):
      V.check_scalar(fn, name, val, low=1, integer=True)
    if width % n_heads:
      raise ValueError(f"{fn}: n_heads must divide width ({width}), got {n_heads}")
    self.geom = (n_layers, n_kv_heads, head_dim)
    self.n_heads = n_heads
    feat = n_layers * 2 * n_kv_heads * head_dim
    self.inp = nnx.Linear(feat, width, rngs=rngs)
    self.norms1 = nnx.List([nnx.RMSNorm(width, rngs=rngs) for _ in range(depth)])
    self.qkv = nnx.List([nnx.Linear(width, 3 * width, rngs=rngs) for _ in range(depth)])
    self.proj = nnx.List([nnx.Linear(width, width, rngs=rngs) for _ in range(depth)])
    self.norms2 = nnx.List([nnx.RMSNorm(width, rngs=rngs) for _ in range(depth)])
    self.mlp_in = nnx.List([nnx.Linear(width, 4 * width, rngs=rngs) for _ in range(depth)])
    self.mlp_out = nnx.List([nnx.Linear(4 * width, width, rngs=rngs) for _ in range(depth)])
    self.out = nnx.Linear(width, feat, kernel_init=nnx.initializers.zeros, rngs=rngs)

  def __call__(self, k_sel, v_sel, valid):
    """``k_sel, v_sel [L, m, Hkv, D]``, ``valid [m]`` -> ``(dk, dv)`` of the same shape."""
    n_l, m, hkv, d = k_sel.shape
    x = jnp.concatenate([k_sel, v_sel], axis=-1).astype(jnp.float32)     # [L, m, Hkv, 2D]
    x = jnp.transpose(x, (1, 0, 2, 3)).reshape(m, -1)
    h = self.inp(x)[None]                                                # [1, m, W]
    seg = valid.astype(jnp.int32)[None]
    hd = h.shape[-1] // self.n_heads
    for n1, qkv, proj, n2, mi, mo in zip(self.norms1, self.qkv, self.proj, self.norms2,
                                         self.mlp_in, self.mlp_out):
      q, k, v = jnp.split(qkv(n1(h)).reshape(1, m, 3 * self.n_heads, hd), 3, axis=2)
      a = ops.attention(q, k, v, segment_ids=seg).out.reshape(1, m, -1)
      h = h + proj(a)
      h = h + mo(jax.nn.gelu(mi(n2(h))))
    y = self.out(h[0]).reshape(m, n_l, hkv, 2 * d)
    y = jnp.transpose(y, (1, 0, 2, 3))
    return y[..., :d].astype(k_sel.dtype), y[..., d:].astype(v_sel.dtype)


def consolidate(
    processor: CacheProcessor,
    k_cache: Float[Array, "layers length kv_heads head_dim"],
    v_cache: Float[Array, "layers length kv_heads head_dim"],
    seg_start: Int[Array, ""] | int,
    seg_len: Int[Array, ""] | int,
    recall_idx: Int[Array, "k"],
    recall_valid: Bool[Array, "k"],
    *,
    max_seg: int,
) -> tuple[Float[Array, "layers length kv_heads head_dim"],
           Float[Array, "layers length kv_heads head_dim"]]:
  """Rewrites the step's entries ``[seg_start, seg_start + seg_len)`` and the recalled ones.

  Args:
    processor: a :class:`CacheProcessor`.
    k_cache, v_cache: ``[L, T, Hkv, D]``.
    seg_start, seg_len: the step (``seg_len <= max_seg``; may be traced).
    recall_idx, recall_valid: from :func:`recall_indices`.
    max_seg: static capacity of a step.

  Returns:
    the rewritten ``(k_cache, v_cache)``; positions outside the step and the recalled set are
    bit-identical.
  """
  fn = "consolidate"
  if not isinstance(processor, CacheProcessor):
    raise TypeError(f"{fn}: processor must be a CacheProcessor, got {type(processor).__name__}")
  for name, x in (("k_cache", k_cache), ("v_cache", v_cache)):
    V.check_rank(fn, name, x, 4)
    V.check_floating(fn, name, x)
  V.check_same_shape(fn, "k_cache", k_cache, "v_cache", v_cache)
  if tuple(k_cache.shape[::2]) != (processor.geom[0], processor.geom[1]) or \
     k_cache.shape[3] != processor.geom[2]:
    raise ValueError(f"{fn}: k_cache must have shape [L={processor.geom[0]}, T, "
                     f"Hkv={processor.geom[1]}, D={processor.geom[2]}] (the processor's), got "
                     f"{list(k_cache.shape)}")
  V.check_scalar(fn, "max_seg", max_seg, low=1, integer=True)
  V.check_rank(fn, "recall_idx", recall_idx, 1)
  V.check_integer(fn, "recall_idx", recall_idx)
  V.check_same_shape(fn, "recall_idx", recall_idx, "recall_valid", recall_valid)
  t = k_cache.shape[1]
  pos = jnp.asarray(seg_start) + jnp.arange(max_seg)
  seg_ok = (jnp.arange(max_seg) < seg_len) & (pos < t)
  idx = jnp.concatenate([jnp.where(seg_ok, pos, 0), jnp.asarray(recall_idx)]).astype(jnp.int32)
  ok = jnp.concatenate([seg_ok, jnp.asarray(recall_valid).astype(bool)])
  idx = jnp.clip(idx, 0, t - 1)
  dk, dv = processor(k_cache[:, idx], v_cache[:, idx], ok)
  return _rewrite(k_cache, v_cache, idx, dk, dv, ok)


__all__ = ["CacheProcessor", "consolidate", "kv_rewrite", "recall_indices", "step_boundaries"]
