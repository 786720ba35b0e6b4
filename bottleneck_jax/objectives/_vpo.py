"""VPO: Value-Incentivized Preference Optimization.

Paper: Shicong Cen, Jincheng Mei, Katayoon Goshvadi, Hanjun Dai, Tong Yang, Sherry Yang, Dale
Schuurmans, Yuejie Chi, Bo Dai, "Value-Incentivized Preference Optimization: A Unified Approach
to Online and Offline RLHF", ICLR 2025 (https://arxiv.org/abs/2405.19320).

Idea. Fitting a reward by maximum likelihood on preferences (Bradley-Terry) and then optimising
a KL-regularised policy against it ignores how uncertain that reward is. VPO regularises the
reward fit by the optimal value it implies, with a sign: optimism (favour rewards under which
the best policy does well; online, it drives exploration) or pessimism (offline, it guards
against over-optimisation)::

  r_hat = argmin_r  l_BT(r; D) - s * alpha * J*(r),      s = +1 online, -1 offline,
  J*(r) = max_pi E[r] - beta KL(pi || pi_ref) = beta E_x log Z_r(x).

With the DPO reparameterisation ``r = beta log pi/pi_ref + beta log Z`` and the paper's reward
calibration ``E_{y ~ pi_cal}[r(x, y)] = 0`` (which fixes the shift of Bradley-Terry rewards),
``beta log Z(x) = -beta E_{y~pi_cal}[log pi(y|x) - log pi_ref(y|x)]``, and the reward problem
becomes a policy loss (``alpha' = alpha beta``, the constant ``pi_ref`` term dropped)::

  L_VPO = E_D[ -log sigma(beta h) ] + s * alpha' * E_{x, y ~ pi_cal}[ log pi(y|x) ],
  h = (log pi(y+) - log ref(y+)) - (log pi(y-) - log ref(y-)).

Online (``s = +1``) the value term pushes probability away from ``pi_cal`` samples; with
``pi_cal = pi_ref`` this is exactly trl's XPO loss (``XPOTrainer._compute_losses``:
``mean(-log sigma(beta h) + alpha * sum_t log pi(y_ref))``). Offline (``s = -1``) it pulls
probability toward ``pi_cal`` samples (an NLL / SFT-style conservative term, the shape of RPO).

Implemented: :func:`vpo_loss` (sequence log-probs in, DPO plus the signed value term out) and
:func:`vpo_tabular_loss` (a softmax policy over ``K`` arms with soft or hard pairwise labels
and an exact expectation over ``pi_cal``, the setting of the paper's bandit analysis). The
policy is whatever model produces the log-probs, so there is no Flax module.

Departures: the paper's exact ``alpha`` values and its online ``alpha`` schedule were not
available here; ``alpha`` is a plain argument (a schedule is the caller's ``alpha`` per step).
``alpha`` here is the paper's ``alpha * beta`` (the coefficient in front of ``E log pi``).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from bottleneck_jax.core import validation as V
from bottleneck_jax.objectives._policy_gradient import _check_pair, _dpo, check_beta, num

_MODES = ("online", "offline")


class VPOOutput(NamedTuple):
  """The result of :func:`vpo_loss` and :func:`vpo_tabular_loss`."""
  loss: Array              # scalar: mean(dpo) + s * alpha * mean(value_reg)
  dpo: Array               # [*batch] DPO losses
  value_reg: Array         # [*batch] E_{y~pi_cal} log pi(y|x) (before the sign and alpha)
  chosen_rewards: Array    # [*batch] beta (log pi(y+) - log ref(y+)), no gradient
  rejected_rewards: Array  # [*batch]


def _sign(mode):
  return 1.0 if mode == "online" else -1.0


def vpo_loss(chosen_logps: Float[Array, "*batch"], rejected_logps: Float[Array, "*batch"],
             ref_chosen_logps: Float[Array, "*batch"],
             ref_rejected_logps: Float[Array, "*batch"],
             cal_logps: Float[Array, "*batch"] | Float[Array, "*batch k"], *,
             beta: float = 0.1, alpha: float = 1e-3,
             mode: Literal["online", "offline"] = "online",
             label_smoothing: float = 0.0,
             loss_type: Literal["sigmoid", "ipo"] = "sigmoid") -> VPOOutput:
  """The VPO policy loss: DPO plus the signed value (calibration) term.

  .. math::
    \\mathcal L = \\frac1B\\sum_b \\Big[\\ell_{DPO}(h_b)
      + s\\,\\alpha\\,\\frac1K\\sum_k \\log\\pi(y^{cal}_{b,k}|x_b)\\Big],
    \\quad s = +1\\ (\\text{online}),\\ -1\\ (\\text{offline})

  Args:
    chosen_logps, rejected_logps: sequence log-probs of the preferred / dispreferred responses
      under the policy, ``[*batch]``.
    ref_chosen_logps, ref_rejected_logps: the same under the reference (constants).
    cal_logps: sequence log-probs under the policy of responses sampled from the calibration
      policy ``pi_cal`` (``pi_ref`` for XPO), ``[*batch]`` or ``K`` samples ``[*batch, K]``.
    beta: DPO inverse temperature, ``>= 0``.
    alpha: weight of the value term, ``>= 0`` (``0`` is DPO).
    mode: ``"online"`` (optimism, ``s = +1``) or ``"offline"`` (pessimism, ``s = -1``).
    label_smoothing, loss_type: as :func:`~bottleneck_jax.objectives.dpo_loss`
      (``"sigmoid"`` or ``"ipo"``, trl XPO's two).

  Returns:
    :class:`VPOOutput`.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import vpo_loss
    >>> x = jnp.array([-3.0, -2.0])
    >>> out = vpo_loss(x, x, x, x, jnp.array([-1.0, -3.0]), alpha=0.1)
    >>> round(float(out.loss), 4)  # log 2 + 0.1 * (-2)
    0.4931

  References:
    Cen et al., ICLR 2025, https://arxiv.org/abs/2405.19320; Xie et al., "Exploratory
    Preference Optimization" (XPO), 2024, https://arxiv.org/abs/2405.21046.
  """
  fn = "vpo_loss"
  _check_pair(fn, chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
  V.check_floating(fn, "cal_logps", cal_logps)
  bs = tuple(chosen_logps.shape)
  if tuple(np.shape(cal_logps)) != bs and (np.ndim(cal_logps) != len(bs) + 1 or tuple(
      np.shape(cal_logps)[:-1]) != bs or np.shape(cal_logps)[-1] < 1):
    raise ValueError(f"{fn}: cal_logps must have shape {list(bs)} or {list(bs)} + [K] with "
                     f"K >= 1, got {list(np.shape(cal_logps))}")
  check_beta(fn, beta)
  V.check_scalar(fn, "alpha", alpha, low=0.0)
  V.check_choice(fn, "mode", mode, _MODES)
  V.check_scalar(fn, "label_smoothing", label_smoothing, low=0.0, high=0.5)
  V.check_choice(fn, "loss_type", loss_type, ("sigmoid", "ipo"))
  if loss_type == "ipo" and not isinstance(beta, jax.core.Tracer) and float(beta) == 0.0:
    raise ValueError(f"{fn}: beta must be > 0 for loss_type='ipo', got {beta}")
  d = _dpo(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, num(beta),
           num(label_smoothing), loss_type)
  cal = jnp.asarray(cal_logps).astype(chosen_logps.dtype)
  value = cal if cal.shape == bs else jnp.mean(cal, axis=-1)
  a = jnp.asarray(num(alpha)).astype(chosen_logps.dtype)
  loss = jnp.mean(d.losses + _sign(mode) * a * value)
  return VPOOutput(loss, d.losses, value, d.chosen_rewards, d.rejected_rewards)


def vpo_tabular_loss(logits: Float[Array, "*batch k"], ref_logits: Float[Array, "*batch k"],
                     pair_idx, pref: Float[Array, "*batch n"],
                     cal_probs: Float[Array, "*batch k"], *, beta: float = 1.0,
                     alpha: float = 0.0,
                     mode: Literal["online", "offline"] = "online") -> VPOOutput:
  """VPO for a softmax policy over ``K`` arms (the bandit setting), exact in ``pi_cal``.

  ``pi = softmax(logits)``, ``pi_ref = softmax(ref_logits)``. Pair ``n`` compares arms
  ``(i, j) = pair_idx[n]``; ``pref[n]`` is the probability (or 0/1 label) that ``i`` wins, so
  the DPO term is ``-p log sigma(beta h) - (1 - p) log sigma(-beta h)`` with
  ``h = (log pi_i - log ref_i) - (log pi_j - log ref_j)``: with ``pref = sigma(r_i - r_j)``
  over all pairs it is the exact expected Bradley-Terry DPO loss, minimised (``alpha = 0``) by
  ``pi* ∝ pi_ref exp(r / beta)``. The value term is ``sum_k cal_probs[k] log pi_k``.

  Args:
    logits: policy logits ``[*batch, K]``.
    ref_logits: reference logits, same shape (constants).
    pair_idx: int ``[N, 2]`` arm pairs (shared over the batch).
    pref: ``[*batch, N]`` win probabilities of the first arm, in ``[0, 1]``.
    cal_probs: ``[*batch, K]`` the calibration policy.
    beta, alpha, mode: as :func:`vpo_loss`.

  Returns:
    :class:`VPOOutput` with per-pair ``dpo`` ``[*batch, N]``, ``value_reg`` ``[*batch]``, and
    ``loss = mean(dpo) + s alpha mean(value_reg)``; rewards are per pair (first, second arm).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import vpo_tabular_loss
    >>> z = jnp.zeros(3)
    >>> out = vpo_tabular_loss(z, z, jnp.array([[0, 1]]), jnp.array([1.0]), z + 1 / 3)
    >>> round(float(out.loss), 4)
    0.6931
  """
  fn = "vpo_tabular_loss"
  V.check_floating(fn, "logits", logits)
  V.check_rank(fn, "logits", logits, min_rank=1)
  if logits.shape[-1] < 2:
    raise ValueError(f"{fn}: logits must have K >= 2 arms on the last axis, got shape "
                     f"{list(logits.shape)}")
  V.check_floating(fn, "ref_logits", ref_logits)
  V.check_same_shape(fn, "ref_logits", ref_logits, "logits", logits)
  V.check_integer(fn, "pair_idx", pair_idx)
  V.check_rank(fn, "pair_idx", pair_idx, 2)
  V.check_axis_size(fn, "pair_idx", pair_idx, -1, 2, "pairs of arm indices")
  if pair_idx.shape[0] < 1:
    raise ValueError(f"{fn}: pair_idx must hold at least one pair, got "
                     f"{V.describe(pair_idx)}")
  if not isinstance(pair_idx, jax.core.Tracer):
    pi = np.asarray(pair_idx)
    if pi.min() < 0 or pi.max() >= logits.shape[-1]:
      raise ValueError(f"{fn}: pair_idx must index arms in [0, {logits.shape[-1]}), got "
                       f"values in [{pi.min()}, {pi.max()}]")
  V.check_floating(fn, "pref", pref)
  V.check_shape(fn, "pref", pref, (*logits.shape[:-1], pair_idx.shape[0]))
  V.check_floating(fn, "cal_probs", cal_probs)
  V.check_same_shape(fn, "cal_probs", cal_probs, "logits", logits)
  check_beta(fn, beta)
  V.check_scalar(fn, "alpha", alpha, low=0.0)
  V.check_choice(fn, "mode", mode, _MODES)
  dt = logits.dtype
  logp = jax.nn.log_softmax(logits, axis=-1)
  ref = jax.lax.stop_gradient(jax.nn.log_softmax(ref_logits.astype(dt), axis=-1))
  i, j = pair_idx[:, 0], pair_idx[:, 1]
  h = (logp[..., i] - ref[..., i]) - (logp[..., j] - ref[..., j])
  b = jnp.asarray(num(beta)).astype(dt)
  p = jax.lax.stop_gradient(pref.astype(dt))
  dpo = -p * jax.nn.log_sigmoid(b * h) - (1 - p) * jax.nn.log_sigmoid(-b * h)
  value = jnp.sum(jax.lax.stop_gradient(cal_probs.astype(dt)) * logp, axis=-1)
  a = jnp.asarray(num(alpha)).astype(dt)
  loss = jnp.mean(dpo) + _sign(mode) * a * jnp.mean(value)
  sg = jax.lax.stop_gradient
  return VPOOutput(loss, dpo, value, sg(b * (logp[..., i] - ref[..., i])),
                   sg(b * (logp[..., j] - ref[..., j])))
