"""BRL: balanced representation learning for long-tailed skeleton action recognition — the
action-aware class-balanced loss, its detached schedule and the label-mixing exploration.

Paper: "Balanced Representation Learning for Long-tailed Skeleton-based Action Recognition",
2023 (https://arxiv.org/abs/2308.14024; code ``brl/``, pyskl-based). On long-tailed skeleton data
the representation learnt by plain cross-entropy is biased to the head classes; BRL balances it
with three pieces, implemented here as pure functions:

**Action-aware loss** (``TwostageAALoss`` / ``MixAAHead``): a class-balanced cross-entropy whose
effective-number factor grows with the class size,

.. math::
  \\beta_c = \\upsilon + \\lambda\\,\\frac{n_c - n_{min}}{n_{max} - n_{min}},\\qquad
  w_c \\propto \\frac{1 - \\beta_c}{1 - \\beta_c^{\\,n_c}},\\qquad \\sum_c w_c = C

(``υ = 0.99``, ``λ = 0.0099``, so ``β_c ∈ [0.99, 0.9999]``; :func:`action_aware_weights`),
used as the per-class weights of a PyTorch-style weighted cross-entropy
``Σ_i w_{y_i} CE_i / Σ_i w_{y_i}`` (:func:`weighted_ce`).

**Detached schedule** (deferred re-weighting, :func:`drw_class_weights`): uniform weights until
``(epoch + 1) // step_epoch >= 1`` (``step_epoch = 20`` of 24 epochs), the action-aware weights
after.

**Spatial-temporal action exploration** (``rebalance_mix_up``): for a fraction of the batch the
lower-body joints of a sample are replaced by a random partner's (:func:`body_part_mix`) and the
loss mixes both labels, ``α·CE(y_a) + (1 − α)·CE(y_b)`` (:func:`mixed_label_ce`), with
``α = 0`` if ``n_a > 3 n_b``, ``1`` if ``n_b > 3 n_a``, else ``0.64`` (the upper body's share of
the joints, ``16/25``; :func:`rebalance_alpha`).

:func:`longtail_counts` gives the long-tailed split sizes ``n_c = int(n_max · imb^{c/(C−1)})``
(NTU60-LT: ``n_max = 600``, ``imb = 0.01``).

Departures from the reference code (both reproduced and documented, the fix is the default):

- ``update_weight`` flips the stored β list in place (``β ← 1 − β``) and the same list is passed
  every epoch, so after the switch the weights alternate every epoch between the intended
  class-balanced ones and nearly uniform ones (counts [600, 60, 6]: epoch 19 →
  [0.0265, 0.3331, 2.6404], epoch 20 → [1.0063, 0.9973, 0.9964], epoch 21 → balanced again).
  ``drw_class_weights(..., faithful_alternation=True)`` reproduces it; the default gives the
  intended weights at every epoch after the switch. The reference's ``betas[(epoch + 1) // 20]``
  would also overflow after epoch 38; here every later epoch uses the action-aware weights.
- ``rebalance_mix_up`` sets one α for the whole batch from the last chosen pair (and mutates the
  index list it iterates over); here α is per sample.
- When all classes have the same size the reference divides by zero; here ``β_c = υ``.
- The GCN backbones (ST-GCN++, CTR-GCN …) and the multi-stream ensemble are out of scope.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from bottleneck_jax.core import validation as V


def longtail_counts(num_classes: int, n_max: int, imb: float) -> Int[Array, " c"]:
  """Long-tailed class sizes ``n_c = int(n_max · imb^{c / (C − 1)})``, ``c = 0..C−1``.

  Args:
    num_classes: ``C >= 1``.
    n_max: the largest class size ``>= 1``.
    imb: the imbalance ratio ``n_min / n_max`` in ``(0, 1]``.

  Returns:
    int32 ``[C]``.

  Example:
    >>> from bottleneck_jax.objectives import longtail_counts
    >>> longtail_counts(3, 600, 0.01).tolist()
    [600, 60, 6]
  """
  fn = "longtail_counts"
  V.check_scalar(fn, "num_classes", num_classes, low=1, high=10**6, integer=True, static=True)
  V.check_scalar(fn, "n_max", n_max, low=1, high=2**31 - 1, integer=True, static=True)
  V.check_scalar(fn, "imb", imb, low=0.0, high=1.0, low_inclusive=False, static=True)
  c = int(num_classes)
  expo = [k / (c - 1) if c > 1 else 0.0 for k in range(c)]
  # a small relative tolerance so that e.g. 600 * 0.01 ** 0.5 = 59.999... gives 60
  vals = [max(int(n_max * float(imb) ** e * (1 + 1e-12)), 1) for e in expo]
  return jnp.asarray(vals, jnp.int32)


def _check_counts(fn: str, counts) -> None:
  V.check_rank(fn, "counts", counts, 1)
  dt = jnp.result_type(counts)
  if not (jnp.issubdtype(dt, jnp.integer) or jnp.issubdtype(dt, jnp.floating)):
    raise TypeError(f"{fn}: counts must be integer or floating class sizes, got "
                    f"{V.describe(counts)}")
  if counts.shape[0] < 1:
    raise ValueError(f"{fn}: counts must hold at least one class, got {V.describe(counts)}")
  if not isinstance(counts, jax.core.Tracer) and np.any(np.asarray(counts) < 1):
    raise ValueError(f"{fn}: counts must be >= 1 for every class, got {np.asarray(counts)}")


def _aa_weights(counts, upsilon, lam):
  n = counts.astype(jnp.float32)
  n_min, n_max = jnp.min(n), jnp.max(n)
  beta = upsilon + lam * (n - n_min) / jnp.maximum(n_max - n_min, 1.0)
  return beta, n


def _normalise(w):
  return w / jnp.sum(w) * w.shape[0]


def action_aware_weights(counts: Int[Array, " c"] | Float[Array, " c"], *,
                         upsilon: float = 0.99, lam: float = 0.0099) -> Float[Array, " c"]:
  """BRL's action-aware class weights (class-balanced with a per-class β), summing to ``C``.

  .. math::
    \\beta_c = \\upsilon + \\lambda\\,\\frac{n_c - n_{min}}{n_{max} - n_{min}},\\qquad
    w_c = C\\,\\frac{(1 - \\beta_c)/(1 - \\beta_c^{n_c})}
              {\\sum_j (1 - \\beta_j)/(1 - \\beta_j^{n_j})}

  Args:
    counts: ``[C]`` training-set class sizes ``>= 1``.
    upsilon: the smallest β, ``0 <= υ < 1``.
    lam: the β range, ``λ >= 0`` with ``υ + λ < 1``.

  Returns:
    float32 ``[C]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import action_aware_weights
    >>> [round(float(w), 4) for w in action_aware_weights(jnp.array([600, 60, 6]))]
    [0.0265, 0.3331, 2.6404]

  References:
    BRL ``brl/models/losses/losses.py::TwostageAALoss``; Cui et al., "Class-Balanced Loss Based
    on Effective Number of Samples", CVPR 2019.
  """
  fn = "action_aware_weights"
  _check_counts(fn, counts)
  V.check_scalar(fn, "upsilon", upsilon, low=0.0, high=1.0, high_inclusive=False, static=True)
  V.check_scalar(fn, "lam", lam, low=0.0, static=True)
  if float(upsilon) + float(lam) >= 1.0:
    raise ValueError(f"{fn}: upsilon + lam must be < 1 (β < 1), got {upsilon} + {lam}")
  beta, n = _aa_weights(counts, float(upsilon), float(lam))
  return _normalise((1 - beta) / (1 - jnp.power(beta, n)))


def drw_class_weights(epoch: int, counts: Int[Array, " c"] | Float[Array, " c"], *,
                      step_epoch: int = 20, faithful_alternation: bool = False,
                      upsilon: float = 0.99, lam: float = 0.0099) -> Float[Array, " c"]:
  """The detached (deferred re-weighting) schedule of BRL's loss weights at a 0-based ``epoch``.

  Uniform (all ones) while ``(epoch + 1) // step_epoch == 0``, the
  :func:`action_aware_weights` from then on. With ``faithful_alternation=True`` the reference's
  in-place β flip is reproduced: from the first re-weighted epoch ``e_0 = step_epoch − 1`` on,
  epochs with odd ``epoch − e_0`` use ``β_c ← 1 − β_c`` (nearly uniform weights).

  Args:
    epoch: 0-based epoch ``>= 0`` (a Python int).
    counts: ``[C]`` class sizes.
    step_epoch: epochs of the uniform stage (``(epoch + 1) // step_epoch``), ``>= 1``.
    faithful_alternation: reproduce the reference's alternation (see the module docstring).
    upsilon, lam: as for :func:`action_aware_weights`.

  Returns:
    float32 ``[C]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import drw_class_weights
    >>> counts = jnp.array([600, 60, 6])
    >>> drw_class_weights(18, counts)
    Array([1., 1., 1.], dtype=float32)
    >>> [round(float(w), 4) for w in drw_class_weights(20, counts)]
    [0.0265, 0.3331, 2.6404]
    >>> [round(float(w), 4) for w in drw_class_weights(20, counts, faithful_alternation=True)]
    [1.0063, 0.9973, 0.9964]

  References:
    BRL ``TwostageAALoss.reset_epoch`` / ``update_weight``; Cao et al., "Learning Imbalanced
    Datasets with Label-Distribution-Aware Margin Loss", NeurIPS 2019 (DRW).
  """
  fn = "drw_class_weights"
  V.check_scalar(fn, "epoch", epoch, low=0, integer=True, static=True)
  V.check_scalar(fn, "step_epoch", step_epoch, low=1, integer=True, static=True)
  _check_counts(fn, counts)
  V.check_scalar(fn, "upsilon", upsilon, low=0.0, high=1.0, high_inclusive=False, static=True)
  V.check_scalar(fn, "lam", lam, low=0.0, static=True)
  if float(upsilon) + float(lam) >= 1.0:
    raise ValueError(f"{fn}: upsilon + lam must be < 1 (β < 1), got {upsilon} + {lam}")
  if (int(epoch) + 1) // int(step_epoch) == 0:
    return jnp.ones(counts.shape, jnp.float32)
  beta, n = _aa_weights(counts, float(upsilon), float(lam))
  if faithful_alternation and (int(epoch) - (int(step_epoch) - 1)) % 2 == 1:
    beta = 1 - beta
  return _normalise((1 - beta) / (1 - jnp.power(beta, n)))


def _check_logits_labels(fn, logits, labels, arg="labels"):
  V.check_rank(fn, "logits", logits, 2)
  V.check_floating(fn, "logits", logits)
  V.check_rank(fn, arg, labels, 1)
  V.check_integer(fn, arg, labels)
  if labels.shape[0] != logits.shape[0]:
    raise ValueError(f"{fn}: {arg} must have one label per row of logits ({logits.shape[0]}), "
                     f"got {V.describe(labels)}")
  if logits.shape[1] < 1:
    raise ValueError(f"{fn}: logits must have at least one class, got {V.describe(logits)}")


def _check_w(fn, w, c):
  V.check_rank(fn, "w", w, 1)
  V.check_floating(fn, "w", w)
  if w.shape[0] != c:
    raise ValueError(f"{fn}: w must have one weight per class ({c}), got {V.describe(w)}")


def _nll_and_weight(logp, labels, w):
  # one-hot products rather than gathers: they keep a batch-sharded layout on any mesh
  onehot = jax.nn.one_hot(labels.astype(jnp.int32), logp.shape[-1], dtype=logp.dtype)
  return -jnp.sum(onehot * logp, axis=-1), jnp.sum(onehot * w.astype(logp.dtype), axis=-1)


def _weighted_mean_ce(logp, labels, w):
  nll, wy = _nll_and_weight(logp, labels, w)
  return jnp.sum(wy * nll), jnp.sum(wy)


def weighted_ce(logits: Float[Array, "b c"], labels: Int[Array, " b"], w: Float[Array, " c"]
                ) -> Float[Array, ""]:
  """Class-weighted cross-entropy with PyTorch's normalisation (``F.cross_entropy(weight=w)``).

  .. math::
    L = \\frac{\\sum_i w_{y_i}\\,(-\\log \\operatorname{softmax}(z_i)_{y_i})}{\\sum_i w_{y_i}}

  Args:
    logits: ``[B, C]``.
    labels: ``[B]`` integer labels in ``[0, C)``.
    w: ``[C]`` class weights.

  Returns:
    A scalar (0 when ``Σ_i w_{y_i} = 0``, e.g. an empty batch).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import weighted_ce
    >>> weighted_ce(jnp.zeros((2, 3)), jnp.array([0, 2]), jnp.array([1.0, 1.0, 3.0])).round(4)
    Array(1.0986, dtype=float32)
  """
  fn = "weighted_ce"
  _check_logits_labels(fn, logits, labels)
  _check_w(fn, w, logits.shape[1])
  num, den = _weighted_mean_ce(jax.nn.log_softmax(logits, axis=-1), labels, w)
  return jnp.where(den != 0, num / jnp.where(den != 0, den, 1), jnp.zeros((), num.dtype))


def mixed_label_ce(logits: Float[Array, "b c"], labels_a: Int[Array, " b"],
                   labels_b: Int[Array, " b"], alpha: Float[Array, " b"],
                   w: Float[Array, " c"]) -> Float[Array, ""]:
  """The label-mixed, class-weighted loss of BRL's action exploration, per-sample ``α``.

  .. math::
    L = \\frac{\\sum_i \\alpha_i w_{a_i} \\mathrm{CE}_i(a_i)}{\\sum_i w_{a_i}}
      + \\frac{\\sum_i (1 - \\alpha_i) w_{b_i} \\mathrm{CE}_i(b_i)}{\\sum_i w_{b_i}}

  which is ``α·weighted_ce(y_a) + (1 − α)·weighted_ce(y_b)`` when ``α`` is one number, as in the
  reference.

  Args:
    logits: ``[B, C]``.
    labels_a: ``[B]`` labels of the samples.
    labels_b: ``[B]`` labels of their partners.
    alpha: ``[B]`` mixing coefficients (e.g. :func:`rebalance_alpha`).
    w: ``[C]`` class weights.

  Returns:
    A scalar.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import mixed_label_ce
    >>> z = jnp.array([[2.0, 0.0]]); w = jnp.ones(2)
    >>> mixed_label_ce(z, jnp.array([0]), jnp.array([1]), jnp.array([1.0]), w).round(4)
    Array(0.1269, dtype=float32)
  """
  fn = "mixed_label_ce"
  _check_logits_labels(fn, logits, labels_a, "labels_a")
  _check_logits_labels(fn, logits, labels_b, "labels_b")
  V.check_rank(fn, "alpha", alpha, 1)
  V.check_floating(fn, "alpha", alpha)
  if alpha.shape[0] != logits.shape[0]:
    raise ValueError(f"{fn}: alpha must have one value per row of logits ({logits.shape[0]}), "
                     f"got {V.describe(alpha)}")
  _check_w(fn, w, logits.shape[1])
  logp = jax.nn.log_softmax(logits, axis=-1)
  a = alpha.astype(logp.dtype)
  nll_a, wa = _nll_and_weight(logp, labels_a, w)
  nll_b, wb = _nll_and_weight(logp, labels_b, w)
  den_a, den_b = jnp.sum(wa), jnp.sum(wb)
  ta = jnp.where(den_a != 0, jnp.sum(a * wa * nll_a) / jnp.where(den_a != 0, den_a, 1), 0)
  tb = jnp.where(den_b != 0, jnp.sum((1 - a) * wb * nll_b) / jnp.where(den_b != 0, den_b, 1), 0)
  return ta + tb


def rebalance_alpha(n_a: Int[Array, "*b"] | Float[Array, "*b"],
                    n_b: Int[Array, "*b"] | Float[Array, "*b"], *, alpha: float = 0.64,
                    im_k: float = 3.0) -> Float[Array, "*b"]:
  """Per-sample mixing coefficient of BRL's exploration: favour the tail class of each pair.

  ``α = 0`` if ``n_a > im_k · n_b`` (the sample's class is much larger: keep the partner's label),
  ``α = 1`` if ``n_b > im_k · n_a``, else ``alpha`` (``16/25``, the upper body's share).

  Args:
    n_a: class sizes of the samples' labels.
    n_b: class sizes of the partners' labels, same shape.
    alpha: the balanced-pair coefficient in ``[0, 1]``.
    im_k: the imbalance factor ``>= 1``.

  Returns:
    float32, shape of ``n_a``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import rebalance_alpha
    >>> [round(a, 2) for a in rebalance_alpha(jnp.array([600, 6, 60]),
    ...                                       jnp.array([6, 600, 40])).tolist()]
    [0.0, 1.0, 0.64]
  """
  fn = "rebalance_alpha"
  for arg, x in (("n_a", n_a), ("n_b", n_b)):
    V.check_array(fn, arg, x)
    dt = jnp.result_type(x)
    if not (jnp.issubdtype(dt, jnp.integer) or jnp.issubdtype(dt, jnp.floating)):
      raise TypeError(f"{fn}: {arg} must be integer or floating class sizes, got "
                      f"{V.describe(x)}")
  V.check_same_shape(fn, "n_a", n_a, "n_b", n_b)
  V.check_scalar(fn, "alpha", alpha, low=0.0, high=1.0, static=True)
  V.check_scalar(fn, "im_k", im_k, low=1.0, static=True)
  na = jnp.asarray(n_a).astype(jnp.float32)
  nb = jnp.asarray(n_b).astype(jnp.float32)
  k = float(im_k)
  return jnp.where(na > k * nb, 0.0, jnp.where(nb > k * na, 1.0, float(alpha))).astype(
      jnp.float32)


def body_part_mix(x: Float[Array, "n m t v c"], partner: Int[Array, " n"],
                  lower_idx: Int[Array, " k"] | list[int], apply: Bool[Array, " n"]
                  ) -> Float[Array, "n m t v c"]:
  """Replaces the joints ``lower_idx`` of the samples with ``apply`` by their partner's.

  ``x'[i, :, :, j] = x[partner[i], :, :, j]`` for ``j`` in ``lower_idx`` when ``apply[i]``,
  else ``x[i]`` unchanged (skeletons laid out ``[N, M persons, T frames, V joints, C coords]``).

  Args:
    x: ``[N, M, T, V, C]`` skeleton sequences.
    partner: ``[N]`` partner index of each sample, in ``[0, N)``.
    lower_idx: the joints to swap (NTU: the 9 lower-body joints), values in ``[0, V)``.
    apply: ``[N]`` which samples are mixed (the reference mixes a ``1/16`` fraction).

  Returns:
    The mixed ``[N, M, T, V, C]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import body_part_mix
    >>> x = jnp.arange(2 * 3.0).reshape(2, 1, 1, 3, 1)
    >>> body_part_mix(x, jnp.array([1, 0]), [2], jnp.array([True, False]))[:, 0, 0, :, 0]
    Array([[0., 1., 5.],
           [3., 4., 5.]], dtype=float32)

  References:
    BRL ``brl/models/recognizers/mixup_recognizergcn.py::rebalance_mix_up``.
  """
  fn = "body_part_mix"
  V.check_rank(fn, "x", x, 5)
  V.check_floating(fn, "x", x)
  V.check_rank(fn, "partner", partner, 1)
  V.check_integer(fn, "partner", partner)
  V.check_rank(fn, "apply", apply, 1)
  V.check_bool_or_int(fn, "apply", apply)
  n, v = x.shape[0], x.shape[3]
  for arg, a in (("partner", partner), ("apply", apply)):
    if a.shape[0] != n:
      raise ValueError(f"{fn}: {arg} must have one entry per sample ({n}), got "
                       f"{V.describe(a)}")
  idx = np.asarray(lower_idx) if isinstance(lower_idx, (list, tuple)) else lower_idx
  V.check_rank(fn, "lower_idx", idx, 1)
  V.check_integer(fn, "lower_idx", idx)
  if not isinstance(idx, jax.core.Tracer) and np.size(idx) and (
      np.min(idx) < 0 or np.max(idx) >= v):
    raise ValueError(f"{fn}: lower_idx must be joint indices in [0, {v}), got "
                     f"{np.asarray(idx).tolist()}")
  if not isinstance(partner, jax.core.Tracer) and n and (
      int(jnp.min(partner)) < 0 or int(jnp.max(partner)) >= n):
    raise ValueError(f"{fn}: partner must hold sample indices in [0, {n}), got "
                     f"{np.asarray(partner).tolist()}")
  joint = jnp.zeros((v,), bool).at[jnp.asarray(idx, jnp.int32)].set(True)
  swap = apply.astype(bool)[:, None, None, None, None] & joint[None, None, None, :, None]
  return jnp.where(swap, x[partner.astype(jnp.int32)], x)


__all__ = ["action_aware_weights", "body_part_mix", "drw_class_weights", "longtail_counts",
           "mixed_label_ce", "rebalance_alpha", "weighted_ce"]
