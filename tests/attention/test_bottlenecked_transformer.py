"""Bottlenecked Transformers: the cache processor's consolidation of the KV cache.

Independent references: NumPy ``isin`` for step boundaries, a NumPy argsort of the averaged
attention for recall, NumPy in-place adds for the rewrite, bit-identity (zero-initialised output
projection; entries outside the step and the recalled set), a per-example loop for ``vmap``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.attention import (
    CacheProcessor,
    consolidate,
    kv_rewrite,
    recall_indices,
    step_boundaries,
)

L, T, H, D = 2, 20, 2, 8


def _cache(seed=0):
  r = np.random.default_rng(seed)
  return tuple(jnp.asarray(r.standard_normal((L, T, H, D)), jnp.float32) for _ in range(2))


def _processor(nonzero=True, seed=0):
  p = CacheProcessor(L, H, D, width=16, n_heads=2, rngs=nnx.Rngs(seed))
  if nonzero:
    w = p.out.kernel.get_value()
    p.out.kernel.set_value(0.1 * jax.random.normal(jax.random.key(seed + 1), w.shape))
  return p


def test_step_boundaries_and_recall_match_numpy():
  tok = np.random.default_rng(0).integers(0, 6, (3, 15))
  np.testing.assert_array_equal(step_boundaries(jnp.asarray(tok), jnp.asarray([1, 4])),
                                np.isin(tok, [1, 4]))
  r = np.random.default_rng(1)
  a = r.random((L, H, 5, T)).astype(np.float32)
  idx, ok = recall_indices(jnp.asarray(a), 12, 4)
  score = a.mean((0, 1, 2))[:12]
  want = np.argsort(-score, kind="stable")[:4]
  assert sorted(idx.tolist()) == sorted(want.tolist()) and bool(ok.all())
  assert int(idx.max()) < 12
  idx, ok = recall_indices(jnp.asarray(a), 2, 4)                  # only 2 earlier positions
  assert ok.tolist() == [True, True, False, False] and sorted(idx[:2].tolist()) == [0, 1]


def test_kv_rewrite_matches_numpy():
  kc, vc = _cache(1)
  idx = jnp.asarray([3, 7, 11])
  r = np.random.default_rng(2)
  dk, dv = (jnp.asarray(r.standard_normal((L, 3, H, D)), jnp.float32) for _ in range(2))
  valid = jnp.asarray([True, False, True])
  k2, v2 = kv_rewrite(kc, vc, idx, dk, dv, valid)
  want_k, want_v = np.array(kc), np.array(vc)
  for j, (i, ok) in enumerate(zip([3, 7, 11], [True, False, True])):
    if ok:
      want_k[:, i] += np.asarray(dk[:, j])
      want_v[:, i] += np.asarray(dv[:, j])
  np.testing.assert_allclose(k2, want_k, rtol=1e-6)
  np.testing.assert_allclose(v2, want_v, rtol=1e-6)


def test_identity_at_init_and_locality():
  kc, vc = _cache(3)
  ridx, rok = jnp.asarray([2, 5]), jnp.asarray([True, True])
  k0, v0 = consolidate(_processor(False), kc, vc, 10, 4, ridx, rok, max_seg=6)
  np.testing.assert_array_equal(k0, kc)
  np.testing.assert_array_equal(v0, vc)
  k1, v1 = consolidate(_processor(True), kc, vc, 10, 4, ridx, rok, max_seg=6)
  changed = np.any(np.asarray(k1) != np.asarray(kc), axis=(0, 2, 3)) | \
      np.any(np.asarray(v1) != np.asarray(vc), axis=(0, 2, 3))
  assert set(np.flatnonzero(changed)) == {2, 5, 10, 11, 12, 13}


def test_vmap_over_sequences_with_different_boundaries_matches_a_loop():
  p = _processor(True, seed=4)
  caches = [_cache(s) for s in (5, 6)]
  kc = jnp.stack([c[0] for c in caches])
  vc = jnp.stack([c[1] for c in caches])
  starts, lens = jnp.asarray([4, 12]), jnp.asarray([3, 5])
  ridx, rok = jnp.asarray([[1, 2], [0, 9]]), jnp.asarray([[True, False], [True, True]])
  graphdef, state = nnx.split(p)

  def one(kc, vc, s, n, ri, ro):
    return consolidate(nnx.merge(graphdef, state), kc, vc, s, n, ri, ro, max_seg=6)
  kb, vb = jax.vmap(one)(kc, vc, starts, lens, ridx, rok)
  for b in range(2):
    k1, v1 = consolidate(p, kc[b], vc[b], int(starts[b]), int(lens[b]), ridx[b], rok[b],
                         max_seg=6)
    np.testing.assert_allclose(kb[b], k1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vb[b], v1, rtol=1e-5, atol=1e-6)


def test_gradient_reaches_the_processor_only():
  p = _processor(True, seed=7)
  kc, vc = _cache(8)
  q = jnp.asarray(np.random.default_rng(9).standard_normal((H, D)), jnp.float32)

  def loss(proc, kc, vc):
    k2, v2 = consolidate(proc, kc, vc, 8, 4, jnp.asarray([1]), jnp.asarray([True]), max_seg=4)
    s = jnp.einsum("hd,thd->ht", q, k2[-1])
    return jnp.sum(jax.nn.softmax(s, -1)[..., None] * v2[-1].transpose(1, 0, 2))

  g = nnx.grad(loss)(p, kc, vc)
  assert float(jnp.abs(g.out.kernel.get_value()).sum()) > 0
  assert float(jnp.abs(g.inp.kernel.get_value()).sum()) > 0


def test_errors():
  kc, vc = _cache()
  with pytest.raises(ValueError, match="consolidate: k_cache must have shape"):
    consolidate(_processor(False), kc[..., :4], vc[..., :4], 0, 1, jnp.zeros(1, jnp.int32),
                jnp.ones(1, bool), max_seg=2)
  with pytest.raises(ValueError, match="kv_rewrite: dk must have shape"):
    kv_rewrite(kc, vc, jnp.asarray([1]), jnp.ones((L, 2, H, D)), jnp.ones((L, 1, H, D)))
  with pytest.raises(ValueError, match="step_boundaries: newline_ids must be a non-empty"):
    step_boundaries(jnp.asarray([1, 2]), jnp.asarray([], jnp.int32))


@pytest.mark.slow
def test_consolidation_toy_quick_run_learns(tmp_path):
  from bottleneck_jax.experiments import registry
  s = registry.run_experiment("bottlenecked-consolidation-toy", workdir=tmp_path,
                              progress=False, quick=True)
  res = s["results"]
  assert res["mse_processor_init"] == pytest.approx(res["mse_frozen_backbone"], rel=1e-6)
  assert res["mse_processor_trained"] < res["mse_processor_init"]
