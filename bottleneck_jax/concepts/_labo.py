"""LaBo: Language in a Bottle.

Paper: Yue Yang, Artemis Panagopoulou, Shenghao Zhou, Daniel Jin, Chris Callison-Burch, Mark
Yatskar, "Language in a Bottle: Language Model Guided Concept Bottlenecks for Interpretable Image
Classification", CVPR 2023 (https://arxiv.org/abs/2211.11158); code YueYANG1996/LaBo.

Idea. A language model writes candidate concepts for every class; each remembers the class that
produced it (``concept2cls``). A bottleneck is *selected* per class by a submodular objective
that trades discriminability against coverage of the class's candidate pool, the image is scored
against the selected concepts in CLIP space, ``g(x) = I(x) T(S)^T``, and a class-concept
association matrix ``A``, initialised from ``concept2cls`` (the language prior) and normalised by
a row softmax, gives the logits ``100 g(x) softmax(A)^T``.

Implemented here (the code's formulas):

* :func:`class_concept_similarity`: ``Sim(c, y) = mean_{x in D_y} I(x) . T(c)``;
* :func:`labo_mi_score`: ``p(c, y) = Sim(c, y) / (M sum_{c'} Sim(c', y))``, ``p(c) = sum_y
  p(c, y)``, ``MI(c) = sum_y p(c, y) log[p(c, y) M / p(c)]`` (``>= 0``; it is ``p(c)`` times the KL
  divergence of ``p(y | c)`` from uniform);
* :func:`facility_location_value` and :func:`greedy_submodular`: greedy maximisation of
  ``F(S) = alpha sum_{c in S} MI(c) + beta sum_{j in pool} max(0, max_{c in S} phi(j, c))``
  (``phi``: cosine similarity of the concept text embeddings), vectorised gains in
  ``lax.fori_loop``; :func:`select_per_class` runs it for every class's pool (``vmap``);
* :func:`labo_init_assoc`, :func:`labo_logits` and the NNX head :class:`LaBoHead`.

Departures from the reference code:

* The reference computes the score only for all-positive similarities (CLIP's cone) and gives
  NaN otherwise; with ``shift_positive=True`` (default) similarities are shifted to be positive
  first (``S - min(S, 0) + epsilon``), which leaves positive inputs unchanged up to ``epsilon``.
* ``normalize=True`` (default) divides MI by its maximum over the pool and the coverage by the
  pool size, so ``alpha`` and ``beta`` are O(1); the reference uses ``alpha = 1e7`` on the raw MI
  through apricot's mixture of a custom and a facility-location function.
* Coverage clips similarities at 0 (so the objective is monotone submodular).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int

from bottleneck_jax.concepts._cbm import (
    _check_nonempty,
    _float,
    _labels01,
    _num,
    _promote,
    segment_mean,
)
from bottleneck_jax.concepts._pcbm import BankVariable
from bottleneck_jax.core import validation as V


def class_concept_similarity(img: Float[Array, "n d"], y: Int[Array, "n"],
                             txt: Float[Array, "c d"], *, n_classes: int) -> Float[Array, "c m"]:
  """``Sim(c, y)``: the mean over class-``y`` images of ``I(x) . T(c)`` (0 for an empty class).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import class_concept_similarity
    >>> img = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> class_concept_similarity(img, jnp.array([0, 1]), jnp.eye(2), n_classes=2)
    Array([[1., 0.],
           [0., 1.]], dtype=float32)
  """
  fn = "class_concept_similarity"
  _float(fn, "img", img, rank=2)
  _float(fn, "txt", txt, rank=2)
  _check_nonempty(fn, "txt", txt, 0, "concepts")
  V.check_axis_size(fn, "txt", txt, 1, img.shape[1], "the image embedding dimension")
  V.check_integer(fn, "y", y)
  V.check_shape(fn, "y", y, (img.shape[0],))
  V.check_scalar(fn, "n_classes", n_classes, low=1, integer=True)
  dt = _promote(img.dtype, txt.dtype)
  means = segment_mean(img.astype(dt), y, num_segments=n_classes)
  return txt.astype(dt) @ means.T


def labo_mi_score(sim: Float[Array, "c m"], *, shift_positive: bool = True,
                  epsilon: float = 1e-12) -> Float[Array, "c"]:
  """LaBo's discriminability score of each concept (the code's mutual-information form).

  .. math::
    p(c, y) = \\frac{S_{cy}}{M \\sum_{c'} S_{c'y}},\\quad p(c) = \\sum_y p(c, y),\\quad
    \\mathrm{MI}(c) = \\sum_y p(c, y) \\log\\frac{M\\, p(c, y)}{p(c)}

  Args:
    sim: class-concept similarities ``[C, M]`` (positive, or any sign with
      ``shift_positive``).
    shift_positive: shift ``S`` to ``S - min(S, 0) + epsilon`` first (keeps the score finite).
    epsilon: the shift's margin.

  Returns:
    ``MI[C] >= 0``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import labo_mi_score
    >>> labo_mi_score(jnp.array([[1.0, 1.0], [2.0, 0.5], [0.5, 2.0]]))[0]
    Array(0., dtype=float32)
  """
  fn = "labo_mi_score"
  _float(fn, "sim", sim, rank=2)
  _check_nonempty(fn, "sim", sim, 0, "concepts")
  _check_nonempty(fn, "sim", sim, 1, "classes")
  V.check_scalar(fn, "epsilon", epsilon, low=0)
  s = sim.astype(jnp.float32)
  if shift_positive:
    s = s - jnp.minimum(jnp.min(s), 0.0) + _num(epsilon)
  m = s.shape[1]
  p_cy = s / (m * jnp.sum(s, axis=0, keepdims=True))
  p_c = jnp.sum(p_cy, axis=1, keepdims=True)
  ratio = m * p_cy / p_c
  return jnp.sum(jnp.where(p_cy > 0, p_cy * jnp.log(jnp.where(p_cy > 0, ratio, 1.0)), 0.0), 1)


def facility_location_value(sim: Float[Array, "p p"], sel_mask: Float[Array, "p"],
                            valid: Float[Array, "p"]) -> Float[Array, ""]:
  """Coverage ``sum_{j valid} max(0, max_{i selected} sim[j, i])`` (0 with nothing selected).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import facility_location_value
    >>> sim = jnp.array([[1.0, 0.2], [0.2, 1.0]])
    >>> round(float(facility_location_value(sim, jnp.array([1, 0]), jnp.array([1, 1]))), 4)
    1.2
  """
  fn = "facility_location_value"
  _check_sim(fn, sim)
  for arg, a in (("sel_mask", sel_mask), ("valid", valid)):
    _labels01(fn, arg, a)
    V.check_shape(fn, arg, a, (sim.shape[0],))
  sel = jnp.asarray(sel_mask).astype(bool)
  best = jnp.max(jnp.where(sel[None, :], sim.astype(jnp.float32), 0.0), axis=1)
  return jnp.sum(jnp.maximum(best, 0.0) * jnp.asarray(valid).astype(jnp.float32))


def _check_sim(fn, sim):
  _float(fn, "sim", sim, rank=2)
  if sim.shape[0] != sim.shape[1]:
    raise ValueError(f"{fn}: sim must be square [P, P], got {list(sim.shape)}")
  _check_nonempty(fn, "sim", sim, 0, "pool entries")


class Selection(NamedTuple):
  """Selected concepts: ``index[..., k]`` (int32, -1 where the pool ran out) and ``valid``."""

  index: Array
  valid: Array


def greedy_submodular(mi: Float[Array, "p"], sim: Float[Array, "p p"], valid: Float[Array, "p"],
                      *, k: int, alpha: float = 1.0, beta: float = 1.0, normalize: bool = True
                      ) -> Selection:
  """Greedy maximisation of LaBo's submodular objective over one pool.

  At each of ``k`` steps, picks the valid, unselected ``i`` maximising

  .. math::
    \\alpha\\, \\mathrm{mi}_i + \\beta \\sum_{j\\ \\mathrm{valid}} \\max(0, \\phi_{ji} - cur_j),
    \\qquad cur_j = \\max(0, \\max_{c \\in S} \\phi_{jc})

  (with ``normalize``: ``mi`` divided by its max over the valid pool and the coverage by the
  pool size). Ties go to the lower index. When fewer than ``k`` entries are valid, the rest of
  ``index`` is -1.

  Returns:
    :class:`Selection` with ``index[k]`` and ``valid[k]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import greedy_submodular
    >>> sel = greedy_submodular(jnp.array([0.1, 0.9, 0.5]), jnp.eye(3), jnp.ones(3), k=2,
    ...                         beta=0.0)
    >>> sel.index.tolist()
    [1, 2]
  """
  fn = "greedy_submodular"
  _check_sim(fn, sim)
  p = sim.shape[0]
  _float(fn, "mi", mi, rank=1)
  V.check_shape(fn, "mi", mi, (p,))
  _labels01(fn, "valid", valid)
  V.check_shape(fn, "valid", valid, (p,))
  V.check_scalar(fn, "k", k, low=1, high=p, integer=True)
  V.check_scalar(fn, "alpha", alpha, low=0)
  V.check_scalar(fn, "beta", beta, low=0)
  alpha, beta = _num(alpha), _num(beta)
  return _greedy(mi.astype(jnp.float32), sim.astype(jnp.float32),
                 jnp.asarray(valid).astype(bool), k, alpha, beta, normalize)


def _greedy(mi, sim, valid, k, alpha, beta, normalize):
  p = sim.shape[0]
  vf = valid.astype(jnp.float32)
  if normalize:
    top = jnp.max(jnp.where(valid, mi, -jnp.inf))
    mi = jnp.where(top > 0, mi / jnp.where(top > 0, top, 1.0), mi)
    cov_scale = 1.0 / jnp.maximum(jnp.sum(vf), 1.0)
  else:
    cov_scale = 1.0

  def body(t, carry):
    cur, chosen, idx = carry
    gain_cov = jnp.sum(vf[:, None] * jnp.maximum(0.0, sim - cur[:, None]), axis=0)
    gain = alpha * mi + beta * cov_scale * gain_cov
    ok = valid & ~chosen
    i = jnp.argmax(jnp.where(ok, gain, -jnp.inf))
    has = jnp.any(ok)
    cur = jnp.where(has, jnp.maximum(cur, jnp.maximum(sim[:, i], 0.0)), cur)
    chosen = chosen.at[i].set(chosen[i] | has)
    idx = idx.at[t].set(jnp.where(has, i, -1))
    return cur, chosen, idx

  init = (jnp.zeros(p), jnp.zeros(p, bool), jnp.full((k,), -1, jnp.int32))
  _, _, idx = jax.lax.fori_loop(0, k, body, init)
  return Selection(idx, idx >= 0)


def select_per_class(mi: Float[Array, "c"], txt: Float[Array, "c d"],
                     concept2cls: Int[Array, "c"], *, n_classes: int, k: int,
                     alpha: float = 1.0, beta: float = 1.0, normalize: bool = True
                     ) -> Selection:
  """Runs :func:`greedy_submodular` on every class's own candidate pool (``vmap``).

  The pool of class ``m`` is the candidates with ``concept2cls == m``; ``phi`` is the cosine
  similarity of the candidates' text embeddings.

  Returns:
    :class:`Selection` with ``index[M, k]`` (candidate indices) and ``valid[M, k]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import select_per_class
    >>> sel = select_per_class(jnp.array([0.1, 0.9, 0.5, 0.2]), jnp.eye(4),
    ...                        jnp.array([0, 0, 1, 1]), n_classes=2, k=1, beta=0.0)
    >>> sel.index.tolist()
    [[1], [2]]
  """
  fn = "select_per_class"
  _float(fn, "txt", txt, rank=2)
  _check_nonempty(fn, "txt", txt, 0, "candidate concepts")
  c = txt.shape[0]
  _float(fn, "mi", mi, rank=1)
  V.check_shape(fn, "mi", mi, (c,))
  V.check_integer(fn, "concept2cls", concept2cls)
  V.check_shape(fn, "concept2cls", concept2cls, (c,))
  V.check_scalar(fn, "n_classes", n_classes, low=1, integer=True)
  V.check_scalar(fn, "k", k, low=1, high=c, integer=True)
  V.check_scalar(fn, "alpha", alpha, low=0)
  V.check_scalar(fn, "beta", beta, low=0)
  t = txt.astype(jnp.float32)
  t = t / jnp.maximum(jnp.linalg.norm(t, axis=1, keepdims=True), 1e-12)
  sim = t @ t.T
  pools = concept2cls.astype(jnp.int32)[None, :] == jnp.arange(n_classes)[:, None]
  run = jax.vmap(lambda v: _greedy(mi.astype(jnp.float32), sim, v, k, _num(alpha), _num(beta),
                                   normalize))
  return run(pools)


def labo_init_assoc(concept2cls: Int[Array, "s"], *, n_classes: int, init_val: float = 1.0
                    ) -> Float[Array, "m s"]:
  """The language prior: ``A[y, c] = init_val`` when concept ``c`` came from class ``y``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import labo_init_assoc
    >>> labo_init_assoc(jnp.array([1, 0, 1]), n_classes=2)
    Array([[0., 1., 0.],
           [1., 0., 1.]], dtype=float32)
  """
  fn = "labo_init_assoc"
  V.check_integer(fn, "concept2cls", concept2cls)
  V.check_rank(fn, "concept2cls", concept2cls, 1)
  _check_nonempty(fn, "concept2cls", concept2cls, 0, "concepts")
  V.check_scalar(fn, "n_classes", n_classes, low=1, integer=True)
  V.check_scalar(fn, "init_val", init_val)
  return _num(init_val) * jax.nn.one_hot(concept2cls, n_classes, dtype=jnp.float32).T


def labo_logits(assoc: Float[Array, "m s"], img: Float[Array, "*batch d"],
                txt_sel: Float[Array, "s d"], *, scale: float = 100.0
                ) -> Float[Array, "*batch m"]:
  """LaBo's class logits ``scale * (I(x) T^T) softmax(A, axis=-1)^T``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import labo_logits
    >>> labo_logits(jnp.zeros((2, 2)), jnp.array([1.0, 0.0]), jnp.eye(2), scale=1.0)
    Array([0.5, 0.5], dtype=float32)
  """
  fn = "labo_logits"
  _float(fn, "assoc", assoc, rank=2)
  _float(fn, "txt_sel", txt_sel, rank=2)
  _check_nonempty(fn, "txt_sel", txt_sel, 0, "selected concepts")
  V.check_axis_size(fn, "assoc", assoc, 1, txt_sel.shape[0], "one column per selected concept")
  _float(fn, "img", img, min_rank=1)
  V.check_axis_size(fn, "img", img, -1, txt_sel.shape[1], "the text embedding dimension")
  V.check_scalar(fn, "scale", scale)
  dt = _promote(assoc.dtype, img.dtype, txt_sel.dtype)
  w = jax.nn.softmax(assoc.astype(dt), axis=-1)
  return _num(scale) * (img.astype(dt) @ txt_sel.astype(dt).T) @ w.T


class LaBoHead(nnx.Module):
  """LaBo's head: frozen selected concept embeddings, a trainable association matrix
  initialised from the language prior.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.concepts import LaBoHead
    >>> head = LaBoHead(jnp.array([0, 1, 1]), jnp.eye(3), 2, rngs=nnx.Rngs(0))
    >>> head(jnp.ones((4, 3))).shape
    (4, 2)
  """

  def __init__(self, concept2cls, txt_sel, n_classes: int, *, scale: float = 100.0,
               init_val: float = 1.0, rngs: nnx.Rngs):
    _float("LaBoHead", "txt_sel", txt_sel, rank=2)
    V.check_shape("LaBoHead", "concept2cls", concept2cls, (txt_sel.shape[0],))
    self.txt = BankVariable(jnp.asarray(txt_sel))
    self.assoc = nnx.Param(labo_init_assoc(jnp.asarray(concept2cls), n_classes=n_classes,
                                           init_val=init_val))
    self.scale = float(scale)
    del rngs  # deterministic (prior) initialisation

  def __call__(self, img):
    return labo_logits(self.assoc[...], img, self.txt[...], scale=self.scale)

