"""Concept-based XAI metrics: global importance, existence and location (Aysel et al., 2025).

Paper: Halil Ibrahim Aysel, Xiaohao Cai, Adam Prugel-Bennett, "Concept-Based Explainable
Artificial Intelligence: Metrics and Benchmarks", 2025 (https://arxiv.org/abs/2501.19271).

Idea. A post-hoc CBM explains a prediction by its most important concepts; the paper asks whether
those concepts are (1) the ones that matter for the class overall, (2) present in the image and
(3) located where the model looks. Three metrics and a visualisation:

* **CGIM** (concept global importance metric), :func:`cgim`: the Pearson correlation, per class,
  between the head's concept weights ``W[m, :]`` and the ground-truth class-level concept
  frequencies ``a[m, :]`` (fraction of class-``m`` images with the concept), averaged over
  classes;
* **CEM** (concept existence metric), :func:`cem_at_k`: for each image, the top-``k`` concepts by
  local importance ``s_k(x) = W[y_hat, k] m_k(x)``; the fraction of them annotated as present in
  the image, averaged;
* **CoAM** (concept activation map), :func:`coam`: CAM for a concept of a PCBM on a CNN with
  global average pooling, ``CoAM_k(h, w) = (v_k . F_{hw} + b_k) / |v_k|``, whose spatial mean is
  the concept margin exactly; optionally resized bilinearly;
* **CLM** (concept location metric), :func:`clm`: for the selected (image, concept) pairs, whether
  the map's first argmax lies within ``radius`` pixels of the concept's keypoint (pointing game),
  averaged.

Departures: the paper's code is not public; the statistic of CGIM (Pearson), CEM's ``k`` and
CLM's hit rule (distance to the part keypoint within a radius) are our reading of the text.
A class row (or frequency row) with zero variance has correlation 0.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from bottleneck_jax.concepts._cbm import _check_nonempty, _float, _labels01, _promote
from bottleneck_jax.core import validation as V


class CGIM(NamedTuple):
  """:func:`cgim`'s result: ``mean`` correlation and ``per_class[M]``."""

  mean: Array
  per_class: Array


def cgim(w: Float[Array, "m k"], class_concept_freq: Float[Array, "m k"]) -> CGIM:
  """Concept global importance metric: per-class Pearson correlation of ``W`` and ``a``.

  .. math::
    r_m = \\frac{\\sum_k (W_{mk} - \\bar W_m)(a_{mk} - \\bar a_m)}
      {\\sqrt{\\sum_k (W_{mk} - \\bar W_m)^2 \\sum_k (a_{mk} - \\bar a_m)^2}},\\qquad
    \\mathrm{CGIM} = \\frac1M \\sum_m r_m

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import cgim
    >>> a = jnp.array([[0.9, 0.1, 0.5]])
    >>> float(cgim(2 * a, a).mean), float(cgim(-a, a).mean)
    (1.0, -1.0)
  """
  fn = "cgim"
  _float(fn, "w", w, rank=2)
  _float(fn, "class_concept_freq", class_concept_freq, rank=2)
  V.check_same_shape(fn, "w", w, "class_concept_freq", class_concept_freq)
  _check_nonempty(fn, "w", w, 0, "classes")
  _check_nonempty(fn, "w", w, 1, "concepts")
  a = w.astype(jnp.float32) - jnp.mean(w.astype(jnp.float32), 1, keepdims=True)
  b = class_concept_freq.astype(jnp.float32)
  b = b - jnp.mean(b, 1, keepdims=True)
  den = jnp.sqrt(jnp.sum(a * a, 1) * jnp.sum(b * b, 1))
  r = jnp.where(den > 0, jnp.sum(a * b, 1) / jnp.where(den > 0, den, 1.0), 0.0)
  return CGIM(jnp.mean(r), r)


def cem_at_k(w: Float[Array, "m k"], margins: Float[Array, "n k"], y_pred: Int[Array, "n"],
             c_true: Float[Array, "n k"], *, k: int = 5) -> Float[Array, ""]:
  """Concept existence metric: how many of an image's top-``k`` concepts are present.

  Local importance ``s_{ik} = W[y_pred_i, k] margins_{ik}``; ``CEM@k = mean_i |top_k(s_i) cap
  present_i| / k`` (ties: the lower concept index first).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import cem_at_k
    >>> w = jnp.ones((1, 3))
    >>> float(cem_at_k(w, jnp.array([[3.0, 1.0, 2.0]]), jnp.array([0]), jnp.array([[1, 0, 1]]),
    ...                k=2))
    1.0
  """
  fn = "cem_at_k"
  _float(fn, "w", w, rank=2)
  _float(fn, "margins", margins, rank=2)
  V.check_integer(fn, "y_pred", y_pred)
  V.check_shape(fn, "y_pred", y_pred, (margins.shape[0],))
  _labels01(fn, "c_true", c_true)
  V.check_same_shape(fn, "margins", margins, "c_true", c_true)
  V.check_axis_size(fn, "margins", margins, 1, w.shape[1], "one column per concept of w")
  _check_nonempty(fn, "margins", margins, 0, "examples")
  V.check_scalar(fn, "k", k, low=1, high=max(1, margins.shape[1]), integer=True)
  dt = _promote(w.dtype, margins.dtype)
  s = w.astype(dt)[y_pred] * margins.astype(dt)
  _, idx = jax.lax.top_k(s, k)
  present = jnp.take_along_axis(jnp.asarray(c_true).astype(jnp.float32), idx, 1)
  return jnp.mean(present)


def coam(vectors: Float[Array, "k d"], intercepts: Float[Array, "k"],
         feat_map: Float[Array, "b h w d"], *, out_hw: tuple[int, int] | None = None
         ) -> Float[Array, "b k hh ww"]:
  """Concept activation maps of a PCBM on a CNN feature map.

  ``CoAM_k(h, w) = (v_k . F[h, w] + b_k) / |v_k|``; the spatial mean equals the margin of the
  globally average-pooled features. ``out_hw``: resize bilinearly to that size.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import coam
    >>> f = jnp.arange(8.0).reshape(1, 2, 2, 2)
    >>> coam(jnp.array([[0.0, 2.0]]), jnp.array([2.0]), f)[0, 0]
    Array([[2., 4.],
           [6., 8.]], dtype=float32)
  """
  fn = "coam"
  _float(fn, "vectors", vectors, rank=2)
  _check_nonempty(fn, "vectors", vectors, 0, "concepts")
  _float(fn, "intercepts", intercepts, rank=1)
  V.check_axis_size(fn, "intercepts", intercepts, 0, vectors.shape[0], "one per concept")
  _float(fn, "feat_map", feat_map, rank=4)
  V.check_axis_size(fn, "feat_map", feat_map, -1, vectors.shape[1],
                    "the concept vectors' dimension")
  dt = _promote(vectors.dtype, intercepts.dtype, feat_map.dtype)
  vectors, intercepts, feat_map = (a.astype(dt) for a in (vectors, intercepts, feat_map))
  maps = (jnp.einsum("bhwd,kd->bkhw", feat_map, vectors) + intercepts[None, :, None, None])
  maps = maps / jnp.linalg.norm(vectors, axis=-1)[None, :, None, None]
  if out_hw is not None:
    if not (isinstance(out_hw, (tuple, list)) and len(out_hw) == 2):
      raise TypeError(f"{fn}: out_hw must be a pair (H, W), got {out_hw!r}")
    for v in out_hw:
      V.check_scalar(fn, "out_hw", v, low=1, integer=True)
    maps = jax.image.resize(maps, maps.shape[:2] + tuple(out_hw), "bilinear")
  return maps


class CLMResult(NamedTuple):
  """:func:`clm`'s result: the hit rate ``score`` over ``n_pairs`` selected pairs (NaN when no
  pair is selected)."""

  score: Array
  n_pairs: Array


def clm(maps: Float[Array, "b k h w"], keypoints: Float[Array, "b k 2"],
        select: Float[Array, "b k"], *, radius: float = 3.0) -> CLMResult:
  """Concept location metric: does each selected concept map point at its keypoint?

  A pair (image ``b``, concept ``k``) with ``select[b, k]`` is a hit when the first (row-major)
  argmax of ``maps[b, k]`` lies within ``radius`` pixels (Euclidean) of ``keypoints[b, k]``
  (row, col). Select the concepts that are important, present and visible.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import clm
    >>> m = jnp.zeros((1, 1, 5, 5)).at[0, 0, 1, 1].set(1.0)
    >>> float(clm(m, jnp.array([[[1.0, 2.0]]]), jnp.ones((1, 1)), radius=1.0).score)
    1.0
  """
  fn = "clm"
  _float(fn, "maps", maps, rank=4)
  _float(fn, "keypoints", keypoints, rank=3)
  if tuple(np.shape(keypoints)) != tuple(np.shape(maps)[:2]) + (2,):
    raise ValueError(f"{fn}: keypoints must have shape {list(np.shape(maps)[:2]) + [2]} (row, "
                     f"col per image and concept), got {list(np.shape(keypoints))}")
  _labels01(fn, "select", select)
  if tuple(np.shape(select)) != tuple(np.shape(maps)[:2]):
    raise ValueError(f"{fn}: select must have shape {list(np.shape(maps)[:2])}, got "
                     f"{list(np.shape(select))}")
  if np.shape(maps)[2] < 1 or np.shape(maps)[3] < 1:
    raise ValueError(f"{fn}: maps must have at least one pixel, got {V.describe(maps)}")
  V.check_scalar(fn, "radius", radius, low=0)
  w = maps.shape[-1]
  i = jnp.argmax(maps.reshape(*maps.shape[:2], -1), -1)
  rc = jnp.stack([i // w, i % w], -1).astype(jnp.float32)
  hit = (jnp.linalg.norm(rc - keypoints.astype(jnp.float32), axis=-1) <= radius).astype(
      jnp.float32)
  sel = jnp.asarray(select).astype(jnp.float32)
  n = jnp.sum(sel)
  score = jnp.where(n > 0, jnp.sum(hit * sel) / jnp.where(n > 0, n, 1.0), jnp.nan)
  return CLMResult(score, n)
