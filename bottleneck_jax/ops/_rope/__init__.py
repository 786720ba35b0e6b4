"""Rotary position embedding (RoPE) for queries and keys, with a residual-free VJP.

With angles ``theta_{p,i} = p * theta^(-2i/d)`` each pair ``(x1, x2)`` is rotated,
``(x1 cos - x2 sin, x2 cos + x1 sin)``. Pairs are ``(i, i + d/2)`` for the ``"half"`` convention
(HF ``rotate_half``, Llama/Qwen) and ``(2i, 2i+1)`` for ``"interleaved"`` (GPT-J, RoFormer).
The backward pass is the inverse rotation (``sin -> -sin``), so the only residual is the integer
``positions``; ``qk_rope`` rotates queries and keys in one op sharing the angles.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.kernels import Op
from bottleneck_jax.ops._rope.reference import _qk_rope_reference, _rope_reference
from bottleneck_jax.ops._rope.xla import _qk_rope_xla, _rope_xla

Implementation = Literal["reference", "xla"]
_CONVENTIONS = ("half", "interleaved")


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


_rope_op = Op("apply_rope", {"reference": _rope_reference, "xla": _rope_xla})


def apply_rope(x: Float[Array, "*batch seq heads head_dim"], positions: Int[Array, "*batch seq"],
               *, theta: float = 10000.0, convention: str = "half",
               implementation: str | None = None) -> Float[Array, "*batch seq heads head_dim"]:
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


_qk_rope_op = Op("qk_rope", {"reference": _qk_rope_reference, "xla": _qk_rope_xla})


def qk_rope(q: Float[Array, "*batch seq q_heads head_dim"],
            k: Float[Array, "*batch seq kv_heads head_dim"], positions: Int[Array, "*batch seq"],
            *, theta: float = 10000.0, convention: str = "half",
            implementation: str | None = None
            ) -> tuple[Float[Array, "*batch seq q_heads head_dim"],
                       Float[Array, "*batch seq kv_heads head_dim"]]:
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


__all__ = ["Implementation", "apply_rope", "qk_rope"]
