"""Kinetics: the eFLOPs cost model and block top-k sparse decoding.

Independent references: the test plan's golden costs (computed from the reference repository's
formulas), a per-token brute-force simulation of the cost sums, ``math.comb`` enumeration for
pass@k, a brute-force dominance check for the Pareto frontier, NumPy block means and block
scores (group-mean, then the mean over the block of the *logits*), and dense attention
(:func:`bottleneck_jax.ops.attention`) for a full budget.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.attention import (
    BlockTopKAttention,
    block_means,
    block_scores,
    block_topk_decode,
    expected_cost,
    kinetics_cost,
    pareto_frontier,
    pass_at_k,
    qwen3_config,
    select_blocks,
    update_block_means,
)
from bottleneck_jax.ops import attention

# the project's test plan: I = 562.5, L_in = 128, L_gen = 32768, N = 1, units 1e12
GOLDEN = {"0.6B": (173.4, 3.491e4, 3.508e4, 9562), "8B": (855.9, 4.488e4, 4.573e4, 1.281e4),
          "32B": (3282, 7.978e4, 8.306e4, 2.412e4)}


@pytest.mark.parametrize("size", sorted(GOLDEN))
def test_reference_compat_reproduces_the_golden_costs(size):
  cfg = qwen3_config(size)
  dense = kinetics_cost(cfg, 128, 32768, reference_compat=True)
  sparse = kinetics_cost(cfg, 128, 32768, attention="block_topk", local=128, block_size=16,
                         topk_blocks=256, reference_compat=True)
  want = GOLDEN[size]
  got = (dense.compute / 1e12, dense.memory / 1e12, dense.total / 1e12, sparse.total / 1e12)
  np.testing.assert_allclose(got, want, rtol=2e-3)
  assert dense.total == dense.compute + dense.memory


def test_golden_costs_at_4096_tokens():
  assert round(kinetics_cost(qwen3_config("0.6B"), 128, 4096, reference_compat=True).total
               / 1e12, 1) == 583.2
  assert round(kinetics_cost(qwen3_config("32B"), 128, 4096, reference_compat=True).total
               / 1e12) == 1601


def _brute(cfg, l_in, l_gen, n, budget=None, block_size=None, intensity=562.5):
  """One generated token at a time (t = 1..L_gen), K and V in bf16."""
  d, nq, nkv = cfg.head_dim * cfg.n_layers, cfg.n_q_heads, cfg.n_kv_heads
  comp = mem = 0.0
  for t in range(1, l_gen + 1):
    ctx = l_in + t
    comp += n * 2 * cfg.n_params
    if budget is None:
      comp += n * 4 * nq * d * ctx
      mem += 4 * nkv * d * (l_in + n * t)             # prompt read once for all trials
    else:
      comp += n * 4 * nq * d * min(budget, ctx)
      mem += n * 4 * nkv * d * min(budget, ctx)
      if block_size:
        comp += n * 2 * nq * d * (ctx // block_size)
        mem += 2 * nkv * d * (l_in // block_size + n * (ctx // block_size - l_in // block_size))
  return comp, intensity * mem


@pytest.mark.parametrize("l_in,l_gen,n,budget", [(5, 40, 1, 12), (30, 17, 3, 10), (0, 50, 2, 64),
                                                 (7, 33, 4, None)])
def test_exact_sums_match_a_per_token_brute_force(l_in, l_gen, n, budget):
  cfg = qwen3_config("1.7B")
  if budget is None:
    got = kinetics_cost(cfg, l_in, l_gen, n)
    want = _brute(cfg, l_in, l_gen, n)
  else:
    got = kinetics_cost(cfg, l_in, l_gen, n, attention="topk", budget=budget)
    np.testing.assert_allclose(got[:2], _brute(cfg, l_in, l_gen, n, budget), rtol=1e-12)
    got = kinetics_cost(cfg, l_in, l_gen, n, attention="block_topk", budget=budget,
                        block_size=4)
    want = _brute(cfg, l_in, l_gen, n, budget, block_size=4)
  np.testing.assert_allclose(got[:2], want, rtol=1e-12)


def test_monotone_and_sparse_equals_dense_with_a_large_budget():
  cfg = qwen3_config("4B")
  totals = [kinetics_cost(cfg, 64, lg, n, attention=a, budget=200).total
            for a in ("dense", "block_topk") for n in (1, 2) for lg in (10, 100, 1000)]
  for a in (0, 6):
    seq = totals[a:a + 6]
    assert seq[0] < seq[1] < seq[2] and seq[3] < seq[4] < seq[5] and seq[0] < seq[3]
  dense = kinetics_cost(cfg, 64, 300)
  sparse = kinetics_cost(cfg, 64, 300, attention="block_topk", budget=364, search_cost=False)
  np.testing.assert_allclose(sparse, dense, rtol=1e-12)
  # the reference's token top-k formula has the + sign: larger than the corrected block form
  ref_topk = kinetics_cost(cfg, 64, 300, attention="topk", budget=200, reference_compat=True)
  ref_blk = kinetics_cost(cfg, 64, 300, attention="block_topk", budget=200, search_cost=False,
                          reference_compat=True)
  assert ref_topk.total > ref_blk.total


def test_expected_cost_is_the_mean():
  cfg = qwen3_config("0.6B")
  e = expected_cost(cfg, 16, np.array([10, 20, 60]), 2)
  want = np.mean([kinetics_cost(cfg, 16, n, 2).total for n in (10, 20, 60)])
  assert e.total == pytest.approx(want, rel=1e-12)


def test_pass_at_k_matches_combinatorics():
  for n, c, k in [(10, 3, 1), (10, 3, 4), (8, 0, 2), (5, 5, 3), (20, 7, 10)]:
    want = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert float(pass_at_k(n, c, k)) == pytest.approx(want, abs=1e-12)
  np.testing.assert_allclose(pass_at_k(np.array([4, 6]), np.array([1, 0]), 2), [0.5, 0.0])


def test_pareto_frontier_matches_brute_force():
  r = np.random.default_rng(0)
  cost, acc = r.random(30), r.random(30)
  idx, mask = pareto_frontier(cost, acc)
  for i in range(30):
    dominated = any(cost[j] <= cost[i] and acc[j] >= acc[i] and (cost[j] < cost[i] or
                                                                 acc[j] > acc[i])
                    for j in range(30))
    assert mask[i] == (not dominated)
  assert list(cost[idx]) == sorted(cost[idx])


# ------------------------------------------------------------------------ block selection

B, T, H, HKV, D, BS = 2, 100, 4, 2, 8, 16


def _cache(seed=0):
  r = np.random.default_rng(seed)
  q = jnp.asarray(r.standard_normal((B, H, D)), jnp.float32)
  k = jnp.asarray(r.standard_normal((B, T, HKV, D)), jnp.float32)
  v = jnp.asarray(r.standard_normal((B, T, HKV, D)), jnp.float32)
  return q, k, v, jnp.asarray([100, 57], jnp.int32)


def test_block_means_and_running_update_match_numpy():
  _, k, _, lengths = _cache()
  got = np.asarray(block_means(k, lengths, block_size=BS))
  kn = np.asarray(k)
  for b in range(B):
    for n in range(got.shape[1]):
      rows = [j for j in range(n * BS, min((n + 1) * BS, T)) if j < lengths[b]]
      want = kn[b, rows].mean(0) if rows else np.zeros((HKV, D))
      np.testing.assert_allclose(got[b, n], want, rtol=1e-5, atol=1e-6)
  means = jnp.zeros_like(jnp.asarray(got))
  step = jax.jit(lambda m, kk, p: update_block_means(m, kk, p, block_size=BS))
  for t in range(T):
    pos = jnp.asarray([t, t])
    new = step(means, k[:, t], pos)
    means = jnp.where((t < lengths)[:, None, None, None], new, means)   # row 1 stops at 57
  np.testing.assert_allclose(means, got, rtol=1e-5, atol=1e-5)


def test_selection_matches_a_numpy_brute_force_of_mean_logits():
  q, k, _, lengths = _cache(1)
  sink, local, kk = 4, 16, 2
  scores = block_scores(q, block_means(k, lengths, block_size=BS), lengths, block_size=BS,
                        sink=sink, local=local)
  idx, valid = select_blocks(scores, kk)
  qn, kn = np.asarray(q, np.float64), np.asarray(k, np.float64)
  g = H // HKV
  for b in range(B):
    ln = int(lengths[b])
    for h in range(HKV):
      cand = {}
      for n in range(-(-T // BS)):
        s0 = n * BS
        if s0 < sink or s0 + BS > ln - local:
          continue
        logits = [np.mean([qn[b, h * g + j] @ kn[b, t, h] for j in range(g)]) / np.sqrt(D)
                  for t in range(s0, s0 + BS)]
        cand[n] = np.mean(logits)
      want = sorted(cand, key=lambda n: -cand[n])[:kk]
      got = [int(i) for i, ok in zip(idx[b, h], valid[b, h]) if ok]
      assert got == want


_BTK = jax.jit(block_topk_decode, static_argnames=("block_size", "topk_blocks", "sink", "local",
                                                  "implementation"))


def test_full_budget_is_dense_attention_and_unselected_values_do_not_matter():
  q, k, v, lengths = _cache(2)
  seg = (jnp.ones((B, 1), jnp.int32), (jnp.arange(T)[None] < lengths[:, None]).astype(jnp.int32))
  dense = attention(q[:, None], k, v, segment_ids=seg, implementation="reference")
  for impl in ("xla", "pallas"):
    res = _BTK(q, k, v, lengths, block_size=BS, topk_blocks=8, sink=4, local=16,
               implementation=impl)
    np.testing.assert_allclose(res.out, dense.out[:, 0], rtol=1e-6, atol=1e-6)
  res = _BTK(q, k, v, lengths, block_size=BS, topk_blocks=1, sink=4, local=16)
  read = np.zeros((B, HKV, -(-T // BS)), bool)
  for b in range(B):
    for h in range(HKV):
      read[b, h, np.asarray(res.block_idx[b, h])[np.asarray(res.block_valid[b, h])]] = True
  assert read[:, :, 0].all() and not read.all()                       # sink always read
  unread = np.repeat(~read, BS, axis=2)[:, :, :T].transpose(0, 2, 1)[..., None]
  v2 = jnp.where(unread, jnp.nan, v)
  res2 = _BTK(q, k, v2, lengths, block_size=BS, topk_blocks=1, sink=4, local=16)
  np.testing.assert_array_equal(res2.out, res.out)
  v3 = v.at[:, 0].add(1.0)                                             # a sink token's value
  assert not np.allclose(_BTK(q, k, v3, lengths, block_size=BS, topk_blocks=1, sink=4,
                              local=16).out, res.out)


def test_module_decode_step_dense_layer_equals_sparse_layer_with_full_budget():
  rngs = nnx.Rngs(0)
  dense = BlockTopKAttention(16, H, HKV, D, layer_index=0, block_size=BS, rngs=rngs)
  sparse = BlockTopKAttention(16, H, HKV, D, layer_index=1, block_size=BS, topk_blocks=8,
                              sink=4, local=16, rngs=nnx.Rngs(0))
  _, k, v, lengths = _cache(3)
  lengths = lengths - 1
  k = jnp.where((jnp.arange(T)[None] < lengths[:, None])[..., None, None], k, 0.0)
  means = block_means(k, lengths, block_size=BS)
  x = jnp.asarray(np.random.default_rng(4).standard_normal((B, 16)), jnp.float32)
  y0, k0, _, m0, l0 = dense(x, k, v, means, lengths)
  y1, _, _, m1, _ = sparse(x, k, v, means, lengths)
  np.testing.assert_allclose(y0, y1, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(m0, block_means(k0, l0, block_size=BS), rtol=1e-5, atol=1e-6)


def test_errors():
  cfg = qwen3_config("0.6B")
  with pytest.raises(ValueError, match="kinetics_cost: budget must be given"):
    kinetics_cost(cfg, 10, 10, attention="topk")
  with pytest.raises(ValueError, match="kinetics_cost: attention must be one of"):
    kinetics_cost(cfg, 10, 10, attention="sparse")
  with pytest.raises(ValueError, match="qwen3_config: size must be one of"):
    qwen3_config("7B")
  with pytest.raises(ValueError, match="pass_at_k: need 0 <= c <= n"):
    pass_at_k(3, 4, 1)
  q, k, v, lengths = _cache()
  with pytest.raises(ValueError, match="block_topk_decode: k_cache must have shape"):
    block_topk_decode(q, k[..., :4], v[..., :4], lengths)
  with pytest.raises(ValueError, match="block_topk_decode: topk_blocks must be >= 1"):
    block_topk_decode(q, k, v, lengths, topk_blocks=0)


def test_kinetics_cost_experiment_holds(tmp_path):
  from bottleneck_jax.experiments import registry
  s = registry.run_experiment("kinetics-cost", workdir=tmp_path, progress=False)
  assert s["expectation_held"], s["expectations"]
  assert s["results"]["memory_to_compute_0.6B"] == pytest.approx(201.3, rel=1e-3)
