"""RMSNorm with a hand VJP that saves only ``x`` and the f32 row statistic ``r``."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from bottleneck_jax.ops._rms_norm.reference import _rms_norm_reference, _rms_stats

_F32 = jnp.float32


def _rms_norm_bwd_math(x, weight, r, dy):
  """The hand backward: ``r`` is f32 of shape ``x.shape[:-1]``."""
  xf, wf, dyf = x.astype(_F32), weight.astype(_F32), dy.astype(_F32)
  r = r[..., None]
  g = dyf * wf
  dx = r * (g - xf * (r * r) * jnp.mean(g * xf, axis=-1, keepdims=True))
  dw = jnp.sum((dyf * xf * r).reshape(-1, x.shape[-1]), axis=0)
  return dx.astype(x.dtype), dw.astype(weight.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _rms_norm_vjp(x, weight, epsilon):
  return _rms_norm_reference(x, weight, epsilon=epsilon)


def _rms_norm_vjp_fwd(x, weight, epsilon):
  xf, r = _rms_stats(x, epsilon)
  y = (xf * r * weight.astype(_F32)).astype(x.dtype)
  return y, (x, weight, r[..., 0])  # x in its own dtype, r: one f32 per row


def _rms_norm_vjp_bwd(epsilon, res, dy):
  del epsilon
  x, weight, r = res
  return _rms_norm_bwd_math(x, weight, r, dy)


_rms_norm_vjp.defvjp(_rms_norm_vjp_fwd, _rms_norm_vjp_bwd)


def _rms_norm_xla(x, weight, *, epsilon=1e-6):
  return _rms_norm_vjp(x, weight, float(epsilon))
