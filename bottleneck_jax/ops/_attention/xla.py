"""Blocked (FlashAttention-style) attention in plain XLA, and the backward shared with Pallas.

Forward: a loop over query blocks of ``bq`` rows; for each, a loop over key blocks of ``bk`` keys
with the online softmax (running max ``m``, running sum ``l``, unnormalised accumulator ``acc``):

    m' = max(m, rowmax(S)),  a = exp(m - m'),  P = exp(S - m'),
    l <- a l + rowsum(P),    acc <- a acc + P V,

then ``out = acc / l`` and ``lse = m + log l``. ``m`` starts at ``-inf``; whenever the running
maximum is still ``-inf`` (every key so far masked: a masked first block, a padding query) the
shift ``m'`` is replaced by 0, so no ``exp(-inf - (-inf))`` is ever formed; a row that ends with
``l = 0`` gets ``out = 0`` and ``lse = -inf``. With ``causal=True`` the key loop of query block
``i`` stops after the last block that intersects the lower triangle.

Backward (FlashAttention-2, Dao 2023, Alg. 2): the residuals are ``q, k, v, out, lse`` (plus the
masks); nothing of size ``Lq x Lk`` is stored. A loop over key blocks ``j`` (outer) and query
blocks ``i`` (inner) recomputes ``P_ij = exp(S_ij - lse_i)`` and forms

    dV_j += P_ij^T dO_i,   dP_ij = dO_i V_j^T,   dS_ij = P_ij (dP_ij - delta_i + dlse_i),
    dQ_i += scale dS_ij K_j,   dK_j += scale dS_ij^T Q_i,      delta_i = rowsum(dO_i * O_i),

(``dlse`` is the cotangent of the returned ``lse``; ``d lse_i / d S_ij = P_ij``). ``dQ`` is an f32
accumulator of the size of ``q``; ``dK_j, dV_j`` are complete after the inner loop and written
once. Lengths that are not multiples of the blocks are padded (``q, k, v`` and the masks are
copied once, padded keys/queries masked out).

GQA: the query heads are viewed as ``[Hkv, G]`` and every tile product carries the ``G`` axis,
so keys and values are never repeated.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from bottleneck_jax import kernels
from bottleneck_jax.kernels import blocks as _blocks
from bottleneck_jax.ops._attention import common
from bottleneck_jax.ops._attention.common import F32, NEG_INF, pad_axis

# Tile products; q tiles are [B, bq, Hkv, G, D], k/v tiles [B, bk, Hkv, D], logits
# [B, Hkv, G, bq, bk].
_QK = "bqhgd,bkhd->bhgqk"
_PV = "bhgqk,bkhd->bhgqd"
_PT_DO = "bhgqk,bqhgd->bkhd"
_DS_K = "bhgqk,bkhd->bqhgd"


class Geometry(NamedTuple):
  b: int
  lq: int
  lk: int
  h: int
  hkv: int
  g: int
  d: int
  bq: int
  bk: int
  lq_p: int
  lk_p: int
  nq: int
  nk: int
  causal: bool


def geometry(q, k, blocks, causal) -> Geometry:
  b, lq, h, d = q.shape
  lk, hkv = k.shape[1], k.shape[2]
  bq, bk = blocks
  lq_p, lk_p = _blocks.round_up(lq, bq), _blocks.round_up(lk, bk)
  return Geometry(b, lq, lk, h, hkv, h // hkv, d, bq, bk, lq_p, lk_p, lq_p // bq, lk_p // bk,
                  bool(causal))


def _and(a, c):
  return c if a is None else a & c


def tile_mask(geo: Geometry, i0, j0, mask, q_seg, kv_seg):
  """Bool mask of the tile (rows ``i0:i0+bq``, keys ``j0:j0+bk``), broadcastable to
  ``[B, Hkv, G, bq, bk]``, or ``None`` when nothing in the call is masked.

  ``mask``, ``q_seg``, ``kv_seg`` are the padded arrays of :func:`prepare`."""
  bq, bk = geo.bq, geo.bk
  rows = i0 + lax.broadcasted_iota(jnp.int32, (bq, 1), 0)
  cols = j0 + lax.broadcasted_iota(jnp.int32, (1, bk), 1)
  m = None
  if geo.causal:
    m = rows >= cols
  if geo.lk_p != geo.lk:
    m = _and(m, cols < geo.lk)
  if geo.lq_p != geo.lq:
    m = _and(m, rows < geo.lq)
  if m is not None:
    m = m[None, None, None]
  if mask is not None:
    t = lax.dynamic_slice(mask, (0, 0, i0, j0), (mask.shape[0], mask.shape[1], bq, bk))
    t = t.reshape(t.shape[0], geo.hkv, geo.g, bq, bk) if t.shape[1] != 1 else t[:, :, None]
    m = _and(m, t)
  if q_seg is not None:
    qs = lax.dynamic_slice_in_dim(q_seg, i0, bq, axis=1)
    ks = lax.dynamic_slice_in_dim(kv_seg, j0, bk, axis=1)
    same = (qs[:, :, None] == ks[:, None, :]) & (qs > 0)[:, :, None]
    m = _and(m, same[:, None, None])
  return m


def keys_used(tm):
  """``[B|1, bk, Hkv|1, 1]``: keys of the tile that some query (of any head in the group)
  attends; the others are zeroed before their products, so a NaN there cannot leak."""
  return jnp.swapaxes(jnp.any(tm, axis=(2, 3)), 1, 2)[..., None]


def queries_used(tm):
  """``[B|1, bq, Hkv|1, G|1, 1]``: queries of the tile that attend some key."""
  return jnp.moveaxis(jnp.any(tm, axis=4), 3, 1)[..., None]


def prepare(q, k, v, mask, q_seg, kv_seg, blocks, causal):
  """Pads to whole blocks and views ``q`` as ``[B, Lq_p, Hkv, G, D]``."""
  geo = geometry(q, k, blocks, causal)
  mask, q_seg, kv_seg = common.match_batch_sharding(q, mask, q_seg, kv_seg)
  qg = pad_axis(q, 1, geo.lq_p).reshape(geo.b, geo.lq_p, geo.hkv, geo.g, geo.d)
  kp, vp = pad_axis(k, 1, geo.lk_p), pad_axis(v, 1, geo.lk_p)
  if mask is not None:
    mask = pad_axis(pad_axis(mask, 2, geo.lq_p, False), 3, geo.lk_p, False)
  if q_seg is not None:
    q_seg = pad_axis(q_seg.astype(jnp.int32), 1, geo.lq_p)
    kv_seg = pad_axis(kv_seg.astype(jnp.int32), 1, geo.lk_p)
  return geo, qg, kp, vp, mask, q_seg, kv_seg


def loop(lo, hi, body, carry):
  """``lax.fori_loop``, inlined when the bounds are static and span at most one step."""
  if isinstance(lo, int) and isinstance(hi, int):
    if hi <= lo:
      return carry
    if hi - lo == 1:
      return body(lo, carry)
  return lax.fori_loop(lo, hi, body, carry)


def _causal_key_blocks(geo: Geometry, i0):
  """Number of key blocks query block ``i0:i0+bq`` needs."""
  if not geo.causal:
    return geo.nk
  if isinstance(i0, int):
    return min(geo.nk, _blocks.cdiv(i0 + geo.bq, geo.bk))
  return jnp.minimum(geo.nk, (i0 + geo.bq + geo.bk - 1) // geo.bk)


def _causal_first_query_block(geo: Geometry, j0):
  """First query block that attends some key of block ``j0:j0+bk``."""
  if not geo.causal:
    return 0
  return j0 // geo.bq


# ------------------------------------------------------------------------------------ forward


def forward(q, k, v, mask, q_seg, kv_seg, *, causal, scale, blocks):
  """``(out [B, Lq, H, D] in q's dtype, lse [B, H, Lq] f32)`` by the blocked online softmax."""
  geo, qg, kp, vp, mask, q_seg, kv_seg = prepare(q, k, v, mask, q_seg, kv_seg, blocks, causal)
  bq, bk = geo.bq, geo.bk

  def q_block(i0):
    qi = lax.dynamic_slice_in_dim(qg, i0, bq, axis=1)
    acc0 = jnp.zeros_like(jnp.moveaxis(qi, 1, 3), dtype=F32)          # [B, Hkv, G, bq, D]
    m0 = jnp.full_like(acc0[..., 0], NEG_INF)
    l0 = jnp.zeros_like(acc0[..., 0])

    def k_step(j, carry):
      acc, m_prev, l_prev = carry
      j0 = j * bk
      kj = lax.dynamic_slice_in_dim(kp, j0, bk, axis=1)
      vj = lax.dynamic_slice_in_dim(vp, j0, bk, axis=1)
      s = jnp.einsum(_QK, qi, kj, preferred_element_type=F32) * scale
      tm = tile_mask(geo, i0, j0, mask, q_seg, kv_seg)
      if tm is not None:
        s = jnp.where(tm, s, NEG_INF)
        vj = jnp.where(keys_used(tm), vj, 0.0)
      m_new = jnp.maximum(m_prev, jnp.max(s, axis=-1))
      m_safe = jnp.where(m_new == NEG_INF, 0.0, m_new)   # every key so far masked
      alpha = jnp.exp(m_prev - m_safe)
      p = jnp.exp(s - m_safe[..., None])
      l_new = alpha * l_prev + jnp.sum(p, axis=-1)
      pv = jnp.einsum(_PV, p.astype(vj.dtype), vj, preferred_element_type=F32)
      return alpha[..., None] * acc + pv, m_new, l_new

    acc, m, l = loop(0, _causal_key_blocks(geo, i0), k_step, (acc0, m0, l0))
    attended = l > 0
    l_safe = jnp.where(attended, l, 1.0)
    out = jnp.moveaxis(acc / l_safe[..., None], 3, 1).astype(q.dtype)   # [B, bq, Hkv, G, D]
    lse = jnp.where(attended, m + jnp.log(l_safe), NEG_INF)
    return out, lse

  def q_step(i, carry):
    out, lse = carry
    i0 = i * bq
    o_t, lse_t = q_block(i0)
    return (lax.dynamic_update_slice_in_dim(out, o_t, i0, axis=1),
            lax.dynamic_update_slice_in_dim(lse, lse_t, i0, axis=3))

  out0 = jnp.zeros_like(qg)
  lse0 = jnp.zeros_like(jnp.moveaxis(qg[..., 0], 1, 3), dtype=F32)    # [B, Hkv, G, Lq_p]
  out, lse = loop(0, geo.nq, q_step, (out0, lse0))
  out = out[:, :geo.lq].reshape(geo.b, geo.lq, geo.h, geo.d)
  lse = lse.reshape(geo.b, geo.h, geo.lq_p)[:, :, :geo.lq]
  return out, lse


# ----------------------------------------------------------------------------------- backward


def backward(q, k, v, mask, q_seg, kv_seg, out, lse, dout, dlse, *, causal, scale, blocks):
  """``(dq, dk, dv)`` in the input dtypes by blockwise recomputation (FlashAttention-2)."""
  geo, qg, kp, vp, mask, q_seg, kv_seg = prepare(q, k, v, mask, q_seg, kv_seg, blocks, causal)
  bq, bk = geo.bq, geo.bk
  shape_g = (geo.b, geo.lq_p, geo.hkv, geo.g, geo.d)
  og = pad_axis(out, 1, geo.lq_p).reshape(shape_g)
  dog = pad_axis(dout.astype(q.dtype), 1, geo.lq_p).reshape(shape_g)
  lse_g = pad_axis(lse.reshape(geo.b, geo.hkv, geo.g, geo.lq), 3, geo.lq_p)
  lse_g = jnp.where(lse_g == NEG_INF, 0.0, lse_g)   # fully masked rows: P = 0 there anyway
  delta = jnp.moveaxis(jnp.sum(dog.astype(F32) * og.astype(F32), axis=-1), 1, 3)
  delta = delta - pad_axis(dlse.astype(F32).reshape(geo.b, geo.hkv, geo.g, geo.lq), 3, geo.lq_p)

  def k_step(j, carry):
    dq, dk, dv = carry
    j0 = j * bk
    kj = lax.dynamic_slice_in_dim(kp, j0, bk, axis=1)
    vj = lax.dynamic_slice_in_dim(vp, j0, bk, axis=1)

    def q_step(i, c):
      dq, dkj, dvj = c
      i0 = i * bq
      qi = lax.dynamic_slice_in_dim(qg, i0, bq, axis=1)
      doi = lax.dynamic_slice_in_dim(dog, i0, bq, axis=1)
      lse_i = lax.dynamic_slice_in_dim(lse_g, i0, bq, axis=3)[..., None]
      delta_i = lax.dynamic_slice_in_dim(delta, i0, bq, axis=3)[..., None]
      s = jnp.einsum(_QK, qi, kj, preferred_element_type=F32) * scale
      kjs, vjs, qis = kj, vj, qi
      tm = tile_mask(geo, i0, j0, mask, q_seg, kv_seg)
      if tm is not None:
        s = jnp.where(tm, s, NEG_INF)
        used = keys_used(tm)
        kjs, vjs = jnp.where(used, kj, 0.0), jnp.where(used, vj, 0.0)
        qis = jnp.where(queries_used(tm), qi, 0.0)
      p = jnp.exp(s - lse_i)                                     # 0 at masked logits
      dvj = dvj + jnp.einsum(_PT_DO, p.astype(doi.dtype), doi, preferred_element_type=F32)
      dp = jnp.einsum(_QK, doi, vjs, preferred_element_type=F32)
      ds = (p * (dp - delta_i)).astype(q.dtype)
      dq_i = jnp.einsum(_DS_K, ds, kjs, preferred_element_type=F32) * scale
      dq = lax.dynamic_update_slice_in_dim(
          dq, lax.dynamic_slice_in_dim(dq, i0, bq, axis=1) + dq_i, i0, axis=1)
      dkj = dkj + jnp.einsum(_PT_DO, ds, qis, preferred_element_type=F32)
      return dq, dkj, dvj

    dkj0 = jnp.zeros_like(kj, dtype=F32)
    dq, dkj, dvj = loop(_causal_first_query_block(geo, j0), geo.nq, q_step, (dq, dkj0, dkj0))
    dk = lax.dynamic_update_slice_in_dim(dk, (dkj * scale).astype(k.dtype), j0, axis=1)
    dv = lax.dynamic_update_slice_in_dim(dv, dvj.astype(v.dtype), j0, axis=1)
    return dq, dk, dv

  init = (jnp.zeros_like(qg, dtype=F32), jnp.zeros_like(kp), jnp.zeros_like(vp))
  dq, dk, dv = loop(0, geo.nk, k_step, init)
  dq = dq[:, :geo.lq].reshape(q.shape).astype(q.dtype)
  return dq, dk[:, :geo.lk], dv[:, :geo.lk]


# --------------------------------------------------------------- the shared custom VJP


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7, 8, 9, 10))
def flash_attention(q, k, v, mask, q_seg, kv_seg, causal, scale, fwd, fwd_blocks, bwd_blocks):
  """``(out, lse)`` computed by ``fwd`` (this module's :func:`forward` or the Pallas kernel),
  differentiated by the blocked XLA :func:`backward` with tiles ``bwd_blocks``."""
  return fwd(q, k, v, mask, q_seg, kv_seg, causal=causal, scale=scale, blocks=fwd_blocks)


def _flash_fwd(q, k, v, mask, q_seg, kv_seg, causal, scale, fwd, fwd_blocks, bwd_blocks):
  out, lse = fwd(q, k, v, mask, q_seg, kv_seg, causal=causal, scale=scale, blocks=fwd_blocks)
  return (out, lse), (q, k, v, mask, q_seg, kv_seg, out, lse)


def _flash_bwd(causal, scale, fwd, fwd_blocks, bwd_blocks, res, cts):
  q, k, v, mask, q_seg, kv_seg, out, lse = res
  dout, dlse = cts
  dq, dk, dv = backward(q, k, v, mask, q_seg, kv_seg, out, lse, dout, dlse, causal=causal,
                        scale=scale, blocks=bwd_blocks)
  return dq, dk, dv, None, None, None


flash_attention.defvjp(_flash_fwd, _flash_bwd)


def xla_blocks(q, k, block_sizes):
  """The XLA tiles: ``block_sizes`` if given, else :func:`common.block_sizes`."""
  if block_sizes is not None:
    return tuple(int(b) for b in block_sizes)
  return common.block_sizes(q.shape[1], k.shape[1], q.shape[3], q.dtype, kernels.backend(), "xla")


def attention(q, k, v, mask, q_seg, kv_seg, *, causal, scale, block_sizes=None):
  """Blocked XLA forward + blocked XLA backward; memory linear in the sequence lengths."""
  blocks = xla_blocks(q, k, block_sizes)
  return flash_attention(q, k, v, mask, q_seg, kv_seg, causal, scale, forward, blocks, blocks)


__all__ = ["attention", "backward", "flash_attention", "forward", "xla_blocks"]
