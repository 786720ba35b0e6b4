"""Rotation trick, k-means initialisation and dead-code restarts against NumPy: the rotation's
Jacobian is lambda R (formed explicitly here), Lloyd's iterations, the restart rule; the EMA
VectorQuantizer initialises from k-means once and restarts dead codes under nnx.jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.quantize import (
  VectorQuantizer,
  kmeans,
  replace_dead_codes,
  rotation_trick,
  vector_quantize,
  vq_ema_init,
)

RNG = np.random.default_rng(3)


def test_rotation_trick_forward_is_q_and_vjp_is_lambda_r_transpose():
  z = RNG.normal(size=(5, 4))
  q = RNG.normal(size=(5, 4))
  g = RNG.normal(size=(5, 4))
  out, vjp = jax.vjp(lambda a: rotation_trick(a, jnp.asarray(q, jnp.float32)),
                     jnp.asarray(z, jnp.float32))
  np.testing.assert_allclose(np.asarray(out), q, atol=1e-6)
  (gz,) = vjp(jnp.asarray(g, jnp.float32))
  for n in range(5):
    zh, qh = z[n] / np.linalg.norm(z[n]), q[n] / np.linalg.norm(q[n])
    w = (zh + qh) / np.linalg.norm(zh + qh)
    r = np.eye(4) - 2 * np.outer(w, w) + 2 * np.outer(qh, zh)
    lam = np.linalg.norm(q[n]) / np.linalg.norm(z[n])
    np.testing.assert_allclose(lam * r @ z[n], q[n], atol=1e-9)      # the identity itself
    np.testing.assert_allclose(np.asarray(gz[n]), lam * r.T @ g[n], rtol=1e-5, atol=1e-5)


def test_vector_quantize_rotation_gradient_differs_from_ste_but_not_the_value():
  z = jnp.asarray(RNG.normal(size=(6, 3)), jnp.float32)
  cb = jnp.asarray(RNG.normal(size=(8, 3)), jnp.float32)
  f = jax.jit(lambda a, gr: vector_quantize(a, cb, grad=gr).z, static_argnums=1)
  idx = np.asarray(vector_quantize(z, cb).aux["indices"])
  np.testing.assert_array_equal(np.asarray(f(z, "rotation")), np.asarray(cb)[idx])   # exact
  np.testing.assert_allclose(np.asarray(f(z, "ste")), np.asarray(cb)[idx], atol=1e-6)
  g_ste = jax.grad(lambda a: jnp.sum(f(a, "ste")[:, 0]))(z)
  g_rot = jax.grad(lambda a: jnp.sum(f(a, "rotation")[:, 0]))(z)
  np.testing.assert_allclose(np.asarray(g_ste), np.tile([1.0, 0, 0], (6, 1)))
  assert not np.allclose(np.asarray(g_rot), np.asarray(g_ste))


def _np_lloyd(x, means, iters):
  for _ in range(iters):
    idx = ((x[:, None] - means[None]) ** 2).sum(-1).argmin(-1)
    for k in range(len(means)):
      if (idx == k).any():
        means[k] = x[idx == k].mean(0)
  idx = ((x[:, None] - means[None]) ** 2).sum(-1).argmin(-1)
  return means, np.bincount(idx, minlength=len(means))


def test_kmeans_matches_numpy_lloyd_from_the_same_start():
  x = np.concatenate([RNG.normal(size=(30, 2)) + c for c in ([0, 0], [6, 0], [0, 6])])
  x = x.astype(np.float32)
  key = jax.random.key(1)
  start = np.asarray(x)[np.asarray(jax.random.choice(key, 90, (5,), replace=False))]
  res = jax.jit(kmeans, static_argnums=2, static_argnames="iters")(key, jnp.asarray(x), 5,
                                                                   iters=7)
  means, counts = _np_lloyd(x.astype(np.float64), start.astype(np.float64), 7)
  np.testing.assert_allclose(np.asarray(res.codebook), means, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(res.counts), counts)
  # N < K: drawn with replacement, duplicates keep their mean, counts still sum to N
  small = kmeans(key, jnp.asarray(x[:3]), 5, iters=3)
  assert int(small.counts.sum()) == 3 and np.isfinite(np.asarray(small.codebook)).all()


def test_replace_dead_codes_rule():
  cb = RNG.normal(size=(6, 2)).astype(np.float32)
  state = vq_ema_init(jnp.asarray(cb))._replace(
      cluster_size=jnp.array([3.0, 0.5, 2.5, 0.0, 1.99, 9.0]))
  z = RNG.normal(size=(4, 2)).astype(np.float32)
  new = jax.jit(replace_dead_codes)(jax.random.key(0), state, jnp.asarray(z), threshold=2.0)
  dead = np.array([0, 1, 0, 1, 1, 0], bool)
  ncb = np.asarray(new.codebook)
  np.testing.assert_array_equal(ncb[~dead], cb[~dead])
  for row in ncb[dead]:
    assert any(np.array_equal(row, zr) for zr in z)
  np.testing.assert_allclose(np.asarray(new.cluster_size), [3.0, 2, 2.5, 2, 2, 9.0])
  np.testing.assert_allclose(np.asarray(new.embed_avg)[dead], 2 * ncb[dead])
  # all dead, one vector: no NaN, every code is that vector
  all_dead = replace_dead_codes(jax.random.key(1), state._replace(
      cluster_size=jnp.zeros(6)), jnp.asarray(z[:1]), threshold=2.0)
  np.testing.assert_array_equal(np.asarray(all_dead.codebook), np.tile(z[:1], (6, 1)))


def test_vector_quantizer_kmeans_init_once_and_restarts_under_jit():
  x = jnp.asarray(np.concatenate([RNG.normal(size=(40, 2)) * 0.1 + c
                                  for c in ([0, 0], [5, 0], [0, 5], [5, 5])]), jnp.float32)
  vq = VectorQuantizer(4, 2, ema_decay=0.8, kmeans_init=True, kmeans_iters=10,
                       dead_code_threshold=0.5, rngs=nnx.Rngs(0))

  @nnx.jit
  def step(m, a):
    return m(a, update=True)

  out = step(vq, x)
  assert bool(vq.initted[...])
  # k-means found the four blobs: every vector is quantised to its blob's centre
  centres = np.sort(np.round(np.asarray(vq.codebook[...]), 0), axis=0)
  np.testing.assert_array_equal(centres, [[0, 0], [0, 0], [5, 5], [5, 5]])
  assert float(out.aux["usage"]) == 1.0
  before = np.asarray(vq.codebook[...])
  step(vq, x)              # no second k-means: one EMA step from the clusters barely moves them
  np.testing.assert_allclose(np.asarray(vq.codebook[...]), before, atol=0.05)


def test_validation():
  z = jnp.zeros((3, 2))
  with pytest.raises(ValueError, match="rotation_trick: q must have the shape of z"):
    rotation_trick(z, jnp.zeros((3, 3)))
  with pytest.raises(ValueError, match="vector_quantize: grad must be one of"):
    vector_quantize(z, jnp.zeros((4, 2)), grad="gumbel")
  with pytest.raises(TypeError, match="kmeans: key must be a jax.random key"):
    kmeans(0, z, 2)
  with pytest.raises(TypeError, match="kmeans: x must have a floating dtype"):
    kmeans(jax.random.key(0), jnp.zeros((3, 2), jnp.int32), 2)
  with pytest.raises(ValueError, match="replace_dead_codes: z must have size 2"):
    replace_dead_codes(jax.random.key(0), vq_ema_init(jnp.zeros((4, 2))), jnp.zeros((3, 3)))
  with pytest.raises(ValueError, match="VectorQuantizer: kmeans_init and dead_code_threshold"):
    VectorQuantizer(4, 2, kmeans_init=True, rngs=nnx.Rngs(0))
