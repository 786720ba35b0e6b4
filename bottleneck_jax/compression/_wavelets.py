"""Periodised wavelet packet transforms (2-D for images, 1-D for audio).

The linear, exactly invertible front end of WaLLoC (Jacobellis & Yadwadkar, "Learned Compression
for Compressed Learning", DCC 2025, https://arxiv.org/abs/2412.09405): ``levels`` rounds of a
one-level discrete wavelet transform applied to *every* sub-band (a full wavelet packet tree), in
PyWavelets' ``mode="periodization"`` (circular boundary, each level halves every spatial axis).

One analysis level on a length-``N`` axis with decomposition filters ``h`` of length ``L`` (even):

.. math::
  a[k] = \\sum_{j=0}^{L-1} h_{lo}[j]\\, x[(2k + L/2 - j) \\bmod N],\\qquad
  d[k] = \\sum_{j=0}^{L-1} h_{hi}[j]\\, x[(2k + L/2 - j) \\bmod N],

and synthesis with the reconstruction filters ``g``:
``x[(2k + j + 1 - L/2) mod N] += a[k] g_lo[j] + d[k] g_hi[j]``. These are the index conventions
of ``pywt.dwt``/``pywt.idwt`` with ``mode="periodization"`` (the tests compare against
PyWavelets to float32 precision).

In 2-D the level is separable over the two spatial axes and gives four sub-bands per channel in
the order ``a`` (low H, low W), ``h`` (high H, low W), ``v`` (low H, high W), ``d`` (high, high),
with the sub-band as the *minor* index of the new channel axis: channel ``c`` becomes channels
``4c + f``. After ``J`` levels the channel index is ``c 4^J + sum_l f_l 4^{J-l}``, which is
exactly ``pywt.WaveletPacket2D(x[..., c], wavelet, mode="periodization").get_level(J,
"natural")`` (node paths ``aaa, aah, aav, aad, aha, ...``), the layout of the reference WaLLoC
code (``einops 'b c f h w -> b (c f) h w'``). 1-D packets use two bands per level
(channel ``2c + f``, ``f`` in ``(a, d)``).

Wavelets: ``bior4.4`` (the CDF 9/7 biorthogonal pair used by JPEG 2000 and WaLLoC) and the
orthogonal ``haar`` (``db1``), ``db2``, ``db3``, ``db4``; the filter taps are hard-coded (the same
numbers as PyWavelets, which is a test dependency only). ``bior4.4`` is not orthonormal: the
transform changes the energy of white noise by about 7 % at three levels.

Departures: none in the maths. Arrays are channels-last (``[..., H, W, C]`` and ``[..., T, C]``)
rather than PyTorch's channels-first. Sizes must be divisible by ``2^levels`` (WaLLoC pads images
to a multiple of 16 before the transform; see :func:`pad_to_multiple`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from bottleneck_jax.core import validation as V

# Decomposition low-pass and reconstruction low-pass taps (PyWavelets 1.9 values); the high-pass
# filters follow from the quadrature-mirror relations dec_hi[j] = (-1)^(j+1) rec_lo[j] and
# rec_hi[j] = (-1)^j dec_lo[j].
_S2 = 0.7071067811865476
_DB2 = (-0.12940952255126037, 0.2241438680420134, 0.8365163037378079, 0.48296291314453416)
_DB3 = (0.03522629188570953, -0.08544127388202666, -0.13501102001025458, 0.45987750211849154,
        0.8068915093110925, 0.33267055295008263)
_DB4 = (-0.010597401785069032, 0.0328830116668852, 0.030841381835560764, -0.18703481171909309,
        -0.027983769416859854, 0.6308807679298589, 0.7148465705529157, 0.2303778133088965)
_BIOR44_DEC = (0.0, 0.03782845550726404, -0.023849465019556843, -0.11062440441843718,
               0.37740285561283066, 0.8526986790088938, 0.37740285561283066,
               -0.11062440441843718, -0.023849465019556843, 0.03782845550726404)
_BIOR44_REC = (0.0, -0.06453888262869706, -0.04068941760916406, 0.41809227322161724,
               0.7884856164055829, 0.41809227322161724, -0.04068941760916406,
               -0.06453888262869706, 0.0, 0.0)
_LOWPASS = {
    "haar": ((_S2, _S2), (_S2, _S2)),
    "db1": ((_S2, _S2), (_S2, _S2)),
    "db2": (_DB2, _DB2[::-1]),
    "db3": (_DB3, _DB3[::-1]),
    "db4": (_DB4, _DB4[::-1]),
    "bior4.4": (_BIOR44_DEC, _BIOR44_REC),
}
WAVELETS = tuple(_LOWPASS)


class WaveletFilters(NamedTuple):
  """The four filters of a (bi)orthogonal wavelet, as Python floats (PyWavelets' order)."""
  dec_lo: tuple[float, ...]
  dec_hi: tuple[float, ...]
  rec_lo: tuple[float, ...]
  rec_hi: tuple[float, ...]


def wavelet_filters(wavelet: str = "bior4.4") -> WaveletFilters:
  """The analysis and synthesis filters of ``wavelet``, identical to PyWavelets' taps.

  Args:
    wavelet: one of ``"bior4.4"`` (CDF 9/7), ``"haar"``/``"db1"``, ``"db2"``, ``"db3"``,
      ``"db4"``.

  Returns:
    :class:`WaveletFilters` ``(dec_lo, dec_hi, rec_lo, rec_hi)``, tuples of equal even length.

  Example:
    >>> from bottleneck_jax.compression import wavelet_filters
    >>> f = wavelet_filters("haar")
    >>> [round(v, 4) for v in f.dec_hi]
    [-0.7071, 0.7071]
  """
  V.check_choice("wavelet_filters", "wavelet", wavelet, WAVELETS)
  dec_lo, rec_lo = _LOWPASS[wavelet]
  dec_hi = tuple(((-1.0) ** (j + 1)) * v for j, v in enumerate(rec_lo))
  rec_hi = tuple(((-1.0) ** j) * v for j, v in enumerate(dec_lo))
  return WaveletFilters(tuple(dec_lo), dec_hi, tuple(rec_lo), rec_hi)


# --------------------------------------------------------------------------------------------
# one level as a strided convolution on a circularly padded signal
#
# Analysis: a[k] = sum_m xp[2k + m] w[m] with w[m] = h[L-1-m] and xp[i] = x[(i - L/2 + 1) mod N]
# (pad L/2 - 1 on the left, L/2 on the right). Synthesis: x[n] = sum_m up[n + m] w[m] with
# w[m] = g[L-1-m], u the zero-upsampled band and up[i] = u[(i - L/2) mod N].

_HI = jax.lax.Precision.HIGHEST


def _analysis_kernel(f: WaveletFilters, dims: int, dtype):
  lo, hi = np.asarray(f.dec_lo[::-1]), np.asarray(f.dec_hi[::-1])
  if dims == 1:
    k = np.stack([lo, hi], axis=-1)[:, None, :]                      # [L, 1, 2] (a, d)
  else:  # bands a = lo_H lo_W, h = hi_H lo_W, v = lo_H hi_W, d = hi_H hi_W
    k = np.stack([np.outer(lo, lo), np.outer(hi, lo), np.outer(lo, hi), np.outer(hi, hi)],
                 axis=-1)[:, :, None, :]                              # [L, L, 1, 4]
  return jnp.asarray(k, dtype)


def _synthesis_kernel(f: WaveletFilters, dims: int, dtype):
  lo, hi = np.asarray(f.rec_lo[::-1]), np.asarray(f.rec_hi[::-1])
  if dims == 1:
    k = np.stack([lo, hi], axis=-1)[:, :, None]                      # [L, 2, 1]
  else:
    k = np.stack([np.outer(lo, lo), np.outer(hi, lo), np.outer(lo, hi), np.outer(hi, hi)],
                 axis=-1)[:, :, :, None]                              # [L, L, 4, 1]
  return jnp.asarray(k, dtype)


def _conv(x, k, stride: int, dims: int, groups: int):
  spec = ("NWC", "WIO", "NWC") if dims == 1 else ("NHWC", "HWIO", "NHWC")
  return jax.lax.conv_general_dilated(x, k, (stride,) * dims, "VALID", dimension_numbers=spec,
                                      feature_group_count=groups, precision=_HI)


def _level_analysis(x, f: WaveletFilters, dims: int):
  """``x``: ``[n, *spatial, C]`` -> ``[n, *spatial/2, C 2^dims]`` (channel ``c 2^dims + f``):
  a depthwise convolution, so the batch axis (and its sharding) is never reshaped."""
  length, c = len(f.dec_lo), x.shape[-1]
  pad = [(0, 0)] + [(length // 2 - 1, length // 2)] * dims + [(0, 0)]
  k = jnp.tile(_analysis_kernel(f, dims, x.dtype), (1,) * (dims + 1) + (c,))
  return _conv(jnp.pad(x, pad, mode="wrap"), k, 2, dims, c)


def _level_synthesis(y, f: WaveletFilters, dims: int):
  """``y``: ``[n, *spatial, C 2^dims]`` -> ``[n, *spatial*2, C]``."""
  length, nb = len(f.rec_lo), 2 ** dims
  c = y.shape[-1] // nb
  up = y
  for axis in range(1, dims + 1):  # zeros between samples (sharding-preserving, no scatter)
    up = jnp.stack([up, jnp.zeros_like(up)], axis=axis + 1)
    shape = list(up.shape)
    up = up.reshape(*shape[:axis], 2 * shape[axis], *shape[axis + 2:])
  pad = [(0, 0)] + [(length // 2, length // 2 - 1)] * dims + [(0, 0)]
  k = jnp.tile(_synthesis_kernel(f, dims, y.dtype), (1,) * (dims + 1) + (c,))
  return _conv(jnp.pad(up, pad, mode="wrap"), k, 1, dims, c)


# --------------------------------------------------------------------------------------------
# dense per-axis form (sizes up to _DENSE_MAX): the J-level packet transform of one axis is an
# N x N matrix (rows ordered band-major); the separable 2-D packet is two small matmuls and a
# fixed channel permutation. Much faster on CPU than J rounds of depthwise convolutions.

_DENSE_MAX = 2048


def _np_level(x, f: WaveletFilters):
  """NumPy float64 one-level periodised DWT along axis 0: ``(a, d)``."""
  n, length = x.shape[0], len(f.dec_lo)
  k = np.arange(n // 2)
  a = np.zeros((n // 2, *x.shape[1:]))
  d = np.zeros_like(a)
  for j in range(length):
    xs = x[(2 * k + length // 2 - j) % n]
    a += f.dec_lo[j] * xs
    d += f.dec_hi[j] * xs
  return a, d


@functools.lru_cache(maxsize=32)
def _packet_matrices(wavelet: str, levels: int, n: int) -> tuple[np.ndarray, np.ndarray]:
  """``(P, P^-1)``: rows of ``P`` are the 2^J bands (natural order) times n/2^J positions."""
  f = wavelet_filters(wavelet)
  bands = [np.eye(n)]
  for _ in range(levels):
    bands = [b for x in bands for b in _np_level(x, f)]
  p = np.concatenate(bands, axis=0)
  return p, np.linalg.inv(p)


@functools.lru_cache(maxsize=32)
def _selection(levels: int, channels: int, dims: int) -> np.ndarray:
  """One-hot ``[K, C, bands...]``: output channel ``k = c B^J + natural band index`` of the 1-D
  band indices (``bh, bw`` in 2-D, level 1 the most significant bit) of channel ``c``."""
  nb = 2 ** levels
  if dims == 1:
    sel = np.zeros((channels * nb, channels, nb), np.float32)
    for c in range(channels):
      for b in range(nb):
        sel[c * nb + b, c, b] = 1.0
    return sel
  sel = np.zeros((channels * nb * nb, channels, nb, nb), np.float32)
  for bh in range(nb):
    for bw in range(nb):
      k = 0
      for level in range(levels):
        hh = (bh >> (levels - 1 - level)) & 1
        hw = (bw >> (levels - 1 - level)) & 1
        k = 4 * k + hh + 2 * hw
      for c in range(channels):
        sel[c * nb * nb + k, c, bh, bw] = 1.0
  return sel


def _split_matrix(m: np.ndarray, nb: int, dtype, transpose: bool):
  """``P [nb n, N] -> [nb, n, N]`` (or ``P^-1 [N, nb n] -> [nb, n, N]``), as a jnp constant."""
  if transpose:
    m = m.T
  return jnp.asarray(m.reshape(nb, m.shape[0] // nb, m.shape[1]), dtype)


def _dense_packet_2d(x, wavelet: str, levels: int, inverse: bool):
  """Einsums only (no reshape of the batch axes, so any batch sharding is kept)."""
  hi = jax.lax.Precision.HIGHEST
  nb = 2 ** levels
  if not inverse:
    h, w, c = x.shape[-3:]
    ph = _split_matrix(_packet_matrices(wavelet, levels, h)[0], nb, x.dtype, False)
    pw = _split_matrix(_packet_matrices(wavelet, levels, w)[0], nb, x.dtype, False)
    sel = jnp.asarray(_selection(levels, c, 2), x.dtype)
    t = jnp.einsum("aph,...hwc->...apwc", ph, x, precision=hi)
    t = jnp.einsum("bqw,...apwc->...pqcab", pw, t, precision=hi)
    return jnp.einsum("...pqcab,kcab->...pqk", t, sel, precision=hi)
  n, m, cc = x.shape[-3:]
  c = cc // (nb * nb)
  sh = _split_matrix(_packet_matrices(wavelet, levels, nb * n)[1], nb, x.dtype, True)
  sw = _split_matrix(_packet_matrices(wavelet, levels, nb * m)[1], nb, x.dtype, True)
  sel = jnp.asarray(_selection(levels, c, 2), x.dtype)
  t = jnp.einsum("...pqk,kcab->...pqcab", x, sel, precision=hi)
  t = jnp.einsum("bqw,...pqcab->...apwc", sw, t, precision=hi)
  return jnp.einsum("aph,...apwc->...hwc", sh, t, precision=hi)


def _dense_packet_1d(x, wavelet: str, levels: int, inverse: bool):
  hi = jax.lax.Precision.HIGHEST
  nb = 2 ** levels
  if not inverse:
    t_len, c = x.shape[-2:]
    p = _split_matrix(_packet_matrices(wavelet, levels, t_len)[0], nb, x.dtype, False)
    sel = jnp.asarray(_selection(levels, c, 1), x.dtype)
    t = jnp.einsum("apt,...tc->...pca", p, x, precision=hi)
    return jnp.einsum("...pca,kca->...pk", t, sel, precision=hi)
  n, cc = x.shape[-2:]
  s = _split_matrix(_packet_matrices(wavelet, levels, nb * n)[1], nb, x.dtype, True)
  sel = jnp.asarray(_selection(levels, cc // nb, 1), x.dtype)
  t = jnp.einsum("...pk,kca->...pca", x, sel, precision=hi)
  return jnp.einsum("apt,...pca->...tc", s, t, precision=hi)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _packet(x, f: WaveletFilters, levels: int, dims: int):
  """``x``: ``[*batch, *spatial, C]`` -> ``[*batch, *spatial/2^J, C bands^J]``."""
  batch = x.shape[:-1 - dims]
  x = x.reshape(-1, *x.shape[-1 - dims:]) if len(batch) != 1 else x
  for _ in range(levels):
    x = _level_analysis(x, f, dims)
  return x.reshape(*batch, *x.shape[1:]) if len(batch) != 1 else x


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _inverse_packet(x, f: WaveletFilters, levels: int, dims: int):
  batch = x.shape[:-1 - dims]
  x = x.reshape(-1, *x.shape[-1 - dims:]) if len(batch) != 1 else x
  for _ in range(levels):
    x = _level_synthesis(x, f, dims)
  return x.reshape(*batch, *x.shape[1:]) if len(batch) != 1 else x


# --------------------------------------------------------------------------------------------
# validation


def _check_common(fn: str, x, wavelet, levels, min_rank: int) -> None:
  V.check_floating(fn, "x", x)
  V.check_rank(fn, "x", x, min_rank=min_rank)
  V.check_choice(fn, "wavelet", wavelet, WAVELETS)
  V.check_scalar(fn, "levels", levels, low=1, high=16, integer=True, static=True)


def _check_divisible(fn: str, x, axes: tuple[int, ...], levels: int, what: str) -> None:
  m = 2 ** levels
  sizes = [x.shape[a] for a in axes]
  if any(s % m or s == 0 for s in sizes):
    raise ValueError(f"{fn}: x must have {what} divisible by 2^levels = {m} (levels={levels}; "
                     f"pad the input first, e.g. with pad_to_multiple), got shape "
                     f"{list(x.shape)}")
  if x.shape[-1] == 0:
    raise ValueError(f"{fn}: x must have at least one channel, got shape {list(x.shape)}")


def _check_channels(fn: str, x, levels: int, bands: int) -> None:
  m = bands ** levels
  if x.shape[-1] % m or x.shape[-1] == 0:
    raise ValueError(f"{fn}: x must have a channel count divisible by {bands}^levels = {m} "
                     f"(levels={levels}), got shape {list(x.shape)}")
  if any(s == 0 for s in x.shape[:-1]):
    raise ValueError(f"{fn}: x must not have an empty axis, got shape {list(x.shape)}")


# --------------------------------------------------------------------------------------------
# public transforms


def wavelet_packet_2d(x: Float[Array, "*batch h w c"], *, wavelet: str = "bior4.4",
                      levels: int = 3) -> Float[Array, "*batch h2 w2 c2"]:
  """The periodised 2-D wavelet packet transform, channels last.

  Applies a one-level separable 2-D DWT to every channel ``levels`` times;
  ``[..., H, W, C] -> [..., H/2^J, W/2^J, C 4^J]`` with the channel order of PyWavelets'
  ``WaveletPacket2D(...).get_level(J, "natural")`` (the input channel most significant).

  Args:
    x: images, shape ``[*batch, H, W, C]``, floating; ``H`` and ``W`` divisible by
      ``2^levels``.
    wavelet: see :func:`wavelet_filters`.
    levels: the depth ``J >= 1`` of the packet tree (static).

  Returns:
    The coefficients, shape ``[*batch, H/2^J, W/2^J, C 4^J]``, dtype of ``x``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import wavelet_packet_2d
    >>> wavelet_packet_2d(jnp.ones((2, 16, 16, 3)), levels=3).shape
    (2, 2, 2, 192)

  References:
    Jacobellis & Yadwadkar, "Learned Compression for Compressed Learning", DCC 2025,
    https://arxiv.org/abs/2412.09405; PyWavelets' ``WaveletPacket2D``.
  """
  fn = "wavelet_packet_2d"
  _check_common(fn, x, wavelet, levels, 3)
  _check_divisible(fn, x, (-3, -2), levels, "H and W")
  if max(x.shape[-3], x.shape[-2]) <= _DENSE_MAX:
    return _dense_packet_2d(x, wavelet, levels, False)
  return _packet(x, wavelet_filters(wavelet), levels, 2)


def inverse_wavelet_packet_2d(x: Float[Array, "*batch h2 w2 c2"], *, wavelet: str = "bior4.4",
                              levels: int = 3) -> Float[Array, "*batch h w c"]:
  """The exact inverse of :func:`wavelet_packet_2d`.

  Args:
    x: coefficients, shape ``[*batch, h, w, C 4^J]``, floating.
    wavelet: the wavelet of the forward transform.
    levels: the depth ``J`` of the forward transform.

  Returns:
    The signal, shape ``[*batch, h 2^J, w 2^J, C]``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.compression import wavelet_packet_2d, inverse_wavelet_packet_2d
    >>> x = jax.random.normal(jax.random.key(0), (16, 16, 3))
    >>> y = inverse_wavelet_packet_2d(wavelet_packet_2d(x, levels=2), levels=2)
    >>> bool(jnp.max(jnp.abs(x - y)) < 1e-5)
    True
  """
  fn = "inverse_wavelet_packet_2d"
  _check_common(fn, x, wavelet, levels, 3)
  _check_channels(fn, x, levels, 4)
  if max(x.shape[-3], x.shape[-2]) * 2 ** levels <= _DENSE_MAX:
    return _dense_packet_2d(x, wavelet, levels, True)
  return _inverse_packet(x, wavelet_filters(wavelet), levels, 2)


def wavelet_packet_1d(x: Float[Array, "*batch t c"], *, wavelet: str = "bior4.4",
                      levels: int = 8) -> Float[Array, "*batch t2 c2"]:
  """The periodised 1-D wavelet packet transform (audio), channels last.

  ``[..., T, C] -> [..., T/2^J, C 2^J]``, channel order of PyWavelets' ``WaveletPacket``
  ``get_level(J, "natural")`` with the input channel most significant.

  Args:
    x: signals, shape ``[*batch, T, C]``, floating, ``T`` divisible by ``2^levels``.
    wavelet: see :func:`wavelet_filters`.
    levels: the depth ``J >= 1`` (static).

  Returns:
    The coefficients, shape ``[*batch, T/2^J, C 2^J]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import wavelet_packet_1d
    >>> wavelet_packet_1d(jnp.ones((1024, 2)), levels=8).shape
    (4, 512)
  """
  fn = "wavelet_packet_1d"
  _check_common(fn, x, wavelet, levels, 2)
  _check_divisible(fn, x, (-2,), levels, "T")
  if x.shape[-2] <= _DENSE_MAX:
    return _dense_packet_1d(x, wavelet, levels, False)
  return _packet(x, wavelet_filters(wavelet), levels, 1)


def inverse_wavelet_packet_1d(x: Float[Array, "*batch t2 c2"], *, wavelet: str = "bior4.4",
                              levels: int = 8) -> Float[Array, "*batch t c"]:
  """The exact inverse of :func:`wavelet_packet_1d`.

  Args:
    x: coefficients, shape ``[*batch, t, C 2^J]``, floating.
    wavelet: the wavelet of the forward transform.
    levels: the depth ``J`` of the forward transform.

  Returns:
    The signals, shape ``[*batch, t 2^J, C]``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.compression import wavelet_packet_1d, inverse_wavelet_packet_1d
    >>> x = jax.random.normal(jax.random.key(0), (256, 2))
    >>> y = inverse_wavelet_packet_1d(wavelet_packet_1d(x, levels=4), levels=4)
    >>> bool(jnp.max(jnp.abs(x - y)) < 1e-5)
    True
  """
  fn = "inverse_wavelet_packet_1d"
  _check_common(fn, x, wavelet, levels, 2)
  _check_channels(fn, x, levels, 2)
  if x.shape[-2] * 2 ** levels <= _DENSE_MAX:
    return _dense_packet_1d(x, wavelet, levels, True)
  return _inverse_packet(x, wavelet_filters(wavelet), levels, 1)


def wavelet_packet_paths(levels: int, *, dims: int = 2) -> list[str]:
  """The PyWavelets node path of each output channel (per input channel), in channel order.

  Args:
    levels: the depth ``J >= 1``.
    dims: 2 (bands ``a, h, v, d``) or 1 (bands ``a, d``).

  Returns:
    ``4^J`` (or ``2^J``) strings such as ``"aah"``.

  Example:
    >>> from bottleneck_jax.compression import wavelet_packet_paths
    >>> wavelet_packet_paths(1)
    ['a', 'h', 'v', 'd']
  """
  fn = "wavelet_packet_paths"
  V.check_scalar(fn, "levels", levels, low=1, high=8, integer=True, static=True)
  V.check_choice(fn, "dims", dims, (1, 2))
  bands = "ahvd" if dims == 2 else "ad"
  paths = [""]
  for _ in range(levels):
    paths = [p + b for p in paths for b in bands]
  return paths


def pad_to_multiple(x: Float[Array, "*batch h w c"], *, multiple: int = 16
                    ) -> tuple[Float[Array, "*batch hp wp c"], tuple[int, int, int, int]]:
  """Reflect-pads the two spatial axes of ``x`` (centred) up to a multiple of ``multiple``.

  The padding WaLLoC applies before the wavelet packet transform; :func:`crop_padding` undoes it.

  Args:
    x: images, shape ``[*batch, H, W, C]``.
    multiple: the size both spatial axes are padded to a multiple of (``>= 1``).

  Returns:
    ``(padded, (top, bottom, left, right))``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import pad_to_multiple
    >>> y, spec = pad_to_multiple(jnp.ones((30, 17, 3)), multiple=16)
    >>> y.shape, spec
    ((32, 32, 3), (1, 1, 7, 8))
  """
  fn = "pad_to_multiple"
  V.check_floating(fn, "x", x)
  V.check_rank(fn, "x", x, min_rank=3)
  V.check_scalar(fn, "multiple", multiple, low=1, high=2**16, integer=True, static=True)
  h, w = x.shape[-3], x.shape[-2]
  if h == 0 or w == 0:
    raise ValueError(f"{fn}: x must have non-empty spatial axes, got shape {list(x.shape)}")
  ph, pw = (-h) % multiple, (-w) % multiple
  spec = (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)
  if ph == 0 and pw == 0:
    return x, spec
  if ph >= h or pw >= w:  # too small to reflect: wrap-around symmetric padding instead
    mode = "symmetric"
  else:
    mode = "reflect"
  pads = [(0, 0)] * (x.ndim - 3) + [(spec[0], spec[1]), (spec[2], spec[3]), (0, 0)]
  return jnp.pad(x, pads, mode=mode), spec


def crop_padding(x: Float[Array, "*batch hp wp c"], spec: tuple[int, int, int, int]
                 ) -> Float[Array, "*batch h w c"]:
  """Removes the padding that :func:`pad_to_multiple` added.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import pad_to_multiple, crop_padding
    >>> y, spec = pad_to_multiple(jnp.ones((30, 17, 3)), multiple=16)
    >>> crop_padding(y, spec).shape
    (30, 17, 3)
  """
  fn = "crop_padding"
  V.check_rank(fn, "x", x, min_rank=3)
  if (not isinstance(spec, (tuple, list)) or len(spec) != 4
      or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in spec)):
    raise ValueError(f"{fn}: spec must be four non-negative ints (top, bottom, left, right), "
                     f"got {spec!r}")
  t, b, left, r = spec
  h, w = x.shape[-3], x.shape[-2]
  if t + b >= h or left + r >= w:
    raise ValueError(f"{fn}: spec {spec} removes all of x's spatial axes, shape {list(x.shape)}")
  return x[..., t:h - b, left:w - r, :]

