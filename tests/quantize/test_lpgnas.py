"""LPGNAS quantisers against NumPy: the fixed-point grids (fix4.3 = {-1, -0.875, ..., 0.875}),
binary and ternary (TWN) rules, straight-through gradients; the DARTS mixtures, the size penalty
and the quantised GCN layer; ArchParam logits are separable from the weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.quantize import (
  ArchParam,
  QuantGCNLayer,
  QuantSpec,
  binary_quantize,
  expected_bits,
  fixed_point_quantize,
  mixed_op,
  mixed_quantize,
  quantize_with,
  ternary_quantize,
)

RNG = np.random.default_rng(9)
X = RNG.normal(size=(40,)).astype(np.float32) * 1.5


@pytest.mark.parametrize("w,f", [(4, 3), (8, 4), (2, 1), (16, 12)])
def test_fixed_point_grid_and_values(w, f):
  grid = np.arange(-(2 ** (w - 1)), 2 ** (w - 1)) / 2.0 ** f
  q = np.asarray(fixed_point_quantize(jnp.asarray(X), total_bits=w, frac_bits=f))
  assert set(np.round(q * 2 ** f).astype(int)) <= set(np.round(grid * 2 ** f).astype(int))
  np.testing.assert_allclose(q, np.clip(np.round(X * 2.0 ** f), -(2 ** (w - 1)),
                                        2 ** (w - 1) - 1) / 2.0 ** f)
  if (w, f) == (4, 3):
    np.testing.assert_allclose(grid, np.arange(-8, 8) / 8)       # {-1, -0.875, ..., 0.875}


def test_straight_through_gradients():
  x = jnp.asarray([-3.0, 0.3, 0.5])
  g = jax.grad(lambda a: jnp.sum(fixed_point_quantize(a, total_bits=4, frac_bits=3)))(x)
  np.testing.assert_array_equal(np.asarray(g), [1, 1, 1])
  g = jax.grad(lambda a: jnp.sum(fixed_point_quantize(a, total_bits=4, frac_bits=3,
                                                      ste="clipped")))(x)
  np.testing.assert_array_equal(np.asarray(g), [0, 1, 1])
  for q in (binary_quantize, ternary_quantize):
    np.testing.assert_array_equal(np.asarray(jax.grad(lambda a, q=q: jnp.sum(q(a)))(x)), 1)


def test_binary_and_ternary_match_numpy():
  np.testing.assert_allclose(np.asarray(binary_quantize(jnp.asarray(X))),
                             np.where(X >= 0, 1, -1) * np.abs(X).mean(), rtol=1e-6)
  a = np.abs(X)
  big = a > 0.7 * a.mean()
  np.testing.assert_allclose(np.asarray(ternary_quantize(jnp.asarray(X))),
                             np.where(big, np.sign(X) * a[big].mean(), 0), rtol=1e-6)


def test_mixtures_and_penalty():
  cands = (QuantSpec("fixed", 4, 3), QuantSpec("fixed", 2, 1), QuantSpec("ternary"),
           QuantSpec("binary"))
  x = jnp.asarray(X)
  for m, c in enumerate(cands):          # a one-hot-ish logit picks the candidate
    logits = jnp.full((4,), -30.0).at[m].set(30.0)
    np.testing.assert_allclose(np.asarray(mixed_quantize(x, logits, cands)),
                               np.asarray(quantize_with(x, c)), atol=1e-6)
  p = np.exp([0.0, 1.0, 2.0, 3.0]) / np.exp([0.0, 1.0, 2.0, 3.0]).sum()
  np.testing.assert_allclose(float(expected_bits(jnp.arange(4.0), cands, numel=7)),
                             7 * (p @ [4, 2, 2, 1]), rtol=1e-6)
  np.testing.assert_allclose(float(mixed_op(2.0, jnp.arange(2.0), [lambda v: v, jnp.square])),
                             (2 + np.e * 4) / (1 + np.e), rtol=1e-6)
  assert [str(c) for c in cands] == ["fix4.3", "fix2.1", "ternary", "binary"]


def test_quant_gcn_layer_matches_numpy_and_separates_arch_params():
  w_c, a_c = (QuantSpec("fixed", 4, 3), QuantSpec("binary")), (QuantSpec("fixed", 8, 4),)
  layer = QuantGCNLayer(3, 2, weight_candidates=w_c, act_candidates=a_c, rngs=nnx.Rngs(0))
  x = RNG.normal(size=(5, 3)).astype(np.float32)
  adj = RNG.uniform(size=(5, 5)).astype(np.float32)
  w = np.asarray(layer.w[...])
  wq = 0.5 * np.clip(np.round(w * 8), -8, 7) / 8 + 0.5 * np.where(w >= 0, 1, -1) * np.abs(w).mean()
  xq = np.clip(np.round(x * 16), -128, 127) / 16
  np.testing.assert_allclose(np.asarray(layer(jnp.asarray(x), jnp.asarray(adj))),
                             adj @ (xq @ wq), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(float(layer.expected_weight_bits()), 2.5)
  names = {p[0] for p, _ in nnx.to_flat_state(nnx.state(layer, ArchParam))}
  assert names == {"w_logits", "a_logits"}
  assert layer.choice() == (w_c[0], a_c[0])


def test_validation():
  with pytest.raises(ValueError, match="fixed_point_quantize: total_bits must be"):
    fixed_point_quantize(jnp.ones(3), total_bits=0, frac_bits=0)
  with pytest.raises(TypeError, match="fixed_point_quantize: x must have a floating dtype"):
    fixed_point_quantize(jnp.ones(3, jnp.int32), total_bits=4, frac_bits=2)
  with pytest.raises(ValueError, match="mixed_quantize: logits must have size 2"):
    mixed_quantize(jnp.ones(3), jnp.zeros(3), (QuantSpec("binary"), QuantSpec("float")))
  with pytest.raises(TypeError, match="expected_bits: candidates must be"):
    expected_bits(jnp.zeros(1), ("fix4.3",))
  with pytest.raises(ValueError, match="binary_quantize: x must have at least one element"):
    binary_quantize(jnp.zeros((0,)))
