"""Chronicals' fused elementwise kernels in JAX: RMSNorm, SwiGLU and QK-RoPE with hand VJPs.

Paper: *Chronicals: A High-Performance Framework for LLM Fine-Tuning with 3.51x Speedup over
Unsloth* (2026), https://github.com/Ajwebdevs/Chronicals.

Idea. Chronicals fuses RMSNorm (7x), SwiGLU (5x) and QK-RoPE (2.3x) into Triton kernels with
hand-written backward passes, claiming to remove 75% of the memory traffic of PyTorch eager.
XLA already fuses such elementwise chains, so in JAX the lever is not fusion but **what is
saved for the backward pass**: each op here is a ``jax.custom_vjp`` that keeps only the minimum
residuals and recomputes the rest.

Equations (rows are the last axis, ``d`` features):

* RMSNorm: ``r = 1/sqrt(mean(x^2) + eps)`` (f32, one per row), ``y = x * r * w``. Saved: ``x``
  and ``r``. Backward::

      dx = r * (dy*w - x * r^2 * mean(dy*w*x))        dw = sum_rows dy * x * r

* SwiGLU: ``out = silu(a) * u``. Saved: ``a`` and ``u``; ``sigma(a)`` is recomputed::

      da = dy * u * s * (1 + a (1 - s)),  s = sigmoid(a)      du = dy * silu(a)

  ``swiglu_linear(x, w_gate, w_up)`` fuses the two projections too: it saves only its inputs
  and recomputes ``a = x @ w_gate``, ``u = x @ w_up`` in the backward pass, so no ``[N, F]``
  activation is kept between forward and backward.

* RoPE: with angles ``theta_{p,i} = p * theta^(-2i/d)`` each pair ``(x1, x2)`` is rotated,
  ``(x1 cos - x2 sin, x2 cos + x1 sin)``. Pairs are ``(i, i + d/2)`` for the ``"half"``
  convention (HF ``rotate_half``, Llama/Qwen) and ``(2i, 2i+1)`` for ``"interleaved"`` (GPT-J,
  the original RoFormer). The backward pass is the inverse rotation (``sin -> -sin``), so the
  only residual is the integer ``positions``. ``qk_rope`` rotates queries and keys in one op
  sharing the angle computation.

Implementations (``implementation=``, see :mod:`bottleneck_jax.kernels`):
``"reference"`` is plain ``jnp`` differentiated by autodiff; ``"xla"`` is the ``custom_vjp``
version (default on CPU); ``rms_norm`` also has ``"pallas"``, a row-tiled forward kernel
(``interpret=True`` on CPU) whose backward is the same hand formula in XLA.

Dtypes. Statistics and arithmetic are f32 whatever the input dtype (bf16 inputs give f32 row
statistics); outputs have the dtype of the (first) data input.

Departures from the paper. No Triton: XLA fusions plus ``custom_vjp`` (and one Pallas kernel).
Speed gains over XLA are expected to be small (the paper's speed-ups are against PyTorch eager);
the measurable gain is residual memory. Measured (``[8192, 4096]``, bf16): autodiff of the
reference saves 0.25 GiB for one RMSNorm (an f32 copy of ``x`` and the normalised rows), the
custom VJP 0.06 GiB (``x`` itself plus ``r``); SwiGLU ``[8192, 8192]`` 1.25 -> 0.25 GiB;
``swiglu_linear`` 1.44 -> 0.19 GiB; QK-RoPE saves only the positions. When forward and backward
sit in one XLA program with nothing but elementwise work in between, XLA (GPU) rematerialises
those residuals itself and the compiled temporary memory is the same for both versions.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax
from jax.experimental import pallas as pl

from bottleneck_jax.core import validation as V
from bottleneck_jax.kernels import Op, backend, batch_shard_map, next_power_of_2, pallas_interpret
from bottleneck_jax.kernels.sharding import explicit_spec

_F32 = jnp.float32
_CONVENTIONS = ("half", "interleaved")

# --------------------------------------------------------------------------------------------
# RMSNorm
# --------------------------------------------------------------------------------------------


def _check_rms_norm(fn, x, weight, eps):
  V.check_rank(fn, "x", x, min_rank=1)
  V.check_floating(fn, "x", x)
  V.check_rank(fn, "weight", weight, 1)
  V.check_floating(fn, "weight", weight)
  V.check_shape(fn, "weight", weight, (x.shape[-1],))
  V.check_scalar(fn, "eps", eps, low=0.0, static=True)


def _rms_stats(x, eps):
  """Returns ``(x_f32, r)`` with ``r = rsqrt(mean(x^2) + eps)`` of shape ``[..., 1]``, f32."""
  xf = x.astype(_F32)
  return xf, lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)


def _rms_norm_reference(x, weight, *, eps=1e-6):
  xf, r = _rms_stats(x, eps)
  return (xf * r * weight.astype(_F32)).astype(x.dtype)


def _rms_norm_bwd_math(x, weight, r, dy):
  """The hand backward: ``r`` is f32 of shape ``x.shape[:-1]``."""
  xf, wf, dyf = x.astype(_F32), weight.astype(_F32), dy.astype(_F32)
  r = r[..., None]
  g = dyf * wf
  dx = r * (g - xf * (r * r) * jnp.mean(g * xf, axis=-1, keepdims=True))
  dw = jnp.sum((dyf * xf * r).reshape(-1, x.shape[-1]), axis=0)
  return dx.astype(x.dtype), dw.astype(weight.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _rms_norm_vjp(x, weight, eps):
  return _rms_norm_reference(x, weight, eps=eps)


def _rms_norm_vjp_fwd(x, weight, eps):
  xf, r = _rms_stats(x, eps)
  y = (xf * r * weight.astype(_F32)).astype(x.dtype)
  return y, (x, weight, r[..., 0])  # x in its own dtype, r: one f32 per row


def _rms_norm_vjp_bwd(eps, res, dy):
  del eps
  x, weight, r = res
  return _rms_norm_bwd_math(x, weight, r, dy)


_rms_norm_vjp.defvjp(_rms_norm_vjp_fwd, _rms_norm_vjp_bwd)


def _rms_norm_xla(x, weight, *, eps=1e-6):
  return _rms_norm_vjp(x, weight, float(eps))


# Pallas: rows tiled, the full feature axis in one block.


def _rms_norm_kernel(x_ref, w_ref, y_ref, r_ref, *, eps):
  x = x_ref[...].astype(_F32)  # [br, d]
  w = w_ref[...].astype(_F32)  # [1, d]
  r = lax.rsqrt(jnp.mean(x * x, axis=1, keepdims=True) + eps)  # [br, 1]
  y_ref[...] = (x * r * w).astype(y_ref.dtype)
  r_ref[...] = r


def _rms_rows_block(n_rows: int, d: int) -> int:
  """Rows per program: about 16k elements per block, a power of two in [1, 64]."""
  target = max(1, 16384 // next_power_of_2(d))
  br = 1 << (min(target, 64).bit_length() - 1)
  return max(1, min(br, next_power_of_2(n_rows)))


def _rms_norm_pallas_rows(x2, weight, eps):
  """Kernel call on ``x2 [N, d]``; returns ``y [N, d]`` and ``r [N]`` (f32)."""
  n, d = x2.shape
  br = _rms_rows_block(n, d)
  n_pad = -(-n // br) * br
  xp = x2 if n_pad == n else jnp.pad(x2, ((0, n_pad - n), (0, 0)))
  y, r = pl.pallas_call(
      functools.partial(_rms_norm_kernel, eps=eps),
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


def _rms_norm_pallas_fwd_call(x, weight, eps):
  d = x.shape[-1]

  def call(xb, w):
    y, r = _rms_norm_pallas_rows(xb.reshape(-1, d), w, eps)
    return y.reshape(xb.shape), r.reshape(xb.shape[:-1])

  if x.ndim == 1:
    y, r = call(x[None], weight)
    return y[0], r[0]
  return batch_shard_map(call, (x, weight), batched=(True, False), out_batched=(True, True),
                         batch_size=x.shape[0])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _rms_norm_pallas_vjp(x, weight, eps):
  return _rms_norm_pallas_fwd_call(x, weight, eps)[0]


def _rms_norm_pallas_vjp_fwd(x, weight, eps):
  y, r = _rms_norm_pallas_fwd_call(x, weight, eps)
  return y, (x, weight, r)


_rms_norm_pallas_vjp.defvjp(_rms_norm_pallas_vjp_fwd, _rms_norm_vjp_bwd)


def _rms_norm_pallas(x, weight, *, eps=1e-6):
  d = x.shape[-1]
  if not pallas_interpret() and backend() == "gpu" and d != next_power_of_2(d):
    raise NotImplementedError(f"the Triton lowering needs a power-of-two feature size, got {d}")
  if not pallas_interpret() and backend() == "tpu":
    # Row blocks of 16384 // d rows are not multiples of 8 for wide rows, and the kernel has
    # never been lowered with Mosaic: fall back to the XLA path until it is validated there.
    raise NotImplementedError("the Pallas rms_norm kernel is validated on GPU (Triton) and in "
                              "interpret mode only, not on TPU (Mosaic)")
  return _rms_norm_pallas_vjp(x, weight, float(eps))


_rms_norm_op = Op("rms_norm", {"reference": _rms_norm_reference, "xla": _rms_norm_xla,
                               "pallas": _rms_norm_pallas})


def rms_norm(x: jax.Array, weight: jax.Array, *, eps: float = 1e-6,
             implementation: str | None = None) -> jax.Array:
  """Root-mean-square layer norm over the last axis, with a memory-lean hand VJP.

  .. math::
    r = \\left(\\tfrac{1}{d}\\sum_j x_j^2 + \\epsilon\\right)^{-1/2}, \\qquad y = x \\, r \\, w

  The row statistic ``r`` is computed in f32 for any input dtype. The ``"xla"`` and
  ``"pallas"`` implementations save only ``x`` (in its own dtype) and ``r`` (one f32 per row)
  for the backward pass, which is
  ``dx = r (dy w - x r^2 mean(dy w x))`` and ``dw = sum_rows dy x r``.

  Args:
    x: ``[*batch, d]`` floating input.
    weight: ``[d]`` floating scale.
    eps: non-negative constant added to the mean square.
    implementation: ``None`` (platform default), ``"reference"``, ``"xla"`` or ``"pallas"``.

  Returns:
    ``[*batch, d]`` in ``x.dtype``.

  Example:
    >>> import jax.numpy as jnp
    >>> rms_norm(jnp.array([[3.0, 4.0]]), jnp.ones(2), eps=0.0)  # rms = sqrt(12.5)
    Array([[0.84852815, 1.1313709 ]], dtype=float32)

  References:
    Zhang & Sennrich, *Root Mean Square Layer Normalization*, 2019,
    https://arxiv.org/abs/1910.07467; Chronicals (2026), https://github.com/Ajwebdevs/Chronicals.
  """
  _check_rms_norm("rms_norm", x, weight, eps)
  return _rms_norm_op(x, weight, eps=eps, implementation=implementation)


# --------------------------------------------------------------------------------------------
# SwiGLU
# --------------------------------------------------------------------------------------------


def _check_swiglu(fn, a, u):
  V.check_floating(fn, "a", a)
  V.check_floating(fn, "u", u)
  V.check_same_shape(fn, "a", a, "u", u)
  if a.dtype != u.dtype:
    raise TypeError(f"{fn}: a and u must have the same dtype, got {a.dtype.name} and "
                    f"{u.dtype.name}")


def _swiglu_reference(a, u):
  af = a.astype(_F32)
  return (jax.nn.silu(af) * u.astype(_F32)).astype(a.dtype)


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


_swiglu_op = Op("swiglu", {"reference": _swiglu_reference, "xla": _swiglu_xla})


def swiglu(a: jax.Array, u: jax.Array, *, implementation: str | None = None) -> jax.Array:
  """SwiGLU gate ``silu(a) * u`` with a hand VJP that saves only ``a`` and ``u``.

  .. math::
    \\mathrm{out} = a\\,\\sigma(a)\\,u, \\quad
    \\partial a = dy\\,u\\,\\sigma(a)(1 + a(1-\\sigma(a))), \\quad \\partial u = dy\\,a\\,\\sigma(a)

  Args:
    a: ``[*shape]`` gate pre-activation (floating).
    u: ``[*shape]`` up projection, same shape and dtype as ``a``.
    implementation: ``None``, ``"reference"`` or ``"xla"``.

  Returns:
    ``[*shape]`` in ``a.dtype`` (computed in f32).

  Example:
    >>> import jax.numpy as jnp
    >>> swiglu(jnp.array([0.0, 1.0]), jnp.array([2.0, 2.0]))
    Array([0.       , 1.4621172], dtype=float32)

  References:
    Shazeer, *GLU Variants Improve Transformer*, 2020, https://arxiv.org/abs/2002.05202;
    Chronicals (2026), https://github.com/Ajwebdevs/Chronicals.
  """
  _check_swiglu("swiglu", a, u)
  return _swiglu_op(a, u, implementation=implementation)


def _check_swiglu_linear(fn, x, w_gate, w_up):
  V.check_rank(fn, "x", x, min_rank=1)
  V.check_floating(fn, "x", x)
  V.check_rank(fn, "w_gate", w_gate, 2)
  V.check_floating(fn, "w_gate", w_gate)
  V.check_same_shape(fn, "w_gate", w_gate, "w_up", w_up)
  V.check_axis_size(fn, "w_gate", w_gate, 0, x.shape[-1], "the features of x")
  for name, w in (("w_gate", w_gate), ("w_up", w_up)):
    if w.dtype != x.dtype:
      raise TypeError(f"{fn}: {name} must have the dtype of x ({x.dtype.name}), got "
                      f"{w.dtype.name}")


def _mm(x, w, out_sharding=None):
  return jnp.matmul(x, w, preferred_element_type=_F32, out_sharding=out_sharding)



def _swiglu_linear_reference(x, w_gate, w_up):
  a, u = _mm(x, w_gate), _mm(x, w_up)
  return (jax.nn.silu(a) * u).astype(x.dtype)


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


_swiglu_linear_op = Op("swiglu_linear", {"reference": _swiglu_linear_reference,
                                         "xla": _swiglu_linear_xla})


def swiglu_linear(x: jax.Array, w_gate: jax.Array, w_up: jax.Array, *,
                  implementation: str | None = None) -> jax.Array:
  """Gate and up projections fused with SwiGLU: ``silu(x @ w_gate) * (x @ w_up)``.

  The ``"xla"`` version saves only its inputs and recomputes both projections in the backward
  pass (two extra GEMMs), so the ``[*batch, f]`` activations ``a`` and ``u`` are not kept
  alive between forward and backward. Matmuls accumulate in f32.

  Args:
    x: ``[*batch, d]`` floating input.
    w_gate: ``[d, f]`` gate kernel (``nnx.Linear`` layout), dtype of ``x``.
    w_up: ``[d, f]`` up kernel, dtype of ``x``.
    implementation: ``None``, ``"reference"`` or ``"xla"``.

  Returns:
    ``[*batch, f]`` in ``x.dtype``.

  Example:
    >>> import jax.numpy as jnp
    >>> swiglu_linear(jnp.ones((1, 2)), jnp.ones((2, 3)), jnp.ones((2, 3))).shape
    (1, 3)

  References:
    Shazeer, *GLU Variants Improve Transformer*, 2020, https://arxiv.org/abs/2002.05202.
  """
  _check_swiglu_linear("swiglu_linear", x, w_gate, w_up)
  return _swiglu_linear_op(x, w_gate, w_up, implementation=implementation)


# --------------------------------------------------------------------------------------------
# RoPE
# --------------------------------------------------------------------------------------------


def _check_rope_x(fn, arg, x, theta, convention):
  V.check_rank(fn, arg, x, min_rank=3)
  V.check_floating(fn, arg, x)
  d = x.shape[-1]
  if d % 2:
    raise ValueError(f"{fn}: {arg} must have an even head_dim (last axis), got {d}")
  V.check_scalar(fn, "theta", theta, low=0.0, low_inclusive=False, static=True)
  if not isinstance(convention, str):
    raise TypeError(f"{fn}: convention must be a str, got {type(convention).__name__}")
  V.check_choice(fn, "convention", convention, _CONVENTIONS)


def _check_positions(fn, positions, lead, arg="x"):
  V.check_integer(fn, "positions", positions)
  shape = tuple(np.shape(positions))
  try:
    ok = np.broadcast_shapes(shape, lead) == tuple(lead)
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(f"{fn}: positions must broadcast to {arg}.shape[:-2] = {list(lead)} "
                     f"([*batch, seq]), got shape {list(shape)}")


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


_rope_op = Op("apply_rope", {"reference": _rope_reference, "xla": _rope_xla})


def apply_rope(x: jax.Array, positions: jax.Array, *, theta: float = 10000.0,
               convention: str = "half", implementation: str | None = None) -> jax.Array:
  """Rotary position embedding with a residual-free backward (the inverse rotation).

  .. math::
    \\phi_i = p\\,\\theta^{-2i/d}, \\qquad
    (x_1, x_2) \\mapsto (x_1\\cos\\phi_i - x_2\\sin\\phi_i,\\; x_2\\cos\\phi_i + x_1\\sin\\phi_i)

  for ``i < d/2``. ``convention="half"`` pairs ``(i, i + d/2)`` (HF ``rotate_half``);
  ``"interleaved"`` pairs ``(2i, 2i + 1)``. The backward pass rotates the cotangent by
  ``-phi``; only ``positions`` is saved. Angles and rotation are computed in f32.

  Args:
    x: ``[*batch, seq, heads, head_dim]`` floating; ``head_dim`` even.
    positions: integer ``[*batch, seq]`` (or any shape broadcasting to it, e.g. ``[seq]``).
    theta: the RoPE base (> 0).
    convention: ``"half"`` or ``"interleaved"``.
    implementation: ``None``, ``"reference"`` or ``"xla"``.

  Returns:
    The rotated ``x``, same shape and dtype.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.ones((4, 2, 8))                    # [seq, heads, head_dim]
    >>> apply_rope(x, jnp.arange(4)).shape
    (4, 2, 8)

  References:
    Su et al., *RoFormer: Enhanced Transformer with Rotary Position Embedding*, 2021,
    https://arxiv.org/abs/2104.09864; Chronicals (2026).
  """
  _check_rope_x("apply_rope", "x", x, theta, convention)
  _check_positions("apply_rope", positions, x.shape[:-2])
  return _rope_op(x, positions, theta=theta, convention=convention,
                  implementation=implementation)


def _qk_rope_reference(q, k, positions, *, theta=10000.0, convention="half"):
  cos, sin = _rope_cos_sin(positions, q.shape[-1], theta)
  return (_rotate(q, cos, sin, convention).astype(q.dtype),
          _rotate(k, cos, sin, convention).astype(k.dtype))


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


_qk_rope_op = Op("qk_rope", {"reference": _qk_rope_reference, "xla": _qk_rope_xla})


def qk_rope(q: jax.Array, k: jax.Array, positions: jax.Array, *, theta: float = 10000.0,
            convention: str = "half",
            implementation: str | None = None) -> tuple[jax.Array, jax.Array]:
  """Applies RoPE to queries and keys in one op (Chronicals' fused QK-RoPE).

  Same rotation as :func:`apply_rope`; the angles are computed once for both. ``q`` and ``k``
  may have different head counts (grouped-query attention) but share batch, sequence and
  ``head_dim``. Only ``positions`` is saved for the backward pass.

  Args:
    q: ``[*batch, seq, q_heads, head_dim]`` floating.
    k: ``[*batch, seq, kv_heads, head_dim]`` floating.
    positions: integer ``[*batch, seq]`` (or broadcastable to it).
    theta: the RoPE base (> 0).
    convention: ``"half"`` or ``"interleaved"``.
    implementation: ``None``, ``"reference"`` or ``"xla"``.

  Returns:
    ``(q_rotated, k_rotated)`` with the shapes and dtypes of ``q`` and ``k``.

  Example:
    >>> import jax.numpy as jnp
    >>> q, k = jnp.ones((2, 5, 4, 8)), jnp.ones((2, 5, 1, 8))
    >>> qr, kr = qk_rope(q, k, jnp.arange(5)[None].repeat(2, 0))
    >>> qr.shape, kr.shape
    ((2, 5, 4, 8), (2, 5, 1, 8))

  References:
    Su et al., *RoFormer*, 2021, https://arxiv.org/abs/2104.09864; Chronicals (2026).
  """
  _check_rope_x("qk_rope", "q", q, theta, convention)
  _check_rope_x("qk_rope", "k", k, theta, convention)
  if q.shape[:-2] != k.shape[:-2] or q.shape[-1] != k.shape[-1]:
    raise ValueError(f"qk_rope: q and k must share [*batch, seq] and head_dim, got shapes "
                     f"{list(q.shape)} and {list(k.shape)}")
  _check_positions("qk_rope", positions, q.shape[:-2], arg="q")
  return _qk_rope_op(q, k, positions, theta=theta, convention=convention,
                     implementation=implementation)


# --------------------------------------------------------------------------------------------
# NNX module
# --------------------------------------------------------------------------------------------

class FusedRMSNorm(nnx.Module):
  """``nnx`` RMSNorm whose forward/backward is :func:`rms_norm` (a ``scale`` parameter).

  Parameter layout matches ``flax.nnx.RMSNorm`` (``scale [num_features]``, ones at init).

  Example:
    >>> from flax import nnx
    >>> import jax.numpy as jnp
    >>> norm = FusedRMSNorm(4, rngs=nnx.Rngs(0))
    >>> norm(jnp.ones((2, 4))).shape
    (2, 4)
  """

  def __init__(self, num_features: int, *, eps: float = 1e-6, param_dtype=jnp.float32,
               implementation: str | None = None, rngs: nnx.Rngs | None = None):
    del rngs  # deterministic init; accepted for a uniform constructor signature
    V.check_scalar("FusedRMSNorm", "num_features", num_features, low=1, integer=True)
    self.num_features = num_features
    self.eps = eps
    self.implementation = implementation
    self.scale = nnx.Param(jnp.ones((num_features,), param_dtype))

  def __call__(self, x: jax.Array) -> jax.Array:
    return rms_norm(x, self.scale[...], eps=self.eps, implementation=self.implementation)


__all__ = [
    "FusedRMSNorm",
    "apply_rope",
    "qk_rope",
    "rms_norm",
    "swiglu",
    "swiglu_linear",
]
