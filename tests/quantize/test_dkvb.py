"""Discrete key-value bottleneck against NumPy: per-head projection, nearest keys (and top-k),
mean-pooled values; value gradients only on the selected rows; keys fitted by k-means and left
untouched by training; bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from bottleneck_jax.quantize import DiscreteKeyValueBottleneck, dkvb, dkvb_init_keys, dkvb_project

RNG = np.random.default_rng(11)
C, M, DK, K, DV = 3, 4, 2, 7, 5
Z = RNG.normal(size=(6, M)).astype(np.float32)
P = RNG.normal(size=(C, M, DK)).astype(np.float32)
KEYS = RNG.normal(size=(C, K, DK)).astype(np.float32)
VALS = RNG.normal(size=(C, K, DV)).astype(np.float32)


def _np_dkvb(z, p, keys, vals, topk):
  zc = np.einsum("nm,cmd->ncd", z, p)
  out = np.zeros((len(z), C, DV))
  idx = np.zeros((len(z), C, topk), int)
  for n in range(len(z)):
    for c in range(C):
      d = ((zc[n, c] - keys[c]) ** 2).sum(-1)
      j = np.argsort(d, kind="stable")[:topk]
      idx[n, c] = j
      out[n, c] = vals[c, j].mean(0)
  return out.mean(1), idx, out


@pytest.mark.parametrize("topk", [1, 3])
def test_matches_numpy(topk):
  out = dkvb(*map(jnp.asarray, (Z, P, KEYS, VALS)), topk=topk)
  ref, idx, heads = _np_dkvb(Z, P, KEYS, VALS, topk)
  np.testing.assert_array_equal(np.sort(np.asarray(out.aux["indices"]), -1), np.sort(idx, -1))
  np.testing.assert_allclose(np.asarray(out.z), ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(out.aux["head_values"]), heads, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(dkvb_project(jnp.asarray(Z), jnp.asarray(P))),
                             np.einsum("nm,cmd->ncd", Z, P), rtol=1e-5)


def test_value_gradient_is_local_and_keys_get_none():
  def loss(vals, keys, p):
    return jnp.sum(dkvb(jnp.asarray(Z[:2]), p, keys, vals).z ** 2)
  gv, gk, gp = jax.grad(loss, argnums=(0, 1, 2))(*map(jnp.asarray, (VALS, KEYS, P)))
  _, idx, _ = _np_dkvb(Z[:2], P, KEYS, VALS, 1)
  touched = np.zeros((C, K), bool)
  for c in range(C):
    touched[c, idx[:, c, 0]] = True
  nonzero = np.abs(np.asarray(gv)).sum(-1) > 0
  np.testing.assert_array_equal(nonzero, touched)
  assert not np.asarray(gk).any() and not np.asarray(gp).any()


def test_layer_keys_from_kmeans_stay_frozen_while_values_train():
  x = jnp.asarray(np.concatenate([RNG.normal(size=(20, 2)) * 0.05 + c
                                  for c in ([0, 0], [3, 0], [0, 3])]), jnp.float32)
  y = jnp.repeat(jnp.arange(3), 20)
  layer = DiscreteKeyValueBottleneck(2, 2, 3, value_dim=3, rngs=nnx.Rngs(0))
  layer.init_keys(jax.random.key(0), x)
  keys0 = np.asarray(layer.keys[...])
  # Lloyd's fixed point in every head: each key is the mean of the projected points nearest to it
  for c in range(2):
    xc = np.asarray(x) @ np.asarray(layer.proj[...][c])
    near = ((xc[:, None] - keys0[c][None]) ** 2).sum(-1).argmin(-1)
    for j in np.unique(near):
      np.testing.assert_allclose(keys0[c, j], xc[near == j].mean(0), atol=1e-4)
  opt = nnx.Optimizer(layer, optax.adam(0.1), wrt=nnx.Param)

  @nnx.jit
  def step(layer, opt):
    def loss_fn(m):
      return optax.softmax_cross_entropy_with_integer_labels(m(x).z, y).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(layer)
    opt.update(layer, grads)
    return loss

  with jax.numpy_dtype_promotion("standard"):   # optax mixes its int32 count with floats
    losses = [float(step(layer, opt)) for _ in range(20)]
  assert losses[-1] < 0.3 and abs(losses[0] - np.log(3)) < 1e-5   # zero values: uniform
  np.testing.assert_array_equal(np.asarray(layer.keys[...]), keys0)


def test_validation():
  z, p, k, v = map(jnp.asarray, (Z, P, KEYS, VALS))
  with pytest.raises(ValueError, match="dkvb: topk must be <= K = 7"):
    dkvb(z, p, k, v, topk=8)
  with pytest.raises(ValueError, match="dkvb: proj must have size 5 on axis 1"):
    dkvb(jnp.zeros((2, 5)), p, k, v)
  with pytest.raises(ValueError, match="dkvb: keys must have size 2 on axis 2"):
    dkvb(z, p, jnp.zeros((C, K, 3)), v)
  with pytest.raises(TypeError, match="dkvb: z must have a floating dtype"):
    dkvb(z.astype(jnp.int32), p, k, v)
  with pytest.raises(ValueError, match="dkvb_init_keys: num_keys must be"):
    dkvb_init_keys(jax.random.key(0), z, p, 0)
