"""The policy-gradient and preference substrate of the objectives family.

Most RL / preference papers of this family are small changes to the same few losses: the
PPO/GRPO clipped surrogate over per-token log-probabilities, a KL penalty to a reference policy,
GRPO/RLOO group advantages, and the DPO loss. They live here once, as pure functions over
per-token log-probs and masks, and the paper modules (VPO, HICRA, ReMix, ...) build on them.

Shapes. Token-level functions take ``logp``, ``old_logp``, ``ref_logp`` of shape
``[*batch, T]`` and a ``mask`` of the same shape (``bool``, integer or floating 0/1);
advantages are per sequence ``[*batch]`` or per token ``[*batch, T]``. Group functions take the
group axis last, ``rewards: [*prompts, G]``, so they work on one group and under ``jax.vmap``
over prompts alike (or on a flat ``[B]`` batch with ``group_size=``).

Equations (``rho = exp(logp - old_logp)``, ``A`` the advantage):

- clipped surrogate, per token (PPO; GRPO with asymmetric clip as in DAPO, optional two-sided
  cap ``delta`` on the unclipped ratio as in trl's ``GRPOConfig.delta``)::

    l_t = -min(min(rho, delta) * A, clip(rho, 1 - eps_low, 1 + eps_high) * A)

- k3 KL estimator of ``KL(pi || pi_ref)`` (Schulman's unbiased low-variance estimator, trl's
  ``per_token_kl``): ``exp(ref - logp) - (ref - logp) - 1`` (>= 0);
- loss averaging (trl ``GRPOTrainer._compute_loss`` ``loss_type``):
  ``grpo``: mean over valid tokens per sequence, then mean over sequences;
  ``bnpo``: mean over all valid tokens of the batch;
  ``dr_grpo``: sum over valid tokens / (``B * max_completion_length``) (Dr. GRPO);
  ``dapo``: sum over valid tokens / number of valid tokens in the *global* batch
  (``num_tokens``, e.g. summed over devices and gradient-accumulation steps);
- GRPO advantages: ``(r - mean_G r) / (std_G r + epsilon)`` with the Bessel-corrected standard
  deviation and ``epsilon = 1e-4`` as trl; ``scale="batch"`` divides by the standard deviation
  of the whole batch, ``scale="none"`` only centres (Dr. GRPO);
- RLOO advantages: ``r_i - (sum_j r_j - r_i) / (G - 1)`` (leave-one-out baseline);
- DPO: ``h = (log pi(y+) - log ref(y+)) - (log pi(y-) - log ref(y-))``,
  ``sigmoid``: ``-(1 - ls) log sigma(beta h) - ls log sigma(-beta h)`` (conservative DPO with
  label smoothing ``ls``), ``ipo``: ``(h - 1 / (2 beta))^2``, ``hinge``: ``relu(1 - beta h)``;
  implicit rewards ``beta (log pi - log ref)``.

Design: masks are applied with ``jnp.where`` (no boolean indexing), so every function jits
with static shapes; a fully masked sequence contributes 0 (denominators are ``max(count, 1)``);
a group of identical rewards has advantage 0, not NaN. Advantages and the old / reference /
behaviour log-probs are wrapped in ``stop_gradient`` (as rlax's ``use_stop_gradient=True``): the
gradient flows through ``logp`` only.

Peers these functions are checked against (numerically, by NumPy transcriptions in the tests):
huggingface/trl ``GRPOTrainer._compute_loss`` and its advantage block, ``RLOOTrainer``,
``DPOTrainer.dpo_loss`` (trl <= 0.28); google-deepmind/rlax
``clipped_surrogate_pg_loss`` (no mask, symmetric epsilon, plain mean over its rank-1 input).

Departures: none in the formulas. ``group_advantages`` returns exactly 0 for a group of
identical rewards for any ``epsilon`` (trl returns ``0 / (0 + 1e-4) = 0`` too); a group of one
(``G = 1``), whose Bessel-corrected deviation is undefined (NaN in torch), is refused.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from bottleneck_jax.core import validation as V

LossType = Literal["grpo", "bnpo", "dr_grpo", "dapo"]
_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")

# --------------------------------------------------------------------------------------------
# validation helpers (shared by the paper modules of this family)
# --------------------------------------------------------------------------------------------


def check_logps(fn: str, arg: str, x, *, min_rank: int = 1) -> None:
  """``x`` is a floating array of rank >= ``min_rank``."""
  V.check_floating(fn, arg, x)
  V.check_rank(fn, arg, x, min_rank=min_rank)


def check_like(fn: str, arg: str, x, ref_arg: str, ref) -> None:
  """``x`` is a floating array with the shape of ``ref``."""
  V.check_floating(fn, arg, x)
  V.check_same_shape(fn, arg, x, ref_arg, ref)


def check_mask(fn: str, mask, ref_arg: str, ref) -> None:
  """``mask`` is a bool / integer / floating array with the shape of ``ref``."""
  V.check_array(fn, "mask", mask)
  dt = jnp.dtype(mask.dtype) if hasattr(mask, "dtype") else jnp.result_type(mask)
  if not (dt == jnp.bool_ or jnp.issubdtype(dt, jnp.integer) or jnp.issubdtype(dt, jnp.floating)):
    raise TypeError(f"{fn}: mask must be a boolean, integer or floating 0/1 mask, got {dt.name}")
  V.check_same_shape(fn, "mask", mask, ref_arg, ref)


def check_advantages(fn: str, adv, logp) -> None:
  """``adv`` is floating, shape ``logp.shape`` (per token) or ``logp.shape[:-1]`` (per seq)."""
  V.check_floating(fn, "advantages", adv)
  shape, ls = tuple(np.shape(adv)), tuple(logp.shape)
  if shape not in (ls, ls[:-1]):
    raise ValueError(f"{fn}: advantages must have shape {list(ls[:-1])} (per sequence) or "
                     f"{list(ls)} (per token), got {list(shape)}")


def check_beta(fn: str, beta, arg: str = "beta") -> None:
  V.check_scalar(fn, arg, beta, low=0.0)


def num(x):
  """A Python / NumPy scalar as a Python float (a huge int must not overflow int32)."""
  if isinstance(x, (int, float, np.number)) and not isinstance(x, bool):
    return float(x)
  return x


def nonzero(mask):
  """A 0/1 (bool, integer or floating) mask as ``bool``."""
  m = jnp.asarray(mask)
  return m if m.dtype == jnp.bool_ else m != jnp.zeros((), m.dtype)


def _as(x, like):
  return jnp.asarray(x).astype(like.dtype)


def _mask_f(mask, dtype):
  return jnp.asarray(mask).astype(dtype)


def _per_token_adv(adv, logp):
  adv = jax.lax.stop_gradient(_as(adv, logp))
  return adv[..., None] if adv.ndim == logp.ndim - 1 else adv


# --------------------------------------------------------------------------------------------
# token-level losses
# --------------------------------------------------------------------------------------------


def seq_logps(token_logps: Float[Array, "*batch t"], mask) -> Float[Array, "*batch"]:
  """The log-probability of each sequence: ``sum_t token_logps * mask``.

  Padding positions are zeroed with ``jnp.where`` (a ``-inf`` there does not leak).

  Args:
    token_logps: per-token log-probabilities, ``[*batch, T]``.
    mask: 1 on completion tokens, 0 on padding; same shape.

  Returns:
    ``[*batch]`` sequence log-probabilities (as trl's DPO ``concatenated_forward``).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import seq_logps
    >>> seq_logps(jnp.array([[-1., -2., -9.]]), jnp.array([[1, 1, 0]]))
    Array([-3.], dtype=float32)
  """
  fn = "seq_logps"
  check_logps(fn, "token_logps", token_logps)
  check_mask(fn, mask, "token_logps", token_logps)
  m = nonzero(mask)
  return jnp.sum(jnp.where(m, token_logps, 0), axis=-1)


def k3_kl(logp: Float[Array, "*batch t"],
          ref_logp: Float[Array, "*batch t"]) -> Float[Array, "*batch t"]:
  """Per-token k3 estimator of ``KL(pi || pi_ref)``: ``exp(ref - logp) - (ref - logp) - 1``.

  Unbiased for samples from ``pi`` and non-negative; ``ref_logp`` is treated as a constant.

  Args:
    logp: log-probabilities of the sampled tokens under the trained policy, ``[*batch, T]``.
    ref_logp: the same tokens under the reference policy, same shape.

  Returns:
    ``[*batch, T]`` per-token KL estimates (trl ``GRPOTrainer`` ``per_token_kl``).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import k3_kl
    >>> float(k3_kl(jnp.array([-1.0]), jnp.array([-1.0]))[0])
    0.0
  """
  fn = "k3_kl"
  check_logps(fn, "logp", logp)
  check_like(fn, "ref_logp", ref_logp, "logp", logp)
  d = jax.lax.stop_gradient(_as(ref_logp, logp)) - logp
  return jnp.exp(d) - d - 1


def clipped_pg_per_token(logp: Float[Array, "*batch t"], old_logp: Float[Array, "*batch t"],
                         advantages: Float[Array, "*batch"] | Float[Array, "*batch t"], *,
                         epsilon_low: float = 0.2, epsilon_high: float = 0.2,
                         delta: float | None = None,
                         mask=None) -> Float[Array, "*batch t"]:
  """Per-token clipped surrogate loss of PPO / GRPO.

  .. math::
    \\ell_t = -\\min\\big(\\min(\\rho_t, \\delta) A_t,\\;
      \\mathrm{clip}(\\rho_t, 1 - \\epsilon_{low}, 1 + \\epsilon_{high}) A_t\\big),
    \\qquad \\rho_t = e^{\\log\\pi_\\theta - \\log\\pi_{old}}.

  Args:
    logp: log-probabilities of the sampled tokens under the trained policy, ``[*batch, T]``.
    old_logp: under the policy that generated them (behaviour policy), same shape; constant.
    advantages: ``[*batch]`` (one per sequence) or ``[*batch, T]``; constant.
    epsilon_low, epsilon_high: clip range ``[1 - epsilon_low, 1 + epsilon_high]`` (DAPO's
      clip-higher when ``epsilon_high > epsilon_low``).
    delta: optional upper cap on the unclipped ratio (trl ``GRPOConfig.delta``, two-sided
      clipping), ``> 1 + epsilon_high`` in practice.
    mask: optional; masked tokens get loss 0 and their ratio is computed on 0 (no overflow).

  Returns:
    ``[*batch, T]`` per-token losses; average them with :func:`aggregate_token_loss`.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import clipped_pg_per_token
    >>> lp = jnp.log(jnp.array([[0.5, 0.9]]))
    >>> clipped_pg_per_token(lp, lp, jnp.array([1.0]))
    Array([[-1., -1.]], dtype=float32)

  References:
    Schulman et al., "Proximal Policy Optimization Algorithms", 2017,
    https://arxiv.org/abs/1707.06347; Shao et al., "DeepSeekMath", 2024,
    https://arxiv.org/abs/2402.03300; rlax ``clipped_surrogate_pg_loss``.
  """
  fn = "clipped_pg_per_token"
  check_logps(fn, "logp", logp)
  check_like(fn, "old_logp", old_logp, "logp", logp)
  check_advantages(fn, advantages, logp)
  V.check_scalar(fn, "epsilon_low", epsilon_low, low=0.0)
  V.check_scalar(fn, "epsilon_high", epsilon_high, low=0.0)
  if delta is not None:
    V.check_scalar(fn, "delta", delta, low=0.0)
  if mask is not None:
    check_mask(fn, mask, "logp", logp)
  return _clipped_pg(logp, old_logp, advantages, num(epsilon_low), num(epsilon_high), num(delta),
                     mask)


def _clipped_pg(logp, old_logp, advantages, epsilon_low, epsilon_high, delta, mask):
  adv = _per_token_adv(advantages, logp)
  log_ratio = logp - jax.lax.stop_gradient(_as(old_logp, logp))
  if mask is not None:
    log_ratio = jnp.where(nonzero(mask), log_ratio, 0)
  ratio = jnp.exp(log_ratio)
  clipped = jnp.clip(ratio, 1 - epsilon_low, 1 + epsilon_high)
  if delta is not None:
    ratio = jnp.minimum(ratio, delta)
  loss = -jnp.minimum(ratio * adv, clipped * adv)
  if mask is not None:
    loss = jnp.where(nonzero(mask), loss, 0)
  return loss


def aggregate_token_loss(per_token_loss: Float[Array, "*batch t"], mask, *,
                         loss_type: LossType = "grpo",
                         max_completion_length: int | None = None,
                         num_tokens=None) -> Float[Array, ""]:
  """Averages a per-token loss over valid tokens, in one of trl's four ways.

  - ``"grpo"``: ``mean_b [sum_t l m / max(sum_t m, 1)]`` (each sequence weighs the same);
  - ``"bnpo"``: ``sum l m / max(sum m, 1)`` (each token of the batch weighs the same);
  - ``"dr_grpo"``: ``sum l m / (B * max_completion_length)`` (no length bias; Dr. GRPO);
  - ``"dapo"``: ``sum l m / num_tokens``, ``num_tokens`` the number of valid tokens in the
    *global* batch (all devices and accumulation steps); defaults to this batch's count,
    where it equals ``"bnpo"``.

  ``B`` is the product of the leading axes. A fully masked sequence contributes 0.

  Args:
    per_token_loss: ``[*batch, T]``.
    mask: same shape, 1 on valid tokens.
    loss_type: one of ``"grpo"``, ``"bnpo"``, ``"dr_grpo"``, ``"dapo"``.
    max_completion_length: the ``dr_grpo`` constant; defaults to ``T``.
    num_tokens: the ``dapo`` normaliser (>= 1 when given).

  Returns:
    The scalar loss.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import aggregate_token_loss
    >>> l, m = jnp.array([[1., 3.], [2., 0.]]), jnp.array([[1, 1], [1, 0]])
    >>> float(aggregate_token_loss(l, m)), float(aggregate_token_loss(l, m, loss_type="bnpo"))
    (2.0, 2.0)
    >>> float(aggregate_token_loss(l, m, loss_type="dr_grpo"))
    1.5
  """
  fn = "aggregate_token_loss"
  check_logps(fn, "per_token_loss", per_token_loss)
  check_mask(fn, mask, "per_token_loss", per_token_loss)
  V.check_choice(fn, "loss_type", loss_type, _LOSS_TYPES)
  if max_completion_length is not None:
    V.check_scalar(fn, "max_completion_length", max_completion_length, low=1, integer=True)
  if num_tokens is not None:
    V.check_scalar(fn, "num_tokens", num_tokens, low=1)
  return _aggregate(per_token_loss, mask, loss_type, max_completion_length, num(num_tokens))


def _aggregate(per_token_loss, mask, loss_type, max_completion_length, num_tokens):
  x = per_token_loss
  m = _mask_f(mask, x.dtype)
  lm = jnp.where(nonzero(mask), x, 0) * m
  if loss_type == "grpo":
    per_seq = jnp.sum(lm, axis=-1) / jnp.maximum(jnp.sum(m, axis=-1), 1)
    return jnp.mean(per_seq) if per_seq.size else jnp.zeros((), x.dtype)
  total = jnp.sum(lm)
  if loss_type == "bnpo":
    return total / jnp.maximum(jnp.sum(m), 1)
  if loss_type == "dr_grpo":
    length = x.shape[-1] if max_completion_length is None else max_completion_length
    return total / max(int(np.prod(x.shape[:-1])) * length, 1)
  denom = jnp.sum(m) if num_tokens is None else _as(num_tokens, x)
  return total / jnp.maximum(denom, 1)


class PolicyGradientLoss(NamedTuple):
  """The result of :func:`grpo_loss`."""
  loss: Array            # scalar, aggregated
  per_token_loss: Array  # [*batch, T], surrogate + beta * KL, 0 on padding
  kl: Array              # scalar, mean k3 KL over valid tokens (0 when no reference)
  clip_ratio: Array      # scalar, fraction of valid tokens whose ratio was clipped


def grpo_loss(logp: Float[Array, "*batch t"], old_logp: Float[Array, "*batch t"],
              advantages: Float[Array, "*batch"] | Float[Array, "*batch t"], mask, *,
              ref_logp: Float[Array, "*batch t"] | None = None, beta: float = 0.0,
              epsilon_low: float = 0.2, epsilon_high: float = 0.2,
              delta: float | None = None, loss_type: LossType = "grpo",
              max_completion_length: int | None = None,
              num_tokens=None) -> PolicyGradientLoss:
  """The GRPO / PPO policy loss: clipped surrogate + ``beta`` k3 KL, averaged over tokens.

  .. math::
    \\mathcal L = \\operatorname{agg}_{b,t}\\big[\\ell^{clip}_{b,t}
      + \\beta\\,\\mathrm{KL}_3(\\pi_\\theta \\| \\pi_{ref})_{b,t}\\big]

  as trl's ``GRPOTrainer._compute_loss`` (``old_logp == logp`` for the single-update
  on-policy case; then the ratio is 1 and the gradient is ``-A grad logp``).

  Args:
    logp, old_logp: ``[*batch, T]`` per-token log-probs (trained / behaviour policy).
    advantages: ``[*batch]`` or ``[*batch, T]`` (e.g. :func:`group_advantages`).
    mask: ``[*batch, T]`` completion mask.
    ref_logp: reference log-probs for the KL term (required when ``beta > 0``).
    beta: KL coefficient, ``>= 0``.
    epsilon_low, epsilon_high, delta: see :func:`clipped_pg_per_token`.
    loss_type, max_completion_length, num_tokens: see :func:`aggregate_token_loss`.

  Returns:
    :class:`PolicyGradientLoss` ``(loss, per_token_loss, kl, clip_ratio)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import grpo_loss
    >>> lp = jnp.full((2, 3), -1.0)
    >>> out = grpo_loss(lp, lp, jnp.array([1.0, -1.0]), jnp.ones((2, 3)))
    >>> float(out.loss), float(out.clip_ratio)
    (0.0, 0.0)
  """
  fn = "grpo_loss"
  check_logps(fn, "logp", logp)
  check_like(fn, "old_logp", old_logp, "logp", logp)
  check_advantages(fn, advantages, logp)
  check_mask(fn, mask, "logp", logp)
  check_beta(fn, beta)
  V.check_scalar(fn, "epsilon_low", epsilon_low, low=0.0)
  V.check_scalar(fn, "epsilon_high", epsilon_high, low=0.0)
  if delta is not None:
    V.check_scalar(fn, "delta", delta, low=0.0)
  V.check_choice(fn, "loss_type", loss_type, _LOSS_TYPES)
  if max_completion_length is not None:
    V.check_scalar(fn, "max_completion_length", max_completion_length, low=1, integer=True)
  if num_tokens is not None:
    V.check_scalar(fn, "num_tokens", num_tokens, low=1)
  if ref_logp is not None:
    check_like(fn, "ref_logp", ref_logp, "logp", logp)
  elif not isinstance(beta, jax.core.Tracer) and float(beta) != 0.0:
    raise ValueError(f"{fn}: ref_logp must be given when beta > 0, got beta={beta}")
  return _grpo(logp, old_logp, advantages, mask, ref_logp, num(beta), num(epsilon_low),
               num(epsilon_high), num(delta), loss_type, max_completion_length, num(num_tokens))


def _grpo(logp, old_logp, advantages, mask, ref_logp, beta, epsilon_low, epsilon_high, delta,
          loss_type, max_completion_length, num_tokens):
  valid = nonzero(mask)
  m = valid.astype(logp.dtype)
  per_tok = _clipped_pg(logp, old_logp, advantages, epsilon_low, epsilon_high, delta, mask)
  if ref_logp is not None:
    d = jnp.where(valid, jax.lax.stop_gradient(_as(ref_logp, logp)) - logp, 0)
    kl = jnp.exp(d) - d - 1
    per_tok = per_tok + _as(beta, logp) * kl
    kl_mean = jnp.sum(kl * m) / jnp.maximum(jnp.sum(m), 1)
  else:
    kl_mean = jnp.zeros((), logp.dtype)
  loss = _aggregate(per_tok, mask, loss_type, max_completion_length, num_tokens)
  ratio = jnp.exp(jnp.where(valid, logp - _as(old_logp, logp), 0))
  adv = jnp.broadcast_to(_per_token_adv(advantages, logp), logp.shape)
  clipped = ((ratio < 1 - epsilon_low) & (adv < 0)) | ((ratio > 1 + epsilon_high) & (adv > 0))
  clip_ratio = jnp.sum(jnp.where(valid, clipped, False).astype(logp.dtype)) / jnp.maximum(
      jnp.sum(m), 1)
  return PolicyGradientLoss(loss, per_tok, kl_mean, jax.lax.stop_gradient(clip_ratio))


# --------------------------------------------------------------------------------------------
# group advantages
# --------------------------------------------------------------------------------------------


def _grouped(fn, rewards, group_size):
  V.check_floating(fn, "rewards", rewards)
  if group_size is None:
    V.check_rank(fn, "rewards", rewards, min_rank=1)
    if rewards.shape[-1] < 2:
      raise ValueError(f"{fn}: rewards must have a group axis (last) of size >= 2, got shape "
                       f"{list(rewards.shape)}")
    return rewards, None
  V.check_scalar(fn, "group_size", group_size, low=2, integer=True)
  V.check_rank(fn, "rewards", rewards, 1)
  n = rewards.shape[0]
  if n == 0 or n % group_size:
    raise ValueError(f"{fn}: group_size must divide the batch size, got group_size="
                     f"{group_size} and {n} rewards")
  return rewards.reshape(n // group_size, group_size), rewards.shape


def _safe_std(centred, axis, keepdims):
  """Bessel-corrected standard deviation with a finite gradient at 0 (constant groups)."""
  n = centred.size if axis is None else centred.shape[axis]
  var = jnp.sum(jnp.square(centred), axis=axis, keepdims=keepdims) / (n - 1)
  pos = var > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, var, 1)), 0)


def group_advantages(rewards: Float[Array, "*prompts g"], *,
                     scale: Literal["group", "batch", "none"] = "group",
                     epsilon: float = 1e-4,
                     group_size: int | None = None) -> Float[Array, "*prompts g"]:
  """GRPO group-relative advantages (trl ``GRPOTrainer``).

  .. math::
    A_i = \\frac{r_i - \\bar r}{\\operatorname{std}(r) + \\epsilon}

  with the mean over the group and the Bessel-corrected standard deviation over the group
  (``scale="group"``), over the whole batch (``"batch"``), or no division (``"none"``, Dr.
  GRPO). A group of identical rewards gets advantage 0.

  Args:
    rewards: ``[*prompts, G]`` with the group axis last (``G >= 2``), or a flat ``[B]`` with
      ``group_size`` (consecutive blocks of ``group_size`` are groups, as trl's
      ``view(-1, num_generations)``).
    scale: ``"group"``, ``"batch"`` or ``"none"``.
    epsilon: added to the standard deviation (trl: ``1e-4``).
    group_size: see ``rewards``; must divide ``B``.

  Returns:
    Advantages of the shape of ``rewards``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import group_advantages
    >>> group_advantages(jnp.array([1.0, 0.0, 1.0, 0.0]), epsilon=0.0).round(4)
    Array([ 0.866, -0.866,  0.866, -0.866], dtype=float32)

  References:
    Shao et al., "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language
    Models", 2024, https://arxiv.org/abs/2402.03300; Liu et al., "Understanding R1-Zero-Like
    Training: A Critical Perspective" (Dr. GRPO), 2025, https://arxiv.org/abs/2503.20783.
  """
  fn = "group_advantages"
  V.check_choice(fn, "scale", scale, ("group", "batch", "none"))
  V.check_scalar(fn, "epsilon", epsilon, low=0.0)
  r, flat = _grouped(fn, rewards, group_size)
  centred = r - jnp.mean(r, axis=-1, keepdims=True)
  if scale == "group":
    std = _safe_std(centred, axis=-1, keepdims=True)
  elif scale == "batch":
    std = _safe_std(r - jnp.mean(r), axis=None, keepdims=False)
  else:
    std = None
  if std is not None:
    # 0 / (0 + epsilon) = 0; the where keeps epsilon = 0 finite on constant groups.
    den = std + _as(num(epsilon), r)
    centred = jnp.where(den > 0, centred / jnp.where(den > 0, den, 1), 0)
  return centred if flat is None else centred.reshape(flat)


def rloo_advantages(rewards: Float[Array, "*prompts g"], *,
                    group_size: int | None = None) -> Float[Array, "*prompts g"]:
  """REINFORCE leave-one-out advantages: ``r_i - (sum_j r_j - r_i) / (G - 1)``.

  Equal to ``G / (G - 1) (r_i - mean r)`` (trl ``RLOOTrainer``).

  Args:
    rewards: ``[*prompts, G]`` (``G >= 2``), or flat ``[B]`` with ``group_size``.
    group_size: see ``rewards``; must divide ``B``.

  Returns:
    Advantages of the shape of ``rewards``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import rloo_advantages
    >>> rloo_advantages(jnp.array([1.0, 0.0, 0.0]))
    Array([ 1. , -0.5, -0.5], dtype=float32)

  References:
    Ahmadian et al., "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from
    Human Feedback in LLMs", 2024, https://arxiv.org/abs/2402.14740.
  """
  fn = "rloo_advantages"
  r, flat = _grouped(fn, rewards, group_size)
  g = r.shape[-1]
  adv = r - (jnp.sum(r, axis=-1, keepdims=True) - r) / (g - 1)
  return adv if flat is None else adv.reshape(flat)


# --------------------------------------------------------------------------------------------
# DPO
# --------------------------------------------------------------------------------------------


class DPOOutput(NamedTuple):
  """The result of :func:`dpo_loss`."""
  loss: Array              # scalar, mean over the batch
  losses: Array            # [*batch]
  chosen_rewards: Array    # [*batch], beta * (log pi(y+) - log ref(y+)), no gradient
  rejected_rewards: Array  # [*batch]


def _check_pair(fn, chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps):
  V.check_floating(fn, "chosen_logps", chosen_logps)
  V.check_rank(fn, "chosen_logps", chosen_logps, min_rank=1)
  check_like(fn, "rejected_logps", rejected_logps, "chosen_logps", chosen_logps)
  check_like(fn, "ref_chosen_logps", ref_chosen_logps, "chosen_logps", chosen_logps)
  check_like(fn, "ref_rejected_logps", ref_rejected_logps, "chosen_logps", chosen_logps)
  if chosen_logps.size == 0:
    raise ValueError(f"{fn}: chosen_logps must hold at least one pair, got "
                     f"{V.describe(chosen_logps)}")


def dpo_logits(chosen_logps: Float[Array, "*batch"], rejected_logps: Float[Array, "*batch"],
               ref_chosen_logps: Float[Array, "*batch"],
               ref_rejected_logps: Float[Array, "*batch"]) -> Float[Array, "*batch"]:
  """The DPO margin ``(log pi(y+) - log ref(y+)) - (log pi(y-) - log ref(y-))``.

  Reference log-probs are constants.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import dpo_logits
    >>> x = jnp.array([-1.0])
    >>> dpo_logits(x, x - 2, x, x)
    Array([2.], dtype=float32)
  """
  fn = "dpo_logits"
  _check_pair(fn, chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
  return _dpo_logits(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)


def _dpo_logits(pc, pr, rc, rr):
  sg = jax.lax.stop_gradient
  return (pc - sg(_as(rc, pc))) - (_as(pr, pc) - sg(_as(rr, pc)))


def dpo_loss(chosen_logps: Float[Array, "*batch"], rejected_logps: Float[Array, "*batch"],
             ref_chosen_logps: Float[Array, "*batch"],
             ref_rejected_logps: Float[Array, "*batch"], *, beta: float = 0.1,
             label_smoothing: float = 0.0,
             loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid") -> DPOOutput:
  """Direct Preference Optimization loss (trl ``DPOTrainer.dpo_loss``, trl <= 0.28).

  With ``h`` the :func:`dpo_logits` margin:

  - ``"sigmoid"``: ``-(1 - ls) log sigma(beta h) - ls log sigma(-beta h)`` (DPO; conservative
    DPO when ``label_smoothing = ls > 0``);
  - ``"ipo"``: ``(h - 1 / (2 beta))^2`` (IPO);
  - ``"hinge"``: ``max(0, 1 - beta h)`` (SLiC).

  Args:
    chosen_logps, rejected_logps: sequence log-probs under the policy, ``[*batch]`` (e.g.
      :func:`seq_logps`).
    ref_chosen_logps, ref_rejected_logps: the same under the reference policy (constants).
    beta: inverse temperature, ``>= 0`` (``> 0`` for ``"ipo"``).
    label_smoothing: probability that a label is flipped, in ``[0, 0.5]``.
    loss_type: ``"sigmoid"``, ``"ipo"`` or ``"hinge"``.

  Returns:
    :class:`DPOOutput` ``(loss, losses, chosen_rewards, rejected_rewards)``; ``loss`` is the
    batch mean of ``losses``; rewards are ``beta (log pi - log ref)`` without gradient.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import dpo_loss
    >>> x = jnp.array([-3.0])
    >>> round(float(dpo_loss(x, x, x, x).loss), 4)  # log 2 at the reference policy
    0.6931

  References:
    Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a Reward
    Model", NeurIPS 2023, https://arxiv.org/abs/2305.18290; Azar et al., "A General Theoretical
    Paradigm to Understand Learning from Human Preferences" (IPO), 2023,
    https://arxiv.org/abs/2310.12036.
  """
  fn = "dpo_loss"
  _check_pair(fn, chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
  check_beta(fn, beta)
  V.check_scalar(fn, "label_smoothing", label_smoothing, low=0.0, high=0.5)
  V.check_choice(fn, "loss_type", loss_type, ("sigmoid", "ipo", "hinge"))
  if loss_type == "ipo" and not isinstance(beta, jax.core.Tracer) and float(beta) == 0.0:
    raise ValueError(f"{fn}: beta must be > 0 for loss_type='ipo', got {beta}")
  return _dpo(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, num(beta),
              num(label_smoothing), loss_type)


def _dpo(pc, pr, rc, rr, beta, label_smoothing, loss_type):
  h = _dpo_logits(pc, pr, rc, rr)
  b = _as(beta, h)
  if loss_type == "sigmoid":
    ls = _as(label_smoothing, h)
    losses = -jax.nn.log_sigmoid(b * h) * (1 - ls) - jax.nn.log_sigmoid(-b * h) * ls
  elif loss_type == "ipo":
    losses = jnp.square(h - 1 / (2 * b))
  else:
    losses = jax.nn.relu(1 - b * h)
  sg = jax.lax.stop_gradient
  chosen = sg(b * (pc - _as(rc, pc)))
  rejected = sg(b * (_as(pr, pc) - _as(rr, pc)))
  return DPOOutput(jnp.mean(losses), losses, chosen, rejected)
