"""mi-benchmark: registration, and the exact critics it feeds to the variational bounds checked
against SciPy densities (the experiment's own numbers come from `bottleneck-jax run`)."""

import math

import jax.numpy as jnp
import numpy as np
from scipy import stats

from bottleneck_jax.experiments import mi_benchmark as M
from bottleneck_jax.experiments.registry import get


def test_registered_with_spec_thresholds():
  exp = get("mi-benchmark")
  assert exp.paper_id == "ib-generalization" and exp.setting == "proxy"
  limits = {e.metric: e.value for e in exp.expectations}
  assert limits["ksg_max_bias_small_n"] == 0.03 and limits["ksg_max_bias_large_n"] == 0.02
  assert exp.defaults["ksg_sizes"] == [1000, 5000] and exp.defaults["ksg_seeds"][0] == 10


def test_gaussian_critic_is_the_log_density_ratio():
  rng = np.random.default_rng(0)
  x, y, rho = rng.normal(size=(5, 2)), rng.normal(size=(5, 2)), 0.7
  s = np.asarray(M._gaussian_log_ratio(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32),
                                       rho), np.float64)
  sd = math.sqrt(1 - rho * rho)
  ref = (stats.norm.logpdf(y[None, :, :], rho * x[:, None, :], sd).sum(-1)
         - stats.norm.logpdf(y[None, :, :]).sum(-1))
  np.testing.assert_allclose(s, ref, atol=1e-4)


def test_uniform_critic_is_the_log_density_ratio():
  eps = 0.25
  x = np.array([[0.1], [0.5], [0.95]])
  y = np.array([[0.0], [0.6], [1.1]])
  s = np.asarray(M._uniform_log_ratio(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32),
                                      eps), np.float64)
  # p(y) of Y = X + U(-eps, eps), X ~ U(0, 1): the trapezoid, by numerical integration
  grid = np.linspace(0.0, 1.0, 200001)
  for i in range(3):
    for j in range(3):
      inside = abs(y[j, 0] - x[i, 0]) < eps
      if not inside:
        assert s[i, j] == -np.inf
        continue
      p_y = np.mean(np.abs(y[j, 0] - grid) < eps) / (2 * eps)
      assert abs(s[i, j] - (math.log(1 / (2 * eps)) - math.log(p_y))) < 1e-3
