"""ReMix: reincarnated mix-policy proximal policy gradient.

Paper: Jing Liang, Hongyao Tang, Yi Ma, Jinyi Liu, Yan Zheng, Shuyue Hu, Lei Bai, Jianye Hao,
"Squeeze the Soaked Sponge: Efficient Off-policy Reinforcement Finetuning for Large Language
Model", 2025 (https://arxiv.org/abs/2507.06892).

Idea. On-policy RL finetuning (PPO, GRPO) throws every rollout away after one update, and
rollouts are the expensive part. ReMix reuses them with three components:

1. **Mix-policy proximal policy gradient** with a higher update-to-data ratio (UTD ``m``
   gradient passes per rollout batch): each update batch mixes fresh rollouts of ``pi_k`` with
   replayed rollouts of the last ``N_off`` policies ``pi_{k-i}`` (off-policy share ``p``); the
   clipped surrogate of every sample is taken against the **behaviour** policy that generated
   it, with the advantage computed when it was generated::

     L = -E_{i, (s, a) ~ pi_{k-i}}[min(rho_i A, clip(rho_i, 1 - eps, 1 + eps) A)],
     rho_i = pi_theta(a|s) / pi_{k-i}(a|s);

2. **KL-convex constraint**: ``beta [lam KL(pi || pi_base) + (1 - lam) KL(pi || pi_prev)]``,
   a convex combination of the anchor to the base model (stability) and to the precedent
   policy (flexibility);
3. **Policy reincarnation**: at step ``T_r`` the base model is replaced by the current
   Mix-PPG policy and training continues as plain on-policy PPG (``p = 0``, ``m = 1``):
   efficient early learning, stable late improvement.

Implemented: :func:`mix_policy_ppg_loss` (the GRPO/PPO loss of the substrate with per-sample
behaviour log-probs: it *is* the GRPO loss when every sample is on-policy),
:func:`kl_convex` (k1 / k2 / k3 estimators, aggregated like the policy loss so the two add),
:func:`remix_schedule` (the reincarnation schedule) and :class:`ReplayBuffer` (a host-side ring
of past rollout batches with their behaviour log-probs and advantages; not jitted).

Departures: the paper's numbers for ``p``, ``N_off``, ``m``, ``lam`` and ``T_r`` were not
available here; all are arguments without paper defaults (``lam = 0.5`` is a neutral choice).
Whether the paper clips around the behaviour or the current policy was not verified: ratios here
are against the behaviour policy (GePPO-style), which the mix-policy derivation requires.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from bottleneck_jax.core import validation as V
from bottleneck_jax.objectives._policy_gradient import (
    _LOSS_TYPES,
    LossType,
    PolicyGradientLoss,
    _aggregate,
    _as,
    _grpo,
    check_advantages,
    check_like,
    check_logps,
    check_mask,
    nonzero,
    num,
)


def mix_policy_ppg_loss(logp: Float[Array, "*batch t"], behavior_logp: Float[Array, "*batch t"],
                        advantages: Float[Array, "*batch"] | Float[Array, "*batch t"], mask, *,
                        epsilon_low: float = 0.2, epsilon_high: float = 0.2,
                        loss_type: LossType = "grpo",
                        max_completion_length: int | None = None,
                        num_tokens=None) -> PolicyGradientLoss:
  """Mix-policy PPG loss: the clipped surrogate against each sample's behaviour policy.

  The batch may mix fresh and replayed rollouts; each row carries the log-probs of the policy
  that generated it (``behavior_logp``) and the advantage computed then. With every row
  on-policy (``behavior_logp`` = the rollout policy) this is the GRPO loss.

  Args:
    logp: ``[*batch, T]`` log-probs of the sampled tokens under the trained policy.
    behavior_logp: ``[*batch, T]`` the same under each row's behaviour policy (constant).
    advantages: ``[*batch]`` or ``[*batch, T]`` stored advantages (constant).
    mask: ``[*batch, T]`` completion mask.
    epsilon_low, epsilon_high: the clip range around the behaviour ratio.
    loss_type, max_completion_length, num_tokens: see
      :func:`~bottleneck_jax.objectives.aggregate_token_loss`.

  Returns:
    :class:`~bottleneck_jax.objectives.PolicyGradientLoss` (``kl`` is 0: add
    :func:`kl_convex`).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import mix_policy_ppg_loss
    >>> lp = jnp.log(jnp.array([[0.5, 0.5]]))
    >>> float(mix_policy_ppg_loss(lp, lp - 1.0, jnp.array([1.0]), jnp.ones((1, 2))).loss)
    -1.2000000476837158

  References:
    Liang et al., "Squeeze the Soaked Sponge", 2025, https://arxiv.org/abs/2507.06892;
    Queeney et al., "Generalized Proximal Policy Optimization with Sample Reuse", NeurIPS 2021.
  """
  fn = "mix_policy_ppg_loss"
  check_logps(fn, "logp", logp)
  check_like(fn, "behavior_logp", behavior_logp, "logp", logp)
  check_advantages(fn, advantages, logp)
  check_mask(fn, mask, "logp", logp)
  V.check_scalar(fn, "epsilon_low", epsilon_low, low=0.0)
  V.check_scalar(fn, "epsilon_high", epsilon_high, low=0.0)
  V.check_choice(fn, "loss_type", loss_type, _LOSS_TYPES)
  if max_completion_length is not None:
    V.check_scalar(fn, "max_completion_length", max_completion_length, low=1, integer=True)
  if num_tokens is not None:
    V.check_scalar(fn, "num_tokens", num_tokens, low=1)
  return _grpo(logp, behavior_logp, advantages, mask, None, 0.0, num(epsilon_low),
               num(epsilon_high), None, loss_type, max_completion_length, num(num_tokens))


def _kl_tokens(logp, ref, estimator):
  d = jax.lax.stop_gradient(_as(ref, logp)) - logp  # log(ref / pi)
  if estimator == "k1":
    return -d
  if estimator == "k2":
    return 0.5 * jnp.square(d)
  return jnp.exp(d) - d - 1


def kl_convex(logp: Float[Array, "*batch t"], base_logp: Float[Array, "*batch t"],
              prev_logp: Float[Array, "*batch t"], mask, *, lam: float = 0.5,
              estimator: Literal["k1", "k2", "k3"] = "k3", loss_type: LossType = "grpo",
              max_completion_length: int | None = None, num_tokens=None) -> Float[Array, ""]:
  """The KL-convex constraint ``lam KL(pi || pi_base) + (1 - lam) KL(pi || pi_prev)``.

  Per token with Schulman's estimators on samples from ``pi`` (``r = ref / pi``):
  ``k1 = -log r``, ``k2 = (log r)^2 / 2``, ``k3 = r - 1 - log r``; averaged over valid tokens
  with ``loss_type`` (as the policy loss, so ``policy + beta * kl_convex`` is the aggregate of
  the per-token sum, exactly as trl adds ``beta * per_token_kl``).

  Args:
    logp: ``[*batch, T]`` log-probs of the sampled tokens under the trained policy.
    base_logp, prev_logp: under the base (anchor) and the precedent policy (constants).
    mask: ``[*batch, T]`` completion mask.
    lam: weight of the base anchor, in ``[0, 1]``.
    estimator: ``"k1"``, ``"k2"`` or ``"k3"``.
    loss_type, max_completion_length, num_tokens: see
      :func:`~bottleneck_jax.objectives.aggregate_token_loss`.

  Returns:
    The scalar constraint (multiply by ``beta``).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import kl_convex
    >>> lp = jnp.zeros((1, 2))
    >>> float(kl_convex(lp, lp, lp, jnp.ones((1, 2))))
    0.0
  """
  fn = "kl_convex"
  check_logps(fn, "logp", logp)
  check_like(fn, "base_logp", base_logp, "logp", logp)
  check_like(fn, "prev_logp", prev_logp, "logp", logp)
  check_mask(fn, mask, "logp", logp)
  V.check_scalar(fn, "lam", lam, low=0.0, high=1.0)
  V.check_choice(fn, "estimator", estimator, ("k1", "k2", "k3"))
  V.check_choice(fn, "loss_type", loss_type, _LOSS_TYPES)
  if max_completion_length is not None:
    V.check_scalar(fn, "max_completion_length", max_completion_length, low=1, integer=True)
  if num_tokens is not None:
    V.check_scalar(fn, "num_tokens", num_tokens, low=1)
  valid = nonzero(mask)
  lp = jnp.where(valid, logp, 0)
  base = jnp.where(valid, _as(base_logp, logp), 0)
  prev = jnp.where(valid, _as(prev_logp, logp), 0)
  w = jnp.asarray(num(lam)).astype(logp.dtype)
  per_tok = w * _kl_tokens(lp, base, estimator) + (1 - w) * _kl_tokens(lp, prev, estimator)
  return _aggregate(per_tok, mask, loss_type, max_completion_length, num(num_tokens))


class RemixPhase(NamedTuple):
  """The result of :func:`remix_schedule`."""
  p_off: Array        # off-policy share of the update batch at this step
  utd: Array          # gradient passes per rollout batch at this step
  reincarnate: Array  # bool: replace pi_base by the current policy now


def remix_schedule(step, *, reincarnate_at: int, p_off: float, utd: int) -> RemixPhase:
  """ReMix's two phases: Mix-PPG (``p_off``, ``utd``) before step ``reincarnate_at``, plain
  on-policy PPG (``0``, ``1``) from it on; ``reincarnate`` is true at that step only.

  Args:
    step: the update step (int or traced int).
    reincarnate_at: ``T_r >= 0``.
    p_off: off-policy share in ``[0, 1)`` before ``T_r``.
    utd: update-to-data ratio ``>= 1`` before ``T_r``.

  Returns:
    :class:`RemixPhase` of scalars.

  Example:
    >>> from bottleneck_jax.objectives import remix_schedule
    >>> [tuple(map(float, remix_schedule(s, reincarnate_at=2, p_off=0.5, utd=2)))
    ...  for s in (1, 2, 3)]
    [(0.5, 2.0, 0.0), (0.0, 1.0, 1.0), (0.0, 1.0, 0.0)]
  """
  fn = "remix_schedule"
  if not isinstance(step, jax.core.Tracer):
    V.check_scalar(fn, "step", step, low=0, integer=True)
  else:
    V.check_integer(fn, "step", step)
  V.check_scalar(fn, "reincarnate_at", reincarnate_at, low=0, integer=True)
  V.check_scalar(fn, "p_off", p_off, low=0.0, high=1.0, high_inclusive=False)
  V.check_scalar(fn, "utd", utd, low=1, integer=True)
  s = jnp.asarray(step)
  before = s < reincarnate_at
  return RemixPhase(jnp.where(before, jnp.float32(num(p_off)), jnp.float32(0)),
                    jnp.where(before, jnp.int32(utd), jnp.int32(1)),
                    s == reincarnate_at)


class ReplayBuffer:
  """A host-side ring of the rollout batches of the last ``capacity`` policies.

  Each batch is a mapping of arrays with a common leading (rollout) axis holding at least what
  the mix-policy loss needs: the tokens or actions, ``behavior_logp`` and the advantages
  computed when the batch was generated. :meth:`sample` draws rows uniformly from the stored
  batches (policies ``pi_{k-1} .. pi_{k-capacity}``). Not jitted: rollouts live on the host.

  Example:
    >>> import numpy as np
    >>> from bottleneck_jax.objectives import ReplayBuffer
    >>> buf = ReplayBuffer(capacity=2)
    >>> for k in range(3):
    ...   buf.add({"action": np.full(4, k), "behavior_logp": np.zeros(4)})
    >>> len(buf), sorted(set(buf.sample(np.random.default_rng(0), 8)["action"].tolist()))
    (2, [1, 2])
  """

  def __init__(self, capacity: int):
    V.check_scalar("ReplayBuffer", "capacity", capacity, low=1, integer=True)
    self.capacity = int(capacity)
    self._batches: deque[dict[str, np.ndarray]] = deque(maxlen=self.capacity)

  def __len__(self) -> int:
    return len(self._batches)

  def add(self, batch: Mapping[str, Any]) -> None:
    """Stores one policy's rollout batch (the oldest is dropped when full)."""
    b = {k: np.asarray(v) for k, v in batch.items()}
    sizes = {v.shape[0] if v.ndim else -1 for v in b.values()}
    if len(sizes) != 1 or -1 in sizes or not b:
      raise ValueError(f"ReplayBuffer.add: batch must be a non-empty mapping of arrays with a "
                       f"common leading axis, got shapes {[v.shape for v in b.values()]}")
    if self._batches and set(b) != set(self._batches[0]):
      raise ValueError(f"ReplayBuffer.add: batch must have the keys {sorted(self._batches[0])}, "
                       f"got {sorted(b)}")
    self._batches.append(b)

  def clear(self) -> None:
    self._batches.clear()

  def sample(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """``n`` rows drawn uniformly (with replacement) from all stored rows."""
    V.check_scalar("ReplayBuffer.sample", "n", n, low=0, integer=True)
    if not self._batches:
      raise ValueError("ReplayBuffer.sample: the buffer is empty")
    rows = {k: np.concatenate([b[k] for b in self._batches]) for k in self._batches[0]}
    idx = rng.integers(0, len(next(iter(rows.values()))), n)
    return {k: v[idx] for k, v in rows.items()}
