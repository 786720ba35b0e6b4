"""``bottleneck-sampling-toy``: fewer denoiser FLOPs at matched sample quality, exact denoiser.

Paper: Tian et al., "Training-free Diffusion Acceleration with Bottleneck Sampling", 2025,
https://arxiv.org/abs/2503.18940: a high -> low -> high resolution schedule makes FLUX.1-dev up
to 3x and HunyuanVideo up to 2.5x faster at comparable quality, without training.

The toy replaces the pretrained transformer by the *exact* flow-matching velocity of a known
data distribution, so that any loss of quality comes from the schedule alone. Data: a Gaussian
random field on the unit square, ``x0(u, v) = sum_{k, l < K} a_kl cos(pi k u) cos(pi l v)``
with independent ``a_kl ~ N(0, lambda_kl)``, ``lambda_kl ∝ (1 + k^2 + l^2)^-1`` (unit mean
pixel variance), sampled at the cell centres of an ``H x H`` grid: the same field at every
resolution with ``H >= K``. In the orthonormal 2-D DCT-II basis of the grid the field's
coefficients are independent with variances ``e_kl = lambda_kl n_k n_l`` (``n_0 = H``,
``n_k = H/2``) and every other coefficient is 0, so for ``x_t = (1 - t) x0 + t eps`` the exact
velocity ``E[eps - x0 | x_t]`` is the diagonal map
``(t - (1 - t) e) / ((1 - t)^2 e + t^2)`` on the DCT coefficients of ``x_t``, at any resolution.

Sample quality: the Fréchet distance between ``N(0, diag(true e))`` and a Gaussian with the
samples' per-coefficient mean and variance, over all ``H^2`` DCT coefficients at full
resolution (the data's own basis, so this is the FID of the toy), divided by the total data
variance. Schedules: the baseline is the Euler sampler at full resolution with ``steps`` steps
and SD3 shift ``baseline_shift``; the bottleneck schedule is the test plan's
``(1.0, 4, 1.0, 3), (0.5, 12, 0.8, 3), (1.0, 8, 0.6, 6)`` (scale, steps, start level, shift).
Cost: attention-only ``(s^2 T)^2`` per step (:func:`~bottleneck_jax.architecture.sampling_cost`).
Also reported (not judged): a full-resolution sampler with about the bottleneck schedule's cost.

First measurement after declaring the expectations (512 samples, seed 0): cost ratio 0.531
(1.88x), relative Fréchet distance 0.073 for the bottleneck schedule against 0.0096 for the
24-step full-resolution sampler and 0.028 for a 13-step one of equal cost: an honest miss of the
quality expectations. In this Gaussian toy the clean estimate re-noised at a transition is the
posterior mean, whose variance is below the data's (at the first transition, t = 0.8, it is
shrunk a lot), and the later stages do not restore the missing variance of the coarse modes.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import fft as jfft

from bottleneck_jax.experiments.registry import (
    Expectation,
    Experiment,
    Metric,
    Ref,
    RunContext,
    register,
)

PAPER_ID = "bottleneck-sampling"


def field_variances(size: int, modes: int) -> np.ndarray:
  """``[size, size]`` variances of the orthonormal DCT-II coefficients of the toy field on a
  ``size x size`` grid (0 outside the ``modes x modes`` block)."""
  k = np.arange(modes)
  lam = 1.0 / (1.0 + k[:, None] ** 2 + k[None, :] ** 2)
  w = np.where(k == 0, 1.0, 0.5)
  lam = lam / (w[:, None] * w[None, :] * lam).sum()  # unit mean pixel variance
  n = np.where(k == 0, size, size / 2.0)
  e = np.zeros((size, size))
  e[:modes, :modes] = lam * n[:, None] * n[None, :]
  return e


def exact_velocity(modes: int):
  """``v(x, t)`` of the toy field for ``x`` of shape ``[H, H, 1]`` (any ``H >= modes``)."""
  def v(x, t):
    e = jnp.asarray(field_variances(x.shape[0], modes), jnp.float32)
    c = jfft.dctn(x[..., 0], norm="ortho")
    g = (t - (1.0 - t) * e) / ((1.0 - t) ** 2 * e + t * t)
    return jfft.idctn(g * c, norm="ortho")[..., None]
  return v


def frechet_to_truth(samples: np.ndarray, modes: int) -> float:
  """Relative Fréchet distance of the samples' diagonal Gaussian (in the DCT basis) to the
  true one, divided by the total true variance."""
  size = samples.shape[1]
  e = field_variances(size, modes)
  c = np.stack([np.asarray(jfft.dctn(jnp.asarray(s[..., 0]), norm="ortho")) for s in samples])
  mu, var = c.mean(0), c.var(0)
  fd = (mu ** 2).sum() + ((np.sqrt(var) - np.sqrt(e)) ** 2).sum()
  return float(fd / e.sum())


def _sampler(velocity, size, stages, num_samples, seed):
  from bottleneck_jax.architecture import bottleneck_sample

  @jax.jit
  def one(key):
    return bottleneck_sample(velocity, (size, size, 1), stages, key=key)
  keys = jax.random.split(jax.random.key(seed), num_samples)
  return np.asarray(jax.lax.map(one, keys))


def run_toy(ctx: RunContext) -> dict[str, Any]:
  from bottleneck_jax.architecture import Stage, sampling_cost
  config = ctx.config
  size, modes, n = int(config["size"]), int(config["modes"]), int(config["num_samples"])
  velocity = exact_velocity(modes)
  stages = [Stage(float(s), int(k), float(t0), float(a)) for s, k, t0, a in config["stages"]]
  steps = sum(s.num_steps for s in stages)
  base = [Stage(1.0, steps, 1.0, float(config["baseline_shift"]))]
  tokens = size * size
  ratio = sampling_cost(stages, tokens).ratio
  eq_steps = max(1, int(math.ceil(ratio * steps)))
  equal_cost = [Stage(1.0, eq_steps, 1.0, float(config["baseline_shift"]))]
  quality = {}
  for name, st in (("bottleneck", stages), ("baseline", base), ("equal_cost", equal_cost)):
    samples = _sampler(velocity, size, st, n, ctx.seed)
    quality[name] = frechet_to_truth(samples, modes)
    ctx.log(0, schedule=name, steps=sum(s.num_steps for s in st), frechet=quality[name])
  return {"cost_ratio": ratio, "speedup": 1.0 / ratio,
          "frechet_bottleneck": quality["bottleneck"], "frechet_baseline": quality["baseline"],
          "frechet_equal_cost_baseline": quality["equal_cost"], "equal_cost_steps": eq_steps,
          "steps": steps}


BOTTLENECK_SAMPLING_TOY = register(Experiment(
    name="bottleneck-sampling-toy",
    paper_id=PAPER_ID,
    claim=("A high -> low -> high resolution schedule with re-noising and per-stage shifts "
           "needs fewer denoiser FLOPs than full-resolution sampling with the same steps at "
           "comparable sample quality (paper: up to 3x faster on FLUX.1-dev)."),
    setting="proxy",
    departures=(
        "the exact velocity of a Gaussian random field instead of a pretrained transformer",
        "32x32 single-channel samples; quality is the Fréchet distance in the field's own basis "
        "instead of ImageReward / CLIP / human studies",
        "the test plan's stage schedule (the paper's presets were not retrievable)",
        "cost counts attention only (tokens squared), as the paper's speed-up does not",
    ),
    metric="cost_ratio",
    metrics={
        "cost_ratio": Metric("bottleneck cost / full-resolution cost at the same steps", low=0),
        "frechet_bottleneck": Metric("relative Fréchet distance to the data, bottleneck", low=0),
        "frechet_baseline": Metric("relative Fréchet distance, full-resolution sampler", low=0),
        "speedup": Metric("1 / cost_ratio", low=0),
    },
    expectations=(
        Expectation("cost_ratio", "<=", 0.6, reads=("stages",),
                    source="the project's test plan: these stages cost 0.531 of "
                           "the baseline (1.88x)"),
        Expectation("frechet_bottleneck", "<=", Ref("frechet_baseline", offset=0.02),
                    reads=("stages", "num_samples", "baseline_shift"),
                    quick_value=Ref("frechet_baseline", offset=0.05),
                    source="paper abstract: comparable quality; fixed here as at most 0.02 of "
                           "the data variance above the full-resolution sampler"),
        Expectation("frechet_bottleneck", "<=", 0.05, reads=("stages", "num_samples"),
                    quick_value=0.1,
                    source="our choice before measuring: the samples match the data "
                           "distribution to 5 % of its variance"),
    ),
    run=run_toy,
    defaults={"size": 32, "modes": 8, "num_samples": 512, "baseline_shift": 3.0,
              "stages": [[1.0, 4, 1.0, 3.0], [0.5, 12, 0.8, 3.0], [1.0, 8, 0.6, 6.0]]},
    quick={"num_samples": 128},
    paper_value="FLUX.1-dev up to 3x, HunyuanVideo up to 2.5x faster at comparable quality",
))

__all__ = ["BOTTLENECK_SAMPLING_TOY", "exact_velocity", "field_variances", "frechet_to_truth"]
