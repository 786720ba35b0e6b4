"""Tests for bottleneck_jax/information/_mi_estimators.py (Poole et al. 2019 bounds, MINE, KSG).

Independent references: naive NumPy loops of each bound, NumPy closed-form gradients, the
closed-form MI of correlated Gaussians (with the optimal critic, the true log density ratio
computed with ``scipy.stats.norm``), and scikit-learn's KSG (``_compute_mi_cc``, a KD-tree
implementation). Statistical checks use fixed seeds and tolerances of several standard errors.
Units: nats unless a test says bits.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from bottleneck_jax.data import correlated_gaussians
from bottleneck_jax.information import (
    MINEOutput,
    MINEState,
    critic_scores,
    dv_lower_bound,
    infonce_lower_bound,
    js_lower_bound,
    ksg_mi,
    mine_init,
    mine_lower_bound,
    nwj_lower_bound,
    to_bits,
)

B = 8  # small score matrices
BIG_B, REPS = 256, 8  # the statistical checks: 8 replicate batches of 256 pairs
KSG_N = 500
_ksg = jax.jit(ksg_mi, static_argnames=("k", "block_size"))
# jitted once each (one compilation per shape instead of one per primitive)
_infonce, _nwj, _dv, _js = (jax.jit(f) for f in (infonce_lower_bound, nwj_lower_bound,
                                                  dv_lower_bound, js_lower_bound))


def _scores(seed=0, shape=(B, B), scale=2.0):
  return np.random.default_rng(seed).normal(scale=scale, size=shape).astype(np.float32)


# --------------------------------------------------------------------- naive NumPy references


def _np_infonce(s):
  s = np.asarray(s, np.float64)
  b = s.shape[0]
  total = 0.0
  for i in range(b):
    total += s[i, i] - math.log(sum(math.exp(s[i, j]) for j in range(b)))
  return total / b + math.log(b)


def _np_offdiag_mean_exp(s):
  b = s.shape[0]
  return sum(math.exp(s[i, j]) for i in range(b) for j in range(b) if i != j) / (b * (b - 1))


def _np_nwj(s):
  s = np.asarray(s, np.float64)
  return np.mean(np.diag(s)) - math.exp(-1.0) * _np_offdiag_mean_exp(s)


def _np_dv(s):
  s = np.asarray(s, np.float64)
  return np.mean(np.diag(s)) - math.log(_np_offdiag_mean_exp(s))


def _log_ratio(x, y, rho):
  """The optimal critic log p(y_j | x_i) - log p(y_j), summed over independent components:
  log N(y; rho x, 1 - rho^2) - log N(y; 0, 1), written out in NumPy float64."""
  x = np.asarray(x, np.float64)[:, None, :]
  y = np.asarray(y, np.float64)[None, :, :]
  v = 1.0 - rho**2
  return (-0.5 * math.log(v) - (y - rho * x) ** 2 / (2 * v) + y**2 / 2).sum(-1)


def test_log_ratio_reference_matches_scipy():
  x, y = np.random.default_rng(0).normal(size=(2, 3, 2))
  want = (stats.norm.logpdf(y[None], loc=0.6 * x[:, None], scale=0.8)
          - stats.norm.logpdf(y[None])).sum(-1)
  np.testing.assert_allclose(_log_ratio(x, y, 0.6), want, rtol=1e-12)


@functools.cache
def _optimal_scores(dim, rho, reps=REPS):  # one [REPS, 256, 256] shape: few compilations
  x, y, mi = correlated_gaussians(reps * BIG_B, dim=dim, rho=rho, key=0)
  x = np.asarray(x).reshape(reps, BIG_B, dim)
  y = np.asarray(y).reshape(reps, BIG_B, dim)
  out = [_log_ratio(x[r], y[r], rho) for r in range(reps)]
  return jnp.asarray(np.stack(out), jnp.float32), mi


# --------------------------------------------------------------------- values vs naive code


def test_bounds_match_naive_numpy():
  s = _scores(0)
  assert float(_infonce(jnp.asarray(s))) == pytest.approx(_np_infonce(s), abs=1e-5)
  assert float(_nwj(jnp.asarray(s))) == pytest.approx(_np_nwj(s), rel=1e-5)
  assert float(_dv(jnp.asarray(s))) == pytest.approx(_np_dv(s), abs=1e-5)
  # JS reports the NWJ value of the shifted critic S + 1
  assert float(_js(jnp.asarray(s))) == pytest.approx(_np_nwj(s + 1.0), rel=1e-5)
  # leading batch axes
  sb = np.stack([_scores(1), _scores(2)])
  got = _infonce(jnp.asarray(sb))
  assert got.shape == (2,)
  np.testing.assert_allclose(got, [_np_infonce(sb[0]), _np_infonce(sb[1])], atol=1e-5)
  got = _dv(jnp.asarray(sb))
  np.testing.assert_allclose(got, [_np_dv(sb[0]), _np_dv(sb[1])], atol=1e-5)


def test_infonce_never_exceeds_log_batch():
  rng = np.random.default_rng(3)
  s = rng.normal(scale=5.0, size=(16, B, B)).astype(np.float32)
  s[:8] += 100.0 * np.eye(B, dtype=np.float32)  # near-perfect critics saturate at log B
  v = np.asarray(_infonce(jnp.asarray(s)))
  assert np.all(v <= math.log(B) + 1e-5)
  np.testing.assert_allclose(v[:8], math.log(B), atol=1e-4)


def test_to_bits():
  assert float(to_bits(math.log(2.0))) == pytest.approx(1.0)
  np.testing.assert_allclose(to_bits(jnp.array([math.log(4.0), 0.0])), [2.0, 0.0], rtol=1e-6)


# --------------------------------------------------------------------- optimal critic, Gaussians


def test_optimal_critic_recovers_closed_form_mi():
  s, mi = _optimal_scores(2, 0.8)  # I = -log(1 - 0.64) = 1.0217 nats << log 256
  assert mi == pytest.approx(1.0216512475319814)
  se = 0.12 / math.sqrt(REPS)  # replicate sd measured at about 0.11
  for name, v in [("infonce", _infonce(s)), ("nwj", _nwj(s + 1.0)),
                  ("dv", _dv(s)), ("js", _js(s))]:
    v = np.asarray(v)
    assert v.shape == (REPS,)
    assert abs(v.mean() - mi) < 4 * se, (name, v.mean(), mi)
  assert np.all(np.asarray(_infonce(s)) <= math.log(BIG_B))


def test_infonce_saturates_at_log_batch_when_mi_is_large():
  s, mi = _optimal_scores(6, 0.999)  # I = 18.6 nats >> log 256 = 5.55
  assert mi > 18.0
  v = np.asarray(_infonce(s))
  assert np.all(v <= math.log(BIG_B) + 1e-5)
  assert v.mean() > math.log(BIG_B) - 0.1  # min(I, log B) = log B
  # NWJ and DV are not capped by log B: with the optimal critic they exceed it on average
  assert float(np.mean(_dv(s))) > math.log(BIG_B) + 1.0


def test_independent_variables_give_zero():
  s, mi = _optimal_scores(2, 0.0)  # the optimal critic is 0
  assert mi == 0.0 and not np.any(np.asarray(s))
  for f in (_infonce, _dv, _js):
    assert np.max(np.abs(np.asarray(f(s)))) < 1e-5  # float32 rounding of log 256
  assert np.max(np.abs(np.asarray(_nwj(s + 1.0)))) < 1e-5


def test_training_a_critic_on_infonce_finds_the_true_log_density_ratio():
  """End to end: Adam on -InfoNCE over a quadratic critic family that contains the optimum.
  The optimal critic for rho-correlated Gaussians is log r = rho/v x.y - rho^2/(2v) |y|^2 + c(x)
  with v = 1 - rho^2 (InfoNCE ignores c(x)); the learnt coefficients must approach it and the
  bound the closed-form MI."""
  optax = pytest.importorskip("optax")
  rho, dim, b, steps = 0.8, 2, 64, 200
  opt = optax.adam(0.05)

  def scores(p, x, y):
    return p[0] * (x @ y.T) + p[1] * jnp.sum(y * y, -1)[None, :] + p[2]

  def step(carry, key):
    p, st = carry
    x, y, _ = correlated_gaussians(b, dim=dim, rho=rho, key=key)
    g = jax.grad(lambda p: -infonce_lower_bound(scores(p, x, y)))(p)
    u, st = opt.update(g, st, p)
    return (optax.apply_updates(p, u), st), None

  @jax.jit
  def train():
    p0 = jnp.zeros(3)
    keys = jax.random.split(jax.random.key(1), steps)
    return jax.lax.scan(step, (p0, opt.init(p0)), keys)[0][0]

  with jax.numpy_dtype_promotion("standard"):  # optax is not strict-promotion clean
    p = np.asarray(train())
  v = 1 - rho**2
  np.testing.assert_allclose(p[:2], [rho / v, -(rho**2) / (2 * v)], rtol=0.1)
  x, y, mi = correlated_gaussians(REPS * BIG_B, dim=dim, rho=rho, key=99)
  s = jax.vmap(lambda a, c: scores(jnp.asarray(p), a, c))(
      x.reshape(REPS, BIG_B, dim), y.reshape(REPS, BIG_B, dim))
  assert abs(float(jnp.mean(_infonce(s))) - mi) < 0.15


# --------------------------------------------------------------------- gradients, jit


def test_infonce_jit_and_grad_match_closed_form():
  s = _scores(4)
  g = jax.jit(jax.grad(infonce_lower_bound))(jnp.asarray(s))
  sm = special.softmax(np.asarray(s, np.float64), axis=-1)
  want = (np.eye(B) - sm) / B  # d/dS_ij of mean_i [S_ii - logsumexp_j S_ij]
  np.testing.assert_allclose(g, want, atol=1e-6)


def test_js_gradient_is_the_fgan_js_gradient():
  s = _scores(5)
  g = jax.jit(jax.grad(js_lower_bound))(jnp.asarray(s))
  s64 = np.asarray(s, np.float64)
  want = -special.expit(s64) / (B * (B - 1))
  np.fill_diagonal(want, special.expit(-np.diag(s64)) / B)
  np.testing.assert_allclose(g, want, atol=1e-6)


def test_mine_value_state_and_moving_average_gradient():
  decay = 0.7
  state = mine_init()
  assert isinstance(state, MINEState) and state.log_ema.dtype == jnp.float32
  step = jax.jit(functools.partial(mine_lower_bound, decay=decay))
  grad_fn = jax.jit(jax.grad(lambda s, st: mine_lower_bound(s, st, decay=decay).objective))
  ema, ms = 0.0, []
  for t in range(1, 4):
    s = _scores(10 + t, scale=1.0)
    m = _np_offdiag_mean_exp(s)
    ms.append(m)
    ema = decay * ema + (1 - decay) * m
    ema_hat = ema / (1 - decay**t)
    g = grad_fn(jnp.asarray(s), state)
    out = step(jnp.asarray(s), state)
    assert isinstance(out, MINEOutput)
    assert float(out.bound) == pytest.approx(_np_dv(s), abs=1e-5)
    assert float(out.objective) == pytest.approx(float(out.bound), abs=1e-6)
    want = -np.exp(np.asarray(s, np.float64)) / (B * (B - 1)) / ema_hat
    np.fill_diagonal(want, 1.0 / B)
    np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-7)
    state = out.state
    assert int(state.count) == t
    assert float(jnp.exp(state.log_ema)) == pytest.approx(ema, rel=1e-5)
  assert ms[0] != ms[1]  # the moving average really mixes different batches


def test_mine_decay_zero_is_the_dv_gradient():
  s = _scores(20, scale=1.0)
  g = jax.jit(jax.grad(lambda s: mine_lower_bound(s, mine_init(), decay=0.0).objective))(
      jnp.asarray(s))
  s64 = np.asarray(s, np.float64)
  w = np.exp(s64) * (1 - np.eye(B))
  want = -w / w.sum() + np.eye(B) / B  # gradient of mean diag - log mean_offdiag exp
  np.testing.assert_allclose(g, want, atol=1e-6)


def test_critic_scores_matches_a_loop():
  rng = np.random.default_rng(6)
  x = rng.normal(size=(5, 3)).astype(np.float32)
  y = rng.normal(size=(4, 2)).astype(np.float32)
  w = rng.normal(size=(3, 2)).astype(np.float32)
  critic = lambda a, b: jnp.tanh(a @ jnp.asarray(w) @ b)
  got = critic_scores(jnp.asarray(x), jnp.asarray(y), critic)
  want = np.array([[np.tanh(x[i] @ w @ y[j]) for j in range(4)] for i in range(5)])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------- KSG


def test_ksg_matches_scikit_learn():
  mi_cc = pytest.importorskip("sklearn.feature_selection._mutual_info")._compute_mi_cc
  x, y, _ = correlated_gaussians(KSG_N, dim=1, rho=0.6, key=7)
  want = mi_cc(np.asarray(x, np.float64)[:, 0], np.asarray(y, np.float64)[:, 0], 3)
  assert float(_ksg(x, y, k=3)) == pytest.approx(want, abs=2e-4)


@pytest.mark.parametrize("dim,rho", [(1, 0.0), (1, 0.5), (1, 0.9), (2, 0.5)])
def test_ksg_recovers_gaussian_mi_closed_form(dim, rho):
  reps = 6
  x, y, mi = correlated_gaussians(reps * KSG_N, dim=dim, rho=rho, key=100)
  est = [float(_ksg(x[r * KSG_N:(r + 1) * KSG_N], y[r * KSG_N:(r + 1) * KSG_N], k=3))
         for r in range(reps)]
  est = np.asarray(est)
  # per-replicate sd measured at 0.04-0.06 for n = 500
  assert abs(est.mean() - mi) < 4 * 0.06 / math.sqrt(reps), (est, mi)


def test_ksg_vmaps_over_replicates_and_takes_rank_1():
  mi_cc = pytest.importorskip("sklearn.feature_selection._mutual_info")._compute_mi_cc
  x, y, _ = correlated_gaussians(2 * 40, dim=1, rho=0.9, key=3)
  xs, ys = x.reshape(2, 40), y.reshape(2, 40)
  got = jax.jit(jax.vmap(functools.partial(ksg_mi, k=1)))(xs, ys)
  for r in range(2):
    want = mi_cc(np.asarray(xs[r], np.float64), np.asarray(ys[r], np.float64), 1)
    assert want > 0.3  # scikit-learn clips at 0: stay clear of it
    assert float(got[r]) == pytest.approx(want, abs=2e-4)


def _np_ksg(x, y, k):
  """KSG algorithm 1 by brute force in NumPy on the same float32 values (max-norm, strict <)."""
  x, y = (np.asarray(a, np.float32).reshape(len(a), -1) for a in (x, y))
  n = len(x)
  dx = np.abs(x[:, None, :] - x[None, :, :]).max(-1)
  dy = np.abs(y[:, None, :] - y[None, :, :]).max(-1)
  nx, ny = np.zeros(n), np.zeros(n)
  for i in range(n):
    others = np.arange(n) != i
    eps = np.sort(np.maximum(dx[i], dy[i])[others])[k - 1]
    nx[i] = np.sum(dx[i][others] < eps)
    ny[i] = np.sum(dy[i][others] < eps)
  return (special.digamma(k) + special.digamma(n)
          - np.mean(special.digamma(nx + 1) + special.digamma(ny + 1)))


def test_ksg_blocks_equal_numpy_brute_force_with_ties_and_a_ragged_last_block():
  # N = 37 rows in blocks of 5 (7 full blocks and a remainder of 2); coordinates on a coarse grid
  # so that many distances tie with eps_i (the strict < must drop them) and some eps_i are 0.
  r = np.random.default_rng(5)
  x = (r.integers(0, 6, (37, 2)) * 0.25).astype(np.float32)
  y = (x[:, :1] + r.integers(0, 3, (37, 1)) * 0.25).astype(np.float32)
  want = _np_ksg(x, y, 3)
  got = jax.jit(functools.partial(ksg_mi, k=3, block_size=5))(jnp.asarray(x), jnp.asarray(y))
  assert float(got) == pytest.approx(want, abs=1e-5)


# --------------------------------------------------------------------- validation


@pytest.mark.parametrize("f", [infonce_lower_bound, nwj_lower_bound, dv_lower_bound,
                               js_lower_bound])
def test_bounds_validation(f):
  name = f.__name__
  with pytest.raises(ValueError, match=f"{name}: scores must have rank >= 2"):
    f(jnp.ones(4))
  with pytest.raises(ValueError, match=f"{name}: scores must be square"):
    f(jnp.ones((3, 4)))
  with pytest.raises(ValueError, match=f"{name}: scores must hold at least 2 samples"):
    f(jnp.ones((1, 1)))
  with pytest.raises(TypeError, match=f"{name}: scores must have a floating dtype"):
    f(jnp.ones((3, 3), jnp.int32))
  with pytest.raises(TypeError, match=f"{name}: scores must be an array"):
    f([[1.0, 0.0], [0.0, 1.0]])


def test_mine_validation():
  s = jnp.ones((3, 3))
  with pytest.raises(ValueError, match="mine_lower_bound: decay must be < 1"):
    mine_lower_bound(s, mine_init(), decay=1.0)
  with pytest.raises(TypeError, match="mine_lower_bound: state must be a MINEState"):
    mine_lower_bound(s, (0.0, 0))
  with pytest.raises(TypeError, match="mine_lower_bound: state.log_ema must have the dtype"):
    mine_lower_bound(s, mine_init(jnp.bfloat16))
  with pytest.raises(ValueError, match="mine_lower_bound: scores must have rank 2"):
    mine_lower_bound(jnp.ones((2, 3, 3)), mine_init())
  with pytest.raises(TypeError, match="mine_init: dtype must be a floating"):
    mine_init(jnp.int32)


def test_ksg_and_critic_validation():
  x = jnp.ones((5, 2))
  with pytest.raises(ValueError, match=r"ksg_mi: k must be < N \(the number"):
    ksg_mi(x, x, k=5)
  with pytest.raises(ValueError, match="ksg_mi: k must be >= 1"):
    ksg_mi(x, x, k=0)
  with pytest.raises(ValueError, match="ksg_mi: x and y must have the same"):
    ksg_mi(x, jnp.ones((4, 2)))
  with pytest.raises(ValueError, match="ksg_mi: x must have rank 1 or 2"):
    ksg_mi(jnp.ones((5, 2, 1)), x)
  with pytest.raises(TypeError, match="ksg_mi: y must have the dtype of x"):
    ksg_mi(x, jnp.ones((5, 2), jnp.bfloat16))
  with pytest.raises(TypeError, match="ksg_mi: x must have a floating"):
    ksg_mi(jnp.ones((5, 2), jnp.int32), x)
  with pytest.raises(ValueError, match="critic_scores: critic_fn must return a scalar"):
    critic_scores(x, x, lambda a, b: a * b)
  with pytest.raises(TypeError, match="critic_scores: critic_fn must be callable"):
    critic_scores(x, x, 3)
  with pytest.raises(ValueError, match="critic_scores: y must have rank 2"):
    critic_scores(x, jnp.ones(5), lambda a, b: a.sum())
