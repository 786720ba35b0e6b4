"""Can CBMs learn semantically meaningful input features? (Furby et al., 2024).

Paper: Jack Furby, Daniel Cunnington, Dave Braines, Alun Preece, "Can we Constrain Concept
Bottleneck Models to Learn Semantically Meaningful Input Features?", 2024
(https://arxiv.org/abs/2402.00912).

Idea. An analysis paper: a concept predictor can only tie a concept to the pixels that show it if
its training labels let it. With *class-level* labels (every image of a class gets the class's
majority concept vector, as in the usual CUB preprocessing) or concepts that always co-occur, a
predictor can read one concept off another's pixels; with accurate instance-level labels of
concepts that do not always co-occur, saliency maps of each concept fall on the concept's own
region, and inter-concept leakage, measured by the Oracle Impurity Score (OIS, Espinosa Zarlenga
et al., 2023), is low.

Implemented here (saliency and region scores live in ``_saliency.py``):

* :func:`class_level_labels`: ``c_cls[i, k] = 1[freq_{y_i}(k) >= threshold]``;
* :func:`oracle_impurity`: ``pi(C_hat, C)[i, j]`` = AUC of a logistic-regression helper
  predicting the true concept ``c_j`` from the learned representation of concept ``i``
  (a scalar or a vector per concept), ``pi(C, C)`` the same from the true concepts, and
  ``OIS = (2 / K) ||pi(C_hat, C) - pi(C, C)||_F`` (0: no impurity). The ``K x K`` helpers are
  fitted at once (``vmap``), by full-batch Adam on standardised inputs.

Departures: the paper has no public code; OIS follows its definition in the OIS paper, with the
AUC measured on the helpers' training data (the OIS paper holds out a split) - for scalar
representations a logistic helper's AUC is the representation's own AUC (or one minus it), so
this changes nothing there.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from bottleneck_jax.concepts._cbm import _check_nonempty, _float, _labels01, auc_roc, segment_mean
from bottleneck_jax.concepts._pcbm import _adam_scan
from bottleneck_jax.core import validation as V


def class_level_labels(c: Float[Array, "n k"], y: Int[Array, "n"], *, n_classes: int,
                       threshold: float = 0.5) -> Float[Array, "n k"]:
  """Replaces each example's concepts by its class's majority vector (class-level labels).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import class_level_labels
    >>> c = jnp.array([[1, 0], [1, 1], [0, 1]])
    >>> class_level_labels(c, jnp.array([0, 0, 1]), n_classes=2)
    Array([[1., 1.],
           [1., 1.],
           [0., 1.]], dtype=float32)
  """
  fn = "class_level_labels"
  _labels01(fn, "c", c)
  V.check_rank(fn, "c", c, 2)
  _check_nonempty(fn, "c", c, 0, "examples")
  V.check_integer(fn, "y", y)
  V.check_shape(fn, "y", y, (c.shape[0],))
  V.check_scalar(fn, "n_classes", n_classes, low=1, integer=True)
  V.check_scalar(fn, "threshold", threshold, low=0, high=1)
  freq = segment_mean(jnp.asarray(c).astype(jnp.float32), y, num_segments=n_classes)
  return (freq >= threshold).astype(jnp.float32)[y]


class OracleImpurity(NamedTuple):
  """:func:`oracle_impurity`'s result: the score ``ois`` and the AUC matrices ``pi_hat[K, K]``
  (from the learned representations) and ``pi_oracle[K, K]`` (from the true concepts)."""

  ois: Array
  pi_hat: Array
  pi_oracle: Array


def _auc_matrix(feats, targets, steps, lr):
  """``[K, K]`` AUCs of logistic helpers from ``feats[:, i, :]`` to ``targets[:, j]``."""
  mu = jnp.mean(feats, 0, keepdims=True)
  sd = jnp.std(feats, 0, keepdims=True)
  z = (feats - mu) / jnp.where(sd > 0, sd, 1.0)

  def one(fi, tj):
    def obj(p):
      logit = fi @ p["w"] + p["b"]
      return jnp.mean(tj * jax.nn.softplus(-logit) + (1 - tj) * jax.nn.softplus(logit))

    p = _adam_scan(obj, {"w": jnp.zeros(fi.shape[1]), "b": jnp.zeros(())}, steps, lr)
    return auc_roc(fi @ p["w"] + p["b"], tj)

  per_i = jax.vmap(lambda fi: jax.vmap(lambda tj: one(fi, tj), in_axes=1)(targets),
                   in_axes=1)
  return per_i(z)


def oracle_impurity(c_repr: Float[Array, "n k *e"], c_true: Float[Array, "n k"], *,
                    steps: int = 300, lr: float = 0.1) -> OracleImpurity:
  """Oracle Impurity Score of learned concept representations.

  .. math::
    \\mathrm{OIS} = \\frac2K \\lVert \\pi(\\hat C, C) - \\pi(C, C) \\rVert_F

  Args:
    c_repr: learned representations ``[N, K]`` (a scalar per concept) or ``[N, K, E]``.
    c_true: true concepts ``[N, K]`` (0/1; each concept needs both values).
    steps: Adam steps of each helper.
    lr: learning rate.

  Returns:
    :class:`OracleImpurity`.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import oracle_impurity
    >>> c = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 4)
    >>> round(float(oracle_impurity(c.astype(jnp.float32), c, steps=50).ois), 3)
    0.0
  """
  fn = "oracle_impurity"
  _float(fn, "c_repr", c_repr)
  V.check_rank(fn, "c_repr", c_repr, (2, 3))
  _labels01(fn, "c_true", c_true)
  V.check_rank(fn, "c_true", c_true, 2)
  if tuple(c_repr.shape[:2]) != tuple(c_true.shape):
    raise ValueError(f"{fn}: c_repr must have the examples and concepts of c_true "
                     f"{list(c_true.shape)} on its first two axes, got {list(c_repr.shape)}")
  _check_nonempty(fn, "c_true", c_true, 0, "examples")
  _check_nonempty(fn, "c_true", c_true, 1, "concepts")
  if c_repr.ndim == 3:
    _check_nonempty(fn, "c_repr", c_repr, 2, "representation dimensions")
  V.check_scalar(fn, "steps", steps, low=1, integer=True)
  V.check_scalar(fn, "lr", lr, low=0, low_inclusive=False)
  rep = c_repr.astype(jnp.float32)
  if rep.ndim == 2:
    rep = rep[..., None]
  t = jnp.asarray(c_true).astype(jnp.float32)
  pi_hat = _auc_matrix(rep, t, steps, lr)
  pi_oracle = _auc_matrix(t[..., None], t, steps, lr)
  k = t.shape[1]
  ois = 2.0 / k * jnp.linalg.norm(pi_hat - pi_oracle)
  return OracleImpurity(ois, pi_hat, pi_oracle)
