"""ZipVL: adaptive important-token count, important-token prefill, packed KV quantisation and the
mixed-precision cache.

Independent references: the test plan's Zipf counts (computed by hand from the rule), uniform causal
rows whose normalised scores are constant, NumPy softmax and argsort, dense attention
(:func:`bottleneck_jax.ops.attention`) for tau = 1, the rounding bound ``|x - x_hat| <= s / 2``,
and a NumPy bit packer.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax.attention import (
    accumulated_scores,
    adaptive_keep_count,
    build_mixed_kv,
    dequantize_kv,
    important_token_prefill,
    kv_bits,
    mixed_kv_bits,
    mixed_kv_decode_attention,
    normalized_scores,
    pack_bits,
    probe_attention,
    quantize_kv,
    select_important,
    unpack_bits,
)
from bottleneck_jax.ops import attention


@pytest.fixture(autouse=True)
def _full_f32_matmuls():
  with jax.default_matmul_precision("highest"):
    yield


def test_zipf_counts_under_jit():
  a = jnp.tile(1.0 / jnp.arange(1, 101, dtype=jnp.float32), (3, 1))   # Zipf rows over 100 keys
  f = jax.jit(adaptive_keep_count)
  got = [int(f(a, t)[1]) for t in (0.5, 0.9, 0.975, 1.0)]
  assert got == [8, 60, 88, 100]
  perm = np.random.default_rng(0).permutation(100)
  assert int(adaptive_keep_count(a[0, perm], 0.9)) == 60      # order does not matter


def test_probe_attention_and_accumulated_scores_match_numpy():
  r = np.random.default_rng(1)
  q = r.standard_normal((1, 12, 4, 8)).astype(np.float32)
  k = r.standard_normal((1, 12, 2, 8)).astype(np.float32)
  probes = np.array([3, 10, 11])
  A = np.asarray(probe_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(probes)))
  for h in range(4):
    for pi, p in enumerate(probes):
      s = q[0, p, h] @ k[0, :p + 1, h // 2].T / np.sqrt(8)
      want = np.zeros(12)
      want[:p + 1] = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
      np.testing.assert_allclose(A[0, h, pi], want, rtol=1e-5, atol=1e-6)
  acc = accumulated_scores(jnp.asarray(A), n_kv_heads=2)
  np.testing.assert_allclose(acc[0, 1], A[0, 2:].sum((0, 1)), rtol=1e-6)


def test_normalized_scores_divide_by_the_queries_that_see_each_key():
  """Rows spreading 1/(i+1) uniformly over the visible past: raw column sums favour early keys;
  the normalised score of key j is the mean over the n - j rows (times heads) that see it."""
  n = 9
  A = np.zeros((1, 2, n, n), np.float32)
  for i in range(n):
    A[:, :, i, :i + 1] = 1.0 / (i + 1)
  raw = accumulated_scores(jnp.asarray(A), n_kv_heads=1)[0, 0]
  assert np.all(np.diff(np.asarray(raw)) < 0)
  norm = np.asarray(normalized_scores(jnp.asarray(A), jnp.arange(n), n_kv_heads=1))[0, 0]
  direct = [np.mean([1.0 / (i + 1) for i in range(j, n)]) for j in range(n)]
  np.testing.assert_allclose(norm, direct, rtol=1e-6)
  # probes that see everything equally (non-causal, uniform rows): constant normalised scores
  U = np.full((1, 2, 4, n), 1.0 / n, np.float32)
  flat = normalized_scores(jnp.asarray(U), jnp.arange(4), n_kv_heads=2, causal=False)
  np.testing.assert_allclose(flat, 1.0 / n, rtol=1e-6)


def test_select_important_matches_numpy():
  r = np.random.default_rng(2)
  s = r.random((3, 20)).astype(np.float32)
  count = np.array([5, 1, 8])
  idx, ok = select_important(jnp.asarray(s), jnp.asarray(count), max_keep=6)
  for b in range(3):
    want = sorted(np.argsort(-s[b])[:min(count[b], 6)].tolist())
    assert [int(i) for i, o in zip(idx[b], ok[b]) if o] == want


def test_tau_one_prefill_equals_dense_and_sparse_prefill_attends_only_important_keys():
  r = np.random.default_rng(3)
  q, k, v = (jnp.asarray(r.standard_normal((2, 24, 2, 8)), jnp.float32) for _ in range(3))
  scores = jnp.asarray(r.random((2, 24)), jnp.float32)
  p = adaptive_keep_count(scores, 1.0)
  assert p.tolist() == [24, 24]
  idx, ok = select_important(scores, p, max_keep=24)
  res = important_token_prefill(q, k, v, idx, ok)
  dense = attention(q, k, v, causal=True, implementation="reference")
  np.testing.assert_allclose(res.out, dense.out, rtol=1e-6, atol=1e-6)
  idx, ok = select_important(scores, jnp.asarray([6, 10]), max_keep=12)
  res = important_token_prefill(q, k, v, idx, ok)
  mask = np.zeros((2, 1, 24, 24), bool)
  for b in range(2):
    keep = np.asarray(idx[b])[np.asarray(ok[b])]
    mask[b, 0][:, keep] = True
  mask &= np.tril(np.ones((24, 24), bool))
  want = attention(q, k, v, mask=jnp.asarray(mask), implementation="reference")
  np.testing.assert_allclose(res.out, want.out, rtol=1e-5, atol=1e-6)


def np_pack(codes, bits):
  per = 8 // bits
  c = codes.reshape(*codes.shape[:-1], -1, per).astype(np.int64)
  return sum(c[..., i] << (bits * i) for i in range(per)).astype(np.uint8)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_pack_roundtrip_and_numpy_layout(bits):
  c = np.random.default_rng(bits).integers(0, 1 << bits, (3, 16)).astype(np.uint8)
  packed = pack_bits(jnp.asarray(c), bits)
  np.testing.assert_array_equal(packed, np_pack(c, bits))
  np.testing.assert_array_equal(unpack_bits(packed, bits), c)


def test_quantisation_error_bounds_and_bit_ordering():
  r = np.random.default_rng(4)
  x = jnp.asarray(r.standard_normal((2, 32, 2, 16)), jnp.float32)
  mses = {}
  for bits in (2, 4, 8):
    for mode, g in (("channel", 8), ("token", 4)):
      q = quantize_kv(x, bits=bits, mode=mode, group_size=g)
      y = dequantize_kv(q)
      xs = np.asarray(x)
      # the group's step size, broadcast back to x
      if mode == "channel":
        xg = xs.reshape(2, 4, 8, 2, 16)
        s = (xg.max(2, keepdims=True) - xg.min(2, keepdims=True)) / ((1 << bits) - 1)
        s = np.broadcast_to(s, xg.shape).reshape(xs.shape)
      else:
        xg = xs.reshape(2, 32, 2, 4, 4)
        s = (xg.max(-1, keepdims=True) - xg.min(-1, keepdims=True)) / ((1 << bits) - 1)
        s = np.broadcast_to(s, xg.shape).reshape(xs.shape)
      assert np.all(np.abs(xs - np.asarray(y)) <= s / 2 + 1e-6)
      assert q.codes.shape == (2, 32, 2, 16 * bits // 8)
      mses[bits, mode] = float(jnp.mean((x - y) ** 2))
  for mode in ("channel", "token"):
    assert mses[8, mode] < mses[4, mode] < mses[2, mode]
  assert float(kv_bits(quantize_kv(x, bits=4, mode="token"))) == 8 * 2 * 32 * 2 * 8 + 64 * 128


def test_eight_bit_attention_and_mixed_precision_ordering():
  r = np.random.default_rng(5)
  b, t, h, d = 2, 128, 2, 32
  k, v = (jnp.asarray(r.standard_normal((b, t, h, d)), jnp.float32) for _ in range(2))
  q = jnp.asarray(2 * r.standard_normal((b, h, d)), jnp.float32)
  dense = attention(q[:, None], k, v, implementation="reference").out[:, 0]

  def err(imp, hi, lo):
    m = build_mixed_kv(k, v, imp, max_important=t, hi_bits=hi, lo_bits=lo)
    o = mixed_kv_decode_attention(q, m).out
    return float(jnp.linalg.norm(o - dense) / jnp.linalg.norm(dense)), m

  ones, zeros = jnp.ones((b, t), bool), jnp.zeros((b, t), bool)
  assert err(ones, 8, 8)[0] < 1e-2
  p = jax.nn.softmax(jnp.einsum("bhd,bthd->bht", q, k) / np.sqrt(d), -1).sum(1)
  imp = p >= jnp.sort(p, -1)[:, -int(0.3 * t)][:, None]                  # top 30% by attention
  e4, m4 = err(ones, 4, 4)
  e42, m42 = err(imp, 4, 2)
  e2, m2 = err(zeros, 2, 2)
  assert e4 < e42 < e2
  assert float(mixed_kv_bits(m2)) < float(mixed_kv_bits(m42)) < float(mixed_kv_bits(m4))


def test_errors():
  x = jnp.ones((1, 4, 1, 6))
  with pytest.raises(ValueError, match="quantize_kv: x must have a channel count divisible by 4"):
    quantize_kv(x, bits=2, mode="token")
  with pytest.raises(ValueError, match="quantize_kv: bits must be one of"):
    quantize_kv(x, bits=3, mode="token")
  with pytest.raises(ValueError, match="quantize_kv: group_size must divide"):
    quantize_kv(jnp.ones((1, 4, 1, 8)), bits=4, mode="channel", group_size=3)
  with pytest.raises(ValueError, match="adaptive_keep_count: tau must be <= 1"):
    adaptive_keep_count(jnp.ones(4), 1.5)
  with pytest.raises(ValueError, match="adaptive_keep_count: tau must be > 0"):
    adaptive_keep_count(jnp.ones(4), 0.0)
  with pytest.raises(ValueError, match="probe_attention: k must have shape"):
    probe_attention(jnp.ones((1, 4, 2, 8)), jnp.ones((1, 4, 2, 4)), jnp.arange(2))


@pytest.mark.slow
def test_zipvl_ratio_quick_run(tmp_path):
  from bottleneck_jax.experiments import registry
  s = registry.run_experiment("zipvl-ratio", workdir=tmp_path, progress=False, quick=True)
  res = s["results"]
  assert res["ratio_strictly_decreasing"] and res["decode_err_mixed"] < res["decode_err_2bit"]
  assert res["mixed_memory_vs_bf16"] <= 0.5
