"""DN-CBM: the concept SAE vs NumPy, invariants, resampling, naming, probe loss and
explanation size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax import concepts as C

R = np.random.default_rng(0)
X = jnp.asarray(R.standard_normal((5, 6)), jnp.float32)
SAE = C.ConceptSAE(6, 2, rngs=nnx.Rngs(0))
P = SAE.params   # unit-norm dictionary rows W_dec [12, 6], W_enc [6, 12]


def test_concept_sae_is_the_papers_sae():
  """f = relu((x - b_dec) W_enc + b_enc), x_hat = f W_dec + b_dec, loss = mse + l1 |f|_1 with
  unit-norm dictionary rows (DN-CBM's formulas, in NumPy)."""
  sae = C.ConceptSAE(6, 2, rngs=nnx.Rngs(0))
  sae.b_enc[...] = jnp.asarray(R.standard_normal(12), jnp.float32)
  sae.b_dec[...] = jnp.asarray(R.standard_normal(6), jnp.float32)
  sae.W_dec[...] = 3.0 * sae.W_dec[...]          # normalised again in the forward pass
  we, be, wd, bd = (np.asarray(a, np.float64) for a in (sae.W_enc[...], sae.b_enc[...],
                                                         sae.W_dec[...], sae.b_dec[...]))
  wd = wd / np.linalg.norm(wd, axis=1, keepdims=True)
  x = np.asarray(X, np.float64)
  f = np.maximum((x - bd) @ we + be, 0)
  xh = f @ wd + bd
  out = sae(X, l1=0.1)
  np.testing.assert_allclose(out.z, f, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out.aux["x_hat"], xh, rtol=1e-5, atol=1e-5)
  ref = np.mean(((x - xh) ** 2).sum(1)) + 0.1 * np.mean(np.abs(f).sum(1))
  np.testing.assert_allclose(out.loss, ref, rtol=1e-5)
  assert float(out.aux["l0"]) == pytest.approx(np.mean((f > 0).sum(1)))
  np.testing.assert_allclose(out.bits, (f > 0).sum(1) * np.log2(12), rtol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(P.W_dec, axis=1), 1, rtol=1e-5)
  np.testing.assert_allclose(P.W_enc, P.W_dec.T, rtol=1e-6, atol=1e-6)


def test_training_keeps_unit_dictionary_and_lowers_loss():
  sae = C.ConceptSAE(6, 2, rngs=nnx.Rngs(0))
  import optax
  opt = nnx.Optimizer(sae, optax.sgd(0.05), wrt=nnx.Param)

  @nnx.jit
  def step(sae, opt):
    loss, g = nnx.value_and_grad(lambda m: m(X, l1=1e-3).loss)(sae)
    opt.update(sae, g)
    return loss

  losses = [float(step(sae, opt)) for _ in range(30)]
  assert losses[-1] < losses[0]
  np.testing.assert_allclose(np.linalg.norm(sae.params.W_dec, axis=1), 1, rtol=1e-5)
  assert float(sae(X).z.min()) >= 0


def test_resample_only_dead_latents_from_residuals():
  fire = jnp.asarray([0, 3] * 6, jnp.int32)
  q = C.resample_dead(P, X, fire, key=jax.random.key(1))
  dead = np.asarray(fire) == 0
  np.testing.assert_array_equal(np.asarray(q.W_dec)[~dead], np.asarray(P.W_dec)[~dead])
  np.testing.assert_array_equal(np.asarray(q.W_enc)[:, ~dead], np.asarray(P.W_enc)[:, ~dead])
  np.testing.assert_allclose(np.linalg.norm(q.W_dec, axis=1), 1, rtol=1e-5)
  we, be, wd, bd = (np.asarray(a, np.float64) for a in P)
  x = np.asarray(X, np.float64)
  resid = x - (np.maximum((x - bd) @ we + be, 0) @ wd + bd)
  unit = resid / np.linalg.norm(resid, axis=1, keepdims=True)
  for j in np.flatnonzero(dead):  # each new row is one of the normalised residuals
    assert np.max(unit @ np.asarray(q.W_dec[j], np.float64)) == pytest.approx(1.0, abs=1e-5)
  alive = np.linalg.norm(we[:, ~dead], axis=0).mean()
  np.testing.assert_allclose(np.linalg.norm(np.asarray(q.W_enc)[:, dead], axis=0), 0.2 * alive,
                             rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(q.b_enc)[dead], 0)


def test_naming_and_explanation_size():
  atoms = R.standard_normal((4, 8))
  atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
  vocab = np.concatenate([R.standard_normal((10, 8)), atoms[[2, 0, 3, 1]] * 3])
  nm = C.name_concepts(jnp.asarray(atoms * 2, jnp.float32), jnp.asarray(vocab, jnp.float32))
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
    (lambda: C.resample_dead(P, X, jnp.zeros(5, jnp.int32), key=0), "resample_dead: fire_counts"),
    (lambda: C.resample_dead(P, X[:, :5], jnp.zeros(12, jnp.int32), key=0), "resample_dead: x"),
    (lambda: C.resample_dead(P._replace(b_enc=jnp.zeros(3)), X, jnp.zeros(12, jnp.int32), key=0),
     "resample_dead: params.b_enc"),
    (lambda: C.name_concepts(P.W_dec, jnp.ones((0, 6))), "name_concepts: vocab_emb"),
    (lambda: C.name_concepts(P.W_dec, jnp.ones((3, 5))), "name_concepts: vocab_emb"),
    (lambda: C.explanation_size(jnp.ones((1, 4)), jnp.ones((2, 4)), jnp.zeros(2, jnp.int32),
                                fracs=(1.5,)), "explanation_size: fracs"),
])
def test_errors(call, msg):
  with pytest.raises((ValueError, TypeError), match=msg):
    call()
