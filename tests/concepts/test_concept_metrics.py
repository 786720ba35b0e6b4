"""Aysel et al. metrics: exact values on constructed cases (the project's test plan)."""

import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax import concepts as C
from bottleneck_jax.data import concept_sprites

R = np.random.default_rng(0)


def test_cgim_exact_and_random():
  a = jnp.asarray(R.random((6, 40)), jnp.float32)
  assert float(C.cgim(3 * a + 1, a).mean) == pytest.approx(1.0, abs=1e-6)
  assert float(C.cgim(-a, a).mean) == pytest.approx(-1.0, abs=1e-6)
  perm = R.permutation(40)
  r = C.cgim(a[:, perm], a)
  assert abs(float(r.mean)) < 0.1
  ref = [np.corrcoef(np.asarray(a)[m, perm], np.asarray(a)[m])[0, 1] for m in range(6)]
  np.testing.assert_allclose(r.per_class, ref, rtol=1e-4, atol=1e-6)


def test_cem_exact_and_base_rate():
  n, k = 400, 10
  c = R.integers(0, 2, (n, k))
  w = jnp.asarray(R.random((3, k)) + 0.1, jnp.float32)  # positive weights
  y = jnp.asarray(R.integers(0, 3, n))
  good = jnp.asarray(c * (1 + R.random((n, k))), jnp.float32)  # importance = c * positive
  assert float(C.cem_at_k(w, good, y, jnp.asarray(c), k=3)) == pytest.approx(
      np.mean(np.minimum(c.sum(1), 3) / 3))
  only = np.asarray(c.sum(1) >= 3)
  assert float(C.cem_at_k(w, good[only], y[only], jnp.asarray(c[only]), k=3)) == 1.0
  bad = jnp.asarray((1 - c) * (1 + R.random((n, k))), jnp.float32)  # absent concepts first
  few = np.asarray((1 - c).sum(1) >= 3)
  assert float(C.cem_at_k(w, bad[few], y[few], jnp.asarray(c[few]), k=3)) == 0.0
  rnd = jnp.asarray(R.random((n, k)), jnp.float32)
  assert abs(float(C.cem_at_k(w, rnd, y, jnp.asarray(c), k=3)) - c.mean()) < 0.05


def test_coam_mean_is_the_margin():
  f = jnp.asarray(R.standard_normal((2, 3, 4, 8)), jnp.float32)
  v = jnp.asarray(R.standard_normal((5, 8)), jnp.float32)
  b = jnp.asarray(R.standard_normal(5), jnp.float32)
  maps = C.coam(v, b, f)
  bank = C.ConceptBank(v, b, tuple("abcde"))
  np.testing.assert_allclose(maps.mean((2, 3)), C.concept_margins(bank, f.mean((1, 2))),
                             atol=1e-5)
  assert C.coam(v, b, f, out_hw=(12, 16)).shape == (2, 5, 12, 16)


def test_clm_on_sprites():
  s = concept_sprites(40, seed=3)
  maps, keys, sel = jnp.asarray(s.masks), jnp.asarray(s.centers), jnp.asarray(s.c)
  assert float(C.clm(maps, keys, sel, radius=3.0).score) == 1.0
  rolled = jnp.roll(maps, (12, 12), axis=(2, 3))
  assert float(C.clm(rolled, keys, sel, radius=3.0).score) == 0.0
  # a uniform map points at pixel (0, 0): a hit only for a keypoint within the radius of it
  uni = C.clm(jnp.ones_like(maps), keys, sel, radius=3.0)
  near = (np.linalg.norm(s.centers, axis=-1) <= 3.0) & (s.c == 1)
  assert float(uni.score) == pytest.approx(near.sum() / s.c.sum())
  assert np.isnan(float(C.clm(maps, keys, jnp.zeros_like(sel)).score))


@pytest.mark.parametrize("call, msg", [
    (lambda: C.cgim(jnp.ones((2, 3)), jnp.ones((2, 4))), "cgim: w and class_concept_freq"),
    (lambda: C.cem_at_k(jnp.ones((2, 3)), jnp.ones((4, 4)), jnp.zeros(4, jnp.int32),
                        jnp.ones((4, 4))), "cem_at_k: margins must have size 3"),
    (lambda: C.coam(jnp.ones((2, 3)), jnp.ones(2), jnp.ones((1, 2, 2, 4))), "coam: feat_map"),
    (lambda: C.coam(jnp.ones((0, 3)), jnp.ones(0), jnp.ones((1, 2, 2, 3))), "coam: vectors"),
    (lambda: C.clm(jnp.ones((1, 2, 3, 3)), jnp.ones((1, 3, 2)), jnp.ones((1, 2))),
     "clm: keypoints"),
    (lambda: C.clm(jnp.ones((1, 2, 3, 3)), jnp.ones((1, 2, 2)), jnp.ones((2, 2))), "clm: select"),
])
def test_errors(call, msg):
  with pytest.raises((ValueError, TypeError), match=msg):
    call()
