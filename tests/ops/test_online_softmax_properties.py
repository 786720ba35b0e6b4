"""Property tests: every online-softmax / running-max op against its materialising reference
under random ``-inf`` and mask patterns.

The fused implementations carry a running maximum (``m``) across blocks, starting at ``-inf``;
the classic failure is ``exp(m - m') = exp(-inf - -inf) = NaN`` when a whole block is masked
(at the start, in the middle, at the end) or when a row is masked everywhere. Hypothesis draws
the patterns; the oracle is each op's ``"reference"`` implementation, which materialises the
full logit tensor and uses ``jax.nn.logsumexp`` / ``jnp.max`` (itself checked against NumPy and
optax in the ops' own test files). Shapes are fixed per op (one compilation each), blocks are
tiny so every pattern spans several blocks, and the draws are derandomised.

Ops: ``linear_cross_entropy`` / ``linear_logit_stats`` (xla, pallas), ``lexical_max_pool``
(xla, pallas), ``attention`` (xla, pallas).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bottleneck_jax.efficiency import lexical_max_pool
from bottleneck_jax.kernels import testing
from bottleneck_jax.ops import attention, linear_cross_entropy_with_aux

SETTINGS = settings(max_examples=8, deadline=None, derandomize=True, database=None)
FUSED = ("xla", "pallas")
IGN = -100


def _close(got, want, what, rtol=2e-5, atol=2e-5):
  """Equal up to tolerance, with NaN and +-inf required at exactly the same places."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN pattern")
  np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want), err_msg=f"{what}: +inf")
  np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=f"{what}: -inf")
  ok = np.isfinite(want)
  np.testing.assert_allclose(got[ok], want[ok], rtol=rtol, atol=atol, err_msg=what)


# ------------------------------------------------------------------ linear cross-entropy

CE_N, CE_D, CE_V, CE_BLOCK = 6, 8, 16, 4      # 4 vocabulary blocks of 4 words


@functools.cache
def _ce_fn(impl):
  def loss(x, w, b, y):
    out = linear_cross_entropy_with_aux(x, w, y, bias=b, reduction="none", implementation=impl,
                                        block_size=CE_BLOCK)
    return out.loss, out.lse

  def mean_and_grads(x, w, b, y):
    f = lambda x, w: linear_cross_entropy_with_aux(
        x, w, y, bias=b, implementation=impl, block_size=CE_BLOCK).loss
    return jax.value_and_grad(f, argnums=(0, 1))(x, w)

  return jax.jit(loss), jax.jit(mean_and_grads)


@st.composite
def _ce_case(draw):
  seed = draw(st.integers(0, 2 ** 16))
  masked_blocks = draw(st.lists(st.booleans(), min_size=4, max_size=4))
  extra = draw(st.lists(st.integers(0, CE_V - 1), max_size=3))
  ignored = draw(st.lists(st.booleans(), min_size=CE_N, max_size=CE_N))
  picks = draw(st.lists(st.integers(0, CE_V - 1), min_size=CE_N, max_size=CE_N))
  return seed, masked_blocks, extra, ignored, picks


@SETTINGS
@given(_ce_case())
def test_linear_cross_entropy_random_minus_inf_blocks_and_ignored_rows(case):
  seed, masked_blocks, extra, ignored, picks = case
  k = jax.random.split(jax.random.key(seed), 2)
  x = jax.random.normal(k[0], (CE_N, CE_D), jnp.float32)
  w = jax.random.normal(k[1], (CE_V, CE_D), jnp.float32) * 0.5
  dead = np.repeat(np.array(masked_blocks), CE_BLOCK)
  dead[extra] = True
  b = jnp.where(jnp.asarray(dead), -jnp.inf, 0.0).astype(jnp.float32)
  allowed = np.flatnonzero(~dead)
  # Labels among the allowed words (any word when every word is masked: NaN loss expected).
  pool = allowed if len(allowed) else np.arange(CE_V)
  y = np.array([pool[p % len(pool)] for p in picks])
  y[np.array(ignored)] = IGN
  y = jnp.asarray(y)
  ref_loss, ref_lse = _ce_fn("reference")[0](x, w, b, y)
  ref_mean, ref_g = _ce_fn("reference")[1](x, w, b, y)
  if len(allowed) == 0:        # every logit -inf: valid rows NaN, ignored rows 0
    assert np.all(np.isnan(np.asarray(ref_loss)[~np.array(ignored)]))
  for impl in FUSED:
    loss, lse = _ce_fn(impl)[0](x, w, b, y)
    _close(loss, ref_loss, f"{impl} loss")
    _close(lse, ref_lse, f"{impl} lse")
    mean, g = _ce_fn(impl)[1](x, w, b, y)
    _close(mean, ref_mean, f"{impl} mean")
    if np.isfinite(float(ref_mean)):
      testing.assert_trees_close(g, ref_g, rtol=1e-4, atol=1e-6, what=f"{impl} grads")


# ------------------------------------------------------------------ lexical max-pool

LP_B, LP_L, LP_D, LP_V, LP_BLOCK = 3, 5, 8, 12, 4


@functools.cache
def _pool_fn(impl, activation):
  def f(h, w, b, mask):
    return lexical_max_pool(h, w, b, mask=mask, activation=activation, implementation=impl,
                            block_size=LP_BLOCK)

  def value_and_grads(h, w, b, mask, ct):
    y, vjp = jax.vjp(lambda h, w, b: f(h, w, b, mask), h, w, b)
    return y, vjp(ct)

  return jax.jit(value_and_grads)


@st.composite
def _pool_case(draw):
  seed = draw(st.integers(0, 2 ** 16))
  mask = draw(st.lists(st.booleans(), min_size=LP_B * LP_L, max_size=LP_B * LP_L))
  empty_row = draw(st.integers(-1, LP_B - 1))            # -1: no forced all-masked row
  dead_blocks = draw(st.lists(st.booleans(), min_size=3, max_size=3))
  activation = draw(st.sampled_from(["log1p_relu", "relu", "identity"]))
  return seed, mask, empty_row, dead_blocks, activation


@SETTINGS
@given(_pool_case())
def test_lexical_max_pool_random_masks_and_minus_inf_bias(case):
  seed, mask, empty_row, dead_blocks, activation = case
  k = jax.random.split(jax.random.key(seed), 3)
  h = jax.random.normal(k[0], (LP_B, LP_L, LP_D), jnp.float32)
  w = jax.random.normal(k[1], (LP_V, LP_D), jnp.float32) * 0.5
  dead = np.repeat(np.array(dead_blocks), LP_BLOCK)
  b = jnp.where(jnp.asarray(dead), -jnp.inf, 0.1).astype(jnp.float32)
  m = np.array(mask).reshape(LP_B, LP_L)
  if empty_row >= 0:
    m[empty_row] = False
  h = jnp.where(jnp.asarray(~m)[..., None], jnp.nan, h)   # NaN at masked positions: selected out
  ct = jax.random.normal(k[2], (LP_B, LP_V), jnp.float32)
  ref_y, ref_g = _pool_fn("reference", activation)(h, w, b, jnp.asarray(m), ct)
  for impl in FUSED:
    y, g = _pool_fn(impl, activation)(h, w, b, jnp.asarray(m), ct)
    _close(y, ref_y, f"{impl} {activation} y")
    for name, a, r in zip(("dh", "dw", "db"), g, ref_g):
      _close(a, r, f"{impl} {activation} {name}", rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ attention

AT_B, AT_L, AT_H, AT_D, AT_BLOCK = 1, 8, 2, 4, 2     # 4 key blocks of 2


@functools.cache
def _attn_fn(impl, causal):
  def value_and_grads(q, k, v, mask, ct_out, ct_lse):
    def f(q, k, v):
      res = attention(q, k, v, mask=mask, causal=causal, block_sizes=(AT_BLOCK, AT_BLOCK),
                      implementation=impl)
      return res.out, res.lse
    (out, lse), vjp = jax.vjp(f, q, k, v)
    # The lse cotangent is zero where lse = -inf (no key): it has no defined derivative there.
    return (out, lse), vjp((ct_out, jnp.where(jnp.isfinite(lse), ct_lse, 0.0)))

  return jax.jit(value_and_grads)


@st.composite
def _attn_case(draw):
  seed = draw(st.integers(0, 2 ** 16))
  mask = draw(st.lists(st.booleans(), min_size=AT_H * AT_L * AT_L, max_size=AT_H * AT_L * AT_L))
  dead_key_blocks = draw(st.lists(st.booleans(), min_size=4, max_size=4))
  dead_query = draw(st.integers(-1, AT_L - 1))
  causal = draw(st.booleans())
  return seed, mask, dead_key_blocks, dead_query, causal


@SETTINGS
@given(_attn_case())
def test_attention_random_masks_with_dead_key_blocks_and_queries(case):
  seed, mask, dead_key_blocks, dead_query, causal = case
  ks = jax.random.split(jax.random.key(seed), 5)
  q, k, v = (jax.random.normal(kk, (AT_B, AT_L, AT_H, AT_D), jnp.float32) for kk in ks[:3])
  m = np.array(mask).reshape(1, AT_H, AT_L, AT_L)
  m[..., np.repeat(np.array(dead_key_blocks), AT_BLOCK)] = False   # whole key blocks masked
  if dead_query >= 0:
    m[..., dead_query, :] = False                                  # a query with no key
  m = jnp.asarray(m)
  ct_out = jax.random.normal(ks[3], (AT_B, AT_L, AT_H, AT_D), jnp.float32)
  ct_lse = jax.random.normal(ks[4], (AT_B, AT_H, AT_L), jnp.float32)
  ref, ref_g = _attn_fn("reference", causal)(q, k, v, m, ct_out, ct_lse)
  for impl in FUSED:
    got, g = _attn_fn(impl, causal)(q, k, v, m, ct_out, ct_lse)
    _close(got[0], ref[0], f"{impl} out")
    _close(got[1], ref[1], f"{impl} lse")
    for name, a, r in zip(("dq", "dk", "dv"), g, ref_g):
      _close(a, r, f"{impl} {name}", rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("impl", FUSED)
def test_cross_entropy_every_block_masked_but_one_word(impl):
  """Deterministic corner: only the very last word is allowed (every earlier block -inf)."""
  x = jax.random.normal(jax.random.key(1), (CE_N, CE_D), jnp.float32)
  w = jax.random.normal(jax.random.key(2), (CE_V, CE_D), jnp.float32)
  b = jnp.full((CE_V,), -jnp.inf, jnp.float32).at[-1].set(0.0)
  y = jnp.full((CE_N,), CE_V - 1, jnp.int32)
  loss, lse = _ce_fn(impl)[0](x, w, b, y)
  np.testing.assert_allclose(loss, 0.0, atol=1e-6)          # p(last word) = 1
  np.testing.assert_allclose(lse, x @ w[-1], rtol=1e-5, atol=1e-6)
