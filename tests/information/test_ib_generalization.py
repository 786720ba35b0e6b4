"""Tests for bottleneck_jax/information/_ib_generalization.py (Kawaguchi et al. 2023 estimators).

Independent references: the closed-form MI of a linear-Gaussian encoder,
``I(X;Z) = 1/2 log det(I + W W^T / sigma^2)`` for ``x ~ N(0, I)``, ``z = W x + sigma eps``
(1.3593 nats for the test plan's ``W``); label-coding encoders whose ``I(X;Z|Y)`` and ``I(X;Z)`` are
known in the limit of small noise (0 and ``log C``); a double loop over ``scipy.stats.norm``
log-densities; ``np.unique`` for the global-bin entropy; the fixed point of dual ascent on a
quadratic. Units: nats.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import special, stats

from bottleneck_jax.information import (
    StochasticMLP,
    conditional_gaussian_encoder_mi,
    gaussian_encoder_mi,
    layer_entropy_global_bins,
    mi_constraint_step,
)

W = np.array([[1.0, 0.3], [0.0, 0.7]])
TRUTH = 0.5 * math.log(np.linalg.det(np.eye(2) + W @ W.T / 0.25))
_mi = jax.jit(gaussian_encoder_mi, static_argnames="bound")


def _linear_encoder(m, seed):
  kx, ke = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(kx, (m, 2))
  mu = x @ jnp.asarray(W.T, jnp.float32)
  std = jnp.full_like(mu, 0.5)
  return mu + std * jax.random.normal(ke, mu.shape), mu, std


def test_closed_form_and_bounds_on_a_linear_gaussian_encoder():
  assert TRUTH == pytest.approx(1.3593, abs=1e-4)
  est = [float(_mi(*_linear_encoder(1000, s))) for s in range(3)]
  jen = float(_mi(*_linear_encoder(1000, 0), bound="jensen"))
  assert abs(np.mean(est) - TRUTH) < 0.1
  assert max(est) <= math.log(1000)
  assert jen >= est[0]


def test_matches_a_double_loop_of_scipy_log_densities():
  r = np.random.default_rng(0)
  z, mu = r.normal(size=(6, 2)), r.normal(size=(6, 2))
  std = r.uniform(0.5, 1.5, (6, 2))
  lq = np.array([[stats.norm.logpdf(z[i], mu[j], std[j]).sum() for j in range(6)]
                 for i in range(6)])
  mix = np.mean(np.diag(lq) - special.logsumexp(lq, axis=1) + math.log(6))
  jen = np.mean(np.diag(lq) - lq.mean(1))
  f = lambda a: jnp.asarray(a, jnp.float32)
  assert float(gaussian_encoder_mi(f(z), f(mu), f(std))) == pytest.approx(mix, abs=1e-4)
  assert float(gaussian_encoder_mi(f(z), f(mu), f(std), bound="jensen")) == pytest.approx(
      jen, abs=1e-4)
  y = np.array([0, 1, 0, 1, 1, 0])
  cond = 0.0
  for c in (0, 1):
    idx = np.flatnonzero(y == c)
    sub = lq[np.ix_(idx, idx)]
    cond += len(idx) / 6 * np.mean(np.diag(sub) - special.logsumexp(sub, axis=1)
                                   + math.log(len(idx)))
  got = conditional_gaussian_encoder_mi(f(z), f(mu), f(std), jnp.asarray(y, jnp.int32))
  assert float(got) == pytest.approx(cond, abs=1e-4)


def test_label_coding_encoder_keeps_no_extra_information():
  c, m = 4, 400
  y = jnp.arange(m) % c
  mu = jax.nn.one_hot(y, c) * 5.0
  std = jnp.full_like(mu, 0.05)
  z = mu + std * jax.random.normal(jax.random.key(2), mu.shape)
  assert float(conditional_gaussian_encoder_mi(z, mu, std, y)) == pytest.approx(0.0, abs=1e-3)
  assert float(gaussian_encoder_mi(z, mu, std)) == pytest.approx(math.log(c), abs=1e-3)


def test_layer_entropy_global_bins_matches_numpy():
  a = np.random.default_rng(3).normal(size=(200, 3)).astype(np.float32)
  lo, hi = a.min(), a.max()
  codes = np.clip(np.floor((a - lo) / ((hi - lo) / 10)), 0, 9)
  _, counts = np.unique(codes, axis=0, return_counts=True)
  p = counts / counts.sum()
  assert float(layer_entropy_global_bins(jnp.asarray(a), num_bins=10)) == pytest.approx(
      -(p * np.log(p)).sum(), abs=1e-5)
  assert float(layer_entropy_global_bins(jnp.ones((5, 2)), num_bins=10)) == 0.0


def test_dual_ascent_reaches_the_target_on_a_quadratic_toy():
  # "MI(theta) = theta^2"; minimise (theta - 3)^2 / 10 + lam (c - MI) with c = 1.5: the constraint
  # holds at the fixed point (theta^2 = 1.5)
  theta, lam = jnp.array(0.5), jnp.array(0.0)

  def loss(th, lam):
    out = mi_constraint_step(th ** 2, lam, target=1.5, lam_lr=0.05)
    return (th - 3.0) ** 2 / 10 + out.penalty, out.lam
  def step(carry, _):
    th, la = carry
    (_, la_new), g = jax.value_and_grad(loss, has_aux=True)(th, la)
    return (th - 0.05 * g, la_new), None
  (theta, lam), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=3000))((theta, lam))
  assert float(theta ** 2) == pytest.approx(1.5, abs=1e-2)


def test_stochastic_mlp_bottleneck_output():
  m = StochasticMLP(2, hidden=(8,), latent_dim=3, rngs=nnx.Rngs(0))
  out = m(jnp.ones((5, 2)), key=jax.random.key(0))
  assert out.z.shape == (5, 3) and out.bits.shape == (5,)
  mu, std = out.aux["mu"], out.aux["std"]
  kl = 0.5 * np.sum(np.asarray(mu) ** 2 + np.asarray(std) ** 2 - 1 - 2 * np.log(np.asarray(std)),
                    axis=-1)
  np.testing.assert_allclose(out.bits, kl / math.log(2), rtol=1e-5)


def test_bad_inputs_get_named_errors():
  z = jnp.zeros((4, 2))
  with pytest.raises(ValueError, match="gaussian_encoder_mi: bound must be one of"):
    gaussian_encoder_mi(z, z, z + 1, bound="upper")
  with pytest.raises(ValueError, match="gaussian_encoder_mi: z and mu must have the same shape"):
    gaussian_encoder_mi(z, jnp.zeros((5, 2)), z + 1)
  with pytest.raises(ValueError, match="conditional_gaussian_encoder_mi: labels must have shape"):
    conditional_gaussian_encoder_mi(z, z, z + 1, jnp.zeros((3,), jnp.int32))
  with pytest.raises(ValueError, match="mi_constraint_step: lam_lr must be >= 0"):
    mi_constraint_step(jnp.array(1.0), jnp.array(0.0), lam_lr=-1.0)
