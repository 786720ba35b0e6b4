"""Tests for bottleneck_jax/compression/_sae_data_selection.py: properties of the generalised
Jaccard similarity against set Jaccard and a naive loop, NumPy selection, and the synthetic
superposition benchmark of the test plan (§7.3) with an oracle SAE encoder."""

import jax
import jax.numpy as jnp
import numpy as np

from bottleneck_jax.compression import (
  aggregate_features,
  generalized_jaccard,
  generalized_jaccard_matrix,
  score_candidates,
  select_top_fraction,
  task_prototype,
  topk_activation,
)


def test_jaccard_properties():
  r = np.random.default_rng(0)
  a = jnp.asarray(np.abs(r.normal(size=(5, 7))), jnp.float32)
  b = jnp.asarray(np.abs(r.normal(size=(5, 7))), jnp.float32)
  np.testing.assert_allclose(np.asarray(generalized_jaccard(a, a)), 1.0, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(generalized_jaccard(a, b)),
                             np.asarray(generalized_jaccard(b, a)), rtol=1e-6)
  j = np.asarray(generalized_jaccard(a, b))
  assert np.all((j >= 0) & (j <= 1))
  np.testing.assert_allclose(np.asarray(generalized_jaccard(a, 4.0 * a)), 0.25, rtol=1e-6)
  assert float(generalized_jaccard(jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0]))) == 0.0
  assert float(generalized_jaccard(jnp.zeros(3), jnp.zeros(3))) == 0.0
  sa, sb = r.integers(0, 2, (6, 9)), r.integers(0, 2, (6, 9))
  set_j = [len(set(np.flatnonzero(x)) & set(np.flatnonzero(y))) /
           max(len(set(np.flatnonzero(x)) | set(np.flatnonzero(y))), 1) for x, y in zip(sa, sb)]
  np.testing.assert_allclose(np.asarray(generalized_jaccard(jnp.asarray(sa, jnp.float32),
                                                            jnp.asarray(sb, jnp.float32))),
                             set_j, rtol=1e-6)
  mat = np.asarray(generalized_jaccard_matrix(a, b[:3], chunk=2))
  naive = [[np.minimum(x, y).sum() / np.maximum(x, y).sum() for y in np.asarray(b[:3])]
           for x in np.asarray(a)]
  np.testing.assert_allclose(mat, naive, rtol=1e-5)
  vm = jax.jit(jax.vmap(generalized_jaccard))(a, b)
  np.testing.assert_allclose(np.asarray(vm), j, rtol=1e-6)


def test_aggregation_prototype_and_selection_equal_numpy():
  r = np.random.default_rng(1)
  f = np.abs(r.normal(size=(3, 4, 5))).astype(np.float32)
  m = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
  ref = np.stack([f[i][m[i] > 0].mean(0) for i in range(3)])
  np.testing.assert_allclose(np.asarray(aggregate_features(jnp.asarray(f), jnp.asarray(m))), ref,
                             rtol=1e-6)
  refmax = np.stack([f[i][m[i] > 0].max(0) for i in range(3)])
  np.testing.assert_allclose(
      np.asarray(aggregate_features(jnp.asarray(f), jnp.asarray(m), how="max")), refmax)
  np.testing.assert_allclose(np.asarray(task_prototype(jnp.asarray(ref))), ref.mean(0),
                             rtol=1e-6)
  s = r.normal(size=40).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(select_top_fraction(jnp.asarray(s), 0.05)),
                                np.argsort(-s)[:2])


def _superposition(seed):
  """Spec §7.3: 256 concepts in 12-d, 16 tasks x 10 concepts + 96 shared; a token = 2 task
  concepts + 1 shared (U(0.5, 2)); 4 tokens per sample."""
  r = np.random.default_rng(seed)
  d = r.standard_normal((256, 12))
  d /= np.linalg.norm(d, axis=1, keepdims=True)

  def samples(n, task=None):
    tasks = r.integers(0, 16, n) if task is None else np.full(n, task)
    x = np.zeros((n, 4, 12))
    for i, t in enumerate(tasks):
      for j in range(4):
        c = list(r.choice(10, 2, replace=False) + 10 * t) + [160 + r.integers(96)]
        x[i, j] = (r.uniform(0.5, 2, 3)[:, None] * d[c]).sum(0)
    return x.astype(np.float32), tasks

  pool, labels = samples(4000)
  target, _ = samples(20, task=3)
  return d.astype(np.float32), pool, labels, target


def test_sae_space_jaccard_beats_raw_cosine_on_superposition():
  d, pool, labels, target = _superposition(0)
  dj = jnp.asarray(d)

  def feats(x):  # oracle SAE encoder: the true dictionary + top-3
    return aggregate_features(topk_activation(jnp.asarray(x) @ dj.T, 3))

  sel = np.asarray(select_top_fraction(score_candidates(feats(pool), feats(target)), 0.05))
  precision_sae = float(np.mean(labels[sel] == 3))
  raw_p = pool.mean(1)
  proto = target.mean(1).mean(0)
  cos = raw_p @ proto / (np.linalg.norm(raw_p, axis=1) * np.linalg.norm(proto))
  precision_raw = float(np.mean(labels[np.argsort(-cos)[:200]] == 3))
  assert precision_sae >= precision_raw + 0.05, (precision_sae, precision_raw)
  assert precision_sae >= 10 * (1 / 16), precision_sae
