"""Tests for bottleneck_jax/information/_cvib.py (VIB channel masks + contrastive self-pruning).

Independent references: the closed-form gate KL ``1/2 log(1 + mu^2 / (exp(logvar) + 1e-8))``
evaluated in float64 NumPy, its analytic derivatives' signs, hand-computed contrastive losses
(``log(1 + 7 e^{-20})`` for matched orthonormal views, ``log B`` for orthogonal ones), a NumPy
cross-entropy, and the stop-gradient structure of the reference trainer (zero cross gradients).
Units: nats.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.information import (
    VIBMask,
    cross_view_infonce,
    cvib_losses,
    vib_mask,
    vib_mask_init,
    vib_mask_kl,
    vib_mask_log_alpha,
    vib_mask_sparsity,
)


def test_gate_kl_value_and_gradient_signs():
  mu, lv = jnp.array([1.0, 0.5]), jnp.array([-9.0, -2.0])
  ref = 0.5 * np.sum(np.log1p(np.array([1.0, 0.25]) / (np.exp([-9.0, -2.0]) + 1e-8)))
  assert float(vib_mask_kl(mu, lv)) == pytest.approx(ref, rel=1e-6)
  assert float(vib_mask_kl(mu[:1], lv[:1])) == pytest.approx(0.5 * math.log1p(math.exp(9)),
                                                             abs=1e-4)
  assert float(vib_mask_kl(mu, lv, seq_len=3, kl_mult=2.0)) == pytest.approx(6 * ref, rel=1e-6)
  g_mu, g_lv = jax.grad(lambda m, v: vib_mask_kl(m, v), argnums=(0, 1))(mu, lv)
  assert np.all(np.asarray(g_mu) > 0) and np.all(np.asarray(g_lv) < 0)


def test_mask_modes_and_the_pruning_threshold():
  mu = jnp.array([1.0, 2.0, 1.0])
  lv = jnp.array([-9.0, -9.0, 0.0])          # channel 2: log alpha = 0 - log(1 + 1e-8) ~ 0
  la = vib_mask_log_alpha(mu, lv)
  assert float(la[2]) == pytest.approx(0.0, abs=1e-6)
  # exactly 0 is pruned (strict <): make it exactly 0
  mu0, lv0 = jnp.array([1.0]), jnp.log(jnp.array([1.0 + 1e-8]))
  assert float(vib_mask_log_alpha(mu0, lv0)[0]) == 0.0
  assert float(vib_mask_sparsity(mu0, lv0)) == 1.0
  h = jnp.ones((2, 4, 3))
  hard = vib_mask(h, mu, lv, mode="hard")
  np.testing.assert_array_equal(hard.z[0, 0], [1.0, 1.0, 0.0])
  weighted = vib_mask(h, mu, lv, mode="weighted")
  np.testing.assert_array_equal(weighted.z[1, 2], [1.0, 2.0, 0.0])
  assert float(hard.aux["sparsity"]) == pytest.approx(1 / 3)
  # sampled gates: one draw per example, shared by its 4 tokens; KL scaled by seq_len = 4
  s = vib_mask(h, mu, lv, key=jax.random.key(0))
  np.testing.assert_allclose(s.z[:, 0], s.z[:, 3])
  assert float(s.loss) == pytest.approx(4 * float(vib_mask_kl(mu, lv)), rel=1e-6)
  assert s.bits.shape == (2,)


def test_init_matches_the_reference_distribution():
  p = vib_mask_init(0, 4000, init_mag=9.0, init_var=0.01)
  assert float(jnp.mean(p.mu)) == pytest.approx(1.0, abs=1e-3)
  assert float(jnp.std(p.mu)) == pytest.approx(0.01, rel=0.05)
  assert float(jnp.mean(p.logvar)) == pytest.approx(-9.0, abs=1e-3)


def test_contrastive_loss_limits_and_numpy():
  a = jnp.eye(8)
  assert float(cross_view_infonce(a, a, temperature=0.05)) == pytest.approx(
      math.log1p(7 * math.exp(-20)), abs=1e-7)
  b = jnp.concatenate([jnp.zeros((8, 8)), jnp.eye(8)], axis=1)
  a2 = jnp.concatenate([jnp.eye(8), jnp.zeros((8, 8))], axis=1)
  assert float(cross_view_infonce(a2, b, temperature=0.1)) == pytest.approx(math.log(8),
                                                                           abs=1e-6)
  r = np.random.default_rng(0)
  x, y = r.normal(size=(5, 3)), r.normal(size=(5, 3))
  s = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (
      y / np.linalg.norm(y, axis=1, keepdims=True)).T / 0.3
  ref = np.mean(np.log(np.exp(s).sum(1)) - np.diag(s))
  got = cross_view_infonce(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32),
                           temperature=0.3)
  assert float(got) == pytest.approx(ref, abs=1e-5)


def test_gradient_isolation_between_the_two_networks():
  r = np.random.default_rng(1)
  f = lambda *s: jnp.asarray(r.normal(size=s), jnp.float32)
  lo, lp, ho, hp = f(4, 3), f(4, 3), f(4, 5), f(4, 5)
  y = jnp.array([0, 1, 2, 0])

  def parts(lo, ho, lp, hp):
    return cvib_losses(lo, lp, y, ho, hp, jnp.array(1.0), kl_weight=0.1, cl_weight=0.5)
  g_orig = jax.grad(lambda lp, hp: parts(lo, ho, lp, hp).original, argnums=(0, 1))(lp, hp)
  g_prune = jax.grad(lambda lo, ho: parts(lo, ho, lp, hp).pruned, argnums=(0, 1))(lo, ho)
  assert all(not np.any(np.asarray(g)) for g in (*g_orig, *g_prune))
  out = parts(lo, ho, lp, hp)
  assert float(out.pruned) == pytest.approx(
      float(out.ce_pruned) + 0.1 + 0.5 * float(out.contrastive_pruned), rel=1e-6)


def test_vib_mask_module_trains_its_gates():
  m = VIBMask(3, rngs=nnx.Rngs(0))
  grads = nnx.grad(lambda m: m(jnp.ones((2, 3)), key=jax.random.key(1)).loss)(m)
  assert float(jnp.max(jnp.abs(grads.mu[...]))) > 0


def test_bad_inputs_get_named_errors():
  mu, lv = jnp.ones(3), jnp.zeros(3)
  with pytest.raises(ValueError, match="vib_mask: key is required"):
    vib_mask(jnp.ones((2, 3)), mu, lv)
  with pytest.raises(ValueError, match="vib_mask: h's last axis must match"):
    vib_mask(jnp.ones((2, 4)), mu, lv, mode="hard")
  with pytest.raises(ValueError, match="vib_mask: mode must be one of"):
    vib_mask(jnp.ones((2, 3)), mu, lv, mode="soft")
  with pytest.raises(ValueError, match="cross_view_infonce: temperature must be > 0"):
    cross_view_infonce(jnp.ones((2, 3)), jnp.ones((2, 3)), temperature=0.0)
  with pytest.raises(ValueError, match="vib_mask_kl: mu and logvar must have the same shape"):
    vib_mask_kl(mu, jnp.zeros(2))
