"""Tests for bottleneck_jax/compression/_wavelets.py against PyWavelets (an independent
implementation in C) and closed-form properties of linear maps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax.compression import (
  crop_padding,
  inverse_wavelet_packet_1d,
  inverse_wavelet_packet_2d,
  pad_to_multiple,
  wavelet_filters,
  wavelet_packet_1d,
  wavelet_packet_2d,
  wavelet_packet_paths,
)

pywt = pytest.importorskip("pywt")

WAVELETS = ("bior4.4", "haar", "db2", "db3", "db4")


def _pywt_packet_2d(x, wavelet, levels):
  """[H, W, C] -> [h, w, C 4^J] from PyWavelets' natural-order packet nodes."""
  chans = []
  for c in range(x.shape[-1]):
    wp = pywt.WaveletPacket2D(x[..., c], wavelet, mode="periodization", maxlevel=levels)
    chans += [node.data for node in wp.get_level(levels, "natural")]
  return np.stack(chans, axis=-1)


def _pywt_packet_1d(x, wavelet, levels):
  chans = []
  for c in range(x.shape[-1]):
    wp = pywt.WaveletPacket(x[:, c], wavelet, mode="periodization", maxlevel=levels)
    chans += [node.data for node in wp.get_level(levels, "natural")]
  return np.stack(chans, axis=-1)


@pytest.mark.parametrize("wavelet", WAVELETS)
def test_filters_equal_pywavelets(wavelet):
  w = pywt.Wavelet(wavelet)
  f = wavelet_filters(wavelet)
  for name in ("dec_lo", "dec_hi", "rec_lo", "rec_hi"):
    np.testing.assert_allclose(getattr(f, name), getattr(w, name), atol=1e-15)


@pytest.mark.parametrize("wavelet", WAVELETS)
def test_packet_2d_equals_pywavelets_natural_order_and_round_trips(wavelet):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((32, 32, 3))
  for levels in (1, 3):
    ours = np.asarray(wavelet_packet_2d(jnp.asarray(x, jnp.float32), wavelet=wavelet,
                                        levels=levels))
    ref = _pywt_packet_2d(x, wavelet, levels)
    assert ours.shape == ref.shape == (32 >> levels, 32 >> levels, 3 * 4**levels)
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    back = inverse_wavelet_packet_2d(jnp.asarray(ours), wavelet=wavelet, levels=levels)
    np.testing.assert_allclose(np.asarray(back), x, atol=1e-5)


def test_paths_name_the_channels_in_pywavelets_order():
  wp = pywt.WaveletPacket2D(np.zeros((8, 8)), "haar", mode="periodization", maxlevel=2)
  assert wavelet_packet_paths(2) == [n.path for n in wp.get_level(2, "natural")]
  wp1 = pywt.WaveletPacket(np.zeros(8), "haar", mode="periodization", maxlevel=3)
  assert wavelet_packet_paths(3, dims=1) == [n.path for n in wp1.get_level(3, "natural")]


def test_packet_1d_equals_pywavelets_at_8_levels_and_round_trips():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2**12, 2))
  ours = np.asarray(wavelet_packet_1d(jnp.asarray(x, jnp.float32), levels=8))
  ref = _pywt_packet_1d(x, "bior4.4", 8)
  assert ours.shape == (16, 512)
  np.testing.assert_allclose(ours, ref, atol=5e-5)
  back = inverse_wavelet_packet_1d(jnp.asarray(ours), levels=8)
  np.testing.assert_allclose(np.asarray(back), x, atol=1e-4)


def test_astronaut_round_trip_below_1e_5_and_bior_energy_is_not_preserved():
  skimage_data = pytest.importorskip("skimage.data")
  img = jnp.asarray(skimage_data.astronaut()[:128, :128] / 255.0 - 0.5, jnp.float32)
  fwd = jax.jit(lambda v: wavelet_packet_2d(v, levels=3))
  inv = jax.jit(lambda v: inverse_wavelet_packet_2d(v, levels=3))
  coeffs = fwd(img[None])
  assert float(jnp.max(jnp.abs(inv(coeffs)[0] - img))) < 1e-5
  # bior4.4 is biorthogonal, not orthonormal: white-noise energy grows by ~7 % at J=3
  noise = jax.random.normal(jax.random.key(0), (4, 128, 128, 3))
  ratio = float(jnp.sum(fwd(noise) ** 2) / jnp.sum(noise ** 2))
  assert 1.05 < ratio < 1.10
  # haar is orthonormal: energy preserved exactly
  h = wavelet_packet_2d(noise[:1, :32, :32], wavelet="haar", levels=2)
  np.testing.assert_allclose(float(jnp.sum(h ** 2)), float(jnp.sum(noise[:1, :32, :32] ** 2)),
                             rtol=1e-5)


def test_vmap_and_grad_equal_the_transpose_of_the_linear_map():
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 1))
  f = lambda v: wavelet_packet_2d(v, levels=2, wavelet="db2")
  np.testing.assert_allclose(np.asarray(jax.vmap(f)(x[:, None])[:, 0]), np.asarray(f(x)),
                             atol=1e-6)
  g = jax.grad(lambda v: jnp.sum(f(v) ** 2))(x)
  (wt,) = jax.linear_transpose(f, x)(f(x))
  np.testing.assert_allclose(np.asarray(g), 2 * np.asarray(wt), atol=1e-5)


def test_pad_and_crop_reflect_like_numpy():
  x = np.arange(30 * 17 * 1, dtype=np.float32).reshape(30, 17, 1)
  y, spec = pad_to_multiple(jnp.asarray(x), multiple=16)
  np.testing.assert_array_equal(np.asarray(y), np.pad(x, ((1, 1), (7, 8), (0, 0)), "reflect"))
  np.testing.assert_array_equal(np.asarray(crop_padding(y, spec)), x)


def test_bad_input_gives_named_errors():
  with pytest.raises(ValueError, match=r"wavelet_packet_2d: x must have H and W divisible by"):
    wavelet_packet_2d(jnp.ones((100, 100, 3)), levels=3)
  with pytest.raises(ValueError, match=r"inverse_wavelet_packet_2d: x must have a channel count"):
    inverse_wavelet_packet_2d(jnp.ones((4, 4, 12)), levels=2)
  with pytest.raises(ValueError, match=r"wavelet_packet_1d: wavelet must be one of"):
    wavelet_packet_1d(jnp.ones((16, 1)), wavelet="sym5", levels=1)
  with pytest.raises(TypeError, match=r"wavelet_packet_2d: x must have a floating dtype"):
    wavelet_packet_2d(jnp.ones((8, 8, 1), jnp.int32), levels=1)
  with pytest.raises(TypeError, match=r"wavelet_packet_2d: levels must be an int"):
    wavelet_packet_2d(jnp.ones((8, 8, 1)), levels=1.5)
  with pytest.raises(ValueError, match=r"crop_padding: spec"):
    crop_padding(jnp.ones((4, 4, 1)), (2, 2, 0, 0))


def test_batch_sharded_over_an_explicit_mesh():
  from jax.sharding import AxisType, PartitionSpec
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
  x = jax.random.normal(jax.random.key(2), (8, 16, 16, 3))
  with jax.set_mesh(mesh):
    xs = jax.device_put(x, PartitionSpec("data"))
    y = wavelet_packet_2d(xs, levels=2)
    back = inverse_wavelet_packet_2d(y, levels=2)
  np.testing.assert_allclose(np.asarray(y), np.asarray(wavelet_packet_2d(x, levels=2)),
                             atol=1e-5)
  np.testing.assert_allclose(np.asarray(back), np.asarray(x), atol=1e-5)


def test_convolution_path_for_large_sizes_equals_pywavelets(monkeypatch):
  """Sizes above the dense-matrix limit use depthwise convolutions: same numbers."""
  import importlib
  wav = importlib.import_module("bottleneck_jax.compression._wavelets")
  monkeypatch.setattr(wav, "_DENSE_MAX", 4)
  x = np.random.default_rng(3).standard_normal((16, 16, 2))
  ours = np.asarray(wavelet_packet_2d(jnp.asarray(x, jnp.float32), levels=2))
  np.testing.assert_allclose(ours, _pywt_packet_2d(x, "bior4.4", 2), atol=2e-5)
  back = inverse_wavelet_packet_2d(jnp.asarray(ours), levels=2)
  np.testing.assert_allclose(np.asarray(back), x, atol=1e-5)
