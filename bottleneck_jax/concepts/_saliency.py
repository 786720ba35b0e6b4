"""Saliency maps of concept outputs and how well they sit on the concept's region.

Shared by three papers of the family - "Can we constrain CBMs to learn semantically meaningful
input features?" (Furby et al., 2024), "Concept-based XAI: metrics and benchmarks" (Aysel et al.,
2025) and SL-CBM (Zhang et al., 2026) - which all ask whether a concept's evidence lies on the
pixels the concept describes.

Attributions of a score function ``fn: x -> f32[K]`` (one example) for output ``index``:

* :func:`saliency_grad`: ``d fn(x)_k / dx`` (vanilla gradient, Simonyan et al. 2014);
* :func:`saliency_grad_x_input`: ``x * d fn(x)_k / dx``;
* :func:`integrated_gradients`: ``(x - x0) * mean_{i} grad fn(x0 + a_i (x - x0))_k`` at the
  ``steps`` midpoints ``a_i = (i + 1/2) / steps`` (Sundararajan et al. 2017), accumulated with
  ``lax.scan``; completeness ``sum IG = fn(x)_k - fn(x0)_k`` holds exactly for linear ``fn``.

Region scores of an attribution map ``attr[*batch, H, W]`` against a region mask:

* :func:`relevance_mass`: ``sum_R |a| / sum |a|`` (Arras et al., 2022);
* :func:`pointing_hit`: whether the (first) argmax of ``a`` lies in the region (pointing game,
  Zhang et al., 2018);
* :func:`peak_distance`: Euclidean distance from the argmax to a keypoint (as in
  JackFurby/explainable-concept-bottleneck-models ``pointing_game.py``);
* :func:`attribution_iou`: SL-CBM's soft IoU / Dice / precision (``utils/eval_utils.py``):
  clamp at 0, divide by the max, ``I = sum a m``, ``U = sum max(a, m)``, ``IoU = I / U``,
  ``Dice = 2 I / (U + I)``, ``precision = I / sum a``, optionally binarising at 0.5 first;
* :func:`region_metrics`: all of them at once.

An all-zero map has relevance mass, IoU, Dice and precision 0 (not NaN).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from bottleneck_jax.concepts._cbm import _float, _labels01
from bottleneck_jax.core import validation as V


def _check_fn(fn, score_fn):
  if not callable(score_fn):
    raise TypeError(f"{fn}: fn must be callable (x -> concept scores), got "
                    f"{type(score_fn).__name__}")


def _check_index(fn, index):
  if isinstance(index, jax.core.Tracer) or (hasattr(index, "dtype") and np.shape(index) == ()):
    if not jnp.issubdtype(index.dtype, jnp.integer):
      raise TypeError(f"{fn}: index must be an int, got {V.describe(index)}")
    return
  V.check_scalar(fn, "index", index, low=0, integer=True)


def _score(score_fn, index):
  return lambda x: score_fn(x)[index]


def saliency_grad(fn: Callable, x: Float[Array, "*shape"], *, index) -> Float[Array, "*shape"]:
  """The gradient of concept score ``index`` with respect to the input.

  Args:
    fn: one example's score function, ``x -> f32[K]``.
    x: one input (any shape).
    index: which score (an int, may be traced).

  Returns:
    ``d fn(x)[index] / dx``, the shape of ``x``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import saliency_grad
    >>> saliency_grad(lambda x: jnp.stack([2 * x.sum(), x[0]]), jnp.ones(3), index=0)
    Array([2., 2., 2.], dtype=float32)
  """
  _check_fn("saliency_grad", fn)
  _float("saliency_grad", "x", x)
  x = jnp.asarray(x)
  _check_index("saliency_grad", index)
  return jax.grad(_score(fn, index))(x)


def saliency_grad_x_input(fn: Callable, x: Float[Array, "*shape"], *, index
                          ) -> Float[Array, "*shape"]:
  """Gradient times input, ``x * d fn(x)[index] / dx``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import saliency_grad_x_input
    >>> saliency_grad_x_input(lambda x: 3 * x, jnp.array([1.0, 2.0]), index=1)
    Array([0., 6.], dtype=float32)
  """
  _check_fn("saliency_grad_x_input", fn)
  _float("saliency_grad_x_input", "x", x)
  x = jnp.asarray(x)
  _check_index("saliency_grad_x_input", index)
  return x * jax.grad(_score(fn, index))(x)


def integrated_gradients(fn: Callable, x: Float[Array, "*shape"], *, index, steps: int = 50,
                         baseline: Float[Array, "*shape"] | None = None
                         ) -> Float[Array, "*shape"]:
  """Integrated gradients along the straight path from ``baseline`` (zeros) to ``x``.

  .. math::
    \\mathrm{IG}(x) = (x - x_0) \\odot \\frac1S \\sum_{i=0}^{S-1}
      \\nabla f_k\\!\\left(x_0 + \\tfrac{i + 1/2}{S}(x - x_0)\\right)

  Args:
    fn: one example's score function ``x -> f32[K]``.
    x: one input.
    index: the score.
    steps: Riemann (midpoint) steps ``S >= 1``.
    baseline: ``x0`` (default zeros), the shape of ``x``.

  Returns:
    The attribution, the shape of ``x``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import integrated_gradients
    >>> w = jnp.array([1.0, -2.0])
    >>> integrated_gradients(lambda x: jnp.stack([w @ x]), jnp.array([3.0, 1.0]), index=0)
    Array([ 3., -2.], dtype=float32)
  """
  f = "integrated_gradients"
  _check_fn(f, fn)
  _float(f, "x", x)
  x = jnp.asarray(x)
  _check_index(f, index)
  V.check_scalar(f, "steps", steps, low=1, integer=True)
  if baseline is None:
    baseline = jnp.zeros_like(x)
  else:
    _float(f, "baseline", baseline)
    V.check_same_shape(f, "x", x, "baseline", baseline)
    baseline = baseline.astype(x.dtype)
  g = jax.grad(_score(fn, index))
  delta = x - baseline

  def body(acc, i):
    a = (i.astype(x.dtype) + 0.5) / steps
    return acc + g(baseline + a * delta), None

  total, _ = jax.lax.scan(body, jnp.zeros_like(x), jnp.arange(steps))
  return delta * total / steps


def _check_map(fn, attr, region, region_arg="region"):
  _float(fn, "attr", attr, min_rank=2)
  _labels01(fn, region_arg, region)
  if np.shape(region) != np.shape(attr):
    raise ValueError(f"{fn}: {region_arg} must have the shape of attr "
                     f"{list(np.shape(attr))} (one value per pixel), got "
                     f"{list(np.shape(region))}")
  if np.shape(attr)[-1] < 1 or np.shape(attr)[-2] < 1:
    raise ValueError(f"{fn}: attr must have at least one pixel, got {V.describe(attr)}")


def _flat(a):
  return a.reshape(*a.shape[:-2], -1)


def relevance_mass(attr: Float[Array, "*batch h w"], region: Float[Array, "*batch h w"]
                   ) -> Float[Array, "*batch"]:
  """Fraction of the absolute attribution inside the region, ``sum_R |a| / sum |a|``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import relevance_mass
    >>> float(relevance_mass(jnp.array([[3.0, -1.0]]), jnp.array([[1, 0]])))
    0.75
  """
  fn = "relevance_mass"
  _check_map(fn, attr, region)
  a = jnp.abs(_flat(attr)).astype(jnp.float32)
  r = _flat(jnp.asarray(region)).astype(jnp.float32)
  tot = jnp.sum(a, -1)
  return jnp.where(tot > 0, jnp.sum(a * r, -1) / jnp.where(tot > 0, tot, 1.0), 0.0)


def pointing_hit(attr: Float[Array, "*batch h w"], region: Float[Array, "*batch h w"]
                 ) -> Float[Array, "*batch"]:
  """1.0 when the first (row-major) argmax of ``attr`` lies in the region, else 0.0.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import pointing_hit
    >>> float(pointing_hit(jnp.array([[0.2, 0.9]]), jnp.array([[0, 1]])))
    1.0
  """
  fn = "pointing_hit"
  _check_map(fn, attr, region)
  i = jnp.argmax(_flat(attr), -1)
  r = _flat(jnp.asarray(region)).astype(jnp.float32)
  return jnp.take_along_axis(r, i[..., None], -1)[..., 0]


def peak_distance(attr: Float[Array, "*batch h w"], keypoint: Float[Array, "*batch 2"]
                  ) -> Float[Array, "*batch"]:
  """Euclidean distance (pixels) from the first argmax of ``attr`` to ``keypoint`` (row, col).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import peak_distance
    >>> float(peak_distance(jnp.zeros((4, 4)).at[3, 0].set(1.0), jnp.array([0.0, 0.0])))
    3.0
  """
  fn = "peak_distance"
  _float(fn, "attr", attr, min_rank=2)
  _float(fn, "keypoint", keypoint, min_rank=1)
  if tuple(np.shape(keypoint)) != tuple(np.shape(attr)[:-2]) + (2,):
    raise ValueError(f"{fn}: keypoint must have shape {list(np.shape(attr)[:-2]) + [2]} "
                     f"(row, col per map), got {list(np.shape(keypoint))}")
  if np.shape(attr)[-1] < 1 or np.shape(attr)[-2] < 1:
    raise ValueError(f"{fn}: attr must have at least one pixel, got {V.describe(attr)}")
  w = attr.shape[-1]
  i = jnp.argmax(_flat(attr), -1)
  rc = jnp.stack([i // w, i % w], -1).astype(jnp.float32)
  return jnp.linalg.norm(rc - keypoint.astype(jnp.float32), axis=-1)


class RegionScores(NamedTuple):
  """:func:`attribution_iou`'s result, each ``[*batch]``: soft ``iou``, ``dice``,
  ``precision``."""

  iou: Array
  dice: Array
  precision: Array


def attribution_iou(attr: Float[Array, "*batch h w"], mask: Float[Array, "*batch h w"], *,
                    binarize: bool = False) -> RegionScores:
  """SL-CBM's locality scores of an attribution map against a mask.

  ``a = max(attr, 0) / max(max(attr, 0))`` (then ``1[a >= 0.5]`` when ``binarize``),
  ``I = sum a m``, ``U = sum max(a, m)``: ``IoU = I / U``, ``Dice = 2 I / (U + I)``,
  ``precision = I / sum a``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import attribution_iou
    >>> m = jnp.array([[1.0, 0.0], [0.0, 0.0]])
    >>> float(attribution_iou(jnp.ones((2, 2)), m).iou)
    0.25
  """
  fn = "attribution_iou"
  _check_map(fn, attr, mask, "mask")
  a = jnp.maximum(_flat(attr).astype(jnp.float32), 0)
  mx = jnp.max(a, -1, keepdims=True)
  a = jnp.where(mx > 0, a / jnp.where(mx > 0, mx, 1.0), 0.0)
  if binarize:
    a = (a >= 0.5).astype(jnp.float32)
  m = _flat(jnp.asarray(mask)).astype(jnp.float32)
  inter = jnp.sum(a * m, -1)
  union = jnp.sum(jnp.maximum(a, m), -1)
  sa = jnp.sum(a, -1)

  def div(u, v):
    return jnp.where(v > 0, u / jnp.where(v > 0, v, 1.0), 0.0)

  return RegionScores(div(inter, union), div(2 * inter, union + inter), div(inter, sa))


class RegionMetrics(NamedTuple):
  """:func:`region_metrics`'s result, each ``[*batch]``."""

  relevance_mass: Array
  pointing_hit: Array
  iou: Array
  dice: Array
  precision: Array


def region_metrics(attr: Float[Array, "*batch h w"], mask: Float[Array, "*batch h w"]
                   ) -> RegionMetrics:
  """Relevance mass, pointing-game hit and the soft IoU / Dice / precision at once.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import region_metrics
    >>> m = jnp.array([[1.0, 0.0], [0.0, 0.0]])
    >>> [float(v) for v in region_metrics(m, m)]
    [1.0, 1.0, 1.0, 1.0, 1.0]
  """
  fn = "region_metrics"
  _check_map(fn, attr, mask, "mask")
  s = attribution_iou(attr, mask)
  return RegionMetrics(relevance_mass(attr, mask), pointing_hit(attr, mask), *s)
