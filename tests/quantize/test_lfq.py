"""LFQ against brute force: the entropy terms by enumerating every code (NumPy for the values,
a softmax over the 2^d codes in JAX for the gradient), the test plan's index vectors, the STE."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.quantize import LFQ, lfq, lfq_indices_to_codes

_lfq = jax.jit(lfq)


def _all_codes(d):
  return np.array(list(itertools.product([-1.0, 1.0], repeat=d)))  # first channel most significant


def _np_entropies(z, temperature):
  z = np.asarray(z, np.float64).reshape(-1, z.shape[-1])
  codes = _all_codes(z.shape[-1])
  logits = 2 * z @ codes.T / temperature
  logits -= logits.max(-1, keepdims=True)
  p = np.exp(logits)
  p /= p.sum(-1, keepdims=True)
  h = lambda q: -np.sum(np.where(q > 0, q * np.log(np.where(q > 0, q, 1)), 0), -1)  # noqa: E731
  return h(p).mean(), h(p.mean(0))


@pytest.mark.parametrize("d,temperature", [(4, 0.5), (4, 0.01), (11, 0.3)])
def test_entropies_match_enumeration_of_all_codes(d, temperature):
  z = np.random.default_rng(d).normal(scale=0.5, size=(3, 5, d)).astype(np.float32)
  out = jax.jit(lambda x: lfq(x, temperature=temperature, diversity_gamma=0.7,
                              entropy_weight=0.1, commitment_weight=0.25))(jnp.asarray(z))
  per_sample, codebook = _np_entropies(z, temperature)
  np.testing.assert_allclose(float(out.aux["per_sample_entropy"]), per_sample, rtol=2e-4,
                             atol=1e-5)
  np.testing.assert_allclose(float(out.aux["codebook_entropy"]), codebook, rtol=2e-4, atol=1e-5)
  commit = np.mean((z - np.where(z > 0, 1, -1)) ** 2)
  np.testing.assert_allclose(float(out.loss), 0.1 * (per_sample - 0.7 * codebook)
                             + 0.25 * commit, rtol=2e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(out.bits), [5.0 * d] * 3)


def test_indices_codes_and_round_trip():
  out = _lfq(jnp.array([[1.0, -1.0, -1.0, -1.0], [-1.0, -1.0, -1.0, 1.0], [0.3, 0.2, -0.1, 0.5],
                       [0.0, 0.0, 0.0, 0.0]]))
  np.testing.assert_array_equal(np.asarray(out.aux["indices"]), [8, 1, 13, 0])
  np.testing.assert_array_equal(np.asarray(out.z)[2], [1, 1, -1, 1])
  codes = lfq_indices_to_codes(jnp.arange(16), dim=4)
  np.testing.assert_array_equal(np.asarray(codes), _all_codes(4))
  np.testing.assert_array_equal(np.asarray(_lfq(codes).aux["indices"]), np.arange(16))


def test_gradients_ste_and_entropy_vs_softmax_enumeration():
  d, t = 4, 0.5
  z = jnp.asarray(np.random.default_rng(7).normal(scale=0.5, size=(6, d)).astype(np.float32))
  w = jnp.asarray(np.random.default_rng(8).normal(size=(6, d)).astype(np.float32))
  g = jax.jit(jax.grad(lambda x: jnp.sum(lfq(x, entropy_weight=0.0,
                                             commitment_weight=0.0).z * w)))(z)
  np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-6)  # STE: identity

  codes = jnp.asarray(_all_codes(d), jnp.float32)

  def brute(x):
    p = jax.nn.softmax(2 * x @ codes.T / t, axis=-1)
    ent = lambda q: -jnp.sum(q * jnp.log(q), axis=-1)  # noqa: E731
    return jnp.mean(ent(p)) - ent(jnp.mean(p, axis=0))

  got = jax.jit(jax.grad(lambda x: lfq(x, temperature=t, commitment_weight=0.0)
                         .aux["entropy_loss"]))(z)
  np.testing.assert_allclose(np.asarray(got), np.asarray(jax.grad(brute)(z)), rtol=1e-4,
                             atol=1e-5)


def test_module_vmap_and_large_d_without_entropy():
  layer = LFQ(4, rngs=nnx.Rngs(0))
  z = jnp.asarray(np.random.default_rng(3).normal(size=(2, 3, 4)).astype(np.float32))
  ref = _lfq(z)
  got = nnx.jit(lambda m, x: m(x))(layer, z)
  np.testing.assert_array_equal(np.asarray(got.aux["indices"]), np.asarray(ref.aux["indices"]))
  np.testing.assert_allclose(float(got.loss), float(ref.loss), rtol=1e-6)
  assert layer.codebook_size == 16 and not jax.tree.leaves(nnx.state(layer, nnx.Param))
  vm = jax.jit(jax.vmap(lambda x: lfq(x, entropy_weight=0.0).aux["indices"]))(z)
  np.testing.assert_array_equal(np.asarray(vm), np.asarray(ref.aux["indices"]))
  big = lfq(jnp.ones((2, 20)), entropy_weight=0.0)
  assert int(big.aux["indices"][0]) == 2**20 - 1


def test_validation():
  with pytest.raises(ValueError, match=r"lfq: z must have d <= 16 channels for the entropy"):
    lfq(jnp.ones((2, 17)))
  with pytest.raises(ValueError, match=r"lfq: z must have 1 <= d <= 30"):
    lfq(jnp.ones((2, 31)), entropy_weight=0.0)
  with pytest.raises(ValueError, match="lfq: temperature must be > 0"):
    lfq(jnp.ones((2, 4)), temperature=0.0)
  with pytest.raises(TypeError, match="lfq: z must have a floating dtype"):
    lfq(jnp.ones((2, 4), jnp.int32))
  with pytest.raises(ValueError, match="lfq: z must hold at least one vector"):
    lfq(jnp.ones((0, 4)))
  with pytest.raises(TypeError, match="lfq_indices_to_codes: indices must have an integer"):
    lfq_indices_to_codes(jnp.zeros(3), dim=4)
  with pytest.raises(ValueError, match="LFQ: z must have size 4 on axis -1"):
    LFQ(4)(jnp.ones((2, 5)))
