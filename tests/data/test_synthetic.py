"""Tests for bottleneck_jax.data.synthetic against independent references: NumPy sample
statistics, the closed-form Gaussian MI computed from the covariance determinant, label counts
reported for the original IDNNs file, and hand-computed probability tables. Units: nats unless
a test says bits."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax.data import (
    CorrelatedGaussians,
    correlated_gaussians,
    discrete_entropy,
    discrete_mutual_information,
    gaussian_mutual_information,
    tishby12,
)

_dmi = jax.jit(discrete_mutual_information)

# ------------------------------------------------------------------------- correlated Gaussians


def test_correlated_gaussians_moments_and_mi_closed_form():
  out = correlated_gaussians(20000, dim=2, rho=0.8, key=jax.random.key(0))
  assert isinstance(out, CorrelatedGaussians)
  x, y = np.asarray(out.x, np.float64), np.asarray(out.y, np.float64)
  assert x.shape == y.shape == (20000, 2) and out.x.dtype == jnp.float32
  cov = np.cov(np.concatenate([x, y], axis=1).T)
  want = np.block([[np.eye(2), 0.8 * np.eye(2)], [0.8 * np.eye(2), np.eye(2)]])
  np.testing.assert_allclose(cov, want, atol=0.03)
  # MI of a joint Gaussian from determinants: 1/2 (log|Sxx| + log|Syy| - log|S|)
  det_mi = 0.5 * (0.0 + 0.0 - np.linalg.slogdet(want)[1])
  assert out.mutual_information == pytest.approx(det_mi, rel=1e-12)
  assert out.mutual_information == pytest.approx(1.0216512475319814, rel=1e-12)
  assert gaussian_mutual_information(0.5) == pytest.approx(0.14384103622589045, rel=1e-12)
  assert gaussian_mutual_information(-0.5, dim=3) == pytest.approx(3 * 0.14384103622589045)


def test_correlated_gaussians_seeded_and_dtype():
  a = correlated_gaussians(8, rho=0.3, key=1)
  b = correlated_gaussians(8, rho=0.3, key=jax.random.key(1))
  np.testing.assert_array_equal(a.x, b.x)
  assert a.x.shape == (8, 1)
  assert correlated_gaussians(4, rho=0.0, key=0, dtype=jnp.bfloat16).y.dtype == jnp.bfloat16
  assert correlated_gaussians(4, rho=0.0, key=0).mutual_information == 0.0


@pytest.mark.parametrize("rho", [1.0, -1.0, 1.5, float("nan")])
def test_correlated_gaussians_rejects_rho_outside_open_interval(rho):
  with pytest.raises(ValueError, match="correlated_gaussians: rho must be"):
    correlated_gaussians(4, rho=rho, key=0)


def test_correlated_gaussians_validation():
  with pytest.raises(ValueError, match="correlated_gaussians: n must be >= 1"):
    correlated_gaussians(0, rho=0.5, key=0)
  with pytest.raises(TypeError, match="correlated_gaussians: dim must be an int"):
    correlated_gaussians(4, dim=1.5, rho=0.5, key=0)
  with pytest.raises(TypeError, match="correlated_gaussians: dtype must be a floating"):
    correlated_gaussians(4, rho=0.5, key=0, dtype=jnp.int32)
  with pytest.raises(TypeError, match="correlated_gaussians: key must be"):
    correlated_gaussians(4, rho=0.5, key="seed")


# ------------------------------------------------------------------------- 12-bit data set


def test_tishby12_inputs_are_all_4096_patterns_in_binary_order():
  x, y = tishby12()
  x = np.asarray(x)
  assert x.shape == (4096, 12) and x.dtype == np.float32 and y.shape == (4096,)
  assert y.dtype == jnp.int32 and set(np.unique(y)) == {0, 1}
  assert len(np.unique(x, axis=0)) == 4096
  as_int = x.astype(np.int64) @ (2 ** np.arange(11, -1, -1))  # bit 0 = most significant
  np.testing.assert_array_equal(as_int, np.arange(4096))


def test_tishby12_label_balance_and_popcount_table_of_the_original_file():
  x, y = tishby12(dtype=jnp.int32)
  x, y = np.asarray(x), np.asarray(y)
  assert y.sum() == 2118
  k = x.sum(1)
  ones = {int(j): int(y[k == j].sum()) for j in range(13)}
  assert all(ones[j] == 0 for j in range(5))
  assert (ones[5], ones[6], ones[7]) == (60, 532, 732)
  assert all(ones[j] == (k == j).sum() for j in range(8, 13))
  p = 2118 / 4096
  h_bits = -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
  assert h_bits == pytest.approx(0.999157, abs=1e-6)
  # Labels are a function of x, so I(X;Y) = H(Y): the joint table p(x, y) has it exactly.
  joint = np.zeros((4096, 2))
  joint[np.arange(4096), y] = 1 / 4096
  mi = _dmi(jnp.asarray(joint, jnp.float32))
  assert float(mi) / math.log(2) == pytest.approx(h_bits, abs=1e-5)


def test_tishby12_labels_are_invariant_to_icosahedral_symmetry():
  """The rule depends on sum(x) and |sum x_i v_i|: flipping all 12 bits maps the field
  sum v_i = 0 (icosahedron is centred) to -field, so y(~x) relates only through popcount; and
  swapping a vertex with its antipode changes nothing for a pattern containing both."""
  x, y = tishby12(dtype=jnp.int32)
  x, y = np.asarray(x), np.asarray(y)
  # complement: |sum (1-x_i) v_i| = |0 - sum x_i v_i|, popcount 12 - k
  comp = (1 - x) @ (2 ** np.arange(11, -1, -1))
  k = x.sum(1)
  six = k == 6  # popcount 6 maps to popcount 6: labels must be equal
  np.testing.assert_array_equal(y[six], y[comp[six]])


# ------------------------------------------------------------------------- discrete MI


def test_discrete_mutual_information_hand_computed_table():
  # p(a,b) = [[0.4, 0.1], [0.1, 0.4]]: marginals 1/2, 1/2
  # I = 2 * 0.4 log(0.4/0.25) + 2 * 0.1 log(0.1/0.25)
  joint = jnp.array([[0.4, 0.1], [0.1, 0.4]])
  want = 0.8 * math.log(1.6) + 0.2 * math.log(0.4)
  assert float(discrete_mutual_information(joint)) == pytest.approx(want, rel=1e-5)  # eager
  # an independent 2x3 table: I = 0, and one with zero cells: I = H(A) = log 2
  indep = jnp.outer(jnp.array([0.3, 0.7]), jnp.array([0.2, 0.5, 0.3]))
  assert abs(float(_dmi(indep))) < 1e-6
  copy = jnp.array([[0.5, 0.0, 0.0], [0.0, 0.25, 0.25]])
  assert float(_dmi(copy)) == pytest.approx(math.log(2), rel=1e-6)
  assert float(discrete_entropy(jnp.array([0.5, 0.25, 0.25, 0.0]))) == pytest.approx(
      1.5 * math.log(2), rel=1e-6)


def test_discrete_mutual_information_jit_and_grad():
  joint = jnp.array([[0.4, 0.1], [0.1, 0.4]])
  assert float(_dmi(joint)) == pytest.approx(
      float(discrete_mutual_information(joint)), rel=1e-6)
  # d I / d p(a,b) (unconstrained) = log p(a,b) - log p(a) - log p(b) - 1
  g = jax.jit(jax.grad(discrete_mutual_information))(joint)
  want = np.log(np.array([[0.4, 0.1], [0.1, 0.4]]) / 0.25) - 1.0
  np.testing.assert_allclose(g, want, rtol=1e-5)


def test_discrete_tables_validation():
  with pytest.raises(ValueError, match="discrete_mutual_information: joint must have rank 2"):
    discrete_mutual_information(jnp.ones(4) / 4)
  with pytest.raises(ValueError, match="discrete_mutual_information: joint must sum to 1"):
    discrete_mutual_information(jnp.ones((2, 2)))
  with pytest.raises(ValueError, match="joint must hold finite non-negative"):
    discrete_mutual_information(jnp.array([[0.75, -0.25], [0.25, 0.25]]))
  with pytest.raises(TypeError, match="discrete_mutual_information: joint must have a floating"):
    discrete_mutual_information(jnp.ones((2, 2), jnp.int32))
  with pytest.raises(ValueError, match="discrete_entropy: p must be a non-empty"):
    discrete_entropy(jnp.ones((0,)))
