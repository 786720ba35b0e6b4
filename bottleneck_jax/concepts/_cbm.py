"""Concept Bottleneck Models: the base every paper of the concepts family builds on.

Paper: Pang Wei Koh, Thao Nguyen, Yew Siang Tang, Stephen Mussmann, Emma Pierson, Been Kim,
Percy Liang, "Concept Bottleneck Models", ICML 2020 (https://arxiv.org/abs/2007.04612); code
yewsiang/ConceptBottleneck.

Idea. A concept predictor ``g: x -> l in R^K`` (one logit per human concept) feeds a task head
``f: R^K -> R^M`` through a *bottleneck* ``b``: the prediction is ``f(b(g(x)))``. Because every
unit of the bottleneck is a named concept, a person can read the model's reasoning and *intervene*
at test time by overwriting a wrong concept with its true value.

Implemented here:

* :func:`bce_with_logits` (optionally class-imbalance weighted: ``w = n_neg / n_pos``),
  :func:`bottleneck` (``"prob"``: ``sigmoid(l)``; ``"logit"``: ``l``; ``"hard"``:
  ``1[sigmoid(l) >= 0.5]`` with the straight-through gradient of the sigmoid), returning the
  library's :class:`~bottleneck_jax.core.BottleneckOutput`;
* :func:`cbm_loss` for the three training schemes: *independent* (train ``g`` with the concept
  loss, ``f`` on the true concepts), *sequential* (train ``g``, freeze it, train ``f`` on
  ``b(g(x))``) and *joint* (``CE(f(b(g(x))), y) + lam * sum_k BCE(l_k, c_k)``, optionally divided
  by ``1 + lam K`` as the reference's ``--normalize_loss``);
* test-time interventions: :func:`intervention_percentiles` (5th / 95th percentile of each
  concept's training logits), :func:`intervene` (``mask * v + (1 - mask) * c_hat`` with ``v`` the
  true concept in probability space or ``lo + c (hi - lo)`` in logit space),
  :func:`random_group_mask` and :func:`uncertainty_group_mask` (concept *groups*, as CUB's 28
  attribute groups), :func:`intervention_curve` (accuracy against the number of groups
  intervened on, and its normalised area);
* metrics: :func:`concept_accuracy` (per concept, mean, all-concepts-right rate) and
  :func:`auc_roc` (Mann-Whitney statistic with tie correction, sort based, jit-able);
* shared primitives of the family: :func:`segment_mean` (class means) and
  :func:`soft_threshold` (the proximal step of an L1 penalty);
* :class:`ConceptBottleneckModel`, a thin NNX module: an optional encoder, a linear concept
  layer, the bottleneck and a linear or MLP head, with interventions at call time.

Departures from the reference code:

* The uncertainty policy picks the groups whose predicted probabilities are closest to 0.5
  (mean ``|p - 0.5|`` over the group) - a non-adaptive version of the reference's
  entropy-adaptive choice, which rescored the head once per candidate group.
* ``BottleneckOutput.bits`` of :func:`bottleneck` is the nominal size of the binary concept code,
  ``K`` bits per example (the capacity of the hard bottleneck); the soft modes pass a real
  number per concept and report the same nominal ``K``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.rng import as_key
from bottleneck_jax.core.types import BottleneckOutput

MODES = ("prob", "logit", "hard")
LOSS_MODES = ("joint", "concept", "task")


# --------------------------------------------------------------------------------------------
# validation helpers (private, shared by the family)


def _float(fn, arg, x, *, min_rank=None, rank=None):
  V.check_floating(fn, arg, x)
  if rank is not None or min_rank is not None:
    V.check_rank(fn, arg, x, rank, min_rank=min_rank)


def _labels01(fn, arg, x):
  """Concept labels: float, int or bool {0,1} arrays; returned as float32-compatible dtype."""
  V.check_array(fn, arg, x)
  dt = jnp.dtype(x.dtype) if hasattr(x, "dtype") else jnp.result_type(x)
  if not (dt == jnp.bool_ or jnp.issubdtype(dt, jnp.integer) or jnp.issubdtype(dt, jnp.floating)):
    raise TypeError(f"{fn}: {arg} must hold 0/1 labels (bool, int or float), got {dt.name}")


def _num(v):
  """A concrete Python/NumPy number as a Python float (a huge int must not overflow int32)."""
  if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
    return float(v)
  return v


def _promote(*dtypes):
  """The common dtype of ``dtypes`` (standard promotion: f16 with f32 gives f32)."""
  with jax.numpy_dtype_promotion("standard"):
    out = dtypes[0]
    for d in dtypes[1:]:
      out = jnp.promote_types(out, d)
  return out


def _as(x, dtype):
  return jnp.asarray(x).astype(dtype)


def _check_nonempty(fn, arg, x, axis=-1, what="concepts"):
  if np.shape(x)[axis] < 1:
    raise ValueError(f"{fn}: {arg} must have at least one entry on axis {axis} ({what}), got "
                     f"{V.describe(x)}")


def _groups(fn: str, groups, k: int) -> tuple[np.ndarray, int]:
  """Concrete int group ids ``[K]`` in ``0..G-1`` (every group non-empty); ``None``: one each."""
  if groups is None:
    return np.arange(k), k
  if isinstance(groups, jax.core.Tracer):
    raise TypeError(f"{fn}: groups must be concrete (a NumPy array or a tuple of ints), got a "
                    "traced value")
  if isinstance(groups, (list, tuple)):
    groups = np.asarray(groups)
  V.check_integer(fn, "groups", groups)
  g = np.asarray(groups)
  if g.shape != (k,):
    raise ValueError(f"{fn}: groups must have shape [{k}] (one group id per concept), got "
                     f"{list(g.shape)}")
  if g.size and (g.min() < 0 or set(np.unique(g).tolist()) != set(range(int(g.max()) + 1))):
    raise ValueError(f"{fn}: groups must be ids 0..G-1 with every group used, got "
                     f"{sorted(set(g.tolist()))}")
  return g.astype(np.int32), int(g.max()) + 1 if g.size else 0


# --------------------------------------------------------------------------------------------
# losses and the bottleneck


def bce_with_logits(logit: Float[Array, "*batch k"], target: Float[Array, "*batch k"], *,
                    pos_weight: Float[Array, "k"] | None = None) -> Float[Array, "*batch k"]:
  """Binary cross-entropy on logits, elementwise, optionally weighting the positives.

  .. math::
    \\ell(l, t) = -\\left[w\\, t \\log\\sigma(l) + (1 - t) \\log(1 - \\sigma(l))\\right]

  computed stably with ``log_sigmoid``; ``w = 1`` when ``pos_weight`` is ``None`` (the
  reference weights each concept by its ``n_neg / n_pos`` ratio on the training set).

  Args:
    logit: concept logits, ``[*batch, K]``.
    target: labels in [0, 1], same shape (bool / int / float).
    pos_weight: optional ``[K]`` weights of the positive term.

  Returns:
    The loss per element, ``[*batch, K]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import bce_with_logits
    >>> round(float(bce_with_logits(jnp.zeros((1, 1)), jnp.ones((1, 1)))[0, 0]), 4)  # log 2
    0.6931
  """
  fn = "bce_with_logits"
  _float(fn, "logit", logit, min_rank=1)
  _labels01(fn, "target", target)
  V.check_same_shape(fn, "logit", logit, "target", target)
  t = _as(target, logit.dtype)
  w = 1.0
  if pos_weight is not None:
    _float(fn, "pos_weight", pos_weight, rank=1)
    V.check_axis_size(fn, "pos_weight", pos_weight, 0, logit.shape[-1], "one per concept")
    w = _as(pos_weight, logit.dtype)
  return -(w * t * jax.nn.log_sigmoid(logit) + (1 - t) * jax.nn.log_sigmoid(-logit))


def bottleneck(c_logit: Float[Array, "*batch k"], *, mode: str = "prob") -> BottleneckOutput:
  """The concept bottleneck: what of the concept logits flows on to the task head.

  * ``"prob"``: ``z = sigmoid(l)``;
  * ``"logit"``: ``z = l``;
  * ``"hard"``: ``z = 1[sigmoid(l) >= 0.5]`` forward, the sigmoid's gradient backward
    (straight-through: ``z = s + stop_gradient(1[s >= 0.5] - s)``).

  Args:
    c_logit: concept logits ``[*batch, K]``.
    mode: one of ``"prob"``, ``"logit"``, ``"hard"``.

  Returns:
    :class:`~bottleneck_jax.core.BottleneckOutput` with ``z`` ``[*batch, K]``, ``loss = 0``,
    ``bits`` = ``K`` per example (the size of the binary concept code) and
    ``aux = {"c_prob": sigmoid(l), "c_logit": l}``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import bottleneck
    >>> bottleneck(jnp.array([[-1.0, 2.0]]), mode="hard").z
    Array([[0., 1.]], dtype=float32)
  """
  fn = "bottleneck"
  _float(fn, "c_logit", c_logit, min_rank=1)
  V.check_choice(fn, "mode", mode, MODES)
  p = jax.nn.sigmoid(c_logit)
  if mode == "prob":
    z = p
  elif mode == "logit":
    z = c_logit
  else:
    z = p + jax.lax.stop_gradient((p >= 0.5).astype(p.dtype) - p)
  batch = c_logit.shape[:-1]
  bits = jnp.full(batch, float(c_logit.shape[-1]), jnp.float32)
  return BottleneckOutput(z=z, loss=jnp.zeros((), c_logit.dtype), bits=bits,
                          aux={"c_prob": p, "c_logit": c_logit})


class CBMLoss(NamedTuple):
  """:func:`cbm_loss`'s result: the scalar ``loss`` and ``aux`` (``task_loss``,
  ``concept_loss`` (sum over concepts of the batch-mean BCE), ``task_accuracy``,
  ``concept_accuracy``)."""

  loss: Array
  aux: dict


def cbm_loss(c_logit: Float[Array, "b k"], y_logit: Float[Array, "b m"],
             c_true: Float[Array, "b k"], y: Int[Array, "b"], *, lam: float = 1.0,
             mode: str = "joint", pos_weight: Float[Array, "k"] | None = None,
             normalize: bool = False) -> CBMLoss:
  """The CBM training loss of the three schemes.

  .. math::
    L_\\text{joint} = \\mathrm{CE}(f(b(g(x))), y)
      + \\lambda \\sum_{k=1}^K \\overline{\\mathrm{BCE}}(l_k, c_k),
    \\qquad L_\\text{concept} = \\sum_k \\overline{\\mathrm{BCE}}(l_k, c_k),
    \\qquad L_\\text{task} = \\mathrm{CE}

  (bars: batch means), with ``L_joint / (1 + lam K)`` when ``normalize``. Independent training
  uses ``"concept"`` for ``g`` and ``"task"`` for ``f`` fed with the true concepts; sequential
  uses ``"task"`` with ``f`` fed ``b(g(x))`` of the frozen ``g``.

  Args:
    c_logit: concept logits ``[B, K]``.
    y_logit: class logits ``[B, M]``.
    c_true: concept labels ``[B, K]`` (0/1).
    y: class labels ``int[B]``.
    lam: the concept-loss weight ``lambda >= 0``.
    mode: ``"joint"``, ``"concept"`` or ``"task"``.
    pos_weight: optional ``[K]`` positive weights of the BCE.
    normalize: divide the joint loss by ``1 + lam K`` (reference ``--normalize_loss``).

  Returns:
    :class:`CBMLoss`.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import cbm_loss
    >>> out = cbm_loss(jnp.zeros((2, 3)), jnp.zeros((2, 4)), jnp.ones((2, 3)),
    ...                jnp.array([0, 1]), lam=1.0)
    >>> round(float(out.loss), 4)  # log 4 + 3 log 2
    3.4657
  """
  fn = "cbm_loss"
  _float(fn, "c_logit", c_logit, rank=2)
  _float(fn, "y_logit", y_logit, rank=2)
  _labels01(fn, "c_true", c_true)
  V.check_same_shape(fn, "c_logit", c_logit, "c_true", c_true)
  V.check_integer(fn, "y", y)
  V.check_shape(fn, "y", y, (c_logit.shape[0],))
  V.check_axis_size(fn, "y_logit", y_logit, 0, c_logit.shape[0], "the batch of c_logit")
  if c_logit.shape[0] < 1:
    raise ValueError(f"{fn}: the batch must hold at least one example, got "
                     f"{V.describe(c_logit)}")
  if y_logit.shape[1] < 1:
    raise ValueError(f"{fn}: y_logit must have at least one class, got {V.describe(y_logit)}")
  V.check_scalar(fn, "lam", lam, low=0)
  V.check_choice(fn, "mode", mode, LOSS_MODES)
  lam = _num(lam)
  bce = bce_with_logits(c_logit, _as(c_true, c_logit.dtype), pos_weight=pos_weight)
  concept_loss = jnp.sum(jnp.mean(bce, axis=0))
  task_loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(y_logit, y))
  if mode == "joint":
    loss = task_loss.astype(c_logit.dtype) + lam * concept_loss
    if normalize:
      loss = loss / (1.0 + lam * c_logit.shape[1])
  elif mode == "concept":
    loss = concept_loss
  else:
    loss = task_loss
  aux = {"task_loss": task_loss, "concept_loss": concept_loss,
         "task_accuracy": jnp.mean((jnp.argmax(y_logit, -1) == y).astype(jnp.float32)),
         "concept_accuracy": jnp.mean(((c_logit >= 0) == (_as(c_true, c_logit.dtype) >= 0.5))
                                      .astype(jnp.float32))}
  return CBMLoss(loss, aux)


# --------------------------------------------------------------------------------------------
# interventions


class InterventionRange(NamedTuple):
  """Per-concept logit values used to intervene in logit space: ``lo`` (concept off) and
  ``hi`` (concept on), each ``[K]``."""

  lo: Array
  hi: Array


def intervention_percentiles(train_c_logit: Float[Array, "n k"], *,
                             q: tuple[float, float] = (5.0, 95.0)) -> InterventionRange:
  """The logit values that stand for "off" / "on" when intervening in logit space.

  As the reference (``CUB/tti.py``), the ``q[0]``-th and ``q[1]``-th percentile of each
  concept's logits on the training set, so an intervened value stays in distribution.

  Args:
    train_c_logit: training-set concept logits ``[N, K]``, ``N >= 1``.
    q: the two percentiles, ``0 <= q[0] <= q[1] <= 100``.

  Returns:
    :class:`InterventionRange` ``(lo[K], hi[K])``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import intervention_percentiles
    >>> r = intervention_percentiles(jnp.arange(101.0)[:, None])
    >>> float(r.lo[0]), float(r.hi[0])
    (5.0, 95.0)
  """
  fn = "intervention_percentiles"
  _float(fn, "train_c_logit", train_c_logit, rank=2)
  _check_nonempty(fn, "train_c_logit", train_c_logit, 0, "examples")
  if not (isinstance(q, (tuple, list)) and len(q) == 2):
    raise TypeError(f"{fn}: q must be a pair of percentiles, got {q!r}")
  for v in q:
    V.check_scalar(fn, "q", v, low=0, high=100)
  if q[0] > q[1]:
    raise ValueError(f"{fn}: q must be increasing, got {q!r}")
  lo = jnp.percentile(train_c_logit, q[0], axis=0)
  hi = jnp.percentile(train_c_logit, q[1], axis=0)
  return InterventionRange(lo.astype(train_c_logit.dtype), hi.astype(train_c_logit.dtype))


def intervene(c_hat: Float[Array, "*batch k"], c_true: Float[Array, "*batch k"],
              mask: Float[Array, "*batch k"], *, lo: Float[Array, "k"] | None = None,
              hi: Float[Array, "k"] | None = None) -> Float[Array, "*batch k"]:
  """Test-time intervention: replace the masked concepts by their true values.

  .. math::
    \\tilde c = m \\odot v + (1 - m) \\odot \\hat c,\\qquad
    v = \\begin{cases} c & \\text{probability space (no lo/hi)}\\\\
    lo + c\\,(hi - lo) & \\text{logit space}\\end{cases}

  Args:
    c_hat: the predicted bottleneck values ``[*batch, K]``.
    c_true: true concepts (0/1), same shape.
    mask: which concepts to replace (0/1, bool or float), same shape.
    lo, hi: ``[K]`` logit values for "off"/"on" (both or neither), e.g. from
      :func:`intervention_percentiles`.

  Returns:
    The intervened values, shape and dtype of ``c_hat``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import intervene
    >>> intervene(jnp.array([[0.2, 0.7]]), jnp.array([[1, 0]]), jnp.array([[1, 0]]))
    Array([[1. , 0.7]], dtype=float32)
  """
  fn = "intervene"
  _float(fn, "c_hat", c_hat, min_rank=1)
  _labels01(fn, "c_true", c_true)
  _labels01(fn, "mask", mask)
  V.check_same_shape(fn, "c_hat", c_hat, "c_true", c_true)
  if np.shape(mask) != np.shape(c_hat):
    raise ValueError(f"{fn}: mask must have the shape of c_hat {list(np.shape(c_hat))} (one "
                     f"flag per concept), got {list(np.shape(mask))}")
  if (lo is None) != (hi is None):
    raise ValueError(f"{fn}: lo and hi must be given together (logit space) or not at all, "
                     f"got lo={'set' if lo is not None else None}, "
                     f"hi={'set' if hi is not None else None}")
  v = _as(c_true, c_hat.dtype)
  if lo is not None:
    k = c_hat.shape[-1]
    for arg, a in (("lo", lo), ("hi", hi)):
      _float(fn, arg, a, rank=1)
      V.check_axis_size(fn, arg, a, 0, k, "one per concept")
    v = _as(lo, c_hat.dtype) + v * (_as(hi, c_hat.dtype) - _as(lo, c_hat.dtype))
  m = _as(mask, c_hat.dtype)
  return m * v + (1 - m) * c_hat


def random_group_mask(groups=None, *, n_concepts: int, batch: int, n: int, key
                      ) -> Float[Array, "batch k"]:
  """Intervene on ``n`` random concept groups per example (the "random" policy).

  Args:
    groups: concrete ``int[K]`` group id of each concept (ids ``0..G-1``, all used), or
      ``None`` (every concept its own group).
    n_concepts: ``K``.
    batch: number of examples ``B``.
    n: how many groups to intervene on, ``0 <= n <= G``.
    key: PRNG key (a different draw per example).

  Returns:
    A float32 mask ``[B, K]`` covering exactly ``n`` whole groups per example.

  Example:
    >>> import jax
    >>> from bottleneck_jax.concepts import random_group_mask
    >>> m = random_group_mask((0, 0, 1), n_concepts=3, batch=4, n=1, key=jax.random.key(0))
    >>> bool(((m[:, 0] == m[:, 1])).all())
    True
  """
  fn = "random_group_mask"
  V.check_scalar(fn, "n_concepts", n_concepts, low=1, integer=True)
  V.check_scalar(fn, "batch", batch, low=1, integer=True)
  g, ng = _groups(fn, groups, n_concepts)
  V.check_scalar(fn, "n", n, low=0, high=ng, integer=True)
  key = as_key(key, fn=fn)
  scores = jax.random.uniform(key, (batch, ng))
  return _top_groups(-scores, g, ng, n)


def _top_groups(score, g, ng, n):
  """A concept mask of the ``n`` groups with the smallest ``score`` per row ``[B, G]``."""
  if n == 0:
    return jnp.zeros((score.shape[0], len(g)), jnp.float32)
  order = jnp.argsort(score, axis=-1)[:, :n]
  gmask = jnp.zeros(score.shape, jnp.float32).at[jnp.arange(score.shape[0])[:, None], order].set(1)
  return gmask[:, jnp.asarray(g)]


def uncertainty_group_mask(c_prob: Float[Array, "b k"], groups=None, *, n: int
                           ) -> Float[Array, "b k"]:
  """Intervene on the ``n`` most uncertain concept groups per example.

  A group's certainty is the mean over its concepts of ``|p - 0.5|``; the ``n`` groups with
  the smallest certainty (ties: the lower group id) are intervened on.

  Args:
    c_prob: predicted concept probabilities ``[B, K]``.
    groups: concrete ``int[K]`` group ids or ``None`` (one group per concept).
    n: groups to intervene on, ``0 <= n <= G``.

  Returns:
    A float32 mask ``[B, K]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import uncertainty_group_mask
    >>> uncertainty_group_mask(jnp.array([[0.9, 0.55, 0.1]]), n=1)
    Array([[0., 1., 0.]], dtype=float32)
  """
  fn = "uncertainty_group_mask"
  _float(fn, "c_prob", c_prob, rank=2)
  _check_nonempty(fn, "c_prob", c_prob)
  g, ng = _groups(fn, groups, c_prob.shape[1])
  V.check_scalar(fn, "n", n, low=0, high=ng, integer=True)
  cert = jnp.abs(c_prob.astype(jnp.float32) - 0.5)
  counts = np.bincount(g, minlength=ng).astype(np.float32)
  score = jax.ops.segment_sum(cert.T, jnp.asarray(g), num_segments=ng).T / counts
  # stable argsort keeps the lower group id first among ties
  return _top_groups(score, g, ng, n)


class InterventionCurve(NamedTuple):
  """:func:`intervention_curve`'s result: ``accuracy[len(ns)]`` (mean over draws) and
  ``area``, the trapezoid area under accuracy vs the fraction of groups intervened on,
  divided by the width of that range (a mean accuracy in [0, 1])."""

  accuracy: Array
  area: Array


def intervention_curve(head_fn: Callable, c_hat: Float[Array, "b k"], c_true: Float[Array, "b k"],
                       y: Int[Array, "b"], *, ns: Sequence[int], key=None, groups=None,
                       policy: str = "random", n_draws: int = 5,
                       c_prob: Float[Array, "b k"] | None = None,
                       lo: Float[Array, "k"] | None = None,
                       hi: Float[Array, "k"] | None = None) -> InterventionCurve:
  """Task accuracy after intervening on ``n`` concept groups, for each ``n`` in ``ns``.

  Args:
    head_fn: the task head, ``[B, K] -> [B, M]`` logits (fed the intervened bottleneck).
    c_hat: the predicted bottleneck values ``[B, K]`` (probabilities, or logits with lo/hi).
    c_true: true concepts ``[B, K]``.
    y: labels ``int[B]``.
    ns: increasing numbers of groups, each in ``0..G``.
    key: PRNG key (``policy="random"``).
    groups: concrete ``int[K]`` group ids or ``None``.
    policy: ``"random"`` (mean over ``n_draws`` draws) or ``"uncertainty"`` (deterministic).
    n_draws: random draws per ``n``.
    c_prob: the concept probabilities for ``"uncertainty"`` (default: ``c_hat``).
    lo, hi: logit-space replacement values (see :func:`intervene`).

  Returns:
    :class:`InterventionCurve`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.concepts import intervention_curve
    >>> c = jnp.array([[1, 0], [0, 1]])
    >>> head = lambda z: jnp.stack([z[:, 0] - z[:, 1], z[:, 1] - z[:, 0]], -1)
    >>> r = intervention_curve(head, jnp.full((2, 2), 0.5), c, jnp.array([0, 1]), ns=(0, 2),
    ...                        key=jax.random.key(0))
    >>> r.accuracy.tolist()  # ties at 0.5 pick class 0: half right before intervening
    [0.5, 1.0]
  """
  fn = "intervention_curve"
  if not callable(head_fn):
    raise TypeError(f"{fn}: head_fn must be callable, got {type(head_fn).__name__}")
  _float(fn, "c_hat", c_hat, rank=2)
  _check_nonempty(fn, "c_hat", c_hat, 0, "examples")
  _labels01(fn, "c_true", c_true)
  V.check_same_shape(fn, "c_hat", c_hat, "c_true", c_true)
  V.check_integer(fn, "y", y)
  V.check_shape(fn, "y", y, (c_hat.shape[0],))
  V.check_choice(fn, "policy", policy, ("random", "uncertainty"))
  V.check_scalar(fn, "n_draws", n_draws, low=1, integer=True)
  bsz, k = c_hat.shape
  g, ng = _groups(fn, groups, k)
  if isinstance(ns, (int, np.integer)) or not isinstance(ns, (tuple, list, np.ndarray)):
    raise TypeError(f"{fn}: ns must be a sequence of ints, got {type(ns).__name__}")
  ns = [int(v) for v in ns]
  if not ns or any(v < 0 or v > ng for v in ns) or sorted(ns) != ns:
    raise ValueError(f"{fn}: ns must be a non-empty increasing sequence in 0..{ng}, got {ns}")
  if policy == "uncertainty":
    p = c_hat if c_prob is None else c_prob
    _float(fn, "c_prob", p, rank=2)
    V.check_same_shape(fn, "c_prob", p, "c_hat", c_hat)
  else:
    key = as_key(key, fn=fn)

  def acc(mask):
    z = intervene(c_hat, c_true, mask, lo=lo, hi=hi)
    return jnp.mean((jnp.argmax(head_fn(z), -1) == y).astype(jnp.float32))

  accs = []
  for i, n in enumerate(ns):
    if policy == "uncertainty":
      accs.append(acc(uncertainty_group_mask(p, g, n=n)))
    else:
      keys = jax.random.split(jax.random.fold_in(key, i), n_draws)
      accs.append(jnp.mean(jnp.stack([
          acc(random_group_mask(g, n_concepts=k, batch=bsz, n=n, key=kk)) for kk in keys])))
  accuracy = jnp.stack(accs)
  if len(ns) == 1:
    area = accuracy[0]
  else:
    xs = jnp.asarray(ns, jnp.float32)
    area = jnp.sum((xs[1:] - xs[:-1]) * (accuracy[1:] + accuracy[:-1]) / 2) / (xs[-1] - xs[0])
  return InterventionCurve(accuracy, area)


# --------------------------------------------------------------------------------------------
# metrics


class ConceptAccuracy(NamedTuple):
  """:func:`concept_accuracy`'s result: ``per_concept[K]``, their ``mean`` and the rate at
  which *all* concepts of an example are right (``all_correct``)."""

  per_concept: Array
  mean: Array
  all_correct: Array


def concept_accuracy(c_prob: Float[Array, "n k"], c_true: Float[Array, "n k"], *,
                     threshold: float = 0.5) -> ConceptAccuracy:
  """Concept accuracy of thresholded probabilities.

  Args:
    c_prob: predicted probabilities ``[N, K]`` (``N >= 1``).
    c_true: true concepts (0/1) ``[N, K]``.
    threshold: a concept is predicted present when ``p >= threshold``.

  Returns:
    :class:`ConceptAccuracy`.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import concept_accuracy
    >>> r = concept_accuracy(jnp.array([[0.9, 0.2], [0.4, 0.3]]), jnp.array([[1, 0], [1, 0]]))
    >>> r.per_concept.tolist(), float(r.all_correct)
    ([0.5, 1.0], 0.5)
  """
  fn = "concept_accuracy"
  _float(fn, "c_prob", c_prob, rank=2)
  _check_nonempty(fn, "c_prob", c_prob, 0, "examples")
  _labels01(fn, "c_true", c_true)
  V.check_same_shape(fn, "c_prob", c_prob, "c_true", c_true)
  V.check_scalar(fn, "threshold", threshold, low=0, high=1)
  right = ((c_prob >= threshold) == (_as(c_true, jnp.float32) >= 0.5)).astype(jnp.float32)
  per = jnp.mean(right, axis=0)
  return ConceptAccuracy(per, jnp.mean(per), jnp.mean(jnp.all(right > 0, axis=1)
                                                      .astype(jnp.float32)))


def auc_roc(scores: Float[Array, "*batch n"], labels: Float[Array, "*batch n"]
            ) -> Float[Array, "*batch"]:
  """Area under the ROC curve (Mann-Whitney U / (n_pos n_neg)), ties counted as 1/2.

  Sort based and jit-able: the average rank of each score among all scores (ties share their
  mean rank) gives ``AUC = (sum of positive ranks - n_pos (n_pos + 1) / 2) / (n_pos n_neg)``.
  NaN when a row has no positives or no negatives.

  Args:
    scores: ``[*batch, N]`` scores (higher = more positive).
    labels: ``[*batch, N]`` 0/1 labels.

  Returns:
    ``[*batch]`` AUCs (float32).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import auc_roc
    >>> float(auc_roc(jnp.array([0.1, 0.4, 0.35, 0.8]), jnp.array([0, 0, 1, 1])))
    0.75
  """
  fn = "auc_roc"
  _float(fn, "scores", scores, min_rank=1)
  _labels01(fn, "labels", labels)
  V.check_same_shape(fn, "scores", scores, "labels", labels)
  _check_nonempty(fn, "scores", scores, -1, "examples")
  s = scores.astype(jnp.float32)
  lab = _as(labels, jnp.float32)

  def one(s, lab):
    srt = jnp.sort(s)
    left = jnp.searchsorted(srt, s, side="left")
    right = jnp.searchsorted(srt, s, side="right")
    rank = (left + right + 1).astype(jnp.float32) / 2
    n_pos = jnp.sum(lab)
    n_neg = s.shape[0] - n_pos
    return (jnp.sum(rank * lab) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)

  f = one
  for _ in range(s.ndim - 1):
    f = jax.vmap(f)
  return f(s, lab)


def segment_mean(x: Float[Array, "n d"], segment_ids: Int[Array, "n"], *, num_segments: int
                 ) -> Float[Array, "m d"]:
  """Per-segment (per-class) mean of the rows of ``x``; an empty segment gives zeros.

  Args:
    x: ``[N, D]`` rows.
    segment_ids: ``int[N]`` in ``0..num_segments-1``.
    num_segments: ``M``.

  Returns:
    ``[M, D]`` means.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import segment_mean
    >>> segment_mean(jnp.array([[1.0], [3.0], [5.0]]), jnp.array([0, 0, 2]), num_segments=3)
    Array([[2.],
           [0.],
           [5.]], dtype=float32)
  """
  fn = "segment_mean"
  _float(fn, "x", x, rank=2)
  V.check_integer(fn, "segment_ids", segment_ids)
  V.check_shape(fn, "segment_ids", segment_ids, (x.shape[0],))
  V.check_scalar(fn, "num_segments", num_segments, low=1, integer=True)
  total = jax.ops.segment_sum(x, segment_ids, num_segments=num_segments)
  count = jax.ops.segment_sum(jnp.ones(x.shape[0], x.dtype), segment_ids,
                              num_segments=num_segments)
  return total / jnp.maximum(count, 1)[:, None]


def soft_threshold(w: Float[Array, "*shape"], *, threshold: float) -> Float[Array, "*shape"]:
  """The proximal operator of ``threshold * |w|_1``: ``sign(w) max(|w| - threshold, 0)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import soft_threshold
    >>> soft_threshold(jnp.array([-2.0, 0.5, 3.0]), threshold=1.0)
    Array([-1.,  0.,  2.], dtype=float32)
  """
  fn = "soft_threshold"
  _float(fn, "w", w)
  V.check_scalar(fn, "threshold", threshold, low=0)
  return jnp.sign(w) * jnp.maximum(jnp.abs(w) - _num(threshold), 0)


# --------------------------------------------------------------------------------------------
# NNX module


class CBMOutputs(NamedTuple):
  """What :class:`ConceptBottleneckModel` returns: ``c_logit[B, K]``, the (possibly
  intervened) bottleneck ``z[B, K]`` and ``y_logit[B, M]``."""

  c_logit: Array
  z: Array
  y_logit: Array


class ConceptBottleneckModel(nnx.Module):
  """``x -> [encoder] -> concept logits -> bottleneck -> [intervene] -> head -> class logits``.

  Args:
    d_in: input (or encoder output) features.
    n_concepts: ``K``.
    n_classes: ``M``.
    encoder: optional NNX module ``x -> [B, d_in]`` (e.g. a small CNN).
    head: ``"linear"`` or ``"mlp"`` (one hidden ReLU layer of ``head_hidden`` units).
    head_hidden: hidden width of the MLP head.
    mode: the bottleneck mode (``"prob"``, ``"logit"``, ``"hard"``).
    rngs: ``nnx.Rngs``.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.concepts import ConceptBottleneckModel
    >>> m = ConceptBottleneckModel(5, 3, 2, rngs=nnx.Rngs(0))
    >>> out = m(jnp.ones((4, 5)))
    >>> out.c_logit.shape, out.y_logit.shape
    ((4, 3), (4, 2))
  """

  def __init__(self, d_in: int, n_concepts: int, n_classes: int, *,
               encoder: nnx.Module | None = None, head: str = "linear", head_hidden: int = 64,
               mode: str = "prob", rngs: nnx.Rngs):
    fn = "ConceptBottleneckModel"
    for arg, v in (("d_in", d_in), ("n_concepts", n_concepts), ("n_classes", n_classes),
                   ("head_hidden", head_hidden)):
      V.check_scalar(fn, arg, v, low=1, integer=True)
    V.check_choice(fn, "head", head, ("linear", "mlp"))
    V.check_choice(fn, "mode", mode, MODES)
    self.encoder = encoder
    self.mode = mode
    self.n_concepts = n_concepts
    self.concepts = nnx.Linear(d_in, n_concepts, rngs=rngs)
    if head == "linear":
      self.head_layers = nnx.List([nnx.Linear(n_concepts, n_classes, rngs=rngs)])
    else:
      self.head_layers = nnx.List([nnx.Linear(n_concepts, head_hidden, rngs=rngs),
                                   nnx.Linear(head_hidden, n_classes, rngs=rngs)])

  def head(self, z):
    """The task head on bottleneck values ``z[B, K]`` (use it for independent training on the
    true concepts, and as ``head_fn`` of :func:`intervention_curve`)."""
    for i, layer in enumerate(self.head_layers):
      z = layer(z)
      if i < len(self.head_layers) - 1:
        z = jax.nn.relu(z)
    return z

  def concept_logits(self, x):
    """The concept predictor ``g(x)``."""
    h = self.encoder(x) if self.encoder is not None else x
    return self.concepts(h)

  def __call__(self, x, c_true=None, mask=None, *, lo=None, hi=None) -> CBMOutputs:
    c_logit = self.concept_logits(x)
    z = bottleneck(c_logit, mode=self.mode).z
    if mask is not None:
      if c_true is None:
        raise ValueError("ConceptBottleneckModel: c_true must be given with mask, got None")
      z = intervene(z, c_true, mask, lo=lo, hi=hi)
    return CBMOutputs(c_logit, z, self.head(z))

