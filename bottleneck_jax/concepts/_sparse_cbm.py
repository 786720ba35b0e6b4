"""Sparse-CBM: Gumbel tricks in contrastive learning, and Concept Matrix Search.

Paper: Andrei Semenov, Vladimir Ivanov, Aleksandr Beznosikov, Alexander Gasnikov, "Sparse Concept
Bottleneck Models: Gumbel Tricks in Contrastive Learning", 2024
(https://arxiv.org/abs/2404.03323); code Andron00e/SparseCBM.

Idea. On top of CLIP's image-concept similarity matrix ``s(x) = logit_scale cos(I(x), T_k)``
(``[B, K]``), a concept bottleneck layer (CBL) ``h = W_cbl s`` (``K x K``, no bias) and a linear
head ``logits = W_head h`` (``M x K``, no bias) are trained with cross-entropy plus a loss on the
CBL output that makes it sparse: the **Gumbel** loss ``mean(-log GumbelSoftmax(h, tau))`` over
both axes (Sparse-CBM), a CLIP-style **contrastive** loss, an **L1** penalty on ``W_cbl``, or the
**cubed cosine** similarity of Label-free CBM. **Concept Matrix Search (CMS)** is training-free:
an image's row of concept similarities (normalised to sum 1) is compared by cosine with each
class's row of (class-name text, concept) similarities (normalised the same way); the most
similar class is the prediction.

Implemented here: :func:`gumbel_softmax` (soft and straight-through hard), :func:`sparse_cbm_apply`,
the four CBL losses :func:`loss_gumbel`, :func:`loss_contrastive`, :func:`loss_l1`,
:func:`loss_cos_cubed`, :func:`concept_matrix_search` and the NNX head :class:`SparseCBMHead`
(use ``optax.multi_transform`` for the separate CBL / head learning rates of the reference).

Departures / reference quirks: ``loss_contrastive(mode="reference")`` keeps the reference's
``torch.diag`` on a ``B x K`` matrix, which uses only the ``min(B, K)`` leading diagonal entries
of the log-softmaxes taken over the full axes; ``mode="diag_square"`` first crops ``h`` to its
leading ``min(B, K)`` square block (a proper square contrastive problem). The Gumbel loss averages
over *all* entries, as the reference does, not over a diagonal.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from bottleneck_jax.concepts._cbm import _check_nonempty, _float, _num, _promote
from bottleneck_jax.core import validation as V
from bottleneck_jax.core.rng import as_key


def gumbel_softmax(logits: Float[Array, "*shape"], *, key, tau: float = 1.0, hard: bool = False,
                   axis: int = -1) -> Float[Array, "*shape"]:
  """Gumbel-softmax sample ``softmax((l + g) / tau)``, ``g = -log(-log u)``.

  With ``hard=True`` the forward value is the one-hot of the argmax and the gradient is the soft
  sample's (straight-through).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.concepts import gumbel_softmax
    >>> y = gumbel_softmax(jnp.zeros((2, 3)), key=jax.random.key(0), hard=True)
    >>> y.sum(-1).tolist()
    [1.0, 1.0]
  """
  fn = "gumbel_softmax"
  _float(fn, "logits", logits, min_rank=1)
  V.check_scalar(fn, "tau", tau, low=0, low_inclusive=False)
  if not isinstance(axis, int) or isinstance(axis, bool) or not -logits.ndim <= axis < logits.ndim:
    raise ValueError(f"{fn}: axis must be an int in [{-logits.ndim}, {logits.ndim}), got {axis!r}")
  if logits.shape[axis] < 1:
    raise ValueError(f"{fn}: logits must have at least one entry on axis {axis}, got "
                     f"{V.describe(logits)}")
  key = as_key(key, fn=fn)
  g = jax.random.gumbel(key, logits.shape, jnp.float32).astype(logits.dtype)
  y = jax.nn.softmax((logits + g) / _num(tau), axis=axis)
  if hard:
    one = jax.nn.one_hot(jnp.argmax(y, axis=axis), logits.shape[axis], dtype=y.dtype, axis=axis)
    y = y + jax.lax.stop_gradient(one - y)
  return y


class SparseCBMOutput(NamedTuple):
  """:func:`sparse_cbm_apply`'s result: CBL output ``h[B, K]`` and class ``logits[B, M]``."""

  h: Array
  logits: Array


def sparse_cbm_apply(w_cbl: Float[Array, "k k"], w_head: Float[Array, "m k"],
                     s: Float[Array, "*batch k"]) -> SparseCBMOutput:
  """``h = s W_cbl^T``, ``logits = h W_head^T`` (no biases, as the reference).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import sparse_cbm_apply
    >>> sparse_cbm_apply(jnp.eye(2), jnp.ones((1, 2)), jnp.array([[1.0, 2.0]])).logits
    Array([[3.]], dtype=float32)
  """
  fn = "sparse_cbm_apply"
  _float(fn, "w_cbl", w_cbl, rank=2)
  _check_nonempty(fn, "w_cbl", w_cbl, 0, "concepts")
  if w_cbl.shape[0] != w_cbl.shape[1]:
    raise ValueError(f"{fn}: w_cbl must be square [K, K], got {list(w_cbl.shape)}")
  _float(fn, "w_head", w_head, rank=2)
  V.check_axis_size(fn, "w_head", w_head, 1, w_cbl.shape[0], "one column per concept")
  _float(fn, "s", s, min_rank=1)
  V.check_axis_size(fn, "s", s, -1, w_cbl.shape[0], "one similarity per concept")
  dt = _promote(w_cbl.dtype, w_head.dtype, s.dtype)
  h = s.astype(dt) @ w_cbl.astype(dt).T
  return SparseCBMOutput(h, h @ w_head.astype(dt).T)


def _check_h(fn, h):
  _float(fn, "h", h, rank=2)
  _check_nonempty(fn, "h", h, 0, "examples")
  _check_nonempty(fn, "h", h, 1, "concepts")


def loss_gumbel(h: Float[Array, "b k"], *, key, tau: float = 1.0, hard: bool = False
                ) -> Float[Array, ""]:
  """Sparse-CBM's loss: ``(mean(-log GS(h, axis=0)) + mean(-log GS(h, axis=1))) / 2``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.concepts import loss_gumbel
    >>> float(loss_gumbel(jnp.zeros((2, 2)), key=jax.random.key(0))) > 0
    True
  """
  fn = "loss_gumbel"
  _check_h(fn, h)
  V.check_scalar(fn, "tau", tau, low=0, low_inclusive=False)
  key = as_key(key, fn=fn)
  k0, k1 = jax.random.split(key)
  tiny = jnp.finfo(jnp.float32).tiny
  terms = [jnp.mean(-jnp.log(jnp.maximum(gumbel_softmax(h.astype(jnp.float32), key=k, tau=tau,
                                                        hard=hard, axis=a), tiny)))
           for k, a in ((k0, 0), (k1, 1))]
  return (terms[0] + terms[1]) / 2


def loss_contrastive(h: Float[Array, "b k"], *, mode: str = "reference") -> Float[Array, ""]:
  """CLIP-style symmetric cross-entropy on the CBL output's diagonal.

  ``reference``: ``-(mean diag log_softmax(h, 0) + mean diag log_softmax(h, 1)) / 2`` over the
  ``min(B, K)`` leading diagonal entries (``torch.diag`` of a rectangular matrix);
  ``diag_square``: the same on the leading ``min(B, K)`` square block of ``h``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import loss_contrastive
    >>> round(float(loss_contrastive(jnp.zeros((2, 2)))), 4)  # log 2
    0.6931
  """
  fn = "loss_contrastive"
  _check_h(fn, h)
  V.check_choice(fn, "mode", mode, ("reference", "diag_square"))
  n = min(h.shape)
  x = h.astype(jnp.float32)
  if mode == "diag_square":
    x = x[:n, :n]
  d0 = jnp.diagonal(jax.nn.log_softmax(x, axis=0))[:n]
  d1 = jnp.diagonal(jax.nn.log_softmax(x, axis=1))[:n]
  return -(jnp.mean(d0) + jnp.mean(d1)) / 2


def loss_l1(w_cbl: Float[Array, "k k"], *, lam: float = 1e-3) -> Float[Array, ""]:
  """``lam * |W_cbl|_1 / K``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import loss_l1
    >>> float(loss_l1(jnp.eye(2), lam=1.0))
    1.0
  """
  fn = "loss_l1"
  _float(fn, "w_cbl", w_cbl, rank=2)
  _check_nonempty(fn, "w_cbl", w_cbl, 0, "concepts")
  V.check_scalar(fn, "lam", lam, low=0)
  return _num(lam) * jnp.sum(jnp.abs(w_cbl.astype(jnp.float32))) / w_cbl.shape[0]


def loss_cos_cubed(s: Float[Array, "b k"], h: Float[Array, "b k"]) -> Float[Array, ""]:
  """Label-free CBM's similarity loss: ``-mean_k cos(col_k(s~^3), col_k(h~^3))`` with columns
  centred over the batch before cubing (``~``), then L2-normalised.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import loss_cos_cubed
    >>> s = jnp.array([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
    >>> round(float(loss_cos_cubed(s, 2 * s)), 4)
    -1.0
  """
  fn = "loss_cos_cubed"
  _check_h(fn, h)
  _float(fn, "s", s, rank=2)
  V.check_same_shape(fn, "s", s, "h", h)

  def prep(a):
    a = a.astype(jnp.float32)
    a = (a - jnp.mean(a, 0, keepdims=True)) ** 3
    n = jnp.linalg.norm(a, axis=0, keepdims=True)
    return a / jnp.where(n > 0, n, 1.0)

  return -jnp.mean(jnp.sum(prep(s) * prep(h), axis=0))


class CMSResult(NamedTuple):
  """:func:`concept_matrix_search`'s result: predictions ``pred[B]`` and ``score[B, M]``."""

  pred: Array
  score: Array


def concept_matrix_search(img: Float[Array, "b d"], concept_txt: Float[Array, "k d"],
                          class_txt: Float[Array, "m d"], *, cubed: bool = False) -> CMSResult:
  """Concept Matrix Search: training-free classification through the concept matrix.

  ``V[i, k] = cos(I(x_i), T_k)``, ``Tm[m, k] = cos(t_m, T_k)``, each row divided by its sum
  (cubed elementwise first when ``cubed``); ``score[i, m] = cos(V_i, Tm_m)``, prediction argmax.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import concept_matrix_search
    >>> t = jnp.array([[1.0, 0.1], [0.1, 1.0]])
    >>> concept_matrix_search(jnp.array([[1.0, 0.0]]), t, t).pred.tolist()
    [0]
  """
  fn = "concept_matrix_search"
  _float(fn, "img", img, rank=2)
  _float(fn, "concept_txt", concept_txt, rank=2)
  _float(fn, "class_txt", class_txt, rank=2)
  _check_nonempty(fn, "concept_txt", concept_txt, 0, "concepts")
  _check_nonempty(fn, "class_txt", class_txt, 0, "classes")
  for arg, a in (("concept_txt", concept_txt), ("class_txt", class_txt)):
    V.check_axis_size(fn, arg, a, 1, img.shape[1], "the image embedding dimension")

  def unit(a):
    a = a.astype(jnp.float32)
    return a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), 1e-12)

  def rows(a):
    if cubed:
      a = a ** 3
    tot = jnp.sum(a, -1, keepdims=True)
    return a / jnp.where(tot != 0, tot, 1.0)

  t = unit(concept_txt)
  v = rows(unit(img) @ t.T)
  tm = rows(unit(class_txt) @ t.T)
  score = unit(v) @ unit(tm).T
  return CMSResult(jnp.argmax(score, -1).astype(jnp.int32), score)


class SparseCBMHead(nnx.Module):
  """The concept bottleneck layer and the head: ``h = W_cbl s``, ``logits = W_head h``.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.concepts import SparseCBMHead
    >>> out = SparseCBMHead(5, 3, rngs=nnx.Rngs(0))(jnp.ones((2, 5)))
    >>> out.h.shape, out.logits.shape
    ((2, 5), (2, 3))
  """

  def __init__(self, n_concepts: int, n_classes: int, *, rngs: nnx.Rngs):
    V.check_scalar("SparseCBMHead", "n_concepts", n_concepts, low=1, integer=True)
    V.check_scalar("SparseCBMHead", "n_classes", n_classes, low=1, integer=True)
    init = nnx.initializers.lecun_normal()
    self.w_cbl = nnx.Param(init(rngs.params(), (n_concepts, n_concepts)))
    self.w_head = nnx.Param(init(rngs.params(), (n_classes, n_concepts)))

  def __call__(self, s) -> SparseCBMOutput:
    return sparse_cbm_apply(self.w_cbl[...], self.w_head[...], s)

