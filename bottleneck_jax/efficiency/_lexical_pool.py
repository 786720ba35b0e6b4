"""Implementations of the fused lexical max-pool (SPLADE / Sparton / LexLIP head).

Private module: the public entry point is :func:`bottleneck_jax.efficiency.lexical_max_pool`
which validates its inputs, flattens leading batch dims and calls :data:`LEXICAL_MAX_POOL`.

Every implementation here takes ``(h [B,L,d], w [V,d], bias [V] f32, mask [B,L] bool, *,
activation, block_size)`` with ``h`` and ``w`` already cast to one compute dtype, and returns
``(y [B,V] f32, idx [B,V] int32)``. ``idx`` is the first position of the maximum raw logit over the
unmasked positions, ``-1`` for a row whose positions are all masked.

Because the activations are monotone non-decreasing, ``max_l f(z_l) = f(max_l z_l)``: the fused
paths reduce the raw logits ``z = h W^T + b`` and apply ``f`` once to ``[B,V]``. The backward
pass uses only the saved output ``y`` and ``idx`` (no logit recompute):

* ``g = ybar * f'(m)``: ``exp(-y) * 1[y > 0]`` for ``log1p_relu``, ``1[y > 0]`` for ``relu``,
  ``1[idx >= 0]`` for ``identity``;
* ``dz[b, l, v] = g[b, v] * 1[l = idx[b, v]]`` (one non-zero per ``(b, v)``), hence
  ``dW_v = sum_b g_bv h[b, idx_bv]``, ``dh[b, l] = sum_{v: idx_bv = l} g_bv W_v``,
  ``db_v = sum_b g_bv``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from bottleneck_jax import kernels
from bottleneck_jax.kernels import blocks
from bottleneck_jax.kernels.dispatch import UnsupportedInput

ACTIVATIONS = ("log1p_relu", "relu", "identity")
_NEG_INF = float("-inf")
_DEFAULT_XLA_BLOCK = 2048


# ------------------------------------------------------------------------------------------------
# Activation and its derivative, on the pooled [B, V] raw maximum.
# ------------------------------------------------------------------------------------------------


def activate(m: jax.Array, activation: str) -> jax.Array:
  """``f(m)`` for the pooled raw maximum ``m`` (``-inf`` for an empty row -> 0)."""
  if activation == "identity":
    return jnp.where(m == _NEG_INF, 0.0, m)
  r = jnp.maximum(m, 0.0)
  return jnp.log1p(r) if activation == "log1p_relu" else r


def activation_grad(y: jax.Array, idx: jax.Array, ybar: jax.Array, activation: str) -> jax.Array:
  """``g = ybar * f'(m)`` written with the saved output ``y`` only (f32 ``[B, V]``)."""
  ybar = ybar.astype(jnp.float32)
  if activation == "log1p_relu":
    # y = log1p(m) for m > 0, so f'(m) = 1 / (1 + m) = exp(-y).
    return jnp.where(y > 0, ybar * jnp.exp(-y), 0.0)
  if activation == "relu":
    return jnp.where(y > 0, ybar, 0.0)
  return jnp.where(idx >= 0, ybar, 0.0)


# ------------------------------------------------------------------------------------------------
# Reference: plain jnp, materialises [B, L, V], autodiff.
# ------------------------------------------------------------------------------------------------


def reference(h, w, bias, mask, *, activation, block_size=None, return_indices=False):
  """The unfused head: ``z = h W^T + b``, mask to ``-inf``, activation, max over L."""
  del block_size
  z = jnp.einsum("bld,vd->blv", h, w, preferred_element_type=jnp.float32) + bias
  z = jnp.where(mask[:, :, None], z, _NEG_INF)
  if activation == "identity":
    m = jnp.max(z, axis=1)
    y = jnp.where(m == _NEG_INF, 0.0, m)
  else:
    a = jax.nn.relu(z)
    y = jnp.max(jnp.log1p(a) if activation == "log1p_relu" else a, axis=1)
  zs = lax.stop_gradient(z)
  idx = jnp.argmax(zs, axis=1).astype(jnp.int32)
  idx = jnp.where(jnp.max(zs, axis=1) == _NEG_INF, -1, idx)
  return y, idx


# ------------------------------------------------------------------------------------------------
# Dense one-hot backward, shared by the chunked XLA and the Pallas implementations.
# ------------------------------------------------------------------------------------------------


def _vocab_blocks(v: int, vb: int) -> tuple[int, int]:
  nfull = v // vb
  return nfull, v - nfull * vb


def _replicated_if_explicit():
  """``P()`` under an Explicit mesh (a contraction over the sharded batch must name its output
  sharding there), else ``None``."""
  if kernels.is_explicit(kernels.current_mesh()):
    return jax.sharding.PartitionSpec()
  return None


def _dense_backward(h, w, y, idx, ybar, *, activation, vb):
  """``(dh f32 [B,L,d], dw [V,d] in w.dtype, db f32 [V])`` by per-block one-hot GEMMs."""
  b_, l_, _ = h.shape
  v_ = w.shape[0]
  g = activation_grad(y, idx, ybar, activation)  # [B, V] f32
  db = jnp.sum(g, axis=0)
  pos = lax.broadcasted_iota(jnp.int32, (1, l_, 1), 1)

  def block(w_blk, g_blk, i_blk):
    onehot = jnp.where(pos == i_blk[:, None, :], g_blk[:, None, :], 0.0).astype(h.dtype)
    dh = jnp.einsum("blv,vd->bld", onehot, w_blk, preferred_element_type=jnp.float32)
    dw = jnp.einsum("blv,bld->vd", onehot, h, preferred_element_type=jnp.float32,
                    out_sharding=_replicated_if_explicit())
    return dh, dw.astype(w.dtype)

  nfull, tail = _vocab_blocks(v_, vb)
  dh = None
  dw_parts = []
  if nfull:
    g_blocks = jnp.moveaxis(g[:, :nfull * vb].reshape(b_, nfull, vb), 1, 0)
    i_blocks = jnp.moveaxis(idx[:, :nfull * vb].reshape(b_, nfull, vb), 1, 0)

    def body(dh_acc, xs):
      j, g_blk, i_blk = xs
      w_blk = lax.dynamic_slice_in_dim(w, j * vb, vb, axis=0)
      dh_j, dw_j = block(w_blk, g_blk, i_blk)
      return dh_acc + dh_j, dw_j

    dh0 = jnp.zeros_like(h, dtype=jnp.float32)
    dh, dw_full = lax.scan(body, dh0, (jnp.arange(nfull), g_blocks, i_blocks))
    dw_parts.append(dw_full.reshape(nfull * vb, w.shape[1]))
  if tail:
    dh_t, dw_t = block(w[nfull * vb:], g[:, nfull * vb:], idx[:, nfull * vb:])
    dh = dh_t if dh is None else dh + dh_t
    dw_parts.append(dw_t)
  dw = dw_parts[0] if len(dw_parts) == 1 else jnp.concatenate(dw_parts, axis=0)
  del b_, l_
  return dh, dw, db


# ------------------------------------------------------------------------------------------------
# Chunked XLA: lax.scan over vocabulary blocks, custom_vjp saving (y, idx).
# ------------------------------------------------------------------------------------------------


def _xla_forward_raw(h, w, bias, mask, vb):
  """Raw pooled maximum ``m`` (f32, -inf for empty rows) and ``idx`` by vocabulary blocks."""
  b_ = h.shape[0]
  v_ = w.shape[0]

  def block(w_blk, b_blk):
    z = jnp.einsum("bld,vd->blv", h, w_blk, preferred_element_type=jnp.float32) + b_blk
    z = jnp.where(mask[:, :, None], z, _NEG_INF)
    m = jnp.max(z, axis=1)
    i = jnp.argmax(z, axis=1).astype(jnp.int32)  # first occurrence of the maximum
    return m, jnp.where(m == _NEG_INF, -1, i)

  nfull, tail = _vocab_blocks(v_, vb)
  ms, idxs = [], []
  if nfull:
    def body(_, j):
      w_blk = lax.dynamic_slice_in_dim(w, j * vb, vb, axis=0)
      b_blk = lax.dynamic_slice_in_dim(bias, j * vb, vb, axis=0)
      return None, block(w_blk, b_blk)

    _, (m_f, i_f) = lax.scan(body, None, jnp.arange(nfull))
    ms.append(jnp.moveaxis(m_f, 0, 1).reshape(b_, nfull * vb))
    idxs.append(jnp.moveaxis(i_f, 0, 1).reshape(b_, nfull * vb))
  if tail:
    m_t, i_t = block(w[nfull * vb:], bias[nfull * vb:])
    ms.append(m_t)
    idxs.append(i_t)
  if len(ms) == 1:
    return ms[0], idxs[0]
  return jnp.concatenate(ms, axis=1), jnp.concatenate(idxs, axis=1)


def _xla_block(v: int, block_size: int | None) -> int:
  return max(1, min(v, block_size or _DEFAULT_XLA_BLOCK))


def xla(h, w, bias, mask, *, activation, block_size=None, return_indices=False):
  """Chunked XLA implementation (``lax.scan`` over vocabulary blocks + a static tail)."""
  del return_indices
  return _pool(h, w, bias, mask, activation, "xla", _xla_block(w.shape[0], block_size))


# ------------------------------------------------------------------------------------------------
# Pallas forward kernel (grid over (V blocks, B)); backward = the dense XLA backward (v1).
# ------------------------------------------------------------------------------------------------


def _pallas_kernel(h_ref, mask_ref, w_ref, b_ref, m_ref, idx_ref, *, n_l, n_d, bl, bd, bv, v,
                   masked_load):
  from jax.experimental import pallas as pl

  j = pl.program_id(0)
  cols = j * bv + lax.broadcasted_iota(jnp.int32, (bv,), 0)
  col_ok = cols < v
  bias = b_ref[...].astype(jnp.float32)

  def load_w(k0):
    if masked_load:
      from jax.experimental.pallas import triton as plgpu
      return plgpu.load(w_ref.at[:, pl.ds(k0, bd)], mask=col_ok[:, None], other=0.0)
    return w_ref[:, pl.ds(k0, bd)]

  def l_body(t, carry):
    best, arg = carry
    l0 = pl.multiple_of(t * bl, bl)

    def d_body(k, acc):
      k0 = pl.multiple_of(k * bd, bd)
      hk = h_ref[pl.ds(l0, bl), pl.ds(k0, bd)]
      wk = load_w(k0)
      return acc + lax.dot_general(hk, wk, (((1,), (1,)), ((), ())),
                                   preferred_element_type=jnp.float32)

    acc = lax.fori_loop(0, n_d, d_body, jnp.zeros((bl, bv), jnp.float32))
    z = acc + bias[None, :]
    valid = mask_ref[pl.ds(l0, bl)] != 0
    z = jnp.where(valid[:, None] & col_ok[None, :], z, _NEG_INF)
    tmax = jnp.max(z, axis=0)
    rows = l0 + lax.broadcasted_iota(jnp.int32, (bl, bv), 0)
    # First row attaining the tile max (portable replacement of argmax). A NaN logit makes
    # the max NaN (as jnp.max / jnp.argmax do): pick the first NaN row and keep it.
    tnan = jnp.isnan(tmax)
    hit = jnp.where(tnan[None, :], jnp.isnan(z), z == tmax[None, :])
    targ = jnp.min(jnp.where(hit, rows, jnp.int32(2**30)), axis=0)
    upd = (tmax > best) | (tnan & ~jnp.isnan(best))  # strict: the first maximum over L wins
    return jnp.where(upd, tmax, best), jnp.where(upd, targ, arg)

  init = (jnp.full((bv,), _NEG_INF, jnp.float32), jnp.full((bv,), -1, jnp.int32))
  best, arg = lax.fori_loop(0, n_l, l_body, init)
  m_ref[...] = best
  idx_ref[...] = arg


def _pallas_blocks(l_, d_, v_, block_size, interpret):
  """``(bl, bd, bv)`` tile sizes; raises UnsupportedInput when the GPU cannot tile."""
  if not interpret and kernels.backend() == "tpu":
    raise UnsupportedInput("the Pallas lexical_max_pool kernel is validated on GPU (Triton) "
                              "and in interpret mode only, not on TPU (Mosaic)")
  if interpret:
    bd = next(c for c in (64, 32, 16, 8, 4, 2, 1) if d_ % c == 0)
    bl = min(32, blocks.next_power_of_2(l_))
    bv = blocks.next_power_of_2(block_size or min(128, v_))
  else:
    if d_ % 16:
      raise UnsupportedInput(f"pallas lexical_max_pool needs d % 16 == 0 on "
                                f"{kernels.backend()}, got d={d_}")
    bd = next(c for c in (64, 32, 16) if d_ % c == 0)
    bl = max(16, min(64, blocks.next_power_of_2(l_)))
    bv = max(16, blocks.next_power_of_2(block_size or 128))
  return bl, bd, bv


def _pallas_forward_raw(h, w, bias, mask, block_size):
  from jax.experimental import pallas as pl

  interpret = kernels.pallas_interpret()
  b_, l_, d_ = h.shape
  v_ = w.shape[0]
  bl, bd, bv = _pallas_blocks(l_, d_, v_, block_size, interpret)
  l_pad = blocks.round_up(l_, bl)
  n_v = blocks.cdiv(v_, bv)
  v_pad = n_v * bv
  # h and the mask are small: pad L to whole tiles (padded positions are masked out). The bias
  # is padded to whole vocabulary blocks; W is never copied (masked loads on GPU).
  if l_pad != l_:
    h = jnp.pad(h, ((0, 0), (0, l_pad - l_), (0, 0)))
    mask = jnp.pad(mask, ((0, 0), (0, l_pad - l_)))
  mask_i = mask.astype(jnp.int32)
  bias_p = jnp.pad(bias, (0, v_pad - v_)) if v_pad != v_ else bias
  masked_load = (not interpret) and kernels.backend() == "gpu" and v_pad != v_
  kernel = functools.partial(_pallas_kernel, n_l=l_pad // bl, n_d=d_ // bd, bl=bl, bd=bd,
                             bv=bv, v=v_, masked_load=masked_load)
  itemsize = jnp.dtype(h.dtype).itemsize

  def call(h_, mask_, w_, b_p):
    nb = h_.shape[0]
    return pl.pallas_call(
        kernel,
        grid=(n_v, nb),
        in_specs=[
            pl.BlockSpec((None, l_pad, d_), lambda j, b: (b, 0, 0)),
            pl.BlockSpec((None, l_pad), lambda j, b: (b, 0)),
            pl.BlockSpec((bv, d_), lambda j, b: (j, 0)),
            pl.BlockSpec((bv,), lambda j, b: (j,)),
        ],
        out_specs=[
            pl.BlockSpec((None, bv), lambda j, b: (b, j)),
            pl.BlockSpec((None, bv), lambda j, b: (b, j)),
        ],
        out_shape=[jax.ShapeDtypeStruct((nb, v_pad), jnp.float32),
                   jax.ShapeDtypeStruct((nb, v_pad), jnp.int32)],
        interpret=interpret,
        cost_estimate=pl.CostEstimate(
            flops=2 * nb * l_pad * d_ * v_pad, transcendentals=0,
            bytes_accessed=itemsize * (n_v * nb * l_pad * d_ + nb * v_pad * d_) + 8 * nb * v_pad),
        name="lexical_max_pool_fwd",
    )(h_, mask_, w_, b_p)

  m, idx = kernels.batch_shard_map(call, (h, mask_i, w, bias_p), batched=(True, True, False, False),
                                   out_batched=(True, True), batch_size=b_)
  if v_pad != v_:
    m, idx = m[:, :v_], idx[:, :v_]
  return m, idx


def pallas(h, w, bias, mask, *, activation, block_size=None, return_indices=False):
  """Pallas forward kernel (interpret mode on CPU) + the dense chunked-XLA backward (v1)."""
  del return_indices
  return _pool(h, w, bias, mask, activation, "pallas", block_size)


# ------------------------------------------------------------------------------------------------
# The shared custom VJP: forward by the chosen kernel, residuals y and idx, dense XLA backward.


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _pool(h, w, bias, mask, activation, kernel, block):
  forward = _xla_forward_raw if kernel == "xla" else _pallas_forward_raw
  m, idx = forward(h, w, bias, mask, block)
  return activate(m, activation), idx


def _pool_fwd(h, w, bias, mask, activation, kernel, block):
  y, idx = _pool(h, w, bias, mask, activation, kernel, block)
  return (y, idx), (h, w, bias, y, idx)


def _pool_bwd(activation, kernel, block, res, cts):
  h, w, bias, y, idx = res
  ybar, _ = cts
  # The Pallas block size is a kernel tile; the XLA backward uses its own vocabulary block.
  vb = block if kernel == "xla" else _xla_block(w.shape[0], None)
  dh, dw, db = _dense_backward(h, w, y, idx, ybar, activation=activation, vb=vb)
  return dh.astype(h.dtype), dw, db.astype(bias.dtype), None


_pool.defvjp(_pool_fwd, _pool_bwd)


LEXICAL_MAX_POOL = kernels.Op("lexical_max_pool",
                              {"reference": reference, "xla": xla, "pallas": pallas})
