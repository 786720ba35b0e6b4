"""Chart perception: CLIP / NegCLIP losses against a NumPy transcription of open_clip's ClipLoss
(one device) and Vision4Chart's concatenated hard captions; hard-negative accuracy; towers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.objectives import (
    ContrastiveTowers,
    clip_loss,
    hard_negative_accuracy,
    negclip_loss,
)


def _ce(logits, labels):
  m = logits.max(1, keepdims=True)
  lse = m[:, 0] + np.log(np.exp(logits - m).sum(1))
  return np.mean(lse - logits[np.arange(len(labels)), labels])


def _open_clip_loss(img, txt, scale):
  """open_clip ClipLoss.forward, world_size=1: logits_per_image = s I T^T, per_text = s T I^T."""
  labels = np.arange(img.shape[0])
  return 0.5 * (_ce(scale * img @ txt.T, labels) + _ce(scale * txt @ img.T, labels))


def _negclip(img, pos, neg, scale):
  """Vision4Chart: texts = cat([texts, hard_captions]); image->text over all, text->image over
  the positives."""
  texts = np.concatenate([pos, neg.reshape(-1, img.shape[1])])
  labels = np.arange(img.shape[0])
  return 0.5 * (_ce(scale * img @ texts.T, labels) + _ce(scale * pos @ img.T, labels))


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def feats():
  rng = np.random.default_rng(0)
  return (_unit(rng.standard_normal((8, 16))).astype(np.float32),
          _unit(rng.standard_normal((8, 16))).astype(np.float32),
          _unit(rng.standard_normal((8, 3, 16))).astype(np.float32))


def test_losses_equal_the_reference_formulas(feats):
  img, pos, neg = feats

  @jax.jit
  def run(img, pos, neg, s):
    return (clip_loss(img, pos, s), negclip_loss(img, pos, neg[:, :0], s),
            negclip_loss(img, pos, neg, s), negclip_loss(img, pos, neg[:, 0], s),
            jax.grad(negclip_loss, argnums=3)(img, pos, neg, s))

  s = 1 / 0.07
  c, c0, n3, n1, ds = run(*(jnp.asarray(a) for a in feats), jnp.asarray(s, jnp.float32))
  ref = _open_clip_loss(img.astype(np.float64), pos.astype(np.float64), s)
  assert float(c) == pytest.approx(ref, rel=1e-5, abs=1e-6)
  assert float(c0) == pytest.approx(float(c), abs=1e-6)  # zero negatives: plain CLIP
  assert float(n3) == pytest.approx(_negclip(img, pos, neg, s), rel=1e-5)
  assert float(n1) == pytest.approx(_negclip(img, pos, neg[:, :1], s), rel=1e-5)
  assert float(n3) > float(c)  # more candidates, larger image->text loss
  eps = 1e-3
  fd = (_negclip(img, pos, neg, s + eps) - _negclip(img, pos, neg, s - eps)) / (2 * eps)
  assert float(ds) == pytest.approx(fd, rel=1e-2, abs=1e-4)


def test_hard_negative_accuracy_against_numpy(feats):
  img, pos, neg = feats
  rng = np.random.default_rng(1)
  scaled = img * rng.uniform(0.5, 2.0, (8, 1)).astype(np.float32)  # cosine ignores norms
  got = float(jax.jit(hard_negative_accuracy)(jnp.asarray(scaled), jnp.asarray(pos),
                                              jnp.asarray(neg)))
  sp = np.sum(img * pos, -1)
  sn = np.einsum("bd,bkd->bk", img, neg).max(-1)
  assert got == pytest.approx(np.mean(sp > sn))


def test_towers_scale_and_normalisation():
  m = ContrastiveTowers(6, 4, 5, rngs=nnx.Rngs(0))

  @nnx.jit
  def run(m, x, y):
    i, t = m(x, y)
    return m.scale(), i, t, y @ m.text_proj.kernel[...]

  x = jax.random.normal(jax.random.key(0), (3, 6))
  y = jax.random.normal(jax.random.key(1), (3, 4))
  s, i, t, t_raw = run(m, x, y)
  assert float(s) == pytest.approx(1 / 0.07, rel=1e-5)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(i), axis=-1), 1.0, atol=1e-6)
  np.testing.assert_allclose(np.asarray(t), _unit(np.asarray(t_raw)), atol=1e-6)
  m.log_scale[...] = jnp.asarray(10.0)
  assert float(run(m, x, y)[0]) == 100.0  # clamped as in open_clip


def test_errors(feats):
  img, pos, neg = (jnp.asarray(a) for a in feats)
  with pytest.raises(ValueError, match="negclip_loss: txt_neg must have shape \\[8, K, 16\\]"):
    negclip_loss(img, pos, neg[:4], 10.0)
  with pytest.raises(ValueError, match="clip_loss: img and txt must have the same shape"):
    clip_loss(img, pos[:4], 10.0)
  with pytest.raises(ValueError, match="clip_loss: logit_scale must be >= 0"):
    clip_loss(img, pos, -1.0)
  with pytest.raises(ValueError, match="hard_negative_accuracy: neg must hold at least one"):
    hard_negative_accuracy(img, pos, neg[:, :0])
