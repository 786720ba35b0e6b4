"""PCBM: Post-hoc Concept Bottleneck Models.

Paper: Mert Yuksekgonul, Maggie Wang, James Zou, "Post-hoc Concept Bottleneck Models",
ICLR 2023 (https://arxiv.org/abs/2205.15480); code mertyg/post-hoc-cbm.

Idea. Turn any frozen backbone ``f: x -> e in R^D`` into a concept bottleneck model without
concept labels for the task data: a *concept bank* of ``K`` vectors ``v_k`` (with intercepts
``b_k``) - concept activation vectors (CAVs) learned from a few positive / negative examples per
concept, or the text embeddings of concept names in a multimodal space - projects an embedding
onto signed distances to the concept hyperplanes,

.. math::
  m_k(e) = \\frac{v_k \\cdot e + b_k}{\\lVert v_k \\rVert},

and an interpretable, sparse linear head ``g(m) = W m + b`` is trained with the multinomial
logistic loss plus an elastic net ``lam (alpha |W|_1 + (1 - alpha)/2 |W|_2^2)``
(``alpha = 0.99``). **PCBM-h** adds a residual linear head on the embedding,
``logits = g(m(e)) + r(e)``, trained with ``g`` frozen, to recover the backbone's accuracy.
**Global model editing** deletes a concept for all classes (``W[:, k] = 0``), e.g. a spurious
one, which helps under a distribution shift without any target-domain data.

Implemented here: :class:`ConceptBank`, :func:`learn_cavs` (one linear classifier per concept
on embeddings, ``vmap``-ed over concepts, hinge (linear SVM) or logistic loss, with a per-concept
validity mask for examples without a label), :func:`text_concept_bank`, :func:`concept_margins`,
:func:`fit_elastic_net_head` (proximal gradient descent: a gradient step on the smooth part, then
:func:`~bottleneck_jax.concepts.soft_threshold` for the L1 part, in ``lax.scan``),
:func:`pcbm_logits`, :func:`pcbm_h_logits`, :func:`prune_concepts` (optionally
rescaling each class row back to its L1 norm), :func:`top_concepts`; NNX modules
:class:`PosthocCBM` (bank as a non-trainable variable) and :class:`PosthocHybridCBM`.

Departures from the reference code:

* CAVs are fitted by full-batch gradient descent on the primal SVM objective
  ``mean hinge + |w|^2 / (2 C N)`` (scikit-learn's ``SVC(kernel="linear", C)``, up to the
  optimiser) rather than by libsvm.
* The head is fitted by proximal gradient descent instead of scikit-learn's
  ``SGDClassifier(penalty="elasticnet")``; same objective (the penalty is not divided by
  ``K M`` unless ``scale_by_size=True``, the paper's form).
* "Prune + normalise" (rescaling each class row to keep its L1 norm) is our reading of the
  paper's normalised pruning; the code has only plain pruning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, Float, Int

from bottleneck_jax.concepts._cbm import (
    _check_nonempty,
    _float,
    _labels01,
    _num,
    _promote,
    soft_threshold,
)
from bottleneck_jax.core import validation as V


class ConceptBank(NamedTuple):
  """A concept bank: ``vectors[K, D]``, ``intercepts[K]`` and the concept ``names``."""

  vectors: Array
  intercepts: Array
  names: tuple[str, ...]


def _check_bank(fn: str, bank) -> None:
  if not isinstance(bank, ConceptBank):
    raise TypeError(f"{fn}: bank must be a ConceptBank, got {type(bank).__name__}")
  _float(fn, "bank.vectors", bank.vectors, rank=2)
  _float(fn, "bank.intercepts", bank.intercepts, rank=1)
  if bank.vectors.shape[0] < 1:
    raise ValueError(f"{fn}: bank must hold at least one concept, got an empty bank "
                     f"{V.describe(bank.vectors)}")
  V.check_axis_size(fn, "bank.intercepts", bank.intercepts, 0, bank.vectors.shape[0],
                    "one per concept vector")


def _names(fn, names, k):
  if names is None:
    return tuple(f"concept_{i}" for i in range(k))
  if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
    raise TypeError(f"{fn}: names must be a sequence of strings, got {names!r}")
  names = tuple(names)
  if len(names) != k:
    raise ValueError(f"{fn}: names must have one entry per concept ({k}), got {len(names)}")
  return names


def text_concept_bank(text_emb: Float[Array, "k d"], names: Sequence[str] | None = None
                      ) -> ConceptBank:
  """A multimodal concept bank: L2-normalised text embeddings, zero intercepts.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import text_concept_bank
    >>> text_concept_bank(jnp.array([[3.0, 4.0]]), ["stripes"]).vectors
    Array([[0.6, 0.8]], dtype=float32)
  """
  fn = "text_concept_bank"
  _float(fn, "text_emb", text_emb, rank=2)
  _check_nonempty(fn, "text_emb", text_emb, 0, "concepts")
  _check_nonempty(fn, "text_emb", text_emb, 1, "embedding dimensions")
  v = text_emb / jnp.maximum(jnp.linalg.norm(text_emb, axis=-1, keepdims=True), 1e-12)
  return ConceptBank(v, jnp.zeros(text_emb.shape[0], text_emb.dtype),
                     _names(fn, names, text_emb.shape[0]))


def _check_e(fn, e, bank):
  _float(fn, "e", e, min_rank=1)
  V.check_axis_size(fn, "e", e, -1, bank.vectors.shape[1], "the bank's embedding dimension")


def concept_margins(bank: ConceptBank, e: Float[Array, "*batch d"]) -> Float[Array, "*batch k"]:
  """Signed distances of embeddings to the concept hyperplanes, ``(v_k . e + b_k) / |v_k|``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import ConceptBank, concept_margins
    >>> bank = ConceptBank(jnp.array([[0.0, 2.0]]), jnp.array([2.0]), ("c",))
    >>> concept_margins(bank, jnp.array([[1.0, 1.0]]))
    Array([[2.]], dtype=float32)
  """
  fn = "concept_margins"
  _check_bank(fn, bank)
  _check_e(fn, e, bank)
  dt = _promote(e.dtype, bank.vectors.dtype)
  v, b, e = bank.vectors.astype(dt), bank.intercepts.astype(dt), e.astype(dt)
  return (e @ v.T + b) / jnp.linalg.norm(v, axis=-1)


def _adam_scan(loss, params, steps, lr):
  tx = optax.adam(lr)

  def step(carry, _):
    p, s = carry
    g = jax.grad(loss)(p)
    u, s = tx.update(g, s, p)
    return (optax.apply_updates(p, u), s), None

  with jax.numpy_dtype_promotion("standard"):  # optax's adam: float ** int32 step count
    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
  return params


def learn_cavs(x: Float[Array, "n d"], c_lab: Float[Array, "n k"], *,
               valid: Float[Array, "n k"] | None = None, C: float = 0.1, loss: str = "hinge",
               steps: int = 500, lr: float = 0.05, names: Sequence[str] | None = None
               ) -> ConceptBank:
  """Concept activation vectors: one linear classifier per concept (``vmap`` over concepts).

  Minimises, for each concept ``k`` over the examples where ``valid[:, k]``,

  .. math::
    \\frac1{N_k}\\sum_i \\ell\\big(s_i (w_k \\cdot x_i + b_k)\\big)
      + \\frac{\\lVert w_k\\rVert^2}{2 C N_k},\\qquad s_i = 2 c_{ik} - 1,

  with ``l`` the hinge ``max(0, 1 - z)`` (a linear SVM) or the logistic loss
  ``log(1 + e^{-z})``, by full-batch Adam.

  Args:
    x: embeddings ``[N, D]``.
    c_lab: concept labels ``[N, K]`` (0/1).
    valid: which labels exist (``[N, K]``, default all).
    C: inverse regularisation strength (> 0).
    loss: ``"hinge"`` or ``"logistic"``.
    steps: optimisation steps.
    lr: Adam learning rate.
    names: concept names (default ``concept_<k>``).

  Returns:
    :class:`ConceptBank` with ``vectors = w`` and ``intercepts = b``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import learn_cavs
    >>> x = jnp.array([[1.0, 0.0], [-1.0, 0.0], [2.0, 1.0], [-2.0, -1.0]])
    >>> bank = learn_cavs(x, jnp.array([[1], [0], [1], [0]]), C=10.0, steps=200)
    >>> bool(bank.vectors[0, 0] > 0)
    True
  """
  fn = "learn_cavs"
  _float(fn, "x", x, rank=2)
  _check_nonempty(fn, "x", x, 0, "examples")
  _labels01(fn, "c_lab", c_lab)
  V.check_rank(fn, "c_lab", c_lab, 2)
  V.check_axis_size(fn, "c_lab", c_lab, 0, x.shape[0], "one row per example of x")
  _check_nonempty(fn, "c_lab", c_lab, 1, "concepts")
  if valid is None:
    valid = jnp.ones(c_lab.shape, x.dtype)
  else:
    _labels01(fn, "valid", valid)
    V.check_same_shape(fn, "c_lab", c_lab, "valid", valid)
  V.check_scalar(fn, "C", C, low=0, low_inclusive=False)
  V.check_choice(fn, "loss", loss, ("hinge", "logistic"))
  V.check_scalar(fn, "steps", steps, low=1, integer=True)
  V.check_scalar(fn, "lr", lr, low=0, low_inclusive=False)
  k = c_lab.shape[1]
  s = 2 * jnp.asarray(c_lab).astype(x.dtype) - 1
  w_valid = jnp.asarray(valid).astype(x.dtype)
  C = _num(C)

  def one(sk, vk):
    nk = jnp.maximum(jnp.sum(vk), 1.0)

    def obj(p):
      z = sk * (x @ p["w"] + p["b"])
      per = jnp.maximum(0.0, 1.0 - z) if loss == "hinge" else jax.nn.softplus(-z)
      return jnp.sum(per * vk) / nk + jnp.sum(p["w"] ** 2) / (2 * C * nk)

    p = _adam_scan(obj, {"w": jnp.zeros(x.shape[1], x.dtype), "b": jnp.zeros((), x.dtype)},
                   steps, lr)
    return p["w"], p["b"]

  w, b = jax.vmap(one, in_axes=(1, 1))(s, w_valid)
  return ConceptBank(w, b, _names(fn, names, k))


class LinearHead(NamedTuple):
  """A linear head ``logits = m W^T + b``: ``weight[M, K]``, ``bias[M]``."""

  weight: Array
  bias: Array


def fit_elastic_net_head(m: Float[Array, "n k"], y: Int[Array, "n"], *, n_classes: int,
                         lam: float = 1e-5, l1_ratio: float = 0.99, steps: int = 2000,
                         lr: float = 0.5, scale_by_size: bool = False) -> LinearHead:
  """PCBM's sparse head: multinomial logistic regression with an elastic-net penalty.

  .. math::
    \\min_{W, b}\\ \\frac1N\\sum_i \\mathrm{CE}(W m_i + b, y_i)
      + \\lambda\\Big(\\alpha \\lVert W\\rVert_1 + \\frac{1-\\alpha}{2}\\lVert W\\rVert_2^2\\Big)

  (``lambda / (K M)`` when ``scale_by_size``), by proximal gradient descent: a gradient step of
  size ``lr`` on the smooth part, then soft-thresholding at ``lr lam alpha``.

  Args:
    m: concept margins (or any features) ``[N, K]``.
    y: labels ``int[N]`` in ``0..n_classes-1``.
    n_classes: ``M``.
    lam: penalty strength ``>= 0``.
    l1_ratio: ``alpha`` in [0, 1].
    steps: iterations.
    lr: step size.
    scale_by_size: divide ``lam`` by ``K M``.

  Returns:
    :class:`LinearHead`.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import fit_elastic_net_head
    >>> m = jnp.array([[2.0, 0.0], [-2.0, 0.0]])
    >>> h = fit_elastic_net_head(m, jnp.array([1, 0]), n_classes=2, lam=0.01, steps=100)
    >>> bool(h.weight[1, 0] > h.weight[0, 0]), float(h.weight[0, 1])
    (True, 0.0)
  """
  fn = "fit_elastic_net_head"
  _float(fn, "m", m, rank=2)
  _check_nonempty(fn, "m", m, 0, "examples")
  V.check_integer(fn, "y", y)
  V.check_shape(fn, "y", y, (m.shape[0],))
  V.check_scalar(fn, "n_classes", n_classes, low=1, integer=True)
  V.check_scalar(fn, "lam", lam, low=0)
  V.check_scalar(fn, "l1_ratio", l1_ratio, low=0, high=1)
  V.check_scalar(fn, "steps", steps, low=1, integer=True)
  V.check_scalar(fn, "lr", lr, low=0, low_inclusive=False)
  k = m.shape[1]
  lam = _num(lam) / (k * n_classes if scale_by_size else 1)
  l1, l2 = lam * _num(l1_ratio), lam * (1 - _num(l1_ratio))
  lr = _num(lr)

  def smooth(p):
    logits = m @ p[0].T + p[1]
    ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    return ce + 0.5 * l2 * jnp.sum(p[0] ** 2)

  def step(p, _):
    g = jax.grad(smooth)(p)
    w = soft_threshold(p[0] - lr * g[0], threshold=lr * l1)
    return (w, p[1] - lr * g[1]), None

  init = (jnp.zeros((n_classes, k), m.dtype), jnp.zeros(n_classes, m.dtype))
  (w, b), _ = jax.lax.scan(step, init, None, length=steps)
  return LinearHead(w, b)


def _check_head(fn, head, k=None):
  if not isinstance(head, LinearHead):
    raise TypeError(f"{fn}: head must be a LinearHead, got {type(head).__name__}")
  _float(fn, "head.weight", head.weight, rank=2)
  _float(fn, "head.bias", head.bias, rank=1)
  if k is not None:
    V.check_axis_size(fn, "head.weight", head.weight, 1, k, "one column per concept of the bank")
  V.check_axis_size(fn, "head.bias", head.bias, 0, head.weight.shape[0], "one per class")


def pcbm_logits(head: LinearHead, bank: ConceptBank, e: Float[Array, "*batch d"]
                ) -> Float[Array, "*batch m"]:
  """PCBM class logits ``W m(e) + b``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import ConceptBank, LinearHead, pcbm_logits
    >>> bank = ConceptBank(jnp.eye(2), jnp.zeros(2), ("a", "b"))
    >>> pcbm_logits(LinearHead(jnp.eye(2), jnp.zeros(2)), bank, jnp.array([1.0, 3.0]))
    Array([1., 3.], dtype=float32)
  """
  fn = "pcbm_logits"
  _check_bank(fn, bank)
  _check_head(fn, head, bank.vectors.shape[0])
  _check_e(fn, e, bank)
  m = concept_margins(bank, e)
  dt = _promote(m.dtype, head.weight.dtype)
  return m.astype(dt) @ head.weight.astype(dt).T + head.bias.astype(dt)


def pcbm_h_logits(head: LinearHead, residual: LinearHead, bank: ConceptBank,
                  e: Float[Array, "*batch d"]) -> Float[Array, "*batch m"]:
  """PCBM-h logits ``W m(e) + b + W_r e + b_r`` (``residual.weight[M, D]``).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import ConceptBank, LinearHead, pcbm_h_logits
    >>> bank = ConceptBank(jnp.eye(2), jnp.zeros(2), ("a", "b"))
    >>> h = LinearHead(jnp.eye(2), jnp.zeros(2))
    >>> pcbm_h_logits(h, LinearHead(jnp.ones((2, 2)), jnp.zeros(2)), bank, jnp.array([1.0, 3.0]))
    Array([5., 7.], dtype=float32)
  """
  fn = "pcbm_h_logits"
  _check_bank(fn, bank)
  _check_head(fn, head, bank.vectors.shape[0])
  _check_e(fn, e, bank)
  _check_head(fn, residual)
  V.check_axis_size(fn, "residual.weight", residual.weight, 1, np.shape(e)[-1],
                    "the embedding dimension")
  if residual.weight.shape[0] != head.weight.shape[0]:
    raise ValueError(f"{fn}: residual must have one row per class ({head.weight.shape[0]}), got "
                     f"{V.describe(residual.weight)}")
  g = pcbm_logits(head, bank, e)
  dt = _promote(g.dtype, residual.weight.dtype)
  return g.astype(dt) + e.astype(dt) @ residual.weight.astype(dt).T + residual.bias.astype(dt)


def prune_concepts(w: Float[Array, "m k"], concept_mask: Float[Array, "k"], *,
                   renormalize: bool = False) -> Float[Array, "m k"]:
  """Global model edit: delete the masked concepts for every class (``W[:, k] = 0``).

  With ``renormalize``, each class row is rescaled to its L1 norm before the edit (a row whose
  remaining weights are all zero stays zero).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import prune_concepts
    >>> prune_concepts(jnp.array([[1.0, 3.0]]), jnp.array([0, 1]), renormalize=True)
    Array([[4., 0.]], dtype=float32)
  """
  fn = "prune_concepts"
  _float(fn, "w", w, rank=2)
  _labels01(fn, "concept_mask", concept_mask)
  V.check_rank(fn, "concept_mask", concept_mask, 1)
  V.check_axis_size(fn, "concept_mask", concept_mask, 0, w.shape[1], "one flag per concept")
  keep = 1 - jnp.asarray(concept_mask).astype(w.dtype)
  out = w * keep
  if renormalize:
    before = jnp.sum(jnp.abs(w), axis=1, keepdims=True)
    after = jnp.sum(jnp.abs(out), axis=1, keepdims=True)
    out = jnp.where(after > 0, out * before / jnp.where(after > 0, after, 1.0), out)
  return out


def top_concepts(w, names: Sequence[str], *, k: int = 5) -> tuple[tuple[tuple[str, float], ...],
                                                                  ...]:
  """The ``k`` concepts with the largest positive weight for each class (host-side, for
  reading a head): ``((name, weight), ...)`` per class, zero weights left out.

  Example:
    >>> import numpy as np
    >>> from bottleneck_jax.concepts import top_concepts
    >>> top_concepts(np.array([[0.5, 2.0, 0.0]]), ["a", "b", "c"], k=2)
    ((('b', 2.0), ('a', 0.5)),)
  """
  fn = "top_concepts"
  _float(fn, "w", w, rank=2)
  V.check_scalar(fn, "k", k, low=1, integer=True)
  names = _names(fn, names, np.shape(w)[1])
  w = np.asarray(w, np.float64)
  out = []
  for row in w:
    order = np.argsort(-row, kind="stable")[:k]
    out.append(tuple((names[i], float(row[i])) for i in order if row[i] > 0))
  return tuple(out)


class BankVariable(nnx.Variable):
  """A concept bank held by a module: never trained."""


class PosthocCBM(nnx.Module):
  """PCBM: a frozen concept bank and a trainable linear head on the concept margins.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.concepts import PosthocCBM, text_concept_bank
    >>> m = PosthocCBM(text_concept_bank(jnp.eye(3)), 2, rngs=nnx.Rngs(0))
    >>> m(jnp.ones((4, 3))).shape
    (4, 2)
  """

  def __init__(self, bank: ConceptBank, n_classes: int, *, rngs: nnx.Rngs):
    _check_bank("PosthocCBM", bank)
    V.check_scalar("PosthocCBM", "n_classes", n_classes, low=1, integer=True)
    self.vectors = BankVariable(jnp.asarray(bank.vectors))
    self.intercepts = BankVariable(jnp.asarray(bank.intercepts))
    self.names = tuple(bank.names)
    k = bank.vectors.shape[0]
    self.weight = nnx.Param(jnp.zeros((n_classes, k), bank.vectors.dtype))
    self.bias = nnx.Param(jnp.zeros((n_classes,), bank.vectors.dtype))
    del rngs  # zero-initialised, as a logistic regression

  @property
  def bank(self) -> ConceptBank:
    return ConceptBank(self.vectors[...], self.intercepts[...], self.names)

  def margins(self, e):
    return concept_margins(self.bank, e)

  def __call__(self, e):
    return self.margins(e) @ self.weight[...].T + self.bias[...]


class PosthocHybridCBM(nnx.Module):
  """PCBM-h: a (frozen) :class:`PosthocCBM` plus a residual linear head on the embedding.

  The PCBM's output is wrapped in ``stop_gradient``, so training this module trains only the
  residual.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.concepts import PosthocCBM, PosthocHybridCBM, text_concept_bank
    >>> p = PosthocCBM(text_concept_bank(jnp.eye(3)), 2, rngs=nnx.Rngs(0))
    >>> PosthocHybridCBM(p, 3, rngs=nnx.Rngs(0))(jnp.ones((4, 3))).shape
    (4, 2)
  """

  def __init__(self, pcbm: PosthocCBM, d: int, *, rngs: nnx.Rngs):
    if not isinstance(pcbm, PosthocCBM):
      raise TypeError(f"PosthocHybridCBM: pcbm must be a PosthocCBM, got {type(pcbm).__name__}")
    V.check_scalar("PosthocHybridCBM", "d", d, low=1, integer=True)
    self.pcbm = pcbm
    m = pcbm.weight.shape[0]
    self.residual = nnx.Linear(d, m, kernel_init=nnx.initializers.zeros, rngs=rngs)

  def __call__(self, e):
    return jax.lax.stop_gradient(self.pcbm(e)) + self.residual(e)
