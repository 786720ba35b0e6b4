"""RoPE with a residual-free backward: the inverse rotation; only ``positions`` is saved."""

from __future__ import annotations

import functools

import jax

from bottleneck_jax.ops._rope.reference import (
    _qk_rope_reference,
    _rope_cos_sin,
    _rope_reference,
    _rotate,
)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _rope_vjp(x, positions, theta, convention):
  return _rope_reference(x, positions, theta=theta, convention=convention)


def _rope_vjp_fwd(x, positions, theta, convention):
  return _rope_reference(x, positions, theta=theta, convention=convention), positions


def _rope_vjp_bwd(theta, convention, positions, dy):
  cos, sin = _rope_cos_sin(positions, dy.shape[-1], theta)
  return _rotate(dy, cos, -sin, convention).astype(dy.dtype), None


_rope_vjp.defvjp(_rope_vjp_fwd, _rope_vjp_bwd)


def _rope_xla(x, positions, *, theta=10000.0, convention="half"):
  return _rope_vjp(x, positions, float(theta), convention)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _qk_rope_vjp(q, k, positions, theta, convention):
  return _qk_rope_reference(q, k, positions, theta=theta, convention=convention)


def _qk_rope_vjp_fwd(q, k, positions, theta, convention):
  return _qk_rope_reference(q, k, positions, theta=theta, convention=convention), positions


def _qk_rope_vjp_bwd(theta, convention, positions, cts):
  dq, dk = cts
  cos, sin = _rope_cos_sin(positions, dq.shape[-1], theta)
  return (_rotate(dq, cos, -sin, convention).astype(dq.dtype),
          _rotate(dk, cos, -sin, convention).astype(dk.dtype), None)


_qk_rope_vjp.defvjp(_qk_rope_vjp_fwd, _qk_rope_vjp_bwd)


def _qk_rope_xla(q, k, positions, *, theta=10000.0, convention="half"):
  return _qk_rope_vjp(q, k, positions, float(theta), convention)
