"""Saliency maps and region scores against closed forms (the test plan, §10 test 1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax import concepts as C

R = np.random.default_rng(0)
REGION = np.zeros((6, 6), np.float32)
REGION[1:3, 2:5] = 1
W = jnp.asarray(R.standard_normal((2, 6, 6)) * REGION, jnp.float32)  # supported on the region
X = jnp.asarray(R.standard_normal((6, 6)), jnp.float32)


def _linear(x):
  return jnp.sum(W * x, axis=(1, 2))


def test_linear_scores_have_all_their_mass_in_the_region():
  for fn in (C.saliency_grad, C.saliency_grad_x_input):
    a = fn(_linear, X, index=1)
    assert float(C.relevance_mass(a, REGION)) == pytest.approx(1.0)
  np.testing.assert_allclose(C.saliency_grad(_linear, X, index=0), W[0])
  np.testing.assert_allclose(C.saliency_grad_x_input(_linear, X, index=0), X * W[0], rtol=1e-6)


def test_integrated_gradients_linear_and_completeness():
  np.testing.assert_allclose(C.integrated_gradients(_linear, X, index=1, steps=3), X * W[1],
                             rtol=1e-5, atol=1e-6)

  def nonlinear(x):
    return jnp.stack([jnp.tanh(jnp.sum(W[0] * x)) + jnp.sum(x ** 2) / 10])

  base = jnp.full_like(X, 0.3)
  ig = C.integrated_gradients(nonlinear, X, index=0, steps=64, baseline=base)
  gap = nonlinear(X)[0] - nonlinear(base)[0]
  assert abs(float(jnp.sum(ig) - gap)) < 1e-3 * max(1.0, abs(float(gap)))
  # index may be traced (vmap over concepts)
  per_k = jax.vmap(lambda k: C.integrated_gradients(_linear, X, index=k, steps=2))(jnp.arange(2))
  np.testing.assert_allclose(per_k, X[None] * W, rtol=1e-5, atol=1e-6)


def test_attribution_iou_exact_cases():
  m = jnp.asarray(REGION)
  for attr in (m, 0.5 * m):
    np.testing.assert_allclose(np.asarray(C.attribution_iou(attr, m)), [1, 1, 1], rtol=1e-6)
  ones = C.attribution_iou(jnp.ones((6, 6)), m)
  frac = REGION.sum() / 36
  assert float(ones.iou) == pytest.approx(frac) and float(ones.precision) == pytest.approx(frac)
  assert float(ones.dice) == pytest.approx(2 * frac / (1 + frac))
  # negative attributions are clamped; binarising at 0.5 of the max
  a = jnp.asarray(np.where(REGION > 0, 1.0, -5.0) + 0.4 * (1 - REGION), jnp.float32)
  np.testing.assert_allclose(np.asarray(C.attribution_iou(a, m, binarize=True)), [1, 1, 1])
  zero = C.region_metrics(jnp.zeros((6, 6)), m)
  assert [float(v) for v in (zero.relevance_mass, zero.iou, zero.dice, zero.precision)] == [0] * 4


def test_pointing_and_peak_distance():
  a = jnp.zeros((2, 6, 6)).at[0, 1, 3].set(2.0).at[1, 5, 0].set(1.0)
  np.testing.assert_array_equal(C.pointing_hit(a, jnp.stack([REGION] * 2)), [1.0, 0.0])
  d = C.peak_distance(a, jnp.array([[1.0, 3.0], [2.0, 4.0]]))
  np.testing.assert_allclose(d, [0.0, 5.0])
  # a uniform map: the first argmax (pixel 0, 0) decides
  assert float(C.pointing_hit(jnp.ones((6, 6)), REGION)) == 0.0


@pytest.mark.parametrize("call, msg", [
    (lambda: C.relevance_mass(jnp.ones((6, 6)), jnp.ones((5, 6))), "relevance_mass: region"),
    (lambda: C.attribution_iou(jnp.ones((6, 6)), jnp.ones((6, 5))), "attribution_iou: mask"),
    (lambda: C.peak_distance(jnp.ones((2, 6, 6)), jnp.ones(2)), "peak_distance: keypoint"),
    (lambda: C.saliency_grad(3, X, index=0), "saliency_grad: fn"),
    (lambda: C.integrated_gradients(_linear, X, index=0, steps=0), "integrated_gradients: steps"),
])
def test_errors(call, msg):
  with pytest.raises((ValueError, TypeError), match=msg):
    call()
