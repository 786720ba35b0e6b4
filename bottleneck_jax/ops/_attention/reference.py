"""Reference attention: materialises the f32 ``[B, H, Lq, Lk]`` logits; plain ``jnp`` autodiff.

The oracle of the tests. Everything is computed in f32 (inputs upcast), GQA by repeating the
key/value heads. Fully masked query rows give ``out = 0``, ``lse = -inf`` and zero gradients;
queries/keys that attend / are attended by nothing are zeroed before any product, so a NaN there
cannot leak (see the public docstring).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from bottleneck_jax.ops._attention.common import F32, NEG_INF, match_batch_sharding


def allowed_mask(b, h, lq, lk, mask, q_seg, kv_seg, causal):
  """The full bool ``[B, H, Lq, Lk]`` attend-mask, or ``None`` when nothing is masked."""
  allowed = None

  def _and(a, c):
    return c if a is None else a & c

  if mask is not None:
    allowed = mask
  if q_seg is not None:
    same = (q_seg[:, :, None] == kv_seg[:, None, :]) & (q_seg > 0)[:, :, None]
    allowed = _and(allowed, same[:, None])
  if causal:
    allowed = _and(allowed, jnp.tril(jnp.ones((lq, lk), bool))[None, None])
  if allowed is None:
    return None
  return jnp.broadcast_to(allowed, (b, h, lq, lk))


def attention(q, k, v, mask, q_seg, kv_seg, *, causal, scale, block_sizes=None):
  """``(out [B, Lq, H, D], lse [B, H, Lq] f32)``; see the module docstring."""
  del block_sizes
  b, lq, h, _ = q.shape
  lk, hkv = k.shape[1], k.shape[2]
  mask, q_seg, kv_seg = match_batch_sharding(q, mask, q_seg, kv_seg)
  qf, kf, vf = (x.astype(F32) for x in (q, k, v))
  if hkv != h:
    kf = jnp.repeat(kf, h // hkv, axis=2)
    vf = jnp.repeat(vf, h // hkv, axis=2)
  allowed = allowed_mask(b, h, lq, lk, mask, q_seg, kv_seg, causal)
  if allowed is not None:
    # Select (never multiply by zero): a query or key that takes part in nothing is zeroed.
    q_used = jnp.any(allowed, axis=3).transpose(0, 2, 1)[..., None]   # [B, Lq, H, 1]
    k_used = jnp.any(allowed, axis=2).transpose(0, 2, 1)[..., None]   # [B, Lk, H, 1]
    qf = jnp.where(q_used, qf, 0.0)
    kf = jnp.where(k_used, kf, 0.0)
    vf = jnp.where(k_used, vf, 0.0)
  s = jnp.einsum("bqhd,bkhd->bhqk", qf, kf, precision=lax.Precision.HIGHEST) * scale
  if allowed is not None:
    s = jnp.where(allowed, s, NEG_INF)
  m = lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True))
  m = jnp.where(jnp.isfinite(m), m, 0.0)                 # fully masked row: max is -inf
  e = jnp.exp(s - m)                                      # exp(-inf) = 0 at masked logits
  l = jnp.sum(e, axis=-1, keepdims=True)
  attended = l > 0
  l_safe = jnp.where(attended, l, 1.0)
  p = e / l_safe
  out = jnp.einsum("bhqk,bkhd->bqhd", p, vf, precision=lax.Precision.HIGHEST)
  lse = jnp.where(attended, m + jnp.log(l_safe), NEG_INF)[..., 0]
  return out.astype(q.dtype), lse


__all__ = ["allowed_mask", "attention"]
