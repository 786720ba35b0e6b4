"""VQ-Logits against materialised NumPy logits: K = V with the identity map is a full softmax
head; the fused cross-entropy equals the cross-entropy of the scattered logits (with and without
a token bias) in value and gradient; the two-stage sampler matches softmax(vq_logits) (chi^2);
k-means mapping init; bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from bottleneck_jax.quantize import (
  VQLogitsHead,
  vq_code_logits,
  vq_logits,
  vq_logits_cross_entropy,
  vq_logits_init_mapping,
  vq_logits_sample,
)

RNG = np.random.default_rng(5)
N, D, K, VOC = 6, 4, 5, 13
H = RNG.normal(size=(N, D)).astype(np.float32)
CB = RNG.normal(size=(K, D)).astype(np.float32)
MAP = np.concatenate([np.arange(K), RNG.integers(0, K - 1, VOC - K)]).astype(np.int32)
MAP[-1] = 0
BIAS = RNG.normal(size=(VOC,)).astype(np.float32)
Y = RNG.integers(0, VOC, N).astype(np.int32)


def _np_ce(h, cb, m, y, b):
  logits = (h.astype(np.float64) @ cb.T)[:, m] + (0 if b is None else b)
  lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
  return lse - logits[np.arange(len(y)), y]


def test_identity_map_is_a_full_softmax_head():
  w = RNG.normal(size=(VOC, D)).astype(np.float32)
  ce = vq_logits_cross_entropy(jnp.asarray(H), jnp.asarray(w), jnp.arange(VOC), jnp.asarray(Y))
  np.testing.assert_allclose(np.asarray(ce), _np_ce(H, w, np.arange(VOC), Y, None), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(vq_code_logits(jnp.asarray(H), jnp.asarray(w))), H @ w.T,
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bias", [False, True])
def test_fused_cross_entropy_equals_the_scattered_logits(bias):
  b = jnp.asarray(BIAS) if bias else None
  args = (jnp.asarray(H), jnp.asarray(CB), jnp.asarray(MAP))
  ce = vq_logits_cross_entropy(*args, jnp.asarray(Y), token_bias=b)
  np.testing.assert_allclose(np.asarray(ce), _np_ce(H, CB, MAP, Y, BIAS if bias else None),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(vq_logits(*args, token_bias=b)),
                             (H @ CB.T)[:, MAP] + (BIAS if bias else 0), rtol=1e-5, atol=1e-5)

  def fused(h, cb, bb):
    return jnp.sum(vq_logits_cross_entropy(h, cb, jnp.asarray(MAP), jnp.asarray(Y),
                                           token_bias=bb if bias else None))

  def dense(h, cb, bb):
    logits = vq_logits(h, cb, jnp.asarray(MAP), token_bias=bb if bias else None)
    return -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits), jnp.asarray(Y)[:, None], 1))

  g1 = jax.grad(fused, argnums=(0, 1, 2))(jnp.asarray(H), jnp.asarray(CB), jnp.asarray(BIAS))
  g2 = jax.grad(dense, argnums=(0, 1, 2))(jnp.asarray(H), jnp.asarray(CB), jnp.asarray(BIAS))
  for a, e in zip(g1, g2):
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-4, atol=1e-5)


def test_two_stage_sampler_matches_the_softmax_chi2():
  h = jnp.asarray(np.tile(H[:1] * 0.5, (20000, 1)))
  for b in (None, jnp.asarray(BIAS)):
    t = vq_logits_sample(jax.random.key(3), h, jnp.asarray(CB), jnp.asarray(MAP), token_bias=b,
                         temperature=1.5)
    counts = np.bincount(np.asarray(t), minlength=VOC)
    logits = (H[:1].astype(np.float64) * 0.5 @ CB.T)[0, MAP] + (0 if b is None else BIAS)
    p = np.exp((logits - logits.max()) / 1.5)
    p /= p.sum()
    assert stats.chisquare(counts, p * counts.sum()).pvalue > 1e-3


def test_init_mapping_is_a_lloyd_fixed_point():
  w = RNG.normal(size=(30, D)).astype(np.float32)
  cb, m = vq_logits_init_mapping(jax.random.key(0), jnp.asarray(w), 4, iters=30)
  cb, m = np.asarray(cb), np.asarray(m)
  np.testing.assert_array_equal(m, ((w[:, None] - cb[None]) ** 2).sum(-1).argmin(-1))
  for j in np.unique(m):          # each code is the mean of the tokens mapped to it
    np.testing.assert_allclose(cb[j], w[m == j].mean(0), atol=1e-5)


def test_head_module():
  head = VQLogitsHead(D, K, VOC, token_bias=True, rngs=nnx.Rngs(0))
  ce = head.cross_entropy(jnp.asarray(H), jnp.asarray(Y))
  np.testing.assert_allclose(
      np.asarray(ce), _np_ce(H, np.asarray(head.codebook[...]), np.asarray(head.token_to_code[...]),
                             Y, np.zeros(VOC)), rtol=1e-5, atol=1e-5)
  assert head(jnp.asarray(H)).shape == (N, VOC)


def test_validation():
  h, cb, m = jnp.asarray(H), jnp.asarray(CB), jnp.asarray(MAP)
  with pytest.raises(ValueError, match="vq_logits_cross_entropy: targets must have shape"):
    vq_logits_cross_entropy(h, cb, m, jnp.zeros((N + 1,), jnp.int32))
  with pytest.raises(ValueError, match="vq_logits: codebook must have size 4 on axis -1"):
    vq_logits(h, jnp.zeros((K, 3)), m)
  with pytest.raises(TypeError, match="vq_logits: token_to_code must have an integer dtype"):
    vq_logits(h, cb, m.astype(jnp.float32))
  with pytest.raises(ValueError, match="vq_logits_init_mapping: w_out must have at least"):
    vq_logits_init_mapping(jax.random.key(0), jnp.zeros((2, D)), 3)
  with pytest.raises(ValueError, match="vq_logits_sample: temperature must be"):
    vq_logits_sample(jax.random.key(0), h, cb, m, temperature=0.0)


def test_cross_entropy_and_sampler_under_an_explicit_mesh_with_batch_sharded_inputs():
  """train()'s default: an Explicit ("data", "fsdp") mesh with the batch sharded over both axes.
  The loss (value and gradient) equals the NumPy one and the sampler draws the same tokens as
  on one device (both used to fail to trace there)."""
  from jax.sharding import AxisType
  from jax.sharding import PartitionSpec as P
  h = np.concatenate([H, H[:2]])                       # 8 rows: one per device
  y = np.concatenate([Y, Y[:2]])
  mesh = jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(AxisType.Explicit,) * 2)
  single = vq_logits_sample(jax.random.key(3), jnp.asarray(h), jnp.asarray(CB), jnp.asarray(MAP))
  with jax.set_mesh(mesh):
    hs = jax.device_put(h, P(("data", "fsdp")))
    ys = jax.device_put(y, P(("data", "fsdp")))
    cb = jax.device_put(CB, P())

    def loss(hh, cc):
      return jnp.sum(vq_logits_cross_entropy(hh, cc, jnp.asarray(MAP), ys))

    val, (gh, gc) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(hs, cb)
    drawn = jax.jit(lambda k, hh, cc: vq_logits_sample(k, hh, cc, jnp.asarray(MAP)))(
        jax.random.key(3), hs, cb)
  np.testing.assert_allclose(float(val), _np_ce(h, CB, MAP, y, None).sum(), rtol=1e-5)
  eh, ec = jax.grad(lambda hh, cc: jnp.sum(vq_logits_cross_entropy(
      hh, cc, jnp.asarray(MAP), jnp.asarray(y))), argnums=(0, 1))(jnp.asarray(h), jnp.asarray(CB))
  np.testing.assert_allclose(np.asarray(gh), np.asarray(eh), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.asarray(gc), np.asarray(ec), rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(drawn), np.asarray(single))
