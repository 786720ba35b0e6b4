"""Chunked-XLA forward and backward of ``linear_logit_stats`` (private helper).

Both passes loop over the vocabulary in blocks of ``vb`` rows of ``w`` (``lax.fori_loop`` over the
``V // vb`` full blocks, sliced with ``lax.dynamic_slice_in_dim`` from the unpadded weight, plus one
static tail block), so nothing of size ``N x V`` is ever alive; the largest temporaries are a few
``N x vb`` f32 blocks and the ``N x d`` f32 ``dx`` accumulator. See the public module
``linear_cross_entropy`` for the maths.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from bottleneck_jax.kernels.sharding import explicit_spec

F32 = jnp.float32
DEFAULT_BLOCK_V = 2048

_NT = (((1,), (1,)), ((), ()))   # [n, d] x [v, d] -> [n, v]
_NN = (((1,), (0,)), ((), ()))   # [n, v] x [v, d] -> [n, d]
_TN = (((0,), (0,)), ((), ()))   # [n, v] x [n, d] -> [v, d]


def block_logits(x, w_blk, b_blk, softcap):
  """f32 logits of one vocabulary block, bias added and soft-capped (never rounded to bf16)."""
  z = lax.dot_general(x, w_blk, _NT, preferred_element_type=F32)
  if b_blk is not None:
    z = z + b_blk.astype(F32)[None, :]
  if softcap is not None:
    z = softcap * jnp.tanh(z / softcap)
  return z


def _blocks(v: int, vb: int):
  """``(vb, n_full, tail)`` with ``vb`` capped at ``v``."""
  vb = max(1, min(int(vb), v))
  n_full = v // vb
  return vb, n_full, v - n_full * vb


def _loop_blocks(v, vb, body, carry):
  """Runs ``body(carry, start, width)`` over full blocks (fori_loop) then the static tail."""
  vb, n_full, tail = _blocks(v, vb)
  if n_full == 1:
    carry = body(carry, 0, vb)
  elif n_full > 1:
    carry = lax.fori_loop(0, n_full, lambda j, c: body(c, j * vb, vb), carry)
  if tail:
    carry = body(carry, n_full * vb, tail)
  return carry


def _slice(a, start, width, axis=0):
  """``width`` entries of ``a`` along ``axis`` from ``start`` (static or traced); None stays."""
  if a is None:
    return None
  if isinstance(start, int):
    return lax.slice_in_dim(a, start, start + width, axis=axis)
  return lax.dynamic_slice_in_dim(a, start, width, axis=axis)



def _rows(x, labels):
  """Zero f32 row vector with ``x``'s row sharding, and labels resharded to match it.

  Under an Explicit mesh, loop carries must keep the sharding the body produces (rows sharded
  like ``x``), and labels must be sharded like the logits' rows.
  """
  spec = explicit_spec(x)
  row = jnp.zeros_like(x[:, 0], dtype=F32)
  if spec is not None:
    labels = jax.sharding.reshard(labels, jax.sharding.PartitionSpec(spec[0]))
  return row, labels


def forward(x, w, labels, bias, softcap, vb):
  """Online-logsumexp forward: returns f32 ``(lse, target_logit, logit_sum)`` of shape [N].

  The running max starts at ``-inf``; blocks whose logits are all ``-inf`` (a ``-inf`` bias on
  a range of words, say) leave ``(m, s)`` unchanged: the rescaling uses ``m_safe`` (0 where the
  max is still ``-inf``), never ``exp(-inf - -inf)``. A row whose every logit is ``-inf`` gets
  ``lse = -inf`` (``log 0``).
  """
  v = w.shape[0]
  row, labels = _rows(x, labels.astype(jnp.int32))

  def body(carry, start, width):
    m, s, t, zs = carry
    z = block_logits(x, _slice(w, start, width), _slice(bias, start, width), softcap)
    col = start + lax.broadcasted_iota(jnp.int32, (1, width), 1)
    t = t + jnp.sum(jnp.where(col == labels[:, None], z, 0.0), axis=1)
    zs = zs + jnp.sum(z, axis=1)
    m_new = jnp.maximum(m, jnp.max(z, axis=1))
    m_safe = _finite_or_zero(m_new)
    s = s * jnp.exp(m - m_safe) + jnp.sum(jnp.exp(z - m_safe[:, None]), axis=1)
    return m_new, s, t, zs

  init = (row - jnp.inf, row, row, row)
  m, s, t, zs = _loop_blocks(v, vb, body, init)
  return _finite_or_zero(m) + jnp.log(s), t, zs


def _finite_or_zero(m):
  """``m`` with ``-inf`` (an empty or all-masked running max) replaced by 0."""
  return jnp.where(m == -jnp.inf, 0.0, m)


def backward(x, w, labels, bias, lse, dlse, dt, dzs, softcap, vb):
  """Recomputes each logit block and returns ``(dx, dw, dbias)`` in the input dtypes.

  ``dz = p * dlse + onehot * dt + dzs`` (times ``1 - (z/c)^2`` with soft-capping, ``z`` the capped
  logit); ``dx`` is accumulated over vocabulary blocks in f32; each ``dw`` block is complete after
  one block (it sums over all rows) and is written with ``dynamic_update_slice``.
  """
  v = w.shape[0]
  _, labels = _rows(x, labels.astype(jnp.int32))
  dw_sharding = None
  if explicit_spec(x) is not None:
    w_spec = explicit_spec(w)
    dw_sharding = jax.sharding.PartitionSpec(*(w_spec or ()))
  dlse = dlse.astype(F32)[:, None]
  dt = dt.astype(F32)[:, None]
  dzs = dzs.astype(F32)[:, None]
  # Rows with a zero cotangent (ignored rows) are selected out, not multiplied by zero: a NaN or
  # inf in such a row of x (or an all -inf row of logits) must not reach dW.
  active = (dlse != 0) | (dt != 0) | (dzs != 0)
  x_sel = jnp.where(active, x, jnp.zeros((), x.dtype))

  def body(carry, start, width):
    dx, dw, db = carry
    w_blk = _slice(w, start, width)
    z = block_logits(x, w_blk, _slice(bias, start, width), softcap)
    col = start + lax.broadcasted_iota(jnp.int32, (1, width), 1)
    g = jnp.exp(z - lse[:, None]) * dlse + dzs
    g = g + jnp.where(col == labels[:, None], dt, 0.0)
    if softcap is not None:
      g = g * (1.0 - jnp.square(z / softcap))
    g = jnp.where(active, g, 0.0)
    gc = g.astype(x.dtype)
    dx = dx + lax.dot_general(gc, w_blk.astype(x.dtype), _NN, preferred_element_type=F32)
    # Contracts the (possibly sharded) row axis: under an Explicit mesh say where dW lives.
    dw_blk = lax.dot_general(gc, x_sel, _TN, preferred_element_type=F32,
                             out_sharding=dw_sharding).astype(w.dtype)
    dw = lax.dynamic_update_slice_in_dim(dw, dw_blk, start, axis=0)
    if db is not None:
      db = lax.dynamic_update_slice_in_dim(db, jnp.sum(g, axis=0), start, axis=0)
    return dx, dw, db

  init = (jnp.zeros_like(x, dtype=F32), jnp.zeros_like(w),
          None if bias is None else jnp.zeros((v,), F32))
  dx, dw, db = _loop_blocks(v, vb, body, init)
  return dx.astype(x.dtype), dw, (None if bias is None else db.astype(bias.dtype))


# --------------------------------------------------------------------------- three-matmul sweep


def fused_loss_grads(x, w, labels, bias, coef, softcap, label_smoothing, z_loss, bn, vc, *,
                     need_dx=True, need_dw=True):
  """One sweep over row blocks: statistics AND the gradients of ``sum_n coef_n loss_n``.

  For each block of ``bn`` rows the whole ``[bn, V]`` f32 logit block ``Z`` is computed once
  (matmul 1) and its exact log-sum-exp taken (max, then a sum of exponentials over vocabulary
  chunks). Then one loop over vocabulary chunks ``j`` of ``vc`` words forms the gradient tile

      G_j = coef_n [(1 + 2 lambda lse_n) p - (1 - alpha) onehot(y_n) - alpha / V] (1 - (z / c)^2)

  from ``Z[:, j]`` and applies it at once: ``dx_b += G_j W_j`` (matmul 2) and
  ``dW_j += G_j^T x_b`` (matmul 3). Three matmul passes, like autodiff of the materialised
  logits, and the only ``[bn, V]`` array alive is ``Z`` itself (``G`` is never materialised
  whole; the chunk temporaries are ``[bn, vc]``). Rows with ``coef_n == 0`` (ignored rows)
  are selected out of ``G`` and of the ``x`` rows entering ``dW``, so a NaN there cannot leak
  into the weight gradient.

  Args:
    x: ``[N, d]``; w: ``[V, d]``; labels: int32 ``[N]`` in ``[0, V)``; bias: ``[V]`` or None.
    coef: f32 ``[N]``, the weight of each row's loss in the reduced loss (0 = ignored; NaN
      poisons that row's gradient, used for out-of-range labels).
    bn, vc: the row block and the vocabulary chunk.
    need_dx, need_dw: skip the ``dx`` (matmul 2) or ``dW`` (matmul 3) pass, e.g. for a frozen
      LM head (LoRA fine-tuning); the skipped gradient is returned as None.

  Returns:
    ``(lse, t, zs, dx, dw, db)``: f32 row statistics, ``dx`` in ``x.dtype``, ``dw`` in
    ``w.dtype``, ``db`` in ``bias.dtype`` (None without bias).
  """
  n, d = x.shape
  v = w.shape[0]
  labels = labels.astype(jnp.int32)
  coef = coef.astype(F32)
  active = coef != 0
  a_s = float(label_smoothing)
  w_c = w.astype(x.dtype)
  zero_x = jnp.zeros((), x.dtype)

  def block(carry, start, rows):
    dx, dw, db, lse_all, t_all, zs_all = carry
    xb = _slice(x, start, rows)
    yb = _slice(labels, start, rows)[:, None]
    cb = _slice(coef, start, rows)[:, None]
    ab = _slice(active, start, rows)[:, None]
    z = block_logits(xb, w, bias, softcap)
    m = _finite_or_zero(jnp.max(z, axis=1, keepdims=True))
    t = jnp.take_along_axis(z, yb, axis=1)[:, 0]      # a gather, not a pass over the block
    # The row sum is only needed by label smoothing (value and gradient alike).
    zs = jnp.sum(z, axis=1) if a_s else jnp.zeros_like(t)
    # sum_v exp(z - m) over vocabulary chunks: never an [rows, V] array of exponentials next
    # to z (a whole-block exp would be a second block-sized buffer).
    s = _loop_blocks(v, vc, lambda acc, j0, wd: acc + jnp.sum(
        jnp.exp(_slice(z, j0, wd, axis=1) - m), axis=1, keepdims=True), jnp.zeros_like(m))
    lse = m + jnp.log(s)
    scale = cb * (1.0 + 2.0 * z_loss * lse) if z_loss else cb
    p_coef = scale / s                                # G = exp(z - m) * p_coef - ...
    xs = jnp.where(ab, xb, zero_x)

    def chunk(c, j0, wd):
      dxb, dw, db = c
      zj = _slice(z, j0, wd, axis=1)
      col = j0 + lax.broadcasted_iota(jnp.int32, (1, wd), 1)
      g = jnp.exp(zj - m) * p_coef - jnp.where(col == yb, cb * (1.0 - a_s), 0.0)
      if a_s:
        g = g - cb * (a_s / v)
      if softcap is not None:
        g = g * (1.0 - jnp.square(zj / softcap))
      g = jnp.where(ab, g, 0.0)
      gc = g.astype(x.dtype)
      if need_dx:
        dxb = dxb + lax.dot_general(gc, _slice(w_c, j0, wd), _NN, preferred_element_type=F32)
      if need_dw:
        dw = _update(dw, _slice(dw, j0, wd)
                     + lax.dot_general(gc, xs, _TN, preferred_element_type=F32), j0)
      if db is not None:
        db = _update(db, _slice(db, j0, wd) + jnp.sum(g, axis=0), j0)
      return dxb, dw, db

    dxb0 = jnp.zeros((rows, d), F32) if need_dx else None
    dxb, dw, db = _loop_blocks(v, vc, chunk, (dxb0, dw, db))
    if need_dx:
      dx = _update(dx, dxb.astype(x.dtype), start)
    lse_all = _update(lse_all, lse[:, 0], start)
    t_all = _update(t_all, t, start)
    zs_all = _update(zs_all, zs, start)
    return dx, dw, db, lse_all, t_all, zs_all

  row = jnp.zeros((n,), F32)
  carry = (jnp.zeros_like(x) if need_dx else None, jnp.zeros(w.shape, F32) if need_dw else None,
           None if bias is None else jnp.zeros((v,), F32), row, row, row)
  dx, dw, db, lse, t, zs = _loop_blocks(n, bn, block, carry)
  return (lse, t, zs, dx, None if dw is None else dw.astype(w.dtype),
          None if bias is None else db.astype(bias.dtype))


def _update(a, blk, start):
  return lax.dynamic_update_slice_in_dim(a, blk, start, axis=0)
