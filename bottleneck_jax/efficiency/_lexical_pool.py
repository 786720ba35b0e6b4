"""Implementations of the fused lexical max-pool (SPLADE / Sparton / LexLIP head).

Private module: the public entry point is :func:`bottleneck_jax.efficiency.lexical_max_pool`
which validates its inputs, flattens leading batch dims and calls :data:`LEXICAL_MAX_POOL`.

Every implementation here takes ``(h [B,L,d], w [V,d], bias [V] f32, mask [B,L] bool, *,
activation, block_size)`` with ``h`` and ``w`` already cast to one compute dtype, and returns
``(y [B,V] f32, idx [B,V] int32)``. ``idx`` is the first position of the maximum raw logit over the
unmasked positions, ``-1`` for a row whose positions are all masked (or whose logits are all
``-inf``, e.g. a ``-inf`` bias); such entries give ``y = 0`` and zero gradient.

Because the activations are monotone non-decreasing, ``max_l f(z_l) = f(max_l z_l)``: the fused
paths reduce the raw logits ``z = h W^T + b`` and apply ``f`` once to ``[B,V]``. Besides ``y`` and
``idx`` the forward saves a tie code per ``(b, v)`` (int32 ``[B,V]``: ``-1`` unique maximum, the
second position of a two-way tie, ``-2`` for three or more). The backward recomputes no logits:

* ``g = ybar * f'(m)``: ``exp(-y) * 1[y > 0]`` for ``log1p_relu``, ``1[y > 0]`` for ``relu``,
  ``1[idx >= 0]`` for ``identity`` (as autodiff of the plain head: ``relu'(0) = 0``);
* ``dz[b, l, v] = g[b, v] / c_bv`` at each of the ``c_bv`` positions attaining the maximum raw
  logit (``jnp.max``'s VJP splits equally among ties), so with ``c = 1``:
  ``dW_v = sum_b g_bv h[b, idx_bv]`` (a gather of ``[B, vb, d]`` rows per vocabulary block),
  ``dh[b, l] = sum_{v: idx_bv = l} g_bv W_v`` (a scatter-add), ``db_v = sum_b g_bv``. That is
  ``O(B V d)`` work instead of the ``O(B L V d)`` of autodiff through ``[B, L, V]``.
  Two-way ties are added sparsely (up to ``_TIE_CAPACITY`` of them, compacted); a tie among
  three or more positions, or more two-way ties, switches (``lax.cond``) to an exact dense
  backward that recomputes the logits by blocks.

Ties are exact ties of the f32 raw logits (duplicate token rows, bf16 inputs rounded to the same
row). Distinct logits that ``log1p`` rounds to the same f32 value are *not* ties here: the plain
head splits their gradient, the fused paths give it to the larger logit (autodiff of
``f(max_l z)``). ``reference`` is the plain head.

NaN: masked positions are excluded by selects (``jnp.where``), never by multiplying by the
mask, so a NaN hidden state at a masked position reaches no output or gradient. A NaN logit at an
unmasked position propagates to ``y`` (as ``jnp.max`` does); ``idx`` is its first NaN position.

Under a mesh the forward and the backward run per device (``jax.shard_map`` over the batch; the
weight and bias gradients are ``psum``-ed).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from bottleneck_jax import kernels
from bottleneck_jax.kernels import blocks
from bottleneck_jax.kernels.dispatch import UnsupportedInput

ACTIVATIONS = ("log1p_relu", "relu", "identity")
_NEG_INF = float("-inf")


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
  del block_size, return_indices
  # Select, never multiply by the mask: a NaN at a masked position reaches no output/gradient.
  h = jnp.where(mask[:, :, None], h, jnp.zeros((), h.dtype))
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
# Block sizes (one helper, measured) and per-device execution under a mesh.
# ------------------------------------------------------------------------------------------------

_FWD_TILE_BYTES = 8 * 2 ** 20  # one f32 logit tile [B, L, vb] of the forward
_BWD_TILE_BYTES = 4 * 2 ** 20  # one gathered f32 tile [B, vb, d] (and its updates) of the backward
_MIN_BLOCK, _MAX_BLOCK = 128, 2048
_TIE_CAPACITY = 1024  # two-way ties handled sparsely per call; more -> the dense exact backward


def _block_sizes(b: int, l_: int, d: int, v: int, block_size: int | None = None) -> tuple[int, int]:
  """``(vb_forward, vb_backward)``: vocabulary blocks of the chunked XLA forward and of the
  sparse backward (the backward's is also used after the Pallas forward).

  Each is the largest power of two whose f32 tile fits its budget (forward ``[B, L, vb]``:
  8 MiB; backward ``[B, vb, d]``: 4 MiB), clipped to ``[128, 2048]`` and to ``V``. Measured on
  a 2-core CPU (B=8, L=256, d=768, V=30522, f32, CPU seconds, best of 2):

  ====  =============  ============  =============  ============
  vb    forward time   forward temp  backward time  backward temp
  ====  =============  ============  =============  ============
  64    1.71 s         2 MiB         0.21 s         16 MiB
  128   1.52 s         4 MiB         0.21 s         17 MiB
  256   1.59 s         8 MiB         0.25 s         20 MiB
  512   1.41 s         16 MiB        0.33 s         29 MiB
  1024  1.51 s         32 MiB        0.38 s         53 MiB
  ====  =============  ============  =============  ============

  The forward is GEMM-bound and flat in vb (within the noise of a shared machine), so only its
  memory matters; the backward (gathers and scatter-adds) is fastest with small, cache-resident
  tiles. ``block_size`` (when given) sets both.
  """
  if block_size is not None:
    vb = max(1, min(v, block_size))
    return vb, vb

  def fit(per_column, budget):
    vb = max(1, budget // max(1, per_column))
    vb = 1 << (vb.bit_length() - 1)  # power of two
    return max(1, min(v, max(_MIN_BLOCK, min(_MAX_BLOCK, vb))))

  return fit(4 * b * l_, _FWD_TILE_BYTES), fit(4 * b * d, _BWD_TILE_BYTES)


def _mesh_axes(batch_size: int):
  """``(mesh, axes)``: the active mesh and the axes the batch is split over (``()``: none)."""
  mesh = kernels.current_mesh()
  if mesh is None:
    return None, ()
  axes = kernels.batch_axes(mesh, batch_size)
  if not axes or math.prod(mesh.shape[a] for a in axes) == 1:
    axes = ()
  return mesh, axes


def _per_device(fn, args, *, batched, out_kinds, batch_size):
  """Calls ``fn(*args)``; under a mesh, inside ``jax.shard_map`` over the batch axis.

  ``out_kinds`` per output: ``"batched"`` (axis 0 is the batch), ``"sum"`` (a partial sum over
  the local rows, ``psum``-ed over the batch axes) or ``"same"`` (identical on every device).
  """
  mesh, axes = _mesh_axes(batch_size)
  if mesh is None:
    return fn(*args)
  spec_b = P(axes if axes else None)
  in_specs = tuple(spec_b if b else P() for b in batched)
  out_specs = tuple(spec_b if k == "batched" else P() for k in out_kinds)
  if kernels.is_explicit(mesh):
    args = tuple(jax.sharding.reshard(a, s) for a, s in zip(args, in_specs))

  def body(*a):
    outs = fn(*a)
    return tuple(lax.psum(o, axes) if k == "sum" and axes else o
                 for o, k in zip(outs, out_kinds))

  return jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                       check_vma=False)(*args)


def _block_starts(v: int, vb: int):
  """Start of each of the ``cdiv(v, vb)`` vocabulary blocks: ``min(j * vb, v - vb)``, so the
  last block overlaps its predecessor instead of running past ``v`` (no tail, no padding)."""
  n = blocks.cdiv(v, vb)
  return n, jnp.minimum(jnp.arange(n, dtype=jnp.int32) * vb, v - vb)


# ------------------------------------------------------------------------------------------------
# Max, first/last argmax and tie count of one logit tile.
# ------------------------------------------------------------------------------------------------


def _tile_stats(z):
  """``z [B, L, n]`` (masked positions already ``-inf``) -> ``(m, idx, tie)`` over L.

  ``m`` is the maximum (NaN if any NaN), ``idx`` the first position attaining it (the first NaN
  for a NaN maximum; ``-1`` when ``m = -inf``), and ``tie`` the tie code: ``-1`` for a unique
  maximum (or ``m = -inf`` / NaN), the last tied position when exactly two positions tie, and
  ``-2`` for three or more.
  """
  l_ = z.shape[1]
  m = jnp.max(z, axis=1)
  m_nan = jnp.isnan(m)
  eq = jnp.where(m_nan[:, None, :], jnp.isnan(z), z == m[:, None, :])
  pos = lax.broadcasted_iota(jnp.int32, z.shape, 1)
  first = jnp.min(jnp.where(eq, pos, l_), axis=1)
  last = jnp.max(jnp.where(eq, pos, -1), axis=1)
  count = jnp.sum(eq.astype(jnp.int32), axis=1)
  empty = m == _NEG_INF
  idx = jnp.where(empty, -1, first)
  tie = jnp.where(empty | m_nan | (count <= 1), -1, jnp.where(count == 2, last, -2))
  return m, idx.astype(jnp.int32), tie.astype(jnp.int32)


# ------------------------------------------------------------------------------------------------
# Chunked XLA forward: lax.scan over vocabulary blocks, outputs written in place.
# ------------------------------------------------------------------------------------------------


def _xla_forward_raw(h, w, bias, mask, vb):
  """``(m f32, idx int32, tie int32)``, each ``[B, V]`` (see :func:`_tile_stats`)."""
  b_ = h.shape[0]
  v_ = w.shape[0]

  def tile(w_blk, b_blk):
    z = jnp.einsum("bld,vd->blv", h, w_blk, preferred_element_type=jnp.float32) + b_blk
    return _tile_stats(jnp.where(mask[:, :, None], z, _NEG_INF))

  n, starts = _block_starts(v_, vb)
  if n == 1:
    return tile(w, bias)

  def body(carry, s):
    stats = tile(lax.dynamic_slice_in_dim(w, s, vb, axis=0),
                 lax.dynamic_slice_in_dim(bias, s, vb, axis=0))
    return tuple(lax.dynamic_update_slice_in_dim(c, x, s, axis=1)
                 for c, x in zip(carry, stats)), None

  init = (jnp.zeros((b_, v_), jnp.float32), jnp.zeros((b_, v_), jnp.int32),
          jnp.zeros((b_, v_), jnp.int32))
  out, _ = lax.scan(body, init, starts)
  return out


def xla(h, w, bias, mask, *, activation, block_size=None, return_indices=False):
  """Chunked XLA implementation (``lax.scan`` over vocabulary blocks) + the sparse backward."""
  del return_indices
  return _pool(h, w, bias, mask, activation, "xla", block_size)


# ------------------------------------------------------------------------------------------------
# Sparse backward (shared by the XLA and Pallas forwards): gathers and scatter-adds at the argmax.
# ------------------------------------------------------------------------------------------------


def _sparse_backward(h, w, bias, mask, y, idx, tie, ybar, *, activation, vb):
  """``(dh f32 [B,L,d], dw [V,d] in w.dtype, db f32 [V])`` from the saved ``(y, idx, tie)``.

  Each ``(b, v)`` sends ``g_bv`` to its argmax ``idx_bv`` (halved between ``idx`` and the
  second position of a two-way tie): ``dW_v = sum_b g_bv h[b, idx_bv]`` (a gather of ``[B, vb,
  d]`` rows per vocabulary block) and ``dh[b, idx_bv] += g_bv W_v`` (a scatter-add). A tie among
  three or more positions, or more than ``_TIE_CAPACITY`` two-way ties, switches (``lax.cond``)
  to :func:`_dense_exact_backward`.
  """
  b_, l_, d_ = h.shape
  v_ = w.shape[0]
  g = activation_grad(y, idx, ybar, activation)  # [B, V] f32, 0 for empty rows and y <= 0
  db = jnp.sum(g, axis=0)
  live = g != 0
  pair = (tie >= 0) & live
  gs = jnp.where(pair, g * 0.5, g)
  i0 = jnp.maximum(idx, 0)
  brow = lax.broadcasted_iota(jnp.int32, (b_, 1), 0)
  n, starts = _block_starts(v_, vb)

  def block(dh, dw, j, s):
    w_blk = lax.dynamic_slice_in_dim(w, s, vb, axis=0).astype(jnp.float32)
    g_blk = lax.dynamic_slice_in_dim(gs, s, vb, axis=1)
    i_blk = lax.dynamic_slice_in_dim(i0, s, vb, axis=1)
    on = g_blk != 0
    # Select (never multiply by zero): a masked position's NaN row is never read into dW.
    hs = jnp.take_along_axis(h, i_blk[:, :, None], axis=1).astype(jnp.float32)
    hs = jnp.where(on[:, :, None], hs, 0.0)
    dw_blk = jnp.einsum("bv,bvd->vd", g_blk, hs)
    dw = lax.dynamic_update_slice_in_dim(dw, dw_blk.astype(dw.dtype), s, axis=0)
    # Columns before j * vb belong to the previous block (the last block overlaps it).
    fresh = (s + lax.broadcasted_iota(jnp.int32, (1, vb), 1)) >= j * vb
    on = on & fresh
    upd = jnp.where(on[:, :, None], g_blk[:, :, None] * w_blk[None], 0.0)
    dh = dh.at[brow, i_blk].add(upd, mode="promise_in_bounds")
    return dh, dw

  def sparse(_):
    dh = jnp.zeros((b_, l_, d_), jnp.float32)
    dw = jnp.zeros(w.shape, w.dtype)
    if n == 1:
      dh, dw = block(dh, dw, 0, 0)
    else:
      def body(carry, xs):
        return block(*carry, *xs), None
      (dh, dw), _ = lax.scan(body, (dh, dw), (jnp.arange(n, dtype=jnp.int32), starts))
    # The second positions of two-way ties: at most _TIE_CAPACITY of them, compacted.
    cap = min(b_ * v_, _TIE_CAPACITY)
    flat = jnp.nonzero(pair.reshape(-1), size=cap, fill_value=0)[0]
    ok = jnp.arange(cap) < n_pairs
    bk, vk = flat // v_, flat % v_
    lk = jnp.maximum(tie.reshape(-1)[flat], 0)
    gk = jnp.where(ok, gs.reshape(-1)[flat], 0.0)
    on = (gk != 0)[:, None]
    hk = jnp.where(on, h[bk, lk].astype(jnp.float32), 0.0)
    dw = dw.at[vk].add((gk[:, None] * hk).astype(dw.dtype))
    dh = dh.at[bk, lk].add(jnp.where(on, gk[:, None] * w[vk].astype(jnp.float32), 0.0))
    return dh, dw

  def dense(_):
    return _dense_exact_backward(h, w, bias, mask, g, vb=vb)

  n_pairs = jnp.sum(pair.astype(jnp.int32))
  need_dense = jnp.any((tie == -2) & live) | (n_pairs > min(b_ * v_, _TIE_CAPACITY))
  dh, dw = lax.cond(need_dense, dense, sparse, None)
  return dh, dw, db


def _dense_exact_backward(h, w, bias, mask, g, *, vb):
  """Recomputes the logits per vocabulary block and splits ``g`` equally among *all* positions
  attaining the maximum raw logit (the rare path: a tie among three or more positions)."""
  b_, l_, d_ = h.shape
  v_ = w.shape[0]
  hm = jnp.where(mask[:, :, None], h, jnp.zeros((), h.dtype))
  n, starts = _block_starts(v_, vb)

  def block(dh, dw, j, s):
    w_blk = lax.dynamic_slice_in_dim(w, s, vb, axis=0)
    b_blk = lax.dynamic_slice_in_dim(bias, s, vb, axis=0)
    g_blk = lax.dynamic_slice_in_dim(g, s, vb, axis=1)
    z = jnp.einsum("bld,vd->blv", hm, w_blk, preferred_element_type=jnp.float32) + b_blk
    z = jnp.where(mask[:, :, None], z, _NEG_INF)
    m = jnp.max(z, axis=1, keepdims=True)
    eq = jnp.where(jnp.isnan(m), jnp.isnan(z), z == m)
    count = jnp.maximum(jnp.sum(eq.astype(jnp.float32), axis=1), 1.0)
    share = jnp.where(g_blk != 0, g_blk / count, 0.0)
    onehot = jnp.where(eq, share[:, None, :], 0.0)
    dw_blk = jnp.einsum("blv,bld->vd", onehot, hm.astype(jnp.float32))
    dw = lax.dynamic_update_slice_in_dim(dw, dw_blk.astype(dw.dtype), s, axis=0)
    fresh = (s + lax.broadcasted_iota(jnp.int32, (1, 1, vb), 2)) >= j * vb
    onehot = jnp.where(fresh, onehot, 0.0)
    dh = dh + jnp.einsum("blv,vd->bld", onehot, w_blk.astype(jnp.float32))
    return dh, dw

  dh = jnp.zeros((b_, l_, d_), jnp.float32)
  dw = jnp.zeros(w.shape, w.dtype)
  if n == 1:
    return block(dh, dw, 0, 0)

  def body(carry, xs):
    return block(*carry, *xs), None

  (dh, dw), _ = lax.scan(body, (dh, dw), (jnp.arange(n, dtype=jnp.int32), starts))
  return dh, dw


# ------------------------------------------------------------------------------------------------
# Pallas forward kernel (grid over (V blocks, B)); backward = the shared sparse backward.
# ------------------------------------------------------------------------------------------------


def _pallas_kernel(h_ref, mask_ref, w_ref, b_ref, m_ref, idx_ref, tie_ref, *, n_l, n_d, bl, bd,
                   bv, v, masked_load):
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
    best, arg, last, count = carry
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
    # First / last row attaining the tile max and their count (portable argmax). A NaN logit
    # makes the max NaN (as jnp.max / jnp.argmax do): pick the first NaN row and keep it.
    tnan = jnp.isnan(tmax)
    hit = jnp.where(tnan[None, :], jnp.isnan(z), z == tmax[None, :])
    targ = jnp.min(jnp.where(hit, rows, jnp.int32(2**30)), axis=0)
    tlast = jnp.max(jnp.where(hit, rows, -1), axis=0)
    tcount = jnp.sum(hit.astype(jnp.int32), axis=0)
    upd = (tmax > best) | (tnan & ~jnp.isnan(best))  # strict: the first maximum over L wins
    same = tmax == best
    return (jnp.where(upd, tmax, best), jnp.where(upd, targ, arg),
            jnp.where(upd | same, tlast, last),
            jnp.where(upd, tcount, jnp.where(same, count + tcount, count)))

  init = (jnp.full((bv,), _NEG_INF, jnp.float32), jnp.full((bv,), -1, jnp.int32),
          jnp.full((bv,), -1, jnp.int32), jnp.zeros((bv,), jnp.int32))
  best, arg, last, count = lax.fori_loop(0, n_l, l_body, init)
  m_ref[...] = best
  idx_ref[...] = arg
  plain = (best == _NEG_INF) | jnp.isnan(best) | (count <= 1)
  tie_ref[...] = jnp.where(plain, -1, jnp.where(count == 2, last, -2))


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
        out_specs=[pl.BlockSpec((None, bv), lambda j, b: (b, j))] * 3,
        out_shape=[jax.ShapeDtypeStruct((nb, v_pad), jnp.float32),
                   jax.ShapeDtypeStruct((nb, v_pad), jnp.int32),
                   jax.ShapeDtypeStruct((nb, v_pad), jnp.int32)],
        interpret=interpret,
        cost_estimate=pl.CostEstimate(
            flops=2 * nb * l_pad * d_ * v_pad, transcendentals=0,
            bytes_accessed=itemsize * (n_v * nb * l_pad * d_ + nb * v_pad * d_)
            + 12 * nb * v_pad),
        name="lexical_max_pool_fwd",
    )(h_, mask_, w_, b_p)

  out = call(h, mask_i, w, bias_p)  # already per device (see _forward)
  if v_pad != v_:
    out = tuple(x[:, :v_] for x in out)
  return tuple(out)




def pallas(h, w, bias, mask, *, activation, block_size=None, return_indices=False):
  """Pallas forward kernel (interpret mode on CPU) + the shared sparse XLA backward."""
  del return_indices
  return _pool(h, w, bias, mask, activation, "pallas", block_size)


# ------------------------------------------------------------------------------------------------
# The shared custom VJP: forward by the chosen kernel (per device under a mesh), residuals
# (y, idx, tie), sparse backward.
# ------------------------------------------------------------------------------------------------


def _forward(h, w, bias, mask, activation, kernel, block):
  b_, l_, d_ = h.shape
  if kernel == "xla":
    fwd = functools.partial(_xla_forward_raw, vb=_block_sizes(b_, l_, d_, w.shape[0], block)[0])
  else:
    fwd = functools.partial(_pallas_forward_raw, block_size=block)
  m, idx, tie = _per_device(fwd, (h, w, bias, mask), batched=(True, False, False, True),
                            out_kinds=("batched",) * 3, batch_size=b_)
  return activate(m, activation), idx, tie


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _pool(h, w, bias, mask, activation, kernel, block):
  y, idx, _ = _forward(h, w, bias, mask, activation, kernel, block)
  return y, idx


def _pool_fwd(h, w, bias, mask, activation, kernel, block):
  y, idx, tie = _forward(h, w, bias, mask, activation, kernel, block)
  return (y, idx), (h, w, bias, mask, y, idx, tie)


def _pool_bwd(activation, kernel, block, res, cts):
  h, w, bias, mask, y, idx, tie = res
  ybar, _ = cts
  b_, l_, d_ = h.shape
  # The Pallas block size is a kernel tile; the backward then uses its own vocabulary block.
  vb = _block_sizes(b_, l_, d_, w.shape[0], block if kernel == "xla" else None)[1]
  bwd = functools.partial(_sparse_backward, activation=activation, vb=vb)
  dh, dw, db = _per_device(bwd, (h, w, bias, mask, y, idx, tie, ybar),
                           batched=(True, False, False, True, True, True, True, True),
                           out_kinds=("batched", "sum", "sum"), batch_size=b_)
  # A cotangent must carry its primal's Explicit sharding (a 1-device mesh, where no axis splits
  # the batch; a vocabulary-sharded W or bias).
  cts_out = []
  for ct, primal in ((dh, h), (dw, w), (db, bias)):
    spec = kernels.explicit_spec(primal)
    ct = ct.astype(primal.dtype)
    cts_out.append(ct if spec is None else jax.sharding.reshard(ct, spec))
  return (*cts_out, None)


_pool.defvjp(_pool_fwd, _pool_bwd)


LEXICAL_MAX_POOL = kernels.Op("lexical_max_pool",
                              {"reference": reference, "xla": xla, "pallas": pallas})
