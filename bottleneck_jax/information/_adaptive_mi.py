"""Adaptive estimators of the information plane (Chelombiev, Houghton & O'Donnell, ICLR 2019).

Paper: Ivan Chelombiev, Conor Houghton, Cian O'Donnell, "Adaptive Estimators Show Information
Compression in Deep Neural Networks", ICLR 2019 (https://arxiv.org/abs/1902.09037); code
ivansche/adaptive_estimators.

Idea. The binning estimator of Shwartz-Ziv & Tishby uses fixed edges on [-1, 1]; for unbounded
activations (ReLU, softplus) that saturates or wastes bins, and whether a network "compresses"
then depends on the estimator, not on the network. The paper adapts the estimator to each
layer's activity:

* **EBAB, entropy-based adaptive binning** (``set_up_bins(maxentropy=True,
  per_layer_bins=True)``): pool the activations of all units of the layer (at one epoch), take
  their sorted distinct values ``u_0 < ... < u_{U-1}`` other than the lower bound ``low``, and
  use the edges

    [low] + [u_{floor(k U / B)} for k = 0..B-1] + [u_{U-1}]

  so that each bin holds about the same number of *distinct values* (``B = 30``); ``low`` is 0
  for ReLU-like units and ``-1.000001`` for tanh. The plug-in estimator of
  :func:`~bottleneck_jax.information.binned_mi` is then applied to the binned rows.
* **aKDE, adaptive kernel density**: the KDE estimates of
  :func:`~bottleneck_jax.information.kde_mi` with the layer rescaled by its largest absolute
  activation before a fixed noise variance, i.e. a noise level proportional to the layer's
  range.

Implemented here (nats): :func:`equal_count_bin_edges`, :func:`adaptive_bin_codes`,
:func:`adaptive_binned_mi`, :func:`adaptive_binning_estimator`, :func:`adaptive_kde_mi`.

Departures from the reference code:
- ``floor(k U / B)`` in integer arithmetic (the reference computes ``int(k * (U / B))`` in
  floating point; they differ only where ``k U / B`` is within rounding of an integer).
- Values below ``low`` are binned below the first edge (code 0); the reference's
  ``bins[digitize - 1]`` wraps them onto the last edge. With the intended ``low`` (a lower
  bound of the activation) no value is below it.
- aKDE: the released code jitters the activations with ``N(0, 0.01)``, takes ``abs()`` and uses
  a fixed variance 0.01 without rescaling; here the layer is divided by its max ``|activation|``
  (``rescale="max_abs"``, our reading of the paper's adaptive noise) and nothing is jittered.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.information._entropy_estimators import (
    KDEInformation,
    _check_block_size,
    _check_variance,
    kde_mi,
)
from bottleneck_jax.information._info_plane import (
    InformationPoint,
    _check_labels,
    _check_layer,
    _codes_mi,
)


def _check_bins(fn: str, num_bins, low) -> None:
  V.check_scalar(fn, "num_bins", num_bins, low=1, integer=True, static=True)
  V.check_scalar(fn, "low", low, static=True)
  if not math.isfinite(float(low)):
    raise ValueError(f"{fn}: low must be finite, got {low}")


def equal_count_bin_edges(acts: Float[Array, "n d"], *, num_bins: int = 30,
                          low: float = 0.0) -> Float[Array, "edges"]:
  """EBAB edges: equal numbers of distinct activation values per bin.

  .. math::
    \\text{edges} = [\\,\\text{low}\\,] + [u_{\\lfloor kU/B \\rfloor}]_{k=0}^{B-1} + [u_{U-1}]

  with ``u`` the sorted distinct values of all of ``acts`` other than ``low``, ``U`` their
  number and ``B = num_bins``. Jit-able (``jnp.unique`` with a static size).

  Args:
    acts: a layer's activations, any shape (all units pooled), floating.
    num_bins: ``B``, a static int ``>= 1``.
    low: the lower bound of the activation (0 for ReLU, ``-1.000001`` for tanh), finite.

  Returns:
    ``[num_bins + 2]`` non-decreasing edges (all ``+inf`` after ``low`` when every value equals
    ``low``).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import equal_count_bin_edges
    >>> equal_count_bin_edges(jnp.arange(1.0, 9.0), num_bins=4).tolist()
    [0.0, 1.0, 3.0, 5.0, 7.0, 8.0]
  """
  fn = "equal_count_bin_edges"
  _check_acts(fn, acts)
  _check_bins(fn, num_bins, low)
  return _edges(acts, num_bins, low)


def _check_acts(fn: str, acts) -> None:
  V.check_floating(fn, "acts", acts)
  if jnp.size(acts) < 1:
    raise ValueError(f"{fn}: acts must not be empty, got {V.describe(acts)}")


def _edges(acts, num_bins, low):
  v = jnp.asarray(acts).reshape(-1).astype(jnp.float32)
  lo = jnp.float32(low)
  v = jnp.where(v == lo, jnp.inf, v)
  u = jnp.unique(v, size=v.shape[0], fill_value=jnp.inf)
  count = jnp.sum(jnp.isfinite(u))
  k = jnp.arange(int(num_bins))
  idx = (k * count) // int(num_bins)
  inner = u[jnp.clip(idx, 0, v.shape[0] - 1)]
  top = u[jnp.clip(count - 1, 0, v.shape[0] - 1)]
  return jnp.concatenate([lo[None], inner, top[None]])


def adaptive_bin_codes(acts: Float[Array, "n d"], *, num_bins: int = 30,
                       low: float = 0.0) -> Int[Array, "n d"]:
  """Bin indices of ``acts`` on its own EBAB edges (:func:`equal_count_bin_edges`).

  ``code = #{edges <= a}`` (``numpy.digitize``). Invariant to any strictly increasing map of
  the whole layer that fixes ``low``.

  Args:
    acts: a layer's activations ``[N, d]`` (or any shape), floating.
    num_bins: number of bins ``B``.
    low: the activation's lower bound.

  Returns:
    int32 codes of the shape of ``acts``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import adaptive_bin_codes
    >>> adaptive_bin_codes(jnp.array([0.0, 1.0, 2.0, 30.0]), num_bins=2).tolist()
    [1, 2, 3, 4]
  """
  fn = "adaptive_bin_codes"
  _check_acts(fn, acts)
  _check_bins(fn, num_bins, low)
  return _adaptive_codes(acts, num_bins, low)


def _adaptive_codes(acts, num_bins, low):
  edges = _edges(acts, num_bins, low)
  a = jnp.asarray(acts, jnp.float32)
  return jnp.searchsorted(edges, a, side="right").astype(jnp.int32)


def adaptive_binned_mi(t: Float[Array, "n d"], labels: Int[Array, "n"], *, num_bins: int = 30,
                       low: float = 0.0) -> InformationPoint:
  """``I(X;T)`` and ``I(T;Y)`` of a layer with entropy-based adaptive binning, in nats.

  The plug-in estimator of :func:`~bottleneck_jax.information.binned_mi` on
  :func:`adaptive_bin_codes` (``I(X;T) = H(T)``: the inputs are taken to be distinct).

  Args:
    t: the layer's activations on the whole data set, ``[N]`` or ``[N, d]``, floating.
    labels: integer labels ``[N]``.
    num_bins: number of bins ``B`` (30 in the paper).
    low: the activation's lower bound (0 for ReLU, ``-1.000001`` for tanh).

  Returns:
    :class:`~bottleneck_jax.information.InformationPoint` ``(i_xt, i_ty)`` in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import adaptive_binned_mi, to_bits
    >>> t = jnp.arange(1.0, 9.0)[:, None]; y = (jnp.arange(8) >= 4).astype(jnp.int32)
    >>> [round(float(to_bits(v)), 4) for v in adaptive_binned_mi(t, y, num_bins=4)]
    [2.25, 1.0]
  """
  fn = "adaptive_binned_mi"
  _check_layer(fn, "t", t)
  _check_labels(fn, labels, t.shape[0])
  _check_bins(fn, num_bins, low)
  codes = _adaptive_codes(t, num_bins, low)
  # Codes lie in [0, num_bins + 2] (num_bins + 2 edges): the packed single-key sorts apply.
  return _codes_mi(fn, codes.reshape(t.shape[0], -1), labels, None,
                   code_bits=int(num_bins + 2).bit_length())


def adaptive_binning_estimator(*, num_bins: int = 30, low: float = 0.0
                               ) -> Callable[[Float[Array, "n d"], Int[Array, "n"]], InformationPoint]:
  """EBAB as a callable ``(t, labels) -> InformationPoint`` (nats) for
  :func:`~bottleneck_jax.information.information_plane`.

  Example:
    >>> from bottleneck_jax.information import adaptive_binning_estimator
    >>> callable(adaptive_binning_estimator(num_bins=30, low=0.0))
    True
  """
  _check_bins("adaptive_binning_estimator", num_bins, low)
  return lambda t, labels: adaptive_binned_mi(t, labels, num_bins=num_bins, low=low)


def adaptive_kde_mi(h: Float[Array, "n d"], labels: Int[Array, "n"], *, var: float,
                    rescale: str = "max_abs", block_size: int | None = None) -> KDEInformation:
  """aKDE: :func:`~bottleneck_jax.information.kde_mi` on the layer scaled to its range, in nats.

  .. math::
    \\tilde h = h / \\max_{i,k} |h_{ik}|,\\qquad
    (I(X;T), I(T;Y)) = \\text{kde\\_mi}(\\tilde h, y; \\text{var})

  so the noise standard deviation is ``sqrt(var)`` times the layer's largest activation
  (``rescale="none"``: plain ``kde_mi``). A constant-zero layer is left as is (no division by 0).

  Args:
    h: the layer's activations ``[N]`` or ``[N, d]``, floating.
    labels: integer labels ``[N]``.
    var: the noise variance relative to the squared range, finite and ``> 0``.
    rescale: ``"max_abs"`` or ``"none"``.
    block_size: rows per block of the pairwise sums.

  Returns:
    :class:`~bottleneck_jax.information.KDEInformation` ``(i_xt, i_ty)`` in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import adaptive_kde_mi
    >>> h = jnp.array([[0.0], [1.0], [2.0], [3.0]]); y = jnp.array([0, 0, 1, 1])
    >>> a, b = adaptive_kde_mi(h, y, var=0.01), adaptive_kde_mi(100 * h, y, var=0.01)
    >>> bool(jnp.allclose(a.i_xt, b.i_xt, atol=1e-5))   # scale-free
    True
  """
  fn = "adaptive_kde_mi"
  V.check_choice(fn, "rescale", rescale, ("max_abs", "none"))
  _check_layer(fn, "h", h)
  _check_labels(fn, labels, h.shape[0])
  _check_variance(fn, var)
  _check_block_size(fn, block_size)
  if rescale == "max_abs":
    m = jnp.max(jnp.abs(h))
    h = h / jnp.where(m > 0, m, jnp.ones_like(m))
  return kde_mi(h, labels, var=var, block_size=block_size)


__all__ = [
    "adaptive_bin_codes",
    "adaptive_binned_mi",
    "adaptive_binning_estimator",
    "adaptive_kde_mi",
    "equal_count_bin_edges",
]
