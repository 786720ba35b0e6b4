"""FSQ against independent references: the paper's formulas in float64 NumPy loops, the test plan's
golden vectors, an exhaustive index round trip over the 1000 codes of [8, 5, 5, 5]."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.quantize import FSQ, fsq, fsq_codes_to_indices, fsq_indices_to_codes

LEVELS = [8, 5, 5, 5]


def _np_fsq(z, levels, eps=1e-3):
  """Scalar loops, float64: the bound of Mentzer et al. and the mixed-radix index."""
  z = np.asarray(z, np.float64)
  flat = z.reshape(-1, len(levels))
  codes = np.zeros_like(flat)
  idx = np.zeros(flat.shape[0], np.int64)
  for n in range(flat.shape[0]):
    base = 1
    for j, lv in enumerate(levels):
      half_l = (lv - 1) * (1 + eps) / 2
      offset = 0.5 if lv % 2 == 0 else 0.0
      shift = math.atanh(offset / half_l)
      b = math.tanh(flat[n, j] + shift) * half_l - offset
      r = float(np.round(b))
      codes[n, j] = r / (lv // 2)
      idx[n] += int(r + lv // 2) * base
      base *= lv
  return codes.reshape(z.shape), idx.reshape(z.shape[:-1])


def test_golden_vectors_and_hand_computed_values():
  out = fsq(jnp.array([[0.25, 0.6, -7.0, 1.0], [-0.3, 0.0, 0.49, -0.49]]), levels=LEVELS)
  np.testing.assert_array_equal(np.asarray(out.z), [[0.25, 0.5, -1.0, 1.0],
                                                    [-0.25, 0.0, 0.5, -0.5]])
  np.testing.assert_array_equal(np.asarray(out.aux["indices"]), [829, 339])
  # by hand, L = 5: tanh(0.3) * 1.998 = 0.582 -> 1 -> 0.5; L = 4 (offset 0.5, shift
  # atanh(0.5/1.4985) = 0.3470): tanh(-2 + 0.347) * 1.4985 - 0.5 = -1.911 -> -2 -> -1.0
  out = fsq(jnp.array([0.3, -2.0]), levels=[5, 4])
  np.testing.assert_array_equal(np.asarray(out.z), [0.5, -1.0])
  assert int(out.aux["indices"]) == (1 + 2) + (-2 + 2) * 5


@pytest.mark.parametrize("levels", [LEVELS, [7, 5, 5, 5, 5], [3, 4, 6]])
def test_matches_numpy_loops(levels):
  z = np.random.default_rng(0).normal(scale=2.0, size=(3, 7, len(levels))).astype(np.float32)
  out = fsq(jnp.asarray(z), levels=levels)
  codes, idx = _np_fsq(z, levels)
  np.testing.assert_allclose(np.asarray(out.z), codes, atol=1e-7)
  np.testing.assert_array_equal(np.asarray(out.aux["indices"]), idx)
  np.testing.assert_allclose(np.asarray(out.bits), [7 * math.log2(math.prod(levels))] * 3,
                             rtol=1e-6)
  assert out.z.dtype == jnp.float32 and out.aux["indices"].dtype == jnp.int32
  assert float(out.loss) == 0.0
  # every code value lies on the documented grid inside [-1, 1]
  for j, lv in enumerate(levels):
    grid = (np.arange(lv) - lv // 2) / (lv // 2)
    assert set(np.unique(np.asarray(out.z)[..., j])) <= set(grid.astype(np.float32))


def test_round_trip_over_all_1000_codes():
  n = math.prod(LEVELS)
  assert n == 1000
  idx = jnp.arange(n, dtype=jnp.int32)
  codes = fsq_indices_to_codes(idx, levels=LEVELS)
  np.testing.assert_array_equal(np.asarray(fsq_codes_to_indices(codes, levels=LEVELS)),
                                np.arange(n))
  # the codes are exactly the grid, first channel least significant (independent enumeration)
  grids = [(np.arange(lv) - lv // 2) / (lv // 2) for lv in LEVELS]
  expected = np.array([c[::-1] for c in itertools.product(*grids[::-1])])
  np.testing.assert_array_equal(np.asarray(codes), expected.astype(np.float32))


def test_ste_gradient_is_the_bound_derivative():
  z = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
  g = jax.grad(lambda x: jnp.sum(fsq(x, levels=LEVELS).z))(jnp.asarray(z))
  expect = np.zeros_like(z, dtype=np.float64)
  for j, lv in enumerate(LEVELS):
    half_l = (lv - 1) * 1.001 / 2
    shift = math.atanh((0.5 if lv % 2 == 0 else 0.0) / half_l)
    expect[:, j] = (1 - np.tanh(z[:, j] + shift) ** 2) * half_l / (lv // 2)
  np.testing.assert_allclose(np.asarray(g), expect, rtol=1e-5)


def test_jit_vmap_module_and_bf16():
  z = jnp.asarray(np.random.default_rng(2).normal(size=(4, 3, 4)).astype(np.float32))
  ref = fsq(z, levels=LEVELS)
  jitted = jax.jit(lambda x: fsq(x, levels=LEVELS))(z)
  np.testing.assert_array_equal(np.asarray(jitted.aux["indices"]), np.asarray(ref.aux["indices"]))
  vm = jax.vmap(lambda x: fsq(x, levels=LEVELS).aux["indices"])(z)
  np.testing.assert_array_equal(np.asarray(vm), np.asarray(ref.aux["indices"]))
  layer = FSQ(LEVELS, rngs=nnx.Rngs(0))
  assert layer.codebook_size == 1000
  np.testing.assert_array_equal(np.asarray(layer(z).z), np.asarray(ref.z))
  assert not nnx.state(layer, nnx.Param)
  out16 = fsq(z.astype(jnp.bfloat16), levels=LEVELS)
  assert out16.z.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(layer.codes_to_indices(out16.z)),
                                np.asarray(out16.aux["indices"]))


def test_validation():
  z = jnp.zeros((2, 4))
  with pytest.raises(ValueError, match="fsq: levels must be"):
    fsq(z, levels=[8, 5, 5, 1])
  with pytest.raises(ValueError, match="fsq: levels must be .* >= 3"):
    fsq(z, levels=[8, 5, 5, 2])
  with pytest.raises(TypeError, match="fsq: levels must be"):
    fsq(z, levels=[8, 5, 5, 2.5])
  with pytest.raises(TypeError, match="fsq: levels must be"):
    fsq(z, levels=8)
  with pytest.raises(ValueError, match=r"fsq: z must have size 3 on axis -1"):
    fsq(z, levels=[8, 5, 5])
  with pytest.raises(TypeError, match="fsq: z must have a floating dtype"):
    fsq(jnp.zeros((2, 4), jnp.int32), levels=LEVELS)
  with pytest.raises(TypeError, match="fsq_indices_to_codes: indices must have an integer"):
    fsq_indices_to_codes(jnp.zeros(3), levels=LEVELS)
  with pytest.raises(ValueError, match="fsq_codes_to_indices: codes must have size 4"):
    fsq_codes_to_indices(jnp.zeros((3, 2)), levels=LEVELS)
