"""Plasticity: FAU and dormant ratio against hand counts / NumPy, the adaptive replay ratio
against a Python transcription of the repository's switch rule, the MLP that returns its
activations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.objectives import (
    ReLUMLP,
    arr_init,
    arr_update,
    dormant_ratio,
    fraction_active_units,
    per_layer_fau,
    updates_at_step,
)


def test_fau_hand_count_and_numpy():
  acts = [jnp.asarray([[1.0, 0.0], [0.0, 2.0]]), jnp.asarray([[0.0, 0.0, 3.0]])]
  assert float(fraction_active_units(acts)) == pytest.approx(3 / 7)
  rng = np.random.default_rng(0)
  tree = {"enc": np.maximum(rng.standard_normal((4, 5, 6)), 0).astype(np.float32),
          "q1": [np.maximum(rng.standard_normal((4, 7)) + 0.3, 0).astype(np.float32)]}

  @jax.jit
  def run(tree):
    return fraction_active_units(tree), per_layer_fau(tree), dormant_ratio(tree, tau=0.1)

  fau, per, dr = run(jax.tree.map(jnp.asarray, tree))
  leaves = [tree["enc"], tree["q1"][0]]
  want = sum((x > 0).sum() for x in leaves) / sum(x.size for x in leaves)
  assert float(fau) == pytest.approx(want)
  # Plasticine's compute_active_units on one ReLU layer: 1 - fraction of exact zeros
  assert float(per["enc"]) == pytest.approx(1 - np.mean(tree["enc"] == 0))
  assert float(per["q1"][0]) == pytest.approx(np.mean(tree["q1"][0] > 0))
  # ReDo: s_k = mean|h_k| / mean_j mean|h_j|, dormant if <= tau, pooled over layers
  dormant = units = 0
  for x in leaves:
    s = np.abs(x).reshape(-1, x.shape[-1]).mean(0)
    dormant += np.sum(s / s.mean() <= 0.1)
    units += x.shape[-1]
  assert float(dr) == pytest.approx(dormant / units)
  assert float(dormant_ratio([jnp.zeros((3, 4))])) == 1.0  # silent layer: all dormant, no NaN


def _reference_switch(fau_per_update, episode_of_update, check_freq, gap):
  """The repository's rule, written per episode: average the FAU of the updates of the last
  episode of each window; compare to the previous window's average when the window closes."""
  prev, switched_at = 0.0, None
  episodes = sorted(set(episode_of_update))
  for e in episodes:
    if (e + 1) % check_freq:
      continue
    now = np.mean([f for f, ep in zip(fau_per_update, episode_of_update) if ep == e])
    if switched_at is None and abs(now - prev) <= gap:
      switched_at = e + 1  # takes effect at the first update of the next episode
    prev = now
  return switched_at


def _run_arr(fau, ep):
  def step(s, x):
    s = arr_update(s, x[0], x[1].astype(jnp.int32), check_freq=50, gap=1e-3)
    return s, (s.rr, s.switched)

  return jax.jit(lambda f, e: jax.lax.scan(step, arr_init(), (f, e.astype(jnp.float32))))(
      jnp.asarray(fau, jnp.float32), jnp.asarray(ep))


def test_adaptive_replay_ratio_switches_once_after_the_fau_flattens():
  rng = np.random.default_rng(1)
  ep = np.repeat(np.arange(600), 3)  # 3 updates per episode
  decay = 0.42 + 0.002 * np.maximum(200 - ep, 0)
  fau = decay + rng.uniform(-5e-4, 5e-4, ep.shape) * (ep >= 200)
  _, (rr, switched) = _run_arr(fau, ep)
  rr, switched = np.asarray(rr), np.asarray(switched)
  first = int(np.argmax(switched))
  assert switched[-1] and ep[first] == 300 == _reference_switch(fau, ep, 50, 1e-3)
  assert np.all(rr[:first] == 0.5) and np.all(rr[first:] == 2.0)  # never switches back
  # a trace whose window means keep moving by more than the gap never switches
  steady = 0.9 - 1e-4 * ep
  _, (rr2, sw2) = _run_arr(steady, ep)
  assert not np.any(np.asarray(sw2)) and np.all(np.asarray(rr2) == 0.5)
  assert _reference_switch(steady, ep, 50, 1e-3) is None


def test_updates_at_step_counts():
  t = jnp.arange(100)
  f = jax.jit(updates_at_step)
  for rr in (0.5, 2.0, 0.3):
    u = np.asarray(f(t, rr))
    assert u.sum() == int(np.floor(100 * rr)) and u.min() >= 0
  np.testing.assert_array_equal(np.asarray(updates_at_step(jnp.arange(4), 2.0)), [2, 2, 2, 2])


def test_relu_mlp_returns_its_hidden_activations():
  m = ReLUMLP(3, (8, 5), 2, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (6, 3))

  @nnx.jit
  def run(m, x):
    y, acts = m.forward_with_acts(x)
    h1 = jax.nn.relu(x @ m.layers[0].kernel[...] + m.layers[0].bias[...])
    h2 = jax.nn.relu(h1 @ m.layers[1].kernel[...] + m.layers[1].bias[...])
    return y, acts, h1, h2, m.head(h2), fraction_active_units(acts)

  y, acts, h1, h2, y_manual, fau = run(m, x)
  np.testing.assert_allclose(np.asarray(y), np.asarray(y_manual), atol=1e-6)
  assert len(jax.tree.leaves(acts)) == 2
  want = (np.sum(np.asarray(h1) > 0) + np.sum(np.asarray(h2) > 0)) / (6 * 8 + 6 * 5)
  assert float(fau) == pytest.approx(want)


def test_errors():
  with pytest.raises(ValueError, match="fraction_active_units: acts must hold at least one"):
    fraction_active_units([])
  with pytest.raises(TypeError, match="per_layer_fau: acts must be floating"):
    per_layer_fau([jnp.ones(3, jnp.int32)])
  with pytest.raises(TypeError, match="arr_update: state must be an ARRState"):
    arr_update((0.0, 0.0), 0.4, 0)
  with pytest.raises(TypeError, match="arr_update: episode_idx must be an integer scalar"):
    arr_update(arr_init(), 0.4, 1.5)
  with pytest.raises(ValueError, match="dormant_ratio: tau must be >= 0"):
    dormant_ratio([jnp.ones((2, 3))], tau=-1.0)
  with pytest.raises(ValueError, match="updates_at_step: rr must be >= 0"):
    updates_at_step(jnp.arange(3), -1.0)
