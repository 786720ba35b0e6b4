"""χ0: model arithmetic against autodiff / brute force, stage advantage and chunk cross-fading
against NumPy transcriptions of the repository's code."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax.objectives import (
    chunk_crossfade,
    discretize_advantage,
    greedy_soup,
    inverse_loss_weights,
    mix_params,
    optimize_mix_weights,
    simplex_grad,
    stage_advantage,
    stage_progress,
)


def _mlp_stack(n=3, seed=0):
  rng = np.random.default_rng(seed)
  return {"w1": jnp.asarray(rng.standard_normal((n, 4, 5)), jnp.float32),
          "b1": jnp.asarray(rng.standard_normal((n, 5)), jnp.float32),
          "w2": jnp.asarray(rng.standard_normal((n, 5)), jnp.float32)}


def _mlp_loss(p, batch):
  h = jnp.tanh(batch["x"] @ p["w1"] + p["b1"])
  return jnp.mean((h @ p["w2"] - batch["y"]) ** 2)


def test_simplex_grad_equals_autodiff_through_the_softmax():
  stack = _mlp_stack()
  rng = np.random.default_rng(1)
  batch = {"x": jnp.asarray(rng.standard_normal((16, 4)), jnp.float32),
           "y": jnp.asarray(rng.standard_normal(16), jnp.float32)}
  logits = jnp.asarray([0.3, -0.2, 0.5])

  @jax.jit
  def both(logits):
    w = jax.nn.softmax(logits)
    dtheta = jax.grad(_mlp_loss)(mix_params(stack, w), batch)
    g = sum(jnp.sum(s * d[None], axis=tuple(range(1, s.ndim)))
            for s, d in zip(jax.tree.leaves(stack), jax.tree.leaves(dtheta)))
    auto = jax.grad(lambda lg: _mlp_loss(mix_params(stack, jax.nn.softmax(lg)), batch))(logits)
    return simplex_grad(g, w), auto

  ours, auto = both(logits)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(auto), atol=1e-6)


def test_mix_params_and_inverse_loss_weights_by_hand():
  stack = {"a": jnp.asarray([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), "b": jnp.asarray([1.0, 2, 3])}
  w = jnp.asarray([1.0, -1.0, 2.0])
  losses = np.array([0.3, 0.05, 1.7, 0.9])

  @jax.jit
  def run(stack, w, losses):
    return (mix_params(stack, w), mix_params(stack, w, normalize=True),
            inverse_loss_weights(jnp.asarray([1.0, 2.0])),
            inverse_loss_weights(losses, power=3.0))

  m, mn, il2, il4 = run(stack, w, jnp.asarray(losses, jnp.float32))
  np.testing.assert_allclose(np.asarray(m["a"]), [1 - 3 + 10, 2 - 4 + 12])
  assert float(m["b"]) == pytest.approx(1 - 2 + 6)
  assert float(mn["b"]) == pytest.approx(5 / 2)
  np.testing.assert_allclose(np.asarray(il2), [0.8, 0.2], atol=1e-7)
  want = (1 / (losses + 1e-8)) ** 3
  np.testing.assert_allclose(np.asarray(il4), want / want.sum(), rtol=1e-5)


@pytest.fixture(scope="module")
def regression_checkpoints():
  """Three least-squares "checkpoints", each fitted on its own disjoint pair of features."""
  rng = np.random.default_rng(0)
  # block norms^2 2, 1.5, 1.2: the simplex optimum is interior, near (1/2, 1/3, 1/6)
  beta = np.array([1.0, -1.0, 1.0, -0.71, 0.8, -0.75])
  x = rng.standard_normal((600, 6)).astype(np.float32)
  y = (x @ beta + 0.1 * rng.standard_normal(600)).astype(np.float32)
  thetas = []
  for k in range(3):
    cols = [2 * k, 2 * k + 1]
    th = np.zeros(6, np.float32)
    th[cols] = np.linalg.lstsq(x[:200, cols], y[:200], rcond=None)[0]
    thetas.append(th)
  stack = {"theta": jnp.asarray(np.stack(thetas))}
  val = {"x": jnp.asarray(x[200:400].reshape(4, 50, 6)),
         "y": jnp.asarray(y[200:400].reshape(4, 50))}
  test = (x[400:], y[400:])
  return stack, val, test


def _lin_loss(p, b):
  return jnp.mean((b["x"] @ p["theta"] - b["y"]) ** 2)


def test_optimised_merge_beats_uniform_beats_worst_and_matches_grid_search(
    regression_checkpoints):
  stack, val, (xt, yt) = regression_checkpoints
  thetas = np.asarray(stack["theta"], np.float64)

  def mse(w, x=xt, y=yt):
    return float(np.mean((x @ (np.asarray(w, np.float64) @ thetas) - y) ** 2))

  res, ad = jax.jit(lambda s, v: (
      optimize_mix_weights(_lin_loss, s, v, steps=100, learning_rate=0.1),
      optimize_mix_weights(_lin_loss, s, v, steps=20, adaptive=True)))(stack, val)
  w = np.asarray(res.weights)
  assert w.sum() == pytest.approx(1.0, abs=1e-5) and np.all(w >= 0)
  worst = max(mse(np.eye(3)[k]) for k in range(3))
  assert mse(w) <= mse(np.full(3, 1 / 3)) <= worst
  # brute force over the simplex (step 0.01) on the same held-out batches
  xv = np.asarray(val["x"]).reshape(-1, 6)
  yv = np.asarray(val["y"]).reshape(-1)
  grid = [(a / 100, b / 100, 1 - (a + b) / 100) for a in range(101) for b in range(101 - a)]
  best = min(mse(g, xv, yv) for g in grid)
  assert float(res.loss) <= best + 1e-3
  assert float(res.loss) == pytest.approx(mse(w, xv, yv), rel=1e-4)
  assert res.losses.shape == (100,) and float(res.losses[0]) == pytest.approx(
      mse(np.full(3, 1 / 3), xv, yv), rel=1e-4)
  assert float(ad.loss) <= float(res.losses[0])


def test_greedy_soup_equals_the_python_greedy_procedure(regression_checkpoints):
  stack, val, _ = regression_checkpoints
  # a fourth checkpoint that hurts any soup it joins
  bad = jnp.concatenate([stack["theta"], 10.0 * jnp.ones((1, 6))])
  stack4 = {"theta": bad}
  xv = np.asarray(val["x"]).reshape(-1, 6)
  yv = np.asarray(val["y"]).reshape(-1)
  th = np.asarray(bad, np.float64)

  def loss(members):
    return np.mean((xv @ th[list(members)].mean(0) - yv) ** 2)

  order = sorted(range(4), key=lambda k: loss([k]))
  soup = [order[0]]
  for k in order[1:]:
    if loss(soup + [k]) < loss(soup):
      soup.append(k)
  want = np.zeros(4)
  want[soup] = 1 / len(soup)
  np.testing.assert_allclose(np.asarray(greedy_soup(_lin_loss, stack4, val)), want, atol=1e-7)
  assert want[3] == 0


def test_stage_progress_advantage_and_labels():
  rng = np.random.default_rng(3)
  v = rng.random((2, 120)).astype(np.float32)
  stage = (np.arange(120) >= 40).astype(np.int32)

  @jax.jit
  def run(v, stage):
    p = stage_progress(jnp.asarray([0, 5, 10, 20, 30, 35]), jnp.asarray([0, 10, 30]))
    a = jax.vmap(lambda x: stage_advantage(x, horizon=50))(v)
    return (p, a, discretize_advantage(a[0], stage, top_pct=30.0, n_stages=2),
            discretize_advantage(a[1], top_pct=30.0))

  p, a, lab, one = (np.asarray(x) for x in run(jnp.asarray(v), jnp.asarray(stage)))
  np.testing.assert_allclose(p, [0.0, 0.25, 0.5, 0.75, 1.0, 1.0])
  idx = np.minimum(np.arange(120) + 50, 119)
  np.testing.assert_allclose(a, np.clip(v[:, idx] - v, -1, 1), atol=1e-7)
  for s in (0, 1):
    thr = np.percentile(a[0][stage == s], 70.0)
    np.testing.assert_array_equal(lab[stage == s], (a[0][stage == s] >= thr).astype(int))
  np.testing.assert_array_equal(one, (a[1] >= np.percentile(a[1], 70.0)).astype(int))
  assert one.sum() == 36


def _integrate_new_chunk(old, old_len, new, k, max_k, min_m):
  """NumPy transcription of kai0's ``integrate_new_chunk`` (lists of actions)."""
  drop = min(k, max_k)
  new_rem = new[drop:]
  if old_len == 0:
    return new_rem
  o = old[:old_len]
  if len(o) < min_m:
    o = np.concatenate([o, np.repeat(o[-1:], min_m - len(o), axis=0)])
  n_overlap = min(len(o), len(new_rem))
  w = np.linspace(1.0, 0.0, n_overlap)[:, None]
  out = new_rem.copy()
  out[:n_overlap] = w * o[:n_overlap] + (1 - w) * new_rem[:n_overlap]
  return out


def test_chunk_crossfade_equals_the_reference_and_keeps_constants():
  rng = np.random.default_rng(4)
  old = rng.standard_normal((12, 3)).astype(np.float32)
  new = rng.standard_normal((16, 3)).astype(np.float32)
  f = jax.jit(lambda o, ol, n, k: chunk_crossfade(o, ol, n, k, max_k=5, min_m=8))
  for old_len, k in itertools.product((0, 1, 5, 12), (0, 3, 9)):
    out = f(jnp.asarray(old), jnp.asarray(old_len), jnp.asarray(new), jnp.asarray(k))
    want = _integrate_new_chunk(old, old_len, new, k, 5, 8)
    assert int(out.length) == len(want) == 16 - min(k, 5)
    np.testing.assert_allclose(np.asarray(out.chunk)[:len(want)], want, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out.chunk)[len(want):], 0.0)
    if old_len:
      np.testing.assert_allclose(np.asarray(out.chunk)[0], old[0], atol=1e-6)
  const = f(jnp.full((12, 3), 2.5), jnp.asarray(7), jnp.full((16, 3), 2.5), jnp.asarray(2))
  np.testing.assert_allclose(np.asarray(const.chunk)[:14], 2.5, atol=1e-6)


def test_errors():
  with pytest.raises(ValueError, match="mix_params: weights must have one entry per model"):
    mix_params({"a": jnp.ones((3, 2))}, jnp.ones(2))
  with pytest.raises(ValueError, match="mix_params: every leaf of stack must have the same"):
    mix_params({"a": jnp.ones((3, 2)), "b": jnp.ones((2,))}, jnp.ones(3))
  with pytest.raises(ValueError, match="stage_progress: bounds must be strictly increasing"):
    stage_progress(jnp.arange(3), jnp.asarray([0, 5, 5]))
  with pytest.raises(ValueError, match="discretize_advantage: stage_idx must be given"):
    discretize_advantage(jnp.ones(4), n_stages=2)
  with pytest.raises(ValueError, match="chunk_crossfade: old_len must be <= 4"):
    chunk_crossfade(jnp.ones((4, 2)), 5, jnp.ones((6, 2)), 0, max_k=2)
  with pytest.raises(ValueError, match="optimize_mix_weights: batches must be a pytree"):
    optimize_mix_weights(_lin_loss, {"theta": jnp.ones((2, 3))}, {"x": 1.0})
  with pytest.raises(ValueError, match="inverse_loss_weights: power must be > 0"):
    inverse_loss_weights(jnp.ones(2), power=0.0)
