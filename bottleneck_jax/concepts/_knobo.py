"""KnoBo: knowledge-enhanced bottlenecks for robustness to domain shift.

Paper: Yue Yang, Mona Gandhi, Yufei Wang, Yifan Wu, Michael S. Yao, Chris Callison-Burch, James C.
Gee, Mark Yatskar, "A Textbook Remedy for Domain Shifts: Knowledge Priors for Medical Image
Analysis", 2024 (https://arxiv.org/abs/2405.14839); code YueYANG1996/KnoBo.

Idea. A bottleneck built from medical knowledge resists spurious shortcuts: (1) a *structure
prior*, a list of concepts retrieved from textbooks / PubMed by an LLM; (2) a *bottleneck
predictor* per concept, a logistic regression on frozen image features trained on images whose
clinical reports an LLM judged positive or negative for the concept (data independent of the
task's confounded training set); (3) a *parameter prior*, ``P[m, k] in {+1, -1, 0}`` (an LLM's
yes / no / unknown to "does class m have concept k"), imposed on the linear head over concept
probabilities through ``L_prior = mean |tanh(W) - P|``, added to the cross-entropy.
Evaluated by in-domain (ID) and out-of-domain (OOD) accuracy, their mean and gap.

Implemented here: :func:`fit_concept_probes` (class-balanced L2-regularised logistic
regressions, one per concept, ``vmap``-ed, full-batch Adam, with positive / negative example
masks), :func:`concept_probs`, :func:`prior_matrix`, :func:`knobo_prior_loss`,
:func:`knobo_loss`, :func:`shift_report` and the NNX head :class:`KnoBoHead`.

Departures from the reference code: probes are fitted by gradient descent rather than
scikit-learn's ``LogisticRegression(class_weight="balanced")`` (same objective up to the
regulariser's scaling); ``ConceptProbes.balanced_accuracy`` is measured on the probes' own
training examples (the reference keeps a 10 % validation split).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, Float, Int

from bottleneck_jax.concepts._cbm import _check_nonempty, _float, _labels01, _num, _promote
from bottleneck_jax.concepts._pcbm import BankVariable, LinearHead, _adam_scan, _check_head
from bottleneck_jax.core import validation as V


class ConceptProbes(NamedTuple):
  """Per-concept logistic regressions: ``weight[K, D]``, ``bias[K]`` and the class-balanced
  accuracy of each on its training examples, ``balanced_accuracy[K]``."""

  weight: Array
  bias: Array
  balanced_accuracy: Array


def fit_concept_probes(x: Float[Array, "n d"], pos_mask: Float[Array, "n k"],
                       neg_mask: Float[Array, "n k"], *, l2: float = 1e-3, steps: int = 300,
                       lr: float = 0.05) -> ConceptProbes:
  """KnoBo's bottleneck predictors: a class-balanced logistic regression per concept.

  For concept ``k`` the loss is ``mean_{pos} softplus(-z) / 2 + mean_{neg} softplus(z) / 2 +
  l2 |w|^2 / 2`` with ``z = w . x + b`` (each side weighted equally, as
  ``class_weight="balanced"``), minimised by full-batch Adam, ``vmap``-ed over concepts.

  Args:
    x: features ``[N, D]``.
    pos_mask, neg_mask: ``[N, K]`` 0/1 masks of the positive / negative examples of each
      concept (an example may be neither).
    l2: L2 strength.
    steps: Adam steps.
    lr: learning rate.

  Returns:
    :class:`ConceptProbes`.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import fit_concept_probes
    >>> x = jnp.array([[1.0], [2.0], [-1.0], [-2.0]])
    >>> p = fit_concept_probes(x, jnp.array([[1], [1], [0], [0]]), jnp.array([[0], [0], [1], [1]]))
    >>> p.balanced_accuracy.tolist()
    [1.0]
  """
  fn = "fit_concept_probes"
  _float(fn, "x", x, rank=2)
  _check_nonempty(fn, "x", x, 0, "examples")
  for arg, a in (("pos_mask", pos_mask), ("neg_mask", neg_mask)):
    _labels01(fn, arg, a)
    V.check_rank(fn, arg, a, 2)
    V.check_axis_size(fn, arg, a, 0, x.shape[0], "one row per example of x")
  V.check_same_shape(fn, "pos_mask", pos_mask, "neg_mask", neg_mask)
  _check_nonempty(fn, "pos_mask", pos_mask, 1, "concepts")
  V.check_scalar(fn, "l2", l2, low=0)
  V.check_scalar(fn, "steps", steps, low=1, integer=True)
  V.check_scalar(fn, "lr", lr, low=0, low_inclusive=False)
  xf = x.astype(jnp.float32)
  pos = jnp.asarray(pos_mask).astype(jnp.float32)
  neg = jnp.asarray(neg_mask).astype(jnp.float32)
  l2 = _num(l2)

  def one(pk, nk):
    n_p, n_n = jnp.maximum(jnp.sum(pk), 1.0), jnp.maximum(jnp.sum(nk), 1.0)

    def obj(p):
      z = xf @ p["w"] + p["b"]
      return (jnp.sum(pk * jax.nn.softplus(-z)) / n_p + jnp.sum(nk * jax.nn.softplus(z)) / n_n
              ) / 2 + l2 / 2 * jnp.sum(p["w"] ** 2)

    p = _adam_scan(obj, {"w": jnp.zeros(x.shape[1]), "b": jnp.zeros(())}, steps, lr)
    z = xf @ p["w"] + p["b"]
    acc = (jnp.sum(pk * (z >= 0).astype(jnp.float32)) / n_p
           + jnp.sum(nk * (z < 0).astype(jnp.float32)) / n_n) / 2
    return p["w"], p["b"], acc

  w, b, acc = jax.vmap(one, in_axes=(1, 1))(pos, neg)
  return ConceptProbes(w, b, acc)


def concept_probs(probes: ConceptProbes, x: Float[Array, "*batch d"]) -> Float[Array, "*batch k"]:
  """Concept probabilities ``sigmoid(x W^T + b)`` of the probes.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import ConceptProbes, concept_probs
    >>> concept_probs(ConceptProbes(jnp.ones((1, 2)), jnp.zeros(1), jnp.ones(1)), jnp.zeros(2))
    Array([0.5], dtype=float32)
  """
  fn = "concept_probs"
  if not isinstance(probes, ConceptProbes):
    raise TypeError(f"{fn}: probes must be ConceptProbes, got {type(probes).__name__}")
  _float(fn, "probes.weight", probes.weight, rank=2)
  _check_nonempty(fn, "probes.weight", probes.weight, 0, "concepts")
  _float(fn, "x", x, min_rank=1)
  V.check_axis_size(fn, "x", x, -1, probes.weight.shape[1], "the probes' feature dimension")
  dt = _promote(x.dtype, probes.weight.dtype)
  return jax.nn.sigmoid(x.astype(dt) @ probes.weight.astype(dt).T + probes.bias.astype(dt))


def prior_matrix(answers: Int[Array, "m k"]) -> Float[Array, "m k"]:
  """The parameter prior from LLM answers coded ``1`` (yes), ``0`` (no), ``-1`` (unknown):
  ``P = +1`` for yes, ``-1`` for no, ``0`` for unknown.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import prior_matrix
    >>> prior_matrix(jnp.array([[1, 0, -1]]))
    Array([[ 1., -1.,  0.]], dtype=float32)
  """
  fn = "prior_matrix"
  V.check_integer(fn, "answers", answers)
  V.check_rank(fn, "answers", answers, 2)
  a = np.asarray(answers) if not isinstance(answers, jax.core.Tracer) else None
  if a is not None and a.size and not np.isin(a, (-1, 0, 1)).all():
    raise ValueError(f"{fn}: answers must be 1 (yes), 0 (no) or -1 (unknown), got values "
                     f"{sorted(set(np.unique(a).tolist()) - {-1, 0, 1})}")
  ans = jnp.asarray(answers).astype(jnp.int32)
  return jnp.where(ans == 1, 1.0, jnp.where(ans == 0, -1.0, 0.0)).astype(jnp.float32)


def knobo_prior_loss(w: Float[Array, "m k"], prior: Float[Array, "m k"]) -> Float[Array, ""]:
  """``L_prior = mean_{m,k} |tanh(W_mk) - P_mk|``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import knobo_prior_loss
    >>> float(knobo_prior_loss(jnp.zeros((1, 2)), jnp.array([[1.0, -1.0]])))
    1.0
  """
  fn = "knobo_prior_loss"
  _float(fn, "w", w, rank=2)
  _float(fn, "prior", prior, rank=2)
  V.check_same_shape(fn, "w", w, "prior", prior)
  _check_nonempty(fn, "w", w, 1, "concepts")
  _check_nonempty(fn, "w", w, 0, "classes")
  return jnp.mean(jnp.abs(jnp.tanh(w.astype(jnp.float32)) - prior.astype(jnp.float32)))


def knobo_loss(head: LinearHead, p_c: Float[Array, "b k"], y: Int[Array, "b"],
               prior: Float[Array, "m k"], *, lam: float = 1.0) -> Float[Array, ""]:
  """``CE(p_c W^T + b, y) + lam * L_prior(W, P)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import LinearHead, knobo_loss
    >>> h = LinearHead(jnp.zeros((2, 1)), jnp.zeros(2))
    >>> round(float(knobo_loss(h, jnp.ones((1, 1)), jnp.array([0]), jnp.zeros((2, 1)))), 4)
    0.6931
  """
  fn = "knobo_loss"
  _check_head(fn, head)
  _float(fn, "p_c", p_c, rank=2)
  _check_nonempty(fn, "p_c", p_c, 0, "examples")
  V.check_axis_size(fn, "p_c", p_c, 1, head.weight.shape[1], "one column per concept")
  V.check_integer(fn, "y", y)
  V.check_shape(fn, "y", y, (p_c.shape[0],))
  _float(fn, "prior", prior, rank=2)
  V.check_same_shape(fn, "head.weight", head.weight, "prior", prior)
  V.check_scalar(fn, "lam", lam, low=0)
  logits = p_c.astype(jnp.float32) @ head.weight.astype(jnp.float32).T + head.bias
  ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
  return ce + _num(lam) * knobo_prior_loss(head.weight, prior)


class ShiftReport(NamedTuple):
  """:func:`shift_report`'s result: ``id``, ``ood``, their mean ``avg`` and ``gap = id - ood``."""

  id: float
  ood: float
  avg: float
  gap: float


def shift_report(acc_id: float, acc_ood: float) -> ShiftReport:
  """In-domain / out-of-domain accuracy summary.

  Example:
    >>> from bottleneck_jax.concepts import shift_report
    >>> shift_report(0.9, 0.7).gap
    0.2
  """
  fn = "shift_report"
  V.check_scalar(fn, "acc_id", acc_id, low=0, high=1)
  V.check_scalar(fn, "acc_ood", acc_ood, low=0, high=1)
  a, b = float(acc_id), float(acc_ood)
  return ShiftReport(a, b, (a + b) / 2, round(a - b, 12))


class KnoBoHead(nnx.Module):
  """A linear head on concept probabilities carrying its parameter prior (not trained).

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.concepts import KnoBoHead
    >>> head = KnoBoHead(jnp.array([[1.0, -1.0], [0.0, 1.0]]), rngs=nnx.Rngs(0))
    >>> head(jnp.ones((3, 2))).shape, float(head.prior_loss())
    ((3, 2), 0.75)
  """

  def __init__(self, prior, *, rngs: nnx.Rngs):
    _float("KnoBoHead", "prior", prior, rank=2)
    m, k = prior.shape
    self.prior = BankVariable(jnp.asarray(prior, jnp.float32))
    self.weight = nnx.Param(jnp.zeros((m, k)))
    self.bias = nnx.Param(jnp.zeros((m,)))
    del rngs  # zero-initialised, as a logistic regression

  def prior_loss(self):
    return knobo_prior_loss(self.weight[...], self.prior[...])

  def __call__(self, p_c):
    return p_c @ self.weight[...].T + self.bias[...]
