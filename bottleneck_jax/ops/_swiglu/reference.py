"""SwiGLU in plain ``jnp`` (autodiff): the oracle."""

from __future__ import annotations

import jax
import jax.numpy as jnp

_F32 = jnp.float32


def _swiglu_reference(a, u):
  af = a.astype(_F32)
  return (jax.nn.silu(af) * u.astype(_F32)).astype(a.dtype)


def _mm(x, w, out_sharding=None):
  return jnp.matmul(x, w, preferred_element_type=_F32, out_sharding=out_sharding)


def _swiglu_linear_reference(x, w_gate, w_up):
  a, u = _mm(x, w_gate), _mm(x, w_up)
  return (jax.nn.silu(a) * u).astype(x.dtype)
