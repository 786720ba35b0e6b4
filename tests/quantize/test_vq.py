"""vector_quantize and the EMA codebook against NumPy: argmin indices, closed-form losses,
histogram and perplexity, the straight-through gradient, the VQ-VAE-2 EMA formulas."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.quantize import (
  VectorQuantizer,
  VQEMAState,
  vector_quantize,
  vq_ema_init,
  vq_ema_update,
)

RNG = np.random.default_rng(0)
Z = RNG.normal(size=(2, 6, 3)).astype(np.float32)
CB = RNG.normal(size=(10, 3)).astype(np.float32)
_vq = jax.jit(vector_quantize, static_argnames=("metric", "implementation"))


def test_forward_matches_numpy():
  out = _vq(jnp.asarray(Z), jnp.asarray(CB), beta=0.25)
  d2 = ((Z.astype(np.float64)[..., None, :] - CB[None, None].astype(np.float64)) ** 2).sum(-1)
  idx = d2.argmin(-1)
  np.testing.assert_array_equal(np.asarray(out.aux["indices"]), idx)
  np.testing.assert_allclose(np.asarray(out.z), CB[idx], atol=1e-6)
  mse = np.mean((Z - CB[idx]) ** 2)
  np.testing.assert_allclose(float(out.aux["codebook_loss"]), mse, rtol=1e-5)
  np.testing.assert_allclose(float(out.aux["commitment_loss"]), mse, rtol=1e-5)
  np.testing.assert_allclose(float(out.loss), 1.25 * mse, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(out.aux["distances"]), d2.min(-1), rtol=1e-4, atol=1e-5)
  counts = np.bincount(idx.ravel(), minlength=10)
  np.testing.assert_array_equal(np.asarray(out.aux["counts"]), counts)
  p = counts[counts > 0] / counts.sum()
  np.testing.assert_allclose(float(out.aux["perplexity"]), np.exp(-(p * np.log(p)).sum()),
                             rtol=1e-5)
  np.testing.assert_allclose(float(out.aux["usage"]), (counts > 0).mean(), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(out.bits), [6 * math.log2(10)] * 2, rtol=1e-6)


def test_cosine_metric():
  out = _vq(jnp.asarray(Z), jnp.asarray(CB), metric="cosine")
  zn = Z / np.linalg.norm(Z, axis=-1, keepdims=True)
  en = CB / np.linalg.norm(CB, axis=-1, keepdims=True)
  idx = (zn @ en.T).argmax(-1)
  np.testing.assert_array_equal(np.asarray(out.aux["indices"]), idx)
  np.testing.assert_allclose(np.asarray(out.z), en[idx], atol=1e-6)


def test_straight_through_and_codebook_gradients():
  w = RNG.normal(size=Z.shape).astype(np.float32)

  def f(z, cb):
    out = vector_quantize(z, cb, beta=0.25)
    return jnp.sum(out.z * w) + out.loss, out.aux["indices"]

  (gz, gcb), idx = jax.jit(jax.grad(f, argnums=(0, 1), has_aux=True))(jnp.asarray(Z),
                                                                        jnp.asarray(CB))
  idx = np.asarray(idx)
  n_el = Z.size
  # STE: identity for the task term; the commitment term adds 2 beta (z - q) / (N d)
  np.testing.assert_allclose(np.asarray(gz), w + 0.25 * 2 * (Z - CB[idx]) / n_el, atol=1e-6)
  expect = np.zeros_like(CB, dtype=np.float64)
  for n in np.ndindex(*idx.shape):
    expect[idx[n]] += -2 * (Z[n] - CB[idx[n]]) / n_el
  np.testing.assert_allclose(np.asarray(gcb), expect, atol=1e-6)


def _np_ema(n, m, z, idx, decay, eps):
  k = n.shape[0]
  counts = np.zeros(k)
  sums = np.zeros_like(m)
  for zi, i in zip(z.reshape(-1, z.shape[-1]), idx.ravel()):
    counts[i] += 1
    sums[i] += zi
  n = decay * n + (1 - decay) * counts
  m = decay * m + (1 - decay) * sums
  total = n.sum()
  smoothed = (n + eps) / (total + k * eps) * total
  return n, m, m / smoothed[:, None]


def test_ema_update_matches_numpy_formulas():
  state = vq_ema_init(jnp.asarray(CB))
  n, m = np.ones(10), CB.astype(np.float64)
  np.testing.assert_array_equal(np.asarray(state.codebook), CB)
  for step in range(2):
    idx = _vq(jnp.asarray(Z + step), state.codebook).aux["indices"]
    state = vq_ema_update(state, jnp.asarray(Z + step), idx, decay=0.9, epsilon=1e-3)
    n, m, e = _np_ema(n, m, Z + step, np.asarray(idx), 0.9, 1e-3)
    np.testing.assert_allclose(np.asarray(state.cluster_size), n, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(state.embed_avg), m, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(state.codebook), e, rtol=1e-5, atol=1e-6)
  assert np.bincount(np.asarray(idx).ravel(), minlength=10).min() == 0  # an unused code is finite


def test_modules_learned_and_ema():
  vq = VectorQuantizer(10, 3, rngs=nnx.Rngs(0))
  cb = np.asarray(vq.codebook[...])
  assert cb.shape == (10, 3) and np.abs(cb).max() <= 0.1
  assert len(jax.tree.leaves(nnx.state(vq, nnx.Param))) == 1
  out = vq(jnp.asarray(Z))
  ref = _vq(jnp.asarray(Z), jnp.asarray(cb))
  np.testing.assert_allclose(float(out.loss), float(ref.loss), rtol=1e-6)

  ema = VectorQuantizer(10, 3, ema_decay=0.9, rngs=nnx.Rngs(0))
  assert not jax.tree.leaves(nnx.state(ema, nnx.Param))
  cb0 = jnp.asarray(ema.codebook[...])
  out = nnx.jit(lambda m, x: m(x, update=True))(ema, jnp.asarray(Z))  # buffers move under jit
  np.testing.assert_allclose(float(out.loss),
                             0.25 * float(_vq(jnp.asarray(Z), cb0)
                                          .aux["commitment_loss"]), rtol=1e-6)
  expect = vq_ema_update(vq_ema_init(cb0), jnp.asarray(Z), out.aux["indices"], decay=0.9)
  np.testing.assert_allclose(np.asarray(ema.codebook[...]), np.asarray(expect.codebook),
                             rtol=1e-6)
  ema(jnp.asarray(Z))  # update=False leaves the buffers
  np.testing.assert_allclose(np.asarray(ema.codebook[...]), np.asarray(expect.codebook),
                             rtol=1e-6)


def test_vmap_matches_batched():
  ref = _vq(jnp.asarray(Z), jnp.asarray(CB))
  vm = jax.jit(jax.vmap(lambda z: vector_quantize(z, jnp.asarray(CB)).aux["indices"]))(
      jnp.asarray(Z))
  np.testing.assert_array_equal(np.asarray(vm), np.asarray(ref.aux["indices"]))


def test_validation():
  z, cb = jnp.zeros((3, 4)), jnp.zeros((5, 4))
  with pytest.raises(ValueError, match="vector_quantize: beta must be >= 0"):
    vector_quantize(z, cb, beta=-1.0)
  with pytest.raises(ValueError, match="vector_quantize: metric must be one of"):
    vector_quantize(z, cb, metric="dot")
  with pytest.raises(ValueError, match="vector_quantize: codebook must have size 4"):
    vector_quantize(z, jnp.zeros((5, 2)))
  with pytest.raises(ValueError, match="vector_quantize: z must hold at least one vector"):
    vector_quantize(jnp.zeros((0, 4)), cb)
  state = vq_ema_init(cb)
  assert isinstance(state, VQEMAState)
  with pytest.raises(ValueError, match=r"vq_ema_update: indices must have shape \[3\]"):
    vq_ema_update(state, z, jnp.zeros((2,), jnp.int32))
  with pytest.raises(ValueError, match="vq_ema_update: decay must be <= 1"):
    vq_ema_update(state, z, jnp.zeros((3,), jnp.int32), decay=1.5)
  with pytest.raises(TypeError, match="vq_ema_update: state must be a VQEMAState"):
    vq_ema_update((1, 2, 3), z, jnp.zeros((3,), jnp.int32))
