"""Tests for LexLIP's lexicon representations and objective (bottleneck_jax/efficiency/_lexlip.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.efficiency import (
    LexiconHead,
    lexicon_bottleneck,
    lexicon_weighting,
    lexlip_contrastive_loss,
)

B, L, D, V, E = 3, 5, 8, 19, 6


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  h = jnp.asarray(rng.normal(size=(B, L, D)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(V, D)) / np.sqrt(D), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(V,)) * 0.3, jnp.float32)
  mask = jnp.asarray(np.arange(L)[None, :] < np.array([5, 1, 3])[:, None])
  emb = jnp.asarray(rng.normal(size=(V, E)), jnp.float32)
  return h, w, bias, mask, emb


def _np_logits(h, w, bias):
  return (np.asarray(h, np.float64) @ np.asarray(w, np.float64).T
          + np.asarray(bias, np.float64))


def test_lexicon_weighting_matches_paper_code_recipe():
  # LexLIP code: logits + (1 - mask) * -1e6 -> relu -> max over L -> log(1 + .).
  h, w, bias, mask, _ = _inputs()
  z = _np_logits(h, w, bias) + (1 - np.asarray(mask, np.float64))[:, :, None] * -1e6
  want = np.log1p(np.max(np.maximum(z, 0), axis=1))
  for impl in ("reference", "xla"):
    got = lexicon_weighting(h, w, bias, mask=mask, implementation=impl, block_size=8)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_lexicon_bottleneck_vs_naive():
  h, w, bias, mask, emb = _inputs(1)
  z = _np_logits(h, w, bias)
  pooled = np.stack([z[b, np.asarray(mask[b])].max(0) for b in range(B)])
  p = np.exp(pooled - pooled.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  want = p @ np.asarray(emb, np.float64)
  for impl in ("reference", "xla"):
    out, probs = lexicon_bottleneck(h, w, bias, mask=mask, word_emb=emb, implementation=impl,
                                    block_size=8)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs, p, rtol=1e-5, atol=1e-7)


def test_lexicon_bottleneck_grads_fused_vs_reference_and_empty_row():
  h, w, bias, mask, emb = _inputs(2)
  mask = mask.at[1].set(False)  # an all-masked row -> uniform p, zero gradient to h[1]

  def loss(impl):
    return lambda h, w, e: jnp.sum(jnp.sin(lexicon_bottleneck(
        h, w, bias, mask=mask, word_emb=e, implementation=impl, block_size=8).cbow))

  g_ref = jax.grad(loss("reference"), (0, 1, 2))(h, w, emb)
  g_xla = jax.jit(jax.grad(loss("xla"), (0, 1, 2)))(h, w, emb)
  for a, b in zip(g_xla, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(g_xla[0])[1] == 0.0) and np.all(np.isfinite(g_xla[1]))
  out = lexicon_bottleneck(h, w, bias, mask=mask, word_emb=emb, implementation="xla").cbow
  np.testing.assert_allclose(out[1], np.asarray(emb).mean(0), rtol=1e-5, atol=1e-6)


def _np_contrastive(t, i, temp, lam):
  t = np.asarray(t, np.float64)
  i = np.asarray(i, np.float64)
  t = t / np.linalg.norm(t, axis=1, keepdims=True)
  i = i / np.linalg.norm(i, axis=1, keepdims=True)
  s = t @ i.T / temp
  n = len(s)

  def ce(m):  # row-wise cross-entropy with the diagonal as target, by hand
    return np.mean([np.log(np.sum(np.exp(m[r]))) - m[r, r] for r in range(n)])

  flops = lambda r: np.sum(np.mean(np.abs(r), axis=0) ** 2)
  return 0.5 * (ce(s) + ce(s.T)) + lam * (flops(t) + flops(i)), flops(t) + flops(i)


def test_contrastive_loss_vs_numpy():
  rng = np.random.default_rng(3)
  t = jnp.asarray(np.abs(rng.normal(size=(4, V))), jnp.float32)
  i = jnp.asarray(np.abs(rng.normal(size=(4, V))), jnp.float32)
  want, want_flops = _np_contrastive(t, i, 0.1, 0.002)
  loss, aux = jax.jit(lambda t, i: lexlip_contrastive_loss(t, i, temperature=0.1))(t, i)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(aux["flops"], want_flops, rtol=1e-5)
  g = jax.grad(lambda t: lexlip_contrastive_loss(t, i, temperature=0.1).loss)(t)
  eps = 1e-3
  e = np.zeros((4, V), np.float32)
  e[2, 5] = eps
  fd = (_np_contrastive(t + e, i, 0.1, 0.002)[0] - _np_contrastive(t - e, i, 0.1, 0.002)[0]) / (
      2 * eps)
  np.testing.assert_allclose(g[2, 5], fd, rtol=1e-3, atol=1e-5)
  # vmap over a stack of batches.
  vm = jax.vmap(lambda t, i: lexlip_contrastive_loss(t, i, temperature=0.1).loss)(
      jnp.stack([t, i]), jnp.stack([i, t]))
  np.testing.assert_allclose(vm[0], want, rtol=1e-5)
  # The (loss, aux) pair is what has_aux expects.
  (l2, aux2), g2 = jax.value_and_grad(
      lambda t: lexlip_contrastive_loss(t, i, temperature=0.1), has_aux=True)(t)
  np.testing.assert_allclose(l2, want, rtol=1e-5)
  np.testing.assert_allclose(g2, g, rtol=1e-6)
  assert set(aux2) == {"contrastive", "flops", "logits"}


def test_contrastive_loss_all_zero_row_has_finite_gradient():
  """Regression: d||x||/dx at x = 0 is 0/0, and the gradient of an all-zero row was NaN."""
  rng = np.random.default_rng(5)
  t = np.abs(rng.normal(size=(4, V))).astype(np.float32)
  t[1] = 0.0  # e.g. a text whose lexicon weights are all relu'd away
  i = jnp.asarray(np.abs(rng.normal(size=(4, V))), jnp.float32)
  loss, aux = lexlip_contrastive_loss(jnp.asarray(t), i, temperature=0.1)
  g = jax.grad(lambda t: lexlip_contrastive_loss(t, i, temperature=0.1).loss)(jnp.asarray(t))
  assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(g)))
  # The zero row is normalised to zero (F.normalize): its logits row is all zeros.
  np.testing.assert_array_equal(aux["logits"][1], 0.0)
  # Away from zero the safe norm is the plain norm: same value as the float64 reference.
  t[1] = 1e-3
  np.testing.assert_allclose(lexlip_contrastive_loss(jnp.asarray(t), i, temperature=0.1).loss,
                             _np_contrastive(t, i, 0.1, 0.002)[0], rtol=1e-5)


def test_empty_batch_is_an_error_not_nan():
  with pytest.raises(ValueError, match=r"lexlip_contrastive_loss: text_reps must have at least"):
    lexlip_contrastive_loss(jnp.zeros((0, V)), jnp.zeros((0, V)))


def test_lexicon_head():
  h, _, _, mask, emb = _inputs(4)
  head = LexiconHead(D, V, implementation="xla", rngs=nnx.Rngs(0))
  np.testing.assert_allclose(
      head(h, mask), lexicon_weighting(h, head.weight[...], head.bias[...], mask=mask,
                                       implementation="reference"), rtol=1e-5, atol=1e-6)
  got = head.bottleneck(h, mask, word_emb=emb)
  want = lexicon_bottleneck(h, head.weight[...], head.bias[...], mask=mask, word_emb=emb,
                            implementation="reference")
  np.testing.assert_allclose(got.cbow, want.cbow, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got.probs, want.probs, rtol=1e-5, atol=1e-6)
  assert head.bottleneck(h).cbow.shape == (B, D)  # tied: word_emb defaults to W


def test_validation_errors():
  h, w, bias, mask, emb = _inputs()
  with pytest.raises(ValueError, match=r"lexicon_bottleneck: word_emb must have shape \[19"):
    lexicon_bottleneck(h, w, bias, mask=mask, word_emb=emb[:4])
  with pytest.raises(ValueError, match="lexicon_bottleneck: word_emb must have rank 2"):
    lexicon_bottleneck(h, w, bias, mask=mask, word_emb=emb[0])
  with pytest.raises(TypeError, match="lexicon_bottleneck: word_emb must have a floating"):
    lexicon_bottleneck(h, w, bias, mask=mask, word_emb=emb.astype(jnp.int32))
  with pytest.raises(ValueError, match="lexicon_weighting: mask must have shape"):
    lexicon_weighting(h, w, bias, mask=mask[:, :2])
  t = jnp.ones((4, V))
  with pytest.raises(ValueError, match="text_reps and image_reps must have the same shape"):
    lexlip_contrastive_loss(t, t[:3])
  with pytest.raises(ValueError, match="text_reps must have rank 2"):
    lexlip_contrastive_loss(t[0], t[0])
  with pytest.raises(TypeError, match="image_reps must have a floating dtype"):
    lexlip_contrastive_loss(t, t.astype(jnp.int32))
  with pytest.raises(ValueError, match="temperature must be > 0"):
    lexlip_contrastive_loss(t, t, temperature=0.0)
  with pytest.raises(ValueError, match="flops_weight must be >= 0"):
    lexlip_contrastive_loss(t, t, flops_weight=-1.0)
