"""Tests for bottleneck_jax/information/_info_plane.py (Shwartz-Ziv & Tishby's information plane).

Independent references: ``numpy.digitize``; a NumPy re-implementation of IDNNs' binning
estimator (``np.unique`` over the binned rows of the whole data set); the exact information of
the 12-bit data set (I(X;X) = 12 bits, I(X;Y) = H(Y) = 0.999157 bits). Units: bits where
the name says so, nats otherwise.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.data import tishby12
from bottleneck_jax.information import (
    LayerwiseMLP,
    binned_estimator,
    binned_mi,
    information_plane,
    logspaced_epochs,
    plot_information_plane,
    to_bits,
    uniform_bin_codes,
)
from bottleneck_jax.information._info_plane import _codes_mi

LN2 = math.log(2.0)
H_Y = 0.999157


def test_uniform_bin_codes_match_numpy_digitize():
  t = np.random.default_rng(0).uniform(-1.5, 1.5, (50, 3)).astype(np.float32)
  t[0, 0], t[1, 0] = -1.0, 1.0  # exactly on edges
  edges = np.linspace(-1, 1, 30).astype(np.float32)
  np.testing.assert_array_equal(uniform_bin_codes(jnp.asarray(t)), np.digitize(t, edges))


def _np_idnns(t, y, edges):
  """IDNNs: digitize, unique rows over the data set, I(X;T) = H(T), I(T;Y) = H(T) - H(T|Y)."""
  def h(rows):
    _, counts = np.unique(rows, axis=0, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())
  codes = np.digitize(t, edges)
  h_t = h(codes)
  h_ty = sum(np.mean(y == c) * h(codes[y == c]) for c in np.unique(y))
  return h_t, h_t - h_ty


def test_binned_mi_matches_the_reference_estimator_and_the_12_bit_truth():
  x, y = tishby12()
  # the input itself as T: I(X;T) = 12 bits, I(T;Y) = H(Y)
  pt = binned_mi(x, y)
  assert float(to_bits(pt.i_xt)) == pytest.approx(12.0, abs=1e-5)
  assert float(to_bits(pt.i_ty)) == pytest.approx(H_Y, abs=1e-5)
  # a random tanh layer against the NumPy re-implementation
  w = np.random.default_rng(1).normal(size=(12, 3)).astype(np.float32)
  t = np.tanh(np.asarray(x) @ w * 0.3)
  ixt, ity = _np_idnns(t, np.asarray(y), np.linspace(-1, 1, 30))
  got = jax.jit(binned_mi)(jnp.asarray(t), y)
  assert float(to_bits(got.i_xt)) == pytest.approx(ixt, abs=1e-4)
  assert float(to_bits(got.i_ty)) == pytest.approx(ity, abs=1e-4)
  assert float(to_bits(got.i_xt)) <= 12 + 1e-6 and float(to_bits(got.i_ty)) <= H_Y + 1e-6


def test_binned_mi_with_input_codes_subtracts_h_t_given_x():
  # X repeats: rows (0,0) twice map to different T -> H(T|X) > 0
  xc = jnp.array([[0], [0], [1], [1]], jnp.int32)
  t = jnp.array([[-0.9], [0.9], [0.9], [0.9]])
  y = jnp.array([0, 0, 1, 1], jnp.int32)
  pt = binned_mi(t, y, x_codes=xc)
  # I(X;T) = H(T) - H(T|X) = H(1/4, 3/4) - 1/2 * 1 bit
  h_t = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
  assert float(to_bits(pt.i_xt)) == pytest.approx(h_t - 0.5, abs=1e-5)


def test_information_plane_vmaps_over_checkpoints_and_equals_the_loop():
  r = np.random.default_rng(2)
  y = jnp.asarray(r.integers(0, 2, 64), jnp.int32)
  layers = tuple(jnp.asarray(np.tanh(r.normal(size=(3, 64, d))), jnp.float32) for d in (4, 2))
  est = binned_estimator(num_edges=10)
  batched = information_plane(layers, y, estimator=est)
  assert batched.shape == (3, 2, 2)
  for c in range(3):
    one = information_plane(tuple(t[c] for t in layers), y, estimator=est)
    np.testing.assert_allclose(batched[c], one, atol=1e-6)
    ref = [_np_idnns(np.asarray(t[c]), np.asarray(y), np.linspace(-1, 1, 10)) for t in layers]
    np.testing.assert_allclose(np.asarray(one) / LN2, ref, atol=1e-4)


def test_packed_sort_path_with_straddling_digits_many_labels_and_input_codes():
  # 100 edges -> 7-bit codes; 1000 rows -> 22-bit sort digits, so codes straddle digits (7
  # columns = 49 bits = 3 passes); repeated rows, non-finite values, 5 shuffled label classes.
  r = np.random.default_rng(4)
  n, edges = 1000, np.linspace(-1, 1, 100).astype(np.float32)
  t = (r.integers(-3, 4, (n, 7)) / 2.9).astype(np.float32)
  t[:5, 0], t[5:10, 6] = np.nan, [np.inf, -np.inf, 1.0, -1.0, 0.99]
  y = r.permutation(np.arange(n) % 5).astype(np.int32)
  xc = (np.arange(n) // 2).astype(np.int32)[:, None]  # inputs repeat in pairs
  ixt, ity = _np_idnns(t, y, edges)
  codes = np.digitize(t, edges)
  def h(rows):
    _, counts = np.unique(rows, axis=0, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())
  ixt_x = h(codes) + h(xc) - h(np.concatenate([codes, xc], 1))
  @jax.jit
  def both(t, y, xc):
    codes = uniform_bin_codes(t, num_edges=100)
    # the packed single-key sorts against the lexsort path (no code range given)
    return codes, binned_mi(t, y, x_codes=xc, num_edges=100), _codes_mi("t", codes, y, xc)
  got_codes, got, lexsorted = both(jnp.asarray(t), jnp.asarray(y), jnp.asarray(xc))
  np.testing.assert_array_equal(got_codes, codes)
  assert float(to_bits(got.i_ty)) == pytest.approx(ity, abs=1e-4)
  assert float(to_bits(got.i_xt)) == pytest.approx(ixt_x, abs=1e-4)
  assert ixt_x < ixt - 0.1  # H(T|X) > 0 here, so the input codes matter
  np.testing.assert_array_equal(np.asarray(got), np.asarray(lexsorted))  # bit for bit


def test_layerwise_mlp_returns_hidden_layers_with_fan_in_init():
  m = LayerwiseMLP(rngs=nnx.Rngs(0))
  out = m(jnp.ones((5, 12)))
  assert out.logits.shape == (5, 2)
  assert [h.shape[1] for h in out.hidden] == [10, 7, 5, 4, 3]
  assert all(float(jnp.max(jnp.abs(h))) <= 1.0 for h in out.hidden)  # tanh
  # tf.truncated_normal(stddev=1/sqrt(fan_in)): cut at 2 scales, so the std is 0.8796 scales
  big = LayerwiseMLP((400, 300, 2), rngs=nnx.Rngs(1))
  k = np.asarray(big.layers[0].kernel[...])
  assert np.std(k) == pytest.approx(0.8796 / math.sqrt(400), rel=0.02)
  assert np.max(np.abs(k)) <= 2 / math.sqrt(400) + 1e-6
  assert not np.any(np.asarray(big.layers[0].bias[...]))


def test_logspaced_epochs_and_plot(tmp_path):
  e = logspaced_epochs(2000, 30)
  assert e[0] == 0 and e[-1] == 2000 and np.all(np.diff(e) > 0)
  plane = np.random.default_rng(3).uniform(0, 5, (len(e), 3, 2))
  path = plot_information_plane(tmp_path / "p" / "plane.png", plane, e, title="t",
                                bounds=(12.0, H_Y))
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  with pytest.raises(ValueError, match="plot_information_plane: plane must have shape"):
    plot_information_plane(tmp_path / "q.png", plane[0], e)


def test_bad_inputs_get_named_errors():
  y = jnp.zeros((4,), jnp.int32)
  with pytest.raises(ValueError, match="binned_mi: labels must have shape"):
    binned_mi(jnp.zeros((5, 2)), y)
  with pytest.raises(ValueError, match="uniform_bin_codes: lo and hi must be finite"):
    uniform_bin_codes(jnp.zeros(3), lo=1.0, hi=-1.0)
  with pytest.raises(ValueError, match="information_plane: layers must share"):
    information_plane((jnp.zeros((4, 2)), jnp.zeros((5, 2))), y, estimator=binned_estimator())
  with pytest.raises(TypeError, match="information_plane: estimator must be callable"):
    information_plane((jnp.zeros((4, 2)),), y, estimator=None)
