r"""KV-cache quantisation: asymmetric uniform codes packed into bytes, per channel or per token.

Shared by the KV-compression methods of the attention family (ZipVL's mixed-precision cache).
A tensor ``x [..., T, H, D]`` (tokens, heads, channels) is quantised to ``b`` bits with

.. math::

  s = \frac{\max - \min}{2^b - 1}, \qquad z = \min, \qquad
  c = \mathrm{clip}(\mathrm{round}((x - z) / s), 0, 2^b - 1), \qquad \hat x = z + s\, c,

where ``min``/``max`` run over a *group*: per channel (``mode="channel"``: over tokens, for each
head and channel, the KIVI choice for keys whose outliers live in fixed channels) or per token
(``mode="token"``: over channels, for each token and head, the choice for values), in groups of
``group_size`` elements along the reduced axis (default: the whole axis). Rounding to nearest
gives ``|x - x_hat| <= s / 2``. Codes are stored packed along the channel axis, ``8 / b`` codes
per ``uint8`` (low bits first), as real storage, not fake quantisation.

Departures: ZipCache's "channel-separable token-wise" value quantiser (dividing by a per-token
magnitude before channel-wise min/max) is not implemented; values use plain token-wise groups.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, UInt8

from bottleneck_jax.core import validation as V

_BITS = (2, 4, 8)


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["codes", "scale", "zero"],
                   meta_fields=["bits", "mode", "group_size", "channels"])
@dataclasses.dataclass(frozen=True)
class QuantizedKV:
  """A quantised ``[..., T, H, D]`` tensor (a pytree; ``bits``, ``mode``, ``group_size`` and
  ``channels`` are static).

  Attributes:
    codes: ``uint8 [..., T, H, D * bits / 8]``, packed codes.
    scale: f32 step sizes, broadcastable over the groups (``[..., T/g, 1, H, D]`` per channel,
      ``[..., T, H, D/g, 1]`` per token, stored grouped).
    zero: f32 group minima, same shape as ``scale``.
    bits: 2, 4 or 8.
    mode: ``"channel"`` or ``"token"``.
    group_size: elements per group along the reduced axis.
    channels: ``D``.
  """

  codes: UInt8[Array, "..."]
  scale: Float[Array, "..."]
  zero: Float[Array, "..."]
  bits: int
  mode: str
  group_size: int
  channels: int


def pack_bits(codes: Int[Array, "*batch d"], bits: int) -> Int[Array, "*batch packed"]:
  """Packs ``b``-bit codes (values ``< 2^b``) along the last axis, ``8 / b`` per byte, low bits
  first.

  Example:
    >>> pack_bits(jnp.array([1, 2, 3, 0], jnp.uint8), 2).tolist()   # 1 + 2*4 + 3*16
    [57]
  """
  fn = "pack_bits"
  V.check_choice(fn, "bits", bits, _BITS)
  V.check_rank(fn, "codes", codes, min_rank=1)
  if jnp.dtype(codes.dtype) != jnp.uint8:
    raise TypeError(f"{fn}: codes must be uint8, got {jnp.dtype(codes.dtype).name}")
  per = 8 // bits
  if codes.shape[-1] % per:
    raise ValueError(f"{fn}: codes must have a last axis divisible by {per} for {bits}-bit "
                     f"packing, got shape {list(codes.shape)}")
  return _pack(jnp.asarray(codes), bits)


def _pack(codes, bits):
  per = 8 // bits
  c = codes.reshape(*codes.shape[:-1], codes.shape[-1] // per, per).astype(jnp.uint8)
  shifts = (jnp.arange(per, dtype=jnp.uint8) * bits).astype(jnp.uint8)
  return jnp.bitwise_or.reduce(jnp.left_shift(c, shifts), axis=-1) if per > 1 else c[..., 0]


def unpack_bits(packed: Int[Array, "*batch packed"], bits: int) -> Int[Array, "*batch d"]:
  """Inverse of :func:`pack_bits`: ``uint8 [..., n]`` -> ``uint8 [..., n * 8 / b]``.

  Example:
    >>> unpack_bits(jnp.array([57], jnp.uint8), 2).tolist()
    [1, 2, 3, 0]
  """
  fn = "unpack_bits"
  V.check_choice(fn, "bits", bits, _BITS)
  V.check_rank(fn, "packed", packed, min_rank=1)
  if jnp.dtype(packed.dtype) != jnp.uint8:
    raise TypeError(f"{fn}: packed must be uint8, got {jnp.dtype(packed.dtype).name}")
  return _unpack(jnp.asarray(packed), bits)


def _unpack(packed, bits):
  per = 8 // bits
  if per == 1:
    return packed
  shifts = (jnp.arange(per, dtype=jnp.uint8) * bits).astype(jnp.uint8)
  mask = jnp.uint8((1 << bits) - 1)
  c = jnp.bitwise_and(jnp.right_shift(packed[..., None], shifts), mask)
  return c.reshape(*packed.shape[:-1], packed.shape[-1] * per)


def _grouped(x, mode, g):
  """View ``x [..., T, H, D]`` with the reduced axis split into groups (axis -4 or -1 + 1)."""
  *lead, t, h, d = x.shape
  if mode == "channel":
    return x.reshape(*lead, t // g, g, h, d), -3
  return x.reshape(*lead, t, h, d // g, g), -1


def quantize_kv(
    x: Float[Array, "*batch tokens heads channels"],
    *,
    bits: int,
    mode: str,
    group_size: int | None = None,
) -> QuantizedKV:
  """Quantises a K or V cache to packed ``bits``-bit codes (see the module docstring).

  Args:
    x: ``[..., T, H, D]`` floating; ``D`` divisible by ``8 / bits``.
    bits: 2, 4 or 8.
    mode: ``"channel"`` (groups over tokens, per head and channel) or ``"token"`` (groups over
      channels, per token and head).
    group_size: group length along the reduced axis; must divide it (default: the whole axis).

  Returns:
    :class:`QuantizedKV`.

  Example:
    >>> x = jnp.array([0.0, 1.0, 2.0, 3.0]).reshape(1, 1, 4)
    >>> q = quantize_kv(x, bits=2, mode="token")
    >>> dequantize_kv(q).ravel().tolist()
    [0.0, 1.0, 2.0, 3.0]
  """
  fn = "quantize_kv"
  V.check_rank(fn, "x", x, min_rank=3)
  V.check_floating(fn, "x", x)
  V.check_choice(fn, "bits", bits, _BITS)
  V.check_choice(fn, "mode", mode, ("channel", "token"))
  *_, t, h, d = x.shape
  if min(x.shape) < 1:
    raise ValueError(f"{fn}: x must have non-empty axes, got shape {list(x.shape)}")
  if d % (8 // bits):
    raise ValueError(f"{fn}: x must have a channel count divisible by {8 // bits} for "
                     f"{bits}-bit packing, got shape {list(x.shape)}")
  axis_len = t if mode == "channel" else d
  if group_size is None:
    group_size = axis_len
  V.check_scalar(fn, "group_size", group_size, low=1, integer=True)
  if axis_len % group_size:
    raise ValueError(f"{fn}: group_size must divide the {'token' if mode == 'channel' else 'channel'}"
                     f" axis ({axis_len}), got {group_size}")
  xg, ax = _grouped(jnp.asarray(x).astype(jnp.float32), mode, int(group_size))
  lo = jnp.min(xg, axis=ax, keepdims=True)
  hi = jnp.max(xg, axis=ax, keepdims=True)
  levels = (1 << bits) - 1
  scale = (hi - lo) / levels
  safe = jnp.where(scale > 0, scale, 1.0)
  codes = jnp.clip(jnp.round((xg - lo) / safe), 0, levels).astype(jnp.uint8)
  codes = codes.reshape(x.shape)
  return QuantizedKV(_pack(codes, bits), scale, lo, int(bits), mode, int(group_size), int(d))


def dequantize_kv(q: QuantizedKV) -> Float[Array, "*batch tokens heads channels"]:
  """The f32 tensor ``zero + scale * code`` of a :class:`QuantizedKV`."""
  if not isinstance(q, QuantizedKV):
    raise TypeError(f"dequantize_kv: q must be a QuantizedKV, got {type(q).__name__}")
  codes = _unpack(q.codes, q.bits).astype(jnp.float32)
  cg, _ = _grouped(codes, q.mode, q.group_size)
  return (q.zero + q.scale * cg).reshape(codes.shape)


def kv_bits(q: QuantizedKV) -> Float[Array, ""]:
  """Storage of a :class:`QuantizedKV` in bits: packed codes plus f32 scales and zeros."""
  if not isinstance(q, QuantizedKV):
    raise TypeError(f"kv_bits: q must be a QuantizedKV, got {type(q).__name__}")
  return jnp.asarray(8.0 * q.codes.size + 32.0 * (q.scale.size + q.zero.size), jnp.float32)


__all__ = ["QuantizedKV", "dequantize_kv", "kv_bits", "pack_bits", "quantize_kv", "unpack_bits"]
