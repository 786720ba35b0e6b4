"""HICRA against a NumPy transcription of trl's ``modify_advantages_hicra`` (fixed version), a
regression test for the chained-indexing no-op of the original, the SG matcher, semantic
entropy, and input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax import objectives as O


def trl_topk_threshold(mask, values, k):
  out = []
  for i in range(mask.shape[0]):
    valid = values[i][mask[i] > 0]
    if len(valid) == 0:
      out.append(0.0)
      continue
    k_index = int((1 - k) * len(valid))
    k_index = max(0, min(k_index, len(valid) - 1))
    out.append(np.sort(valid)[k_index])
  return np.asarray(out)[:, None]


def trl_modify_advantages_hicra(advantages, entropies, response_mask, group_ids,
                                planning_token_mask=None, alpha=0.2, entropy_topk=0.3,
                                chained=False):
  """trl ``HICRATrainer.modify_advantages_hicra`` in NumPy; ``chained=True`` reproduces the
  pre-fix chained boolean indexing (which writes into a copy)."""
  advantages = advantages.copy()
  response_lengths = response_mask.sum(1)
  normalized = entropies - trl_topk_threshold(response_mask, entropies, entropy_topk)
  for g in np.unique(group_ids):
    cur = group_ids == g
    gm = response_mask[cur]
    gadv = (advantages[cur] * gm).sum(1) / np.maximum(gm.sum(1), 1.0)
    lengths = response_lengths[cur]
    correct = gadv > 0
    if not correct.any():
      continue
    longer = lengths > lengths.astype(float).mean()
    amplify = correct & longer
    high = normalized[cur] > 0
    high[~amplify] = False
    if planning_token_mask is None:
      if chained:
        advantages[cur][high] *= 1 + alpha  # a copy: no effect
      else:
        full = np.zeros_like(advantages, bool)
        full[cur] = high
        advantages[full] *= 1 + alpha
    else:
      sel = high | (planning_token_mask[cur] > 0)
      if chained:
        advantages[cur][sel] *= 1 + alpha * np.sign(advantages[cur][sel])
      else:
        full = np.zeros_like(advantages, bool)
        full[cur] = sel
        advantages[full] *= 1 + alpha * np.sign(advantages[full])
  return advantages


def _group_inputs(seed=0, t=12):
  """3 groups of 4: correct responses mostly longer than their group's mean (one correct but
  short response in group 1), group 2 without a correct response."""
  r = np.random.default_rng(seed)
  rewards = np.array([[1, 0, 0, 1], [0, 1, 1, 0], [0, 0, 0, 0]], np.float32)
  lengths = np.array([[12, 5, 6, 10], [4, 11, 3, 7], [8, 9, 5, 12]])
  mask = (np.arange(t) < lengths[..., None]).astype(np.int32)
  adv = np.asarray(O.group_advantages(jnp.asarray(rewards)))
  adv_tok = np.broadcast_to(adv[..., None], mask.shape).astype(np.float32).copy()
  ent = r.uniform(0, 2, mask.shape).astype(np.float32)
  plan = r.random(mask.shape) < 0.2
  return adv_tok, ent, mask, plan


@pytest.mark.parametrize("with_plan", [False, True])
def test_verl_variant_equals_trl_port_exactly(with_plan):
  adv, ent, mask, plan = _group_inputs()
  p, g, t = adv.shape
  f = jax.jit(jax.vmap(lambda a, e, m, pm: O.hicra_verl_advantages(
      a, e, m, planning_mask=pm if with_plan else None)))
  got = np.asarray(f(adv, ent, mask, plan))
  ref = trl_modify_advantages_hicra(adv.reshape(p * g, t), ent.reshape(p * g, t),
                                    mask.reshape(p * g, t), np.repeat(np.arange(p), g),
                                    plan.reshape(p * g, t) if with_plan else None)
  valid = mask.reshape(p * g, t) > 0
  np.testing.assert_array_equal(got.reshape(p * g, t)[valid], ref[valid])
  assert np.sum(got != adv) > 0  # the comparison is not between two unchanged copies
  # the group without a correct response is untouched, planning tokens included
  np.testing.assert_array_equal(got[2], adv[2])


def test_amplification_is_not_a_noop_regression():
  """The pre-fix chained indexing amplified nothing; ours changes a non-empty set of tokens."""
  adv, ent, mask, plan = _group_inputs()
  p, g, t = adv.shape
  flat = [x.reshape(p * g, t) for x in (adv, ent, mask)]
  chained = trl_modify_advantages_hicra(*flat, np.repeat(np.arange(p), g), chained=True)
  np.testing.assert_array_equal(chained, flat[0])  # the bug: nothing amplified
  got = np.asarray(jax.jit(jax.vmap(O.hicra_verl_advantages))(adv, ent, mask))
  changed = (got != adv) & (mask > 0)
  assert changed.sum() > 0
  np.testing.assert_allclose(got[changed], 1.2 * adv[changed], rtol=1e-6)


def test_paper_form():
  r = np.random.default_rng(1)
  adv = jnp.asarray(r.normal(size=(3, 5)), jnp.float32)
  plan = jnp.asarray(r.random((3, 5)) < 0.5)
  got = O.hicra_advantages(adv, plan, alpha=0.2)
  a = np.asarray(adv)
  np.testing.assert_allclose(got, np.where(np.asarray(plan), a * (1 + 0.2 * np.sign(a)), a),
                             rtol=1e-6)
  np.testing.assert_array_equal(O.hicra_advantages(adv, plan, alpha=0.0), adv)
  # GRPO with an empty planning mask is GRPO
  lp = jnp.asarray(-r.uniform(0.1, 2, (3, 5)), jnp.float32)
  m = jnp.ones((3, 5), jnp.int32)
  none = O.hicra_advantages(adv, jnp.zeros((3, 5), bool))
  assert float(O.grpo_loss(lp, lp, none, m).loss) == float(O.grpo_loss(lp, lp, adv, m).loss)


def test_sg_matcher():
  ids = jnp.array([[5, 1, 2, 3, 9, 1, 2, 3], [1, 2, 1, 2, 3, 0, 0, 0]])
  table = jnp.array([[1, 2, 3], [2, 1, -1]])
  mask = np.asarray(jax.jit(O.sg_planning_mask)(ids, table)).astype(int)
  np.testing.assert_array_equal(mask[0], [0, 1, 1, 1, 0, 1, 1, 1])
  np.testing.assert_array_equal(mask[1], [0, 1, 1, 1, 1, 0, 0, 0])  # "2 1" at 1, "1 2 3" at 2
  np.testing.assert_array_equal(jax.jit(O.sg_match_counts)(ids, table), [[2, 0], [1, 1]])


def test_semantic_entropy_values():
  assert float(O.semantic_entropy(jnp.array([2, 2]))) == pytest.approx(np.log(2), abs=1e-6)
  assert float(O.semantic_entropy(jnp.array([4, 0]))) == 0.0
  assert float(O.semantic_entropy(jnp.ones(8))) == pytest.approx(np.log(8), abs=1e-6)
  assert float(O.semantic_entropy(jnp.zeros(3))) == 0.0


def test_bad_inputs_are_named_errors():
  with pytest.raises(ValueError, match="hicra_advantages: planning_mask|hicra_advantages: mask"):
    O.hicra_advantages(jnp.ones((2, 3)), jnp.ones((2, 4)))
  with pytest.raises(ValueError, match="hicra_advantages: alpha must be >= 0"):
    O.hicra_advantages(jnp.ones((2, 3)), jnp.ones((2, 3)), alpha=-0.2)
  with pytest.raises(ValueError, match="sg_planning_mask: sg_table rows"):
    O.sg_planning_mask(jnp.ones(4, jnp.int32), jnp.array([[-1, 2]]))
  with pytest.raises(ValueError, match="hicra_verl_advantages: entropy_topk must be <= 1"):
    O.hicra_verl_advantages(jnp.ones((2, 3)), jnp.ones((2, 3)), jnp.ones((2, 3)),
                            entropy_topk=1.5)
