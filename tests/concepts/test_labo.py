"""LaBo: MI score vs a NumPy transcription of the reference, NaN guard, greedy facility
location vs brute force, logits and the association prior (the project's test plan)."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax import concepts as C

R = np.random.default_rng(0)


def _ref_mi(s):
  """models/select_concept/select_algo.py::mi_score, transcribed."""
  m = s.shape[1]
  p_cy = s / s.sum(0, keepdims=True) / m
  p_c = p_cy.sum(1, keepdims=True)
  return (p_cy * np.log(p_cy / (p_c / m))).sum(1)


def test_mi_matches_reference_and_is_nonnegative():
  s = R.random((20, 5)) + 0.1
  got = np.asarray(C.labo_mi_score(jnp.asarray(s, jnp.float32), epsilon=0.0))
  np.testing.assert_allclose(got, _ref_mi(s), rtol=2e-4, atol=1e-7)
  assert got.min() >= 0
  flat = np.array([[1.0, 1.0, 1.0], [3.0, 1.0, 2.0], [2.0, 4.0, 3.0]])  # equal column sums
  assert float(C.labo_mi_score(jnp.asarray(flat, jnp.float32), epsilon=0.0)[0]) == 0.0


def test_negative_similarities_stay_finite():
  s = R.standard_normal((10, 4))
  with np.errstate(all="ignore"):
    assert np.isnan(_ref_mi(s)).any()  # the reference formula breaks without the cone
  got = np.asarray(C.labo_mi_score(jnp.asarray(s, jnp.float32)))
  assert np.all(np.isfinite(got)) and got.min() >= 0


def test_greedy_facility_location_vs_brute_force():
  p, k = 8, 3
  v = R.standard_normal((p, 5))
  v /= np.linalg.norm(v, axis=1, keepdims=True)
  sim = jnp.asarray(v @ v.T, jnp.float32)
  valid = jnp.ones(p)
  sel = C.greedy_submodular(jnp.zeros(p), sim, valid, k=k, alpha=0.0, beta=1.0,
                            normalize=False)
  idx = np.asarray(sel.index)

  def value(subset):
    mask = np.zeros(p)
    mask[list(subset)] = 1
    return float(C.facility_location_value(sim, jnp.asarray(mask), valid))

  best = max(value(c) for c in itertools.combinations(range(p), k))
  assert value(idx) >= (1 - 1 / np.e) * best
  gains = [value(idx[:t + 1]) - value(idx[:t]) for t in range(k)]
  assert all(g >= -1e-6 for g in gains) and all(a >= b - 1e-6 for a, b in zip(gains, gains[1:]))
  # a pool with fewer valid entries than k pads with -1
  short = C.greedy_submodular(jnp.zeros(p), sim, jnp.zeros(p).at[2].set(1), k=2)
  assert np.asarray(short.index).tolist() == [2, -1]


def test_select_per_class_uses_each_pool():
  txt = jnp.asarray(R.standard_normal((9, 4)), jnp.float32)
  owner = jnp.asarray([0, 0, 0, 1, 1, 1, 2, 2, 2])
  mi = jnp.asarray(R.random(9), jnp.float32)
  sel = C.select_per_class(mi, txt, owner, n_classes=3, k=2, beta=0.0)
  idx = np.asarray(sel.index)
  for m in range(3):
    pool = np.arange(3 * m, 3 * m + 3)
    assert set(idx[m]) == set(pool[np.argsort(-np.asarray(mi)[pool])[:2]])


def test_logits_and_prior():
  a = C.labo_init_assoc(jnp.asarray([1, 0, 1]), n_classes=2)
  np.testing.assert_array_equal(a, [[0, 1, 0], [1, 0, 1]])
  img = R.standard_normal((4, 6)).astype(np.float32)
  txt = R.standard_normal((3, 6)).astype(np.float32)
  got = C.labo_logits(a, jnp.asarray(img), jnp.asarray(txt), scale=100.0)
  e = np.exp(np.asarray(a))
  w = e / e.sum(1, keepdims=True)
  np.testing.assert_allclose(got, 100 * (img @ txt.T) @ w.T, rtol=1e-4, atol=1e-4)
  head = C.LaBoHead(jnp.asarray([1, 0, 1]), jnp.asarray(txt), 2, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(head(jnp.asarray(img)), got, rtol=1e-5)
  s = C.class_concept_similarity(jnp.asarray(img), jnp.asarray([0, 1, 1, 0]), jnp.asarray(txt),
                                 n_classes=2)
  np.testing.assert_allclose(s[:, 1], txt @ img[[1, 2]].mean(0), rtol=1e-5)


@pytest.mark.parametrize("call, msg", [
    (lambda: C.labo_mi_score(jnp.ones((0, 3))), "labo_mi_score: sim"),
    (lambda: C.greedy_submodular(jnp.ones(3), jnp.ones((3, 2)), jnp.ones(3), k=1),
     "greedy_submodular: sim must be square"),
    (lambda: C.greedy_submodular(jnp.ones(3), jnp.eye(3), jnp.ones(3), k=4),
     "greedy_submodular: k"),
    (lambda: C.labo_logits(jnp.ones((2, 3)), jnp.ones(4), jnp.ones((2, 4))),
     "labo_logits: assoc must have size 2"),
    (lambda: C.class_concept_similarity(jnp.ones((3, 4)), jnp.zeros(3, jnp.int32),
                                        jnp.ones((0, 4)), n_classes=2),
     "class_concept_similarity: txt"),
])
def test_errors(call, msg):
  with pytest.raises((ValueError, TypeError), match=msg):
    call()
