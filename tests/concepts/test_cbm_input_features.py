"""Furby et al.: class-level labels vs NumPy, the OIS of the project's test plan (exact
construction: 0.395), and identity representations scoring ~0."""

import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax import concepts as C


def test_class_level_labels_match_numpy():
  rng = np.random.default_rng(0)
  c, y = rng.integers(0, 2, (60, 5)), rng.integers(0, 3, 60)
  got = np.asarray(C.class_level_labels(jnp.asarray(c), jnp.asarray(y), n_classes=3))
  for m in range(3):
    np.testing.assert_array_equal(got[y == m], np.broadcast_to(c[y == m].mean(0) >= 0.5,
                                                               ((y == m).sum(), 5)))


def test_ois_exact_construction_and_identity():
  rng = np.random.default_rng(1)
  c = rng.integers(0, 2, (5000, 2))
  leaky = np.stack([c[:, 0] + c[:, 1], c[:, 1]], 1).astype(np.float32)
  out = C.oracle_impurity(jnp.asarray(leaky), jnp.asarray(c), steps=200)
  np.testing.assert_allclose(out.pi_hat, [[0.875, 0.875], [0.5, 1.0]], atol=0.02)
  np.testing.assert_allclose(out.pi_oracle, [[1.0, 0.5], [0.5, 1.0]], atol=0.02)
  assert float(out.ois) == pytest.approx(0.395, abs=0.03)
  ident = C.oracle_impurity(jnp.asarray(c, jnp.float32), jnp.asarray(c), steps=200)
  assert float(ident.ois) <= 0.01


@pytest.mark.parametrize("call, msg", [
    (lambda: C.oracle_impurity(jnp.ones((4, 3)), jnp.ones((4, 2))), "oracle_impurity: c_repr"),
    (lambda: C.class_level_labels(jnp.ones((3, 2)), jnp.zeros(4, jnp.int32), n_classes=2),
     "class_level_labels: y"),
])
def test_errors(call, msg):
  with pytest.raises((ValueError, TypeError), match=msg):
    call()
