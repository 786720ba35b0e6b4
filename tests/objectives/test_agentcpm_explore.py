"""AgentCPM-Explore's reward denoising against a NumPy port of ``apply_mcp_rewarding_logic``
(rank zero-sum adjustment, filtering rules), and the merges against peft's ``merge_utils``
formulas transcribed to NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax import objectives as O


def port_rank_zero_sum(turns, total_spread, higher_turns_is_better):
  """``apply_rank_zero_sum`` of the official code, on a list of turn counts; returns the
  adjustment of each input position."""
  n = len(turns)
  if n <= 1:
    return np.zeros(n)
  order = sorted(range(n), key=lambda i: turns[i])
  st = [turns[i] for i in order]
  ranks = [0.0] * n
  i = 0
  while i < n:
    j = i
    while j < n and st[j] == st[i]:
      j += 1
    avg = sum(range(i, j)) / (j - i)
    for k in range(i, j):
      ranks[k] = avg
    i = j
  mean_rank = sum(ranks) / n
  step = total_spread / (n - 1)
  out = np.zeros(n)
  for idx, pos in enumerate(order):
    adj = (ranks[idx] - mean_rank) * step
    out[pos] = adj if higher_turns_is_better else -adj
  return out


def port_default_rules(scores, turns, env, ctx, min_turns=1):
  """Steps (i)-(iv) of ``apply_mcp_rewarding_logic`` with ``reserve_context_error_count=0``."""
  if max(scores) - min(scores) < 0.1:
    return np.zeros(len(scores), bool)
  keep = np.ones(len(scores), bool)
  keep &= ~env
  keep &= ~((scores > 0) & (turns <= min_turns))
  keep &= ~ctx
  return keep


def test_rank_zero_sum_hand_values_and_port():
  adj = np.asarray(O.rank_zero_sum_adjust(jnp.ones(4), jnp.array([3, 5, 5, 9]))) - 1
  np.testing.assert_allclose(adj, [0.1, 0.0, 0.0, -0.1], atol=1e-6)
  adj0 = np.asarray(O.rank_zero_sum_adjust(jnp.zeros(4), jnp.array([3, 5, 5, 9])))
  np.testing.assert_allclose(adj0, [-0.1, 0.0, 0.0, 0.1], atol=1e-6)
  r = np.random.default_rng(0)
  scores = np.array([1, 0, 1, 1, 0, 0, 1, 0.2, 1, 0], np.float32)
  turns = r.integers(1, 6, 10)
  valid = r.random(10) < 0.8
  got = np.asarray(jax.jit(O.rank_zero_sum_adjust)(jnp.asarray(scores), jnp.asarray(turns),
                                                   jnp.asarray(valid))) - scores
  want = np.zeros(10)
  for sub, better in ((valid & (scores >= 0.5), False), (valid & (scores < 0.5), True)):
    idx = np.nonzero(sub)[0]
    want[idx] = port_rank_zero_sum(list(turns[idx]), 0.2, better)
    assert abs(got[idx].sum()) < 1e-6  # zero-sum per subgroup
  np.testing.assert_allclose(got, want, atol=1e-6)
  assert np.all(got[~valid] == 0)


def test_denoise_rules_match_the_port():
  r = np.random.default_rng(1)
  scores = r.integers(0, 2, (6, 8)).astype(np.float32)
  scores[0] = 1.0  # no signal
  turns = r.integers(1, 5, (6, 8))
  env = r.random((6, 8)) < 0.15
  ctx = r.random((6, 8)) < 0.15
  got = np.asarray(O.denoise_keep_mask(*(jnp.asarray(x) for x in (scores, turns, env, ctx))))
  for g in range(6):
    np.testing.assert_array_equal(got[g], port_default_rules(scores[g], turns[g], env[g], ctx[g]))
  assert not got[0].any()
  # reserving context errors keeps exactly that many (when there are enough)
  two = np.asarray(O.denoise_keep_mask(*(jnp.asarray(x) for x in (scores, turns, env, ctx)),
                                       reserve_context_errors=2, key=jax.random.key(0)))
  for g in range(1, 6):
    if ctx[g].sum() >= 2 and np.ptp(scores[g]) >= 0.1:
      assert (two[g] & ctx[g]).sum() <= 2
      assert ((two[g] & ~ctx[g]) == (got[g] & ~ctx[g])).all()


def test_signal_and_advantages_of_kept_groups_are_finite():
  assert not bool(O.group_has_signal(jnp.array([1.0, 1.0, 1.0, 1.0])))
  assert bool(O.group_has_signal(jnp.array([0.0, 1.0, 1.0, 1.0])))
  scores = jnp.array([[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0]])
  adv = O.group_advantages(scores)
  assert np.all(np.isfinite(np.asarray(adv)))


def test_balance_keeps_min_len_plus_one_and_two():
  s = jnp.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
  env = jnp.array([False, True, False, False, False, False, False, False])
  keep = np.asarray(O.balance_keep_mask(s, env, key=jax.random.key(3)))
  # valid wrong = 4, right = 3: min_len = 3 -> 4 wrong (all valid), 3 right (all)
  assert keep[:5].sum() == 4 and not keep[1] and keep[5:].all()


# --- merges vs peft merge_utils (NumPy transcription) -----------------------------------------


def peft_magnitude_prune(tensor, density):
  mask = np.zeros(tensor.size)
  k = int(density * tensor.size)
  top = np.argsort(-np.abs(tensor).reshape(-1), kind="stable")[:k]
  mask[top] = 1
  return tensor * mask.reshape(tensor.shape)


def peft_ties(task_tensors, weights, density, method="total"):
  t = np.stack([peft_magnitude_prune(x, density) for x in task_tensors])
  sign = np.sign(t)
  mag = t.sum(0) if method == "total" else sign.sum(0)
  maj = np.where(mag >= 0, 1.0, -1.0)
  mask = sign == maj
  w = weights.reshape((-1,) + (1,) * (t.ndim - 1))
  mixed = (t * w * mask).sum(0)
  return mixed / np.maximum(mask.sum(0), 1.0)


R = np.random.default_rng(2)
BASE = {"a": R.normal(size=(4, 3)).astype(np.float32), "b": R.normal(size=(5,)).astype(np.float32)}
STACK = {k: (v + R.normal(size=(3, *v.shape))).astype(np.float32) for k, v in BASE.items()}
JB = jax.tree.map(jnp.asarray, BASE)
JS = jax.tree.map(jnp.asarray, STACK)


@pytest.mark.parametrize("method", ["total", "frequency"])
@pytest.mark.parametrize("density", [0.3, 1.0])
def test_ties_equals_peft(method, density):
  w = np.array([0.5, 1.0, 2.0], np.float32)
  got = jax.jit(lambda b, s, w: O.merge_ties(b, s, density=density, weights=w,
                                             majority_sign=method))(JB, JS, jnp.asarray(w))
  for k in BASE:
    tau = [STACK[k][i] - BASE[k] for i in range(3)]
    want = BASE[k] + peft_ties(tau, w, density, method)
    np.testing.assert_allclose(got[k], want, rtol=1e-5, atol=1e-6)


def test_linear_and_task_arithmetic():
  w = jnp.array([0.2, 0.3, 0.5])
  lin = O.merge_linear(JS, w)
  for k in BASE:
    np.testing.assert_allclose(lin[k], np.tensordot(np.asarray(w), STACK[k], 1), rtol=1e-6)
  one_hot = O.merge_linear(JS, jnp.array([0.0, 1.0, 0.0]))
  np.testing.assert_allclose(one_hot["a"], STACK["a"][1])
  norm = O.merge_linear(JS, jnp.array([2.0, 2.0, 2.0]), normalize=True)
  np.testing.assert_allclose(norm["b"], STACK["b"].mean(0), rtol=1e-6)
  one = {k: v[:1] for k, v in JS.items()}
  ta = O.merge_task_arithmetic(JB, one, jnp.array([1.0]))
  np.testing.assert_allclose(ta["a"], STACK["a"][0], rtol=1e-6)
  ta3 = O.merge_task_arithmetic(JB, JS, jnp.array([0.5, -1.0, 0.25]))
  want = BASE["b"] + np.tensordot([0.5, -1.0, 0.25], STACK["b"] - BASE["b"], 1)
  np.testing.assert_allclose(ta3["b"], want, rtol=1e-5)
  # TIES, density 1, agreeing signs: the mean of the task vectors
  agree = {"a": jnp.asarray(BASE["a"] + np.abs(R.normal(size=(3, 4, 3))).astype(np.float32))}
  ties = O.merge_ties({"a": JB["a"]}, agree, density=1.0)
  np.testing.assert_allclose(ties["a"], np.asarray(agree["a"]).mean(0), rtol=1e-5)


def test_bad_inputs_are_named_errors():
  with pytest.raises(ValueError, match="merge_linear: weights must have shape"):
    O.merge_linear(JS, jnp.ones(2))
  with pytest.raises(ValueError, match="merge_ties: density must be > 0"):
    O.merge_ties(JB, JS, density=0.0)
  with pytest.raises(ValueError, match="merge_task_arithmetic: base and stack must have"):
    O.merge_task_arithmetic({"a": JB["a"]}, JS, jnp.ones(3))
  with pytest.raises(ValueError, match="denoise_keep_mask: turns and scores must have"):
    O.denoise_keep_mask(jnp.ones(3), jnp.ones(2), jnp.ones(3), jnp.ones(3))
  with pytest.raises(ValueError, match="rank_zero_sum_adjust: spread must be >= 0"):
    O.rank_zero_sum_adjust(jnp.ones(3), jnp.ones(3), spread=-1.0)
