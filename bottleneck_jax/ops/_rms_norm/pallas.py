"""RMSNorm as a row-tiled Pallas forward kernel (Triton on GPU, interpret mode on CPU); the
backward is the XLA hand formula."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from bottleneck_jax.kernels import (
    UnsupportedInput,
    backend,
    batch_shard_map,
    next_power_of_2,
    pallas_interpret,
)
from bottleneck_jax.ops._rms_norm.xla import _rms_norm_vjp_bwd

_F32 = jnp.float32


# Pallas: rows tiled, the full feature axis in one block.


def _rms_norm_kernel(x_ref, w_ref, y_ref, r_ref, *, epsilon):
  x = x_ref[...].astype(_F32)  # [br, d]
  w = w_ref[...].astype(_F32)  # [1, d]
  r = lax.rsqrt(jnp.mean(x * x, axis=1, keepdims=True) + epsilon)  # [br, 1]
  y_ref[...] = (x * r * w).astype(y_ref.dtype)
  r_ref[...] = r


def _block_sizes(n: int, d: int, dtype, platform: str) -> int:
  """Rows per program (the op's only block size): about 16k elements per block, a power of two
  in [1, 64] (interpret mode and Triton alike; ``dtype`` / ``platform`` kept for a tuned
  table)."""
  del dtype, platform
  target = max(1, 16384 // next_power_of_2(max(d, 1)))
  br = 1 << (min(target, 64).bit_length() - 1)
  return max(1, min(br, next_power_of_2(max(n, 1))))


def _rms_norm_pallas_rows(x2, weight, epsilon):
  """Kernel call on ``x2 [N, d]``; returns ``y [N, d]`` and ``r [N]`` (f32)."""
  n, d = x2.shape
  if n == 0:   # no rows: nothing to launch (a zero-size grid / slice is an error in Pallas)
    return jnp.zeros((0, d), x2.dtype), jnp.zeros((0,), _F32)
  br = _block_sizes(n, d, x2.dtype, backend())
  n_pad = -(-n // br) * br
  xp = x2 if n_pad == n else jnp.pad(x2, ((0, n_pad - n), (0, 0)))
  y, r = pl.pallas_call(
      functools.partial(_rms_norm_kernel, epsilon=epsilon),
      grid=(n_pad // br,),
      in_specs=[pl.BlockSpec((br, d), lambda i: (i, 0)), pl.BlockSpec((1, d), lambda i: (0, 0))],
      out_specs=[pl.BlockSpec((br, d), lambda i: (i, 0)), pl.BlockSpec((br, 1), lambda i: (i, 0))],
      out_shape=[jax.ShapeDtypeStruct((n_pad, d), x2.dtype),
                 jax.ShapeDtypeStruct((n_pad, 1), _F32)],
      interpret=pallas_interpret(),
      cost_estimate=pl.CostEstimate(flops=4 * n_pad * d, transcendentals=n_pad,
                                    bytes_accessed=2 * n_pad * d * x2.dtype.itemsize),
  )(xp, weight.reshape(1, d))
  return y[:n], r[:n, 0]


def _rms_norm_pallas_fwd_call(x, weight, epsilon):
  d = x.shape[-1]

  def call(xb, w):
    y, r = _rms_norm_pallas_rows(xb.reshape(-1, d), w, epsilon)
    return y.reshape(xb.shape), r.reshape(xb.shape[:-1])

  if x.ndim == 1:
    y, r = call(x[None], weight)
    return y[0], r[0]
  return batch_shard_map(call, (x, weight), batched=(True, False), out_batched=(True, True),
                         batch_size=x.shape[0])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _rms_norm_pallas_vjp(x, weight, epsilon):
  return _rms_norm_pallas_fwd_call(x, weight, epsilon)[0]


def _rms_norm_pallas_vjp_fwd(x, weight, epsilon):
  y, r = _rms_norm_pallas_fwd_call(x, weight, epsilon)
  return y, (x, weight, r)


_rms_norm_pallas_vjp.defvjp(_rms_norm_pallas_vjp_fwd, _rms_norm_vjp_bwd)


def _rms_norm_pallas(x, weight, *, epsilon=1e-6):
  d = x.shape[-1]
  if not pallas_interpret() and backend() == "gpu" and d != next_power_of_2(d):
    raise UnsupportedInput(f"the Triton lowering needs a power-of-two feature size, got {d}")
  if not pallas_interpret() and backend() == "tpu":
    # Row blocks of 16384 // d rows are not multiples of 8 for wide rows, and the kernel has
    # never been lowered with Mosaic: fall back to the XLA path until it is validated there.
    raise UnsupportedInput("the Pallas rms_norm kernel is validated on GPU (Triton) and in "
                              "interpret mode only, not on TPU (Mosaic)")
  return _rms_norm_pallas_vjp(x, weight, float(epsilon))
