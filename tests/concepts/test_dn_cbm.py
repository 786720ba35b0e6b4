"""DN-CBM: SAE maths vs NumPy, invariants, resampling, naming, probe loss and explanation size
(spec concepts.md §6)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax import concepts as C

R = np.random.default_rng(0)
P = C.sae_init(6, expansion=2, key=jax.random.key(0))
X = jnp.asarray(R.standard_normal((5, 6)), jnp.float32)


def test_sae_matches_numpy():
  p = C.SAEParams(P.w_enc, jnp.asarray(R.standard_normal(12), jnp.float32), P.w_dec,
                  jnp.asarray(R.standard_normal(6), jnp.float32))
  we, be, wd, bd = (np.asarray(a, np.float64) for a in p)
  x = np.asarray(X, np.float64)
  f = np.maximum((x - bd) @ we.T + be, 0)
  xh = f @ wd.T + bd
  np.testing.assert_allclose(C.sae_encode(p, X), f, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(C.sae_decode(p, jnp.asarray(f, jnp.float32)), xh, rtol=1e-5,
                             atol=1e-5)
  out = C.sae_loss(p, X, l1=0.1)
  ref = np.mean(((x - xh) ** 2).sum(1)) + 0.1 * np.mean(np.abs(f).sum(1))
  np.testing.assert_allclose(out.loss, ref, rtol=1e-5)
  assert float(out.aux["l0"]) == pytest.approx(np.mean((f > 0).sum(1)))
  np.testing.assert_allclose(np.linalg.norm(P.w_dec, axis=0), 1, rtol=1e-5)


def test_training_keeps_unit_decoder_and_lowers_loss():
  sae = C.SparseAutoencoder(6, 2, rngs=nnx.Rngs(0))
  import optax
  opt = nnx.Optimizer(sae, optax.sgd(0.05), wrt=nnx.Param)

  @nnx.jit
  def step(sae, opt):
    loss, g = nnx.value_and_grad(lambda m: m(X, l1=1e-3).loss)(sae)
    opt.update(sae, g)
    return loss

  losses = [float(step(sae, opt)) for _ in range(30)]
  assert losses[-1] < losses[0]
  np.testing.assert_allclose(np.linalg.norm(sae.params.w_dec, axis=0), 1, rtol=1e-5)
  out = sae(X)
  assert float(out.z.min()) >= 0 and out.bits.shape == (5,)
  renorm = C.renorm_decoder(P._replace(w_dec=3 * P.w_dec))
  np.testing.assert_allclose(renorm.w_dec, P.w_dec, rtol=1e-5)


def test_resample_only_dead_latents_from_residuals():
  fire = jnp.asarray([0, 3] * 6, jnp.int32)
  q = C.resample_dead(P, X, fire, key=jax.random.key(1))
  dead = np.asarray(fire) == 0
  np.testing.assert_array_equal(np.asarray(q.w_dec)[:, ~dead], np.asarray(P.w_dec)[:, ~dead])
  np.testing.assert_allclose(np.linalg.norm(q.w_dec, axis=0), 1, rtol=1e-5)
  resid = np.asarray(X - C.sae_decode(P, C.sae_encode(P, X)))
  unit = resid / np.linalg.norm(resid, axis=1, keepdims=True)
  for j in np.flatnonzero(dead):  # each new column is one of the normalised residuals
    assert np.max(unit @ np.asarray(q.w_dec[:, j])) == pytest.approx(1.0, abs=1e-5)
  alive = np.linalg.norm(np.asarray(P.w_enc)[~dead], axis=1).mean()
  np.testing.assert_allclose(np.linalg.norm(np.asarray(q.w_enc)[dead], axis=1), 0.2 * alive,
                             rtol=1e-5)


def test_naming_and_explanation_size():
  atoms = R.standard_normal((4, 8))
  atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
  vocab = np.concatenate([R.standard_normal((10, 8)), atoms[[2, 0, 3, 1]] * 3])
  nm = C.name_concepts(jnp.asarray(atoms.T * 2, jnp.float32), jnp.asarray(vocab, jnp.float32))
  np.testing.assert_array_equal(nm.index, [11, 13, 10, 12])
  np.testing.assert_allclose(nm.similarity, 1.0, rtol=1e-5)
  f = jnp.asarray([[5.0, 3.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, -4.0, 1.0, 2.0]])
  size = C.explanation_size(jnp.ones((1, 4)), f, jnp.zeros(3, jnp.int32), fracs=(0.5, 0.9, 1.0))
  np.testing.assert_array_equal(size, [[1, 3, 4], [0, 0, 0], [1, 3, 3]])
  ab = C.explanation_size(jnp.ones((1, 4)), f[2:], jnp.zeros(1, jnp.int32), fracs=(0.5,),
                          mode="abs")
  np.testing.assert_array_equal(ab, [[1]])
  w = jnp.asarray([[1.0, -2.0], [0.5, 0.0]])
  fy = jnp.asarray([[1.0, 2.0]])
  logits = np.asarray(fy) @ np.asarray(w).T
  ce = np.log(np.exp(logits).sum()) - logits[0, 1]
  np.testing.assert_allclose(C.sparse_probe_loss(w, fy, jnp.asarray([1]), lam=2.0),
                             ce + 2 * np.abs(np.asarray(w)).mean(), rtol=1e-5)


@pytest.mark.parametrize("call, msg", [
    (lambda: C.sae_encode(P, jnp.ones((2, 5))), "sae_encode: x must have size 6"),
    (lambda: C.sae_decode(P, jnp.ones((2, 6))), "sae_decode: f must have size 12"),
    (lambda: C.resample_dead(P, X, jnp.zeros(5, jnp.int32), key=0), "resample_dead: fire_counts"),
    (lambda: C.name_concepts(P.w_dec, jnp.ones((0, 6))), "name_concepts: vocab_emb"),
    (lambda: C.explanation_size(jnp.ones((1, 4)), jnp.ones((2, 4)), jnp.zeros(2, jnp.int32),
                                fracs=(1.5,)), "explanation_size: fracs"),
])
def test_errors(call, msg):
  with pytest.raises((ValueError, TypeError), match=msg):
    call()
