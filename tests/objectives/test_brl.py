"""BRL: action-aware weights and the detached schedule against a NumPy transcription of the
reference's get_weight_list / update_weight (with its in-place flip), PyTorch-normalised weighted
cross-entropy, label mixing and body-part mixing against plain loops."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bottleneck_jax.objectives import (
    action_aware_weights,
    body_part_mix,
    drw_class_weights,
    longtail_counts,
    mixed_label_ce,
    rebalance_alpha,
    weighted_ce,
)


def _reference_epoch_weights(counts, epochs, step_epoch=20, upsilon=0.99, lam=0.0099):
  """The reference's schedule: the per-class β list is flipped in place (β ← 1 − β) each time
  the re-weighted branch runs, and the same list is reused next epoch."""
  n = np.asarray(counts, np.float64)
  beta = list(upsilon + lam * (n - n.min()) / (n.max() - n.min()))
  out = []
  for e in range(epochs):
    if (e + 1) // step_epoch == 0:
      out.append(np.ones(len(n)))
      continue
    b = np.asarray(beta)
    w = (1 - b) / (1 - b ** n)
    out.append(w / w.sum() * len(n))
    for i in range(len(beta)):
      beta[i] = 1 - beta[i]
  return out


def test_action_aware_weights_hand_values_and_reference():
  counts = jnp.asarray([600, 60, 6])
  w = np.asarray(action_aware_weights(counts))
  np.testing.assert_allclose(w, [0.0265318, 0.3330543, 2.6404139], atol=1e-6)
  assert w.sum() == pytest.approx(3.0)
  ref = _reference_epoch_weights([600, 60, 6], 23)
  np.testing.assert_allclose(w, ref[19], atol=1e-6)
  np.testing.assert_allclose(ref[20], [1.0063, 0.9973, 0.9964], atol=1e-4)
  for e in (0, 18, 19, 20, 21, 22):
    np.testing.assert_allclose(
        np.asarray(drw_class_weights(e, counts, faithful_alternation=True)), ref[e], atol=1e-6)
    want = np.ones(3) if e < 19 else ref[19]
    np.testing.assert_allclose(np.asarray(drw_class_weights(e, counts)), want, atol=1e-6)
  # a later epoch (the reference's index would overflow after 38) keeps the weights
  np.testing.assert_allclose(np.asarray(drw_class_weights(45, counts)), ref[19], atol=1e-6)
  # equal class sizes: beta = upsilon for all, uniform weights (the reference divides by 0)
  np.testing.assert_allclose(np.asarray(action_aware_weights(jnp.asarray([5, 5]))), [1, 1])


def test_longtail_counts_ntu60_lt():
  c = np.asarray(longtail_counts(60, 600, 0.01))
  want = [int(600 * 0.01 ** (k / 59)) for k in range(60)]
  assert c[0] == 600 and c[-1] == 6 and np.all(np.diff(c) <= 0)
  assert np.max(np.abs(c - np.asarray(want))) <= 1  # float rounding of the reference's int()


def test_weighted_ce_has_pytorch_normalisation():
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((16, 5)).astype(np.float32)
  labels = rng.integers(0, 5, 16).astype(np.int32)
  w = rng.random(5).astype(np.float32) + 0.1
  lp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  nll = -lp[np.arange(16), labels]
  want = np.sum(w[labels] * nll) / np.sum(w[labels])  # torch F.cross_entropy(weight=w)
  ya = labels
  yb = rng.integers(0, 5, 16).astype(np.int32)
  alpha = rng.random(16).astype(np.float32)

  @jax.jit
  def run(logits, labels, yb, w, alpha):
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return (weighted_ce(logits, labels, w), jnp.sum(w[labels] * ce) / jnp.sum(w[labels]),
            mixed_label_ce(logits, labels, yb, alpha, w),
            mixed_label_ce(logits, labels, yb, jnp.full(16, 0.3), w),
            0.3 * weighted_ce(logits, labels, w) + 0.7 * weighted_ce(logits, yb, w),
            jax.grad(weighted_ce)(logits, labels, w))

  got, via_optax, mixed, mixed_const, combo, grad = run(logits, labels, yb, w, alpha)
  assert float(got) == pytest.approx(want, rel=1e-5)
  assert float(via_optax) == pytest.approx(want, rel=1e-5)
  nll_b = -lp[np.arange(16), yb]
  want_mix = (np.sum(alpha * w[ya] * nll) / np.sum(w[ya])
              + np.sum((1 - alpha) * w[yb] * nll_b) / np.sum(w[yb]))
  assert float(mixed) == pytest.approx(want_mix, rel=1e-5)
  assert float(mixed_const) == pytest.approx(float(combo), rel=1e-5)
  # d/dz of the weighted mean: w_y (softmax - onehot) / sum w
  p = np.exp(lp)
  g = (p - np.eye(5)[labels]) * w[labels][:, None] / np.sum(w[labels])
  np.testing.assert_allclose(np.asarray(grad), g, atol=1e-6)


def test_rebalance_alpha_and_body_part_mix():
  na = jnp.asarray([600, 6, 60, 100, 31])
  nb = jnp.asarray([6, 600, 40, 300, 10])
  a = np.asarray(rebalance_alpha(na, nb))
  want = [0.0 if x > 3 * y else 1.0 if y > 3 * x else 0.64 for x, y in zip(na.tolist(),
                                                                              nb.tolist())]
  np.testing.assert_allclose(a, want, atol=1e-7)
  rng = np.random.default_rng(1)
  x = rng.standard_normal((4, 2, 3, 25, 3)).astype(np.float32)
  partner = np.array([2, 0, 3, 1], np.int32)
  apply = np.array([True, False, True, False])
  lower = [0, 12, 13, 14, 15, 16, 17, 18, 19]
  got = np.asarray(jax.jit(body_part_mix)(jnp.asarray(x), jnp.asarray(partner),
                                          jnp.asarray(lower), jnp.asarray(apply)))
  want = x.copy()
  for i in range(4):
    if apply[i]:
      for j in lower:
        want[i, :, :, j] = x[partner[i], :, :, j]
  np.testing.assert_array_equal(got, want)


def test_errors():
  with pytest.raises(ValueError, match="action_aware_weights: counts must be >= 1"):
    action_aware_weights(jnp.asarray([3, 0]))
  with pytest.raises(ValueError, match="action_aware_weights: upsilon \\+ lam must be < 1"):
    action_aware_weights(jnp.asarray([3, 1]), upsilon=0.99, lam=0.02)
  with pytest.raises(ValueError, match="weighted_ce: w must have one weight per class"):
    weighted_ce(jnp.zeros((2, 3)), jnp.asarray([0, 1]), jnp.ones(2))
  with pytest.raises(ValueError, match="mixed_label_ce: labels_b must have one label per row"):
    mixed_label_ce(jnp.zeros((2, 3)), jnp.asarray([0, 1]), jnp.asarray([0]), jnp.ones(2),
                   jnp.ones(3))
  with pytest.raises(ValueError, match="body_part_mix: lower_idx must be joint indices"):
    body_part_mix(jnp.zeros((2, 1, 1, 3, 1)), jnp.asarray([1, 0]), [5], jnp.ones(2, bool))
  with pytest.raises(ValueError, match="drw_class_weights: epoch must be >= 0"):
    drw_class_weights(-1, jnp.asarray([3, 1]))
  with pytest.raises(ValueError, match="longtail_counts: imb must be > 0"):
    longtail_counts(3, 600, 0.0)
