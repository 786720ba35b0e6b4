"""Pallas block-sparse attention kernels: the key/value blocks are read through the block table.

Prefill (:func:`attention`): grid ``(query blocks, batch, query heads)``; each program keeps one
``[bq, D]`` query tile and walks its table row ``block_idx[b, h // G, i, :]`` (a ``[K]`` vector
in the program's memory): entry ``e`` loads keys and values ``k[b, idx*bk : idx*bk + bk, h // G]``
with ``pl.ds`` and applies the online softmax (the ``-inf``-safe shift of the dense kernel).
Causality, key padding, the segment ids and the entry's validity are rebuilt per tile from iotas.
Backward: the table-loop XLA backward of :mod:`.xla`.

Decode (:func:`decode`, a flash-decode): grid ``(batch, kv heads)``; the ``G`` query heads of a
kv head are one ``[G, D]`` tile (GQA packed into the rows), so each selected key/value block is
read once per group, which is why decode traffic scales with the number of kv heads. The table
carries, per entry, the number of keys of the block below the row's length (``count``), so the
kernel needs no length input. Backward: autodiff of the XLA gather path.

Native lowering: Triton on GPU (the table length ``K``, the head dim and the group are padded to
powers of two, blocks must be powers of two >= 16); on CPU the kernels run with
``interpret=True``. Other platforms raise :class:`UnsupportedInput` (the dispatcher falls back to
``"xla"``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from bottleneck_jax import kernels
from bottleneck_jax.kernels import blocks as _blocks
from bottleneck_jax.ops._attention.pallas import (
  finish,
  initial_carry,
  online_step,
  query_tiled_call,
  triton_check,
)
from bottleneck_jax.ops._block_sparse_attention import xla
from bottleneck_jax.ops._block_sparse_attention.common import F32, pad_axis


def check_supported(block_sizes, interpret: bool, platform: str) -> None:
  """Raises :class:`UnsupportedInput` where the kernels cannot run natively."""
  triton_check("block-sparse attention", block_sizes, interpret, platform)


def _prefill_kernel(*refs, has_seg, causal, scale, bq, bk, kk, lk):
  from jax.experimental import pallas as pl

  q_ref, k_ref, v_ref, idx_ref, val_ref = refs[:5]
  pos = 5
  if has_seg:
    qseg_ref, kvseg_ref = refs[5:7]
    pos = 7
  o_ref, lse_ref = refs[pos:pos + 2]
  i = pl.program_id(0)
  q = q_ref[...]
  rows = i * bq + lax.broadcasted_iota(jnp.int32, (bq, bk), 0)
  qs = qseg_ref[...] if has_seg else None

  def body(e, carry):
    j0 = pl.multiple_of(idx_ref[e] * bk, bk)
    kt = k_ref[pl.ds(j0, bk), :]
    vt = v_ref[pl.ds(j0, bk), :]
    cols = j0 + lax.broadcasted_iota(jnp.int32, (bq, bk), 1)
    valid = (cols < lk) & (val_ref[e] != 0)
    if causal:
      valid = valid & (rows >= cols)
    if has_seg:
      ks = kvseg_ref[pl.ds(j0, bk)]
      valid = valid & (qs[:, None] == ks[None, :]) & (qs[:, None] > 0)
    return online_step(q, kt, vt, valid, carry, scale)

  finish(o_ref, lse_ref, lax.fori_loop(0, kk, body, initial_carry(q)))


def forward(q, k, v, block_idx, block_valid, q_seg, kv_seg, *, causal, scale, blocks):
  """``(out, lse)`` by the prefill kernel; same contract as :func:`.xla.forward`."""
  from jax.experimental import pallas as pl

  b, lq, h, d = q.shape
  lk, hkv = k.shape[1], k.shape[2]
  g = h // hkv
  bq, bk = blocks
  nq, nk = _blocks.cdiv(lq, bq), _blocks.cdiv(lk, bk)
  lq_p, lk_p = nq * bq, nk * bk
  d_p = _blocks.next_power_of_2(d)
  kk = _blocks.next_power_of_2(block_idx.shape[-1])
  qp = pad_axis(pad_axis(q, 1, lq_p), 3, d_p)
  kp = pad_axis(pad_axis(k, 1, lk_p), 3, d_p)
  vp = pad_axis(pad_axis(v, 1, lk_p), 3, d_p)
  idx = pad_axis(block_idx, 3, kk)
  val = pad_axis(block_valid.astype(jnp.int32), 3, kk)
  has_seg = q_seg is not None
  args = [qp, kp, vp, idx, val]
  in_specs = [
      pl.BlockSpec((None, bq, None, d_p), lambda i, bi, hi: (bi, i, hi, 0)),
      pl.BlockSpec((None, lk_p, None, d_p), lambda i, bi, hi: (bi, 0, hi // g, 0)),
      pl.BlockSpec((None, lk_p, None, d_p), lambda i, bi, hi: (bi, 0, hi // g, 0)),
      pl.BlockSpec((None, None, None, kk), lambda i, bi, hi: (bi, hi // g, i, 0)),
      pl.BlockSpec((None, None, None, kk), lambda i, bi, hi: (bi, hi // g, i, 0)),
  ]
  if has_seg:
    args += [pad_axis(q_seg.astype(jnp.int32), 1, lq_p),
             pad_axis(kv_seg.astype(jnp.int32), 1, lk_p)]
    in_specs += [pl.BlockSpec((None, bq), lambda i, bi, hi: (bi, i)),
                 pl.BlockSpec((None, lk_p), lambda i, bi, hi: (bi, 0))]
  kernel = functools.partial(_prefill_kernel, has_seg=has_seg, causal=bool(causal),
                             scale=float(scale), bq=bq, bk=bk, kk=kk, lk=lk)
  itemsize = jnp.dtype(q.dtype).itemsize

  def cost(nb):
    return (4 * nb * h * lq_p * kk * bk * d_p, nb * h * lq_p * kk * bk,
            itemsize * nb * h * (2 * lq_p + 2 * nq * kk * bk) * d_p)

  out, lse = query_tiled_call(kernel, args, in_specs, batch=b, heads=h, blocks=blocks,
                              padded=(lq_p, d_p), dtype=q.dtype, cost=cost,
                              name="block_sparse_attention_fwd")
  return out[:, :lq, :, :d], lse[:, :, :lq]


def attention(q, k, v, block_idx, block_valid, q_seg, kv_seg, *, causal, scale, block_sizes):
  """Pallas prefill kernel (interpret mode on CPU) + the table-loop XLA backward."""
  check_supported(block_sizes, kernels.pallas_interpret(), kernels.backend())
  return xla.block_sparse_flash(q, k, v, block_idx, block_valid, q_seg, kv_seg, bool(causal),
                                float(scale), forward, tuple(block_sizes))


# ------------------------------------------------------------------------------------ decode


def _decode_kernel(q_ref, k_ref, v_ref, idx_ref, cnt_ref, o_ref, lse_ref, *, scale, bk, kk, gp):
  from jax.experimental import pallas as pl

  q = q_ref[...]                                                         # [Gp, Dp]

  def body(e, carry):
    j0 = pl.multiple_of(idx_ref[e] * bk, bk)
    kt = k_ref[pl.ds(j0, bk), :]
    vt = v_ref[pl.ds(j0, bk), :]
    valid = lax.broadcasted_iota(jnp.int32, (gp, bk), 1) < cnt_ref[e]
    return online_step(q, kt, vt, valid, carry, scale)

  finish(o_ref, lse_ref, lax.fori_loop(0, kk, body, initial_carry(q)))


def decode_forward(q, k, v, block_idx, block_valid, lengths, *, scale, block_size):
  """``(out [B, H, D], lse [B, H])`` by the flash-decode kernel."""
  from jax.experimental import pallas as pl

  interpret = kernels.pallas_interpret()
  b, h, d = q.shape
  t, hkv = k.shape[1], k.shape[2]
  g, bk = h // hkv, block_size
  nk = _blocks.cdiv(t, bk)
  gp = _blocks.next_power_of_2(g) if interpret else max(16, _blocks.next_power_of_2(g))
  d_p = _blocks.next_power_of_2(d)
  kk = _blocks.next_power_of_2(block_idx.shape[-1])
  length = jnp.minimum(lengths, t).astype(jnp.int32)[:, None, None]
  count = jnp.where(block_valid, jnp.clip(length - block_idx * bk, 0, bk), 0)
  idx, count = pad_axis(block_idx, 2, kk), pad_axis(count.astype(jnp.int32), 2, kk)
  qp = pad_axis(pad_axis(q.reshape(b, hkv, g, d), 2, gp), 3, d_p)
  kp = pad_axis(pad_axis(k, 1, nk * bk), 3, d_p)
  vp = pad_axis(pad_axis(v, 1, nk * bk), 3, d_p)
  kernel = functools.partial(_decode_kernel, scale=float(scale), bk=bk, kk=kk, gp=gp)
  itemsize = jnp.dtype(q.dtype).itemsize

  def call(qp, kp, vp, idx, count):
    nb = qp.shape[0]
    return pl.pallas_call(
        kernel,
        grid=(nb, hkv),
        in_specs=[pl.BlockSpec((None, None, gp, d_p), lambda bi, hi: (bi, hi, 0, 0)),
                  pl.BlockSpec((None, nk * bk, None, d_p), lambda bi, hi: (bi, 0, hi, 0)),
                  pl.BlockSpec((None, nk * bk, None, d_p), lambda bi, hi: (bi, 0, hi, 0)),
                  pl.BlockSpec((None, None, kk), lambda bi, hi: (bi, hi, 0)),
                  pl.BlockSpec((None, None, kk), lambda bi, hi: (bi, hi, 0))],
        out_specs=[pl.BlockSpec((None, None, gp, d_p), lambda bi, hi: (bi, hi, 0, 0)),
                   pl.BlockSpec((None, None, gp), lambda bi, hi: (bi, hi, 0))],
        out_shape=[jax.ShapeDtypeStruct((nb, hkv, gp, d_p), q.dtype),
                   jax.ShapeDtypeStruct((nb, hkv, gp), F32)],
        interpret=interpret,
        cost_estimate=pl.CostEstimate(
            flops=4 * nb * hkv * gp * kk * bk * d_p, transcendentals=nb * hkv * gp * kk * bk,
            bytes_accessed=itemsize * nb * hkv * (2 * gp + 2 * kk * bk) * d_p),
        name="block_sparse_decode",
    )(qp, kp, vp, idx, count)

  out, lse = kernels.batch_shard_map(call, (qp, kp, vp, idx, count), batched=(True,) * 5,
                                     out_batched=(True, True), batch_size=b)
  return out[:, :, :g, :d].reshape(b, h, d), lse[:, :, :g].reshape(b, h)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def _decode(q, k, v, block_idx, block_valid, lengths, scale, block_size):
  return decode_forward(q, k, v, block_idx, block_valid, lengths, scale=scale,
                        block_size=block_size)


def _decode_fwd(q, k, v, block_idx, block_valid, lengths, scale, block_size):
  res = (q, k, v, block_idx, block_valid, lengths)
  return _decode(q, k, v, block_idx, block_valid, lengths, scale, block_size), res


def _decode_bwd(scale, block_size, res, cts):
  q, k, v, block_idx, block_valid, lengths = res
  _, vjp = jax.vjp(lambda q, k, v: xla.decode(q, k, v, block_idx, block_valid, lengths,
                                              scale=scale, block_size=block_size), q, k, v)
  return (*vjp(cts), None, None, None)


_decode.defvjp(_decode_fwd, _decode_bwd)


def decode(q, k, v, block_idx, block_valid, lengths, *, scale, block_size):
  """Pallas flash-decode (interpret mode on CPU); gradients by the XLA gather path."""
  check_supported((block_size,), kernels.pallas_interpret(), kernels.backend())
  return _decode(q, k, v, block_idx, block_valid, lengths, float(scale), int(block_size))


__all__ = ["attention", "check_supported", "decode", "decode_forward", "forward"]
