"""Rotary position embedding in plain ``jnp`` (autodiff): the oracle."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

_F32 = jnp.float32


def _rope_cos_sin(positions, d, theta):
  """``cos, sin`` of shape ``[*batch, seq, 1, d/2]`` (f32)."""
  inv_freq = (float(theta) ** (-np.arange(0, d // 2, dtype=np.float64) * 2.0 / d))
  ang = jnp.asarray(positions).astype(_F32)[..., None] * jnp.asarray(inv_freq, _F32)
  ang = ang[..., None, :]
  return jnp.cos(ang), jnp.sin(ang)


def _rotate(x, cos, sin, convention):
  """Rotates pairs of ``x`` by the angle whose cosine/sine are given; f32 out."""
  xf = x.astype(_F32)
  h = x.shape[-1] // 2
  if convention == "half":
    x1, x2 = xf[..., :h], xf[..., h:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  xr = xf.reshape(*x.shape[:-1], h, 2)
  x1, x2 = xr[..., 0], xr[..., 1]
  return jnp.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).reshape(x.shape)


def _rope_reference(x, positions, *, theta=10000.0, convention="half"):
  cos, sin = _rope_cos_sin(positions, x.shape[-1], theta)
  return _rotate(x, cos, sin, convention).astype(x.dtype)


def _qk_rope_reference(q, k, positions, *, theta=10000.0, convention="half"):
  cos, sin = _rope_cos_sin(positions, q.shape[-1], theta)
  return (_rotate(q, cos, sin, convention).astype(q.dtype),
          _rotate(k, cos, sin, convention).astype(k.dtype))
