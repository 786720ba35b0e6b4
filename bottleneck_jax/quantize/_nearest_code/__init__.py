"""Nearest-code search of vector quantisation: for each row of ``z``, the closest codebook row.

Files: ``reference.py`` (materialises the ``[N, K]`` distance matrix, the oracle), ``xla.py``
(a ``lax.scan`` over codebook blocks with a running ``(min, argmin)``, never ``N x K``),
``common.py`` (normalisation and the per-row distance).

Semantics, identical in every implementation:

* ``metric="l2"``: squared Euclidean distance, computed as
  ``||z_n||^2 - 2 z_n . e_k + ||e_k||^2``;
* ``metric="cosine"``: ``1 - z_n . e_k / (max(||z_n||, 1e-6) max(||e_k||, 1e-6))``;
* ``index_n = argmin_k dist_nk``, ties resolved to the first (smallest) index as ``jnp.argmin``;
  a NaN distance counts as the minimum (as ``jnp.argmin``);
* bf16/f16 inputs are searched in f32; the distances are returned in the input dtype;
* the returned distance is differentiable in ``z`` and ``codebook`` (the gradient of the chosen
  pair's distance; the index is piecewise constant and has none).

Implementations (``implementation=``, see :mod:`bottleneck_jax.kernels`):

* ``"reference"``: the full ``[N, K]`` matrix, ``jnp.argmin``;
* ``"xla"``: blocks of ``block_size`` codes (default 256), the search on stopped gradients and the
  distance recomputed from the gathered code: temporaries ``O(N * block + K * d)``. Default
  everywhere.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.kernels import Op
from bottleneck_jax.quantize._nearest_code import pallas as _pallas
from bottleneck_jax.quantize._nearest_code import reference as _reference
from bottleneck_jax.quantize._nearest_code import xla as _xla

METRICS = ("l2", "cosine")


class NearestCode(NamedTuple):
  """What :func:`nearest_code` returns.

  Attributes:
    indices: int32 ``[*batch]``, the index of the closest code.
    distances: ``[*batch]`` in ``z``'s dtype, the distance to it (squared L2, or ``1 - cos``).
  """

  indices: Int[Array, "*batch"]
  distances: Float[Array, "*batch"]


NEAREST_CODE = Op("nearest_code", {"reference": _reference.nearest_code,
                                   "xla": _xla.nearest_code, "pallas": _pallas.nearest_code},
                  validated_on={"pallas": ()})


def check_codebook(fn: str, z, codebook) -> None:
  """Validation shared with :func:`~bottleneck_jax.quantize.vector_quantize`."""
  V.check_rank(fn, "z", z, min_rank=1)
  V.check_floating(fn, "z", z)
  V.check_rank(fn, "codebook", codebook, 2)
  V.check_floating(fn, "codebook", codebook)
  if jnp.dtype(codebook.dtype) != jnp.dtype(z.dtype):
    raise TypeError(f"{fn}: codebook must have the dtype of z ({jnp.dtype(z.dtype).name}), got "
                    f"{V.describe(codebook)}")
  if codebook.shape[0] < 1:
    raise ValueError(f"{fn}: codebook must have at least one code (K >= 1), got "
                     f"{V.describe(codebook)}")
  V.check_axis_size(fn, "codebook", codebook, -1, z.shape[-1], "z.shape[-1]")


def nearest_code(z: Float[Array, "*batch d"], codebook: Float[Array, "k d"], *,
                 metric: str = "l2", block_size: int | None = None,
                 implementation: Any = None) -> NearestCode:
  """Index of and distance to the closest codebook row, for every vector of ``z``.

  .. math::
    k^*_n = \\operatorname{argmin}_k d(z_n, e_k),\\qquad
    d_{l2}(z, e) = \\|z\\|^2 - 2 z\\cdot e + \\|e\\|^2,\\quad
    d_{cos}(z, e) = 1 - \\hat z \\cdot \\hat e

  Ties go to the smallest index (as ``jnp.argmin``). The ``"xla"`` implementation never builds
  the ``N x K`` distance matrix.

  Args:
    z: vectors, shape ``[*batch, d]``, floating.
    codebook: codes, shape ``[K, d]``, ``K >= 1``, dtype of ``z``.
    metric: ``"l2"`` (squared Euclidean) or ``"cosine"``.
    block_size: codes per block of the ``"xla"`` implementation (default 256).
    implementation: ``None`` (platform default, ``"xla"``), ``"reference"``, ``"xla"``,
      ``"pallas"`` or a sequence of them.

  Returns:
    :class:`NearestCode` ``(indices int32 [*batch], distances [*batch])``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import nearest_code
    >>> cb = jnp.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    >>> res = nearest_code(jnp.array([[0.9, 1.2], [0.1, -0.1]]), cb)
    >>> res.indices.tolist(), [round(d, 4) for d in res.distances.tolist()]
    ([1, 0], [0.05, 0.02])

  References:
    van den Oord, Vinyals, Kavukcuoglu, "Neural Discrete Representation Learning", NeurIPS 2017,
    https://arxiv.org/abs/1711.00937.
  """
  fn = "nearest_code"
  check_codebook(fn, z, codebook)
  V.check_choice(fn, "metric", metric, METRICS)
  if block_size is not None:
    V.check_scalar(fn, "block_size", block_size, low=1, integer=True)
  z, codebook = jnp.asarray(z), jnp.asarray(codebook)
  batch = z.shape[:-1]
  flat = z.reshape(math.prod(batch), z.shape[-1])
  idx, dist = NEAREST_CODE(flat, codebook, metric=metric, block_size=block_size,
                           implementation=implementation)
  return NearestCode(idx.reshape(batch), dist.reshape(batch))


__all__ = ["NEAREST_CODE", "NearestCode", "nearest_code"]
