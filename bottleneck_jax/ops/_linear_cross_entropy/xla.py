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


def _slice(a, start, width):
  if a is None:
    return None
  if isinstance(start, int):
    return lax.slice_in_dim(a, start, start + width, axis=0)
  return lax.dynamic_slice_in_dim(a, start, width, axis=0)



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
  """Online-logsumexp forward: returns f32 ``(lse, target_logit, logit_sum)`` of shape [N]."""
  v = w.shape[0]
  row, labels = _rows(x, labels.astype(jnp.int32))

  def body(carry, start, width):
    m, s, t, zs = carry
    z = block_logits(x, _slice(w, start, width), _slice(bias, start, width), softcap)
    col = start + lax.broadcasted_iota(jnp.int32, (1, width), 1)
    t = t + jnp.sum(jnp.where(col == labels[:, None], z, 0.0), axis=1)
    zs = zs + jnp.sum(z, axis=1)
    m_new = jnp.maximum(m, jnp.max(z, axis=1))
    s = s * jnp.exp(m - m_new) + jnp.sum(jnp.exp(z - m_new[:, None]), axis=1)
    return m_new, s, t, zs

  init = (row - jnp.inf, row, row, row)
  m, s, t, zs = _loop_blocks(v, vb, body, init)
  return m + jnp.log(s), t, zs


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

  def body(carry, start, width):
    dx, dw, db = carry
    w_blk = _slice(w, start, width)
    z = block_logits(x, w_blk, _slice(bias, start, width), softcap)
    col = start + lax.broadcasted_iota(jnp.int32, (1, width), 1)
    g = jnp.exp(z - lse[:, None]) * dlse + dzs
    g = g + jnp.where(col == labels[:, None], dt, 0.0)
    if softcap is not None:
      g = g * (1.0 - jnp.square(z / softcap))
    gc = g.astype(x.dtype)
    dx = dx + lax.dot_general(gc, w_blk.astype(x.dtype), _NN, preferred_element_type=F32)
    # Contracts the (possibly sharded) row axis: under an Explicit mesh say where dW lives.
    dw_blk = lax.dot_general(gc, x, _TN, preferred_element_type=F32,
                             out_sharding=dw_sharding).astype(w.dtype)
    dw = lax.dynamic_update_slice_in_dim(dw, dw_blk, start, axis=0)
    if db is not None:
      db = lax.dynamic_update_slice_in_dim(db, jnp.sum(g, axis=0), start, axis=0)
    return dx, dw, db

  init = (jnp.zeros_like(x, dtype=F32), jnp.zeros_like(w),
          None if bias is None else jnp.zeros((v,), F32))
  dx, dw, db = _loop_blocks(v, vb, body, init)
  return dx.astype(x.dtype), dw, (None if bias is None else db.astype(bias.dtype))
