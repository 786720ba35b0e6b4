"""VPO against a NumPy transcription of trl's XPO loss, the closed-form bandit optimum, the
sign of the value term, and input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bottleneck_jax import objectives as O


def _logsig(x):
  return -np.logaddexp(0.0, -x)


def xpo_compute_losses(model_logprobs_model_data, model_logprobs_ref_data,
                       ref_logprobs_ref_data, ref_logprobs_model_data, chosen_mask, *, beta,
                       alpha, loss_type="sigmoid"):
  """trl ``XPOTrainer._compute_losses`` transcribed to NumPy."""
  mm, mr = model_logprobs_model_data.sum(1), model_logprobs_ref_data.sum(1)
  rr, rm = ref_logprobs_ref_data.sum(1), ref_logprobs_model_data.sum(1)
  chosen_model = np.where(chosen_mask, mm, mr)
  chosen_ref = np.where(chosen_mask, rm, rr)
  rejected_model = np.where(~chosen_mask, mm, mr)
  rejected_ref = np.where(~chosen_mask, rm, rr)
  logits = (chosen_model - chosen_ref) - (rejected_model - rejected_ref)
  if loss_type == "sigmoid":
    dpo = -_logsig(beta * logits)
  else:
    dpo = (logits - 1 / (2 * beta)) ** 2
  xpo = alpha * mr
  return (dpo + xpo).mean(), dpo, xpo


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_online_vpo_with_reference_calibration_is_trl_xpo(loss_type):
  r = np.random.default_rng(0)
  b, t = 6, 5
  arrs = [np.log(r.uniform(0.05, 1, (b, t))).astype(np.float32).astype(np.float64)
          for _ in range(4)]
  chosen_mask = r.integers(0, 2, b).astype(bool)
  beta, alpha = 0.3, 0.05
  loss, dpo, xpo = xpo_compute_losses(*arrs, chosen_mask, beta=beta, alpha=alpha,
                                      loss_type=loss_type)
  mm, mr, rr, rm = (jnp.asarray(a.sum(1), jnp.float32) for a in arrs)
  cm = jnp.asarray(chosen_mask)
  out = O.vpo_loss(jnp.where(cm, mm, mr), jnp.where(cm, mr, mm), jnp.where(cm, rm, rr),
                   jnp.where(cm, rr, rm), mr, beta=beta, alpha=alpha, mode="online",
                   loss_type=loss_type)
  np.testing.assert_allclose(out.loss, loss, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(out.dpo, dpo, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(alpha * out.value_reg, xpo, rtol=1e-6, atol=1e-6)


def test_alpha_zero_is_dpo_and_offline_flips_the_sign():
  r = np.random.default_rng(1)
  x = [jnp.asarray(r.normal(-10, 3, 4), jnp.float32) for _ in range(4)]
  cal = jnp.asarray(r.normal(-10, 3, (4, 3)), jnp.float32)
  dpo = O.dpo_loss(*x, beta=0.2, label_smoothing=0.1)
  out = O.vpo_loss(*x, cal, beta=0.2, alpha=0.0, label_smoothing=0.1)
  np.testing.assert_allclose(out.loss, dpo.loss, rtol=1e-6)
  on = O.vpo_loss(*x, cal, beta=0.2, alpha=0.5, mode="online", label_smoothing=0.1).loss
  off = O.vpo_loss(*x, cal, beta=0.2, alpha=0.5, mode="offline", label_smoothing=0.1).loss
  value = float(jnp.mean(cal))
  np.testing.assert_allclose(on - dpo.loss, 0.5 * value, rtol=1e-5)
  np.testing.assert_allclose(off - dpo.loss, -0.5 * value, rtol=1e-5)


R_STAR = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
PAIRS = np.array([(i, j) for i in range(5) for j in range(5) if i != j], np.int32)
PREF = 1 / (1 + np.exp(-(R_STAR[PAIRS[:, 0]] - R_STAR[PAIRS[:, 1]])))
CAL = np.array([0.6, 0.1, 0.1, 0.1, 0.1], np.float32)


def _fit(alpha, mode, steps=1500):
  tx = optax.adam(0.05)
  z0 = jnp.zeros(5)

  def loss(z):
    return O.vpo_tabular_loss(z, jnp.zeros(5), jnp.asarray(PAIRS), jnp.asarray(PREF, jnp.float32),
                              jnp.asarray(CAL), beta=1.0, alpha=alpha, mode=mode).loss

  def step(carry, _):
    z, s = carry
    g = jax.grad(loss)(z)
    u, s = tx.update(g, s)
    return (optax.apply_updates(z, u), s), None

  (z, _), _ = jax.lax.scan(step, (z0, tx.init(z0)), None, length=steps)
  return jax.nn.softmax(z)


@pytest.fixture(scope="module")
def fitted():
  alphas = jnp.array([0.0, 0.02, 0.05, 0.1])
  with jax.numpy_dtype_promotion("standard"):  # optax's bias correction: float ** int32
    on = jax.jit(jax.vmap(lambda a: _fit(a, "online")))(alphas)
    off = jax.jit(jax.vmap(lambda a: _fit(a, "offline")))(alphas)
  return np.asarray(on), np.asarray(off)


def test_tabular_dpo_recovers_the_kl_optimal_policy(fitted):
  """alpha = 0, uniform reference, beta = 1: pi* = softmax(r*)."""
  on, off = fitted
  target = np.exp(R_STAR) / np.exp(R_STAR).sum()
  np.testing.assert_allclose(on[0], target, atol=1e-3)
  np.testing.assert_allclose(off[0], target, atol=1e-3)


def test_value_term_moves_mass_on_the_calibration_mode_monotonically(fitted):
  on, off = fitted
  assert np.all(np.diff(on[:, 0]) < 0), on[:, 0]   # optimism: away from pi_cal's mode
  assert np.all(np.diff(off[:, 0]) > 0), off[:, 0]  # pessimism: toward it


def test_gradient_of_value_term_closed_form():
  """d/dz of s alpha sum_k c_k log softmax(z)_k is s alpha (c - pi) (sum c = 1)."""
  z = jnp.array([0.3, -0.2, 0.1, 0.0, 0.5])
  pi = np.asarray(jax.nn.softmax(z))
  g = jax.jit(jax.grad(lambda z: O.vpo_tabular_loss(
      z, z, jnp.array([[0, 1]]), jnp.array([0.5]), jnp.asarray(CAL), alpha=0.3,
      mode="offline").loss))(z)
  # the DPO term at z == ref with p = 1/2 has zero gradient
  np.testing.assert_allclose(g, -0.3 * (CAL - pi), atol=1e-6)


def test_bad_inputs_are_named_errors():
  x = jnp.zeros(3)
  with pytest.raises(ValueError, match="vpo_loss: beta must be >= 0"):
    O.vpo_loss(x, x, x, x, x, beta=-0.1)
  with pytest.raises(ValueError, match="vpo_loss: alpha must be >= 0"):
    O.vpo_loss(x, x, x, x, x, alpha=-1.0)
  with pytest.raises(ValueError, match="vpo_loss: cal_logps must have shape"):
    O.vpo_loss(x, x, x, x, jnp.zeros((2, 2)))
  with pytest.raises(ValueError, match="vpo_loss: mode must be one of"):
    O.vpo_loss(x, x, x, x, x, mode="optimistic")
  with pytest.raises(ValueError, match="vpo_tabular_loss: pair_idx must index arms"):
    O.vpo_tabular_loss(x, x, jnp.array([[0, 3]]), jnp.ones(1), x)
  with pytest.raises(ValueError, match="vpo_tabular_loss: pref must have shape"):
    O.vpo_tabular_loss(x, x, jnp.array([[0, 1]]), jnp.ones(2), x)
