"""Graph R-learner: the final-stage loss and its zero gradient at the truth, the corrected linear
design recovering a known CATE (and the reference's design failing), cross-fitting, GCN
normalisation and layers against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.experiments.rlearner_graph import barabasi_albert, repo_style_final_stage
from bottleneck_jax.objectives import (
    GCNLayer,
    GraphCATE,
    cross_fit,
    gcn_norm,
    linear_cate,
    linear_final_stage,
    r_loss,
)


def test_r_loss_numpy_weights_and_zero_gradient_at_the_truth():
  rng = np.random.default_rng(0)
  n = 5000
  x0 = rng.standard_normal(n)
  t_res = rng.standard_normal(n)  # oracle residuals: T - e(x)
  y_res = (1 + x0) * t_res + 0.1 * rng.standard_normal(n)
  w = rng.random(n)

  @jax.jit
  def run(ab, x0, y_res, t_res, w):
    def loss(ab):
      return r_loss(ab[0] + ab[1] * x0, y_res, t_res)
    return (loss(ab), jax.grad(loss)(ab), r_loss(ab[0] + ab[1] * x0, y_res, t_res, w))

  f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
  val, g, wval = run(f32([1.0, 1.0]), f32(x0), f32(y_res), f32(t_res), f32(w))
  assert float(val) == pytest.approx(np.mean((y_res - (1 + x0) * t_res) ** 2), rel=1e-4)
  assert float(wval) == pytest.approx(np.sum(w * (y_res - (1 + x0) * t_res) ** 2) / w.sum(),
                                      rel=1e-4)
  assert np.max(np.abs(np.asarray(g))) < 1e-2


def test_linear_final_stage_recovers_the_cate_and_the_reference_design_cannot():
  """Non-graph data (n=2000, X in R^5, tau = 1 + x_0, known e(x)), cross-fitted ridge outcome
  nuisance: coefficients (1, 1) within 0.1; the reference's design (free intercept, no T~
  column) misses the constant effect, with an error near E[tau^2]."""
  rng = np.random.default_rng(1)
  n = 2000
  x = rng.standard_normal((n, 5))
  e = 1 / (1 + np.exp(-0.5 * x[:, 1]))
  t = (rng.random(n) < e).astype(np.float64)
  tau = 1 + x[:, 0]
  y = x[:, 2] + 0.5 * x[:, 3] + t * tau + 0.3 * rng.standard_normal(n)
  f = np.concatenate([x, np.ones((n, 1))], 1)

  def ridge(mask, target):
    coef = np.linalg.solve(f[mask].T @ f[mask] + 1e-3 * np.eye(6), f[mask].T @ target[mask])
    return f @ coef

  m_hat = np.asarray(cross_fit(ridge, jnp.asarray(y, jnp.float32), key=0), np.float64)
  y_res, t_res = y - m_hat, t - e
  beta = np.asarray(jax.jit(linear_final_stage, static_argnames="ridge")(
      jnp.asarray(x, jnp.float32), jnp.asarray(y_res, jnp.float32),
      jnp.asarray(t_res, jnp.float32), ridge=0.1))
  assert abs(beta[0] - 1) < 0.1 and abs(beta[1] - 1) < 0.1
  assert np.all(np.abs(beta[2:]) < 0.1)
  est = np.asarray(linear_cate(jnp.asarray(x, jnp.float32), jnp.asarray(beta)))
  ours = np.mean((est - tau) ** 2)
  repo = np.mean((repo_style_final_stage(x, y_res, t_res) - tau) ** 2)
  assert ours < 0.02 and repo > 0.5 * np.mean(tau ** 2)
  # the closed form equals a direct least-squares solve of the design [T~, X T~]
  design = np.concatenate([t_res[:, None], x * t_res[:, None]], 1)
  pen = np.diag([0.0] + [0.1] * 5)
  direct = np.linalg.solve(design.T @ design + pen, design.T @ y_res)
  np.testing.assert_allclose(beta, direct, rtol=1e-3, atol=1e-3)


def test_cross_fit_never_predicts_a_unit_from_its_own_fold():
  y = np.arange(10, dtype=np.float32)
  seen = []

  def memorise(mask, target):
    seen.append(mask.copy())
    return np.where(mask, target, -1.0)  # exact on training units, -1 elsewhere

  pred = np.asarray(cross_fit(memorise, y, key=3, n_folds=3))
  np.testing.assert_array_equal(pred, -1.0)
  folds = np.stack(seen)
  assert folds.shape == (3, 10) and np.all((~folds).sum(0) == 1)  # each unit held out once


def test_gcn_norm_layers_and_ba_graph():
  rng = np.random.default_rng(2)
  adj = barabasi_albert(30, 2, rng)
  assert np.allclose(adj, adj.T) and np.all(np.diag(adj) == 0)
  assert adj.sum() / 2 == 2 + 2 * (30 - 3)  # the star's m edges, then m per new node
  a = adj + np.eye(30)
  d = a.sum(1)
  want = a / np.sqrt(d[:, None] * d[None, :])
  a_hat = jnp.asarray(want, jnp.float32)
  layer = GCNLayer(4, 3, rngs=nnx.Rngs(0))
  model = GraphCATE(4, 8, rngs=nnx.Rngs(1))
  h = jnp.asarray(rng.standard_normal((30, 4)), jnp.float32)

  @nnx.jit
  def run(layer, model, adj, h):
    return gcn_norm(adj), layer(h, gcn_norm(adj)), model(h, gcn_norm(adj))

  got_norm, out, tau = run(layer, model, jnp.asarray(adj), h)
  np.testing.assert_allclose(np.asarray(got_norm), want, atol=1e-6)
  k, b = np.asarray(layer.linear.kernel[...]), np.asarray(layer.linear.bias[...])
  np.testing.assert_allclose(np.asarray(out), want @ (np.asarray(h) @ k) + b, atol=1e-5)
  c1, c2 = model.conv1.linear, model.conv2.linear
  hid = np.maximum(want @ (np.asarray(h) @ np.asarray(c1.kernel[...])) + np.asarray(
      c1.bias[...]), 0)
  want_tau = (want @ (hid @ np.asarray(c2.kernel[...])) + np.asarray(c2.bias[...]))[:, 0]
  np.testing.assert_allclose(np.asarray(tau), want_tau, atol=1e-5)
  assert a_hat.shape == (30, 30)


def test_errors():
  with pytest.raises(ValueError, match="r_loss: y_res must have 3 entries"):
    r_loss(jnp.ones(3), jnp.ones(2), jnp.ones(3))
  with pytest.raises(ValueError, match="linear_final_stage: ridge must be >= 0"):
    linear_final_stage(jnp.ones((3, 2)), jnp.ones(3), jnp.ones(3), ridge=-1.0)
  with pytest.raises(ValueError, match="gcn_norm: adj must be square"):
    gcn_norm(jnp.ones((3, 2)))
  with pytest.raises(ValueError, match="cross_fit: n_folds must be >= 2"):
    cross_fit(lambda m, t: t, np.ones(4), key=0, n_folds=1)
  with pytest.raises(ValueError, match="cross_fit: fit_predict must return predictions"):
    cross_fit(lambda m, t: t[:2], np.ones(4, np.float32), key=0)
  with pytest.raises(ValueError, match="linear_cate: beta must have 3 entries"):
    linear_cate(jnp.ones((4, 2)), jnp.ones(2))
