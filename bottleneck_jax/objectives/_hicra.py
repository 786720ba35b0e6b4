"""HICRA: hierarchy-aware credit assignment on planning tokens.

Paper: Haozhe Wang, Qixin Xu, Che Liu, Junhong Wu, Fangzhen Lin, Wenhu Chen, "Emergent
Hierarchical Reasoning in LLMs through Reinforcement Learning", 2025
(https://arxiv.org/abs/2509.03646).

Idea. RL on reasoning traces shows a two-phase dynamic: the model first masters low-level
execution tokens (their perplexity drops), then the bottleneck becomes *planning*: the
strategic phrases ("let's try a different approach", "notice that") that steer a solution.
GRPO spreads credit uniformly over all tokens; HICRA (Hierarchy-Aware Credit Assignment)
concentrates it on planning tokens, those inside a *strategic gram* (SG, a 3-5-gram of a
curated list), on top of GRPO's group advantages::

  A_HICRA(i, t) = A(i, t) + alpha |A(i, t)| 1[t in S_i]  =  A (1 + alpha sign(A)) on planning
  tokens, A elsewhere (alpha = 0.2),

so credit on planning tokens of successful rollouts grows and blame on planning tokens of
failed rollouts shrinks. Exploration is measured by the *semantic entropy*, the Shannon entropy
of the frequencies of distinct SGs across a batch of rollouts, ``H = -sum_k p_k log p_k``
(token-level entropy is misleading: it falls while SG diversity rises).

Implemented:
- :func:`sg_planning_mask` / :func:`sg_match_counts`: a sliding-window matcher of a padded SG
  table against token ids (static shapes, ``jnp.where`` only; hits are dilated over the gram's
  positions with a cumulative sum);
- :func:`hicra_advantages`: the paper's form above;
- :func:`hicra_verl_advantages`: the variant the authors' VeRL recipe runs, as ported to trl
  (``HICRATrainer.modify_advantages_hicra``): per GRPO group, responses whose mean advantage is
  positive **and** whose length exceeds the group's mean length get ``A *= 1 + alpha`` on their
  high-entropy tokens (entropy above the per-sequence ``(1 - k)`` order statistic, ``k = 0.3``);
  with planning tokens, ``A *= 1 + alpha sign(A)`` on ``high_entropy | planning``; a group
  without a positive response is left unchanged (planning tokens included);
- :func:`semantic_entropy`.

The trl port's history holds a fix of a silent no-op: ``advantages[group_mask][token_mask] *=
...`` multiplies a *copy* (chained boolean indexing), so nothing was amplified; the VeRL code
the port transcribes has the same chained pattern. The functional ``jnp.where`` form here cannot
have that bug, and a regression test checks that the amplified set is non-empty and changes the
advantages.

Departures: in :func:`hicra_verl_advantages`, high-entropy tokens are also restricted to valid
(unmasked) positions; the port also amplifies padding positions, whose loss is masked anyway.
The SG list itself (the paper's n-gram clustering) is data, not code: callers pass token-id
tables.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.objectives._policy_gradient import check_mask, nonzero, num


def _check_table(fn, sg_table):
  V.check_integer(fn, "sg_table", sg_table)
  V.check_rank(fn, "sg_table", sg_table, 2)
  if sg_table.shape[0] < 1 or sg_table.shape[1] < 1:
    raise ValueError(f"{fn}: sg_table must have at least one gram of length >= 1, got "
                     f"{V.describe(sg_table)}")
  if not isinstance(sg_table, jax.core.Tracer):
    valid = np.asarray(sg_table) >= 0
    if not valid[:, 0].all() or np.any(valid[:, 1:] & ~valid[:, :-1]):
      raise ValueError(f"{fn}: sg_table rows must hold ids >= 0 then -1 padding (at least one "
                       f"id per row)")


def _starts(token_ids, sg_table):
  """``hits[..., t, s]``: gram ``s`` starts at position ``t``; and the gram lengths."""
  t_len = token_ids.shape[-1]
  n_max = sg_table.shape[1]
  table = sg_table.astype(token_ids.dtype)
  lengths = jnp.sum(sg_table >= 0, axis=1)  # [S]
  hits = jnp.zeros((*token_ids.shape, sg_table.shape[0]), bool)
  for n in range(1, min(n_max, t_len) + 1):
    w = t_len - n + 1
    windows = jnp.stack([token_ids[..., i:i + w] for i in range(n)], axis=-1)  # [..., W, n]
    eq = jnp.all(windows[..., :, None, :] == table[None, :, :n], axis=-1)     # [..., W, S]
    eq = eq & (lengths == n)
    pad = [(0, 0)] * (eq.ndim - 2) + [(0, n - 1), (0, 0)]
    hits = hits | jnp.pad(eq, pad)
  return hits, lengths


def sg_match_counts(token_ids: Int[Array, "*batch t"],
                    sg_table: Int[Array, "s n"]) -> Int[Array, "*batch s"]:
  """How many times each strategic gram occurs in each sequence.

  Args:
    token_ids: ``[*batch, T]`` integer token ids (padding ids must not collide with grams).
    sg_table: ``[S, Nmax]`` gram token ids, each row ``n`` ids then ``-1`` padding.

  Returns:
    ``int32 [*batch, S]`` occurrence counts (overlapping occurrences count separately).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import sg_match_counts
    >>> sg_match_counts(jnp.array([5, 1, 2, 3, 9, 1, 2, 3]), jnp.array([[1, 2, 3], [9, 9, -1]]))
    Array([2, 0], dtype=int32)
  """
  fn = "sg_match_counts"
  V.check_integer(fn, "token_ids", token_ids)
  V.check_rank(fn, "token_ids", token_ids, min_rank=1)
  _check_table(fn, sg_table)
  hits, _ = _starts(jnp.asarray(token_ids), jnp.asarray(sg_table))
  return jnp.sum(hits, axis=-2, dtype=jnp.int32)


def sg_planning_mask(token_ids: Int[Array, "*batch t"],
                     sg_table: Int[Array, "s n"]) -> Bool[Array, "*batch t"]:
  """Planning-token mask: the positions covered by any occurrence of a strategic gram.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import sg_planning_mask
    >>> sg_planning_mask(jnp.array([5, 1, 2, 3, 9, 1, 2, 3]), jnp.array([[1, 2, 3]])).astype(int)
    Array([0, 1, 1, 1, 0, 1, 1, 1], dtype=int32)

  Args:
    token_ids: ``[*batch, T]`` integer token ids.
    sg_table: ``[S, Nmax]`` gram token ids, each row ``n`` ids then ``-1`` padding.

  Returns:
    ``bool [*batch, T]``.
  """
  fn = "sg_planning_mask"
  V.check_integer(fn, "token_ids", token_ids)
  V.check_rank(fn, "token_ids", token_ids, min_rank=1)
  _check_table(fn, sg_table)
  hits, lengths = _starts(jnp.asarray(token_ids), jnp.asarray(sg_table))
  t_len = token_ids.shape[-1]
  # covered[t] = any gram s starting at u with u <= t < u + len_s: per gram, a window sum of
  # its start hits over the last len_s positions (cumulative sum minus a shifted copy).
  c = jnp.cumsum(hits.astype(jnp.int32), axis=-2)                      # [..., T, S]
  c = jnp.concatenate([jnp.zeros_like(c[..., :1, :]), c], axis=-2)      # [..., T+1, S]
  pos = jnp.arange(t_len)
  lo = jnp.clip(pos[:, None] + 1 - lengths[None, :], 0, t_len)          # [T, S]
  upper = c[..., 1:, :]
  lower = jnp.take_along_axis(c, jnp.broadcast_to(lo, c[..., 1:, :].shape), axis=-2)
  return jnp.any(upper - lower > 0, axis=-1)


def hicra_advantages(advantages: Float[Array, "*batch t"], planning_mask, *,
                     alpha: float = 0.2) -> Float[Array, "*batch t"]:
  """HICRA advantages (paper form): ``A + alpha |A|`` on planning tokens, ``A`` elsewhere.

  Args:
    advantages: per-token advantages ``[*batch, T]`` (e.g. GRPO's, broadcast over tokens).
    planning_mask: ``[*batch, T]`` planning tokens (bool / 0-1).
    alpha: the credit weight, ``>= 0`` (paper: 0.2).

  Returns:
    ``[*batch, T]``, constant (no gradient), like any advantage.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import hicra_advantages
    >>> hicra_advantages(jnp.array([1.0, 1.0, -1.0]), jnp.array([1, 0, 1]))
    Array([ 1.2,  1. , -0.8], dtype=float32)

  References:
    Wang et al., "Emergent Hierarchical Reasoning in LLMs through Reinforcement Learning",
    2025, https://arxiv.org/abs/2509.03646.
  """
  fn = "hicra_advantages"
  V.check_floating(fn, "advantages", advantages)
  V.check_rank(fn, "advantages", advantages, min_rank=1)
  check_mask(fn, planning_mask, "advantages", advantages)
  V.check_scalar(fn, "alpha", alpha, low=0.0)
  a = jax.lax.stop_gradient(advantages)
  plan = nonzero(planning_mask)
  return jnp.where(plan, a + jnp.asarray(num(alpha)).astype(a.dtype) * jnp.abs(a), a)


def _order_stat_index(t_len: int, k: float) -> np.ndarray:
  """trl's ``_topk_threshold`` index for ``n`` valid tokens, ``n = 0..T`` (Python float
  arithmetic, so the float64 rounding of ``(1 - k) n`` is reproduced exactly)."""
  idx = [max(0, min(int((1 - k) * n), n - 1)) for n in range(t_len + 1)]
  return np.asarray(idx, np.int32)


def hicra_verl_advantages(advantages: Float[Array, "g t"], entropy: Float[Array, "g t"], mask,
                          *, planning_mask=None, alpha: float = 0.2,
                          entropy_topk: float = 0.3) -> Float[Array, "g t"]:
  """HICRA as in the authors' VeRL recipe (trl port ``modify_advantages_hicra``), one group.

  For a GRPO group of ``G`` responses (``jax.vmap`` over prompts):

  1. ``thr_i`` = the ``floor((1 - k) n_i)``-th smallest valid entropy of response ``i``;
     high-entropy tokens: ``entropy > thr_i``;
  2. response ``i`` is amplified when its mean valid advantage is ``> 0`` and its length
     exceeds the group's mean length; if no response of the group has a positive advantage,
     the group is returned unchanged;
  3. without ``planning_mask``: ``A *= 1 + alpha`` on high-entropy tokens of amplified
     responses; with it: ``A *= 1 + alpha sign(A)`` on (high-entropy tokens of amplified
     responses) or planning tokens.

  Args:
    advantages: ``[G, T]`` per-token advantages.
    entropy: ``[G, T]`` per-token entropies of the policy.
    mask: ``[G, T]`` valid tokens.
    planning_mask: optional ``[G, T]`` planning tokens (:func:`sg_planning_mask`).
    alpha: amplification, ``>= 0`` (0.2).
    entropy_topk: the fraction ``k`` of top-entropy tokens, in ``[0, 1]`` (0.3); static.

  Returns:
    ``[G, T]`` advantages (no gradient).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import hicra_verl_advantages
    >>> adv = jnp.array([[1.0, 1.0, 1.0], [-1.0, -1.0, 0.0]])
    >>> ent = jnp.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.0]])
    >>> m = jnp.array([[1, 1, 1], [1, 1, 0]])
    >>> hicra_verl_advantages(adv, ent, m, entropy_topk=0.4)
    Array([[ 1. ,  1.2,  1. ],
           [-1. , -1. ,  0. ]], dtype=float32)
  """
  fn = "hicra_verl_advantages"
  V.check_floating(fn, "advantages", advantages)
  V.check_rank(fn, "advantages", advantages, 2)
  V.check_floating(fn, "entropy", entropy)
  V.check_same_shape(fn, "entropy", entropy, "advantages", advantages)
  check_mask(fn, mask, "advantages", advantages)
  if planning_mask is not None:
    V.check_array(fn, "planning_mask", planning_mask)
    V.check_same_shape(fn, "planning_mask", planning_mask, "advantages", advantages)
  V.check_scalar(fn, "alpha", alpha, low=0.0)
  V.check_scalar(fn, "entropy_topk", entropy_topk, low=0.0, high=1.0, static=True)
  a = jax.lax.stop_gradient(advantages)
  dt = a.dtype
  valid = nonzero(mask)
  t_len = a.shape[-1]
  n = jnp.sum(valid, axis=-1)                                          # [G]
  ent = jax.lax.stop_gradient(entropy).astype(dt)
  srt = jnp.sort(jnp.where(valid, ent, jnp.inf), axis=-1)
  idx = jnp.asarray(_order_stat_index(t_len, float(entropy_topk)))[n]
  thr = jnp.where(n > 0, jnp.take_along_axis(srt, jnp.minimum(idx, t_len - 1)[:, None], -1)[:, 0],
                  0)
  high = (ent > thr[:, None]) & valid
  vm = valid.astype(dt)
  seq_adv = jnp.sum(a * vm, axis=-1) / jnp.maximum(jnp.sum(vm, axis=-1), 1)
  correct = seq_adv > 0
  lengths = n.astype(dt)
  longer = lengths > jnp.mean(lengths)
  amplify = correct & longer
  any_correct = jnp.any(correct)
  high = high & amplify[:, None]
  al = jnp.asarray(num(alpha)).astype(dt)
  if planning_mask is None:
    out = jnp.where(high, a * (1 + al), a)
  else:
    sel = high | (nonzero(planning_mask))
    out = jnp.where(sel, a * (1 + al * jnp.sign(a)), a)
  return jnp.where(any_correct, out, a)


def semantic_entropy(counts: Float[Array, "*batch s"] | Int[Array, "*batch s"]
                     ) -> Float[Array, "*batch"]:
  """Shannon entropy (nats) of the frequency distribution of distinct strategic grams.

  ``H = -sum_k p_k log p_k`` with ``p_k = c_k / sum c``; 0 for all-zero counts.

  Args:
    counts: ``[*batch, S]`` non-negative counts (e.g. ``sg_match_counts(...).sum(0)``).

  Returns:
    ``[*batch]`` entropies in nats (float32 for integer counts).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import semantic_entropy
    >>> round(float(semantic_entropy(jnp.array([2, 2]))), 4)  # log 2
    0.6931
  """
  fn = "semantic_entropy"
  V.check_array(fn, "counts", counts)
  dt = jnp.dtype(counts.dtype) if hasattr(counts, "dtype") else jnp.result_type(counts)
  if not (jnp.issubdtype(dt, jnp.integer) or jnp.issubdtype(dt, jnp.floating)):
    raise TypeError(f"{fn}: counts must have an integer or floating dtype, got {dt.name}")
  V.check_rank(fn, "counts", counts, min_rank=1)
  c = jnp.asarray(counts)
  c = c.astype(c.dtype if jnp.issubdtype(dt, jnp.floating) else jnp.float32)
  total = jnp.sum(c, axis=-1, keepdims=True)
  p = c / jnp.where(total > 0, total, 1)
  pos = p > 0
  return -jnp.sum(jnp.where(pos, p * jnp.log(jnp.where(pos, p, 1)), 0), axis=-1)
