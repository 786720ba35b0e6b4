"""Tests for the fused SPLADE/Sparton head (bottleneck_jax/efficiency/_sparton.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from bottleneck_jax.efficiency import (
    SpladeHead,
    flops_regularizer,
    l1_regularizer,
    lexical_max_pool,
    lexical_max_pool_with_indices,
)
from bottleneck_jax.kernels import testing as ktest

B, L, D, V = 4, 6, 16, 37  # V is not a multiple of any block size used below
LENGTHS = np.array([6, 1, 0, 4])  # full, length-1, all-masked, ragged


def _inputs(seed=0, b=B, l=L, d=D, v=V, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  h = jnp.asarray(rng.normal(size=(b, l, d)), dtype)
  w = jnp.asarray(rng.normal(size=(v, d)) / np.sqrt(d), dtype)
  bias = jnp.asarray(rng.normal(size=(v,)) * 0.5, jnp.float32)
  lengths = LENGTHS if b == B else rng.integers(0, l + 1, size=b)
  mask = jnp.asarray(np.arange(l)[None, :] < np.asarray(lengths)[:, None])
  return h, w, bias, mask


def _naive(h, w, bias, mask, activation):
  """Independent numpy loop: per (b, v), SPLADE's activation then max over kept positions."""
  h, w = np.asarray(h, np.float64), np.asarray(w, np.float64)
  bias = np.zeros(w.shape[0]) if bias is None else np.asarray(bias, np.float64)
  mask = np.asarray(mask)
  out = np.zeros((h.shape[0], w.shape[0]))
  idx = np.full((h.shape[0], w.shape[0]), -1)
  for b in range(h.shape[0]):
    for v in range(w.shape[0]):
      best, arg = -np.inf, -1
      for l in range(h.shape[1]):
        if mask[b, l]:
          z = float(h[b, l] @ w[v] + bias[v])
          if z > best:
            best, arg = z, l
      idx[b, v] = arg
      if arg < 0:
        out[b, v] = 0.0
      elif activation == "log1p_relu":
        out[b, v] = np.log1p(max(best, 0.0))
      elif activation == "relu":
        out[b, v] = max(best, 0.0)
      else:
        out[b, v] = best
  return out, idx


@pytest.mark.parametrize("activation", ["log1p_relu", "relu", "identity"])
def test_reference_and_xla_match_naive_loop(activation):
  h, w, bias, mask = _inputs()
  want, want_idx = _naive(h, w, bias, mask, activation)
  for impl in ("reference", "xla"):
    y, idx = lexical_max_pool_with_indices(h, w, bias, mask=mask, activation=activation,
                                           implementation=impl, block_size=8)
    assert y.dtype == jnp.float32 and idx.dtype == jnp.int32
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(idx, want_idx)
  assert np.all(np.asarray(y)[2] == 0.0)  # all-masked row
  assert np.all(np.asarray(idx)[2] == -1)


def _agree_fn(activation, with_bias, block_size):
  def fn(h, w, bias, mask, *, implementation):
    return lexical_max_pool_with_indices(h, w, bias if with_bias else None, mask=mask,
                                         activation=activation, implementation=implementation,
                                         block_size=block_size)
  return fn


@pytest.mark.kernel
@pytest.mark.parametrize("activation,with_bias,block", [("log1p_relu", True, 8),
                                                        ("relu", False, None),
                                                        ("identity", True, 8)])
def test_xla_agrees_with_reference(activation, with_bias, block):
  # block=None: one vocabulary block covering everything (no scan, only the static tail).
  ktest.assert_implementations_agree(_agree_fn(activation, with_bias, block), _inputs(1),
                                     implementations=("xla",), diff_argnums=(0, 1, 2))


@pytest.mark.kernel
@pytest.mark.parametrize("activation", ["log1p_relu", "identity"])
def test_pallas_interpret_agrees_with_reference(activation):
  args = _inputs(2, b=B, l=5, d=8, v=21)  # L not a multiple of the L tile, V not of BV=16
  ktest.assert_implementations_agree(_agree_fn(activation, True, 16), args,
                                     implementations=("pallas",), diff_argnums=(0, 1, 2))


@pytest.mark.kernel
def test_bf16_inputs_agree():
  args = _inputs(3, dtype=jnp.bfloat16)
  ktest.assert_implementations_agree(_agree_fn("log1p_relu", True, 8), args,
                                     implementations=("xla", "pallas"), diff_argnums=(0, 1, 2),
                                     rtol=2e-2, atol=2e-2)


def test_random_shapes_xla_vs_reference():
  rng = np.random.default_rng(4)
  for _ in range(2):
    b, l, v = ktest.random_shapes(rng, 3, low=2, high=9, not_multiple_of=4)
    h, w, bias, mask = _inputs(int(rng.integers(100)), b=b, l=l, d=4, v=v * 3)
    y = lexical_max_pool(h, w, bias, mask=mask, implementation="xla", block_size=4)
    want, _ = _naive(h, w, bias, mask, "log1p_relu")
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_backward_formula_and_check_grads():
  h, w, bias, mask = _inputs(5)
  f = lambda h, w, b: lexical_max_pool(h, w, b, mask=mask, implementation="xla", block_size=8)
  y, vjp = jax.vjp(f, h, w, bias)
  ybar = jnp.asarray(np.random.default_rng(6).normal(size=y.shape), jnp.float32)
  _, _, db = vjp(ybar)
  # db_v = sum_b g_bv with g = ybar * exp(-y) * 1[y > 0] (derived from the saved output only).
  yn = np.asarray(y, np.float64)
  g = np.asarray(ybar, np.float64) * np.exp(-yn) * (yn > 0)
  np.testing.assert_allclose(db, g.sum(0), rtol=1e-5, atol=1e-6)
  # Finite differences on the custom_vjp (continuous random data, away from ties).
  check_grads(f, (h, w, bias), order=1, modes=["rev"], atol=5e-2, rtol=5e-2)


def test_all_masked_row_zero_gradient_no_nan():
  h, w, bias, mask = _inputs(7)
  for activation, impl in (("log1p_relu", "xla"), ("identity", "xla"),
                           ("identity", "reference")):
    gh, gb = jax.jit(jax.grad(lambda h, b: jnp.sum(lexical_max_pool(
        h, w, b, mask=mask, activation=activation, implementation=impl) ** 2 + 1.0), (0, 1)))(
            h, bias)
    assert np.all(np.isfinite(gh)) and np.all(np.isfinite(gb))
    assert np.all(np.asarray(gh)[2] == 0.0)
    assert np.all(np.asarray(gh)[1, 1:] == 0.0)  # only position 0 of the length-1 row


def test_jit_vmap_leading_dims_and_default_mask():
  h, w, bias, mask = _inputs(8)
  h2 = jnp.stack([h, h[::-1]])
  m2 = jnp.stack([mask, mask[::-1]])
  f = jax.jit(lambda h, m: lexical_max_pool(h, w, bias, mask=m, implementation="xla",
                                            block_size=8))
  lead = f(h2, m2)
  vm = jax.vmap(f)(h2, m2)
  ref0 = lexical_max_pool(h, w, bias, mask=mask, implementation="reference")
  np.testing.assert_allclose(lead, vm, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(lead[0], ref0, rtol=1e-5, atol=1e-5)
  # mask=None keeps every position; rank-2 h is one sequence.
  full = lexical_max_pool(h[0], w, bias, implementation="xla")
  want, _ = _naive(h[:1], w, bias, np.ones((1, L), bool), "log1p_relu")
  np.testing.assert_allclose(full, want[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axis_type", [AxisType.Explicit, AxisType.Auto])
def test_sharded_mesh(axis_type):
  h, w, bias, mask = _inputs(9, b=8, v=40)
  # Exact ties on two devices' rows: a two-way tie (sparse path) and a three-way tie (the dense
  # exact path, taken per device).
  h = h.at[0, 2].set(h[0, 1]).at[5, 2].set(h[5, 0]).at[5, 3].set(h[5, 0])
  mask = mask.at[0].set(True).at[5].set(True)
  loss = lambda impl: (lambda h, w: jnp.sum(jnp.sin(lexical_max_pool(
      h, w, bias, mask=mask_s, implementation=impl, block_size=16))))
  mask_s = mask
  want, want_g = jax.value_and_grad(loss("reference"), (0, 1))(h, w)
  mesh = jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(axis_type,) * 2)
  with jax.set_mesh(mesh):
    hs = jax.device_put(h, P(("data", "fsdp")))
    mask_s = jax.device_put(mask, P(("data", "fsdp")))
    ws = jax.device_put(w, P("fsdp", None))  # a vocabulary-sharded table (FSDP)
    for impl in ("xla", "pallas"):
      val, g = jax.jit(jax.value_and_grad(loss(impl), (0, 1)))(hs, ws)
      np.testing.assert_allclose(val, want, rtol=1e-5)
      ktest.assert_trees_close(g, want_g, rtol=1e-5, atol=1e-5, what=impl)
      if axis_type == AxisType.Explicit:  # cotangents keep their primals' shardings
        assert jax.typeof(g[1]).sharding.spec == P("fsdp", None)
  # A 1-device Explicit mesh: no axis splits the batch.
  with jax.set_mesh(jax.make_mesh((1,), ("data",), axis_types=(axis_type,))):
    hs = jax.device_put(h, P("data"))
    mask_s = jax.device_put(mask, P("data"))
    _, g = jax.jit(jax.value_and_grad(loss("xla"), (0, 1)))(hs, w)
    ktest.assert_trees_close(g, want_g, rtol=1e-5, atol=1e-5, what="1-device mesh")


def test_regularizers_vs_numpy():
  r = np.random.default_rng(10).normal(size=(2, 5, 7)).astype(np.float32)
  flat = np.abs(r.reshape(-1, 7)).astype(np.float64)
  np.testing.assert_allclose(flops_regularizer(jnp.asarray(r)), np.sum(flat.mean(0) ** 2),
                             rtol=1e-6)
  np.testing.assert_allclose(l1_regularizer(jnp.asarray(r)), flat.sum(1).mean(), rtol=1e-6)
  g = jax.grad(flops_regularizer)(jnp.asarray(r[0]))
  want = 2 * np.abs(r[0]).mean(0) * np.sign(r[0]) / 5
  np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-7)


def test_splade_head():
  h, _, _, mask = _inputs(11)
  head = SpladeHead(D, V, implementation="xla", rngs=nnx.Rngs(0))
  y = head(h, mask)
  want, _ = _naive(h, head.weight[...], head.bias[...], mask, "log1p_relu")
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
  tied = SpladeHead(D, V, tied=True, use_bias=False, rngs=nnx.Rngs(0))
  emb = jnp.asarray(np.random.default_rng(12).normal(size=(V, D)), jnp.float32)
  want, _ = _naive(h, emb, None, mask, "log1p_relu")
  np.testing.assert_allclose(tied(h, mask, weight=emb), want, rtol=1e-5, atol=1e-5)
  grads = nnx.grad(lambda m: jnp.sum(m(h, mask)))(head)
  assert grads.weight[...].shape == (V, D) and np.any(np.asarray(grads.bias[...]) != 0)
  with pytest.raises(ValueError, match="weight must be given"):
    tied(h, mask)
  with pytest.raises(ValueError, match="weight must be None"):
    head(h, mask, weight=emb)
  with pytest.raises(ValueError, match="SpladeHead: weight must have shape"):
    tied(h, mask, weight=emb[:, :3])


def test_validation_errors():
  h, w, bias, mask = _inputs()
  with pytest.raises(ValueError, match=r"lexical_max_pool: w must have shape \[V, 16\]"):
    lexical_max_pool(h, w[:, :5])
  with pytest.raises(ValueError, match="lexical_max_pool: w must have rank 2"):
    lexical_max_pool(h, w[None])
  with pytest.raises(ValueError, match="lexical_max_pool: h must have rank >= 2"):
    lexical_max_pool(h[0, 0], w)
  with pytest.raises(ValueError, match="lexical_max_pool: mask must have shape"):
    lexical_max_pool(h, w, mask=mask[:, :3])
  with pytest.raises(TypeError, match="lexical_max_pool: mask must be a boolean or integer"):
    lexical_max_pool(h, w, mask=mask.astype(jnp.float32))
  with pytest.raises(TypeError, match="lexical_max_pool: h must have a floating dtype"):
    lexical_max_pool(h.astype(jnp.int32), w)
  with pytest.raises(TypeError, match="lexical_max_pool: w must have a floating dtype"):
    lexical_max_pool(h, w.astype(jnp.int32))
  with pytest.raises(ValueError, match="lexical_max_pool: bias must have shape"):
    lexical_max_pool(h, w, bias[:3])
  with pytest.raises(ValueError, match="lexical_max_pool: activation must be one of"):
    lexical_max_pool(h, w, activation="gelu")
  with pytest.raises(ValueError, match="unknown implementation 'cuda'"):
    lexical_max_pool(h, w, implementation="cuda")
  with pytest.raises(ValueError, match="implementation 'triton' is not available"):
    lexical_max_pool(h, w, implementation="triton")
  with pytest.raises(ValueError, match="lexical_max_pool: block_size must be >= 1"):
    lexical_max_pool(h, w, block_size=0)
  with pytest.raises(ValueError, match="need V >= 1 and L >= 1"):
    lexical_max_pool(h[:, :0], w)


@pytest.mark.kernel
def test_nan_logits_propagate_in_every_implementation():
  # DESIGN: NaNs are never silently swallowed. jnp.max/argmax propagate a NaN (first NaN row).
  h, w, bias, mask = _inputs(seed=3)
  h = h.at[0, 2, 0].set(jnp.nan)
  outs = {impl: lexical_max_pool_with_indices(h, w, bias, mask=mask, implementation=impl)
          for impl in ("reference", "xla", "pallas")}
  want_nan = np.isnan(np.asarray(outs["reference"][0]))
  assert want_nan[0].all() and not want_nan[1:].any()
  for impl, (y, idx) in outs.items():
    np.testing.assert_array_equal(np.isnan(np.asarray(y)), want_nan, err_msg=impl)
    np.testing.assert_array_equal(np.asarray(idx)[0], 2, err_msg=impl)


def test_bf16_bias_is_accepted_under_strict_promotion():
  h, w, bias, mask = _inputs(seed=4)
  want = lexical_max_pool(h, w, bias, mask=mask, implementation="reference")
  got = lexical_max_pool(h, w, bias.astype(jnp.bfloat16), mask=mask, implementation="xla")
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-2)


# ------------------------------------------------------------------------------------ ties, NaN


def _plain_head(h, w, bias, mask):
  """The head a user writes (autodiff splits a max's gradient equally among its ties)."""
  z = jnp.einsum("bld,vd->blv", h, w, preferred_element_type=jnp.float32) + bias
  act = jnp.log1p(jax.nn.relu(z))
  return jnp.max(jnp.where(mask[:, :, None], act, 0.0), axis=1)


def _tied_inputs(dtype=jnp.float32, copies=(2,), seed=13):
  """Rows of ``h`` repeated inside each sequence: exact ties of the raw logits."""
  h, w, bias, _ = _inputs(seed, dtype=jnp.float32)
  h = np.array(h)
  for b, n in enumerate(copies):
    for c in range(1, n):
      h[b, 1 + c] = h[b, 1]  # position 1 and its copies at 2, 3, ...
  mask = jnp.asarray(np.ones((B, L), bool))
  return jnp.asarray(h, dtype), w.astype(dtype), bias, mask


@pytest.mark.kernel
@pytest.mark.parametrize("copies", [(2, 2, 1, 2), (3, 2, 4, 1)])
def test_exact_ties_split_like_the_plain_head(copies):
  # (2, ...): two-way ties (sparse path); (3, 2, 4, ...): three- and four-way ties (dense exact
  # path). The gradient of each tied maximum is split equally, as jax.grad of jnp.max does.
  h, w, bias, mask = _tied_inputs(copies=copies)
  ybar = jnp.asarray(np.random.default_rng(14).normal(size=(B, V)), jnp.float32)
  want = jax.vjp(lambda h, w, b: _plain_head(h, w, b, mask), h, w, bias)[1](ybar)
  for impl in ("xla", "pallas"):
    y, vjp = jax.vjp(lambda h, w, b: lexical_max_pool(
        h, w, b, mask=mask, implementation=impl, block_size=8 if impl == "xla" else 16),
        h, w, bias)
    got = vjp(ybar)
    ktest.assert_trees_close(got, want, rtol=1e-5, atol=1e-5, what=impl)
  y, idx = lexical_max_pool_with_indices(h, w, bias, mask=mask, implementation="xla")
  for b, n in enumerate(copies):  # the ties are real: position 1 is a positive maximum
    assert n == 1 or np.any((np.asarray(idx)[b] == 1) & (np.asarray(y)[b] > 0))
  dh = np.asarray(got[0])
  for b, n in enumerate(copies):  # the copies received identical shares
    for c in range(1, n):
      np.testing.assert_array_equal(dh[b, 1 + c], dh[b, 1])
  assert np.abs(dh[0, 1]).sum() > 0


@pytest.mark.kernel
def test_tie_capacity_overflow_falls_back_to_dense(monkeypatch):
  from bottleneck_jax.efficiency import _lexical_pool
  h, w, bias, mask = _tied_inputs(copies=(2, 2, 2, 2))
  monkeypatch.setattr(_lexical_pool, "_TIE_CAPACITY", 3)
  ybar = jnp.asarray(np.random.default_rng(15).normal(size=(B, V)), jnp.float32)
  want = jax.vjp(lambda h, w, b: _plain_head(h, w, b, mask), h, w, bias)[1](ybar)
  got = jax.vjp(lambda h, w, b: lexical_max_pool(h, w, b, mask=mask, implementation="xla",
                                                 block_size=8), h, w, bias)[1](ybar)
  ktest.assert_trees_close(got, want, rtol=1e-5, atol=1e-5, what="overflow")


@pytest.mark.kernel
def test_bf16_rounding_ties():
  # Two f32 rows that differ below bf16 resolution become the same bf16 row: exact ties.
  h, w, bias, mask = _tied_inputs(copies=(1, 1, 1, 1))
  h = np.array(h)
  h[:, 1] = np.asarray(jnp.asarray(h[:, 1], jnp.bfloat16), np.float32)  # on the bf16 grid
  h[:, 4] = h[:, 1] * (1 + 2.0 ** -12)  # well inside half a bf16 ulp (2^-8 relative)
  hb = jnp.asarray(h, jnp.bfloat16)
  assert np.array_equal(np.asarray(hb[:, 4], np.float32), np.asarray(hb[:, 1], np.float32))
  assert not np.array_equal(h[:, 4], h[:, 1])
  wb = w.astype(jnp.bfloat16)
  ktest.assert_implementations_agree(_agree_fn("log1p_relu", True, 8), (hb, wb, bias, mask),
                                     implementations=("xla", "pallas"), diff_argnums=(0, 1, 2),
                                     rtol=2e-2, atol=2e-2)
  dh = jax.grad(lambda h: jnp.sum(lexical_max_pool(h, wb, bias, mask=mask,
                                                   implementation="xla")))(hb)
  np.testing.assert_array_equal(np.asarray(dh[:, 4], np.float32), np.asarray(dh[:, 1], np.float32))


def test_activation_rounding_ties_follow_the_raw_maximum():
  # Documented departure: logits 1e7 and 1e7 + 1 differ, but log1p rounds both to the same f32.
  # The plain head splits the gradient between them; lexical_max_pool gives it all to the larger
  # raw logit, exactly as autodiff of log1p(relu(max_l z)) does.
  h = jnp.asarray([[[1e7], [1e7 + 1.0], [3.0]]], jnp.float32)
  w = jnp.ones((1, 1), jnp.float32)
  bias = jnp.zeros((1,), jnp.float32)
  mask = jnp.ones((1, 3), bool)
  assert float(jnp.log1p(h[0, 0, 0])) == float(jnp.log1p(h[0, 1, 0]))
  raw = jax.grad(lambda h: jnp.sum(jnp.log1p(jax.nn.relu(jnp.max(h[..., 0], axis=1)))))(h)
  plain = jax.grad(lambda h: jnp.sum(_plain_head(h, w, bias, mask)))(h)
  np.testing.assert_allclose(np.asarray(plain)[0, :2, 0], 0.5 / (1 + 1e7), rtol=1e-5)
  for impl in ("reference", "xla", "pallas"):
    got = jax.jit(jax.grad(lambda h: jnp.sum(lexical_max_pool(h, w, bias, mask=mask,
                                                              implementation=impl))))(h)
    want = plain if impl == "reference" else raw
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, err_msg=impl)
  assert np.asarray(raw)[0, 0, 0] == 0.0 and np.asarray(raw)[0, 1, 0] > 0


@pytest.mark.kernel
@pytest.mark.parametrize("activation", ["log1p_relu", "identity"])
def test_nan_at_masked_positions_and_minus_inf_bias(activation):
  # A NaN hidden state at a masked position reaches no output or gradient (select, not multiply
  # by the mask); an all -inf bias entry gives y = 0 and zero gradient, never NaN.
  h, w, bias, mask = _inputs(16)
  bias = bias.at[3].set(-jnp.inf).at[20].set(-jnp.inf)
  clean = _agree_fn(activation, True, 8)
  h_nan = h.at[1, 3].set(jnp.nan).at[2, :].set(jnp.nan).at[3, 4:].set(jnp.nan)
  h_zero = jnp.where(mask[:, :, None], h, 0.0)
  ybar = jnp.asarray(np.random.default_rng(17).normal(size=(B, V)), jnp.float32)
  for impl in ("reference", "xla", "pallas"):
    def f(h, w, b, impl=impl):
      return clean(h, w, b, mask, implementation=impl)[0]
    (y, vjp), (y0, vjp0) = jax.vjp(f, h_nan, w, bias), jax.vjp(f, h_zero, w, bias)
    got, want = vjp(ybar), vjp0(ybar)
    for leaf in (y, *got):
      assert np.all(np.isfinite(np.asarray(leaf))), impl
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y0), err_msg=impl)
    ktest.assert_trees_close(got, want, rtol=0, atol=0, what=impl)
    assert np.all(np.asarray(y)[:, [3, 20]] == 0.0)
    assert np.all(np.asarray(got[1])[[3, 20]] == 0.0) and np.all(np.asarray(got[2])[[3, 20]] == 0)
    assert np.all(np.asarray(y)[2] == 0.0) and np.all(np.asarray(got[0])[2] == 0.0)  # empty row


def test_block_sizes_and_memory_against_the_plain_head():
  from bottleneck_jax.efficiency._lexical_pool import _block_sizes
  assert _block_sizes(32, 256, 768, 30522) == (256, 128)
  assert _block_sizes(2, 8, 16, 37) == (37, 37)  # one block when V is small
  assert _block_sizes(2, 8, 16, 37, 8) == (8, 8)
  b, l, d, v = 4, 64, 32, 32768  # compile only; plain 128 MiB of temporaries, fused 7.6 MiB
  specs = (jax.ShapeDtypeStruct((b, l, d), jnp.float32), jax.ShapeDtypeStruct((v, d), jnp.float32),
           jax.ShapeDtypeStruct((v,), jnp.float32), jax.ShapeDtypeStruct((b, l), jnp.bool_))

  def temp(f):
    g = jax.jit(jax.value_and_grad(lambda *a: jnp.sum(f(*a)), argnums=(0, 1, 2)))
    return g.lower(*specs).compile().memory_analysis().temp_size_in_bytes

  plain = temp(_plain_head)
  fused = temp(lambda h, w, bias, m: lexical_max_pool(h, w, bias, mask=m, implementation="xla"))
  assert fused * 8 < plain, (fused, plain)


def test_mixed_precision_inputs_compute_in_the_wider_dtype():
  # bf16 hidden states with an f32 table (strict promotion is on in the suite): computed in f32.
  h, w, bias, mask = _inputs(seed=18)
  hb = h.astype(jnp.bfloat16)
  want, _ = _naive(hb.astype(jnp.float32), w, bias, mask, "log1p_relu")
  got = lexical_max_pool(hb, w, bias, mask=mask, implementation="xla")
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
  dh = jax.grad(lambda h: jnp.sum(lexical_max_pool(h, w, bias, mask=mask)))(hb)
  assert dh.dtype == jnp.bfloat16
