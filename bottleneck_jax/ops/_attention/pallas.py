"""Pallas attention forward kernel (FlashAttention-2 forward); backward = the blocked XLA one.

Grid ``(query blocks, batch, heads)``; each program keeps one ``[bq, D]`` query tile and loops over
the key blocks with the online softmax of :mod:`.xla` (``-inf`` running max replaced by a zero
shift while every key so far is masked; ``l = 0`` rows give ``out = 0``, ``lse = -inf``). Masks
are rebuilt per tile inside the kernel from iotas (causal, key padding), the segment ids and the
optional boolean mask (passed as ``int8``). GQA: the key/value block of query head ``h`` is
``h // G``. Lengths are padded to whole blocks and the head dimension to a power of two (Triton
needs power-of-two tiles); padded keys are masked, padded queries and columns sliced off.

Native lowering: Triton on GPU (the only platform this kernel is registered as validated on; the
tile sizes come from :func:`.common.block_sizes`); on CPU it runs with ``interpret=True``. TPU
(Mosaic) is not supported: :class:`UnsupportedInput`, so the dispatcher falls back to ``"xla"``.
Under a mesh the ``pallas_call`` runs inside :func:`kernels.batch_shard_map` (one shard of the
batch per device). The backward is :func:`.xla.backward` with XLA tiles.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from bottleneck_jax import kernels
from bottleneck_jax.kernels import blocks as _blocks
from bottleneck_jax.kernels.dispatch import UnsupportedInput
from bottleneck_jax.ops._attention import common, xla
from bottleneck_jax.ops._attention.common import F32, NEG_INF, pad_axis

_NT = (((1,), (1,)), ((), ()))   # [bq, d] x [bk, d] -> [bq, bk]
_NN = (((1,), (0,)), ((), ()))   # [bq, bk] x [bk, d] -> [bq, d]


def _kernel(*refs, has_seg, has_mask, causal, scale, bq, bk, nk, lk, lk_p):
  from jax.experimental import pallas as pl

  q_ref, k_ref, v_ref = refs[:3]
  pos = 3
  if has_seg:
    qseg_ref, kvseg_ref = refs[pos:pos + 2]
    pos += 2
  if has_mask:
    mask_ref = refs[pos]
    pos += 1
  o_ref, lse_ref = refs[pos:pos + 2]

  i = pl.program_id(0)
  q = q_ref[...]                                               # [bq, Dp]
  rows = i * bq + lax.broadcasted_iota(jnp.int32, (bq, bk), 0)
  qs = qseg_ref[...] if has_seg else None

  def body(j, carry):
    acc, m_prev, l_prev = carry
    j0 = pl.multiple_of(j * bk, bk)
    kt = k_ref[pl.ds(j0, bk), :]
    vt = v_ref[pl.ds(j0, bk), :]
    s = lax.dot_general(q, kt, _NT, preferred_element_type=F32) * scale
    cols = j0 + lax.broadcasted_iota(jnp.int32, (bq, bk), 1)
    valid = None
    if lk_p != lk:
      valid = cols < lk
    if causal:
      c = rows >= cols
      valid = c if valid is None else valid & c
    if has_seg:
      ks = kvseg_ref[pl.ds(j0, bk)]
      c = (qs[:, None] == ks[None, :]) & (qs[:, None] > 0)
      valid = c if valid is None else valid & c
    if has_mask:
      c = mask_ref[:, pl.ds(j0, bk)] != 0
      valid = c if valid is None else valid & c
    if valid is not None:
      s = jnp.where(valid, s, NEG_INF)
      used = jnp.max(valid.astype(jnp.int32), axis=0) > 0    # keys some query attends
      vt = jnp.where(used[:, None], vt, jnp.zeros_like(vt))
    m_new = jnp.maximum(m_prev, jnp.max(s, axis=1))
    m_safe = jnp.where(m_new == NEG_INF, 0.0, m_new)
    alpha = jnp.exp(m_prev - m_safe)
    p = jnp.exp(s - m_safe[:, None])
    l_new = alpha * l_prev + jnp.sum(p, axis=1)
    pv = lax.dot_general(p.astype(vt.dtype), vt, _NN, preferred_element_type=F32)
    return alpha[:, None] * acc + pv, m_new, l_new

  if causal:
    hi = jnp.minimum(nk, lax.div((i + 1) * bq + bk - 1, bk))
  else:
    hi = nk
  init = (jnp.zeros(q.shape, F32), jnp.full((bq,), NEG_INF, F32), jnp.zeros((bq,), F32))
  acc, m, l = lax.fori_loop(0, hi, body, init)
  attended = l > 0
  l_safe = jnp.where(attended, l, 1.0)
  o_ref[...] = (acc / l_safe[:, None]).astype(o_ref.dtype)
  lse_ref[...] = jnp.where(attended, m + jnp.log(l_safe), NEG_INF)


def check_supported(block_sizes, interpret: bool, platform: str) -> None:
  """Raises :class:`UnsupportedInput` where the kernel cannot run natively."""
  if interpret:
    return
  if platform != "gpu":
    raise UnsupportedInput(f"the Pallas attention kernel lowers through Triton (GPU) or runs in "
                           f"interpret mode; not natively on {platform!r}")
  if block_sizes is not None and any(b < 16 or b & (b - 1) for b in block_sizes):
    raise UnsupportedInput(f"the Triton attention kernel needs power-of-two blocks >= 16, got "
                           f"block_sizes={tuple(block_sizes)}")


def pallas_blocks(q, k, block_sizes, interpret):
  if block_sizes is not None:
    return tuple(int(b) for b in block_sizes)
  return common.block_sizes(q.shape[1], k.shape[1], q.shape[3], q.dtype, kernels.backend(),
                            "pallas", interpret=interpret)


def forward(q, k, v, mask, q_seg, kv_seg, *, causal, scale, blocks):
  """``(out, lse)`` by the Pallas kernel; same contract as :func:`.xla.forward`."""
  from jax.experimental import pallas as pl

  interpret = kernels.pallas_interpret()
  b, lq, h, d = q.shape
  lk, hkv = k.shape[1], k.shape[2]
  g = h // hkv
  bq, bk = blocks
  lq_p, lk_p = _blocks.round_up(lq, bq), _blocks.round_up(lk, bk)
  nq, nk = lq_p // bq, lk_p // bk
  d_p = _blocks.next_power_of_2(d)
  qp = pad_axis(pad_axis(q, 1, lq_p), 3, d_p)
  kp = pad_axis(pad_axis(k, 1, lk_p), 3, d_p)
  vp = pad_axis(pad_axis(v, 1, lk_p), 3, d_p)
  has_seg, has_mask = q_seg is not None, mask is not None

  args = [qp, kp, vp]
  batched = [True, True, True]
  in_specs = [
      pl.BlockSpec((None, bq, None, d_p), lambda i, bi, hi: (bi, i, hi, 0)),
      pl.BlockSpec((None, lk_p, None, d_p), lambda i, bi, hi: (bi, 0, hi // g, 0)),
      pl.BlockSpec((None, lk_p, None, d_p), lambda i, bi, hi: (bi, 0, hi // g, 0)),
  ]
  if has_seg:
    args += [pad_axis(q_seg.astype(jnp.int32), 1, lq_p), pad_axis(kv_seg.astype(jnp.int32), 1, lk_p)]
    batched += [True, True]
    in_specs += [pl.BlockSpec((None, bq), lambda i, bi, hi: (bi, i)),
                 pl.BlockSpec((None, lk_p), lambda i, bi, hi: (bi, 0))]
  if has_mask:
    mb, mh = mask.shape[0], mask.shape[1]
    args.append(pad_axis(pad_axis(mask.astype(jnp.int8), 2, lq_p), 3, lk_p))
    batched.append(mb == b)
    in_specs.append(pl.BlockSpec(
        (None, None, bq, lk_p),
        lambda i, bi, hi: (bi if mb != 1 else 0, hi if mh != 1 else 0, i, 0)))
  kernel = functools.partial(_kernel, has_seg=has_seg, has_mask=has_mask, causal=bool(causal),
                             scale=float(scale), bq=bq, bk=bk, nk=nk, lk=lk, lk_p=lk_p)
  itemsize = jnp.dtype(q.dtype).itemsize

  def call(*arrays):
    nb = arrays[0].shape[0]
    return pl.pallas_call(
        kernel,
        grid=(nq, nb, h),
        in_specs=in_specs,
        out_specs=[pl.BlockSpec((None, bq, None, d_p), lambda i, bi, hi: (bi, i, hi, 0)),
                   pl.BlockSpec((None, None, bq), lambda i, bi, hi: (bi, hi, i))],
        out_shape=[jax.ShapeDtypeStruct((nb, lq_p, h, d_p), q.dtype),
                   jax.ShapeDtypeStruct((nb, h, lq_p), F32)],
        interpret=interpret,
        cost_estimate=pl.CostEstimate(
            flops=4 * nb * h * lq_p * lk_p * d_p, transcendentals=nb * h * lq_p * lk_p,
            bytes_accessed=itemsize * nb * (2 * lq_p * h + 2 * nq * lk_p * hkv) * d_p),
        name="attention_fwd",
    )(*arrays)

  out, lse = kernels.batch_shard_map(call, tuple(args), batched=tuple(batched),
                                     out_batched=(True, True), batch_size=b)
  return out[:, :lq, :, :d], lse[:, :, :lq]


def attention(q, k, v, mask, q_seg, kv_seg, *, causal, scale, block_sizes=None):
  """Pallas forward kernel (interpret mode on CPU) + the blocked XLA backward."""
  interpret = kernels.pallas_interpret()
  check_supported(block_sizes, interpret, kernels.backend())
  fwd_blocks = pallas_blocks(q, k, block_sizes, interpret)
  bwd_blocks = xla.xla_blocks(q, k, block_sizes)
  return xla.flash_attention(q, k, v, mask, q_seg, kv_seg, causal, scale, forward, fwd_blocks,
                             bwd_blocks)


__all__ = ["attention", "check_supported", "forward"]
