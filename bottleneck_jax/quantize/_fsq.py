"""Finite Scalar Quantization (FSQ).

Paper: Fabian Mentzer, David Minnen, Eirikur Agustsson, Michael Tschannen, "Finite Scalar
Quantization: VQ-VAE Made Simple", ICLR 2024 (https://arxiv.org/abs/2309.15505).

Idea. Instead of a learned codebook, project the latent to a few channels ``d`` and quantise each
channel ``j`` to one of ``L_j`` evenly spaced values. The implicit codebook is the grid of
``prod_j L_j`` points: no codebook loss, no commitment loss, no codebook collapse. Each channel is
first squashed into its range with the paper's bounding function,

  half_l_j = (L_j - 1)(1 + eps) / 2,      eps = 1e-3
  offset_j = 0.5 if L_j is even else 0
  shift_j  = arctanh(offset_j / half_l_j)
  bound(z)_j = tanh(z_j + shift_j) * half_l_j - offset_j

then rounded with the straight-through estimator (forward ``round``, backward identity) and
normalised by ``floor(L_j / 2)``: code values per channel are
``{-floor(L/2), ..., L - 1 - floor(L/2)} / floor(L/2)``, inside ``[-1, 1]`` (even ``L`` is
asymmetric: ``L = 8`` gives ``{-1, -0.75, ..., 0.75}``).

Indices are mixed-radix numbers with the first channel the least-significant digit: with basis
``b_j = prod_{i<j} L_i``, ``index = sum_j (code_j * floor(L_j/2) + floor(L_j/2)) * b_j``.

Implemented here: :func:`fsq` (the bottleneck, returning
:class:`~bottleneck_jax.core.BottleneckOutput`), :func:`fsq_codes_to_indices`,
:func:`fsq_indices_to_codes` (exact inverses of each other over the whole grid) and the thin
``flax.nnx`` module :class:`FSQ` (no parameters).

Departures from the paper / reference code:
- The bound uses ``(1 + eps)`` and ``arctanh`` as ``lucidrains/vector-quantize-pytorch`` (whose
  codes, indices and gradients the tests match on its own outputs); the paper's notebook writes
  ``(1 - eps)`` and ``tan`` (the ``tan`` confirmed a typo by the authors). Both give the same grid;
  inputs within O(eps) of a rounding boundary can land on a neighbouring level.
- ``L = 2`` is refused (vector-quantize-pytorch too, outside its symmetric variant): the shift
  ``arctanh(0.5 / half_l)`` is about 3.8 and the channel is nearly constant; binary channels are
  :func:`~bottleneck_jax.quantize.lfq`.
- Inputs of less than 32-bit precision are bounded and rounded in float32 and cast back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.types import BottleneckOutput

_EPS = 1e-3


def _check_levels(fn: str, levels) -> tuple[int, ...]:
  if not isinstance(levels, Sequence) or isinstance(levels, (str, bytes)) or not levels:
    raise TypeError(f"{fn}: levels must be a non-empty sequence of ints >= 3, got "
                    f"{type(levels).__name__} {levels!r}")
  for lv in levels:
    if not (isinstance(lv, (int, np.integer)) and not isinstance(lv, bool)):
      raise TypeError(f"{fn}: levels must be a non-empty sequence of ints >= 3, got "
                      f"{list(levels)!r}")
    if lv < 3:
      raise ValueError(f"{fn}: levels must be a non-empty sequence of ints >= 3 (with L = 2 the "
                       f"shifted tanh bound saturates at one level; use lfq for binary "
                       f"channels), got {list(levels)!r}")
  out = tuple(int(lv) for lv in levels)
  if math.prod(out) > 2**31 - 1:
    raise ValueError(f"{fn}: levels must have prod(levels) < 2**31 (int32 indices), got "
                     f"prod({list(out)}) = {math.prod(out)}")
  return out


def _compute_dtype(dtype):
  dtype = jnp.dtype(dtype)
  return dtype if dtype.itemsize >= 4 else jnp.dtype(jnp.float32)


def _basis(levels: tuple[int, ...]) -> np.ndarray:
  return np.concatenate([[1], np.cumprod(levels[:-1])]).astype(np.int32)


def _check_z(fn: str, z, levels) -> None:
  V.check_rank(fn, "z", z, min_rank=1)
  V.check_floating(fn, "z", z)
  V.check_axis_size(fn, "z", z, -1, len(levels), "len(levels)")


def _bits(fn: str, z, levels, dtype):
  """``positions * log2(prod(levels))`` per example (first axis = examples)."""
  per_position = math.log2(math.prod(levels))
  if z.ndim == 1:
    return jnp.asarray(per_position, dtype)
  positions = math.prod(z.shape[1:-1])
  return jnp.full(z.shape[:1], positions * per_position, dtype)


def fsq(z: Float[Array, "*batch d"], *, levels: Sequence[int]) -> BottleneckOutput:
  """Finite Scalar Quantization of the last axis of ``z`` with per-channel ``levels``.

  .. math::
    \\hat z_j = \\frac{\\operatorname{round}_{STE}\\left(\\tanh(z_j + s_j)\\, h_j - o_j\\right)}
    {\\lfloor L_j / 2 \\rfloor},\\quad h_j = \\frac{(L_j - 1)(1 + \\epsilon)}{2},\\;
    o_j = \\tfrac12[L_j \\text{ even}],\\; s_j = \\operatorname{arctanh}(o_j / h_j)

  The straight-through estimator passes the gradient through ``round`` only: ``dz_hat/dz`` is
  the derivative of the bound, ``sech^2(z + s) h / floor(L/2)``.

  Args:
    z: latents, shape ``[*batch, d]`` with ``d == len(levels)``, floating.
    levels: number of levels per channel, ints >= 3 (e.g. ``[8, 5, 5, 5]``, 1000 codes).

  Returns:
    :class:`~bottleneck_jax.core.BottleneckOutput` with

    - ``z``: the quantised latents (STE), shape and dtype of ``z``, values in ``[-1, 1]``;
    - ``loss``: 0 (FSQ needs no auxiliary loss), a scalar of ``z``'s dtype;
    - ``bits``: the code length per example, ``positions * log2(prod(levels))``, where the first
      axis of ``z`` counts the examples and the axes between the first and the last are the
      positions: shape ``[batch]`` for ``z`` of rank >= 2, a scalar for ``z`` of shape ``[d]``;
    - ``aux``: ``{"indices": int32 [*batch] mixed-radix code indices,
      "codes": the quantised values without the STE (no gradient)}``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import fsq
    >>> out = fsq(jnp.array([[0.25, 0.6, -7.0, 1.0]]), levels=[8, 5, 5, 5])
    >>> out.z.tolist(), out.aux["indices"].tolist(), out.bits.tolist()
    ([[0.25, 0.5, -1.0, 1.0]], [829], [9.965784072875977])

  References:
    Mentzer et al., "Finite Scalar Quantization: VQ-VAE Made Simple", ICLR 2024,
    https://arxiv.org/abs/2309.15505.
  """
  fn = "fsq"
  levels = _check_levels(fn, levels)
  _check_z(fn, z, levels)
  z = jnp.asarray(z)
  cdt = _compute_dtype(z.dtype)
  lv = np.asarray(levels, np.float64)
  half_l = (lv - 1) * (1 + _EPS) / 2
  offset = np.where(np.asarray(levels) % 2 == 0, 0.5, 0.0)
  shift = np.arctanh(offset / half_l)
  half_width = np.asarray([lvl // 2 for lvl in levels], np.float64)
  zc = z.astype(cdt)
  bounded = jnp.tanh(zc + shift.astype(cdt)) * half_l.astype(cdt) - offset.astype(cdt)
  rounded = jnp.round(bounded)
  q = bounded + jax.lax.stop_gradient(rounded - bounded)
  z_hat = (q / half_width.astype(cdt)).astype(z.dtype)
  codes = jax.lax.stop_gradient(z_hat)
  level_idx = (rounded + half_width.astype(cdt)).astype(jnp.int32)
  indices = jnp.sum(level_idx * jnp.asarray(_basis(levels)), axis=-1, dtype=jnp.int32)
  return BottleneckOutput(z=z_hat, loss=jnp.zeros((), z.dtype), bits=_bits(fn, z, levels, z.dtype),
                          aux={"indices": indices, "codes": codes})


def fsq_codes_to_indices(codes: Float[Array, "*batch d"], *,
                         levels: Sequence[int]) -> Int[Array, "*batch"]:
  """Mixed-radix indices of FSQ codes (first channel least significant).

  .. math::
    \\text{index} = \\sum_j \\left(c_j \\lfloor L_j/2 \\rfloor + \\lfloor L_j/2 \\rfloor\\right)
    \\prod_{i<j} L_i

  Args:
    codes: FSQ code values (``fsq(...).z`` or ``aux["codes"]``), shape ``[*batch, d]``,
      ``d == len(levels)``, floating. Values are snapped to the nearest grid level.
    levels: levels per channel, ints >= 3.

  Returns:
    int32 indices in ``[0, prod(levels))``, shape ``[*batch]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import fsq_codes_to_indices
    >>> fsq_codes_to_indices(jnp.array([-0.25, 0.0, 0.5, -0.5]), levels=[8, 5, 5, 5]).tolist()
    339

  References:
    Mentzer et al., "Finite Scalar Quantization: VQ-VAE Made Simple", ICLR 2024,
    https://arxiv.org/abs/2309.15505.
  """
  fn = "fsq_codes_to_indices"
  levels = _check_levels(fn, levels)
  V.check_rank(fn, "codes", codes, min_rank=1)
  V.check_floating(fn, "codes", codes)
  V.check_axis_size(fn, "codes", codes, -1, len(levels), "len(levels)")
  codes = jnp.asarray(codes)
  cdt = _compute_dtype(codes.dtype)
  hw = np.asarray([lvl // 2 for lvl in levels], np.float64).astype(cdt)
  level_idx = jnp.round(codes.astype(cdt) * hw + hw).astype(jnp.int32)
  level_idx = jnp.clip(level_idx, 0, jnp.asarray(np.asarray(levels, np.int32) - 1))
  return jnp.sum(level_idx * jnp.asarray(_basis(levels)), axis=-1, dtype=jnp.int32)


def fsq_indices_to_codes(indices: Int[Array, "*batch"], *, levels: Sequence[int],
                         dtype=jnp.float32) -> Float[Array, "*batch d"]:
  """FSQ code values of mixed-radix indices (the inverse of :func:`fsq_codes_to_indices`).

  .. math::
    \\ell_j = \\lfloor \\text{index} / \\textstyle\\prod_{i<j} L_i \\rfloor \\bmod L_j,\\qquad
    c_j = (\\ell_j - \\lfloor L_j/2 \\rfloor) / \\lfloor L_j/2 \\rfloor

  Args:
    indices: integer indices in ``[0, prod(levels))``, shape ``[*batch]`` (values outside wrap
      around the grid, modulo ``prod(levels)``).
    levels: levels per channel, ints >= 3.
    dtype: floating dtype of the codes.

  Returns:
    Codes, shape ``[*batch, len(levels)]``, values in ``[-1, 1]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import fsq_indices_to_codes
    >>> fsq_indices_to_codes(jnp.array(829), levels=[8, 5, 5, 5]).tolist()
    [0.25, 0.5, -1.0, 1.0]

  References:
    Mentzer et al., "Finite Scalar Quantization: VQ-VAE Made Simple", ICLR 2024,
    https://arxiv.org/abs/2309.15505.
  """
  fn = "fsq_indices_to_codes"
  levels = _check_levels(fn, levels)
  V.check_array(fn, "indices", indices)
  V.check_integer(fn, "indices", indices)
  if not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
    raise TypeError(f"{fn}: dtype must be a floating dtype, got {jnp.dtype(dtype).name}")
  idx = jnp.asarray(indices).astype(jnp.int32)[..., None]
  lv = jnp.asarray(np.asarray(levels, np.int32))
  level_idx = jnp.mod(jnp.floor_divide(idx, jnp.asarray(_basis(levels))), lv)
  hw = jnp.asarray(np.asarray([lvl // 2 for lvl in levels], np.int32))
  return ((level_idx - hw).astype(jnp.float32) / hw.astype(jnp.float32)).astype(dtype)


class FSQ(nnx.Module):
  """Finite Scalar Quantization as an ``nnx`` layer (no parameters): calls :func:`fsq`.

  Args:
    levels: levels per channel, ints >= 3.
    rngs: accepted for a uniform constructor across bottlenecks; unused (FSQ has no parameters).

  ``__call__(z)`` returns :func:`fsq`'s :class:`~bottleneck_jax.core.BottleneckOutput`;
  ``codebook_size`` is ``prod(levels)``; :meth:`indices_to_codes` / :meth:`codes_to_indices`
  convert with these levels.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.quantize import FSQ
    >>> layer = FSQ([8, 5, 5, 5], rngs=nnx.Rngs(0))
    >>> layer.codebook_size, layer(jnp.zeros((2, 3, 4))).aux["indices"].shape
    (1000, (2, 3))
  """

  def __init__(self, levels: Sequence[int], *, rngs: nnx.Rngs | None = None):
    del rngs
    self.levels = _check_levels("FSQ", levels)
    self.codebook_size = math.prod(self.levels)

  def __call__(self, z: Float[Array, "*batch d"]) -> BottleneckOutput:
    return fsq(z, levels=self.levels)

  def indices_to_codes(self, indices: Int[Array, "*batch"],
                       dtype=jnp.float32) -> Float[Array, "*batch d"]:
    """Codes of ``indices`` (:func:`fsq_indices_to_codes`)."""
    return fsq_indices_to_codes(indices, levels=self.levels, dtype=dtype)

  def codes_to_indices(self, codes: Float[Array, "*batch d"]) -> Int[Array, "*batch"]:
    """Indices of ``codes`` (:func:`fsq_codes_to_indices`)."""
    return fsq_codes_to_indices(codes, levels=self.levels)


__all__ = ["FSQ", "fsq", "fsq_codes_to_indices", "fsq_indices_to_codes"]
