"""WaLLoC: wavelet learned lossy compression.

Paper: Dan Jacobellis, Neeraja J. Yadwadkar, "Learned Compression for Compressed Learning", DCC
2025 (https://arxiv.org/abs/2412.09405); reference code danjacobellis/walloc
(``src/walloc/walloc.py``, PyPI ``walloc`` 1.2.1).

Idea. Compress for *learning on the compressed form*: a linear, invertible wavelet packet
transform (WPT) concentrates the signal's energy, a tiny learned analysis transform (one 1x1
convolution) reduces the dimension, a fixed Gaussian-CDF compander maps the result into a
bounded range, and rounding gives int8 latents that a generic lossless codec stores. The
decoder is a deeper network followed by the inverse WPT. The encoder costs almost nothing, and
a downstream model can consume the (unrounded) latents directly.

Implemented, for images ``x`` in ``[-1/2, 1/2]`` (``pixels / 255 - 1/2``), channels last:

1. ``X = WPT_J(x)`` (:func:`~bottleneck_jax.compression.wavelet_packet_2d`, ``bior4.4``,
   periodised): ``[H, W, C] -> [H/2^J, W/2^J, C 4^J]``;
2. ``z = X A + a`` (a 1x1 convolution to ``C_z`` channels);
3. companding :func:`compand`: ``u = 2 l (Phi(z / s) - 1/2)`` with ``l = 2^(b-1) - 1/2 - 10^-3``
   and ``s = (2^(b-1) - 1) / 1.85`` (``b = latent_bits``);
4. the fixed bottleneck :func:`walloc_bottleneck`: ``u + U(-1/2, 1/2)`` in training,
   ``round(u)`` (int8 for ``b = 8``) at test time;
5. decoding: :func:`decompand` ``z' = s Phi^-1(clip(u / (2 l) + 1/2, 10^-4, 1 - 10^-4))``,
   the synthesis network ``G_S`` (a 1x1 linear map, or a ResNet/attention decoder in the
   diffusers ``Decoder`` layout), the inverse WPT and a clamp to ``[-1/2, 1/2]``.

The loss is the pixel MSE (:func:`walloc_loss`; the wavelet-domain term weight ``phi`` is 0 in
the reference training), with no rate term: the rate is set by ``C_z`` and ``latent_bits``.
The entropy coding of the paper is a generic lossless image codec applied to the int8 latents
tiled into an image (:func:`tile_latents`, :func:`latents_to_webp`, WebP lossless via Pillow).
Our variant codes the same integer latents with a factorised prior fitted afterwards and the
range coder of this family (:class:`WaLLoCCodec`).

Departures from the paper / reference code:

- Channels last; the decoder's ResNet/attention blocks follow the diffusers ``Decoder`` layout
  (conv-in, mid block ResNet-attention-ResNet, ResNet blocks, GroupNorm-SiLU-conv-out) at a
  configurable width; the paper's width 768 and its 250-epoch LSDIR training are far beyond a
  CPU budget, so the shipped default model uses the linear decoder (the paper's
  ``LinearCodec2D``) trained on scikit-image's bundled photographs.
- The learned prior + range coder container is our extension (clearly separate from the
  paper's WebP-lossless container, which is also provided).
- The 1-D (audio) codec is not built here; the 1-D wavelet packets it needs are.
"""

from __future__ import annotations

import io
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, Int

from bottleneck_jax.compression._wavelets import (
  inverse_wavelet_packet_2d,
  wavelet_packet_2d,
)
from bottleneck_jax.core import validation as V
from bottleneck_jax.core.rng import as_key
from bottleneck_jax.core.types import BottleneckOutput

_CLIP = 1e-4


def _compand_constants(latent_bits: int) -> tuple[float, float]:
  half = 2 ** (latent_bits - 1) - 1
  return half + 0.5 - 1e-3, half / 1.85


def _check_bits(fn: str, latent_bits) -> int:
  V.check_scalar(fn, "latent_bits", latent_bits, low=2, high=16, integer=True, static=True)
  return int(latent_bits)


def compand(z: Float[Array, "*shape"], *, latent_bits: int = 8) -> Float[Array, "*shape"]:
  """The Gaussian-CDF compander ``u = 2 l (Phi(z / s) - 1/2)``, into ``(-l, l)``.

  ``l = 2^(b-1) - 1/2 - 10^-3`` so that ``round(u)`` fits ``b``-bit signed integers, and
  ``s = (2^(b-1) - 1) / 1.85``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import compand
    >>> [round(float(v), 2) for v in compand(jnp.array([0.0, 1e9]))]
    [0.0, 127.5]
  """
  fn = "compand"
  V.check_floating(fn, "z", z)
  b = _check_bits(fn, latent_bits)
  z = jnp.asarray(z)
  ell, s = _compand_constants(b)
  # 2 l (Phi(z/s) - 1/2) = l erf(z / (s sqrt 2)) (lax primitives: sharding-preserving)
  return ell * jax.lax.erf(z / (s * math.sqrt(2.0)))


def decompand(u: Float[Array, "*shape"], *, latent_bits: int = 8) -> Float[Array, "*shape"]:
  """Inverse of :func:`compand` (with WaLLoC's clip of the CDF to ``[1e-4, 1 - 1e-4]``).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import compand, decompand
    >>> z = jnp.array([-50.0, 0.0, 100.0])
    >>> bool(jnp.allclose(decompand(compand(z)), z, rtol=1e-4))
    True
  """
  fn = "decompand"
  V.check_floating(fn, "u", u)
  b = _check_bits(fn, latent_bits)
  u = jnp.asarray(u)
  ell, s = _compand_constants(b)
  p = jnp.clip(u / (2.0 * ell) + 0.5, _CLIP, 1.0 - _CLIP)
  return s * math.sqrt(2.0) * jax.lax.erf_inv(2.0 * p - 1.0)


def walloc_bottleneck(u: Float[Array, "*shape"], *, key=None,
                      training: bool) -> Float[Array, "*shape"]:
  """WaLLoC's fixed entropy bottleneck: ``u + U(-1/2, 1/2)`` in training, ``round(u)`` else.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import walloc_bottleneck
    >>> walloc_bottleneck(jnp.array([0.4, -2.6]), training=False)
    Array([ 0., -3.], dtype=float32)
  """
  fn = "walloc_bottleneck"
  V.check_floating(fn, "u", u)
  if not isinstance(training, bool):
    raise TypeError(f"{fn}: training must be a bool, got {type(training).__name__}")
  u = jnp.asarray(u)
  if training:
    if key is None:
      raise ValueError(f"{fn}: key must be given when training (the noise), got None")
    return u + jax.random.uniform(as_key(key, fn=fn), u.shape, u.dtype, -0.5, 0.5)
  return jnp.round(u)


def walloc_loss(x: Float[Array, "*shape"], x_hat: Float[Array, "*shape"], *,
                wpt: Array | None = None, wpt_hat: Array | None = None,
                phi: float = 0.0) -> Float[Array, ""]:
  """``MSE(x, x_hat) + phi MSE(X, X_hat)`` (WaLLoC trains with ``phi = 0``).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import walloc_loss
    >>> round(float(walloc_loss(jnp.zeros(4), jnp.full(4, 0.1))), 4)
    0.01
  """
  fn = "walloc_loss"
  V.check_floating(fn, "x", x)
  V.check_floating(fn, "x_hat", x_hat)
  V.check_same_shape(fn, "x", x, "x_hat", x_hat)
  V.check_scalar(fn, "phi", phi, low=0.0)
  x, x_hat = jnp.asarray(x), jnp.asarray(x_hat)
  if x.size == 0:
    raise ValueError(f"{fn}: x must not be empty, got {V.describe(x)}")
  loss = jnp.mean(jnp.square(x - x_hat.astype(x.dtype)))
  if wpt is not None or wpt_hat is not None:
    if wpt is None or wpt_hat is None:
      raise ValueError(f"{fn}: wpt and wpt_hat must be given together")
    V.check_floating(fn, "wpt", wpt)
    V.check_floating(fn, "wpt_hat", wpt_hat)
    V.check_same_shape(fn, "wpt", wpt, "wpt_hat", wpt_hat)
    wpt = jnp.asarray(wpt)
    extra = jnp.mean(jnp.square(wpt - jnp.asarray(wpt_hat).astype(wpt.dtype)))
    loss = loss + phi * extra.astype(loss.dtype)
  return loss


# --------------------------------------------------------------------------------------------
# tiling into an image for a lossless image codec (host side, NumPy)


def tile_latents(latents: Int[Array, "h w c"], *, channels_per_pixel: int = 3) -> np.ndarray:
  """Tiles integer latents ``[h, w, C]`` (int8 range) into a uint8 image for a lossless codec.

  Channels are grouped ``channels_per_pixel`` at a time (zero-padded to a square number of
  groups ``n^2``) and the groups laid out on an ``n x n`` grid: ``[n h, n w,
  channels_per_pixel]``, values shifted by 128 (``latent_to_pil`` of the reference code).

  Example:
    >>> import numpy as np
    >>> from bottleneck_jax.compression import tile_latents, untile_latents
    >>> z = np.arange(-24, 24, dtype=np.int8).reshape(2, 2, 12)
    >>> img = tile_latents(z)
    >>> img.shape, bool((untile_latents(img, num_channels=12) == z).all())
    ((4, 4, 3), True)
  """
  return _tile("tile_latents", latents, channels_per_pixel)


def _tile(fn: str, latents, channels_per_pixel) -> np.ndarray:
  z = np.asarray(latents) if hasattr(latents, "shape") else None
  if z is None or z.ndim != 3 or z.dtype.kind not in "iu" or 0 in z.shape:
    raise ValueError(f"{fn}: latents must be a non-empty integer array [h, w, C], got "
                     f"{V.describe(latents) if hasattr(latents, 'shape') else latents!r}")
  V.check_scalar(fn, "channels_per_pixel", channels_per_pixel, low=1, high=4, integer=True)
  if z.min() < -128 or z.max() > 127:
    raise ValueError(f"{fn}: latents must lie in [-128, 127] (int8), got values in "
                     f"[{z.min()}, {z.max()}]")
  h, w, c = z.shape
  groups = -(-c // channels_per_pixel)
  n = math.ceil(math.sqrt(groups))
  pad = n * n * channels_per_pixel - c
  z = np.concatenate([z.astype(np.int16), np.zeros((h, w, pad), np.int16)], axis=-1)
  z = z.reshape(h, w, n, n, channels_per_pixel).transpose(2, 0, 3, 1, 4)
  return (z.reshape(n * h, n * w, channels_per_pixel) + 128).astype(np.uint8)


def untile_latents(image: np.ndarray, *, num_channels: int,
                   channels_per_pixel: int | None = None) -> np.ndarray:
  """Inverse of :func:`tile_latents`: int8 ``[h, w, num_channels]``."""
  return _untile("untile_latents", image, num_channels, channels_per_pixel)


def _untile(fn: str, image, num_channels, channels_per_pixel) -> np.ndarray:
  img = np.asarray(image) if hasattr(image, "shape") else None
  if img is None or img.dtype != np.uint8 or img.ndim not in (2, 3):
    raise ValueError(f"{fn}: image must be a uint8 array [H, W(, k)], got "
                     f"{V.describe(image) if hasattr(image, 'shape') else image!r}")
  if img.ndim == 2:
    img = img[..., None]
  if 0 in img.shape:
    raise ValueError(f"{fn}: image must not be empty, got shape {list(img.shape)}")
  if channels_per_pixel is not None:
    V.check_scalar(fn, "channels_per_pixel", channels_per_pixel, low=1, high=4, integer=True)
  cpp = img.shape[-1] if channels_per_pixel is None else int(channels_per_pixel)
  V.check_scalar(fn, "num_channels", num_channels, low=1, high=2**16, integer=True)
  groups = -(-num_channels // cpp)
  n = math.ceil(math.sqrt(groups))
  if img.shape[-1] != cpp or img.shape[0] % n or img.shape[1] % n:
    raise ValueError(f"{fn}: image shape {list(img.shape)} is not a {n}x{n} tiling of "
                     f"{num_channels} channels, {cpp} per pixel")
  h, w = img.shape[0] // n, img.shape[1] // n
  z = img.reshape(n, h, n, w, cpp).transpose(1, 3, 0, 2, 4).reshape(h, w, n * n * cpp)
  return (z[..., :num_channels].astype(np.int16) - 128).astype(np.int8)


def latents_to_webp(latents, *, channels_per_pixel: int = 3) -> bytes:
  """The paper's container: int8 latents ``[h, w, C]`` tiled and stored as lossless WebP."""
  from PIL import Image
  if channels_per_pixel != 3:
    raise ValueError("latents_to_webp: channels_per_pixel must be 3 for WebP, got "
                     f"{channels_per_pixel!r}")
  img = _tile("latents_to_webp", latents, 3)
  buf = io.BytesIO()
  Image.fromarray(img, "RGB").save(buf, format="WEBP", lossless=True, quality=100, method=6)
  return buf.getvalue()


def webp_to_latents(data: bytes, *, num_channels: int) -> np.ndarray:
  """Inverse of :func:`latents_to_webp`."""
  from PIL import Image
  if not isinstance(data, (bytes, bytearray)):
    raise TypeError(f"webp_to_latents: data must be bytes, got {type(data).__name__}")
  V.check_scalar("webp_to_latents", "num_channels", num_channels, low=1, high=2**16,
                 integer=True)
  try:
    img = np.asarray(Image.open(io.BytesIO(bytes(data))).convert("RGB"))
  except Exception as e:  # noqa: BLE001 - Pillow raises several kinds on corrupt data
    raise ValueError(f"webp_to_latents: data is not a readable WebP image ({e})") from None
  return _untile("webp_to_latents", img, num_channels, 3)


# --------------------------------------------------------------------------------------------
# NNX modules


class _ResnetBlock(nnx.Module):
  def __init__(self, width: int, groups: int, rngs: nnx.Rngs):
    self.norm1 = nnx.GroupNorm(width, num_groups=groups, rngs=rngs)
    self.conv1 = nnx.Conv(width, width, (3, 3), padding="SAME", rngs=rngs)
    self.norm2 = nnx.GroupNorm(width, num_groups=groups, rngs=rngs)
    self.conv2 = nnx.Conv(width, width, (3, 3), padding="SAME", rngs=rngs)

  def __call__(self, h):
    r = self.conv1(jax.nn.silu(self.norm1(h)))
    r = self.conv2(jax.nn.silu(self.norm2(r)))
    return h + r


class _Attention(nnx.Module):
  def __init__(self, width: int, groups: int, rngs: nnx.Rngs):
    self.norm = nnx.GroupNorm(width, num_groups=groups, rngs=rngs)
    self.qkv = nnx.Linear(width, 3 * width, rngs=rngs)
    self.out = nnx.Linear(width, width, rngs=rngs)

  def __call__(self, h):
    shape = h.shape
    t = self.norm(h).reshape(shape[0], -1, shape[-1])
    q, k, v = jnp.split(self.qkv(t), 3, axis=-1)
    a = jax.nn.softmax(q @ jnp.swapaxes(k, 1, 2) / math.sqrt(shape[-1]), axis=-1)
    return h + self.out(a @ v).reshape(shape)


class _ResnetDecoder(nnx.Module):
  """The diffusers ``Decoder`` layout with one up-block and no up-sampling."""

  def __init__(self, c_in: int, c_out: int, width: int, rngs: nnx.Rngs):
    groups = math.gcd(32, width)
    self.conv_in = nnx.Conv(c_in, width, (3, 3), padding="SAME", rngs=rngs)
    self.mid1 = _ResnetBlock(width, groups, rngs)
    self.attn = _Attention(width, groups, rngs)
    self.mid2 = _ResnetBlock(width, groups, rngs)
    self.blocks = nnx.List([_ResnetBlock(width, groups, rngs) for _ in range(3)])
    self.norm_out = nnx.GroupNorm(width, num_groups=groups, rngs=rngs)
    self.conv_out = nnx.Conv(width, c_out, (3, 3), padding="SAME", rngs=rngs)

  def __call__(self, z):
    h = self.mid2(self.attn(self.mid1(self.conv_in(z))))
    for b in self.blocks:
      h = b(h)
    return self.conv_out(jax.nn.silu(self.norm_out(h)))


class WaLLoC(nnx.Module):
  """The WaLLoC image codec (2-D), channels last, images in ``[-1/2, 1/2]``.

  Args:
    channels: image channels ``C`` (3 for RGB).
    levels: WPT depth ``J``; the latent grid is ``H/2^J x W/2^J``.
    latent_dim: ``C_z``, the latent channels (dimension reduction ``C 4^J / C_z``).
    latent_bits: bits per latent value (8: int8 latents).
    decoder: ``"linear"`` (a 1x1 convolution, the paper's ``LinearCodec2D``) or ``"resnet"``
      (the diffusers-style decoder).
    decoder_width: the width of the ResNet decoder.
    wavelet: the WPT wavelet.
    rngs: ``nnx.Rngs``.

  ``__call__(x, *, key=None, training=False)`` returns a
  :class:`~bottleneck_jax.core.BottleneckOutput` with ``z = x_hat`` (the reconstruction),
  ``loss = 0``, ``bits = C_z h w latent_bits`` per example (the fixed-length code) and
  ``aux = {"latents": u_hat, "wpt": X, "wpt_hat": X_hat}``.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.compression import WaLLoC
    >>> m = WaLLoC(levels=2, latent_dim=4, rngs=nnx.Rngs(0))
    >>> out = m(jnp.zeros((1, 16, 16, 3)))
    >>> out.z.shape, out.aux["latents"].shape, float(out.bits[0])
    ((1, 16, 16, 3), (1, 4, 4, 4), 512.0)
  """

  def __init__(self, channels: int = 3, *, levels: int = 3, latent_dim: int = 12,
               latent_bits: int = 8, decoder: Literal["linear", "resnet"] = "linear",
               decoder_width: int = 64, wavelet: str = "bior4.4", rngs: nnx.Rngs):
    fn = "WaLLoC"
    V.check_scalar(fn, "channels", channels, low=1, integer=True)
    V.check_scalar(fn, "levels", levels, low=1, high=8, integer=True)
    V.check_scalar(fn, "latent_dim", latent_dim, low=1, integer=True)
    V.check_choice(fn, "decoder", decoder, ("linear", "resnet"))
    self.channels, self.levels, self.latent_dim = int(channels), int(levels), int(latent_dim)
    self.latent_bits = _check_bits(fn, latent_bits)
    self.wavelet = wavelet
    c_wpt = self.channels * 4 ** self.levels
    self.encoder = nnx.Conv(c_wpt, self.latent_dim, (1, 1), rngs=rngs)
    if decoder == "linear":
      self.decoder = nnx.Conv(self.latent_dim, c_wpt, (1, 1), rngs=rngs)
    else:
      self.decoder = _ResnetDecoder(self.latent_dim, c_wpt, int(decoder_width), rngs)

  def _check_x(self, fn: str, x) -> None:
    V.check_floating(fn, "x", x)
    V.check_rank(fn, "x", x, 4)
    if x.shape[-1] != self.channels:
      raise ValueError(f"{fn}: x must have {self.channels} channels (last axis), got shape "
                       f"{list(x.shape)}")

  def analysis(self, x) -> tuple[Array, Array]:
    """``(X, z)``: the WPT coefficients and the pre-companding latents (``walloc_features``
    without the compander: what a compressed-domain model may consume)."""
    self._check_x("WaLLoC.analysis", x)
    big = wavelet_packet_2d(x, wavelet=self.wavelet, levels=self.levels)
    return big, self.encoder(big)

  def encode(self, x, *, key=None, training: bool = False) -> Array:
    """Latents ``u_hat`` (rounded; noisy when ``training``), ``[B, h, w, C_z]``."""
    _, z = self.analysis(x)
    return walloc_bottleneck(compand(z, latent_bits=self.latent_bits), key=key,
                             training=training)

  def decode(self, u) -> Array:
    """Reconstruction in ``[-1/2, 1/2]`` from latents ``u`` ``[B, h, w, C_z]``."""
    V.check_floating("WaLLoC.decode", "u", u)
    V.check_rank("WaLLoC.decode", "u", u, 4)
    big = self.decoder(decompand(u, latent_bits=self.latent_bits))
    x = inverse_wavelet_packet_2d(big, wavelet=self.wavelet, levels=self.levels)
    return jnp.clip(x, -0.5, 0.5)

  def __call__(self, x, *, key=None, training: bool = False) -> BottleneckOutput:
    big, z = self.analysis(x)
    u = walloc_bottleneck(compand(z, latent_bits=self.latent_bits), key=key, training=training)
    big_hat = self.decoder(decompand(u, latent_bits=self.latent_bits))
    x_hat = inverse_wavelet_packet_2d(big_hat, wavelet=self.wavelet, levels=self.levels)
    x_hat = jnp.clip(x_hat, -0.5, 0.5)
    bits = jnp.full((x.shape[0],), float(math.prod(u.shape[1:]) * self.latent_bits), x.dtype)
    return BottleneckOutput(z=x_hat, loss=jnp.zeros((), x.dtype), bits=bits,
                            aux={"latents": u, "wpt": big, "wpt_hat": big_hat})
