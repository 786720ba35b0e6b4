"""Bottleneck Sampling: high -> low -> high resolution denoising with timestep shifting.

Paper: Ye Tian, Xin Xia, Yuxi Ren, Shanchuan Lin, Xing Wang, Xuefeng Xiao, Yunhai Tong, Ling
Yang, Bin Cui, "Training-free Diffusion Acceleration with Bottleneck Sampling", 2025
(https://arxiv.org/abs/2503.18940); code: tyfeld/Bottleneck-Sampling.

Idea. A diffusion transformer's cost grows with the number of tokens (quadratically in its
attention), but the middle of the denoising trajectory does not need full resolution. Bottleneck
Sampling runs a pretrained denoiser in stages: the first steps at full resolution (global
layout), the middle steps at a lower resolution (cheap), the last steps at full resolution
again (detail). Between stages the current clean estimate is resized and *re-noised* to the
next stage's starting noise level, which removes resizing artefacts, and each stage uses its
own timestep shift (larger for larger resolutions). No training is needed: any denoiser that
accepts several resolutions works.

Equations implemented (rectified-flow convention: ``x_t = (1 - t) x_0 + t eps``, velocity
``v = eps - x_0``, ``t = 1`` pure noise):

- Euler step ``x_{t'} = x_t + (t' - t) v(x_t, t)``; clean estimate ``x0_hat = x_t - t v(x_t, t)``;
- stage ``i`` (scale ``s_i``, ``N_i`` steps, start level ``t_i``, shift ``a_i``) runs from
  ``t_i`` to ``t_{i+1}`` (0 for the last stage) on the timesteps
  ``t_{i+1} + (t_i - t_{i+1}) shift(u, a_i)``, ``u = 1, 1 - 1/N_i, ..., 0``;
- SD3 shift ``shift(u, a) = a u / (1 + (a - 1) u)``; FLUX shift
  ``e^mu / (e^mu + 1/u - 1)`` with ``mu`` linear in the token count (256 -> 0.5, 4096 -> 1.15);
- transition into stage ``i + 1``: ``x = (1 - t_{i+1}) resize(x0_hat) + t_{i+1} eps`` (or, with
  ``renoise=False`` and an unchanged resolution, the current ``x`` is kept);
- cost of a step at scale ``s``: ``alpha (s^2 T)^2 + beta s^2 T`` for ``T`` full-resolution
  tokens (attention + linear layers).

Departures: the paper's stage presets (FLUX.1-dev, HunyuanVideo) were not retrievable, so no
preset is frozen here; :class:`Stage` takes every number explicitly. The clean estimate that is
resized at a transition comes from the last denoiser evaluation of the stage (no extra call).
Resizing uses :func:`jax.image.resize` (anti-aliased when downsampling).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.rng import as_key

ResizeMethod = Literal["nearest", "linear", "cubic", "lanczos3"]
_METHODS = ("nearest", "linear", "cubic", "lanczos3")


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of a bottleneck-sampling schedule.

  Attributes:
    scale: resolution relative to the full one, in ``(0, 1]`` (``scale * size`` must be an
      integer on every spatial axis).
    num_steps: denoiser evaluations of the stage (``>= 1``).
    t_start: the noise level the stage starts from, in ``(0, 1]`` (1 for the first stage);
      strictly decreasing over the stages.
    shift: the SD3 timestep shift of the stage (``> 0``; 1 = no shift).
    renoise: re-noise to ``t_start`` at the transition into this stage (ignored for the first
      stage). ``False`` keeps the current sample, allowed only when the resolution is unchanged.
    method: how the transition resizes the clean estimate into this stage's resolution.
  """

  scale: float
  num_steps: int
  t_start: float
  shift: float = 1.0
  renoise: bool = True
  method: ResizeMethod = "linear"

  def __post_init__(self):
    fn = "Stage"
    V.check_scalar(fn, "scale", self.scale, low=0.0, high=1.0, low_inclusive=False)
    V.check_scalar(fn, "num_steps", self.num_steps, low=1, integer=True)
    V.check_scalar(fn, "t_start", self.t_start, low=0.0, high=1.0, low_inclusive=False)
    V.check_scalar(fn, "shift", self.shift, low=0.0, low_inclusive=False)
    if not math.isfinite(float(self.shift)):
      raise ValueError(f"{fn}: shift must be finite, got {self.shift}")
    if not isinstance(self.renoise, bool):
      raise TypeError(f"{fn}: renoise must be a bool, got {type(self.renoise).__name__}")
    V.check_choice(fn, "method", self.method, _METHODS)


class SamplingCost(NamedTuple):
  """What :func:`sampling_cost` returns.

  Attributes:
    cost: the schedule's cost (in units of ``alpha * T^2``-type FLOPs).
    baseline: the same number of steps at full resolution.
    ratio: ``cost / baseline`` (the speed-up is its inverse).
  """

  cost: float
  baseline: float
  ratio: float


# ------------------------------------------------------------------------------ validation


def _check_t(fn: str, t) -> Array:
  if isinstance(t, bool) or not (isinstance(t, (int, float, np.number)) or hasattr(t, "dtype")):
    raise TypeError(f"{fn}: t must be a float or a floating array, got {type(t).__name__}")
  if hasattr(t, "dtype"):
    V.check_floating(fn, "t", t)
    return jnp.asarray(t)
  V.check_scalar(fn, "t", t, low=0.0, high=1.0)
  return jnp.asarray(t, jnp.float32)


def _check_stages(fn: str, stages) -> tuple[Stage, ...]:
  if isinstance(stages, Stage) or not isinstance(stages, Sequence) or not stages:
    raise TypeError(f"{fn}: stages must be a non-empty sequence of Stage, got "
                    f"{type(stages).__name__}")
  for i, s in enumerate(stages):
    if not isinstance(s, Stage):
      raise TypeError(f"{fn}: stages[{i}] must be a Stage, got {type(s).__name__}")
  if stages[0].t_start != 1.0:
    raise ValueError(f"{fn}: stages[0].t_start must be 1.0 (sampling starts from pure noise), "
                     f"got {stages[0].t_start}")
  for i in range(1, len(stages)):
    if not stages[i].t_start < stages[i - 1].t_start:
      raise ValueError(f"{fn}: the stages' t_start must decrease strictly, got "
                       f"{[s.t_start for s in stages]}")
    if not stages[i].renoise and stages[i].scale != stages[i - 1].scale:
      raise ValueError(f"{fn}: stages[{i}].renoise=False needs the resolution of the stage "
                       f"before it ({stages[i - 1].scale}), got scale {stages[i].scale}")
  if stages[-1].scale != 1.0:
    raise ValueError(f"{fn}: the last stage must run at full resolution (scale 1.0), got "
                     f"{stages[-1].scale}")
  return tuple(stages)


def _stage_shape(fn: str, full_shape, scale: float, axes: tuple[int, ...]) -> tuple[int, ...]:
  shape = list(full_shape)
  for a in axes:
    size = full_shape[a] * scale
    if abs(size - round(size)) > 1e-9 or round(size) < 1:
      raise ValueError(f"{fn}: scale {scale} must map the spatial size {full_shape[a]} (axis "
                       f"{a}) to a whole number >= 1 of pixels, got {size:g}")
    shape[a] = int(round(size))
  return tuple(shape)


# ------------------------------------------------------------------------------ schedules


def shift_sd3(t: Float[Array, "*shape"] | float, shift: float) -> Float[Array, "*shape"]:
  """The SD3 timestep shift ``shift * t / (1 + (shift - 1) t)`` (maps 0 -> 0 and 1 -> 1).

  A shift above 1 spends more steps at high noise (what larger resolutions need).

  Args:
    t: noise levels in ``[0, 1]`` (a float or a floating array).
    shift: ``> 0``; 1 is the identity.

  Returns:
    The shifted levels, same shape (float32 for a Python float).

  Example:
    >>> from bottleneck_jax.architecture import shift_sd3
    >>> round(float(shift_sd3(0.5, 3.0)), 4)
    0.75

  References:
    Esser et al., "Scaling Rectified Flow Transformers for High-Resolution Image Synthesis",
    2024, https://arxiv.org/abs/2403.03206.
  """
  fn = "shift_sd3"
  t = _check_t(fn, t)
  V.check_scalar(fn, "shift", shift, low=0.0, low_inclusive=False, static=True)
  if not math.isfinite(float(shift)):
    raise ValueError(f"{fn}: shift must be finite, got {shift}")
  s = float(shift)
  return (s * t / (1.0 + (s - 1.0) * t)).astype(t.dtype)


def flux_mu(seq_len: int, *, base_shift: float = 0.5, max_shift: float = 1.15,
            base_seq_len: int = 256, max_seq_len: int = 4096) -> float:
  """The resolution-dependent ``mu`` of FLUX: linear in the token count through
  ``(base_seq_len, base_shift)`` and ``(max_seq_len, max_shift)`` (the diffusers defaults).

  Example:
    >>> from bottleneck_jax.architecture import flux_mu
    >>> flux_mu(256), flux_mu(4096)
    (0.5, 1.15)
  """
  fn = "flux_mu"
  V.check_scalar(fn, "seq_len", seq_len, low=1, integer=True)
  V.check_scalar(fn, "base_seq_len", base_seq_len, low=1, integer=True)
  V.check_scalar(fn, "max_seq_len", max_seq_len, low=1, integer=True)
  V.check_scalar(fn, "base_shift", base_shift)
  V.check_scalar(fn, "max_shift", max_shift)
  if max_seq_len == base_seq_len:
    raise ValueError(f"{fn}: max_seq_len must differ from base_seq_len, got both {max_seq_len}")
  slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
  return float(base_shift + slope * (seq_len - base_seq_len))


def shift_flux(t: Float[Array, "*shape"] | float, mu: float) -> Float[Array, "*shape"]:
  """The FLUX timestep shift ``e^mu / (e^mu + 1/t - 1)`` (maps 0 -> 0 and 1 -> 1); equal to
  :func:`shift_sd3` with ``shift = e^mu``.

  Example:
    >>> import math
    >>> from bottleneck_jax.architecture import shift_flux, shift_sd3
    >>> round(float(shift_flux(0.3, 1.0)), 6) == round(float(shift_sd3(0.3, math.e)), 6)
    True
  """
  fn = "shift_flux"
  t = _check_t(fn, t)
  V.check_scalar(fn, "mu", mu, static=True)
  if not math.isfinite(float(mu)) or abs(float(mu)) > 80:
    raise ValueError(f"{fn}: mu must be finite with |mu| <= 80, got {mu}")
  e = math.exp(float(mu))
  safe = jnp.where(t > 0, t, 1.0)
  return jnp.where(t > 0, e / (e + 1.0 / safe - 1.0), 0.0).astype(t.dtype)


def stage_timesteps(t_start: float, t_end: float, num_steps: int, *, shift: float = 1.0
                    ) -> Float[Array, "n_plus_1"]:
  """The ``num_steps + 1`` decreasing noise levels of one stage, from ``t_start`` to ``t_end``.

  ``t_end + (t_start - t_end) shift_sd3(u, shift)`` for ``u = 1, 1 - 1/n, ..., 0``.

  Example:
    >>> from bottleneck_jax.architecture import stage_timesteps
    >>> stage_timesteps(1.0, 0.0, 4).tolist()
    [1.0, 0.75, 0.5, 0.25, 0.0]
  """
  fn = "stage_timesteps"
  V.check_scalar(fn, "t_start", t_start, low=0.0, high=1.0)
  V.check_scalar(fn, "t_end", t_end, low=0.0, high=1.0)
  V.check_scalar(fn, "num_steps", num_steps, low=1, integer=True)
  if not t_end < t_start:
    raise ValueError(f"{fn}: t_end must be < t_start, got t_start={t_start}, t_end={t_end}")
  V.check_scalar(fn, "shift", shift, low=0.0, low_inclusive=False, static=True)
  if not math.isfinite(float(shift)):
    raise ValueError(f"{fn}: shift must be finite, got {shift}")
  u = jnp.linspace(1.0, 0.0, int(num_steps) + 1, dtype=jnp.float32)
  return float(t_end) + (float(t_start) - float(t_end)) * shift_sd3(u, shift)


# ------------------------------------------------------------------------------ building blocks


def renoise(x0: Float[Array, "*shape"], t: float, *, key) -> Float[Array, "*shape"]:
  """``(1 - t) x0 + t eps``, ``eps ~ N(0, I)``: a clean estimate taken back to noise level ``t``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import renoise
    >>> renoise(jnp.ones((2, 3)), 0.0, key=0).tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
  """
  fn = "renoise"
  V.check_floating(fn, "x0", x0)
  V.check_scalar(fn, "t", t, low=0.0, high=1.0)
  x0 = jnp.asarray(x0)
  key = as_key(key, fn=fn)
  eps = jax.random.normal(key, jnp.shape(x0), x0.dtype)
  t = jnp.asarray(t, x0.dtype)
  return (1 - t) * x0 + t * eps


def resize_latent(x: Float[Array, "*shape"], shape: Sequence[int], *,
                  method: ResizeMethod = "linear") -> Float[Array, "*new_shape"]:
  """Resizes a latent to ``shape`` (same rank) with :func:`jax.image.resize`, anti-aliased.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import resize_latent
    >>> resize_latent(jnp.ones((8, 8, 4)), (4, 4, 4)).shape
    (4, 4, 4)
  """
  fn = "resize_latent"
  V.check_floating(fn, "x", x)
  if not isinstance(shape, Sequence) or len(shape) != np.ndim(x):
    raise ValueError(f"{fn}: shape must be a sequence of {np.ndim(x)} sizes (x's rank), got "
                     f"{shape!r}")
  for i, s in enumerate(shape):
    V.check_scalar(fn, f"shape[{i}]", s, low=1, integer=True)
  V.check_choice(fn, "method", method, _METHODS)
  if min(np.shape(x), default=1) < 1:
    raise ValueError(f"{fn}: x must have non-empty axes, got {V.describe(x)}")
  if tuple(shape) == tuple(x.shape):
    return x
  return jax.image.resize(x, tuple(int(s) for s in shape), method=method, antialias=True)


def euler_flow_stage(velocity_fn: Callable[[Array, Array], Array], x: Float[Array, "*shape"],
                     timesteps: Float[Array, "n_plus_1"]
                     ) -> tuple[Float[Array, "*shape"], Float[Array, "*shape"]]:
  """Euler integration of ``dx/dt = v(x, t)`` over decreasing ``timesteps``.

  ``x_{k+1} = x_k + (t_{k+1} - t_k) v(x_k, t_k)``, ``len(timesteps) - 1`` denoiser calls (a
  ``lax.fori_loop``). Also returns the clean estimate ``x_k - t_k v(x_k, t_k)`` of the last call.

  Args:
    velocity_fn: ``v(x, t)`` with ``x`` of ``x``'s shape and ``t`` a float32 scalar.
    x: the sample at ``timesteps[0]``.
    timesteps: ``[n + 1]`` noise levels, ``n >= 1``.

  Returns:
    ``(x at timesteps[-1], x0_hat of the last evaluation)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import euler_flow_stage, stage_timesteps
    >>> target = jnp.full((3,), 2.0)
    >>> x, x0 = euler_flow_stage(lambda x, t: (x - target) / t, jnp.zeros(3),
    ...                          stage_timesteps(1.0, 0.0, 4))
    >>> x.tolist()
    [2.0, 2.0, 2.0]
  """
  fn = "euler_flow_stage"
  if not callable(velocity_fn):
    raise TypeError(f"{fn}: velocity_fn must be callable, got {type(velocity_fn).__name__}")
  V.check_floating(fn, "x", x)
  V.check_rank(fn, "timesteps", timesteps, 1)
  V.check_floating(fn, "timesteps", timesteps)
  if timesteps.shape[0] < 2:
    raise ValueError(f"{fn}: timesteps must hold at least 2 levels (one step), got "
                     f"{V.describe(timesteps)}")
  ts = jnp.asarray(timesteps, jnp.float32)

  def call(x, t):
    v = velocity_fn(x, t)
    if not hasattr(v, "shape") or tuple(v.shape) != tuple(x.shape):
      raise ValueError(f"{fn}: velocity_fn must return an array of x's shape "
                       f"{list(x.shape)}, got {V.describe(v)}")
    return v.astype(x.dtype)

  def body(k, carry):
    x, _ = carry
    t, t_next = ts[k], ts[k + 1]
    v = call(x, t)
    return x + (t_next - t).astype(x.dtype) * v, x - t.astype(x.dtype) * v

  return jax.lax.fori_loop(0, ts.shape[0] - 1, body, (x, jnp.zeros_like(x)))


def bottleneck_sample(velocity_fn: Callable[[Array, Array], Array], full_shape: Sequence[int],
                      stages: Sequence[Stage], *, key, spatial_axes: Sequence[int] = (-3, -2),
                      dtype=jnp.float32) -> Float[Array, "*full_shape"]:
  """Samples with a bottleneck schedule: stages at their resolutions, resize and re-noise
  between them.

  Stage ``i`` integrates from ``stages[i].t_start`` to ``stages[i + 1].t_start`` (0 after the
  last) with :func:`euler_flow_stage` at resolution ``scale_i`` on ``spatial_axes``; the
  transition resizes the clean estimate and re-noises it (:func:`renoise`). One stage at scale
  1 is the ordinary Euler sampler.

  Args:
    velocity_fn: ``v(x, t)`` for ``x`` of any stage's shape (the denoiser must accept every
      resolution of the schedule), ``t`` a float32 scalar.
    full_shape: the shape of a sample at full resolution.
    stages: the schedule (see :class:`Stage`): the first starts at ``t = 1``, the last runs at
      scale 1.
    key: a ``jax.random.key`` (or an int seed): initial noise and re-noising.
    spatial_axes: the axes that are resized.
    dtype: the sample's floating dtype.

  Returns:
    The sample, ``full_shape``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.architecture import Stage, bottleneck_sample
    >>> stages = [Stage(1.0, 2, 1.0), Stage(0.5, 4, 0.8), Stage(1.0, 2, 0.5)]
    >>> x = bottleneck_sample(lambda x, t: x, (8, 8, 1), stages, key=0)
    >>> x.shape
    (8, 8, 1)

  References:
    Tian et al., "Training-free Diffusion Acceleration with Bottleneck Sampling", 2025,
    https://arxiv.org/abs/2503.18940.
  """
  fn = "bottleneck_sample"
  if not callable(velocity_fn):
    raise TypeError(f"{fn}: velocity_fn must be callable, got {type(velocity_fn).__name__}")
  if not isinstance(full_shape, Sequence) or not full_shape:
    raise TypeError(f"{fn}: full_shape must be a non-empty sequence of ints, got "
                    f"{full_shape!r}")
  for i, s in enumerate(full_shape):
    V.check_scalar(fn, f"full_shape[{i}]", s, low=1, integer=True)
  full_shape = tuple(int(s) for s in full_shape)
  nd = len(full_shape)
  if (isinstance(spatial_axes, (str, bytes)) or not isinstance(spatial_axes, Sequence)
      or not spatial_axes):
    raise TypeError(f"{fn}: spatial_axes must be a non-empty sequence of axes, got "
                    f"{spatial_axes!r}")
  axes = []
  for a in spatial_axes:
    if not isinstance(a, int) or isinstance(a, bool) or not -nd <= a < nd:
      raise ValueError(f"{fn}: spatial_axes must be axes of the rank-{nd} full_shape, got "
                       f"{list(spatial_axes)}")
    axes.append(a % nd)
  if len(set(axes)) != len(axes):
    raise ValueError(f"{fn}: spatial_axes must be distinct, got {list(spatial_axes)}")
  if not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
    raise TypeError(f"{fn}: dtype must be a floating dtype, got {jnp.dtype(dtype).name}")
  stages = _check_stages(fn, stages)
  shapes = [_stage_shape(fn, full_shape, s.scale, tuple(axes)) for s in stages]
  key = as_key(key, fn=fn)
  x = jax.random.normal(jax.random.fold_in(key, 0), shapes[0], dtype)
  x0_hat = x
  for i, stage in enumerate(stages):
    if i > 0 and stage.renoise:
      x = renoise(resize_latent(x0_hat, shapes[i], method=stage.method), stage.t_start,
                  key=jax.random.fold_in(key, i))
    t_end = stages[i + 1].t_start if i + 1 < len(stages) else 0.0
    ts = stage_timesteps(stage.t_start, t_end, stage.num_steps, shift=stage.shift)
    x, x0_hat = euler_flow_stage(velocity_fn, x, ts)
  return x


def sampling_cost(stages: Sequence[Stage], tokens_full: int, *, alpha_attn: float = 1.0,
                  beta_lin: float = 0.0) -> SamplingCost:
  """The denoiser cost of a schedule relative to the same number of steps at full resolution.

  A step at scale ``s`` on ``T`` full-resolution tokens costs ``alpha (s^2 T)^2 + beta s^2 T``
  (``s^2`` for two spatial axes).

  Example:
    >>> from bottleneck_jax.architecture import Stage, sampling_cost
    >>> st = [Stage(1.0, 4, 1.0, 3.0), Stage(0.5, 12, 0.8, 3.0), Stage(1.0, 8, 0.6, 6.0)]
    >>> round(sampling_cost(st, 4096).ratio, 3)
    0.531
  """
  fn = "sampling_cost"
  if isinstance(stages, Stage) or not isinstance(stages, Sequence) or not stages:
    raise TypeError(f"{fn}: stages must be a non-empty sequence of Stage, got "
                    f"{type(stages).__name__}")
  for i, s in enumerate(stages):
    if not isinstance(s, Stage):
      raise TypeError(f"{fn}: stages[{i}] must be a Stage, got {type(s).__name__}")
  V.check_scalar(fn, "tokens_full", tokens_full, low=1, integer=True)
  V.check_scalar(fn, "alpha_attn", alpha_attn, low=0.0)
  V.check_scalar(fn, "beta_lin", beta_lin, low=0.0)
  if alpha_attn == 0 and beta_lin == 0:
    raise ValueError(f"{fn}: alpha_attn and beta_lin must not both be 0")
  tokens = float(tokens_full)

  def step(scale):
    n = scale * scale * tokens
    return float(alpha_attn) * n * n + float(beta_lin) * n

  cost = sum(s.num_steps * step(s.scale) for s in stages)
  base = sum(s.num_steps for s in stages) * step(1.0)
  return SamplingCost(cost=cost, baseline=base, ratio=cost / base)
