"""Tests for the block-sparse attention op and the block-sparse flash-decode.

Independent oracles: a naive float64 NumPy attention whose attend-set is built element by element
from the block table (set semantics written out in Python loops), dense attention
(:func:`bottleneck_jax.ops.attention`, itself tested against NumPy) for a full table, finite
differences for the custom VJP, and the ``"reference"`` implementation for the VJPs of the
fused ones (``kernels.testing.assert_implementations_agree``, f32 and bf16).

Shapes are small and shared (few compilations); lengths are not multiples of the blocks.
"""

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest

from bottleneck_jax.kernels import testing as KT
from bottleneck_jax.ops import (
    attention,
    block_mask_to_table,
    block_sparse_attention,
    block_sparse_decode,
)

IMPLS = ("reference", "xla", "pallas")
B, LQ, LK, H, HKV, D = 2, 21, 23, 4, 2, 8
BQ, BK = 8, 4
NQ, NK = 3, 6


@pytest.fixture(autouse=True)
def _full_f32_matmuls():
  with jax.default_matmul_precision("highest"):
    yield


def _qkv(seed=0, dtype=jnp.float32, lq=LQ, lk=LK):
  r = np.random.default_rng(seed)
  q = r.standard_normal((B, lq, H, D))
  k = r.standard_normal((B, lk, HKV, D))
  v = r.standard_normal((B, lk, HKV, D))
  return tuple(jnp.asarray(x, dtype) for x in (q, k, v))


def _table(seed=1, k_entries=4, nq=NQ, nk=NK):
  """A random table with repeats, out-of-range entries and invalid entries."""
  r = np.random.default_rng(seed)
  idx = r.integers(-1, nk + 1, (B, HKV, nq, k_entries))
  idx[0, 0, 0, :2] = 2                      # a repeated block
  valid = r.random((B, HKV, nq, k_entries)) < 0.8
  return jnp.asarray(idx, jnp.int32), jnp.asarray(valid)


def np_allowed(idx, valid, lq, lk, bq, bk, h, q_seg=None, kv_seg=None, causal=False,
               lengths=None):
  """bool [B, H, Lq, Lk] from the table, one element at a time."""
  idx, valid = np.asarray(idx), np.asarray(valid)
  b, hkv = idx.shape[:2]
  g = h // hkv
  out = np.zeros((b, h, lq, lk), bool)
  nk = -(-lk // bk)
  for bi in range(b):
    for hi in range(h):
      for i in range(lq):
        row = idx[bi, hi // g, i // bq]
        ok = valid[bi, hi // g, i // bq]
        chosen = {int(e) for e, o in zip(row, ok) if o and 0 <= e < nk}
        for j in range(lk):
          a = (j // bk) in chosen
          if causal:
            a &= j <= i
          if q_seg is not None:
            a &= q_seg[bi, i] == kv_seg[bi, j] and q_seg[bi, i] > 0
          if lengths is not None:
            a &= j < lengths[bi]
          out[bi, hi, i, j] = a
  return out


def np_attention(q, k, v, allowed, scale):
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  g = q.shape[2] // k.shape[2]
  k, v = np.repeat(k, g, axis=2), np.repeat(v, g, axis=2)
  s = np.einsum("bqhd,bkhd->bhqk", q, k) * scale
  s = np.where(allowed, s, -np.inf)
  mx = np.max(s, axis=-1, keepdims=True)
  rows = np.isfinite(mx)
  e = np.where(allowed, np.exp(s - np.where(rows, mx, 0)), 0)
  l = e.sum(-1, keepdims=True)
  p = e / np.where(rows, l, 1)
  out = np.einsum("bhqk,bkhd->bqhd", p, v)
  lse = np.where(rows, mx + np.log(np.where(rows, l, 1)), -np.inf)[..., 0]
  return out, lse


@pytest.mark.parametrize("impl", ("reference", "xla"))
def test_matches_numpy_with_table_segments_causal_gqa(impl):
  q, k, v = _qkv()
  idx, valid = _table()
  r = np.random.default_rng(3)
  q_seg = r.choice([0, 1, 1, 1, 2], (B, LQ))
  kv_seg = r.choice([0, 1, 1, 1, 2], (B, LK))
  res = block_sparse_attention(q, k, v, idx, block_valid=valid, block_size=(BQ, BK),
                               segment_ids=(jnp.asarray(q_seg), jnp.asarray(kv_seg)),
                               causal=True, implementation=impl)
  allowed = np_allowed(idx, valid, LQ, LK, BQ, BK, H, q_seg, kv_seg, causal=True)
  assert allowed.any(-1).mean() > 0.3 and not allowed.any(-1).all()   # a real mixture
  out, lse = np_attention(q, k, v, allowed, D ** -0.5)
  np.testing.assert_allclose(np.asarray(res.out), out, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.isinf(np.asarray(res.lse)), np.isinf(lse))
  fin = np.isfinite(lse)
  np.testing.assert_allclose(np.asarray(res.lse)[fin], lse[fin], rtol=1e-5, atol=1e-5)


def _fn(idx, valid, segs=None, causal=False, block=(BQ, BK)):
  def f(q, k, v, *, implementation):
    res = block_sparse_attention(q, k, v, idx, block_valid=valid, block_size=block,
                                 segment_ids=segs, causal=causal, implementation=implementation)
    return res.out, jnp.where(jnp.isfinite(res.lse), res.lse, 0.0)
  return f


def test_fused_implementations_agree_values_and_grads_f32():
  q, k, v = _qkv(1)
  idx, valid = _table(2)
  seg = jnp.asarray(np.random.default_rng(4).integers(0, 3, (B, LQ)))
  q2, k2, v2 = q, k[:, :LQ], v[:, :LQ]
  KT.assert_implementations_agree(_fn(idx, valid, seg, causal=True), (q2, k2, v2),
                                  implementations=("xla", "pallas"), rtol=2e-5, atol=2e-5)


def test_fused_implementations_agree_bf16():
  q, k, v = _qkv(5, jnp.bfloat16)
  idx, valid = _table(6)
  KT.assert_implementations_agree(_fn(idx, valid), (q, k, v), implementations=("xla", "pallas"),
                                  rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("impl", ("xla", "pallas"))
def test_every_block_selected_equals_dense_attention(impl):
  """Keep-ratio 1: the op is dense (causal) attention, values and gradients."""
  q, k, v = _qkv(7)
  idx = jnp.broadcast_to(jnp.arange(NK, dtype=jnp.int32)[::-1], (B, HKV, NQ, NK))

  def sparse(q, k, v):
    res = block_sparse_attention(q, k, v, idx, block_size=(BQ, BK), causal=True,
                                 implementation=impl)
    return (res.out ** 2).sum() + res.lse.sum(), res

  def dense(q, k, v):
    res = attention(q, k, v, causal=True, implementation="reference")
    return (res.out ** 2).sum() + res.lse.sum(), res

  (_, rs), gs = jax.value_and_grad(sparse, argnums=(0, 1, 2), has_aux=True)(q, k, v)
  (_, rd), gd = jax.value_and_grad(dense, argnums=(0, 1, 2), has_aux=True)(q, k, v)
  np.testing.assert_allclose(rs.out, rd.out, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(rs.lse, rd.lse, rtol=1e-6, atol=1e-6)
  for a, b in zip(gs, gd):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_unselected_blocks_never_reach_the_output():
  """NaN in keys/values of unselected blocks: bit-identical outputs and gradients."""
  q, k, v = _qkv(8)
  idx = jnp.asarray(np.tile(np.array([0, 3])[None, None, None], (B, HKV, NQ, 1)), jnp.int32)
  poison = np.zeros((B, LK, HKV, 1), bool)
  poison[:, 4:8] = True                                  # block 1, never selected
  k2 = jnp.where(poison, jnp.nan, k)
  v2 = jnp.where(poison, jnp.nan, v)
  for impl in ("xla", "pallas"):
    f = _fn(idx, None)
    a, b = f(q, k, v, implementation=impl), f(q, k2, v2, implementation=impl)
    np.testing.assert_array_equal(a[0], b[0])
    g = jax.grad(lambda q, k, v: f(q, k, v, implementation=impl)[0].sum(), argnums=(0, 1, 2))
    ga, gb = g(q, k, v), g(q, k2, v2)
    np.testing.assert_array_equal(ga[0], gb[0])
    assert np.isfinite(np.asarray(gb[1])).all()
  # perturbing a selected block changes the output
  k3 = k.at[:, 12:16].add(1.0)
  assert not np.allclose(_fn(idx, None)(q, k3, v, implementation="xla")[0],
                         _fn(idx, None)(q, k, v, implementation="xla")[0])


def test_custom_vjp_finite_differences():
  q, k, v = _qkv(9, lq=9, lk=10)
  r = np.random.default_rng(10)
  idx = jnp.asarray(r.integers(0, 3, (B, HKV, 2, 2)), jnp.int32)

  def f(q, k, v):
    res = block_sparse_attention(q, k, v, idx, block_size=(8, 4), implementation="xla")
    return res.out, res.lse
  jax.test_util.check_grads(f, (q, k, v), order=1, modes=("rev",), atol=2e-2, rtol=2e-2)


def test_jit_and_vmap():
  q, k, v = _qkv(11)
  idx, valid = _table(12)
  f = jax.jit(lambda q, k, v: block_sparse_attention(q, k, v, idx, block_valid=valid,
                                                     block_size=(BQ, BK)).out)
  stacked = jax.vmap(f)(jnp.stack([q, q * 0.5]), jnp.stack([k, k]), jnp.stack([v, -v]))
  np.testing.assert_allclose(stacked[1], f(q * 0.5, k, -v), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------ decode


def _decode_inputs(dtype=jnp.float32):
  q, k, v = _qkv(13, dtype)
  r = np.random.default_rng(14)
  idx = jnp.asarray(r.integers(0, NK, (B, HKV, 3)), jnp.int32)
  valid = jnp.asarray(r.random((B, HKV, 3)) < 0.9)
  lengths = jnp.asarray([19, 7], jnp.int32)
  return q[:, 0], k, v, idx, valid, lengths


@pytest.mark.parametrize("impl", IMPLS)
def test_decode_matches_numpy(impl):
  qd, k, v, idx, valid, lengths = _decode_inputs()
  res = block_sparse_decode(qd, k, v, idx, block_valid=valid, lengths=lengths, block_size=BK,
                            implementation=impl)
  allowed = np_allowed(idx[:, :, None], valid[:, :, None], 1, LK, 1, BK, H,
                       lengths=np.asarray(lengths))
  out, lse = np_attention(qd[:, None], k, v, allowed, D ** -0.5)
  np.testing.assert_allclose(res.out, out[:, 0], rtol=1e-5, atol=1e-5)
  fin = np.isfinite(lse[..., 0])
  np.testing.assert_allclose(np.asarray(res.lse)[fin], lse[..., 0][fin], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 2e-5), (jnp.bfloat16, 3e-2)])
def test_decode_implementations_agree(dtype, tol):
  qd, k, v, idx, valid, lengths = _decode_inputs(dtype)

  def f(q, k, v, *, implementation):
    res = block_sparse_decode(q, k, v, idx, block_valid=valid, lengths=lengths, block_size=BK,
                              implementation=implementation)
    return res.out, jnp.where(jnp.isfinite(res.lse), res.lse, 0.0)
  KT.assert_implementations_agree(f, (qd, k, v), implementations=("xla", "pallas"), rtol=tol,
                                  atol=tol)


def test_decode_full_table_equals_dense_attention_over_the_prefix():
  qd, k, v, _, _, lengths = _decode_inputs()
  idx = jnp.broadcast_to(jnp.arange(NK, dtype=jnp.int32), (B, HKV, NK))
  kv_seg = (jnp.arange(LK)[None] < lengths[:, None]).astype(jnp.int32)
  dense = attention(qd[:, None], k, v, segment_ids=(jnp.ones((B, 1), jnp.int32), kv_seg),
                    implementation="reference")
  for impl in ("xla", "pallas"):
    res = block_sparse_decode(qd, k, v, idx, lengths=lengths, block_size=BK, implementation=impl)
    np.testing.assert_allclose(res.out, dense.out[:, 0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(res.lse, dense.lse[..., 0], rtol=1e-6, atol=1e-6)


def test_block_mask_to_table_matches_numpy():
  m = np.random.default_rng(15).random((2, 3, 7)) < 0.4
  idx, valid = block_mask_to_table(jnp.asarray(m), max_blocks=4)
  for pos in np.ndindex(m.shape[:-1]):
    want = list(np.flatnonzero(m[pos]))[:4]
    got = [int(i) for i, ok in zip(idx[pos], valid[pos]) if ok]
    assert got == want
  idx, valid = block_mask_to_table(jnp.asarray(m), max_blocks=9)
  assert idx.shape == (2, 3, 9) and int(valid.sum()) == int(m.sum())


def test_errors():
  q, k, v = _qkv()
  idx, _ = _table()
  with pytest.raises(ValueError, match="block_sparse_attention: k must have the head_dim"):
    block_sparse_attention(q, k[..., :4], v[..., :4], idx, block_size=(BQ, BK))
  with pytest.raises(ValueError, match="block_sparse_attention: block_idx must have shape"):
    block_sparse_attention(q, k, v, idx, block_size=4)          # nq = 6 != 3
  with pytest.raises(ValueError, match="block_sparse_attention: block_size must be >= 1"):
    block_sparse_attention(q, k, v, idx, block_size=0)
  with pytest.raises(TypeError, match="block_sparse_attention: block_idx must have an integer"):
    block_sparse_attention(q, k, v, idx.astype(jnp.float32), block_size=(BQ, BK))
  with pytest.raises(TypeError, match="block_sparse_attention: block_valid must be a boolean"):
    block_sparse_attention(q, k, v, idx, block_valid=idx, block_size=(BQ, BK))
  with pytest.raises(ValueError, match="block_sparse_decode: lengths must have shape"):
    block_sparse_decode(q[:, 0], k, v, idx[:, :, 0], block_size=BK, lengths=jnp.ones(3, int))
  with pytest.raises(TypeError, match="block_mask_to_table: block_mask must be a boolean"):
    block_mask_to_table(idx, max_blocks=2)
