"""residual_vq, grouped_vq and residual_fsq against NumPy loops: per-level argmin on the
residual, decoding from indices, quantiser dropout, the straight-through gradient through every
level, the per-level EMA step, product VQ per group and the residual FSQ scales."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.quantize import (
  ResidualVQ,
  grouped_vq,
  residual_fsq,
  residual_fsq_decode,
  residual_vq,
  residual_vq_decode,
  residual_vq_ema_update,
  vq_ema_init,
)

RNG = np.random.default_rng(7)
Z = RNG.normal(size=(4, 3, 2)).astype(np.float32)
CBS = RNG.normal(size=(3, 6, 2)).astype(np.float32) * np.array([1.0, 0.5, 0.25])[:, None, None]
_rvq = jax.jit(residual_vq, static_argnames=("metric", "grad", "implementation"))


def _np_rvq(z, cbs, active):
  r = z.reshape(-1, z.shape[-1]).astype(np.float64)
  idx, out = [], np.zeros_like(r)
  for i, cb in enumerate(cbs):
    if i >= active:
      idx.append(np.full(len(r), -1))
      continue
    j = ((r[:, None] - cb[None]) ** 2).sum(-1).argmin(-1)
    idx.append(j)
    out += cb[j]
    r = r - cb[j]
  return out.reshape(z.shape), np.stack(idx, -1).reshape(*z.shape[:-1], -1), r


@pytest.mark.parametrize("active", [3, 1])
def test_residual_vq_matches_numpy_and_decodes(active):
  out = _rvq(jnp.asarray(Z), jnp.asarray(CBS), active_levels=jnp.asarray(active))
  ref, idx, r = _np_rvq(Z, CBS, active)
  np.testing.assert_array_equal(np.asarray(out.aux["indices"]), idx)
  np.testing.assert_allclose(np.asarray(out.z), ref, atol=1e-5)
  np.testing.assert_allclose(np.asarray(out.aux["residual"]).reshape(-1, 2), r, atol=1e-5)
  np.testing.assert_allclose(np.asarray(residual_vq_decode(out.aux["indices"], jnp.asarray(CBS))),
                             ref, atol=1e-5)
  np.testing.assert_allclose(np.asarray(out.bits), np.full(4, 3 * active * math.log2(6)),
                             rtol=1e-6)
  assert np.all(np.asarray(out.aux["commitment_loss"])[active:] == 0)


def test_gradient_flows_through_every_level():
  g = jax.grad(lambda a: jnp.sum(_rvq(a, jnp.asarray(CBS), active_levels=None).z))(
      jnp.asarray(Z))
  np.testing.assert_allclose(np.asarray(g), 3.0)     # straight-through at each of 3 levels


def test_residual_vq_ema_update_is_per_level_vq_ema():
  idx = np.asarray(_rvq(jnp.asarray(Z), jnp.asarray(CBS)).aux["indices"])
  state = jax.vmap(vq_ema_init)(jnp.asarray(CBS))
  new = jax.jit(residual_vq_ema_update)(state, jnp.asarray(Z), jnp.asarray(idx), decay=0.8)
  r = Z.reshape(-1, 2).astype(np.float64)
  for i in range(3):
    j = idx.reshape(-1, 3)[:, i]
    oh = np.eye(6)[j]
    n = 0.8 * 1.0 + 0.2 * oh.sum(0)
    m = 0.8 * CBS[i] + 0.2 * oh.T @ r
    sm = (n + 1e-5) / (n.sum() + 6e-5) * n.sum()
    np.testing.assert_allclose(np.asarray(new.cluster_size[i]), n, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(new.codebook[i]), m / sm[:, None], rtol=1e-4,
                               atol=1e-5)
    r = r - CBS[i][j]


def test_residual_vq_module_trains_under_jit():
  rvq = ResidualVQ(2, 8, 2, ema_decay=0.5, rngs=nnx.Rngs(0))
  step = nnx.jit(lambda m, a: m(a, update=True))
  first = step(rvq, jnp.asarray(Z))
  for _ in range(5):
    last = step(rvq, jnp.asarray(Z))
  assert float(jnp.sum(last.aux["commitment_loss"])) < float(jnp.sum(first.aux["commitment_loss"]))


@pytest.mark.parametrize("shared", [False, True])
def test_grouped_vq_is_vq_per_group(shared):
  z = RNG.normal(size=(5, 6)).astype(np.float32)
  cbs = RNG.normal(size=(4, 2)).astype(np.float32) if shared else \
      RNG.normal(size=(3, 4, 2)).astype(np.float32)
  out = grouped_vq(jnp.asarray(z), jnp.asarray(cbs), groups=3)
  for g in range(3):
    cb = cbs if shared else cbs[g]
    zg = z[:, 2 * g:2 * g + 2]
    j = ((zg[:, None] - cb[None]) ** 2).sum(-1).argmin(-1)
    np.testing.assert_array_equal(np.asarray(out.aux["indices"])[:, g], j)
    np.testing.assert_allclose(np.asarray(out.z)[:, 2 * g:2 * g + 2], cb[j], atol=1e-6)
  np.testing.assert_allclose(np.asarray(out.bits), np.full(5, 3 * 2.0))


def _np_fsq(z, levels):
  lv = np.asarray(levels, np.float64)
  half = (lv - 1) * (1 - 1e-3) / 2
  off = np.where(lv % 2 == 0, 0.5, 0.0)
  b = np.tanh(z + np.arctanh(off / half)) * half - off
  return np.round(b) / np.floor(lv / 2)


def test_residual_fsq_matches_numpy_and_round_trips():
  levels = [8, 5, 5]
  z = RNG.normal(size=(6, 3)).astype(np.float32) * 0.8
  out = residual_fsq(jnp.asarray(z), levels=levels, num_levels=3)
  r, ref = z.astype(np.float64), 0
  for i in range(3):
    s = (np.asarray(levels, np.float64) - 1) ** -i
    q = _np_fsq(r / s, levels) * s
    ref, r = ref + q, r - q
  np.testing.assert_allclose(np.asarray(out.z), ref, atol=1e-5)
  np.testing.assert_allclose(np.asarray(residual_fsq_decode(out.aux["indices"], levels=levels)),
                             np.asarray(out.z), atol=1e-6)
  # each stage shrinks the error
  err = [np.abs(z - np.asarray(residual_fsq(jnp.asarray(z), levels=levels, num_levels=q).z)).max()
         for q in (1, 2, 3)]
  assert err[0] > err[1] > err[2]


def test_validation():
  z, cbs = jnp.zeros((3, 2)), jnp.zeros((2, 4, 2))
  with pytest.raises(ValueError, match="residual_vq: codebooks must have size 2 on axis -1"):
    residual_vq(z, jnp.zeros((2, 4, 3)))
  with pytest.raises(ValueError, match="residual_vq: active_levels must be"):
    residual_vq(z, cbs, active_levels=3)
  with pytest.raises(TypeError, match="residual_vq: z must have a floating dtype"):
    residual_vq(z.astype(jnp.int32), cbs)
  with pytest.raises(ValueError, match="grouped_vq: z must have size groups"):
    grouped_vq(jnp.zeros((3, 5)), cbs)
  with pytest.raises(ValueError, match="grouped_vq: groups must be given"):
    grouped_vq(z, jnp.zeros((4, 2)))
  with pytest.raises(ValueError, match="residual_fsq: levels must be"):
    residual_fsq(z, levels=[2, 5], num_levels=2)
  with pytest.raises(ValueError, match="residual_vq_decode: indices must have size 2"):
    residual_vq_decode(jnp.zeros((3, 3), jnp.int32), cbs)


def test_decode_under_an_explicit_mesh_with_batch_sharded_indices():
  """train()'s default mesh: batch-sharded indices (with -1 entries) decode to the NumPy sum of
  codebook rows, sharded like the batch (this used to raise a sharding error)."""
  from jax.sharding import AxisType
  from jax.sharding import PartitionSpec as P
  rng = np.random.default_rng(11)
  cbs = rng.standard_normal((3, 5, 4)).astype(np.float32)
  idx = rng.integers(-1, 5, (8, 3)).astype(np.int32)
  expected = sum(np.where(idx[:, i:i + 1] >= 0, cbs[i][np.maximum(idx[:, i], 0)], 0.0)
                 for i in range(3))
  mesh = jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(AxisType.Explicit,) * 2)
  with jax.set_mesh(mesh):
    out = jax.jit(residual_vq_decode)(jax.device_put(idx, P(("data", "fsdp"))),
                                      jax.device_put(cbs, P()))
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-6, atol=1e-6)
