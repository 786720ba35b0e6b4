"""Tests for bottleneck_jax/information/_vib.py (Deep VIB, Alemi et al. 2017).

References used (all independent of the code under test): NumPy closed forms, SciPy
(`scipy.stats.norm`, `scipy.stats.multivariate_normal`, `scipy.integrate.quad`,
`scipy.special.log_softmax`), optax (`optax.incremental_update`), a NumPy MLP forward pass.
Units: every quantity is in nats unless the test says bits.
"""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.test_util import check_grads
from scipy import integrate, special, stats

from bottleneck_jax.core import BottleneckOutput

vib_mod = importlib.import_module("bottleneck_jax.information._vib")
from bottleneck_jax.core.distributions import diag_gaussian_kl_std_normal, diag_gaussian_log_prob
from bottleneck_jax.information import (
    VIB,
    VIBClassifier,
    VIBEncoder,
    vib,
    vib_loss,
    vib_predictive_logprobs,
    vib_rate,
)

LN2 = math.log(2.0)
B, K, S, C = 8, 4, 3, 5  # the shapes reused across tests (few compilations)


def _np_softplus(x):
  return np.logaddexp(0.0, x)


def _np_kl(mu, sd):
  mu = np.asarray(mu, np.float64)
  sd = np.asarray(sd, np.float64)
  return 0.5 * np.sum(mu**2 + sd**2 - 1.0 - 2.0 * np.log(sd), axis=-1)


def _gauss(seed=0, shape=(B, K), offset=0.0):
  rng = np.random.default_rng(seed)
  mu = rng.normal(size=shape).astype(np.float32)
  sd = _np_softplus(rng.normal(size=shape) + offset).astype(np.float32)
  return jnp.asarray(mu), jnp.asarray(sd)


# ------------------------------------------------------------------------------------------
# KL: closed form, integration, spec test 1 (analytic KL vs MC rate), spec test 2
# ------------------------------------------------------------------------------------------


def test_kl_matches_numpy_closed_form_with_batch_dims():
  mu, sd = _gauss(1, shape=(2, 3, K))
  got = diag_gaussian_kl_std_normal(mu, sd)
  assert got.shape == (2, 3)
  np.testing.assert_allclose(got, _np_kl(mu, sd), rtol=1e-5, atol=1e-6)
  # vib_rate without samples is the analytic KL.
  np.testing.assert_allclose(vib_rate(mu, sd), _np_kl(mu, sd), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("m, s", [(0.7, 0.3), (-1.5, 2.0), (0.0, 0.05)])
def test_kl_1d_against_numerical_integration(m, s):
  p, q = stats.norm(m, s), stats.norm(0.0, 1.0)
  lo, hi = m - 12 * s, m + 12 * s
  ref, _ = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), lo, hi,
                          epsabs=1e-11, limit=200)
  got = diag_gaussian_kl_std_normal(jnp.array([m], jnp.float32), jnp.array([s], jnp.float32))
  np.testing.assert_allclose(float(got), ref, rtol=1e-5, atol=1e-6)


def test_spec1_analytic_kl_vs_monte_carlo_rate():
  # the test plan: B=1000, K=8, std = softplus(N(0,1) - 5); spec's draw: 39.93 vs 39.94.
  rng = np.random.default_rng(0)
  mu = jnp.asarray(rng.normal(size=(1000, 8)), jnp.float32)
  sd = jnp.asarray(_np_softplus(rng.normal(size=(1000, 8)) - 5.0), jnp.float32)
  out = vib(mu, sd, key=jax.random.key(0), num_samples=1)
  kl, rate_mc = np.asarray(out.aux["kl"]), np.asarray(out.aux["rate_mc"])
  assert 38.0 < kl.mean() < 42.0, kl.mean()
  assert abs(rate_mc.mean() - kl.mean()) / kl.mean() < 0.005, (rate_mc.mean(), kl.mean())
  # The MC rate is log p(z|x) - log r(z) at the drawn z: recompute it with scipy, in float64.
  z = np.asarray(out.z, np.float64)
  ref = np.sum(stats.norm.logpdf(z, np.asarray(mu, np.float64), np.asarray(sd, np.float64))
               - stats.norm.logpdf(z), axis=-1)
  np.testing.assert_allclose(rate_mc, ref, rtol=2e-4, atol=2e-3)


def test_vib_rate_monte_carlo_converges_to_kl():
  mu, sd = _gauss(2)
  z = mu + sd * jax.random.normal(jax.random.key(3), (4000, B, K))
  mc = vib_rate(mu, sd, z)
  # Per-example sd of one MC term is sqrt(sum_k (2 mu^2 s^2 + (1 - s^2)^2 / 2)).
  mu64, sd64 = np.asarray(mu, np.float64), np.asarray(sd, np.float64)
  se = np.sqrt(np.sum(mu64**2 * sd64**2 + 0.5 * (1 - sd64**2) ** 2, axis=-1) / 4000)
  np.testing.assert_array_less(np.abs(np.asarray(mc) - _np_kl(mu, sd)), 5 * se + 1e-4)


def test_spec2_kl_zero_at_prior_with_zero_gradient_and_dmu_equals_mu():
  f = lambda m, s: jnp.sum(diag_gaussian_kl_std_normal(m, s))
  m0, s0 = jnp.zeros((B, K)), jnp.ones((B, K))
  np.testing.assert_array_equal(diag_gaussian_kl_std_normal(m0, s0), np.zeros(B))
  gm, gs = jax.grad(f, argnums=(0, 1))(m0, s0)
  np.testing.assert_array_equal(gm, 0.0)
  np.testing.assert_array_equal(gs, 0.0)
  mu, sd = _gauss(4)
  gm, gs = jax.jit(jax.grad(f, argnums=(0, 1)))(mu, sd)
  np.testing.assert_allclose(gm, mu, rtol=1e-6)
  np.testing.assert_allclose(gs, np.asarray(sd) - 1.0 / np.asarray(sd), rtol=1e-5, atol=1e-6)


def test_check_grads_kl_log_prob_and_vib_loss():
  mu, sd = _gauss(5, shape=(2, 3))
  z = mu + 0.5
  check_grads(diag_gaussian_kl_std_normal, (mu, sd), order=2, modes=("rev",),
              atol=1e-2, rtol=1e-2)
  check_grads(diag_gaussian_log_prob, (z, mu, sd), order=1, modes=("fwd", "rev"),
              atol=1e-2, rtol=1e-2)
  key = jax.random.key(0)
  check_grads(lambda m, s: vib(m, s, key=key, beta=0.5, num_samples=2).aux["rate_mc"],
              (mu, sd), order=1, modes=("rev",), atol=1e-2, rtol=1e-2)


# ------------------------------------------------------------------------------------------
# log-prob
# ------------------------------------------------------------------------------------------


def test_log_prob_against_scipy_multivariate_normal_and_broadcasting():
  mu, sd = _gauss(6)
  rng = np.random.default_rng(7)
  z = jnp.asarray(rng.normal(size=(S, B, K)), jnp.float32)
  got = diag_gaussian_log_prob(z, mu, sd)
  assert got.shape == (S, B)
  mu64, sd64, z64 = (np.asarray(a, np.float64) for a in (mu, sd, z))
  np.testing.assert_allclose(got, stats.norm.logpdf(z64, mu64, sd64).sum(-1), rtol=1e-5)
  for b in (0, 5):
    ref = stats.multivariate_normal(mu64[b], np.diag(sd64[b] ** 2)).logpdf(z64[:, b])
    np.testing.assert_allclose(got[:, b], ref, rtol=1e-5)


# ------------------------------------------------------------------------------------------
# vib(): samples, bits, loss, jit / vmap / grad
# ------------------------------------------------------------------------------------------


def test_vib_samples_have_the_right_mean_and_variance():
  mu = jnp.array([[1.0, -2.0], [0.0, 3.0]], jnp.float32)
  sd = jnp.array([[0.5, 2.0], [0.1, 1.0]], jnp.float32)
  n = 20000
  out = vib(mu, sd, key=jax.random.key(11), num_samples=n)
  z = np.asarray(out.z, np.float64)
  assert z.shape == (n, 2, 2)
  sd64 = np.asarray(sd, np.float64)
  assert np.all(np.abs(z.mean(0) - np.asarray(mu)) < 5 * sd64 / math.sqrt(n))
  # var of the sample variance of a normal: 2 sigma^4 / (n - 1)
  np.testing.assert_array_less(np.abs(z.var(0, ddof=1) - sd64**2),
                               5 * math.sqrt(2 / (n - 1)) * sd64**2)
  # Each coordinate is Gaussian: a KS test on the standardised samples.
  u = (z[:, 0, 1] - mu[0, 1].item()) / sd64[0, 1]
  assert stats.kstest(u, "norm").pvalue > 1e-3


def test_vib_output_protocol_bits_loss_shapes_and_determinism():
  mu, sd = _gauss(8)
  out = vib(mu, sd, key=jax.random.key(1), beta=0.25)
  assert isinstance(out, BottleneckOutput)
  assert out.z.shape == (B, K) and out.bits.shape == (B,) and out.loss.shape == ()
  ref_kl = _np_kl(mu, sd)
  np.testing.assert_allclose(out.aux["kl"], ref_kl, rtol=1e-5)
  np.testing.assert_allclose(out.bits, ref_kl / LN2, rtol=1e-5)
  np.testing.assert_allclose(out.loss, 0.25 * ref_kl.mean(), rtol=1e-5)
  assert out.aux["rate_mc"].shape == (B,)
  # Same key -> same z; another key -> another z; int seed accepted.
  np.testing.assert_array_equal(vib(mu, sd, key=jax.random.key(1)).z, out.z)
  assert not np.allclose(vib(mu, sd, key=jax.random.key(2)).z, out.z)
  assert vib(mu, sd, key=3).z.shape == (B, K)
  out_s = vib(mu, sd, key=jax.random.key(1), num_samples=S)
  assert out_s.z.shape == (S, B, K) and out_s.aux["rate_mc"].shape == (B,)
  # beta = 0 switches the loss off.
  assert float(vib(mu, sd, key=1, beta=0.0).loss) == 0.0


def test_vib_jit_vmap_over_beta_and_batch_and_grad():
  mu, sd = _gauss(9)
  f = jax.jit(lambda m, s, k, b: vib(m, s, key=k, beta=b, num_samples=S))
  out = f(mu, sd, jax.random.key(0), 0.1)
  np.testing.assert_allclose(out.loss, 0.1 * _np_kl(mu, sd).mean(), rtol=1e-5)
  # vmap over a traced beta (no range check on tracers).
  betas = jnp.array([0.0, 1e-3, 1.0], jnp.float32)
  losses = jax.vmap(lambda b: vib(mu, sd, key=0, beta=b).loss)(betas)
  np.testing.assert_allclose(losses, np.asarray(betas) * _np_kl(mu, sd).mean(), rtol=1e-5)
  # vmap over an extra leading batch axis with one key per row.
  keys = jax.random.split(jax.random.key(0), 2)
  mus, sds = jnp.stack([mu, -mu]), jnp.stack([sd, sd])
  outs = jax.vmap(lambda m, s, k: vib(m, s, key=k))(mus, sds, keys)
  np.testing.assert_allclose(outs.aux["kl"], _np_kl(mus, sds), rtol=1e-5)
  # Reparameterisation: d z / d mean = 1, d z / d std = eps = (z - mean) / std.
  def zsum(m, s):
    return jnp.sum(vib(m, s, key=jax.random.key(5)).z)
  gm, gs = jax.grad(zsum, argnums=(0, 1))(mu, sd)
  z = vib(mu, sd, key=jax.random.key(5)).z
  np.testing.assert_allclose(gm, np.ones((B, K)))
  np.testing.assert_allclose(gs, (np.asarray(z) - np.asarray(mu)) / np.asarray(sd), rtol=1e-4,
                             atol=1e-4)
  # Grad of the loss wrt mean: beta * mu / B (mean over the batch of dKL/dmu = mu).
  g = jax.grad(lambda m: vib(m, sd, key=0, beta=0.5).loss)(mu)
  np.testing.assert_allclose(g, 0.5 * np.asarray(mu) / B, rtol=1e-5)


@pytest.mark.parametrize("auto", [False, True], ids=["explicit", "auto"])
def test_vib_sharded_batch_matches_unsharded(auto):
  if len(jax.devices()) < 8:
    pytest.skip("needs 8 devices")
  kw = {"axis_types": (jax.sharding.AxisType.Auto,) * 2} if auto else {}
  mesh = jax.make_mesh((4, 2), ("data", "fsdp"), **kw)
  mu, sd = _gauss(10, shape=(16, K))
  ref = vib(mu, sd, key=jax.random.key(0), beta=0.1)
  f = jax.jit(lambda m, s: vib(m, s, key=jax.random.key(0), beta=0.1))
  with jax.set_mesh(mesh):
    spec = jax.sharding.PartitionSpec(("data", "fsdp"))
    got = f(jax.device_put(mu, spec), jax.device_put(sd, spec))
  np.testing.assert_allclose(got.z, ref.z, rtol=1e-6)
  np.testing.assert_allclose(got.bits, ref.bits, rtol=1e-6)
  np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-6)


# ------------------------------------------------------------------------------------------
# predictive log-probs and the loss
# ------------------------------------------------------------------------------------------


def test_spec3_predictive_logprobs_identical_samples_equal_log_softmax():
  rng = np.random.default_rng(12)
  logits = rng.normal(size=(B, C)).astype(np.float32)
  same = jnp.broadcast_to(jnp.asarray(logits), (S, B, C))
  np.testing.assert_allclose(vib_predictive_logprobs(same), special.log_softmax(logits, -1),
                             rtol=1e-5, atol=1e-6)
  # Different samples: log of the mean of the softmax probabilities (NumPy, float64).
  ls = rng.normal(size=(S, B, C)) * 3
  ref = np.log(np.mean(special.softmax(ls, -1), axis=0))
  got = jax.jit(vib_predictive_logprobs)(jnp.asarray(ls, jnp.float32))
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_vib_loss_against_numpy_reference():
  rng = np.random.default_rng(13)
  logits = rng.normal(size=(S, 2, B // 2, C)).astype(np.float32) * 2
  labels = rng.integers(0, C, size=(2, B // 2))
  rate = np.abs(rng.normal(size=(2, B // 2))).astype(np.float32) * 10
  beta = 0.03
  loss, aux = vib_loss(jnp.asarray(logits), jnp.asarray(labels, jnp.int32), jnp.asarray(rate),
                       beta=beta)
  logp = special.log_softmax(logits.astype(np.float64), -1)
  ce = -np.take_along_axis(logp, np.broadcast_to(labels[None, ..., None], (S, 2, B // 2, 1)),
                           -1)[..., 0]
  np.testing.assert_allclose(aux["class_loss"], ce.mean(), rtol=1e-5)
  np.testing.assert_allclose(aux["rate"], rate.mean(), rtol=1e-6)
  np.testing.assert_allclose(aux["rate_bits"], rate.mean() / LN2, rtol=1e-6)
  np.testing.assert_allclose(loss, ce.mean() + beta * rate.mean(), rtol=1e-5)
  np.testing.assert_allclose(aux["accuracy"], np.mean(logits.argmax(-1) == labels[None]),
                             rtol=1e-6)
  avg = np.log(np.mean(np.exp(logp), axis=0))
  np.testing.assert_allclose(aux["avg_accuracy"], np.mean(avg.argmax(-1) == labels), rtol=1e-6)
  np.testing.assert_allclose(
      aux["avg_class_loss"], -np.take_along_axis(avg, labels[..., None], -1).mean(), rtol=1e-5)
  # Gradient wrt logits: (softmax - onehot) / (S * batch).
  g = jax.jit(jax.grad(lambda lg: vib_loss(lg, jnp.asarray(labels, jnp.int8), jnp.asarray(rate),
                                           beta=beta)[0]))(jnp.asarray(logits))
  ref_g = (np.exp(logp) - np.eye(C)[labels][None]) / (S * B)
  np.testing.assert_allclose(g, ref_g, rtol=1e-4, atol=1e-6)


def test_vib_loss_out_of_range_labels_give_nan():
  logits = jnp.zeros((S, B, C))
  rate = jnp.zeros((B,))
  for bad in (C, -1):
    labels = jnp.zeros((B,), jnp.int32).at[0].set(bad)
    loss, _ = vib_loss(logits, labels, rate, beta=0.1)
    assert np.isnan(float(loss))


# ------------------------------------------------------------------------------------------
# NNX modules
# ------------------------------------------------------------------------------------------


def _np_linear(layer, h):
  return h @ np.asarray(layer.kernel[...], np.float64) + np.asarray(layer.bias[...], np.float64)


def _np_encoder(enc, x):
  h = np.asarray(x, np.float64)
  for layer in enc.layers:
    h = np.maximum(_np_linear(layer, h), 0.0)
  return _np_linear(enc.mean_head, h), _np_softplus(_np_linear(enc.rho_head, h) - enc.std_offset)


def test_encoder_init_and_forward_match_numpy():
  enc = VIBEncoder(6, K, hidden=(16, 8), rngs=nnx.Rngs(0))
  layers = [*enc.layers, enc.mean_head, enc.rho_head]
  assert [tuple(lyr.kernel.shape) for lyr in layers] == [(6, 16), (16, 8), (8, K), (8, K)]
  for lyr in layers:  # xavier_uniform kernels, zero biases
    fi, fo = lyr.kernel.shape
    assert np.max(np.abs(lyr.kernel[...])) <= math.sqrt(6.0 / (fi + fo)) + 1e-7
    np.testing.assert_array_equal(lyr.bias[...], 0.0)
  x = jnp.asarray(np.random.default_rng(15).normal(size=(2, B, 6)), jnp.float32)
  mean, std = enc(x)
  ref_m, ref_s = _np_encoder(enc, x)
  np.testing.assert_allclose(mean, ref_m, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(std, ref_s, rtol=1e-4, atol=1e-7)
  # Nearly deterministic at init: sigma ~= softplus(-5 + small).
  assert float(jnp.median(std)) < 0.02


def test_classifier_equals_pure_functions_on_its_params():
  model = VIBClassifier(6, C, hidden=(16,), latent_dim=K, beta=0.01, rngs=nnx.Rngs(1))
  x = jnp.asarray(np.random.default_rng(16).normal(size=(B, 6)), jnp.float32)
  key = jax.random.key(7)
  for ns in (1, S):
    logits_s, out = model(x, key=key, num_samples=ns)
    assert logits_s.shape == (ns, B, C)
    ref_m, ref_s = _np_encoder(model.encoder, x)
    ref = vib(jnp.asarray(ref_m, jnp.float32), jnp.asarray(ref_s, jnp.float32), key=key,
              beta=0.01, num_samples=ns)
    np.testing.assert_allclose(out.z, ref.z, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.loss, ref.loss, rtol=1e-4)
    np.testing.assert_allclose(out.aux["kl"], _np_kl(ref_m, ref_s), rtol=1e-4)
    z_s = np.asarray(out.z).reshape(ns, B, K)
    np.testing.assert_allclose(logits_s, _np_linear(model.decoder, z_s), rtol=1e-4, atol=1e-5)
  lp = model.predict_logprobs(x, key=key, num_samples=4)
  assert lp.shape == (B, C)
  np.testing.assert_allclose(special.logsumexp(np.asarray(lp, np.float64), -1), 0.0, atol=1e-5)
  ref_lp = vib_predictive_logprobs(model(x, key=key, num_samples=4)[0])
  np.testing.assert_allclose(lp, ref_lp, rtol=1e-6)
  # The VIB layer is encoder + vib().
  layer = VIB(6, K, beta=0.2, rngs=nnx.Rngs(2))
  out = layer(x, key=key)
  m, s = layer.encoder(x)
  ref = vib(m, s, key=key, beta=0.2)
  np.testing.assert_allclose(out.z, ref.z, rtol=1e-6)
  np.testing.assert_allclose(out.loss, ref.loss, rtol=1e-6)


def test_classifier_training_smoke_steps_reduce_loss():
  rng = np.random.default_rng(17)
  x = jnp.asarray(rng.normal(size=(B, 6)), jnp.float32)
  y = jnp.asarray(rng.integers(0, C, size=B), jnp.int32)
  model = VIBClassifier(6, C, hidden=(16,), latent_dim=K, rngs=nnx.Rngs(3))
  ema = nnx.state(model, nnx.Param)
  opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

  @nnx.jit
  def step(model, opt, ema, key):
    def loss_fn(m):
      logits_s, out = m(x, key=key, num_samples=2)
      return vib_loss(logits_s, y, out.aux["kl"], beta=m.beta)[0]
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    opt.update(model, grads)
    # The paper's Polyak average of the weights: optax's, no wrapper of ours.
    return loss, optax.incremental_update(nnx.state(model, nnx.Param), ema, step_size=0.1)

  losses = []
  # optax.adam mixes its int32 step count with Python floats, which strict promotion rejects.
  with jax.numpy_dtype_promotion("standard"):
    for i in range(6):
      loss, ema = step(model, opt, ema, jax.random.fold_in(jax.random.key(0), i))
      losses.append(float(loss))
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
  # The EMA moved towards, but not onto, the trained parameters.
  k_ema, k_now = ema["decoder"]["kernel"][...], model.decoder.kernel[...]
  assert not np.allclose(k_ema, k_now)


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------

_M, _S = jnp.zeros((B, K)), jnp.ones((B, K))


@pytest.mark.parametrize("fn", [diag_gaussian_kl_std_normal, vib_rate,
                                lambda m, s: vib(m, s, key=0)])
def test_gaussian_argument_errors(fn):
  with pytest.raises(ValueError, match="mean must have rank >= 1"):
    fn(jnp.float32(0.0), jnp.float32(1.0))
  with pytest.raises(TypeError, match="mean must have a floating dtype, got int32"):
    fn(jnp.zeros((B, K), jnp.int32), _S)
  with pytest.raises(TypeError, match="std must have a floating dtype"):
    fn(_M, jnp.ones((B, K), jnp.int32))
  with pytest.raises(ValueError, match="mean and std must have the same shape"):
    fn(_M, jnp.ones((B, K + 1)))
  with pytest.raises(TypeError, match="mean and std must have the same dtype"):
    fn(_M, jnp.ones((B, K), jnp.bfloat16))


def test_log_prob_errors():
  with pytest.raises(TypeError, match="diag_gaussian_log_prob: z must have a floating dtype"):
    diag_gaussian_log_prob(jnp.zeros((B, K), jnp.int32), _M, _S)
  with pytest.raises(TypeError, match="z must have the dtype of mean"):
    diag_gaussian_log_prob(jnp.zeros((B, K), jnp.bfloat16), _M, _S)
  with pytest.raises(ValueError, match="z must have the last-axis size of mean"):
    diag_gaussian_log_prob(jnp.zeros((B, K + 1)), _M, _S)
  with pytest.raises(ValueError, match="z must broadcast against mean"):
    diag_gaussian_log_prob(jnp.zeros((B + 1, K)), _M, _S)
  with pytest.raises(ValueError, match="z must have rank >= 1"):
    diag_gaussian_log_prob(jnp.float32(0.0), _M, _S)


def test_vib_rate_errors():
  with pytest.raises(ValueError, match=r"vib_rate: z_samples must have shape \[S, 8, 4\]"):
    vib_rate(_M, _S, jnp.zeros((S, B, K + 1)))
  with pytest.raises(ValueError, match="z_samples must have shape"):
    vib_rate(_M, _S, jnp.zeros((B, K)))
  with pytest.raises(TypeError, match="z_samples must have a floating dtype"):
    vib_rate(_M, _S, jnp.zeros((S, B, K), jnp.int32))


def test_vib_config_errors():
  with pytest.raises(ValueError, match="vib: num_samples must be >= 1, got 0"):
    vib(_M, _S, key=0, num_samples=0)
  with pytest.raises(TypeError, match="vib: num_samples must be an int"):
    vib(_M, _S, key=0, num_samples=2.0)
  with pytest.raises(ValueError, match="vib: beta must be >= 0.0, got -0.1"):
    vib(_M, _S, key=0, beta=-0.1)
  with pytest.raises(TypeError, match="vib: beta must be a number"):
    vib(_M, _S, key=0, beta="big")
  with pytest.raises(TypeError, match="vib: key must be a jax.random key"):
    vib(_M, _S, key=np.zeros(3))
  with pytest.raises(TypeError, match="vib: key must be a jax.random key"):
    vib(_M, _S, key=None)


def test_predictive_and_loss_errors():
  with pytest.raises(ValueError, match="vib_predictive_logprobs: logits_s must have rank >= 2"):
    vib_predictive_logprobs(jnp.zeros((C,)))
  with pytest.raises(TypeError, match="logits_s must have a floating dtype"):
    vib_predictive_logprobs(jnp.zeros((S, C), jnp.int32))
  lg, lab, r = jnp.zeros((S, B, C)), jnp.zeros((B,), jnp.int32), jnp.zeros((B,))
  with pytest.raises(ValueError, match="vib_loss: logits_s must have rank >= 2"):
    vib_loss(jnp.zeros((C,)), lab, r, beta=0.1)
  with pytest.raises(TypeError, match="vib_loss: logits_s must have a floating dtype"):
    vib_loss(lg.astype(jnp.int32), lab, r, beta=0.1)
  with pytest.raises(TypeError, match="vib_loss: labels must have an integer dtype, got float32"):
    vib_loss(lg, lab.astype(jnp.float32), r, beta=0.1)
  with pytest.raises(ValueError, match=r"vib_loss: labels must have shape \[8\]"):
    vib_loss(lg, jnp.zeros((B, 1), jnp.int32), r, beta=0.1)
  with pytest.raises(ValueError, match=r"vib_loss: rate must have shape \[8\]"):
    vib_loss(lg, lab, jnp.zeros((B + 1,)), beta=0.1)
  with pytest.raises(TypeError, match="vib_loss: rate must have a floating dtype"):
    vib_loss(lg, lab, jnp.zeros((B,), jnp.int32), beta=0.1)
  with pytest.raises(ValueError, match="vib_loss: beta must be >= 0.0"):
    vib_loss(lg, lab, r, beta=-1.0)
  with pytest.raises(TypeError, match="vib_loss: labels must be an array"):
    vib_loss(lg, "abc", r, beta=0.1)


def test_module_errors():
  r = nnx.Rngs(0)
  with pytest.raises(ValueError, match="VIBEncoder: in_features must be >= 1, got 0"):
    VIBEncoder(0, K, rngs=r)
  with pytest.raises(ValueError, match="VIBEncoder: latent_dim must be >= 1"):
    VIBEncoder(6, 0, rngs=r)
  with pytest.raises(TypeError, match="VIBEncoder: latent_dim must be an int"):
    VIBEncoder(6, 2.5, rngs=r)
  with pytest.raises(ValueError, match=r"VIBEncoder: hidden must be a sequence of ints >= 1"):
    VIBEncoder(6, K, hidden=(8, 0), rngs=r)
  with pytest.raises(TypeError, match=r"VIBEncoder: hidden must be a sequence of ints >= 1"):
    VIBEncoder(6, K, hidden=8, rngs=r)
  with pytest.raises(TypeError, match="VIBEncoder: std_offset must be a number"):
    VIBEncoder(6, K, std_offset=None, rngs=r)
  with pytest.raises(ValueError, match="VIBClassifier: num_classes must be >= 1"):
    VIBClassifier(6, 0, rngs=r)
  with pytest.raises(ValueError, match="VIBClassifier: beta must be >= 0.0"):
    VIBClassifier(6, C, beta=-1.0, rngs=r)
  with pytest.raises(ValueError, match="VIB: beta must be >= 0.0"):
    VIB(6, K, beta=-1.0, rngs=r)
  enc = VIBEncoder(6, K, hidden=(), rngs=r)
  with pytest.raises(ValueError, match=r"VIBEncoder: x must have size 6 on axis -1"):
    enc(jnp.zeros((B, 5)))
  with pytest.raises(TypeError, match="VIBEncoder: x must have a floating dtype"):
    enc(jnp.zeros((B, 6), jnp.int32))
  with pytest.raises(ValueError, match="VIBEncoder: x must have rank >= 1"):
    enc(jnp.float32(0.0))


def test_public_names():
  assert set(vib_mod.__all__) == {
      "VIB", "VIBClassifier", "VIBEncoder", "diag_gaussian_kl_std_normal",
      "diag_gaussian_log_prob", "vib", "vib_loss", "vib_predictive_logprobs", "vib_rate"}
  assert not hasattr(vib_mod, "ema_update")  # optax.incremental_update is the one EMA


def test_empty_inputs_are_errors_not_nan():
  """Regression: a batch mean over zero examples (or zero samples) returned NaN silently."""
  key = jax.random.key(0)
  with pytest.raises(ValueError, match=r"vib: mean must have at least one example"):
    vib(jnp.zeros((0, K)), jnp.ones((0, K)), key=key)
  with pytest.raises(ValueError, match=r"vib_rate: z_samples must hold at least one sample"):
    vib_rate(jnp.zeros((B, K)), jnp.ones((B, K)), jnp.zeros((0, B, K)))
  with pytest.raises(ValueError, match=r"vib_predictive_logprobs: logits_s must have at least"):
    vib_predictive_logprobs(jnp.zeros((0, B, C)))
  with pytest.raises(ValueError, match=r"vib_loss: logits_s must have at least one example"):
    vib_loss(jnp.zeros((2, 0, C)), jnp.zeros((0,), jnp.int32), jnp.zeros((0,)), beta=0.1)
  with pytest.raises(ValueError, match=r"vib_loss: logits_s must have at least one sample"):
    vib_loss(jnp.zeros((2, B, 0)), jnp.zeros((B,), jnp.int32), jnp.zeros((B,)), beta=0.1)
  # An empty batch is a valid *per-example* result: the analytic rate is simply empty.
  assert vib_rate(jnp.zeros((0, K)), jnp.ones((0, K))).shape == (0,)


def test_bf16_inputs_get_float32_statistics():
  rng = np.random.default_rng(0)
  mean = rng.normal(size=(64, 16)).astype(np.float32)
  std = (0.1 + rng.random((64, 16))).astype(np.float32)
  m16, s16 = jnp.asarray(mean, jnp.bfloat16), jnp.asarray(std, jnp.bfloat16)
  kl = diag_gaussian_kl_std_normal(m16, s16)
  assert kl.dtype == jnp.float32
  # float64 closed form on the bf16-rounded inputs
  m64, s64 = np.asarray(m16, np.float64), np.asarray(s16, np.float64)
  want = 0.5 * np.sum(m64**2 + s64**2 - 1 - 2 * np.log(s64), axis=-1)
  np.testing.assert_allclose(np.asarray(kl), want, rtol=1e-5)
  out = vib(m16, s16, key=jax.random.key(0))
  assert out.z.dtype == jnp.bfloat16 and out.bits.dtype == jnp.float32
