"""Sparse-CBM: Gumbel-softmax laws, the CBL losses vs NumPy transcriptions of the reference
(quirks included), Concept Matrix Search vs NumPy (the project's test plan)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax import concepts as C

R = np.random.default_rng(0)
H = R.standard_normal((5, 3)).astype(np.float32)
KEY = jax.random.key(0)


def _log_softmax(x, axis):
  x = x - x.max(axis, keepdims=True)
  return x - np.log(np.exp(x).sum(axis, keepdims=True))


def test_gumbel_softmax_laws():
  logits = jnp.asarray([[1.0, 0.0, -1.0, 0.5]])
  y = C.gumbel_softmax(logits, key=KEY)
  np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-6)
  g = jax.random.gumbel(KEY, logits.shape, jnp.float32)
  cold = C.gumbel_softmax(logits, key=KEY, tau=0.01)
  np.testing.assert_allclose(cold, jax.nn.one_hot(jnp.argmax(logits + g, -1), 4), atol=1e-3)
  hard = C.gumbel_softmax(logits, key=KEY, hard=True)
  assert sorted(np.asarray(hard)[0].tolist()) == [0, 0, 0, 1]
  w = jnp.asarray([1.0, 2.0, 3.0, 4.0])
  gh = jax.grad(lambda l: jnp.sum(C.gumbel_softmax(l, key=KEY, hard=True) * w))(logits)
  gs = jax.grad(lambda l: jnp.sum(C.gumbel_softmax(l, key=KEY) * w))(logits)
  np.testing.assert_allclose(gh, gs, rtol=1e-6)
  many = C.gumbel_softmax(jnp.broadcast_to(logits, (20000, 4)), key=jax.random.key(1))
  freq = np.bincount(np.asarray(jnp.argmax(many, -1)), minlength=4) / 20000
  np.testing.assert_allclose(freq, jax.nn.softmax(logits)[0], atol=0.01)


def test_losses_match_numpy_transcriptions():
  # contrastive, reference quirk: torch.diag of a 5x3 matrix takes 3 entries
  ref = -(np.diag(_log_softmax(H, 0)).mean() + np.diag(_log_softmax(H, 1)).mean()) / 2
  np.testing.assert_allclose(C.loss_contrastive(jnp.asarray(H)), ref, rtol=1e-5)
  sq = H[:3, :3]
  ref_sq = -(np.diag(_log_softmax(sq, 0)).mean() + np.diag(_log_softmax(sq, 1)).mean()) / 2
  np.testing.assert_allclose(C.loss_contrastive(jnp.asarray(H), mode="diag_square"), ref_sq,
                             rtol=1e-5)
  w = R.standard_normal((3, 3)).astype(np.float32)
  np.testing.assert_allclose(C.loss_l1(jnp.asarray(w)), 1e-3 * np.abs(w).sum() / 3, rtol=1e-6)
  s = R.standard_normal((5, 3)).astype(np.float32)

  def prep(a):
    a = (a - a.mean(0, keepdims=True)) ** 3
    return a / np.linalg.norm(a, axis=0, keepdims=True)

  np.testing.assert_allclose(C.loss_cos_cubed(jnp.asarray(s), jnp.asarray(H)),
                             -np.mean((prep(s) * prep(H)).sum(0)), rtol=1e-5)
  # gumbel: the mean of -log of the two Gumbel-softmaxes drawn with the split keys
  k0, k1 = jax.random.split(KEY)
  g0 = np.asarray(jax.random.gumbel(k0, H.shape, jnp.float32))
  g1 = np.asarray(jax.random.gumbel(k1, H.shape, jnp.float32))
  ref_g = (-_log_softmax(H + g0, 0).mean() - _log_softmax(H + g1, 1).mean()) / 2
  np.testing.assert_allclose(C.loss_gumbel(jnp.asarray(H), key=KEY), ref_g, rtol=1e-4)


def test_apply_and_cms_match_numpy():
  wc, wh = R.standard_normal((3, 3)), R.standard_normal((2, 3))
  out = C.sparse_cbm_apply(jnp.asarray(wc, jnp.float32), jnp.asarray(wh, jnp.float32),
                           jnp.asarray(H))
  np.testing.assert_allclose(out.logits, H @ wc.T @ wh.T, rtol=1e-4, atol=1e-5)
  img, ct, cl = R.standard_normal((6, 4)), R.standard_normal((5, 4)), R.standard_normal((3, 4))

  def unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)

  v = unit(img) @ unit(ct).T
  v = v / v.sum(1, keepdims=True)
  tm = unit(cl) @ unit(ct).T
  tm = tm / tm.sum(1, keepdims=True)
  score = unit(v) @ unit(tm).T
  got = C.concept_matrix_search(*(jnp.asarray(a, jnp.float32) for a in (img, ct, cl)))
  np.testing.assert_allclose(got.score, score, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(got.pred, score.argmax(1))


@pytest.mark.parametrize("call, msg", [
    (lambda: C.gumbel_softmax(jnp.ones((2, 3)), key=KEY, tau=0.0), "gumbel_softmax: tau"),
    (lambda: C.sparse_cbm_apply(jnp.ones((2, 3)), jnp.ones((1, 3)), jnp.ones(3)),
     "sparse_cbm_apply: w_cbl must be square"),
    (lambda: C.sparse_cbm_apply(jnp.eye(3), jnp.ones((1, 3)), jnp.ones(4)),
     "sparse_cbm_apply: s must have size 3"),
    (lambda: C.loss_contrastive(jnp.ones((2, 3)), mode="x"), "loss_contrastive: mode"),
    (lambda: C.concept_matrix_search(jnp.ones((2, 4)), jnp.ones((0, 4)), jnp.ones((2, 4))),
     "concept_matrix_search: concept_txt"),
])
def test_errors(call, msg):
  with pytest.raises((ValueError, TypeError), match=msg):
    call()
