"""WINNER / SIREN initialisation: against NumPy re-implementations, closed forms and the test plan's
golden scale values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax.architecture import (
    Siren,
    WinnerSchedule,
    siren_apply,
    siren_init,
    spectral_centroid,
    winner_init,
    winner_scales,
)

SIZES = (1, 128, 128, 1)


def _np_centroid(y, freq_axis, channel_axis):
  """The reference code's statistic, written out with NumPy loops."""
  y = np.moveaxis(np.asarray(y, np.float64), (channel_axis, freq_axis), (-2, -1))
  n_ch = y.shape[-2]
  f = np.fft.rfftfreq(y.shape[-1])
  per_ch = []
  for ch in range(n_ch):
    slices = y[..., ch, :].reshape(-1, y.shape[-1])
    cs = []
    for s in slices:
      mag = np.abs(np.fft.rfft(s))
      cs.append((f * mag).sum() / mag.sum())
    per_ch.append(np.mean(cs))
  return 2 * np.mean(per_ch) / n_ch


def test_centroid_of_a_pure_tone_is_its_frequency():
  n = 512
  t = np.arange(n)
  for k in (3, 40, 200):
    tone = jnp.asarray(np.cos(2 * np.pi * k * t / n), jnp.float32)
    assert abs(float(spectral_centroid(tone)) - 2 * k / n) < 1e-5
    assert abs(float(spectral_centroid(tone[:, None])) - 2 * k / n) < 1e-5


def test_centroid_matches_numpy_with_slices_and_channels():
  r = np.random.default_rng(0)
  y = r.standard_normal((3, 50, 2)).astype(np.float32)  # [rows, n, channels]
  got = spectral_centroid(jnp.asarray(y), freq_axis=1, channel_axis=-1)
  assert abs(float(got) - _np_centroid(y, 1, -1)) < 1e-5
  # an image laid out [C, H, W] with the signal along W
  img = r.standard_normal((3, 6, 20)).astype(np.float32)
  got = spectral_centroid(jnp.asarray(img), freq_axis=-1, channel_axis=0)
  assert abs(float(got) - _np_centroid(img, -1, 0)) < 1e-5
  assert jnp.allclose(jax.jit(lambda a: spectral_centroid(a, freq_axis=-1, channel_axis=0))(
      jnp.asarray(img)), got, atol=1e-6)


def test_winner_scales_golden_values_of_the_spec():
  # the test plan: centroid z = 0.603 -> s0 = 3448.5 +- 0.5, s1 = 1.808 +- 0.002 (audio schedule)
  s = winner_scales(0.6028)
  assert abs(float(s.s0) - 3448.5) < 0.5 and abs(float(s.s1) - 1.808) < 0.002
  # closed form, image constants, two channels: z = psi / 2
  s = winner_scales(jnp.float32(0.8), n_channels=2, schedule=WinnerSchedule.image())
  assert math.isclose(float(s.s0), 50 * (1 - math.exp(-5 * 0.4)), rel_tol=1e-6)
  assert math.isclose(float(s.s1), 0.4 * 0.4, rel_tol=1e-6)
  assert float(winner_scales(0.0).s0) == 0.0


def test_siren_init_follows_the_siren_bounds():
  params = siren_init(jax.random.key(1), SIZES, omega_hidden=30.0)
  assert [p["w"].shape for p in params] == [(1, 128), (128, 128), (128, 1)]
  for i, p in enumerate(params):
    n_in = p["w"].shape[0]
    bound = 1.0 / n_in if i == 0 else math.sqrt(6 / n_in) / 30
    w = np.asarray(p["w"])
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    assert np.abs(np.asarray(p["b"])).max() <= 1 / math.sqrt(n_in)
  w = np.asarray(params[1]["w"]).ravel()  # U(-c, c) has std c / sqrt(3)
  assert abs(w.std() - math.sqrt(6 / 128) / 30 / math.sqrt(3)) < 0.05 * w.std()


def test_winner_noise_has_the_scheduled_std_on_layers_one_and_two_only():
  n = 512
  t = np.arange(n)
  target = jnp.asarray(np.cos(2 * np.pi * 150 * t / n), jnp.float32)  # z = 2 * 150 / 512
  z = 2 * 150 / n
  s0, s1 = 3500 * (1 - math.exp(-7 * z)), 3 * z
  key = jax.random.key(3)
  base = siren_init(key, SIZES)
  win = winner_init(key, SIZES, target)
  d0 = np.asarray(win[0]["w"] - base[0]["w"]).ravel()
  d1 = np.asarray(win[1]["w"] - base[1]["w"]).ravel()
  assert abs(d0.std() - s0 / 30) < 0.15 * s0 / 30  # 128 samples
  assert abs(d1.std() - s1 / 30) < 0.03 * s1 / 30  # 16384 samples
  for a, b in zip(win[2:], base[2:]):
    assert jnp.array_equal(a["w"], b["w"])
  for a, b in zip(win, base):
    assert jnp.array_equal(a["b"], b["b"])


def test_zero_centroid_gives_back_siren_and_a_slow_sine_is_not_zero():
  # a constant target has z = 0 exactly: WINNER's weights are SIREN's
  win, base = winner_init(0, SIZES, jnp.ones((512,))), siren_init(0, SIZES)
  for a, b in zip(win, base):
    assert jnp.array_equal(a["w"], b["w"])
  # the test plan expects a 3-cycle sine to give WINNER == SIREN within 1e-3; it does not: its
  # z = 2 * 3 / 512 is small but s0 = 3500 (1 - exp(-7 z)) ~ 276 (the slope at 0 is 24500)
  t = np.arange(512)
  target = jnp.asarray(np.sin(2 * np.pi * 3 * t / 512), jnp.float32)
  z = float(spectral_centroid(target))
  assert abs(z - 6 / 512) < 1e-5
  assert math.isclose(float(winner_scales(z).s0), 3500 * (1 - math.exp(-7 * z)), rel_tol=1e-5)


def test_siren_apply_matches_numpy_and_the_module():
  params = siren_init(2, SIZES)
  x = np.random.default_rng(0).uniform(-1, 1, (5, 1)).astype(np.float32)
  h = x.astype(np.float64)
  for i, p in enumerate(params[:-1]):
    h = np.sin((30.0 if i == 0 else 20.0) * (h @ np.asarray(p["w"]) + np.asarray(p["b"])))
  ref = h @ np.asarray(params[-1]["w"]) + np.asarray(params[-1]["b"])
  got = siren_apply(params, jnp.asarray(x), omega_hidden=20.0)
  np.testing.assert_allclose(np.asarray(got), ref, atol=1e-4)
  model = Siren(SIZES, omega_hidden=20.0, rngs=nnx.Rngs(params=5))
  np.testing.assert_allclose(np.asarray(model(jnp.asarray(x))),
                             np.asarray(siren_apply(model.params_list(), jnp.asarray(x),
                                                    omega_hidden=20.0)), atol=1e-6)


def test_vmap_and_grad():
  params = siren_init(0, SIZES)
  x = jnp.linspace(-1, 1, 6)[:, None]
  per_row = jax.vmap(lambda r: siren_apply(params, r))(x)
  np.testing.assert_allclose(np.asarray(per_row), np.asarray(siren_apply(params, x)), atol=1e-6)

  @jax.jit
  def f(v):  # the loss as a function of one read-out weight
    q = params[:-1] + [{"w": params[-1]["w"].at[3, 0].set(v), "b": params[-1]["b"]}]
    return jnp.sum(siren_apply(q, x) ** 2)

  g = jax.grad(lambda p: jnp.sum(siren_apply(p, x) ** 2))(params)
  w0, e = params[-1]["w"][3, 0], 1e-2
  fd = float(f(w0 + e) - f(w0 - e)) / (2 * e)  # exact for a quadratic in v
  assert abs(float(g[-1]["w"][3, 0]) - fd) < 1e-3 * max(1.0, abs(fd))


def test_module_with_target_uses_winner_init():
  target = jnp.asarray(np.cos(np.pi * 0.8 * np.arange(512)), jnp.float32)
  m = Siren(SIZES, target=target, rngs=nnx.Rngs(params=0))
  ref = winner_init(nnx.Rngs(params=0).params(), SIZES, target)
  assert jnp.array_equal(m.weights[0][...], ref[0]["w"])


def test_errors():
  y = jnp.ones((8, 1))
  with pytest.raises(ValueError, match="spectral_centroid: signal must have at least 2 samples"):
    spectral_centroid(jnp.ones((1, 3)))
  with pytest.raises(ValueError, match="spectral_centroid: channel_axis must be None or an axis"):
    spectral_centroid(y, freq_axis=0, channel_axis=0)
  with pytest.raises(TypeError, match="spectral_centroid: signal must have a floating dtype"):
    spectral_centroid(jnp.ones((8,), jnp.int32))
  with pytest.raises(ValueError, match=r"siren_init: layer_sizes must list at least"):
    siren_init(0, (1, 2))
  with pytest.raises(ValueError, match=r"siren_init: layer_sizes\[1\] must be >= 1"):
    siren_init(0, (1, 0, 1))
  with pytest.raises(ValueError, match="siren_init: omega_hidden must be > 0"):
    siren_init(0, (1, 4, 1), omega_hidden=0.0)
  with pytest.raises(TypeError, match="winner_scales: schedule must be a WinnerSchedule"):
    winner_scales(0.5, schedule=(3500, 7, 3))
  with pytest.raises(ValueError, match="winner_scales: psi must be >= 0.0"):
    winner_scales(-0.5)
  with pytest.raises(ValueError, match="WinnerSchedule: a must be >= 0.0"):
    WinnerSchedule(1.0, -1.0, 1.0)
  with pytest.raises(ValueError, match="winner_init: signal must have at least 2 samples"):
    winner_init(0, (1, 4, 1), jnp.ones((1, 1)))
  with pytest.raises(ValueError, match="siren_apply: coords must have size 1 on axis -1"):
    siren_apply(siren_init(0, SIZES), jnp.ones((3, 2)))
  with pytest.raises(TypeError, match=r"siren_apply: params\[0\] must be a dict"):
    siren_apply([1, 2], jnp.ones((3, 1)))
