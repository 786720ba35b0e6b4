"""Tests for bottleneck_jax/efficiency/_wta_crs.py (WTA-CRS sampled weight gradient).

Independent references: closed forms (budget, probabilities, sampler weights), a naive float64
numpy re-implementation of the adaptive-c rule, ``jax.grad`` of a plain ``x @ w + b`` for the
exact parts, hand-computed gradient row norms, and Monte-Carlo statistics for the stochastic
weight gradient (its mean against the exact ``Xᵀ G``; WTA-CRS variance below plain CRS).

All stochastic tests share one shape (n = 64 rows, d_in = 4, d_out = 3, k = 19) so that the
jitted functions compile once per estimator.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.test_util import check_grads

from bottleneck_jax import efficiency as W

N, D_IN, D_OUT = 64, 4, 3
K = 19  # budget(64, ratio=0.3, minimal_k=10) = max(floor(19.2), 10)
M = 2000  # Monte-Carlo draws


def _problem(seed=0):
  rng = np.random.default_rng(seed)
  # Heavy-tailed row norms (Pareto), as in the activations of a fine-tuned transformer.
  x = (rng.standard_normal((N, D_IN)) * (rng.pareto(1.2, (N, 1)) + 0.05)).astype(np.float32)
  w = rng.standard_normal((D_IN, D_OUT)).astype(np.float32)
  b = rng.standard_normal((D_OUT,)).astype(np.float32)
  g = rng.standard_normal((N, D_OUT)).astype(np.float32)
  return x, w, b, g


@pytest.fixture(autouse=True)
def _full_f32_matmuls():
  # Exact comparisons at rtol 1e-5 need full f32 dots on GPU too (TF32 is the default there).
  with jax.default_matmul_precision("highest"):
    yield


X, WK, B, G = _problem()
EXACT_DW = X.astype(np.float64).T @ G.astype(np.float64)  # [d_in, d_out]


def _dw(key, estimator, grad_norms=None):
  _, vjp = jax.vjp(lambda w: W.wta_crs_linear(X, w, B, key=key, estimator=estimator,
                                              grad_norms=grad_norms), WK)
  return vjp(G)[0]


@jax.jit
def _mc_wta_crs(keys, grad_norms):
  return {e: jax.vmap(lambda k, e=e: _dw(k, e, grad_norms))(keys) for e in ("wta", "crs")}


def _mc(keys, grad_norms=None):
  # Full f32 matmuls: on GPU the default (TF32) rounding would be a bias of many standard
  # errors for the deterministic rows, which WTA-CRS adds exactly in every draw.
  with jax.default_matmul_precision("highest"):
    out = _mc_wta_crs(keys, grad_norms)
  return {e: np.asarray(v, np.float64) for e, v in out.items()}
KEYS = jax.random.split(jax.random.key(1234), M)


def _naive_adaptive_c(p, k):
  p = np.asarray(p, np.float64)
  p = p / p.sum()
  top = np.sort(p)[::-1][:k]
  best, best_c = math.inf, 0
  for c in range(1, k):
    score = (1.0 - top[:c].sum()) / (k - c)
    if score < best:
      best, best_c = score, c
  return 0 if 1.0 / k < best else best_c


# ----------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize("n,ratio,minimal_k,want", [
    (1024, 0.3, 10, 307),   # the test plan's Monte-Carlo setting
    (64, 0.3, 10, 19),
    (20, 0.3, 10, 10),      # minimal_k wins
    (7, 0.3, 10, 7),        # capped at n
    (100, 1.0, 10, 100),
    (10, 0.05, 1, 1),
])
def test_budget_closed_form(n, ratio, minimal_k, want):
  assert W.budget(n, ratio=ratio, minimal_k=minimal_k) == want


def test_sampling_probs_matches_closed_form_and_fallbacks():
  x = np.array([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0], [1.0, 0.0]], np.float32)   # norms 5,1,10,1
  gn = np.array([1.0, 4.0, 0.5, 0.0], np.float32)
  p = np.asarray(W.sampling_probs(x, gn))
  want = np.array([5.0, 4.0, 5.0, 0.0]) / 14.0
  np.testing.assert_allclose(p, want, atol=1e-5)
  assert p[3] > 0  # the floor keeps a stale-zero row drawable
  np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-6)
  # No norms, or all-zero norms: p ∝ ‖x_i‖.
  for none_like in (None, np.zeros(4, np.float32)):
    np.testing.assert_allclose(W.sampling_probs(x, none_like), np.array([5, 1, 10, 1]) / 17.0,
                               atol=1e-5)
  # All-zero x: uniform. Leading batch dims flatten; norms may come as [*batch] or [n].
  np.testing.assert_allclose(W.sampling_probs(np.zeros((2, 2, 3), np.float32)), np.full(4, .25))
  p3 = W.sampling_probs(x.reshape(2, 2, 2), gn.reshape(2, 2))
  np.testing.assert_allclose(p3, want, atol=1e-5)


def test_adaptive_c_matches_naive_numpy_rule():
  rng = np.random.default_rng(0)
  fn = jax.jit(lambda p: W.adaptive_c(jax.lax.top_k(p / p.sum(), K)[0]))
  got, want = [], []
  for alpha in (0.05, 0.1, 0.3, 1.0, 3.0, 30.0):
    for _ in range(3):
      p = rng.dirichlet(np.full(N, alpha)).astype(np.float32)
      got.append(int(fn(jnp.asarray(p))))
      want.append(_naive_adaptive_c(p, K))
  assert got == want
  assert max(want) > 0 and min(want) == 0   # both branches of the rule were exercised
  # Closed forms: uniform p -> c = 0 (score(c) > 1/k for k < n); one dominant row -> c >= 1.
  assert int(fn(jnp.ones(N))) == 0
  assert int(fn(jnp.asarray(np.r_[1000.0, np.ones(N - 1)].astype(np.float32)))) >= 1
  assert int(W.adaptive_c(jnp.array([1.0]))) == 0  # k = 1: nothing to keep deterministically


def test_wta_sample_structure():
  p = np.array([0.05, 0.4, 0.05, 0.3, 0.1, 0.1], np.float32)
  wta = jax.jit(W.wta_crs_sample, static_argnames="k")   # c is traced: one compilation
  s = wta(jnp.asarray(p), k=4, key=jax.random.key(0), c=2)
  idx, sc = np.asarray(s.indices), np.asarray(s.scales)
  assert int(s.num_deterministic) == 2
  np.testing.assert_array_equal(idx[:2], [1, 3])             # top-2 rows, in order
  np.testing.assert_array_equal(sc[:2], [1.0, 1.0])
  assert not set(idx[2:]) & {1, 3}                             # draws avoid C
  resid = 1.0 - 0.4 - 0.3
  np.testing.assert_allclose(sc[2:], resid / (2 * p[idx[2:]]), rtol=1e-5)   # 1/(s·q_j)
  # c = 0 is plain CRS: scales 1/(k p_j).
  s0 = wta(jnp.asarray(p), k=4, key=jax.random.key(1), c=0)
  np.testing.assert_allclose(s0.scales, 1.0 / (4 * p[np.asarray(s0.indices)]), rtol=1e-5)
  c = W.crs_sample(jnp.asarray(p), k=5, key=jax.random.key(2))
  np.testing.assert_allclose(c.scales, 1.0 / (5 * p[np.asarray(c.indices)]), rtol=1e-5)
  assert int(c.num_deterministic) == 0


@pytest.mark.parametrize("sampler", ["crs", "wta"])
def test_samplers_weight_every_row_by_one_in_expectation(sampler):
  # Unbiasedness at the sampler level: E[Σ_t scale_t · e_{idx_t}] = 1 for every row.
  rng = np.random.default_rng(1)
  # A few dominant rows (so WTA keeps some deterministically) and a drawable bulk.
  p = jnp.asarray(np.r_[50.0, 30.0, 20.0, rng.uniform(0.5, 1.5, N - 3)].astype(np.float32))
  draw = W.crs_sample if sampler == "crs" else W.wta_crs_sample

  def weights(key):
    s = draw(p, k=K, key=key)
    return jnp.zeros(N).at[s.indices].add(s.scales)

  w = np.asarray(jax.jit(jax.vmap(weights))(KEYS), np.float64)
  mean, se = w.mean(0), w.std(0) / np.sqrt(M)
  z = np.abs(mean - 1.0) / np.maximum(se, 1e-9)
  assert z.max() < 4.5, (sampler, z.max())
  if sampler == "wta":   # the deterministic rows carry weight exactly 1 in every draw
    assert np.sum(se < 1e-9) >= 1


# ----------------------------------------------------------------------------- the linear layer


@pytest.fixture(scope="module")
def mc_estimates():
  return _mc(KEYS)


def test_weight_gradient_is_unbiased(mc_estimates):
  for est, e in mc_estimates.items():
    mean, se = e.mean(0), e.std(0) / np.sqrt(M)
    z = np.abs(mean - EXACT_DW) / se
    assert z.max() < 4.0, (est, z.max())
    # The test has power: a 10% bias would be caught.
    assert (np.abs(0.9 * mean - EXACT_DW) / se).max() > 4.0
  assert not np.allclose(mc_estimates["wta"][0], EXACT_DW, rtol=1e-3)  # it is stochastic


def test_wta_variance_below_crs(mc_estimates):
  rel = {e: np.mean(np.sum((v - EXACT_DW) ** 2, axis=(1, 2))) / np.sum(EXACT_DW ** 2)
         for e, v in mc_estimates.items()}
  assert rel["wta"] < 0.5 * rel["crs"], rel


def test_unbiased_with_stale_grad_norms():
  # p ∝ ‖x_i‖·‖g_i^{prev}‖ with cached norms unrelated to the current G stays unbiased. (A
  # cached norm of exactly 0 leaves only the 1e-6 floor: unbiased in theory, but such a row is
  # practically never drawn, so Monte Carlo cannot confirm it; see sampling_probs.)
  rng = np.random.default_rng(3)
  stale = (rng.exponential(1.0, N) + 0.05).astype(np.float32)
  for est, e in _mc(KEYS, jnp.asarray(stale)).items():
    z = np.abs(e.mean(0) - EXACT_DW) / (e.std(0) / np.sqrt(M))
    assert z.max() < 4.0, (est, z.max())


def _plain(x, w, b):
  return x @ w + b


def test_exact_modes_and_exact_dx_db_and_probe():
  loss_w = lambda x, w, b, probe, **kw: jnp.sum(jnp.sin(
      W.wta_crs_linear(x, w, b, key=jax.random.key(7), probe=probe, **kw)))
  loss_p = lambda x, w, b: jnp.sum(jnp.sin(_plain(x, w, b)))
  x3 = X.reshape(4, 16, D_IN)
  ref = jax.grad(loss_p, argnums=(0, 1, 2))(x3, WK, B)
  norms = np.linalg.norm(np.cos(np.asarray(_plain(x3, WK, B), np.float64)), axis=-1)  # ‖g_i‖
  probe = jnp.zeros((4, 16))
  grad = jax.jit(jax.grad(loss_w, argnums=(0, 1, 2, 3)),
                 static_argnames=("estimator", "ratio"))
  for kw in ({"estimator": "exact"}, {"ratio": 1.0}, {"estimator": "wta"}, {"estimator": "crs"}):
    dx, dw, db, dprobe = grad(x3, WK, B, probe, **kw)
    np.testing.assert_allclose(dx, ref[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(db, ref[2], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dprobe, norms, rtol=1e-4)
    if "ratio" in kw or kw["estimator"] == "exact":
      np.testing.assert_allclose(dw, ref[1], rtol=1e-5, atol=1e-5)
    else:
      assert not np.allclose(dw, ref[1], rtol=1e-3)
  y = W.wta_crs_linear(x3, WK, B, key=0)
  np.testing.assert_allclose(y, _plain(x3, WK, B), rtol=1e-6, atol=1e-6)   # forward is exact
  y_nb = W.wta_crs_linear(X, WK, key=0)
  np.testing.assert_allclose(y_nb, X @ WK, rtol=1e-6, atol=1e-6)


def test_check_grads():
  # The weight gradient of the sampled estimator is stochastic, so finite differences cannot
  # check it (they see the exact derivative); the exact estimator is checked in full, and for
  # the sampled one only x and b, whose cotangents are exact.
  x, w, b = X[:12], WK, B
  check_grads(jax.jit(lambda x, w, b: W.wta_crs_linear(x, w, b, key=1, estimator="exact")),
              (x, w, b), order=1, modes=["rev"], atol=2e-2, rtol=2e-2)
  check_grads(jax.jit(lambda x, b: W.wta_crs_linear(x, w, b, key=1, ratio=0.3, minimal_k=4)),
              (x, b), order=1, modes=["rev"], atol=2e-2, rtol=2e-2)


def test_residual_memory_scales_with_ratio():
  # Count the bytes that the VJP closure keeps alive (everything the backward needs).
  def saved_bytes(ratio, estimator="wta"):
    f = lambda x, w: W.wta_crs_linear(x, w, key=0, ratio=ratio, estimator=estimator)
    residuals = jax.eval_shape(lambda x, w: jax.vjp(f, x, w)[1], X, WK)   # no compilation
    return sum(math.prod(l.shape) * l.dtype.itemsize for l in jax.tree.leaves(residuals))

  w_bytes = WK.size * 4
  full = saved_bytes(1.0) - w_bytes
  sampled = saved_bytes(0.3) - w_bytes
  assert full == N * D_IN * 4                      # all of x
  assert sampled == K * D_IN * 4 + K * 4           # k pre-scaled rows + k int32 indices
  assert saved_bytes(0.3, "exact") - w_bytes == full
  assert sampled / full == pytest.approx(K / N * (1 + 1 / D_IN))


def test_jit_vmap_match_eager_loop():
  xs = jnp.asarray(X.reshape(4, 16, D_IN))
  keys = jax.random.split(jax.random.key(5), 4)
  f = lambda x, key: jax.grad(lambda w: jnp.sum(
      W.wta_crs_linear(x, w, key=key, ratio=0.3, minimal_k=4) ** 2))(WK)
  batched = jax.jit(jax.vmap(f))(xs, keys)
  f_jit = jax.jit(f)
  looped = np.stack([f_jit(xs[i], keys[i]) for i in range(4)])
  np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-5)


def test_bf16_runs_and_dx_is_exact():
  xb, wb = jnp.asarray(X, jnp.bfloat16), jnp.asarray(WK, jnp.bfloat16)
  @jax.jit
  def fwd_bwd(x, w, g):
    y, vjp = jax.vjp(lambda x, w: W.wta_crs_linear(x, w, key=0), x, w)
    return (y, *vjp(g))

  y, dx, dw = fwd_bwd(xb, wb, jnp.asarray(G, jnp.bfloat16))
  assert y.dtype == dx.dtype == dw.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(dx, np.float32),
                             np.asarray(jnp.asarray(G, jnp.bfloat16), np.float32)
                             @ np.asarray(wb, np.float32).T, rtol=2e-2, atol=2e-2)


# ----------------------------------------------------------------------------- NNX module


def test_module_equals_pure_function_and_nnx_linear_layout():
  layer = W.WTACRSLinear(D_IN, D_OUT, use_grad_norms=False, rngs=nnx.Rngs(0))
  ref = nnx.Linear(D_IN, D_OUT, rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(layer.kernel[...], ref.kernel[...])   # same init and layout
  key = jax.random.key(9)

  def via_module(w):
    layer.kernel[...] = w
    return jnp.sum(layer(X, rngs=key) ** 2)

  def via_pure(w):
    return jnp.sum(W.wta_crs_linear(X, w, layer.bias[...], key=key) ** 2)

  np.testing.assert_allclose(via_module(WK), via_pure(WK), rtol=1e-6)
  g_mod = nnx.jit(nnx.grad(lambda m, key: jnp.sum(m(X, rngs=key) ** 2)))(layer, key)
  np.testing.assert_allclose(g_mod["kernel"][...], jax.jit(jax.grad(via_pure))(WK), rtol=1e-5)
  # Without an explicit key the module draws fresh keys from its stream: two calls differ.
  grad_stream = nnx.jit(nnx.grad(lambda m: jnp.sum(m(X) ** 2)))
  g1 = grad_stream(layer)["kernel"][...]
  g2 = grad_stream(layer)["kernel"][...]
  assert not np.allclose(g1, g2)
  assert layer.grad_norms is None


def test_train_step_caches_grad_norms():
  model = W.WTACRSLinear(D_IN, D_OUT, use_grad_norms=True, num_rows=N, rngs=nnx.Rngs(0))
  # The cache has its final shape from construction on, so a checkpoint restores into the
  # abstract model of the constructor.
  abstract = nnx.eval_shape(lambda: W.WTACRSLinear(D_IN, D_OUT, use_grad_norms=True,
                                                   num_rows=N, rngs=nnx.Rngs(0)))
  assert nnx.state(abstract, W.WTACRSGradNorms)["grad_norms"].get_value().shape == (N,)
  opt = nnx.Optimizer(model, optax.sgd(0.01), wrt=nnx.Param)
  diff = nnx.DiffState(0, nnx.Any(nnx.Param, W.WTACRSGradNorms))
  x, target = jnp.asarray(X), jnp.asarray(G)

  @nnx.jit
  def step(model, opt):
    loss_fn = lambda m: 0.5 * jnp.sum((m(x) - target) ** 2)
    loss, grads = nnx.value_and_grad(loss_fn, argnums=diff)(model)
    grads = W.store_grad_norms(model, grads)
    opt.update(model, grads)
    return loss

  np.testing.assert_array_equal(model.grad_norms[...], 0.0)  # first step: p ∝ ‖x_i‖
  k0, b0 = np.asarray(model.kernel[...]), np.asarray(model.bias[...])
  step(model, opt)                       # the probe cotangent lands in the cache
  want = np.linalg.norm(X @ k0 + b0 - G, axis=-1)   # ‖g_i‖ of the first step's loss
  np.testing.assert_allclose(model.grad_norms[...], want, rtol=1e-4)
  k1, b1 = np.asarray(model.kernel[...]), np.asarray(model.bias[...])
  step(model, opt)
  want = np.linalg.norm(X @ k1 + b1 - G, axis=-1)   # ‖g_i‖ of the second step's loss
  np.testing.assert_allclose(model.grad_norms[...], want, rtol=1e-4)
  assert not np.allclose(k1, k0) and not np.allclose(b1, b0)
  # The cache is not a Param: the optimizer never sees it.
  assert "grad_norms" not in nnx.state(model, nnx.Param)


# ----------------------------------------------------------------------------- validation


def test_validation_errors():
  x, w, key = jnp.asarray(X), jnp.asarray(WK), jax.random.key(0)
  p = jnp.ones(5) / 5
  cases = [
      (lambda: W.budget(0), ValueError, "budget: n must be >= 1"),
      (lambda: W.budget(1.5), TypeError, "budget: n must be an int"),
      (lambda: W.budget(10, ratio=0.0), ValueError, "budget: ratio must be > 0"),
      (lambda: W.budget(10, ratio=1.5), ValueError, "budget: ratio must be <= 1"),
      (lambda: W.budget(10, minimal_k=0), ValueError, "budget: minimal_k must be >= 1"),
      (lambda: W.sampling_probs(jnp.ones(3)), ValueError, "sampling_probs: x must have rank >= 2"),
      (lambda: W.sampling_probs(jnp.ones((3, 2), jnp.int32)), TypeError,
       "sampling_probs: x must have a floating dtype"),
      (lambda: W.sampling_probs(x, jnp.ones(3)), ValueError,
       r"sampling_probs: grad_norms must have shape \[64\]"),
      (lambda: W.sampling_probs(x, jnp.ones(N, jnp.int32)), TypeError,
       "sampling_probs: grad_norms must have a floating dtype"),
      (lambda: W.crs_sample(jnp.ones((2, 2)), k=1, key=key), ValueError,
       "crs_sample: p must have rank 1"),
      (lambda: W.crs_sample(jnp.ones(3, jnp.int32), k=1, key=key), TypeError,
       "crs_sample: p must have a floating dtype"),
      (lambda: W.crs_sample(jnp.ones(0), k=1, key=key), ValueError,
       "crs_sample: p must have at least one entry"),
      (lambda: W.crs_sample(p, k=0, key=key), ValueError, "crs_sample: k must be >= 1"),
      (lambda: W.crs_sample(p, k=2.0, key=key), TypeError, "crs_sample: k must be an int"),
      (lambda: W.crs_sample(p, k=2, key="k"), TypeError, "crs_sample: key must be a jax.random"),
      (lambda: W.wta_crs_sample(p, k=6, key=key), ValueError, "wta_crs_sample: k must be <= 5"),
      (lambda: W.wta_crs_sample(p, k=3, key=key, c=3), ValueError,
       "wta_crs_sample: c must be <= 2"),
      (lambda: W.wta_crs_sample(p, k=3, key=key, c=-1), ValueError,
       "wta_crs_sample: c must be >= 0"),
      (lambda: W.wta_crs_sample(p, k=3, key=key, c=1.0), TypeError,
       "wta_crs_sample: c must be an int"),
      (lambda: W.wta_crs_sample(p, k=3, key=key, c=jnp.float32(1)), TypeError,
       "wta_crs_sample: c must be an int"),
      (lambda: W.wta_crs_linear(jnp.ones(4), w, key=key), ValueError,
       "wta_crs_linear: x must have rank >= 2"),
      (lambda: W.wta_crs_linear(x.astype(jnp.int32), w, key=key), TypeError,
       "wta_crs_linear: x must have a floating dtype"),
      (lambda: W.wta_crs_linear(jnp.ones((0, D_IN)), w, key=key), ValueError,
       "wta_crs_linear: x must have at least one row"),
      (lambda: W.wta_crs_linear(x, jnp.ones(4), key=key), ValueError,
       "wta_crs_linear: w must have rank 2"),
      (lambda: W.wta_crs_linear(x, w.T, key=key), ValueError,
       r"wta_crs_linear: w must have shape \[4, d_out\]"),
      (lambda: W.wta_crs_linear(x, w.astype(jnp.bfloat16), key=key), TypeError,
       "wta_crs_linear: w must have the dtype of x"),
      (lambda: W.wta_crs_linear(x, w.astype(jnp.int32), key=key), TypeError,
       "wta_crs_linear: w must have a floating dtype"),
      (lambda: W.wta_crs_linear(x, w, jnp.ones(4), key=key), ValueError,
       r"wta_crs_linear: b must have shape \[3\]"),
      (lambda: W.wta_crs_linear(x, w, jnp.ones((1, 3)), key=key), ValueError,
       "wta_crs_linear: b must have rank 1"),
      (lambda: W.wta_crs_linear(x, w, jnp.ones(3, jnp.bfloat16), key=key), TypeError,
       "wta_crs_linear: b must have the dtype of x"),
      (lambda: W.wta_crs_linear(x, w, key=key, estimator="topk"), ValueError,
       "wta_crs_linear: estimator must be one of"),
      (lambda: W.wta_crs_linear(x, w, key=key, ratio=0.0), ValueError,
       "wta_crs_linear: ratio must be > 0"),
      (lambda: W.wta_crs_linear(x, w, key=key, ratio=1.2), ValueError,
       "wta_crs_linear: ratio must be <= 1"),
      (lambda: W.wta_crs_linear(x, w, key=key, minimal_k=0), ValueError,
       "wta_crs_linear: minimal_k must be >= 1"),
      (lambda: W.wta_crs_linear(x, w, key=key, grad_norms=jnp.ones(5)), ValueError,
       "wta_crs_linear: grad_norms must have shape"),
      (lambda: W.wta_crs_linear(x, w, key=key, probe=jnp.ones((2, 32))), ValueError,
       "wta_crs_linear: probe must have shape"),
      (lambda: W.wta_crs_linear(x, w, key=None), TypeError,
       "wta_crs_linear: key must be a jax.random"),
      (lambda: W.WTACRSLinear(0, 3, rngs=nnx.Rngs(0)), ValueError,
       "WTACRSLinear: in_features must be >= 1"),
      (lambda: W.WTACRSLinear(3, 3, ratio=2.0, rngs=nnx.Rngs(0)), ValueError,
       "WTACRSLinear: ratio must be <= 1"),
      (lambda: W.WTACRSLinear(3, 3, estimator="x", rngs=nnx.Rngs(0)), ValueError,
       "WTACRSLinear: estimator must be one of"),
      (lambda: W.WTACRSLinear(3, 3, rngs=0), TypeError, "WTACRSLinear: rngs must be an nnx.Rngs"),
      (lambda: W.WTACRSLinear(3, 3, use_grad_norms=True, rngs=nnx.Rngs(0)), ValueError,
       "WTACRSLinear: num_rows .* is required with use_grad_norms=True"),
      (lambda: W.WTACRSLinear(3, 3, use_grad_norms=True, num_rows=(0,), rngs=nnx.Rngs(0)),
       ValueError, "WTACRSLinear: num_rows must be a positive int"),
  ]
  for f, exc, match in cases:
    with pytest.raises(exc, match=match):
      f()


@pytest.mark.parametrize("sampler", ["crs_sample", "wta_crs_sample"])
@pytest.mark.parametrize("p, what", [
    ([0.5, -0.1, 0.6], "must be nonnegative"),
    ([0.5, float("nan"), 0.5], "must be finite"),
    ([0.5, float("inf"), 0.5], "must be finite"),
    ([0.0, 0.0, 0.0], "must have a positive sum"),
])
def test_samplers_refuse_bad_concrete_weights(sampler, p, what):
  """Regression: negative, NaN or all-zero weights used to give NaN / negative scales."""
  with pytest.raises(ValueError, match=rf"{sampler}: p {what}"):
    getattr(W, sampler)(jnp.asarray(p, jnp.float32), k=2, key=jax.random.key(0))


def test_sampling_probs_refuses_bad_concrete_inputs_and_empty_rows():
  x = jnp.ones((4, 3))
  with pytest.raises(ValueError, match=r"sampling_probs: grad_norms must be nonnegative"):
    W.sampling_probs(x, jnp.asarray([1.0, -1.0, 1.0, 1.0]))
  with pytest.raises(ValueError, match=r"sampling_probs: grad_norms must be finite"):
    W.sampling_probs(x, jnp.asarray([1.0, np.nan, 1.0, 1.0]))
  with pytest.raises(ValueError, match=r"sampling_probs: x must be finite"):
    W.sampling_probs(x.at[0, 0].set(np.nan))
  with pytest.raises(ValueError, match=r"sampling_probs: x must have at least one row"):
    W.sampling_probs(jnp.ones((0, 3)))
  with pytest.raises(ValueError, match=r"wta_crs_linear: grad_norms must be nonnegative"):
    W.wta_crs_linear(x, jnp.ones((3, 2)), key=jax.random.key(0),
                     grad_norms=jnp.asarray([1.0, -1.0, 1.0, 1.0]))
  # Traced inputs cannot be inspected (documented): the checks stay out of jit's way.
  p = jax.jit(W.sampling_probs)(x, jnp.asarray([1.0, 0.0, 1.0, 1.0]))
  np.testing.assert_allclose(np.sum(np.asarray(p)), 1.0, rtol=1e-6)
  s = jax.jit(lambda p: W.crs_sample(p, k=2, key=jax.random.key(0)))(jnp.ones(3))
  assert s.indices.shape == (2,)


def test_adaptive_c_validates_instead_of_zero_division():
  """Regression: ``adaptive_c`` of an empty ``top_p`` raised ZeroDivisionError (1.0 / k)."""
  with pytest.raises(ValueError, match=r"adaptive_c: top_p must have at least one entry"):
    W.adaptive_c(jnp.zeros((0,)))
  with pytest.raises(ValueError, match=r"adaptive_c: top_p must have rank 1"):
    W.adaptive_c(jnp.zeros((2, 2)))
  with pytest.raises(TypeError, match=r"adaptive_c: top_p must have a floating dtype"):
    W.adaptive_c(jnp.zeros((2,), jnp.int32))
