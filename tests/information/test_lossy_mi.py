"""Tests for bottleneck_jax/information/_lossy_mi.py (Butakov et al.: compress, then estimate).

Independent references: ``numpy.linalg.svd`` principal components and variances; the
invariance of MI to injective maps (a random rotation/scaling of a low-dimensional Gaussian pair
embedded in more dimensions gives back the closed-form MI); the data-processing inequality for
a lossy projection; Gaussian noise statistics of ``noisy_forward``. Units: nats.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax.data import correlated_gaussians
from bottleneck_jax.information import lossy_mi, noisy_forward, pca_fit, pca_transform


def test_pca_matches_numpy_svd():
  r = np.random.default_rng(0)
  x = (r.normal(size=(200, 5)) * [3.0, 2.0, 1.0, 0.5, 0.1]).astype(np.float32)
  p = pca_fit(jnp.asarray(x), num_components=3)
  xc = x - x.mean(0)
  _, s, vt = np.linalg.svd(xc, full_matrices=False)
  np.testing.assert_allclose(np.abs(np.asarray(p.components)), np.abs(vt[:3]), atol=1e-4)
  np.testing.assert_allclose(p.variances, s[:3] ** 2 / 199, rtol=1e-4)
  z = pca_transform(jnp.asarray(x), p, whiten=True)
  np.testing.assert_allclose(np.var(np.asarray(z), axis=0, ddof=1), 1.0, rtol=1e-3)


def test_lossy_mi_recovers_an_embedded_gaussian_pair_and_bounds_a_lossy_one():
  # I = 1 nat split over 2 pairs, embedded linearly (injective) in 12 dimensions
  rho = math.sqrt(1 - math.exp(-1.0))
  xi, eta, truth = correlated_gaussians(1500, dim=2, rho=rho, key=3)
  r = np.random.default_rng(1)
  a = jnp.asarray(np.linalg.qr(r.normal(size=(12, 2)))[0] * [2.0, 0.5], jnp.float32)
  b = jnp.asarray(np.linalg.qr(r.normal(size=(12, 2)))[0], jnp.float32)
  x, y = xi @ a.T, eta @ b.T
  est = jax.jit(lossy_mi, static_argnames=("x_components", "y_components", "k"))
  full = float(est(x, y, x_components=2, y_components=2, k=5))
  lossy = float(est(x, y, x_components=1, y_components=1, k=5))
  assert truth == pytest.approx(1.0)
  assert full == pytest.approx(truth, abs=0.08)   # KSG bias at N = 1500 is a few 0.01 nats
  assert lossy < truth - 0.2                       # one of the two pairs is dropped


def test_noisy_forward_adds_independent_gaussian_noise():
  x = jnp.zeros((4000, 3))
  acts = noisy_forward([lambda h: h + 1.0, jnp.tanh], x, key=0, sigma=0.5)
  n0 = np.asarray(acts[0]) - 1.0
  assert np.std(n0) == pytest.approx(0.5, rel=0.03) and abs(np.mean(n0)) < 0.02
  n1 = np.asarray(acts[1]) - np.tanh(np.asarray(acts[0]))
  assert np.std(n1) == pytest.approx(0.5, rel=0.03)
  assert abs(np.corrcoef(n0[:, 0], n1[:, 0])[0, 1]) < 0.05


def test_bad_inputs_get_named_errors():
  x = jnp.zeros((10, 3))
  with pytest.raises(ValueError, match="lossy_mi: x and y must have the same number of samples"):
    lossy_mi(x, jnp.zeros((9, 3)), x_components=1, y_components=1)
  with pytest.raises(ValueError, match="lossy_mi: x_components must be <= 3"):
    lossy_mi(x, x, x_components=4, y_components=1)
  with pytest.raises(ValueError, match="lossy_mi: k must be < N"):
    lossy_mi(x, x, x_components=1, y_components=1, k=10)
  with pytest.raises(ValueError, match="pca_transform: x must have 3 features"):
    pca_transform(jnp.zeros((4, 2)), pca_fit(x, num_components=1))
  with pytest.raises(TypeError, match="noisy_forward: layers must be a non-empty list"):
    noisy_forward([], x, key=0, sigma=0.1)
