"""The architecture experiments: registration (paper ids, settings, expectations as data) and
their measurement helpers against independent references. The runs themselves are long
(``bottleneck-jax run NAME``); ``tests/experiments/test_train_all.py`` covers the training
plumbing of ``winner-siren``."""

import jax.numpy as jnp
import numpy as np

from bottleneck_jax.architecture import spectral_centroid
from bottleneck_jax.experiments import get
from bottleneck_jax.experiments.bottleneck_sampling_toy import exact_velocity, field_variances
from bottleneck_jax.experiments.gpicl_digits import digits_split
from bottleneck_jax.experiments.winner_siren import bandpass_noise

EXPERIMENTS = {"winner-siren": "winner-init", "shc-depth": "shc", "gpicl-digits": "gpicl",
               "bottleneck-sampling-toy": "bottleneck-sampling"}


def test_registered_with_expectations():
  for name, paper in EXPERIMENTS.items():
    exp = get(name)
    assert exp.paper_id == paper and exp.setting == "proxy" and exp.departures
    assert len(exp.expectations) >= 2
  assert get("winner-siren").defaults["num_samples"] == 4096
  assert get("gpicl-digits").defaults["n_tasks"] == 2 ** 14


def test_winner_target_has_the_spec_centroid():
  # the test plan: the band-passed target has centroid z = 0.603 (seed 0)
  y = bandpass_noise(4096, seed=0)
  assert abs(np.abs(y).max() - 1) < 1e-6
  spec = np.abs(np.fft.rfft(y))
  f = np.fft.rfftfreq(4096)
  assert spec[(f < 0.149) | (f > 0.451)].max() < 1e-3 * spec.max()
  assert abs(float(spectral_centroid(jnp.asarray(y))) - 0.603) < 1e-3


def _field_covariance(size, modes):
  """The toy field's pixel covariance from its definition (cosines at the cell centres)."""
  k = np.arange(modes)
  u = (np.arange(size) + 0.5) / size
  c = np.cos(np.pi * k[:, None] * u[None, :])               # [modes, size]
  lam = 1.0 / (1.0 + k[:, None] ** 2 + k[None, :] ** 2)
  w = np.where(k == 0, 1.0, 0.5)
  lam = lam / (w[:, None] * w[None, :] * lam).sum()
  basis = np.einsum("ki,lj->klij", c, c).reshape(modes * modes, size * size)
  return basis.T @ (lam.reshape(-1)[:, None] * basis)


def test_toy_velocity_is_the_exact_posterior_velocity():
  size, modes = 8, 4
  cov = _field_covariance(size, modes)
  assert abs(np.trace(cov) / size ** 2 - 1) < 1e-9  # unit mean pixel variance
  # the DCT variances are the covariance's eigenvalues
  np.testing.assert_allclose(np.sort(field_variances(size, modes).ravel()),
                             np.sort(np.linalg.eigvalsh(cov)), atol=1e-8)
  x = np.random.default_rng(0).standard_normal((size, size))
  v = exact_velocity(modes)
  for t in (0.2, 0.7):
    s = (1 - t) ** 2 * cov + t ** 2 * np.eye(size * size)
    sol = np.linalg.solve(s, x.reshape(-1))
    want = t * sol - (1 - t) * cov @ sol                    # E[eps | x_t] - E[x0 | x_t]
    got = np.asarray(v(jnp.asarray(x[..., None], jnp.float32), jnp.float32(t)))[..., 0]
    np.testing.assert_allclose(got.reshape(-1), want, atol=2e-4 * np.abs(want).max())


def test_gpicl_split_is_five_way_and_normalised():
  d = digits_split(5, 1200)
  assert set(np.unique(d["y_train"])) == set(range(5)) == set(np.unique(d["y_test"]))
  assert d["x_train"].shape[1] == 64 and len(d["x_train"]) + len(d["x_test"]) == 901
  assert np.abs(d["x_train"].mean(0)).max() < 1e-4
