"""Block-sparse attention in plain XLA: a loop over the block table, never a dense mask.

Prefill (:func:`attention`). For query block ``i`` (``bq`` rows) a loop over the ``K`` entries of
its table row gathers, for every ``(batch, kv head)`` at once, the key/value block the entry names
(``[B, Hkv, bk, D]``) and applies the online softmax (running max ``m``, sum ``l``, accumulator
``acc``, with the ``-inf``-safe shift of the dense op). Inside a gathered tile a key is attended
when the entry is valid, the key exists (``j < Lk``), and the causal and segment constraints
hold. Work and temporaries scale with the number of *selected* blocks,
``O(B H nq K bq bk)`` flops and ``O(B H bq bk)`` tile memory, not with ``Lq x Lk``.

Backward: a ``custom_vjp`` that stores ``(q, k, v, table, out, lse)`` and recomputes each tile
(FlashAttention-2): ``P = exp(S - lse)``, ``dV_blk += P^T dO``, ``dS = P (dO V^T - delta)``,
``dQ += scale dS K``, ``dK_blk += scale dS^T Q``; the key/value gradients of a tile are
scatter-added into f32 ``[B, Hkv, nk, bk, D]`` accumulators at the entry's block (the table has
no repeated valid block in a row, see :func:`.common.normalise_table`).

Decode (:func:`decode`): the selected blocks of each ``(batch, kv head)`` are gathered into
``[B, Hkv, K, bk, D]`` and attended in one masked softmax by the ``G = H / Hkv`` query heads of
the group (keys read once per group); memory is that of the budget ``K bk``, not of the cache;
differentiated by plain autodiff.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from bottleneck_jax.kernels import blocks as _blocks
from bottleneck_jax.ops._attention.xla import loop
from bottleneck_jax.ops._block_sparse_attention.common import F32, NEG_INF, pad_axis

_QK = "bqhgd,bhkd->bhgqk"
_PV = "bhgqk,bhkd->bhgqd"
_PT_DO = "bhgqk,bqhgd->bhkd"
_DS_K = "bhgqk,bhkd->bqhgd"


def _geometry(q, k, block_idx, blocks):
  b, lq, h, d = q.shape
  lk, hkv = k.shape[1], k.shape[2]
  bq, bk = blocks
  nq, nk = _blocks.cdiv(lq, bq), _blocks.cdiv(lk, bk)
  return dict(b=b, lq=lq, lk=lk, h=h, hkv=hkv, g=h // hkv, d=d, bq=bq, bk=bk, nq=nq, nk=nk,
              lq_p=nq * bq, lk_p=nk * bk, kk=block_idx.shape[-1])


def _blocked(x, geo):
  """``[B, L, Hkv, D]`` -> ``[B, Hkv, nk, bk, D]`` (padded with zeros)."""
  x = pad_axis(x, 1, geo["lk_p"]).reshape(geo["b"], geo["nk"], geo["bk"], geo["hkv"], geo["d"])
  return jnp.transpose(x, (0, 3, 1, 2, 4))


def _prepare(q, k, v, q_seg, kv_seg, geo):
  qg = pad_axis(q, 1, geo["lq_p"]).reshape(geo["b"], geo["lq_p"], geo["hkv"], geo["g"], geo["d"])
  if q_seg is not None:
    q_seg = pad_axis(q_seg.astype(jnp.int32), 1, geo["lq_p"])
    kv_seg = pad_axis(kv_seg.astype(jnp.int32), 1, geo["lk_p"]).reshape(geo["b"], geo["nk"],
                                                                        geo["bk"])
  return qg, _blocked(k, geo), _blocked(v, geo), q_seg, kv_seg


def _bh(geo):
  return jnp.arange(geo["b"])[:, None], jnp.arange(geo["hkv"])[None, :]


def _tile_mask(geo, i0, blk, valid_e, q_seg, kv_seg):
  """Bool ``[B, Hkv, 1, bq, bk]``: query rows ``i0:i0+bq`` against the gathered key block."""
  bq, bk = geo["bq"], geo["bk"]
  cols = blk[:, :, None, None, None] * bk + lax.broadcasted_iota(jnp.int32, (1, 1, 1, 1, bk), 4)
  rows = i0 + lax.broadcasted_iota(jnp.int32, (1, 1, 1, bq, 1), 3)
  m = valid_e[:, :, None, None, None] & (cols < geo["lk"]) & (rows < geo["lq"])
  if geo["causal"]:
    m = m & (rows >= cols)
  if q_seg is not None:
    bi, _ = _bh(geo)
    qs = lax.dynamic_slice_in_dim(q_seg, i0, bq, axis=1)                     # [B, bq]
    ks = kv_seg[bi, blk]                                                       # [B, Hkv, bk]
    same = (qs[:, None, None, :, None] == ks[:, :, None, None, :]) & (qs > 0)[:, None, None, :,
                                                                              None]
    m = m & same
  return jnp.broadcast_to(m, (geo["b"], geo["hkv"], 1, bq, bk))


def _entry(geo, block_idx, block_valid, i, e):
  idx_i = lax.dynamic_index_in_dim(block_idx, i, axis=2, keepdims=False)
  val_i = lax.dynamic_index_in_dim(block_valid, i, axis=2, keepdims=False)
  return (lax.dynamic_index_in_dim(idx_i, e, axis=2, keepdims=False),
          lax.dynamic_index_in_dim(val_i, e, axis=2, keepdims=False))


def forward(q, k, v, block_idx, block_valid, q_seg, kv_seg, *, causal, scale, blocks):
  """``(out [B, Lq, H, D], lse [B, H, Lq] f32)``: the online softmax over the table."""
  geo = _geometry(q, k, block_idx, blocks)
  geo["causal"] = bool(causal)
  qg, kb, vb, q_seg, kv_seg = _prepare(q, k, v, q_seg, kv_seg, geo)
  bi, hi = _bh(geo)
  bq = geo["bq"]

  def q_step(i, carry):
    out, lse = carry
    i0 = i * bq
    qi = lax.dynamic_slice_in_dim(qg, i0, bq, axis=1)                        # [B, bq, Hkv, G, D]
    acc0 = jnp.zeros((geo["b"], geo["hkv"], geo["g"], bq, geo["d"]), F32)
    m0 = jnp.full(acc0.shape[:-1], NEG_INF, F32)
    l0 = jnp.zeros(acc0.shape[:-1], F32)

    def e_step(e, c):
      acc, m_prev, l_prev = c
      blk, ve = _entry(geo, block_idx, block_valid, i, e)
      kj, vj = kb[bi, hi, blk], vb[bi, hi, blk]                              # [B, Hkv, bk, D]
      tm = _tile_mask(geo, i0, blk, ve, q_seg, kv_seg)
      used = jnp.any(tm, axis=(2, 3))[..., None]                            # [B, Hkv, bk, 1]
      vj = jnp.where(used, vj, 0.0)
      kj = jnp.where(used, kj, 0.0)
      s = jnp.einsum(_QK, qi, kj, preferred_element_type=F32) * scale
      s = jnp.where(tm, s, NEG_INF)
      m_new = jnp.maximum(m_prev, jnp.max(s, axis=-1))
      m_safe = jnp.where(m_new == NEG_INF, 0.0, m_new)
      alpha = jnp.exp(m_prev - m_safe)
      p = jnp.exp(s - m_safe[..., None])
      l_new = alpha * l_prev + jnp.sum(p, axis=-1)
      pv = jnp.einsum(_PV, p.astype(vj.dtype), vj, preferred_element_type=F32)
      return alpha[..., None] * acc + pv, m_new, l_new

    acc, m, l = loop(0, geo["kk"], e_step, (acc0, m0, l0))
    attended = l > 0
    l_safe = jnp.where(attended, l, 1.0)
    o_t = jnp.moveaxis(acc / l_safe[..., None], 3, 1).astype(q.dtype)      # [B, bq, Hkv, G, D]
    lse_t = jnp.where(attended, m + jnp.log(l_safe), NEG_INF)              # [B, Hkv, G, bq]
    return (lax.dynamic_update_slice_in_dim(out, o_t, i0, axis=1),
            lax.dynamic_update_slice_in_dim(lse, lse_t, i0, axis=3))

  out0 = jnp.zeros_like(qg)
  lse0 = jnp.zeros((geo["b"], geo["hkv"], geo["g"], geo["lq_p"]), F32)
  out, lse = loop(0, geo["nq"], q_step, (out0, lse0))
  out = out[:, :geo["lq"]].reshape(q.shape)
  lse = lse.reshape(geo["b"], geo["h"], geo["lq_p"])[:, :, :geo["lq"]]
  return out, lse


def backward(q, k, v, block_idx, block_valid, q_seg, kv_seg, out, lse, dout, dlse, *, causal,
             scale, blocks):
  """``(dq, dk, dv)`` by tile recomputation over the table."""
  geo = _geometry(q, k, block_idx, blocks)
  geo["causal"] = bool(causal)
  qg, kb, vb, q_seg, kv_seg = _prepare(q, k, v, q_seg, kv_seg, geo)
  bi, hi = _bh(geo)
  b, lq, hkv, g, d, bq = geo["b"], geo["lq"], geo["hkv"], geo["g"], geo["d"], geo["bq"]
  shape_g = (b, geo["lq_p"], hkv, g, d)
  og = pad_axis(out, 1, geo["lq_p"]).reshape(shape_g)
  dog = pad_axis(dout.astype(q.dtype), 1, geo["lq_p"]).reshape(shape_g)
  lse_g = pad_axis(lse.reshape(b, hkv, g, lq), 3, geo["lq_p"])
  lse_g = jnp.where(lse_g == NEG_INF, 0.0, lse_g)
  delta = jnp.moveaxis(jnp.sum(dog.astype(F32) * og.astype(F32), axis=-1), 1, 3)
  delta = delta - pad_axis(dlse.astype(F32).reshape(b, hkv, g, lq), 3, geo["lq_p"])

  def q_step(i, carry):
    dq, dkb, dvb = carry
    i0 = i * bq
    qi = lax.dynamic_slice_in_dim(qg, i0, bq, axis=1)
    doi = lax.dynamic_slice_in_dim(dog, i0, bq, axis=1)
    lse_i = lax.dynamic_slice_in_dim(lse_g, i0, bq, axis=3)[..., None]
    delta_i = lax.dynamic_slice_in_dim(delta, i0, bq, axis=3)[..., None]

    def e_step(e, c):
      dq_i, dkb, dvb = c
      blk, ve = _entry(geo, block_idx, block_valid, i, e)
      kj, vj = kb[bi, hi, blk], vb[bi, hi, blk]
      tm = _tile_mask(geo, i0, blk, ve, q_seg, kv_seg)
      used = jnp.any(tm, axis=(2, 3))[..., None]
      kj, vj = jnp.where(used, kj, 0.0), jnp.where(used, vj, 0.0)
      q_used = jnp.moveaxis(jnp.any(tm, axis=4), 3, 1)[..., None]           # [B, bq, Hkv, 1, 1]
      qis = jnp.where(q_used, qi, 0.0)
      # Tile products in f32 (XLA:CPU has no bf16 x bf16 -> f32 dot for these layouts);
      # p and ds are rounded to the input dtype first, as the forward rounds p.
      kj, vj, qis, dos = (x.astype(F32) for x in (kj, vj, qis, doi))
      s = jnp.einsum(_QK, qis, kj) * scale
      s = jnp.where(tm, s, NEG_INF)
      p = jnp.exp(s - lse_i)
      dv_t = jnp.einsum(_PT_DO, p.astype(q.dtype).astype(F32), dos)
      dp = jnp.einsum(_QK, dos, vj)
      ds = (p * (dp - delta_i)).astype(q.dtype).astype(F32)
      dq_i = dq_i + jnp.einsum(_DS_K, ds, kj) * scale
      dk_t = jnp.einsum(_PT_DO, ds, qis) * scale
      return dq_i, dkb.at[bi, hi, blk].add(dk_t), dvb.at[bi, hi, blk].add(dv_t)

    dq_i0 = jnp.zeros(qi.shape, F32)
    dq_i, dkb, dvb = loop(0, geo["kk"], e_step, (dq_i0, dkb, dvb))
    return lax.dynamic_update_slice_in_dim(dq, dq_i, i0, axis=1), dkb, dvb

  acc = jnp.zeros((b, hkv, geo["nk"], geo["bk"], d), F32)
  dq, dkb, dvb = loop(0, geo["nq"], q_step, (jnp.zeros(shape_g, F32), acc, acc))

  def unblock(x, like):
    x = jnp.transpose(x, (0, 2, 3, 1, 4)).reshape(b, geo["lk_p"], hkv, d)
    return x[:, :geo["lk"]].astype(like.dtype)

  dq = dq[:, :lq].reshape(q.shape).astype(q.dtype)
  return dq, unblock(dkb, k), unblock(dvb, v)


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8, 9, 10))
def block_sparse_flash(q, k, v, block_idx, block_valid, q_seg, kv_seg, causal, scale, fwd,
                       blocks):
  """``(out, lse)`` by ``fwd`` (this module's :func:`forward` or the Pallas kernel),
  differentiated by :func:`backward`."""
  return fwd(q, k, v, block_idx, block_valid, q_seg, kv_seg, causal=causal, scale=scale,
             blocks=blocks)


def _fwd(q, k, v, block_idx, block_valid, q_seg, kv_seg, causal, scale, fwd, blocks):
  out, lse = fwd(q, k, v, block_idx, block_valid, q_seg, kv_seg, causal=causal, scale=scale,
                 blocks=blocks)
  return (out, lse), (q, k, v, block_idx, block_valid, q_seg, kv_seg, out, lse)


def _bwd(causal, scale, fwd, blocks, res, cts):
  q, k, v, block_idx, block_valid, q_seg, kv_seg, out, lse = res
  dq, dk, dv = backward(q, k, v, block_idx, block_valid, q_seg, kv_seg, out, lse, *cts,
                        causal=causal, scale=scale, blocks=blocks)
  return dq, dk, dv, None, None, None, None


block_sparse_flash.defvjp(_fwd, _bwd)


def attention(q, k, v, block_idx, block_valid, q_seg, kv_seg, *, causal, scale, block_sizes):
  """Table loop forward + recomputing backward; no ``Lq x Lk`` array."""
  return block_sparse_flash(q, k, v, block_idx, block_valid, q_seg, kv_seg, bool(causal),
                            float(scale), forward, tuple(block_sizes))


def decode(q, k, v, block_idx, block_valid, lengths, *, scale, block_size):
  """``(out [B, H, D], lse [B, H] f32)`` over the gathered blocks ``[B, Hkv, K, bk, D]``."""
  b, h, d = q.shape
  t, hkv = k.shape[1], k.shape[2]
  g, bk = h // hkv, block_size
  nk = _blocks.cdiv(t, bk)
  geo = dict(b=b, lk_p=nk * bk, nk=nk, bk=bk, hkv=hkv, d=d)
  bi, hi = jnp.arange(b)[:, None, None], jnp.arange(hkv)[None, :, None]
  kg = _blocked(k, geo)[bi, hi, block_idx].astype(F32)                       # [B, Hkv, K, bk, D]
  vg = _blocked(v, geo)[bi, hi, block_idx].astype(F32)
  cols = block_idx[..., None] * bk + jnp.arange(bk, dtype=jnp.int32)
  m = block_valid[..., None] & (cols < jnp.minimum(lengths, t)[:, None, None, None])
  kg = jnp.where(m[..., None], kg, 0.0)
  vg = jnp.where(m[..., None], vg, 0.0)
  n = block_idx.shape[-1] * bk
  kg, vg, m = kg.reshape(b, hkv, n, d), vg.reshape(b, hkv, n, d), m.reshape(b, hkv, 1, n)
  qg = q.astype(F32).reshape(b, hkv, g, d)
  s = jnp.einsum("bhgd,bhnd->bhgn", qg, kg, precision=lax.Precision.HIGHEST) * scale
  s = jnp.where(m, s, NEG_INF)
  mx = lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True))
  mx = jnp.where(jnp.isfinite(mx), mx, 0.0)
  e = jnp.exp(s - mx)
  l = jnp.sum(e, axis=-1, keepdims=True)
  attended = l > 0
  l_safe = jnp.where(attended, l, 1.0)
  out = jnp.einsum("bhgn,bhnd->bhgd", e / l_safe, vg, precision=lax.Precision.HIGHEST)
  lse = jnp.where(attended, mx + jnp.log(l_safe), NEG_INF)[..., 0]
  return out.reshape(b, h, d).astype(q.dtype), lse.reshape(b, h)


__all__ = ["attention", "backward", "block_sparse_flash", "decode", "forward"]
