"""Re-ttention: cached softmax mass and residual over a static sparse pattern.

Independent references: a float64 NumPy attention (dense and masked) and the softmax mass of the
mask computed from NumPy probabilities; the test plan's schedule; a Python loop against the jitted
``lax.scan`` over modes. The error-vs-top-k claim is the ``rettention-vs-topk`` experiment (its
quick run is checked here).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.attention import (
    RettentionCache,
    RettentionSelfAttention,
    band_block_table,
    rettention_refresh,
    rettention_schedule,
    rettention_sparse,
    rettention_step,
)

B, T, H, D = 1, 48, 2, 8


@pytest.fixture(autouse=True)
def _full_f32_matmuls():
  with jax.default_matmul_precision("highest"):
    yield


def _qkv(seed, scale=1.4):
  r = np.random.default_rng(seed)
  return tuple(jnp.asarray(scale * r.standard_normal((B, T, H, D)), jnp.float32)
               for _ in range(3))


def _mask(seed):
  r = np.random.default_rng(seed)
  m = r.random((B, H, T, T)) < 0.2
  m[..., np.arange(T), np.arange(T)] = True
  return m


def np_attn(q, k, v, mask=None):
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  s = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(D)
  p_full = np.exp(s - s.max(-1, keepdims=True))
  p_full /= p_full.sum(-1, keepdims=True)
  if mask is None:
    return np.einsum("bhqk,bkhd->bqhd", p_full, v), None
  sm = np.where(mask, s, -np.inf)
  p = np.exp(sm - sm.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  return np.einsum("bhqk,bkhd->bqhd", p, v), (p_full * mask).sum(-1)   # mass of the mask


def test_refresh_statistics_match_numpy_and_reconstruct_the_full_output():
  q, k, v = _qkv(0)
  m = _mask(1)
  out, cache = rettention_refresh(q, k, v, mask=jnp.asarray(m))
  full, _ = np_attn(q, k, v)
  o_s, mass = np_attn(q, k, v, m)
  np.testing.assert_allclose(out, full, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(cache.ratio, mass, rtol=1e-5, atol=1e-6)
  rho = np.swapaxes(mass, 1, 2)[..., None]
  np.testing.assert_allclose(cache.residual, full - rho * o_s, rtol=1e-4, atol=1e-5)
  # same step: the sparse step reproduces the full output; lambda is added after the step
  out2, cache2 = rettention_sparse(q, k, v, cache, mask=jnp.asarray(m), ratio_increment=0.04)
  np.testing.assert_allclose(out2, full, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(cache2.ratio, cache.ratio + 0.04, rtol=1e-6)


def test_keep_everything_gives_unit_ratio_zero_residual_and_dense_output():
  q, k, v = _qkv(2)
  idx, valid = band_block_table(T, keep_ratio=1.0, block_size=16)
  assert bool(valid.all())
  out, cache = rettention_refresh(q, k, v, block_idx=idx, block_valid=valid, block_size=16)
  np.testing.assert_allclose(cache.ratio, 1.0, atol=1e-6)
  np.testing.assert_allclose(cache.residual, 0.0, atol=1e-5)
  q2, k2, v2 = _qkv(3)
  out2, _ = rettention_sparse(q2, k2, v2, cache, block_idx=idx, block_valid=valid,
                              block_size=16)
  np.testing.assert_allclose(out2, np_attn(q2, k2, v2)[0], rtol=1e-5, atol=1e-5)


def test_band_table_covers_exactly_the_blocks_meeting_the_band():
  for t, ratio, bs in [(64, 0.125, 16), (100, 0.03125, 8), (33, 0.5, 4)]:
    idx, valid = band_block_table(t, keep_ratio=ratio, block_size=bs)
    half = int(np.floor(t * ratio)) // 2
    nb = -(-t // bs)
    for r in range(nb):
      rows = range(r * bs, min((r + 1) * bs, t))
      want = sorted({j // bs for i in rows for j in range(t) if abs(i - j) <= half})
      got = sorted(int(i) for i, ok in zip(idx[0, 0, r], valid[0, 0, r]) if ok)
      assert got == want


def test_block_table_and_equivalent_mask_agree():
  q, k, v = _qkv(4)
  idx, valid = band_block_table(T, keep_ratio=0.125, block_size=8)
  blk = np.zeros((T // 8, T // 8), bool)
  for r in range(T // 8):
    blk[r, np.asarray(idx[0, 0, r])[np.asarray(valid[0, 0, r])]] = True
  m = np.repeat(np.repeat(blk, 8, 0), 8, 1)[None, None]
  a = rettention_refresh(q, k, v, block_idx=idx, block_valid=valid, block_size=8)
  b = rettention_refresh(q, k, v, mask=jnp.asarray(m))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


def test_schedule_and_scan_over_modes_match_a_python_loop():
  modes = rettention_schedule(20, 5, 5)
  assert modes.tolist() == [0] * 5 + ([1] + [2] * 4) * 3
  assert rettention_schedule(50, 15, 5)[15::5].tolist() == [1] * 7
  r = np.random.default_rng(5)
  q, k, v = _qkv(6)
  drift = [tuple(jnp.asarray(0.05 * r.standard_normal((B, T, H, D)), jnp.float32)
                 for _ in range(3)) for _ in range(8)]
  m = jnp.asarray(_mask(7))
  small = jnp.asarray([0, 1, 2, 2, 1, 2, 2, 2], jnp.int32)
  cache0 = RettentionCache(jnp.zeros((B, H, T)), jnp.zeros((B, T, H, D)))

  def body(c, xs):
    (dq, dk, dv), mode = xs
    out, c = rettention_step(q + dq, k + dk, v + dv, c, mode, mask=m)
    return c, out
  stacked = tuple(jnp.stack([d[i] for d in drift]) for i in range(3))
  _, outs = jax.jit(lambda c: jax.lax.scan(body, c, (stacked, small)))(cache0)
  c = cache0
  for t, mode in enumerate(small.tolist()):
    dq, dk, dv = drift[t]
    if mode == 0:
      want = np_attn(q + dq, k + dk, v + dv)[0]
    elif mode == 1:
      want, c = rettention_refresh(q + dq, k + dk, v + dv, mask=m)
    else:
      want, c = rettention_sparse(q + dq, k + dk, v + dv, c, mask=m, ratio_increment=0.04)
    np.testing.assert_allclose(outs[t], want, rtol=2e-5, atol=2e-5)


def test_module_refresh_then_sparse_on_the_same_input_is_consistent():
  mod = RettentionSelfAttention(16, 2, 32, keep_ratio=0.125, block_size=8, rngs=nnx.Rngs(0))
  x = jnp.asarray(np.random.default_rng(8).standard_normal((2, 32, 16)), jnp.float32)
  c = mod.init_cache(2, 32)
  y_full, _ = mod(x, c, 0)
  y_ref, c = mod(x, c, 1)
  y_sp, c2 = mod(x, c, 2)
  np.testing.assert_allclose(y_ref, y_full, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(y_sp, y_full, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(c2.ratio, c.ratio + 0.04, rtol=1e-6)


def test_errors():
  q, k, v = _qkv(0)
  with pytest.raises(ValueError, match="rettention_refresh: exactly one of mask"):
    rettention_refresh(q, k, v)
  with pytest.raises(ValueError, match="rettention_refresh: block_size must be given"):
    rettention_refresh(q, k, v, block_idx=jnp.zeros((1, 1, 3, 1), jnp.int32))
  with pytest.raises(ValueError, match="rettention_refresh: mask must have shape"):
    rettention_refresh(q, k, v, mask=jnp.ones((1, 1, 3, 3), bool))
  with pytest.raises(ValueError, match="band_block_table: keep_ratio must be > 0"):
    band_block_table(16, keep_ratio=0.0, block_size=4)
  with pytest.raises(ValueError, match="band_block_table: keep_ratio must be <= 1"):
    band_block_table(16, keep_ratio=1.5, block_size=4)
  with pytest.raises(TypeError, match="rettention_sparse: cache must be a RettentionCache"):
    rettention_sparse(q, k, v, (1, 2), mask=jnp.ones((1, 1, T, T), bool))


@pytest.mark.slow
def test_rettention_vs_topk_quick_run_holds(tmp_path):
  from bottleneck_jax.experiments import registry
  s = registry.run_experiment("rettention-vs-topk", workdir=tmp_path, progress=False, quick=True)
  assert s["expectation_held"], s["expectations"]
  assert s["results"]["err_topk_0.05"] > 0.5 > 0.1 > s["results"]["err_rettention_0.05"]
