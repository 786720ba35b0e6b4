"""RMSNorm in plain ``jnp``, differentiated by autodiff (the oracle)."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

_F32 = jnp.float32


def _rms_stats(x, epsilon):
  """Returns ``(x_f32, r)`` with ``r = rsqrt(mean(x^2) + epsilon)`` of shape ``[..., 1]``, f32."""
  xf = x.astype(_F32)
  return xf, lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + epsilon)


def _rms_norm_reference(x, weight, *, epsilon=1e-6):
  xf, r = _rms_stats(x, epsilon)
  return (xf * r * weight.astype(_F32)).astype(x.dtype)
