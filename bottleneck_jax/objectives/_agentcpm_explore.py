"""AgentCPM-Explore: reward-signal denoising and parameter-space model fusion.

Paper / code: OpenBMB, "AgentCPM-Explore: an edge-scale (4B) deep-exploration agent", 2026
(OpenBMB/AgentCPM, ``AgentCPM-Explore/``).

Idea. A small agent trained with RL on long tool-use trajectories suffers from noisy rewards
and from forgetting. Two of its remedies are losses / transforms that fit this family:

- **Reward-signal denoising** (``AgentRL/src/rollout/mcp/_rewarding.py``,
  ``apply_mcp_rewarding_logic``), per task group of rollouts:
  (i) if ``max(scores) - min(scores) < 0.1`` the whole group is abandoned (no signal);
  (ii) trajectories that ended in an environment error (``failed_error``) are dropped;
  (iii) *correct* trajectories (score ``> 0``) with ``turns <= min_turns`` (1) are dropped as
  shortcuts / lucky guesses;
  (iv) of the trajectories that hit the length / turn limit (context errors), only
  ``reserve_context_error_count`` (0) are kept, chosen at random (not in efficient mode);
  (v) optional ``balance_sample``: ``failed_error`` wrong records dropped, then a random
  ``min_len + 1`` wrong (score 0) and ``min_len + 2`` right records kept,
  ``min_len = min(#wrong, #right)`` (the off-by-one/two of the code, reproduced);
  (vi) optional ``efficient_rewarding``: a **rank-based zero-sum adjustment** by turn count,
  separately inside the correct (score ``>= 0.5``) and wrong groups: average ranks with ties,
  ``adj = (rank - mean_rank) spread / (n - 1)`` (``spread = 0.2``: within ``+-0.1``), with the
  sign that favours shorter correct and longer wrong trajectories; each subgroup's
  adjustments sum to 0.
- **Parameter-space model fusion** against SFT forgetting (paper; no code released): generic
  pytree merges of checkpoints -- linear ``sum_i w_i theta_i``, task arithmetic
  ``theta_base + sum_i lam_i (theta_i - theta_base)``, and TIES (trim each task vector to its
  top-``density`` magnitudes, elect a sign per parameter, average the agreeing entries), as
  arcee-ai/mergekit and huggingface/peft ``merge_utils`` define them.

Implemented: :func:`group_has_signal`, :func:`denoise_keep_mask`, :func:`balance_keep_mask`,
:func:`rank_zero_sum_adjust` (pure, static shapes, ``vmap`` over task groups);
:func:`merge_linear`, :func:`merge_task_arithmetic`, :func:`merge_ties` (pytrees with a leading
model axis).

Departures: the random choices of the code (which context-error records are kept, which
records survive balancing) come from an explicit ``key``; without a key the first ones in
index order are kept. The exact fusion recipe of AgentCPM-Explore was not available: the three
standard merges are offered, unnormalised by default (``normalize=`` for a convex linear
merge). Contextual information refinement (LLM-summarised history) is host-side text logic and
is not implemented here.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from bottleneck_jax.core import validation as V
from bottleneck_jax.objectives._policy_gradient import nonzero, num


def _check_group(fn, scores, **others):
  V.check_floating(fn, "scores", scores)
  V.check_rank(fn, "scores", scores, min_rank=1)
  if scores.shape[-1] < 1:
    raise ValueError(f"{fn}: scores must have a non-empty group axis (last), got "
                     f"{V.describe(scores)}")
  for name, x in others.items():
    V.check_array(fn, name, x)
    V.check_same_shape(fn, name, x, "scores", scores)


def group_has_signal(scores: Float[Array, "*batch g"], *,
                     min_range: float = 0.1) -> Bool[Array, "*batch"]:
  """A task group carries a learning signal when ``max - min >= min_range``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import group_has_signal
    >>> group_has_signal(jnp.array([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]]))
    Array([False,  True], dtype=bool)
  """
  fn = "group_has_signal"
  _check_group(fn, scores)
  V.check_scalar(fn, "min_range", min_range, low=0.0)
  rng = jnp.max(scores, axis=-1) - jnp.min(scores, axis=-1)
  return rng >= jnp.asarray(num(min_range)).astype(scores.dtype)


def _check_key(fn, key):
  if key is not None and not (hasattr(key, "dtype")
                              and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
                              and key.shape == ()):
    raise TypeError(f"{fn}: key must be None or a single typed PRNG key (jax.random.key), got "
                    f"{V.describe(key)}")


def _random_priority(key, shape):
  """A random order (lower value first), or index order without a key."""
  if key is None:
    return jnp.broadcast_to(jnp.arange(shape[-1], dtype=jnp.float32), shape)
  return jax.random.uniform(key, shape)


def _first_k(select, priority, k):
  """Keep the ``k`` selected entries of smallest priority (per row)."""
  pr = jnp.where(select, priority, jnp.inf)
  order = jnp.sum(pr[..., None, :] < pr[..., :, None], axis=-1)  # rank among selected
  return select & (order < k)


def denoise_keep_mask(scores: Float[Array, "*batch g"], turns, env_error, ctx_error, *,
                      min_turns: int = 1, reserve_context_errors: int = 0,
                      efficient: bool = False, min_range: float = 0.1,
                      key=None) -> Bool[Array, "*batch g"]:
  """Which rollouts of a task group are trained on (AgentCPM-Explore's default rules).

  ``keep = signal & ~env_error & ~(score > 0 & turns <= min_turns) & ctx_rule``, where
  ``signal`` is :func:`group_has_signal` and, unless ``efficient``, only
  ``reserve_context_errors`` of the context-error rollouts are kept (random with ``key``,
  else the first ones).

  Args:
    scores: ``[*batch, G]`` rollout scores.
    turns: ``[*batch, G]`` interaction turns (integer or float).
    env_error: ``[*batch, G]`` the rollout ended in an environment error.
    ctx_error: ``[*batch, G]`` the rollout hit the length / turn limit.
    min_turns: correct rollouts with at most this many turns are dropped.
    reserve_context_errors: context-error rollouts kept per group (non-efficient mode).
    efficient: the ``efficient_rewarding`` mode (context errors are not filtered).
    min_range: see :func:`group_has_signal`.
    key: optional PRNG key for the random choice of kept context errors.

  Returns:
    ``bool [*batch, G]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import denoise_keep_mask
    >>> s = jnp.array([1.0, 1.0, 0.0, 0.0, 0.0])
    >>> t = jnp.array([1, 4, 3, 9, 2])
    >>> env = jnp.array([False, False, False, False, True])
    >>> ctx = jnp.array([False, False, False, True, False])
    >>> denoise_keep_mask(s, t, env, ctx)
    Array([False,  True,  True, False, False], dtype=bool)
  """
  fn = "denoise_keep_mask"
  _check_group(fn, scores, turns=turns, env_error=env_error, ctx_error=ctx_error)
  V.check_scalar(fn, "min_turns", min_turns, integer=True)
  V.check_scalar(fn, "reserve_context_errors", reserve_context_errors, low=0, integer=True)
  V.check_choice(fn, "efficient", efficient, (True, False))
  V.check_scalar(fn, "min_range", min_range, low=0.0)
  _check_key(fn, key)
  signal = group_has_signal(scores, min_range=min_range)[..., None]
  env, ctx = nonzero(env_error), nonzero(ctx_error)
  t = jnp.asarray(turns)
  shortcut = (scores > 0) & (t <= jnp.asarray(min_turns).astype(t.dtype))
  keep = signal & ~env & ~shortcut
  if not efficient:
    kept_ctx = _first_k(ctx, _random_priority(key, scores.shape), int(reserve_context_errors))
    keep = keep & (~ctx | kept_ctx)
  return keep


def balance_keep_mask(scores: Float[Array, "*batch g"], env_error, *, min_range: float = 0.1,
                      key=None) -> Bool[Array, "*batch g"]:
  """AgentCPM-Explore's ``balance_sample``: drop ``failed_error`` wrong rollouts, then keep a
  random ``min_len + 1`` wrong (score 0) and ``min_len + 2`` right (score != 0) rollouts,
  ``min_len = min(#valid wrong, #right)``; groups without signal keep nothing.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import balance_keep_mask
    >>> s = jnp.array([0.0, 0.0, 0.0, 0.0, 1.0])
    >>> balance_keep_mask(s, jnp.zeros(5, bool))  # min_len = 1: 2 wrong, the 1 right
    Array([ True,  True, False, False,  True], dtype=bool)
  """
  fn = "balance_keep_mask"
  _check_group(fn, scores, env_error=env_error)
  V.check_scalar(fn, "min_range", min_range, low=0.0)
  _check_key(fn, key)
  signal = group_has_signal(scores, min_range=min_range)[..., None]
  wrong = (scores == 0) & ~nonzero(env_error)
  right = scores != 0
  min_len = jnp.minimum(jnp.sum(wrong, -1), jnp.sum(right, -1))[..., None]
  pr = _random_priority(key, scores.shape)

  def first(select, k):
    p = jnp.where(select, pr, jnp.inf)
    order = jnp.sum(p[..., None, :] < p[..., :, None], axis=-1)
    return select & (order < k)

  return signal & (first(wrong, min_len + 1) | first(right, min_len + 2))


def rank_zero_sum_adjust(scores: Float[Array, "*batch g"], turns, valid=None, *,
                         threshold: float = 0.5, spread: float = 0.2
                         ) -> Float[Array, "*batch g"]:
  """Rank-based zero-sum score adjustment by turn count (``efficient_rewarding``).

  Inside each subgroup (valid rollouts with ``score >= threshold``, and with
  ``score < threshold``) of ``n >= 2`` rollouts, with average ranks of ``turns`` (ties share
  the mean of their positions)::

    adj = (rank - mean_rank) * spread / (n - 1),   correct: -adj,  wrong: +adj

  so shorter correct and longer wrong trajectories gain; each subgroup's adjustments sum to 0.
  Invalid rollouts are unchanged.

  Args:
    scores: ``[*batch, G]``.
    turns: ``[*batch, G]`` turn counts.
    valid: optional ``[*batch, G]`` rollouts kept by the filters (all when ``None``).
    threshold: correct when ``score >= threshold``.
    spread: the total range of adjustments (``+-spread/2``).

  Returns:
    Adjusted scores ``[*batch, G]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import rank_zero_sum_adjust
    >>> adj = rank_zero_sum_adjust(jnp.ones(4), jnp.array([3, 5, 5, 9])) - 1
    >>> [round(float(a), 4) for a in adj]
    [0.1, 0.0, 0.0, -0.1]
  """
  fn = "rank_zero_sum_adjust"
  others = {"turns": turns} if valid is None else {"turns": turns, "valid": valid}
  _check_group(fn, scores, **others)
  V.check_scalar(fn, "threshold", threshold)
  V.check_scalar(fn, "spread", spread, low=0.0)
  dt = scores.dtype
  ok = jnp.ones(scores.shape, bool) if valid is None else nonzero(valid)
  t = jnp.asarray(turns).astype(dt)
  correct = scores >= jnp.asarray(num(threshold)).astype(dt)
  out = scores
  for sub, sign in ((ok & correct, -1.0), (ok & ~correct, 1.0)):
    same = sub[..., None, :] & sub[..., :, None]            # [.., i, j]: both in subgroup
    less = jnp.sum(same & (t[..., None, :] < t[..., :, None]), -1).astype(dt)
    eq = jnp.sum(same & (t[..., None, :] == t[..., :, None]), -1).astype(dt)
    rank = less + (eq - 1) / 2
    n = jnp.sum(sub, -1, keepdims=True).astype(dt)
    mean_rank = (n - 1) / 2
    step = jnp.asarray(num(spread)).astype(dt) / jnp.maximum(n - 1, 1)
    adj = jnp.where(sub & (n > 1), sign * (rank - mean_rank) * step, 0)
    out = out + adj
  return out


# --------------------------------------------------------------------------------------------
# model fusion
# --------------------------------------------------------------------------------------------


def _check_stack(fn, stack, n_name="weights", n=None):
  leaves = jax.tree.leaves(stack)
  if not leaves:
    raise ValueError(f"{fn}: stack must be a non-empty pytree of arrays")
  for x in leaves:
    V.check_floating(fn, "stack", x)
    V.check_rank(fn, "stack", x, min_rank=1)
  sizes = {x.shape[0] for x in leaves}
  if len(sizes) != 1 or 0 in sizes:
    raise ValueError(f"{fn}: every leaf of stack must have the same leading (model) axis >= 1, "
                     f"got {sorted(sizes)}")
  return sizes.pop()


def _check_weights(fn, name, w, n):
  V.check_floating(fn, name, w)
  V.check_shape(fn, name, w, (n,))


def merge_linear(stack: Any, weights: Float[Array, "n"], *, normalize: bool = False) -> Any:
  """Linear merge ``sum_i w_i theta_i`` of a stacked pytree (leading model axis ``N``).

  ``normalize=True`` divides by ``sum_i w_i`` (mergekit's ``linear`` default); the default is
  unnormalised, so weights that do not sum to 1 (or are negative) mean what they say.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import merge_linear
    >>> merge_linear({"w": jnp.array([[1.0, 2.0], [3.0, 4.0]])}, jnp.array([0.5, 0.5]))
    {'w': Array([2., 3.], dtype=float32)}
  """
  fn = "merge_linear"
  n = _check_stack(fn, stack)
  _check_weights(fn, "weights", weights, n)
  V.check_choice(fn, "normalize", normalize, (True, False))
  w = weights / jnp.sum(weights) if normalize else weights

  def one(x):
    ww = w.astype(x.dtype).reshape((n,) + (1,) * (x.ndim - 1))
    return jnp.sum(ww * x, axis=0)

  return jax.tree.map(one, stack)


def merge_task_arithmetic(base: Any, stack: Any, lam: Float[Array, "n"]) -> Any:
  """Task arithmetic ``theta_base + sum_i lam_i (theta_i - theta_base)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import merge_task_arithmetic
    >>> merge_task_arithmetic({"w": jnp.zeros(2)}, {"w": jnp.array([[1.0, 0.0], [0.0, 2.0]])},
    ...                       jnp.array([1.0, 0.5]))
    {'w': Array([1., 1.], dtype=float32)}
  """
  fn = "merge_task_arithmetic"
  n = _check_stack(fn, stack)
  _check_weights(fn, "lam", lam, n)
  if jax.tree.structure(base) != jax.tree.structure(stack):
    raise ValueError(f"{fn}: base and stack must have the same tree structure")
  for b, s in zip(jax.tree.leaves(base), jax.tree.leaves(stack)):
    V.check_floating(fn, "base", b)
    if tuple(b.shape) != tuple(s.shape[1:]):
      raise ValueError(f"{fn}: base leaves must have the shape of a stack entry, got "
                       f"{list(b.shape)} and {list(s.shape[1:])}")

  def one(b, x):
    ww = lam.astype(x.dtype).reshape((n,) + (1,) * (x.ndim - 1))
    return b + jnp.sum(ww * (x - b.astype(x.dtype)), axis=0)

  return jax.tree.map(one, base, stack)


def merge_ties(base: Any, stack: Any, *, density: float = 0.2,
               weights: Float[Array, "n"] | None = None,
               majority_sign: Literal["total", "frequency"] = "total") -> Any:
  """TIES merging (Yadav et al., 2023; peft ``merge_utils.ties``), added to ``base``.

  Per leaf, with task vectors ``tau_i = theta_i - theta_base``: keep the top
  ``int(density * size)`` magnitudes of each ``tau_i`` (zero the rest); elect the sign
  ``sign(sum_i tau_i)`` (``"total"``) or ``sign(sum_i sign tau_i)`` (``"frequency"``), ``+``
  on ties; then ``delta = sum_i w_i tau_i [sign tau_i = elected] / max(#agreeing, 1)`` and
  the merge is ``theta_base + delta``.

  Args:
    base: the base pytree.
    stack: the fine-tuned models, stacked on a leading axis ``N``.
    density: fraction of entries kept per task vector, in ``(0, 1]``.
    weights: ``[N]`` task weights (ones by default).
    majority_sign: ``"total"`` or ``"frequency"``.

  Returns:
    The merged pytree.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import merge_ties
    >>> base = {"w": jnp.zeros(3)}
    >>> stack = {"w": jnp.array([[1.0, -2.0, 0.1], [3.0, 1.0, 0.2]])}
    >>> merge_ties(base, stack, density=1.0)  # w1: -2 vs +1 -> sign -, only -2 survives
    {'w': Array([ 2.  , -2.  ,  0.15], dtype=float32)}

  References:
    Yadav et al., "TIES-Merging: Resolving Interference When Merging Models", NeurIPS 2023,
    https://arxiv.org/abs/2306.01708.
  """
  fn = "merge_ties"
  n = _check_stack(fn, stack)
  V.check_scalar(fn, "density", density, low=0.0, high=1.0, low_inclusive=False, static=True)
  if weights is not None:
    _check_weights(fn, "weights", weights, n)
  V.check_choice(fn, "majority_sign", majority_sign, ("total", "frequency"))
  if jax.tree.structure(base) != jax.tree.structure(stack):
    raise ValueError(f"{fn}: base and stack must have the same tree structure")
  for b, s in zip(jax.tree.leaves(base), jax.tree.leaves(stack)):
    V.check_floating(fn, "base", b)
    if tuple(b.shape) != tuple(s.shape[1:]):
      raise ValueError(f"{fn}: base leaves must have the shape of a stack entry, got "
                       f"{list(b.shape)} and {list(s.shape[1:])}")

  def one(b, x):
    tau = (x - b.astype(x.dtype)).reshape(n, -1)
    size = tau.shape[1]
    k = int(float(density) * size)
    if k < size:
      _, idx = jax.lax.top_k(jnp.abs(tau), max(k, 1))
      keep = jnp.zeros(tau.shape, bool).at[jnp.arange(n)[:, None], idx].set(True)
      tau = jnp.where(keep & (k > 0), tau, 0)
    sgn = jnp.sign(tau)
    mag = jnp.sum(tau, 0) if majority_sign == "total" else jnp.sum(sgn, 0)
    elected = jnp.where(mag >= 0, 1, -1).astype(tau.dtype)
    agree = sgn == elected
    w = jnp.ones((n,), tau.dtype) if weights is None else weights.astype(tau.dtype)
    mixed = jnp.sum(jnp.where(agree, tau * w[:, None], 0), 0)
    delta = mixed / jnp.maximum(jnp.sum(agree, 0).astype(tau.dtype), 1)
    return b + delta.reshape(b.shape).astype(b.dtype)

  return jax.tree.map(one, base, stack)
