"""nearest_code: both implementations against a NumPy brute force, exact ties, memory of the
blocked search, and the implementations' values and VJPs agree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax.kernels import testing
from bottleneck_jax.quantize import nearest_code

IMPLS = ("reference", "xla", "pallas")


def _np_nearest(z, cb, metric):
  z, cb = np.asarray(z, np.float64), np.asarray(cb, np.float64)
  idx, dist = [], []
  for row in z.reshape(-1, z.shape[-1]):
    if metric == "cosine":
      zn = row / max(np.linalg.norm(row), 1e-6)
      d = [1 - zn @ (e / max(np.linalg.norm(e), 1e-6)) for e in cb]
    else:
      d = [float(np.sum((row - e) ** 2)) for e in cb]
    idx.append(int(np.argmin(d)))
    dist.append(d[idx[-1]])
  return np.array(idx).reshape(z.shape[:-1]), np.array(dist).reshape(z.shape[:-1])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_matches_numpy_brute_force(impl, metric):
  rng = np.random.default_rng(0)
  z = rng.normal(size=(3, 5, 6)).astype(np.float32)
  cb = rng.normal(size=(37, 6)).astype(np.float32)
  res = nearest_code(jnp.asarray(z), jnp.asarray(cb), metric=metric, block_size=8,
                     implementation=impl)
  idx, dist = _np_nearest(z, cb, metric)
  np.testing.assert_array_equal(np.asarray(res.indices), idx)
  np.testing.assert_allclose(np.asarray(res.distances), dist, rtol=1e-5, atol=1e-5)
  assert res.indices.dtype == jnp.int32 and res.indices.shape == (3, 5)


@pytest.mark.parametrize("impl", IMPLS)
def test_exact_ties_go_to_the_first_index(impl):
  # integer data: every distance is exact. Codes 2, 5, 9 and 14 are copies of each other (in
  # different blocks of 4); code 0 and 3 are equidistant from the origin.
  base = np.array([[3, 0], [1, 1], [2, -2]], np.float32)
  cb = np.zeros((16, 2), np.float32) + 50.0
  cb[[2, 5, 9, 14]] = base[2]
  cb[0], cb[3] = [1, 0], [0, 1]
  cb[6], cb[13] = [7, 7], [7, 7]      # a tie between blocks 1 and 3 only
  z = np.array([[2, -2], [0, 0], [2, -1], [50, 50], [7, 7]], np.float32)
  expect = np.argmin(((z[:, None] - cb[None]) ** 2).sum(-1), axis=-1)
  # bf16 inputs are searched in f32: distances like 2 * 50^2 are exact there, not in bf16
  for dtype in (jnp.float32, jnp.bfloat16):
    res = nearest_code(jnp.asarray(z, dtype), jnp.asarray(cb, dtype), block_size=4,
                       implementation=impl)
    np.testing.assert_array_equal(np.asarray(res.indices), expect)
    np.testing.assert_array_equal(np.asarray(res.indices), [2, 0, 2, 1, 6])
    assert res.distances.dtype == dtype


def test_implementations_agree_values_and_vjps():
  rng = np.random.default_rng(1)
  z = jnp.asarray(rng.normal(size=(20, 8)).astype(np.float32))
  cb = jnp.asarray(rng.normal(size=(50, 8)).astype(np.float32))
  for metric in ("l2", "cosine"):
    testing.assert_implementations_agree(
        lambda a, b, *, implementation, metric=metric: nearest_code(
            a, b, metric=metric, block_size=16, implementation=implementation),
        (z, cb), implementations=("xla", "pallas"), rtol=1e-5, atol=1e-5)


def test_gradient_is_that_of_the_chosen_pair():
  z = jnp.array([[0.5, 2.0]])
  cb = jnp.array([[0.0, 0.0], [1.0, 2.0]])
  g = jax.jit(jax.grad(lambda a: jnp.sum(nearest_code(a, cb).distances)))(z)
  np.testing.assert_allclose(np.asarray(g), 2 * (np.asarray(z) - np.asarray(cb[1])), rtol=1e-6)
  vm = jax.jit(jax.vmap(lambda a: nearest_code(a, cb).indices))(jnp.array([[0.1, 0.1], [1.0, 1.9]]))
  np.testing.assert_array_equal(np.asarray(vm), [0, 1])


def test_blocked_search_memory_is_far_below_the_matrix():
  n, k, d = 4096, 8192, 64
  specs = (jax.ShapeDtypeStruct((n, d), jnp.float32), jax.ShapeDtypeStruct((k, d), jnp.float32))

  def temp(impl):
    f = jax.jit(lambda a, b: nearest_code(a, b, implementation=impl))
    return f.lower(*specs).compile().memory_analysis().temp_size_in_bytes

  ref, xla = temp("reference"), temp("xla")
  assert ref >= n * k * 4            # the [N, K] f32 matrix
  assert xla * 10 <= ref, (xla, ref)


def test_validation():
  z, cb = jnp.zeros((3, 4)), jnp.zeros((5, 4))
  with pytest.raises(ValueError, match="nearest_code: codebook must have size 4 on axis -1"):
    nearest_code(z, jnp.zeros((5, 3)))
  with pytest.raises(ValueError, match="nearest_code: codebook must have rank 2"):
    nearest_code(z, jnp.zeros((5,)))
  with pytest.raises(TypeError, match="nearest_code: codebook must have the dtype of z"):
    nearest_code(z, cb.astype(jnp.bfloat16))
  with pytest.raises(TypeError, match="nearest_code: z must have a floating dtype"):
    nearest_code(jnp.zeros((3, 4), jnp.int32), cb)
  with pytest.raises(ValueError, match="nearest_code: metric must be one of"):
    nearest_code(z, cb, metric="l1")
  with pytest.raises(ValueError, match="nearest_code: codebook must have at least one code"):
    nearest_code(z, jnp.zeros((0, 4)))
