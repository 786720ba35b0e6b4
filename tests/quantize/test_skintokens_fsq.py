"""SkinTokens: coordinate bins against NumPy, the rig token sequence and its inverse, and the
FSQ-CVAE: tokens -> codes -> decoder reproduces the quantised forward exactly; the encoder's
gradient flows through FSQ's straight-through rounding."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.quantize import (
  FSQCVAE,
  SKINTOKENS_LEVELS,
  dequantize_coordinates,
  quantize_coordinates,
  rig_token_sequence,
  split_rig_token_sequence,
)

RNG = np.random.default_rng(2)


def test_coordinate_bins_match_numpy_and_round_trip_to_half_a_bin():
  x = RNG.uniform(-1, 1, size=(50, 3)).astype(np.float32)
  t = quantize_coordinates(jnp.asarray(x))
  np.testing.assert_array_equal(np.asarray(t), np.clip(np.floor((x + 1) / 2 * 256), 0, 255))
  back = np.asarray(dequantize_coordinates(t))
  assert np.abs(back - x).max() <= 1 / 256 + 1e-6


def test_rig_sequence_layout_and_inverse():
  joints = jnp.asarray(RNG.integers(0, 256, (2, 4, 3)), jnp.int32)
  skins = jnp.asarray(RNG.integers(0, 64000, (2, 4, 2)), jnp.int32)
  seq = rig_token_sequence(joints, skins)
  assert seq.shape == (2, 20)
  np.testing.assert_array_equal(np.asarray(seq[0, :5]),
                                np.r_[np.asarray(joints[0, 0]), np.asarray(skins[0, 0]) + 256])
  j, s = split_rig_token_sequence(seq, coords=3, tokens=2)
  np.testing.assert_array_equal(np.asarray(j), np.asarray(joints))
  np.testing.assert_array_equal(np.asarray(s), np.asarray(skins))


def test_fsq_cvae_tokens_decode_to_the_forward_and_gradients_flow():
  model = FSQCVAE(32, 2, levels=SKINTOKENS_LEVELS, num_tokens=2, hidden=16, rngs=nnx.Rngs(0))
  w = jnp.asarray(RNG.uniform(size=(5, 32)), jnp.float32)
  c = jnp.asarray(RNG.normal(size=(5, 2)), jnp.float32)
  out = model(w, c)
  assert out.aux["tokens"].shape == (5, 2) and int(out.aux["tokens"].max()) < 64000
  np.testing.assert_array_equal(np.asarray(model.decode_tokens(out.aux["tokens"], c)),
                                np.asarray(out.z))
  np.testing.assert_allclose(np.asarray(out.bits), 2 * np.log2(64000), rtol=1e-6)

  def loss(m):
    return jnp.mean(jnp.abs(m(w, c).z - w))
  grads = nnx.grad(loss)(model)
  assert float(jnp.abs(grads.enc1.kernel[...]).sum()) > 0      # through the STE


def test_validation():
  with pytest.raises(ValueError, match="quantize_coordinates: high must be > low"):
    quantize_coordinates(jnp.zeros(3), low=1.0, high=1.0)
  with pytest.raises(TypeError, match="quantize_coordinates: x must have a floating dtype"):
    quantize_coordinates(jnp.zeros(3, jnp.int32))
  with pytest.raises(ValueError, match="split_rig_token_sequence: sequence length must be"):
    split_rig_token_sequence(jnp.zeros((7,), jnp.int32), coords=3, tokens=1)
  with pytest.raises(ValueError, match="rig_token_sequence: skin_tokens must have the leading"):
    rig_token_sequence(jnp.zeros((2, 3), jnp.int32), jnp.zeros((3, 1), jnp.int32))
  with pytest.raises(ValueError, match="FSQCVAE: levels must be"):
    FSQCVAE(4, 2, levels=(1, 5), rngs=nnx.Rngs(0))
