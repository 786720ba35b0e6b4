"""Tests for bottleneck_jax/ops/_sparse_autoencoder (the SAE maths of the compression family
and of DN-CBM): the SAELens gradient formulas of JumpReLU on a
hand-made vector, TopK against a NumPy sort, and the recovery of a known dictionary (the test plan)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bottleneck_jax.ops import (
  SAEParams,
  heaviside_step,
  init_sae,
  jumprelu,
  normalize_decoder,
  sae_decode,
  sae_encode,
  sae_loss,
  sae_metrics,
  topk_activation,
)


def test_jumprelu_and_step_gradients_equal_the_saelens_formulas():
  x = jnp.array([0.50, 0.98, 1.01, 1.60])
  theta = jnp.array([1.0, 1.0, 1.0, 1.0])
  eps = 0.05
  np.testing.assert_allclose(np.asarray(jumprelu(x, theta, bandwidth=eps)),
                             [0.0, 0.0, 1.01, 1.60], rtol=1e-6)
  gx, gt = jax.grad(lambda a, t: jnp.sum(jumprelu(a, t, bandwidth=eps)), (0, 1))(x, theta)
  np.testing.assert_array_equal(np.asarray(gx), [0, 0, 1, 1])
  # d/dtheta = -(theta/eps) K((x - theta)/eps): K = 1 for |x - theta| < eps/2 (0.98 and 1.01)
  np.testing.assert_allclose(np.asarray(gt), [0, -20.0, -20.0, 0], rtol=1e-6)
  _, gt0 = jax.grad(lambda a, t: jnp.sum(heaviside_step(a, t, bandwidth=eps)), (0, 1))(x, theta)
  np.testing.assert_allclose(np.asarray(gt0), [0, -20.0, -20.0, 0], rtol=1e-6)


def test_topk_keeps_exactly_the_k_largest():
  pre = jnp.asarray(np.random.default_rng(0).normal(size=(5, 12)), jnp.float32)
  f = np.asarray(topk_activation(pre, 3))
  p = np.asarray(pre)
  for row, fr in zip(p, f):
    keep = np.argsort(-row)[:3]
    ref = np.zeros_like(row)
    ref[keep] = np.maximum(row[keep], 0)
    np.testing.assert_array_equal(fr, ref)


def test_encode_decode_loss_and_metrics_by_hand():
  w = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])          # d_sae = 3, d_in = 2
  params = SAEParams(w.T, jnp.zeros(3), w, jnp.array([0.5, 0.0]))
  x = jnp.array([[1.5, 2.0]])
  f = sae_encode(params, x, activation="relu")
  np.testing.assert_allclose(np.asarray(f.pre), [[1.0, 4.0, 3.0]])
  np.testing.assert_allclose(np.asarray(sae_decode(params, f.features)), [[4.5, 11.0]])
  r = sae_loss(params, x, activation="relu", l1=0.1)
  norms = np.array([1.0, 2.0, np.sqrt(2)])
  np.testing.assert_allclose(float(r.sparsity), 0.1 * (1 * 1 + 4 * 2 + 3 * norms[2]), rtol=1e-5)
  np.testing.assert_allclose(float(r.reconstruction), 3.0**2 + 9.0**2, rtol=1e-5)
  assert float(sae_metrics(x, x, f.features).l0) == 3.0


@pytest.mark.slow
def test_topk_sae_recovers_a_known_dictionary():
  """Spec §6.3: 64 unit atoms in 32-d, 3 active (U(0.5, 2)); a TopK SAE (k=3, d_sae=128)
  recovers them: MMCS >= 0.98, >= 95 % of atoms with |cos| > 0.9, L0 == 3."""
  r = np.random.default_rng(0)
  atoms = r.standard_normal((64, 32))
  atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
  atoms_j = jnp.asarray(atoms, jnp.float32)

  def batch(key):
    k1, k2 = jax.random.split(key)
    idx = jax.vmap(lambda k: jax.random.choice(k, 64, (3,), replace=False))(
        jax.random.split(k1, 512))
    amp = jax.random.uniform(k2, (512, 3), minval=0.5, maxval=2.0)
    return jnp.einsum("bk,bkd->bd", amp, atoms_j[idx])

  params = normalize_decoder(init_sae(1, 32, 128))
  tx = optax.adam(2e-3)
  state = tx.init(params)

  @jax.jit
  def run(params, state, key):
    def step(carry, i):
      params, state = carry
      x = batch(jax.random.fold_in(key, i))
      g = jax.grad(lambda p: sae_loss(p, x, activation="topk", k=3).loss)(params)
      with jax.numpy_dtype_promotion("standard"):
        upd, state = tx.update(g, state, params)
        params = optax.apply_updates(params, upd)
      return (normalize_decoder(params), state), None
    (params, state), _ = jax.lax.scan(step, (params, state), jnp.arange(1000))
    return params, state

  for i in range(3):
    params, state = run(params, state, jax.random.key(i))
  dec = np.asarray(params.W_dec)
  cos = np.abs(atoms @ (dec / np.linalg.norm(dec, axis=1, keepdims=True)).T).max(axis=1)
  assert cos.mean() >= 0.98, cos.mean()
  assert (cos > 0.9).mean() >= 0.95
  x = batch(jax.random.key(99))
  f = sae_encode(params, x, activation="topk", k=3).features
  assert float(sae_metrics(x, sae_decode(params, f), f).l0) == 3.0
