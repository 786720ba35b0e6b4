"""Bottleneck Sampling: a degenerate schedule is the plain Euler sampler (vs a NumPy loop), an
oracle denoiser recovers its target through the low-resolution stage, the test plan's cost ratio,
shift identities, and errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax.architecture import (
    Stage,
    bottleneck_sample,
    euler_flow_stage,
    flux_mu,
    renoise,
    resize_latent,
    sampling_cost,
    shift_flux,
    shift_sd3,
    stage_timesteps,
)

SPEC_STAGES = [Stage(1.0, 4, 1.0, 3.0), Stage(0.5, 12, 0.8, 3.0), Stage(1.0, 8, 0.6, 6.0)]


def test_shifts_closed_forms():
  t = jnp.linspace(0.0, 1.0, 11)
  np.testing.assert_allclose(np.asarray(shift_sd3(t, 1.0)), np.asarray(t), atol=1e-7)
  for s in (0.5, 3.0):
    y = np.asarray(shift_sd3(t, s))
    assert y[0] == 0 and abs(y[-1] - 1) < 1e-7 and (np.diff(y) > 0).all()
    np.testing.assert_allclose(y, s * np.asarray(t) / (1 + (s - 1) * np.asarray(t)), atol=1e-6)
  np.testing.assert_allclose(np.asarray(shift_flux(t, 1.15)),
                             np.asarray(shift_sd3(t, math.exp(1.15))), atol=1e-6)
  # diffusers FLUX defaults: mu(1024 tokens) = 0.5 + 0.65 * 768 / 3840
  assert math.isclose(flux_mu(1024), 0.5 + 0.65 * 768 / 3840)
  np.testing.assert_allclose(np.asarray(stage_timesteps(0.8, 0.2, 3, shift=2.0)),
                             0.2 + 0.6 * np.array([1.0, 2 * (2 / 3) / (1 + 2 / 3),
                                                   2 * (1 / 3) / (1 + 1 / 3), 0.0]),
                             atol=1e-6)


def test_cost_ratio_of_the_spec_schedule():
  # the test plan: (4 + 8 + 12 / 16) / 24 = 0.531, a 1.88x speed-up
  c = sampling_cost(SPEC_STAGES, 4096)
  assert math.isclose(c.ratio, (4 + 8 + 12 / 16) / 24)
  lin = sampling_cost(SPEC_STAGES, 4096, alpha_attn=0.0, beta_lin=1.0)
  assert math.isclose(lin.ratio, (4 + 8 + 12 / 4) / 24)


def _np_euler(v, x, ts):
  for t, t2 in zip(ts[:-1], ts[1:]):
    x = x + (t2 - t) * v(x, t)
  return x


def test_degenerate_schedule_is_the_plain_euler_sampler():
  # all scales 1, the second stage continues from the current x_t (no re-noising)
  a = jnp.asarray(np.linspace(-1, 1, 8 * 8).reshape(8, 8, 1), jnp.float32)
  vel = lambda x, t: 0.5 * x - a * (1 - t)  # noqa: E731
  stages = [Stage(1.0, 6, 1.0), Stage(1.0, 6, 0.5, renoise=False)]
  run = jax.jit(lambda k: (bottleneck_sample(vel, (8, 8, 1), stages, key=k),
                           bottleneck_sample(vel, (8, 8, 1), [Stage(1.0, 12, 1.0)], key=k)))
  staged, single = run(jax.random.key(0))
  np.testing.assert_allclose(np.asarray(staged), np.asarray(single), atol=1e-6)
  x1 = np.asarray(jax.random.normal(jax.random.fold_in(jax.random.key(0), 0), (8, 8, 1)))
  ref = _np_euler(lambda x, t: 0.5 * x - np.asarray(a) * (1 - t), x1.astype(np.float64),
                  np.linspace(1, 0, 13))
  np.testing.assert_allclose(np.asarray(single), ref, atol=1e-5)


def test_oracle_denoiser_recovers_the_target_through_the_bottleneck():
  # the test plan: a smooth 64x64 image, velocity (x_t - resize(I)) / t (a perfect x0 estimate)
  u = np.linspace(0, 1, 64)
  img = (np.sin(2 * np.pi * u)[:, None] + np.cos(2 * np.pi * 2 * u)[None, :]
         + 0.5 * np.sin(2 * np.pi * (u[:, None] + u[None, :])))[..., None].astype(np.float32)
  target = jnp.asarray(img)

  def vel(x, t):
    return (x - resize_latent(target, x.shape)) / t

  seen = []

  def spy(x, t):
    seen.append(x.shape)
    return vel(x, t)

  out = jax.jit(lambda k: bottleneck_sample(spy, (64, 64, 1), SPEC_STAGES, key=k))(
      jax.random.key(0))
  assert out.shape == (64, 64, 1) and (32, 32, 1) in seen
  assert float(jnp.max(jnp.abs(out - target))) < 1e-3 * float(jnp.max(jnp.abs(target)))


def test_euler_stage_clean_estimate_and_renoise():
  x, x0 = euler_flow_stage(lambda x, t: x - 1.0, jnp.zeros(3), stage_timesteps(1.0, 0.5, 1))
  np.testing.assert_allclose(np.asarray(x), [0.5] * 3)     # 0 + (0.5 - 1)(0 - 1)
  np.testing.assert_allclose(np.asarray(x0), [1.0] * 3)    # 0 - 1 * (0 - 1)
  r = renoise(jnp.zeros((4000,)), 0.5, key=1)
  assert abs(float(jnp.std(r)) - 0.5) < 0.03


def test_errors():
  with pytest.raises(ValueError, match="Stage: scale must be <= 1.0"):
    Stage(2.0, 4, 1.0)
  with pytest.raises(ValueError, match="bottleneck_sample: stages\\[0\\].t_start must be 1.0"):
    bottleneck_sample(lambda x, t: x, (8, 8, 1), [Stage(1.0, 2, 0.9)], key=0)
  with pytest.raises(ValueError, match="bottleneck_sample: the stages' t_start must decrease"):
    bottleneck_sample(lambda x, t: x, (8, 8, 1), [Stage(1.0, 2, 1.0), Stage(1.0, 2, 1.0)],
                      key=0)
  with pytest.raises(ValueError, match="bottleneck_sample: the last stage must run at full"):
    bottleneck_sample(lambda x, t: x, (8, 8, 1), [Stage(1.0, 2, 1.0), Stage(0.5, 2, 0.5)],
                      key=0)
  with pytest.raises(ValueError, match=r"bottleneck_sample: scale 0.5 must map the spatial size 7"):
    bottleneck_sample(lambda x, t: x, (7, 8, 1), SPEC_STAGES, key=0)
  with pytest.raises(ValueError, match="bottleneck_sample: stages\\[1\\].renoise=False needs"):
    bottleneck_sample(lambda x, t: x, (8, 8, 1),
                      [Stage(1.0, 2, 1.0), Stage(0.5, 2, 0.7, renoise=False),
                       Stage(1.0, 2, 0.5)], key=0)
  with pytest.raises(ValueError, match="euler_flow_stage: velocity_fn must return an array"):
    euler_flow_stage(lambda x, t: x[:1], jnp.zeros(3), stage_timesteps(1.0, 0.0, 2))
  with pytest.raises(ValueError, match="stage_timesteps: t_end must be < t_start"):
    stage_timesteps(0.5, 0.5, 3)
  with pytest.raises(ValueError, match="shift_sd3: shift must be > 0"):
    shift_sd3(0.5, 0.0)
  with pytest.raises(ValueError, match="sampling_cost: alpha_attn and beta_lin must not both"):
    sampling_cost(SPEC_STAGES, 16, alpha_attn=0.0)
