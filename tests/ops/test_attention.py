"""Tests for the shared attention op (reference, blocked XLA, Pallas).

Independent oracles: a naive float64 NumPy attention with hand-written softmax gradients (values,
log-sum-exp and VJPs of every implementation), ``jax.nn.dot_product_attention`` (a peer library:
outputs and output VJPs on the rows it defines), attend-masks built without the op (NumPy
``tril``, the packing module's ``packed_attention_mask``), finite differences
(``jax.test_util.check_grads``) and compiled memory sizes. The fused implementations are also
checked against ``"reference"`` (itself checked against NumPy) with
``kernels.testing.assert_implementations_agree`` on bf16 inputs and random masks.

Shapes are small; tiles of 16 make every length below a non-multiple of the block (except the
``plain`` case, which covers the unmasked whole-block path).
"""

import functools

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from bottleneck_jax import kernels
from bottleneck_jax.data.packing import pack_sequences, packed_attention_mask
from bottleneck_jax.kernels import testing as KT
from bottleneck_jax.ops import AttentionOutput, attention
from bottleneck_jax.ops._attention import ATTENTION
from bottleneck_jax.ops._attention import pallas as attention_pallas

IMPLS = ("reference", "xla", "pallas")
BLOCKS = (16, 16)


@pytest.fixture(autouse=True)
def _full_f32_matmuls():
  with jax.default_matmul_precision("highest"):
    yield


def _normal(rng, shape):
  return rng.standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------------ the NumPy oracle


def np_attention(q, k, v, allowed, scale, g_out, g_lse):
  """Naive float64 attention and the VJP of ``sum(out * g_out) + sum(lse * g_lse)``.

  ``allowed``: bool ``[B, H, Lq, Lk]``. Rows with no allowed key: out 0, lse -inf, no gradient.
  Softmax gradient written from its Jacobian: ``dS = P * (dP - rowsum(P * dP)) + P * g_lse``.
  """
  q, k, v, g_out, g_lse = (np.asarray(a, np.float64) for a in (q, k, v, g_out, g_lse))
  b, lq, h, d = q.shape
  hkv = k.shape[2]
  grp = h // hkv
  kr, vr = np.repeat(k, grp, axis=2), np.repeat(v, grp, axis=2)
  out = np.zeros_like(q)
  lse = np.full((b, h, lq), -np.inf)
  dq, dkr, dvr = np.zeros_like(q), np.zeros_like(kr), np.zeros_like(vr)
  for bi in range(b):
    for hi in range(h):
      a = allowed[bi, hi]
      rows = a.any(axis=1)
      qq, kk, vv = q[bi, :, hi], kr[bi, :, hi], vr[bi, :, hi]
      s = np.where(a, scale * qq @ kk.T, -np.inf)
      mx = np.where(rows, np.max(s, axis=1), 0.0)
      e = np.where(a, np.exp(s - mx[:, None]), 0.0)
      l = np.where(rows, e.sum(axis=1), 1.0)
      p = e / l[:, None]
      out[bi, :, hi] = p @ vv
      lse[bi, hi] = np.where(rows, mx + np.log(l), -np.inf)
      go = g_out[bi, :, hi]
      dvr[bi, :, hi] = p.T @ go
      dp = go @ vv.T
      ds = p * (dp - np.sum(p * dp, axis=1, keepdims=True)) + p * g_lse[bi, hi][:, None]
      dq[bi, :, hi] = scale * ds @ kk
      dkr[bi, :, hi] = scale * ds.T @ qq
  dk = dkr.reshape(b, -1, hkv, grp, d).sum(axis=3)
  dv = dvr.reshape(b, -1, hkv, grp, d).sum(axis=3)
  return out, lse, (dq, dk, dv)


# --------------------------------------------------------------------------------- the cases


def _packed_segments():
  rng = np.random.default_rng(3)
  seqs = [rng.integers(1, 100, n) for n in (17, 13, 9, 20, 7, 5)]
  packed = pack_sequences(seqs, seq_len=40, num_rows=2)
  assert (packed.segment_ids == 0).any() and packed.segment_ids.max() >= 3
  return packed.segment_ids


@functools.cache
def _case(name, seed=0):
  """``(q, k, v, kwargs of attention, allowed [B, H, Lq, Lk], scale)``."""
  rng = np.random.default_rng(seed)
  b, lq, lk, h, hkv, d = {"plain": (2, 32, 48, 2, 1, 16), "cross": (2, 24, 40, 4, 2, 12)}.get(
      name, (2, 40, 40, 2, 2, 16))
  q, k, v = _normal(rng, (b, lq, h, d)), _normal(rng, (b, lk, hkv, d)), _normal(rng, (b, lk, hkv, d))
  tril = np.tril(np.ones((lq, lk), bool))
  kw = {}
  if name == "plain":        # no mask; MQA; lengths multiple of the tiles
    allowed = np.ones((b, h, lq, lk), bool)
  elif name == "mask":       # [1, H, Lq, Lk] mask with a fully masked row in head 1
    mask = rng.random((1, h, lq, lk)) < 0.6
    mask[0, 1, 5] = False
    kw["mask"] = mask
    allowed = np.broadcast_to(mask, (b, h, lq, lk))
  elif name == "causal":
    kw["causal"] = True
    allowed = np.broadcast_to(tril, (b, h, lq, lk))
  elif name == "packed":     # sequences packed by best-fit decreasing, 0 = padding
    seg = _packed_segments()
    kw.update(segment_ids=seg, causal=True)
    allowed = np.broadcast_to(np.asarray(packed_attention_mask(seg))[:, None], (b, h, lq, lk))
  elif name == "cross":      # Lq != Lk, GQA, head_dim 12, batch mask, segment pair, causal
    mask = rng.random((b, 1, lq, lk)) < 0.8
    qs, ks = rng.integers(0, 3, (b, lq)), rng.integers(0, 3, (b, lk))
    kw.update(mask=mask, segment_ids=(qs, ks), causal=True)
    same = (qs[:, :, None] == ks[:, None, :]) & (qs[:, :, None] > 0)
    allowed = mask & same[:, None] & tril
    allowed = np.broadcast_to(allowed, (b, h, lq, lk))
  else:
    raise KeyError(name)
  return q, k, v, kw, np.array(allowed), 1.0 / np.sqrt(d)


CASES = ("plain", "mask", "packed", "cross")


def _cotangents(q, h, lq, seed=1):
  rng = np.random.default_rng(seed)
  return _normal(rng, q.shape), _normal(rng, (q.shape[0], h, lq))


@functools.cache
def _run(name, impl):
  """out, lse, VJP for (g_out, g_lse) and VJP for (g_out, 0) of one case and implementation."""
  q, k, v, kw, allowed, _ = _case(name)
  g_out, g_lse = _cotangents(q, q.shape[2], q.shape[1])

  def f(q, k, v, g_out, g_lse):
    def fwd(q, k, v):
      return tuple(attention(q, k, v, **kw, block_sizes=BLOCKS, implementation=impl))
    (out, lse), vjp = jax.vjp(fwd, q, k, v)
    return out, lse, vjp((g_out, g_lse)), vjp((g_out, jnp.zeros_like(g_lse)))

  return jax.device_get(jax.jit(f)(q, k, v, g_out, g_lse))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", CASES)
def test_matches_numpy(name, impl):
  """Values, lse and VJPs (through out and lse) equal the float64 NumPy attention."""
  q, k, v, _, allowed, scale = _case(name)
  g_out, g_lse = _cotangents(q, q.shape[2], q.shape[1])
  want_out, want_lse, want_g = np_attention(q, k, v, allowed, scale, g_out, g_lse)
  out, lse, grads, _ = _run(name, impl)
  assert out.dtype == np.float32 and lse.dtype == np.float32
  np.testing.assert_allclose(out, want_out, rtol=1e-5, atol=2e-6)
  np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(want_lse))
  fin = np.isfinite(want_lse)
  np.testing.assert_allclose(lse[fin], want_lse[fin], rtol=1e-5, atol=2e-6)
  for what, got, want in zip("qkv", grads, want_g):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5, err_msg=f"d{what}")


@pytest.mark.parametrize("name", CASES)
def test_matches_jax_nn(name):
  """Every implementation equals ``jax.nn.dot_product_attention`` (the same attend-mask passed
  as a full boolean mask) on the rows it defines (it averages ``v`` over fully masked rows, where
  ours are 0), and so do the VJPs of ``out`` for cotangents vanishing on those rows."""
  q, k, v, _, allowed, scale = _case(name)
  rows = allowed.any(axis=3).transpose(0, 2, 1)[..., None]      # [B, Lq, H, 1]
  g_out, _ = _cotangents(q, q.shape[2], q.shape[1])
  g_out = np.where(rows, g_out, 0.0).astype(np.float32)   # jax.nn averages fully masked rows

  def peer(q, k, v):
    return jax.nn.dot_product_attention(q, k, v, mask=jnp.asarray(allowed), scale=scale,
                                        implementation="xla")

  want, vjp = jax.vjp(peer, q, k, v)
  want_g = vjp(jnp.asarray(g_out))
  for impl in IMPLS:
    out, _, _, _ = _run(name, impl)
    np.testing.assert_allclose(np.where(rows, out, 0.0), np.where(rows, want, 0.0), rtol=1e-5,
                               atol=2e-6, err_msg=impl)
    # Our out is identically 0 on fully masked rows, so g_out there contributes nothing.
    for what, got, w in zip("qkv", _run(name, impl)[3], want_g):
      np.testing.assert_allclose(got, w, rtol=1e-4, atol=2e-5, err_msg=f"{impl} d{what}")


def test_bf16():
  """bf16 inputs: out in bf16, lse in f32; the fused implementations agree with the reference
  (values and VJPs), and the reference with float64 NumPy on the rounded inputs."""
  q, k, v, kw, allowed, scale = _case("cross")
  qb, kb, vb = (jnp.asarray(a, jnp.bfloat16) for a in (q, k, v))
  res = attention(qb, kb, vb, **kw, implementation="reference")
  assert res.out.dtype == jnp.bfloat16 and res.lse.dtype == jnp.float32
  g0 = np.zeros(q.shape, np.float32)
  want_out, want_lse, _ = np_attention(*(np.asarray(a, np.float32) for a in (qb, kb, vb)),
                                       allowed, scale, g0, np.zeros(res.lse.shape, np.float32))
  np.testing.assert_allclose(np.asarray(res.out, np.float64), want_out, rtol=2e-2, atol=1e-2)
  fin = np.isfinite(want_lse)
  np.testing.assert_allclose(np.asarray(res.lse)[fin], want_lse[fin], rtol=1e-5, atol=1e-5)
  KT.assert_implementations_agree(
      lambda q, k, v, *, implementation: tuple(attention(
          q, k, v, **kw, block_sizes=BLOCKS, implementation=implementation)),
      (qb, kb, vb), implementations=("xla", "pallas"), rtol=2e-2, atol=2e-2, grad_rtol=5e-2,
      grad_atol=5e-2)


# ------------------------------------------------------------------------- masked numerics


@functools.cache
def _loss_and_grads(impl, causal=False):
  """jit: ``((loss, AttentionOutput), (dq, dk, dv))`` of ``sum(sin(out)) + sum(finite lse)``."""
  def loss(q, k, v, mask, qs, ks):
    res = attention(q, k, v, mask=mask, segment_ids=(qs, ks), causal=causal,
                    block_sizes=BLOCKS, implementation=impl)
    lse = jnp.where(jnp.isfinite(res.lse), res.lse, 0.0)
    return jnp.sum(jnp.sin(res.out)) + jnp.sum(lse), res
  return jax.jit(jax.value_and_grad(loss, (0, 1, 2), has_aux=True))


def _finite_grads(impl, q, k, v, mask, qs, ks):
  (_, res), grads = _loss_and_grads(impl)(q, k, v, mask, qs, ks)
  return res, grads


@pytest.mark.parametrize("impl", IMPLS)
def test_fully_masked_rows_are_zero_without_nan(impl):
  """Padding queries (segment 0) and all-False mask rows: out exactly 0, lse -inf, finite
  gradients, zero dq on those rows; the other rows equal NumPy."""
  q, k, v, _, _, scale = _case("mask")
  b, lq, h, _ = q.shape
  seg = np.ones((b, lq), np.int32)
  seg[0, 30:] = 0                    # padding queries (and keys) at the end of row 0
  seg[1, :16] = 0                    # a whole first block of padding in row 1
  mask = np.ones((b, h, lq, lq), bool)
  mask[1, 0, 20] = False             # one more fully masked row, head 0 only
  res, grads = _finite_grads(impl, q, k, v, mask, seg, seg)
  allowed = mask & ((seg[:, :, None] == seg[:, None, :]) & (seg[:, :, None] > 0))[:, None]
  dead = ~allowed.any(axis=3)                                     # [B, H, Lq]
  assert dead.sum() == h * (10 + 16) + 1
  out, lse = np.asarray(res.out), np.asarray(res.lse)
  assert np.all(out.transpose(0, 2, 1, 3)[dead] == 0.0)
  assert np.all(np.isneginf(lse[dead])) and np.all(np.isfinite(lse[~dead]))
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g)))
  assert np.all(np.asarray(grads[0]).transpose(0, 2, 1, 3)[dead] == 0.0)
  want_out, _, _ = np_attention(q, k, v, allowed, scale, np.zeros_like(q), np.zeros(lse.shape))
  np.testing.assert_allclose(out, want_out, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_first_key_block_fully_masked(impl):
  """Keys 0..15 (the whole first tile) masked for every query, plus causal: the first tile's
  logits are all -inf for every row and queries 0..15 see no key at all."""
  q, k, v, _, _, scale = _case("causal")
  b, lq, h, _ = q.shape
  mask = np.ones((1, 1, lq, lq), bool)
  mask[..., :16] = False
  def f(q, k, v):
    return tuple(attention(q, k, v, mask=mask, causal=True, block_sizes=BLOCKS,
                           implementation=impl))
  allowed = np.broadcast_to(mask & np.tril(np.ones((lq, lq), bool)), (b, h, lq, lq))
  g_out, g_lse = _cotangents(q, h, lq)
  g_lse = np.where(allowed.any(axis=3), g_lse, 0.0).astype(np.float32)
  want_out, want_lse, want_g = np_attention(q, k, v, allowed, scale, g_out, g_lse)
  (out, lse), grads = jax.jit(lambda q, k, v, ct: (f(q, k, v), jax.vjp(f, q, k, v)[1](ct)))(
      q, k, v, (g_out, g_lse))
  np.testing.assert_allclose(np.asarray(out), want_out, rtol=1e-5, atol=2e-6)
  np.testing.assert_array_equal(np.isneginf(np.asarray(lse)), np.isneginf(want_lse))
  for got, want in zip(grads, want_g):
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_nan_in_masked_keys_and_values_does_not_leak(impl):
  """NaN/Inf stored in k and v at padding keys (kv segment 0) and at a key column masked for
  every query: outputs and gradients are those of the same call with zeros stored there."""
  q, k, v, _, _, _ = _case("cross")
  b, lq, lk = q.shape[0], q.shape[1], k.shape[1]
  qs = np.ones((b, lq), np.int32)
  ks = np.ones((b, lk), np.int32)
  ks[:, 33:] = 0                       # padding keys, in the last (partial) tile
  ks[1, :16] = 0                       # a whole first tile of padding keys in row 1
  mask = np.ones((b, 1, lq, lk), bool)
  mask[:, :, :, 20] = False            # key 20 is seen by nobody
  dead = (ks == 0)
  dead[:, 20] = True
  k_bad, v_bad = k.copy(), v.copy()
  k_bad[dead] = np.nan
  v_bad[dead] = np.nan
  v_bad[0, 34] = np.inf
  res_bad, g_bad = _finite_grads(impl, q, k_bad, v_bad, mask, qs, ks)
  k0, v0 = np.where(dead[..., None, None], 0.0, k), np.where(dead[..., None, None], 0.0, v)
  res_ok, g_ok = _finite_grads(impl, q, k0.astype(np.float32), v0.astype(np.float32), mask, qs,
                              ks)
  KT.assert_trees_close(tuple(res_bad), tuple(res_ok), rtol=0, atol=0, what="values")
  for got, want in zip(g_bad, g_ok):
    assert np.all(np.isfinite(np.asarray(got)))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


# --------------------------------------------------------------------- random masks (property)


@functools.cache
def _vjp_fn(impl):
  def f(q, k, v, mask, qs, ks, g_out, g_lse):
    def fwd(q, k, v):
      return tuple(attention(q, k, v, mask=mask, segment_ids=(qs, ks), causal=True,
                             block_sizes=BLOCKS, implementation=impl))
    (out, lse), vjp = jax.vjp(fwd, q, k, v)
    return out, lse, vjp((g_out, g_lse))
  return jax.jit(f)


@settings(max_examples=5, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), density=st.floats(0.0, 1.0), n_seg=st.integers(1, 4),
       head_mask=st.booleans())
def test_random_masks_and_segments_agree_with_reference(seed, density, n_seg, head_mask):
  """Random masks (density 0 included: every row masked), per head or not, and segment
  patterns (0 = padding), causal: xla and pallas equal the reference, values and VJPs (through
  out and lse); no NaN anywhere."""
  rng = np.random.default_rng(seed)
  b, lq, lk, h, hkv, d = 2, 35, 21, 2, 1, 8   # Lq > Lk (the fixed cases have Lq <= Lk)
  q, k, v = _normal(rng, (b, lq, h, d)), _normal(rng, (b, lk, hkv, d)), _normal(rng, (b, lk, hkv, d))
  mask = rng.random((b, h, lq, lk) if head_mask else (b, 1, lq, lk)) < density
  mask = np.broadcast_to(mask, (b, h, lq, lk))   # one shape: one compilation per implementation
  qs = np.sort(rng.integers(0, n_seg + 1, (b, lq)), axis=1).astype(np.int32)
  ks = np.sort(rng.integers(0, n_seg + 1, (b, lk)), axis=1).astype(np.int32)
  g_out, g_lse = _normal(rng, q.shape), _normal(rng, (b, h, lq))
  args = (q, k, v, mask, qs, ks, g_out, g_lse)
  want = jax.device_get(_vjp_fn("reference")(*args))
  for leaf in jax.tree.leaves(want):
    assert not np.any(np.isnan(leaf))
  for impl in ("xla", "pallas"):
    got = jax.device_get(_vjp_fn(impl)(*args))
    KT.assert_trees_close(got, want, rtol=1e-4, atol=2e-5, what=f"{impl} seed={seed}")


# ----------------------------------------------------------------- finite differences, jit, vmap


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_check_grads_of_the_custom_vjp(impl):
  """The custom VJP against finite differences (both outputs, GQA, mask and causal)."""
  rng = np.random.default_rng(5)
  q, k, v = (jnp.asarray(_normal(rng, s)) for s in ((1, 9, 2, 4), (1, 11, 1, 4), (1, 11, 1, 4)))
  mask = np.ones((1, 1, 9, 11), bool)
  mask[..., 3] = False

  def f(q, k, v):
    return tuple(attention(q, k, v, mask=mask, causal=True, block_sizes=(4, 4),
                           implementation=impl))

  jax.test_util.check_grads(jax.jit(f), (q, k, v), order=1, modes=("rev",), eps=1e-2, atol=2e-2,
                            rtol=2e-2)


def _vmap_loss(impl):
  def loss(q, k, v, seg):
    res = attention(q, k, v, segment_ids=seg, causal=True, block_sizes=BLOCKS,
                    implementation=impl)
    return jnp.sum(jnp.sin(res.out)), res
  return jax.value_and_grad(loss, (0, 1, 2), has_aux=True)


@functools.cache
def _jitted_vmap_reference():
  return jax.jit(_vmap_loss("reference"))


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_jit_vmap(impl):
  """``jit(vmap(.))`` over an extra leading axis (inputs and segment ids) of values and
  gradients == a loop of single calls of the reference."""
  rng = np.random.default_rng(6)
  n, b, l, h, d = 2, 2, 20, 2, 8
  q, k, v = (_normal(rng, (n, b, l, h, d)) for _ in range(3))
  seg = np.sort(rng.integers(0, 3, (n, b, l)), axis=-1).astype(np.int32)

  got = jax.jit(jax.vmap(_vmap_loss(impl)))(q, k, v, seg)
  ref = _jitted_vmap_reference()
  loop = [ref(q[j], k[j], v[j], seg[j]) for j in range(n)]
  want = jax.tree.map(lambda *xs: np.stack(xs), *loop)
  KT.assert_trees_close(got, want, rtol=1e-4, atol=2e-5, what=f"{impl} vmap")


# ------------------------------------------------------------------------------------ meshes

BATCH = P(("data", "fsdp"))


@functools.cache
def _mesh(kind):
  if kind == "explicit":
    mesh = jax.make_mesh((4, 2), ("data", "fsdp"))
    assert all(t == AxisType.Explicit for t in mesh.axis_types)
    return mesh
  return jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(AxisType.Auto,) * 2)


@functools.cache
def _mesh_fn(impl):
  def loss(q, k, v, mask, seg):
    res = attention(q, k, v, mask=mask, segment_ids=seg, causal=True, block_sizes=BLOCKS,
                    implementation=impl)
    return jnp.sum(jnp.sin(res.out)) + jnp.sum(jnp.where(jnp.isfinite(res.lse), res.lse, 0.0)), res
  return jax.jit(jax.value_and_grad(loss, (0, 1, 2), has_aux=True))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", ["explicit", "auto"])
def test_mesh_keeps_batch_sharding(kind, impl):
  """8 devices, batch-sharded inputs (mask with a batch axis, segment ids) under an Explicit
  and an Auto mesh: the unsharded reference's values and gradients, and out, lse, dq, dk, dv
  keep the batch sharding."""
  rng = np.random.default_rng(7)
  b, l, h, hkv, d = 8, 24, 2, 1, 8
  q = _normal(rng, (b, l, h, d))
  k, v = _normal(rng, (b, l, hkv, d)), _normal(rng, (b, l, hkv, d))
  mask = rng.random((b, 1, l, l)) < 0.8
  seg = np.sort(rng.integers(0, 3, (b, l)), axis=1).astype(np.int32)
  want = _mesh_fn("reference")(q, k, v, mask, seg)
  mesh = _mesh(kind)
  with jax.set_mesh(mesh):
    args = [jax.device_put(a, BATCH) for a in (q, k, v, mask, seg)]
    got = _mesh_fn(impl)(*args)
  KT.assert_trees_close(got, want, rtol=1e-4, atol=2e-5, what=f"{kind}/{impl}")
  (_, res), grads = got
  sharded = NamedSharding(mesh, BATCH)
  for what, a in [("out", res.out), ("lse", res.lse), ("dq", grads[0]), ("dk", grads[1]),
                  ("dv", grads[2])]:
    assert a.sharding.is_equivalent_to(sharded, a.ndim), f"{what}: {a.sharding}"


# ------------------------------------------------------------------------ memory and dispatch


def _temp_bytes(impl, l, h=2, d=16):
  spec = jax.ShapeDtypeStruct((1, l, h, d), jnp.float32)

  def loss(q, k, v):
    res = attention(q, k, v, causal=True, implementation=impl)
    return jnp.sum(res.out) + jnp.sum(res.lse)

  compiled = jax.jit(jax.grad(loss, (0, 1, 2))).lower(spec, spec, spec).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_xla_memory_is_linear_in_length():
  """Compiled temporaries of forward + backward: the reference grows like L^2 (it stores the
  [H, L, L] logits), the blocked XLA implementation like L (nothing of size L x L)."""
  ref2 = _temp_bytes("reference", 2048)
  xla1, xla2 = _temp_bytes("xla", 1024), _temp_bytes("xla", 2048)
  l2_bytes = 2 * 2048 * 2048 * 4                  # one f32 [H, L, L] array (32 MiB)
  assert ref2 >= 2 * l2_bytes                     # measured: 161 MiB
  assert xla2 < l2_bytes / 2 and xla2 < 2 * xla1  # measured: 8.7 MiB -> 9.0 MiB (tiles)
  assert 10 * xla2 < ref2


def test_default_dispatch(monkeypatch):
  """``None`` picks xla on CPU; pallas is validated (picked by default) only on GPU, with xla as
  the fallback; the kernel refuses native TPU and non-power-of-two GPU tiles."""
  assert ATTENTION.resolve(None) == (("xla",), False)
  monkeypatch.setattr(kernels.dispatch, "backend", lambda: "gpu")
  assert ATTENTION.resolve(None) == (("pallas", "xla"), False)
  monkeypatch.setattr(kernels.dispatch, "backend", lambda: "tpu")
  assert ATTENTION.resolve(None) == (("xla",), False)
  with pytest.raises(kernels.UnsupportedInput, match="not natively on 'tpu'"):
    attention_pallas.check_supported(None, False, "tpu")
  with pytest.raises(kernels.UnsupportedInput, match="power-of-two"):
    attention_pallas.check_supported((16, 24), False, "gpu")
  attention_pallas.check_supported((16, 24), True, "cpu")   # interpret mode takes any tile


def test_returns_named_tuple_and_default_scale():
  q, k, v, _, _, _ = _case("plain")
  res = attention(q, k, v)
  assert isinstance(res, AttentionOutput)
  explicit = attention(q, k, v, scale=1.0 / np.sqrt(q.shape[-1]))
  np.testing.assert_array_equal(np.asarray(res.out), np.asarray(explicit.out))
  assert not np.allclose(np.asarray(attention(q, k, v, scale=1.0).out), np.asarray(res.out))


# -------------------------------------------------------------------------------- validation

_Q = np.zeros((2, 8, 4, 16), np.float32)
_K = np.zeros((2, 6, 2, 16), np.float32)


@pytest.mark.parametrize("args, kwargs, exc, match", [
    ((_Q[0], _K, _K), {}, ValueError, "attention: q must have rank 4"),
    ((_Q.astype(np.int32), _K, _K), {}, TypeError, "attention: q must have a floating dtype"),
    ((_Q, _K.astype(np.float16), _K), {}, TypeError, "attention: k must have the same dtype"),
    ((_Q, _K, _K[:, :5]), {}, ValueError, "attention: k and v must have the same shape"),
    ((_Q, _K[:1], _K[:1]), {}, ValueError, "attention: k must have the batch size of q"),
    ((_Q, _K[..., :8], _K[..., :8]), {}, ValueError, "attention: k must have the head_dim"),
    ((_Q, np.zeros((2, 6, 3, 16), np.float32), np.zeros((2, 6, 3, 16), np.float32)), {},
     ValueError, "attention: k must have a number of heads dividing"),
    ((_Q, _K, _K), {"mask": np.ones((8, 6), bool)}, ValueError,
     "attention: mask must have rank 4"),
    ((_Q, _K, _K), {"mask": np.ones((1, 1, 8, 6), np.int32)}, TypeError,
     "attention: mask must be a boolean"),
    ((_Q, _K, _K), {"mask": np.ones((1, 2, 8, 6), bool)}, ValueError,
     r"attention: mask must have shape \[2 or 1, 4 or 1, 8, 6\]"),
    ((_Q, _K, _K), {"segment_ids": np.ones((2, 8), np.int32)}, ValueError,
     "attention: segment_ids must be a pair"),
    ((_Q, _K, _K), {"segment_ids": (np.ones((2, 8), np.int32),)}, ValueError,
     "attention: segment_ids must be an array"),
    ((_Q, _Q, _Q), {"segment_ids": [[1] * 8, [1] * 8]}, TypeError,
     r"attention: segment_ids must be an array, got list \(convert it with jnp.asarray\)"),
    ((_Q, _K, _K), {"segment_ids": (np.ones((2, 8), np.float32), np.ones((2, 6), np.int32))},
     TypeError, r"attention: segment_ids\[0\] \(q_segment_ids\) must have an integer dtype"),
    ((_Q, _K, _K), {"segment_ids": (np.ones((2, 8), np.int32), np.ones((2, 5), np.int32))},
     ValueError, r"attention: segment_ids\[1\] \(kv_segment_ids\) must have shape \[2, 6\]"),
    ((_Q, _Q, _Q), {"segment_ids": np.ones((2, 7), np.int32)}, ValueError,
     r"attention: segment_ids must have shape \[2, 8\]"),
    ((_Q, _K, _K), {"causal": 1}, TypeError, "attention: causal must be a Python bool"),
    ((_Q, _K, _K), {"scale": 0.0}, ValueError, "attention: scale must be > 0"),
    ((_Q, _K, _K), {"scale": "big"}, TypeError, "attention: scale must be a number"),
    ((_Q, _K, _K), {"block_sizes": 16}, TypeError, "attention: block_sizes must be None or a pair"),
    ((_Q, _K, _K), {"block_sizes": (16, 0)}, ValueError, r"attention: block_sizes\[1\] must be >= 1"),
    ((_Q, _K, _K), {"implementation": "cuda"}, ValueError, "attention: unknown implementation"),
])
def test_validation(args, kwargs, exc, match):
  with pytest.raises(exc, match=match):
    attention(*args, **kwargs)


def test_traced_scale_is_rejected_before_tracing_the_op():
  with pytest.raises(TypeError, match="attention: scale must be a static Python number"):
    jax.jit(lambda s: attention(_Q, _K, _K, scale=s))(0.5)
