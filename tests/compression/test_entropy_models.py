"""Tests for bottleneck_jax/compression/_entropy_models.py and _coding.py.

References: CompressAI's numbers at a deterministic initialisation (where ``f(y) = y/10``
exactly), closed-form Gaussian bin masses (SciPy), a naive per-channel NumPy loop of the
cumulative MLP, the discrete entropy of a rounded Laplace, and the ideal code length of the
tables (for the constriction bitstream)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.test_util import check_grads
from scipy import stats

from bottleneck_jax.compression import (
  CdfTables,
  EntropyBottleneck,
  FactorizedPriorParams,
  bits_per_pixel,
  build_factorized_tables,
  build_gaussian_tables,
  decode_symbols,
  encode_symbols,
  entropy_bottleneck,
  factorized_compress,
  factorized_decompress,
  factorized_likelihood,
  factorized_logits_cdf,
  fit_quantiles,
  gaussian_conditional,
  gaussian_likelihood,
  gaussian_scale_indexes,
  gaussian_scale_table,
  ideal_code_length,
  init_factorized_prior,
  lower_bound,
  pmf_to_quantized_cdf,
  quantiles_aux_loss,
  quantize_latents,
  rate_distortion_loss,
)


def _deterministic(channels=1):
  """CompressAI's init with biases = factors = 0: then f(y) = y / 10 exactly."""
  p = init_factorized_prior(0, channels)
  return FactorizedPriorParams(p.matrices, tuple(jnp.zeros_like(b) for b in p.biases),
                               tuple(jnp.zeros_like(f) for f in p.factors))


def _random_params(channels=3, seed=0):
  p = init_factorized_prior(seed, channels)
  r = np.random.default_rng(seed)
  j = lambda a: jnp.asarray(np.asarray(a) + 0.3 * r.standard_normal(a.shape), jnp.float32)
  return FactorizedPriorParams(tuple(map(j, p.matrices)), tuple(map(j, p.biases)),
                               tuple(map(j, p.factors)))


def _naive_logits(params, y):
  """Per-channel, per-value loop over the MLP in float64 (independent of the code)."""
  y = np.asarray(y, np.float64)
  out = np.zeros_like(y)
  sp = lambda a: np.log1p(np.exp(a))
  for idx in np.ndindex(y.shape):
    c = idx[-1]
    h = np.array([[y[idx]]])
    for i in range(len(params.matrices)):
      h = sp(np.asarray(params.matrices[i][c], np.float64)) @ h + np.asarray(
          params.biases[i][c], np.float64)
      if i < len(params.factors):
        h = h + np.tanh(np.asarray(params.factors[i][c], np.float64)) * np.tanh(h)
    out[idx] = h[0, 0]
  return out


def test_compressai_golden_values_at_the_deterministic_init():
  p = _deterministic()
  np.testing.assert_allclose(float(factorized_logits_cdf(p, jnp.ones((1, 1)))[0, 0]), 0.1,
                             rtol=1e-6)
  y = jnp.array([[0.0], [1.0], [-3.0], [10.0]])
  lik = np.asarray(factorized_likelihood(p, y))[:, 0]
  np.testing.assert_allclose(lik, [0.0249947930, 0.0249324489, 0.0244410780, 0.0196597212],
                             rtol=1e-5)
  q0 = jnp.array([[-10.0, 0.0, 10.0]])
  np.testing.assert_allclose(float(quantiles_aux_loss(p, q0)), 40.8328260340, rtol=1e-6)
  q = np.asarray(fit_quantiles(p))
  np.testing.assert_allclose(q[0], [-214.164130170, 0.0, 214.164130170], atol=2e-3)


def test_likelihood_equals_a_naive_numpy_loop_with_random_parameters():
  p = _random_params()
  y = jnp.asarray(np.random.default_rng(1).normal(0, 4, (5, 3)), jnp.float32)
  f = np.asarray(factorized_logits_cdf(p, y))
  np.testing.assert_allclose(f, _naive_logits(p, y), rtol=1e-5, atol=1e-5)
  sig = lambda v: 1 / (1 + np.exp(-v))
  ref = sig(_naive_logits(p, y + 0.5)) - sig(_naive_logits(p, y - 0.5))
  np.testing.assert_allclose(np.asarray(factorized_likelihood(p, y)), np.maximum(ref, 1e-9),
                             rtol=1e-4)


def test_gaussian_golden_values_and_scale_table():
  y = jnp.array([0.0, 1.0, 0.0, 2.0])
  s = jnp.array([1.0, 1.0, 0.05, 0.5])
  np.testing.assert_allclose(np.asarray(gaussian_likelihood(y, s)),
                             [0.3829249225, 0.2417303375, 0.9999945183, 0.0013496114], rtol=1e-5)
  ref = stats.norm.cdf(0.5, 3.0, 2.0) - stats.norm.cdf(-0.5, 3.0, 2.0)
  np.testing.assert_allclose(float(gaussian_likelihood(jnp.array(0.0), jnp.array(2.0),
                                                       jnp.array(3.0))), ref, rtol=1e-5)
  t = gaussian_scale_table()
  np.testing.assert_allclose([t[0], t[1], t[-1]], [0.11, 0.124404, 256.0], rtol=1e-5)
  assert gaussian_scale_indexes(np.array([0.11, 0.1245, 300.0]), t).tolist() == [0, 2, 63]


def test_lower_bound_gradient_semantics_and_check_grads():
  g = jax.grad(lambda v: jnp.sum(lower_bound(v, 1.0) * jnp.array([1.0, -1.0, 1.0])))
  # below the bound: gradient +1 (descent pushes down) is blocked, -1 (pushes up) passes
  np.testing.assert_array_equal(np.asarray(g(jnp.array([0.5, 0.5, 2.0]))), [0.0, -1.0, 1.0])
  check_grads(lambda v: lower_bound(v, 0.1), (jnp.array([0.5, 2.0]),), order=1, modes=("rev",))


def test_pmf_to_quantized_cdf_matches_the_cpp_algorithm_on_hand_made_pmfs():
  # hand-computed with CompressAI's algorithm: round, rescale, steal for zero counts
  assert pmf_to_quantized_cdf([0.5, 0.5, 0.0], 4).tolist() == [0, 7, 15, 16]
  assert pmf_to_quantized_cdf([0.25, 0.25, 0.5], 4).tolist() == [0, 4, 8, 16]
  assert pmf_to_quantized_cdf([1.0, 0.0, 0.0], 4).tolist() == [0, 14, 15, 16]
  r = np.random.default_rng(0)
  pmf = r.dirichlet(np.full(300, 0.05))
  cdf = pmf_to_quantized_cdf(pmf, 16).astype(np.int64)
  assert cdf[0] == 0 and cdf[-1] == 2**16 and np.all(np.diff(cdf) >= 1)
  with pytest.raises(ValueError, match="pmf_to_quantized_cdf: pmf must be finite"):
    pmf_to_quantized_cdf([0.5, -0.1], 16)


def test_tables_cover_the_mass_and_gaussian_tables_equal_the_formula():
  p = _random_params()
  q = fit_quantiles(p)
  tables = build_factorized_tables(p, q)
  for c in range(3):
    n = int(tables.cdf_length[c]) - 2
    start = float(q[c, 1]) + int(tables.offset[c])
    ys = jnp.asarray((start + np.arange(n))[:, None] * np.ones((1, 3)), jnp.float32)
    mass = float(jnp.sum(factorized_likelihood(p, ys, likelihood_bound=0.0)[:, c]))
    assert mass >= 1 - 2e-9 - 1e-5
  g = build_gaussian_tables(gaussian_scale_table())
  assert g.cdf.shape == (64, 2 * math.ceil(256 * -stats.norm.ppf(0.5e-9)) + 3)
  center = -int(g.offset[10])
  s = gaussian_scale_table()[10]
  pmf = np.diff(g.cdf[10, :g.cdf_length[10]]) / 2**16
  ref = stats.norm.cdf(0.5, 0, s) - stats.norm.cdf(-0.5, 0, s)
  np.testing.assert_allclose(pmf[center], ref, atol=2 / 2**16)


def test_coder_round_trips_exactly_with_escapes_and_size_is_near_ideal():
  r = np.random.default_rng(0)
  p = _random_params()
  q = np.asarray(fit_quantiles(p))
  tables = build_factorized_tables(p, q)
  y = r.laplace(0, 3, (2, 16, 16, 3)).astype(np.float32)
  y[0, 0, 0, 0], y[1, 2, 3, 2] = 5000.0, -123456.0          # escape (bypass) path
  strings = factorized_compress(y, q[:, 1], tables)
  y_hat = factorized_decompress(strings, y.shape, q[:, 1], tables)
  np.testing.assert_allclose(y_hat, np.round(y - q[:, 1]) + q[:, 1], atol=1e-3)
  # Gaussian tables: bits of the file vs the ideal code length of the tables
  scales = r.uniform(0.2, 20, (4000,))
  sym = np.round(r.normal(0, scales)).astype(np.int32)
  idx = gaussian_scale_indexes(scales, gaussian_scale_table())
  g = build_gaussian_tables(gaussian_scale_table())
  data = encode_symbols(sym, idx, g)
  np.testing.assert_array_equal(decode_symbols(data, idx, g), sym)
  ideal = ideal_code_length(sym, idx, g)
  assert ideal <= 8 * len(data) <= 1.01 * ideal + 64


def test_coder_rejects_bad_input():
  g = build_gaussian_tables(gaussian_scale_table(levels=4))
  with pytest.raises(ValueError, match=r"encode_symbols: indexes must lie in \[0, 4\)"):
    encode_symbols(np.zeros(3, np.int32), np.array([0, 1, 4]), g)
  with pytest.raises(ValueError, match=r"encode_symbols: symbols must lie in \[-2\^30, 2\^30\]"):
    encode_symbols(np.array([2**31], np.int64), np.array([0]), g)
  with pytest.raises(TypeError, match="encode_symbols: symbols must have a real integer dtype"):
    encode_symbols(np.array([0.5]), np.array([0]), g)
  with pytest.raises(ValueError, match="decode_symbols: data must be a whole number"):
    decode_symbols(b"abc", np.array([0]), g)
  with pytest.raises(TypeError, match="encode_symbols: tables must be a CdfTables"):
    encode_symbols(np.array([0]), np.array([0]), (1, 2))
  p = _random_params()
  with pytest.raises(ValueError, match="factorized_compress: y's last axis"):
    factorized_compress(np.zeros((1, 4, 2)), np.zeros(3), build_factorized_tables(
        p, fit_quantiles(p)))
  assert isinstance(g, CdfTables)


def test_bottleneck_modes_bits_jit_vmap_grad():
  p = _random_params()
  med = fit_quantiles(p)[:, 1]
  y = jnp.asarray(np.random.default_rng(2).normal(0, 3, (2, 4, 3)), jnp.float32)
  out = entropy_bottleneck(p, med, y, training=False)
  np.testing.assert_allclose(np.asarray(out.z), np.round(np.asarray(y - med)) + np.asarray(med),
                             atol=1e-5)
  np.testing.assert_allclose(np.asarray(out.bits),
                             -np.log2(np.asarray(out.aux["likelihoods"])).sum(axis=(1, 2)),
                             rtol=1e-5)
  f = jax.jit(lambda v: entropy_bottleneck(p, med, v, key=jax.random.key(0), training=True))
  noisy = f(y)
  assert float(jnp.max(jnp.abs(noisy.z - y))) <= 0.5
  g = jax.grad(lambda v: jnp.sum(f(v).bits))(y)
  assert g.shape == y.shape and bool(jnp.all(jnp.isfinite(g)))
  vb = jax.vmap(lambda v: entropy_bottleneck(p, med, v[None], training=False).bits[0])(y)
  np.testing.assert_allclose(np.asarray(vb), np.asarray(out.bits), rtol=1e-6)
  gc = gaussian_conditional(y, jnp.ones_like(y), training=False)
  np.testing.assert_allclose(np.asarray(gc.bits),
                             -np.log2(np.asarray(gaussian_likelihood(gc.z, jnp.ones_like(y))))
                             .sum(axis=(1, 2)), rtol=1e-5)
  assert quantize_latents(jnp.array([0.4, 1.6]), mode="symbols").tolist() == [0, 2]
  np.testing.assert_allclose(float(bits_per_pixel({"a": jnp.full((2, 4), 0.25)}, 8)), 2.0)
  rd = rate_distortion_loss(jnp.zeros((1, 2, 2, 1)), jnp.full((1, 2, 2, 1), 0.1),
                            {"y": jnp.full((4,), 0.5)}, lmbda=0.01)
  np.testing.assert_allclose(float(rd.loss), 0.01 * 255**2 * 0.01 + 1.0, rtol=1e-5)


def test_errors_name_the_function():
  p = _random_params()
  with pytest.raises(ValueError, match="entropy_bottleneck: y must have 3 channels"):
    entropy_bottleneck(p, jnp.zeros(3), jnp.zeros((2, 4)), training=False)
  with pytest.raises(ValueError, match="entropy_bottleneck: key must be given"):
    entropy_bottleneck(p, jnp.zeros(3), jnp.zeros((2, 3)), training=True)
  with pytest.raises(TypeError, match="factorized_likelihood: params must be a"):
    factorized_likelihood((1, 2), jnp.zeros((2, 3)))


@pytest.mark.slow
def test_fitted_prior_reaches_the_laplace_entropy_and_the_file_its_bits():
  """Training on Laplace(0, 2) with noise: -log2 p of the rounded data within 0.03 bits of
  H(round(Laplace(0, 2))) = 3.4552 bits; the constriction file within 1 % + 64 bits."""
  r = np.random.default_rng(0)
  data = jnp.asarray(r.laplace(0, 2, (20000, 1)), jnp.float32)
  eb = EntropyBottleneck(1, rngs=nnx.Rngs(0))
  opt = nnx.Optimizer(eb, optax.adam(1e-2), wrt=nnx.Param)

  @nnx.jit
  def step(eb, opt, key):
    def loss(m):
      return jnp.mean(m(data, key=key, training=True).bits)
    lval, grads = nnx.value_and_grad(loss)(eb)
    with jax.numpy_dtype_promotion("standard"):  # optax is not strict-promotion clean
      opt.update(eb, grads)
    return lval

  for i in range(500):
    step(eb, opt, jax.random.key(i))
  eb.update_quantiles()
  out = eb(data, training=False)
  mean_bits = float(jnp.mean(out.bits))
  k = np.arange(-80, 81)  # closed-form bin masses of Laplace(0, b=2)
  pk = np.where(k == 0, 1 - np.exp(-0.25), 0.5 * np.exp(-np.abs(k) / 2) * 2 * np.sinh(0.25))
  h_true = float(-np.sum(pk * np.log2(pk)))
  np.testing.assert_allclose(h_true, 3.4552, atol=1e-4)
  assert abs(mean_bits - h_true) < 0.03, mean_bits
  q = np.asarray(eb.quantiles[...])
  tables = build_factorized_tables(eb.params, q)
  strings = factorized_compress(np.asarray(data)[None], q[:, 1], tables)
  model_bits = float(jnp.sum(out.bits))
  assert 8 * len(strings[0]) <= 1.01 * model_bits + 64, (8 * len(strings[0]), model_bits)
