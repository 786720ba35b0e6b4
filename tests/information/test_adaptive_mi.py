"""Tests for bottleneck_jax/information/_adaptive_mi.py (Chelombiev et al. 2019: EBAB, aKDE).

Independent references: a NumPy port of the reference code's ``set_up_bins(maxentropy=True)``
followed by ``np.digitize`` and ``np.unique`` counts; the test plan's value for an injective layer
(4096 distinct values, 32 bins: 5.00 bits); invariance of EBAB to strictly increasing maps
(which fixed-width binning lacks); scale invariance of aKDE. Units: bits where named.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax.information import (
    adaptive_bin_codes,
    adaptive_binned_mi,
    adaptive_kde_mi,
    binned_mi,
    equal_count_bin_edges,
    kde_mi,
    to_bits,
)


def _np_reference_edges(acts, num_bins, low):
  """ivansche/adaptive_estimators set_up_bins(maxentropy=True, per_layer_bins=True), one layer."""
  bins = [low]
  unique = np.sort(np.setdiff1d(np.unique(acts.reshape(-1)), bins))
  for k in range(num_bins):
    bins.append(unique[int(k * (unique.size / num_bins))])
  bins.append(unique[-1])
  return np.asarray(bins)


def _np_entropy_bits(codes):
  _, counts = np.unique(codes.reshape(len(codes), -1), axis=0, return_counts=True)
  p = counts / counts.sum()
  return float(-(p * np.log2(p)).sum())


def test_edges_and_entropy_match_the_reference_code():
  r = np.random.default_rng(0)
  acts = np.maximum(r.normal(size=(500, 3)), 0).astype(np.float32)   # ReLU: many exact zeros
  ref_edges = _np_reference_edges(acts, 30, 0.0)
  edges = jax.jit(equal_count_bin_edges, static_argnames=("num_bins", "low"))(
      jnp.asarray(acts), num_bins=30, low=0.0)
  np.testing.assert_array_equal(np.asarray(edges), ref_edges.astype(np.float32))
  codes = np.asarray(adaptive_bin_codes(jnp.asarray(acts), num_bins=30))
  np.testing.assert_array_equal(codes, np.digitize(acts, ref_edges))
  y = jnp.asarray(r.integers(0, 2, 500), jnp.int32)
  got = adaptive_binned_mi(jnp.asarray(acts), y, num_bins=30)
  assert float(to_bits(got.i_xt)) == pytest.approx(_np_entropy_bits(np.digitize(acts, ref_edges)),
                                                   abs=1e-4)


def test_injective_layer_with_32_bins_has_5_bits():
  t = jnp.asarray(np.random.default_rng(1).permutation(4096) + 1.0, jnp.float32)[:, None]
  y = jnp.zeros((4096,), jnp.int32)
  assert float(to_bits(adaptive_binned_mi(t, y, num_bins=32).i_xt)) == pytest.approx(
      5.0, abs=0.01)


def test_ebab_is_invariant_to_monotone_maps_and_uniform_binning_is_not():
  r = np.random.default_rng(2)
  t = jnp.asarray(r.uniform(0.0, 1.0, (400, 2)), jnp.float32)
  y = jnp.asarray(r.integers(0, 2, 400), jnp.int32)
  base = adaptive_binned_mi(t, y, num_bins=30)
  for f in (lambda v: 3 * v + 1, lambda v: v ** 3):
    other = adaptive_binned_mi(f(t), y, num_bins=30)
    assert float(other.i_xt) == pytest.approx(float(base.i_xt), abs=1e-5)
    assert float(other.i_ty) == pytest.approx(float(base.i_ty), abs=1e-5)
  fixed = binned_mi(t, y), binned_mi(t ** 3, y)
  assert abs(float(fixed[0].i_xt) - float(fixed[1].i_xt)) > 0.1


def test_adaptive_kde_is_scale_free_and_equals_kde_on_the_rescaled_layer():
  r = np.random.default_rng(3)
  h = jnp.asarray(np.maximum(r.normal(size=(80, 3)), 0), jnp.float32)
  y = jnp.asarray(r.integers(0, 2, 80), jnp.int32)
  a = adaptive_kde_mi(h, y, var=0.05)
  b = adaptive_kde_mi(7.0 * h, y, var=0.05)
  ref = kde_mi(h / jnp.max(jnp.abs(h)), y, var=0.05)
  for u, v, w in zip(a, b, ref):
    assert float(u) == pytest.approx(float(v), abs=1e-4)
    assert float(u) == pytest.approx(float(w), abs=1e-5)
  plain = adaptive_kde_mi(7.0 * h, y, var=0.05, rescale="none")
  assert float(plain.i_xt) > float(b.i_xt) + 0.5   # the fixed noise is small for a wide layer
  zero = adaptive_kde_mi(jnp.zeros_like(h), y, var=0.05)
  assert math.isfinite(float(zero.i_xt)) and abs(float(zero.i_xt)) < 1e-5


def test_bad_inputs_get_named_errors():
  y = jnp.zeros((4,), jnp.int32)
  with pytest.raises(ValueError, match="adaptive_kde_mi: rescale must be one of"):
    adaptive_kde_mi(jnp.zeros((4, 2)), y, var=0.1, rescale="max")
  with pytest.raises(ValueError, match="adaptive_kde_mi: var"):
    adaptive_kde_mi(jnp.zeros((4, 2)), y, var=float("nan"))
  with pytest.raises(ValueError, match="adaptive_binned_mi: labels must have shape"):
    adaptive_binned_mi(jnp.zeros((5, 2)), y)
  with pytest.raises(ValueError, match="equal_count_bin_edges: low must be finite"):
    equal_count_bin_edges(jnp.zeros((4, 2)), low=float("inf"))
  with pytest.raises(ValueError, match="equal_count_bin_edges: num_bins must be >= 1"):
    equal_count_bin_edges(jnp.zeros((4, 2)), num_bins=0)
