"""Tests for bottleneck_jax/compression/_walloc.py and the codec (_codec.py).

References: the compander's closed form (SciPy's normal CDF), the identity codec (encoder and
decoder set to the identity on all WPT channels: the only loss is 8-bit companding, so the
reconstruction error is bounded analytically), NumPy tiling, Pillow's WebP decoder."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from bottleneck_jax.compression import (
  WaLLoC,
  compand,
  compress_image,
  decompand,
  decompress_image,
  fit_quantiles,
  init_factorized_prior,
  latents_to_webp,
  make_codec,
  read_header,
  tile_latents,
  untile_latents,
  walloc_bottleneck,
  walloc_loss,
  webp_to_latents,
)


def test_compander_closed_form_round_trip_and_range():
  ell, s = 127.499, 127 / 1.85
  z = jnp.array([-3 * s, -1.0, 0.0, 20.0, 2 * s])
  np.testing.assert_allclose(np.asarray(compand(z)),
                             2 * ell * (stats.norm.cdf(np.asarray(z) / s) - 0.5), rtol=1e-5,
                             atol=1e-4)
  np.testing.assert_allclose(np.asarray(decompand(compand(z))), np.asarray(z), rtol=1e-3,
                             atol=1e-3)
  u = compand(jnp.array([-1e9, 1e9]))
  assert float(jnp.max(jnp.abs(u))) < 127.5  # round() always fits int8
  g = jax.grad(lambda v: jnp.sum(decompand(compand(v))))(jnp.array([-1e3, 0.0, 1e3]))
  assert bool(jnp.all(jnp.isfinite(g)))
  # 4-bit: l = 7.499, s = 7 / 1.85
  np.testing.assert_allclose(float(compand(jnp.array(1e9), latent_bits=4)), 7.499, rtol=1e-5)


def test_bottleneck_noise_and_rounding():
  u = jnp.linspace(-5, 5, 101)
  noisy = walloc_bottleneck(u, key=jax.random.key(0), training=True)
  assert float(jnp.max(jnp.abs(noisy - u))) <= 0.5
  np.testing.assert_array_equal(np.asarray(walloc_bottleneck(u, training=False)),
                                np.round(np.asarray(u)))
  with pytest.raises(ValueError, match="walloc_bottleneck: key must be given"):
    walloc_bottleneck(u, training=True)


def test_tiling_and_webp_container_round_trip_exactly():
  z = np.random.default_rng(0).integers(-127, 128, (8, 8, 12)).astype(np.int8)
  img = tile_latents(z)
  assert img.shape == (16, 16, 3) and img.dtype == np.uint8
  np.testing.assert_array_equal(untile_latents(img, num_channels=12), z)
  np.testing.assert_array_equal(webp_to_latents(latents_to_webp(z), num_channels=12), z)
  with pytest.raises(ValueError, match=r"tile_latents: latents must lie in \[-128, 127\]"):
    tile_latents(np.full((2, 2, 3), 300, np.int32))
  with pytest.raises(ValueError, match="webp_to_latents: data is not a readable WebP"):
    webp_to_latents(b"garbage", num_channels=12)


def _identity_walloc(levels=2):
  m = WaLLoC(3, levels=levels, latent_dim=3 * 4**levels, rngs=nnx.Rngs(0))
  c = 3 * 4**levels
  gain = 8.0  # coefficients of images in [-1/2, 1/2] times 8 use the compander's range
  m.encoder.kernel[...] = gain * jnp.eye(c)[None, None]
  m.encoder.bias[...] = jnp.zeros(c)
  m.decoder.kernel[...] = jnp.eye(c)[None, None] / gain
  m.decoder.bias[...] = jnp.zeros(c)
  return m


def test_identity_codec_loses_only_the_8_bit_companding():
  skd = pytest.importorskip("skimage.data")
  x = jnp.asarray(skd.astronaut()[:64, :64] / 255.0 - 0.5, jnp.float32)[None]
  m = _identity_walloc()
  out = m(x)
  assert out.aux["latents"].shape == (1, 16, 16, 48) and out.z.shape == x.shape
  np.testing.assert_allclose(float(out.bits[0]), 16 * 16 * 48 * 8)
  assert bool(jnp.all(out.aux["latents"] == jnp.round(out.aux["latents"])))
  # without rounding, the pipeline (WPT, 1x1 maps, compander, inverse WPT) is the identity
  _, z = m.analysis(x)
  np.testing.assert_allclose(np.asarray(m.decode(compand(z))), np.asarray(x), atol=2e-3)
  # with rounding: each latent moves by <= 1/2, i.e. z by <= s / (2 l phi(0)) / 2 = 0.34
  psnr = -10 * np.log10(float(jnp.mean((out.z - x) ** 2)))
  assert 30.0 < psnr < 60.0, psnr
  # grad through encode -> noise -> decode
  g = jax.grad(lambda v: walloc_loss(v, m(v, key=jax.random.key(0), training=True).z))(x)
  assert g.shape == x.shape and bool(jnp.all(jnp.isfinite(g)))


def test_linear_shapes_dimension_reduction_and_resnet_decoder():
  m = WaLLoC(3, levels=3, latent_dim=12, rngs=nnx.Rngs(0))
  # shapes only: traced abstractly (an eager encode dispatches every wavelet op on its own)
  u = jax.eval_shape(m.encode, jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32))
  assert u.shape == (2, 8, 8, 12)  # 64*64*3 / (8*8*12) = 16x
  with pytest.raises(ValueError, match="WaLLoC.analysis: x must have 3 channels"):
    m.encode(jnp.zeros((1, 64, 64, 4)))
  with pytest.raises(ValueError, match="wavelet_packet_2d: x must have H and W divisible"):
    m.encode(jnp.zeros((1, 60, 64, 3)))


@pytest.mark.slow
def test_resnet_decoder_forward_and_grad():
  r = WaLLoC(3, levels=1, latent_dim=4, decoder="resnet", decoder_width=8, rngs=nnx.Rngs(0))
  x = jnp.zeros((1, 8, 8, 3))
  assert r(x).z.shape == (1, 8, 8, 3)
  g = nnx.grad(lambda m: jnp.mean(m(x, key=jax.random.key(0), training=True).z ** 2))(r)
  assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(g))


@pytest.fixture(scope="module")
def identity_codec():
  m = _identity_walloc(levels=1)
  prior = init_factorized_prior(0, 12)
  return make_codec("test-identity", m, prior, np.asarray(fit_quantiles(prior)))


def test_codec_round_trips_odd_sizes_grey_and_rgb(identity_codec):
  r = np.random.default_rng(0)
  smooth = (np.indices((37, 23)).sum(0) * 3).astype(np.uint8)
  for img in (smooth, np.stack([smooth, smooth[::-1], smooth[:, ::-1]], -1)):
    outs = []
    for container in ("prior", "webp"):
      data = compress_image(img, model=identity_codec, container=container)
      out = decompress_image(data, model=identity_codec)
      assert out.shape == img.shape and out.dtype == np.uint8
      hdr = read_header(data)
      assert (hdr.height, hdr.width, hdr.container) == (37, 23, container)
      outs.append(out)
    # both containers carry the same integer latents exactly: identical images
    np.testing.assert_array_equal(outs[0], outs[1])
    mse = np.mean((outs[0].astype(float) - img.astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 30.0
  noise = r.integers(0, 256, (16, 16, 3)).astype(np.uint8)
  assert decompress_image(compress_image(noise, model=identity_codec),
                          model=identity_codec).shape == (16, 16, 3)


def test_codec_rejects_bad_images_and_corrupt_files(identity_codec):
  img = np.zeros((16, 16, 3), np.uint8)
  data = compress_image(img, model=identity_codec)
  bad = bytearray(data)
  bad[-1] ^= 0xFF
  with pytest.raises(ValueError, match="checksum mismatch"):
    decompress_image(bytes(bad), model=identity_codec)
  with pytest.raises(ValueError, match="bad magic number"):
    decompress_image(b"JUNK" + data[4:], model=identity_codec)
  with pytest.raises(ValueError, match="truncated"):
    decompress_image(data[:-3], model=identity_codec)
  with pytest.raises(ValueError, match=r"compress_image: image must be grey \[H, W\] or RGB"):
    compress_image(np.zeros((8, 8, 4), np.uint8), model=identity_codec)
  with pytest.raises(TypeError, match="compress_image: image must be a uint8 array"):
    compress_image(np.zeros((8, 8)), model=identity_codec)
  with pytest.raises(ValueError, match="load_codec: model must be one of"):
    compress_image(img, model="no-such-model")
  buf = io.BytesIO()
  assert buf.tell() == 0
