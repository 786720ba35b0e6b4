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
    j0 = pl.multiple_of(j * bk, bk)
    kt = k_ref[pl.ds(j0, bk), :]
    vt = v_ref[pl.ds(j0, bk), :]
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
    return online_step(q, kt, vt, valid, carry, scale)

  if causal:
    hi = jnp.minimum(nk, lax.div((i + 1) * bq + bk - 1, bk))
  else:
    hi = nk
  finish(o_ref, lse_ref, lax.fori_loop(0, hi, body, initial_carry(q)))


# -- pieces shared with the block-sparse kernels (ops/_block_sparse_attention/pallas.py) ------


def online_step(q, kt, vt, valid, carry, scale):
  """One key tile of the online softmax: ``carry = (acc [rows, D], m [rows], l [rows])`` (f32)
  updated with the scores of ``q [rows, D]`` against ``kt [bk, D]``; ``valid [rows, bk]`` (or
  ``None``: every pair) masks scores to ``-inf``. The running max is shifted by zero while every
  key so far is masked, and value rows no query attends are zeroed (so a ``NaN`` in a padded or
  masked value row cannot reach the output through ``0 * NaN``)."""
  acc, m_prev, l_prev = carry
  s = lax.dot_general(q, kt, _NT, preferred_element_type=F32) * scale
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


def initial_carry(q):
  """The online-softmax state before the first key tile of the query tile ``q [rows, D]``."""
  rows = q.shape[0]
  return jnp.zeros(q.shape, F32), jnp.full((rows,), NEG_INF, F32), jnp.zeros((rows,), F32)


def finish(o_ref, lse_ref, carry):
  """Writes ``out = acc / l`` and ``lse = m + log l``; rows that attended nothing get ``0`` and
  ``-inf``."""
  acc, m, l = carry
  attended = l > 0
  l_safe = jnp.where(attended, l, 1.0)
  o_ref[...] = (acc / l_safe[:, None]).astype(o_ref.dtype)
  lse_ref[...] = jnp.where(attended, m + jnp.log(l_safe), NEG_INF)


def triton_check(what: str, block_sizes, interpret: bool, platform: str) -> None:
  """Raises :class:`UnsupportedInput` where the Pallas kernels of ``what`` cannot run natively:
  they lower through Triton only (GPU, power-of-two blocks >= 16) or run in interpret mode."""
  if interpret:
    return
  if platform != "gpu":
    raise UnsupportedInput(f"{what}: the Pallas kernels lower through Triton (GPU) or run in "
                           f"interpret mode; not natively on {platform!r}")
  if block_sizes is not None and any(b < 16 or b & (b - 1) for b in block_sizes):
    raise UnsupportedInput(f"{what}: the Triton kernels need power-of-two blocks >= 16, got "
                           f"block_sizes={tuple(block_sizes)}")


def query_tiled_call(kernel, args, in_specs, *, batch, heads, blocks, padded, dtype, cost, name,
                     batched=None):
  """Runs ``kernel`` on the grid ``(query blocks, batch, heads)`` with the outputs
  ``out [B, Lq_p, H, D_p]`` (``dtype``) and ``lse [B, H, Lq_p]`` (f32), one ``[bq, D_p]`` /
  ``[bq]`` tile per program, inside :func:`kernels.batch_shard_map` (``batched``: which
  arguments carry the batch axis, default all); ``padded = (Lq_p, D_p)``, ``blocks = (bq, bk)``,
  ``cost(nb)`` the ``(flops, transcendentals, bytes)`` of a batch of ``nb``."""
  from jax.experimental import pallas as pl

  bq = blocks[0]
  lq_p, d_p = padded

  def call(*arrays):
    nb = arrays[0].shape[0]
    flops, transcendentals, nbytes = cost(nb)
    return pl.pallas_call(
        kernel,
        grid=(lq_p // bq, nb, heads),
        in_specs=in_specs,
        out_specs=[pl.BlockSpec((None, bq, None, d_p), lambda i, bi, hi: (bi, i, hi, 0)),
                   pl.BlockSpec((None, None, bq), lambda i, bi, hi: (bi, hi, i))],
        out_shape=[jax.ShapeDtypeStruct((nb, lq_p, heads, d_p), dtype),
                   jax.ShapeDtypeStruct((nb, heads, lq_p), F32)],
        interpret=kernels.pallas_interpret(),
        cost_estimate=pl.CostEstimate(flops=flops, transcendentals=transcendentals,
                                      bytes_accessed=nbytes),
        name=name,
    )(*arrays)

  batched = (True,) * len(args) if batched is None else tuple(batched)
  return kernels.batch_shard_map(call, tuple(args), batched=batched, out_batched=(True, True),
                                 batch_size=batch)


def check_supported(block_sizes, interpret: bool, platform: str) -> None:
  """Raises :class:`UnsupportedInput` where the kernel cannot run natively."""
  triton_check("attention kernel", block_sizes, interpret, platform)


def pallas_blocks(q, k, block_sizes, interpret):
  if block_sizes is not None:
    return tuple(int(b) for b in block_sizes)
  return common.block_sizes(q.shape[1], k.shape[1], q.shape[3], q.dtype, kernels.backend(),
                            "pallas", interpret=interpret)


def forward(q, k, v, mask, q_seg, kv_seg, *, causal, scale, blocks):
  """``(out, lse)`` by the Pallas kernel; same contract as :func:`.xla.forward`."""
  from jax.experimental import pallas as pl

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

  def cost(nb):
    return (4 * nb * h * lq_p * lk_p * d_p, nb * h * lq_p * lk_p,
            itemsize * nb * (2 * lq_p * h + 2 * nq * lk_p * hkv) * d_p)

  out, lse = query_tiled_call(kernel, args, in_specs, batch=b, heads=h, blocks=blocks,
                              padded=(lq_p, d_p), dtype=q.dtype, cost=cost,
                              name="attention_fwd", batched=batched)
  return out[:, :lq, :, :d], lse[:, :, :lq]


def attention(q, k, v, mask, q_seg, kv_seg, *, causal, scale, block_sizes=None):
  """Pallas forward kernel (interpret mode on CPU) + the blocked XLA backward."""
  interpret = kernels.pallas_interpret()
  check_supported(block_sizes, interpret, kernels.backend())
  fwd_blocks = pallas_blocks(q, k, block_sizes, interpret)
  bwd_blocks = xla.xla_blocks(q, k, block_sizes)
  return xla.flash_attention(q, k, v, mask, q_seg, kv_seg, causal, scale, forward, fwd_blocks,
                             bwd_blocks)


__all__ = ["attention", "check_supported", "finish", "forward", "initial_carry", "online_step",
           "query_tiled_call", "triton_check"]
