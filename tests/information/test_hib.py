"""Tests for bottleneck_jax/information/_hib.py (history encoder with InfoNCE + KL compression).

Independent references: the InfoNCE limits (a perfect bilinear critic saturates at ``log B``, a
constant one gives 0, never above ``log B``), a NumPy log-sum-exp cross-entropy, the closed-form
Gaussian KL, and the reparameterisation (``z = mu`` when ``std -> 0``). Units: nats.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.information import (
    HistoryEncoder,
    PrivilegedEncoder,
    hib_loss,
    infonce_bilinear,
)


def test_infonce_bilinear_limits_and_numpy():
  b = 8
  eye = jnp.eye(b)
  assert float(infonce_bilinear(60.0 * eye, eye, eye)) == pytest.approx(math.log(b), abs=1e-6)
  assert float(infonce_bilinear(jnp.ones((b, 3)), jnp.ones((b, 2)), jnp.ones((3, 2)))) == \
      pytest.approx(0.0, abs=1e-6)
  r = np.random.default_rng(0)
  z, e, w = r.normal(size=(b, 3)), r.normal(size=(b, 2)), r.normal(size=(3, 2))
  g = z @ w @ e.T / 0.5
  ref = math.log(b) + np.mean(np.diag(g) - np.log(np.exp(g).sum(1)))
  f = lambda a: jnp.asarray(a, jnp.float32)
  got = float(infonce_bilinear(f(z), f(e), f(w), temperature=0.5))
  assert got == pytest.approx(ref, abs=1e-5) and got <= math.log(b)


def test_hib_loss_parts():
  r = np.random.default_rng(1)
  mu = jnp.asarray(r.normal(size=(6, 3)), jnp.float32)
  std = jnp.asarray(r.uniform(0.5, 1.5, (6, 3)), jnp.float32)
  e, w = jnp.asarray(r.normal(size=(6, 2)), jnp.float32), jnp.asarray(r.normal(size=(3, 2)),
                                                                      jnp.float32)
  out = hib_loss(mu, std, e, w, key=jax.random.key(0), beta=0.3)
  kl = 0.5 * np.mean(np.sum(np.asarray(mu) ** 2 + np.asarray(std) ** 2 - 1
                            - 2 * np.log(np.asarray(std)), axis=1))
  assert float(out.kl) == pytest.approx(kl, rel=1e-5)
  assert float(out.loss) == pytest.approx(float(out.nce) + 0.3 * kl, rel=1e-5)
  assert float(out.mi_lower_bound) == pytest.approx(math.log(6) - float(out.nce), abs=1e-6)
  # a vanishing std samples the mean: the bound equals infonce_bilinear on mu
  tiny = hib_loss(mu, jnp.full_like(std, 1e-7), e, w, key=jax.random.key(0), beta=0.0)
  assert float(tiny.mi_lower_bound) == pytest.approx(float(infonce_bilinear(mu, e, w)),
                                                     abs=1e-4)


def test_encoders_shapes_and_kl_bits():
  enc = HistoryEncoder(4, 2, 10, hidden=(16,), z_dim=3, rngs=nnx.Rngs(0))
  out = enc(jnp.ones((5, 10, 6)), key=jax.random.key(1))
  assert out.z.shape == (5, 3) and out.bits.shape == (5,)
  mu, std = np.asarray(out.aux["mu"]), np.asarray(out.aux["std"])
  kl = 0.5 * np.sum(mu ** 2 + std ** 2 - 1 - 2 * np.log(std), axis=1)
  np.testing.assert_allclose(out.bits, kl / math.log(2), rtol=1e-4)
  assert PrivilegedEncoder(2, 8, rngs=nnx.Rngs(0))(jnp.ones((5, 2))).shape == (5, 8)


def test_bad_inputs_get_named_errors():
  z = jnp.zeros((4, 3))
  with pytest.raises(ValueError, match="infonce_bilinear: w must have shape"):
    infonce_bilinear(z, jnp.zeros((4, 2)), jnp.zeros((2, 2)))
  with pytest.raises(ValueError, match="infonce_bilinear: z and e_emb must have the same batch"):
    infonce_bilinear(z, jnp.zeros((5, 2)), jnp.zeros((3, 2)))
  with pytest.raises(ValueError, match="hib_loss: the batch must hold at least 2 pairs"):
    hib_loss(z[:1], z[:1], jnp.zeros((1, 2)), jnp.zeros((3, 2)), key=0, beta=0.1)
  with pytest.raises(ValueError, match="hib_loss: beta must be >= 0"):
    hib_loss(z, z, jnp.zeros((4, 2)), jnp.zeros((3, 2)), key=0, beta=-1.0)
