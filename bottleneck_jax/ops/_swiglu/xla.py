"""SwiGLU with hand VJPs that save only the inputs (``swiglu_linear`` recomputes both
projections in the backward pass)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bottleneck_jax.kernels.sharding import explicit_spec
from bottleneck_jax.ops._swiglu.reference import _mm, _swiglu_linear_reference, _swiglu_reference

_F32 = jnp.float32


def _swiglu_bwd_math(a, u, dy):
  af, uf, dyf = a.astype(_F32), u.astype(_F32), dy.astype(_F32)
  s = jax.nn.sigmoid(af)
  da = dyf * uf * s * (1.0 + af * (1.0 - s))
  du = dyf * af * s
  return da, du


@jax.custom_vjp
def _swiglu_vjp(a, u):
  return _swiglu_reference(a, u)


def _swiglu_vjp_fwd(a, u):
  return _swiglu_reference(a, u), (a, u)


def _swiglu_vjp_bwd(res, dy):
  a, u = res
  da, du = _swiglu_bwd_math(a, u, dy)
  return da.astype(a.dtype), du.astype(u.dtype)


_swiglu_vjp.defvjp(_swiglu_vjp_fwd, _swiglu_vjp_bwd)


def _swiglu_xla(a, u):
  return _swiglu_vjp(a, u)


@jax.custom_vjp
def _swiglu_linear_vjp(x, w_gate, w_up):
  return _swiglu_linear_reference(x, w_gate, w_up)


def _swiglu_linear_vjp_fwd(x, w_gate, w_up):
  return _swiglu_linear_reference(x, w_gate, w_up), (x, w_gate, w_up)


def _swiglu_linear_vjp_bwd(res, dy):
  x, w_gate, w_up = res
  a, u = _mm(x, w_gate), _mm(x, w_up)  # recomputed, never stored across fwd/bwd
  da, du = _swiglu_bwd_math(a, u, dy)
  da, du = da.astype(x.dtype), du.astype(x.dtype)
  dx = _mm(da, w_gate.T) + _mm(du, w_up.T)
  x2 = x.reshape(-1, x.shape[-1])
  dwg = _mm(x2.T, da.reshape(-1, da.shape[-1]), explicit_spec(w_gate))
  dwu = _mm(x2.T, du.reshape(-1, du.shape[-1]), explicit_spec(w_up))
  return dx.astype(x.dtype), dwg.astype(w_gate.dtype), dwu.astype(w_up.dtype)


_swiglu_linear_vjp.defvjp(_swiglu_linear_vjp_fwd, _swiglu_linear_vjp_bwd)


def _swiglu_linear_xla(x, w_gate, w_up):
  return _swiglu_linear_vjp(x, w_gate, w_up)
