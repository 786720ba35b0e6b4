"""Learned entropy models: the factorised prior ("entropy bottleneck") and the Gaussian conditional.

Papers: Johannes Ballé, David Minnen, Saurabh Singh, Sung Jin Hwang, Nick Johnston, "Variational
image compression with a scale hyperprior", ICLR 2018 (https://arxiv.org/abs/1802.01436), appendix
6.1 (the non-parametric factorised density); Ballé, Laparra, Simoncelli, "End-to-end optimized
image compression", ICLR 2017 (additive uniform noise as a differentiable proxy of rounding).

Factorised prior. Every channel ``c`` has its own monotone cumulative MLP ``f_c`` (filters
``(1, f_1, ..., f_K, 1)``), the logit of a CDF:

.. math::
  h \\leftarrow \\operatorname{softplus}(H_i) h + b_i,\\quad
  h \\leftarrow h + \\tanh(a_i) \\odot \\tanh(h)\\ (i < K),\\qquad F_c(y) = \\sigma(f_c(y)),

and the likelihood of a quantised (or noisy) value is the mass of the unit bin around it,
``p(y) = sigma(f(y + 1/2)) - sigma(f(y - 1/2))``, computed in the cancellation-free form
``|sigma(s f(y+1/2)) - sigma(s f(y-1/2))|`` with ``s = -sign(f(y+1/2) + f(y-1/2))`` (``s = 1``
where the sum is 0: the older CompressAI/TFC code had ``s = 0`` there, a zero likelihood) and bounded
below by ``1e-9`` (:func:`lower_bound`, whose gradient passes below the bound only when it points
up). Training adds ``U(-1/2, 1/2)`` noise; evaluation rounds around the per-channel median
(``round(y - m) + m``). The tail quantiles ``(q_lo, m, q_hi)`` solve ``f_c(q) = (-t, 0, t)`` with
``t = log(2/tau - 1)``; :func:`fit_quantiles` finds them by bisection (CompressAI's
``update(update_quantiles=True)``) and :func:`quantiles_aux_loss` is CompressAI's auxiliary loss.

Gaussian conditional: ``p(y | mu, sigma) = Phi((1/2 - v)/sigma) - Phi((-1/2 - v)/sigma)``,
``v = |y - mu|``, ``sigma >= 0.11``.

Bits are ``-log2 p`` summed per example (the :class:`~bottleneck_jax.core.BottleneckOutput`
protocol); :func:`bits_per_pixel` divides by the pixels of the *input* image, as CompressAI does.

The parameters use CompressAI's layout and initialisation (matrices ``[C, f_out, f_in]``,
biases and factors ``[C, f_out, 1]``, ``H_i = log(expm1(1 / scale / f_out))`` with
``scale = init_scale^(1/(K+1))``, ``b ~ U(-1/2, 1/2)``, ``a = 0``), so the numbers equal
CompressAI's ``EntropyBottleneck`` at the same parameters. The integer CDF tables and the range
coder are host-side, in :mod:`bottleneck_jax.compression` (``build_factorized_tables``,
``encode_symbols``).

Departures: channels are the *last* axis (CompressAI: axis 1). The quantiles are not trained by
a second optimiser by default: :class:`EntropyBottleneck` keeps them in a non-trainable variable
that :meth:`EntropyBottleneck.update_quantiles` refits by bisection; the auxiliary loss is still
available for users who prefer CompressAI's training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.rng import as_key
from bottleneck_jax.core.types import BottleneckOutput

_LN2 = math.log(2.0)


class FactorizedPriorParams(NamedTuple):
  """Parameters of the per-channel cumulative MLPs (CompressAI's layout).

  ``matrices[i]``: ``[C, f_{i+1}, f_i]``; ``biases[i]``: ``[C, f_{i+1}, 1]`` (``K + 1`` each);
  ``factors[i]``: ``[C, f_{i+1}, 1]`` (``K``).
  """
  matrices: tuple
  biases: tuple
  factors: tuple


# --------------------------------------------------------------------------------------------
# lower bound with CompressAI's gradient


@jax.custom_vjp
def _lower_bound(x, bound):
  return jnp.maximum(x, bound)


def _lb_fwd(x, bound):
  return jnp.maximum(x, bound), (x, bound)


def _lb_bwd(res, g):
  x, bound = res
  pass_through = (x >= bound) | (g < 0)
  return jnp.where(pass_through, g, jnp.zeros_like(g)), jnp.zeros_like(bound)


_lower_bound.defvjp(_lb_fwd, _lb_bwd)


def lower_bound(x: Float[Array, "*shape"], bound: float) -> Float[Array, "*shape"]:
  """``max(x, bound)`` whose gradient still flows below the bound when it points upwards.

  The gradient is passed through where ``x >= bound`` or where the incoming gradient is
  negative (descent would increase ``x`` back towards the bound), as CompressAI's
  ``LowerBound``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.compression import lower_bound
    >>> float(jax.grad(lambda v: -lower_bound(v, 1.0))(0.5))    # points up: passes
    -1.0
  """
  fn = "lower_bound"
  V.check_floating(fn, "x", x)
  V.check_scalar(fn, "bound", bound)
  x = jnp.asarray(x)
  return _lower_bound(x, jnp.asarray(bound, x.dtype))


# --------------------------------------------------------------------------------------------
# factorised prior


def _check_filters(fn: str, filters) -> tuple[int, ...]:
  if (not isinstance(filters, (tuple, list)) or not filters
      or not all(isinstance(f, int) and not isinstance(f, bool) and f >= 1 for f in filters)):
    raise ValueError(f"{fn}: filters must be a non-empty sequence of positive ints, got "
                     f"{filters!r}")
  return tuple(filters)


def init_factorized_prior(key, channels: int, *, filters: Sequence[int] = (3, 3, 3, 3),
                          init_scale: float = 10.0) -> FactorizedPriorParams:
  """CompressAI's initialisation of the factorised prior for ``channels`` channels.

  Args:
    key: a ``jax.random.key`` (or int seed) for the biases ``U(-1/2, 1/2)``.
    channels: ``C >= 1``.
    filters: hidden widths ``(f_1, ..., f_K)``.
    init_scale: the initial scale of the density (the quantiles start at ``+-init_scale``).

  Returns:
    :class:`FactorizedPriorParams` (float32).

  Example:
    >>> from bottleneck_jax.compression import init_factorized_prior
    >>> p = init_factorized_prior(0, 4)
    >>> [m.shape for m in p.matrices]
    [(4, 3, 1), (4, 3, 3), (4, 3, 3), (4, 3, 3), (4, 1, 3)]
  """
  fn = "init_factorized_prior"
  key = as_key(key, fn=fn)
  V.check_scalar(fn, "channels", channels, low=1, integer=True, static=True)
  V.check_scalar(fn, "init_scale", init_scale, low=0.0, low_inclusive=False, high=1e6,
                 static=True)
  filters = _check_filters(fn, filters)
  dims = (1, *filters, 1)
  scale = float(init_scale) ** (1.0 / (len(filters) + 1))
  keys = jax.random.split(key, len(dims) - 1)
  mats, biases, factors = [], [], []
  for i in range(len(dims) - 1):
    init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
    mats.append(jnp.full((channels, dims[i + 1], dims[i]), init, jnp.float32))
    biases.append(jax.random.uniform(keys[i], (channels, dims[i + 1], 1), jnp.float32,
                                     -0.5, 0.5))
    if i < len(dims) - 2:
      factors.append(jnp.zeros((channels, dims[i + 1], 1), jnp.float32))
  return FactorizedPriorParams(tuple(mats), tuple(biases), tuple(factors))


def _check_params(fn: str, params) -> int:
  if not isinstance(params, FactorizedPriorParams):
    raise TypeError(f"{fn}: params must be a FactorizedPriorParams, got "
                    f"{type(params).__name__}")
  mats = params.matrices
  if (not mats or len(params.biases) != len(mats) or len(params.factors) != len(mats) - 1):
    raise ValueError(f"{fn}: params must have K+1 matrices and biases and K factors, got "
                     f"{len(mats)}, {len(params.biases)}, {len(params.factors)}")
  for group in (mats, params.biases, params.factors):
    for a in group:
      V.check_floating(fn, "params", a)
      V.check_rank(fn, "params", a, 3)
  return mats[0].shape[0]


def _logits(params: FactorizedPriorParams, y):
  """``f_c(y)`` for ``y`` of shape ``[..., C]`` (any float dtype; computed in it)."""
  h = y[..., None]                                          # [..., C, 1]
  k = len(params.factors)
  for i in range(k + 1):
    m = jax.nn.softplus(params.matrices[i]).astype(y.dtype)   # [C, fo, fi]
    h = jnp.einsum("cof,...cf->...co", m, h, precision=jax.lax.Precision.HIGHEST)
    h = h + params.biases[i][..., 0].astype(y.dtype)
    if i < k:
      h = h + jnp.tanh(params.factors[i][..., 0].astype(y.dtype)) * jnp.tanh(h)
  return h[..., 0]


def _check_y(fn: str, arg: str, y, channels: int, min_rank: int = 1) -> None:
  V.check_floating(fn, arg, y)
  V.check_rank(fn, arg, y, min_rank=min_rank)
  if y.shape[-1] != channels:
    raise ValueError(f"{fn}: {arg} must have {channels} channels on its last axis (the prior's "
                     f"channels), got shape {list(y.shape)}")


def factorized_logits_cdf(params: FactorizedPriorParams,
                          y: Float[Array, "*batch c"]) -> Float[Array, "*batch c"]:
  """The logit of the per-channel CDF, ``f_c(y)``, channels on the last axis.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import init_factorized_prior, factorized_logits_cdf
    >>> p = init_factorized_prior(0, 2)
    >>> factorized_logits_cdf(p, jnp.zeros((5, 2))).shape
    (5, 2)
  """
  fn = "factorized_logits_cdf"
  c = _check_params(fn, params)
  _check_y(fn, "y", y, c)
  return _logits(params, y)


def _likelihood(params, y_hat, likelihood_bound):
  lower = _logits(params, y_hat - 0.5)
  upper = _logits(params, y_hat + 0.5)
  # s = -sign(lower + upper), with s = 1 at 0 (where jnp.sign gives 0 and p would vanish)
  sign = jax.lax.stop_gradient(jnp.where(lower + upper > 0, -1.0, 1.0).astype(lower.dtype))
  p = jnp.abs(jax.nn.sigmoid(sign * upper) - jax.nn.sigmoid(sign * lower))
  if likelihood_bound > 0:
    p = _lower_bound(p, jnp.asarray(likelihood_bound, p.dtype))
  return p


def factorized_likelihood(params: FactorizedPriorParams, y_hat: Float[Array, "*batch c"], *,
                          likelihood_bound: float = 1e-9) -> Float[Array, "*batch c"]:
  """``p(y_hat) = sigma(f(y_hat + 1/2)) - sigma(f(y_hat - 1/2))``, bounded below.

  Args:
    params: the prior.
    y_hat: quantised (or noisy) latents, channels last.
    likelihood_bound: the lower bound of the likelihood (``0`` disables it).

  Returns:
    The per-element likelihoods, shape of ``y_hat``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import init_factorized_prior, factorized_likelihood
    >>> p = init_factorized_prior(0, 1)
    >>> bool(factorized_likelihood(p, jnp.zeros((1, 1)))[0, 0] > 0)
    True
  """
  fn = "factorized_likelihood"
  c = _check_params(fn, params)
  _check_y(fn, "y_hat", y_hat, c)
  V.check_scalar(fn, "likelihood_bound", likelihood_bound, low=0.0, high=1.0, static=True)
  return _likelihood(params, y_hat, float(likelihood_bound))


def quantize_latents(y: Float[Array, "*batch c"], *,
                     mode: Literal["noise", "dequantize", "symbols"], key=None,
                     offset: Float[Array, "c"] | None = None) -> Array:
  """The three quantisation modes of an entropy model (CompressAI's ``EntropyModel.quantize``).

  ``"noise"``: ``y + u``, ``u ~ U(-1/2, 1/2)`` (training); ``"dequantize"``:
  ``round(y - offset) + offset``; ``"symbols"``: ``round(y - offset)`` as int32.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import quantize_latents
    >>> quantize_latents(jnp.array([0.4, 1.6]), mode="symbols")
    Array([0, 2], dtype=int32)
  """
  fn = "quantize_latents"
  V.check_floating(fn, "y", y)
  y = jnp.asarray(y)
  V.check_choice(fn, "mode", mode, ("noise", "dequantize", "symbols"))
  if mode == "noise":
    if key is None:
      raise ValueError(f"{fn}: key must be given for mode='noise', got None")
    key = as_key(key, fn=fn)
    return y + jax.random.uniform(key, y.shape, y.dtype, -0.5, 0.5)
  if offset is not None:
    V.check_floating(fn, "offset", offset)
    V.check_rank(fn, "offset", offset, (0, 1))
    offset = jnp.asarray(offset)
    if offset.ndim == 1 and (y.ndim == 0 or offset.shape[0] != y.shape[-1]):
      raise ValueError(f"{fn}: offset must have one value per channel (the last axis of y), "
                       f"got {V.describe(offset)} for y {V.describe(y)}")
    offset = jnp.asarray(offset).astype(y.dtype)
    q = jnp.round(y - offset)
  else:
    q = jnp.round(y)
  if mode == "symbols":
    return q.astype(jnp.int32)
  return q + offset if offset is not None else q


def _check_batched(fn: str, y) -> None:
  if y.ndim < 2 or y.shape[0] == 0:
    raise ValueError(f"{fn}: y must have shape [batch, ..., C] with a non-empty batch, got "
                     f"{V.describe(y)}")


def _per_example_bits(p):
  return -jnp.sum(jnp.log(p).reshape(p.shape[0], -1), axis=-1) / _LN2


def entropy_bottleneck(params: FactorizedPriorParams, medians: Float[Array, "c"],
                       y: Float[Array, "batch *rest c"], *, key=None, training: bool,
                       likelihood_bound: float = 1e-9) -> BottleneckOutput:
  """The factorised-prior entropy bottleneck as a function.

  Training: ``y_hat = y + U(-1/2, 1/2)``; evaluation: ``y_hat = round(y - m) + m`` with the
  per-channel medians ``m``.

  Args:
    params: the prior.
    medians: ``[C]``, the per-channel medians (``fit_quantiles(params)[:, 1]``).
    y: latents ``[B, ..., C]``.
    key: randomness of the training noise (required when ``training``).
    training: noise (``True``) or rounding (``False``).
    likelihood_bound: lower bound of the likelihoods.

  Returns:
    :class:`~bottleneck_jax.core.BottleneckOutput`: ``z = y_hat``; ``loss = 0``; ``bits``:
    ``sum -log2 p(y_hat)`` per example ``[B]``; ``aux = {"likelihoods": p}``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import init_factorized_prior, entropy_bottleneck
    >>> p = init_factorized_prior(0, 3)
    >>> out = entropy_bottleneck(p, jnp.zeros(3), jnp.ones((2, 4, 4, 3)), training=False)
    >>> out.bits.shape
    (2,)
  """
  fn = "entropy_bottleneck"
  c = _check_params(fn, params)
  _check_y(fn, "y", y, c)
  _check_batched(fn, y)
  V.check_floating(fn, "medians", medians)
  V.check_shape(fn, "medians", medians, (c,))
  V.check_scalar(fn, "likelihood_bound", likelihood_bound, low=0.0, high=1.0, static=True)
  if not isinstance(training, bool):
    raise TypeError(f"{fn}: training must be a bool, got {type(training).__name__}")
  if training:
    if key is None:
      raise ValueError(f"{fn}: key must be given when training (the noise), got None")
    y_hat = quantize_latents(y, mode="noise", key=as_key(key, fn=fn))
  else:
    y_hat = quantize_latents(y, mode="dequantize", offset=medians.astype(y.dtype))
  p = _likelihood(params, y_hat, float(likelihood_bound))
  return BottleneckOutput(z=y_hat, loss=jnp.zeros((), y.dtype), bits=_per_example_bits(p),
                          aux={"likelihoods": p})


def _targets(tail_mass: float) -> np.ndarray:
  t = math.log(2.0 / tail_mass - 1.0)
  return np.array([-t, 0.0, t])


def quantiles_aux_loss(params: FactorizedPriorParams, quantiles: Float[Array, "c 3"], *,
                       tail_mass: float = 1e-9) -> Float[Array, ""]:
  """CompressAI's auxiliary loss ``sum_c sum_j |f_c(q_cj) - t_j|`` (gradient to the quantiles).

  ``t = (-log(2/tau - 1), 0, log(2/tau - 1))``; the MLP receives no gradient.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import init_factorized_prior, quantiles_aux_loss
    >>> p = init_factorized_prior(0, 2)
    >>> q = jnp.tile(jnp.array([-10.0, 0.0, 10.0]), (2, 1))
    >>> quantiles_aux_loss(p, q).shape
    ()
  """
  fn = "quantiles_aux_loss"
  c = _check_params(fn, params)
  V.check_floating(fn, "quantiles", quantiles)
  V.check_shape(fn, "quantiles", quantiles, (c, 3))
  V.check_scalar(fn, "tail_mass", tail_mass, low=0.0, high=1.0, low_inclusive=False,
                 high_inclusive=False, static=True)
  params = jax.lax.stop_gradient(params)
  logits = _logits(params, quantiles.T)                        # [3, C]
  t = jnp.asarray(_targets(float(tail_mass)), logits.dtype)[:, None]
  return jnp.sum(jnp.abs(logits - t))


def fit_quantiles(params: FactorizedPriorParams, *, tail_mass: float = 1e-9,
                  search_radius: float = 1e5, iterations: int = 60) -> Float[Array, "c 3"]:
  """The quantiles ``(q_lo, median, q_hi)`` per channel by bisection on the monotone ``f_c``.

  Solves ``f_c(q) = -t, 0, t`` with ``t = log(2/tau - 1)`` inside ``[-R, R]``.

  Returns:
    ``[C, 3]`` (float32).

  Example:
    >>> from bottleneck_jax.compression import init_factorized_prior, fit_quantiles
    >>> fit_quantiles(init_factorized_prior(0, 2)).shape
    (2, 3)
  """
  fn = "fit_quantiles"
  c = _check_params(fn, params)
  V.check_scalar(fn, "tail_mass", tail_mass, low=0.0, high=1.0, low_inclusive=False,
                 high_inclusive=False, static=True)
  V.check_scalar(fn, "search_radius", search_radius, low=0.0, low_inclusive=False, high=1e30,
                 static=True)
  V.check_scalar(fn, "iterations", iterations, low=1, high=1000, integer=True, static=True)
  return _fit_quantiles(params, float(tail_mass), float(search_radius), int(iterations), c)


def _fit_quantiles(params, tail_mass, radius, iterations, c):
  dtype = params.matrices[0].dtype
  t = jnp.asarray(_targets(tail_mass), dtype)[:, None] * jnp.ones((1, c), dtype)
  lo = jnp.full((3, c), -radius, dtype)
  hi = jnp.full((3, c), radius, dtype)

  def body(_, bounds):
    lo, hi = bounds
    mid = 0.5 * (lo + hi)
    below = _logits(params, mid) < t
    return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

  lo, hi = jax.lax.fori_loop(0, iterations, body, (lo, hi))
  return (0.5 * (lo + hi)).T


# --------------------------------------------------------------------------------------------
# Gaussian conditional


def _std_cdf(t):
  return 0.5 * jax.scipy.special.erfc(-t / math.sqrt(2.0))


def gaussian_likelihood(y_hat: Float[Array, "*shape"], scales: Float[Array, "*shape"],
                        means: Float[Array, "*shape"] | None = None, *,
                        scale_bound: float = 0.11,
                        likelihood_bound: float = 1e-9) -> Float[Array, "*shape"]:
  """Likelihood of a unit bin under ``N(mean, max(scale, 0.11)^2)`` (CompressAI's form).

  .. math::
    p = \\Phi\\left(\\frac{1/2 - v}{\\sigma}\\right) - \\Phi\\left(\\frac{-1/2 - v}{\\sigma}
    \\right),\\qquad v = |\\hat y - \\mu|

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import gaussian_likelihood
    >>> round(float(gaussian_likelihood(jnp.array(0.0), jnp.array(1.0))), 6)
    0.382925
  """
  fn = "gaussian_likelihood"
  V.check_floating(fn, "y_hat", y_hat)
  V.check_floating(fn, "scales", scales)
  V.check_same_shape(fn, "y_hat", y_hat, "scales", scales)
  if means is not None:
    V.check_floating(fn, "means", means)
    V.check_same_shape(fn, "y_hat", y_hat, "means", means)
  V.check_scalar(fn, "scale_bound", scale_bound, low=0.0, high=1e6, static=True)
  V.check_scalar(fn, "likelihood_bound", likelihood_bound, low=0.0, high=1.0, static=True)
  y_hat = jnp.asarray(y_hat)
  means = None if means is None else jnp.asarray(means)
  dt = y_hat.dtype
  scales = jnp.asarray(scales).astype(dt)
  if scale_bound > 0:
    scales = _lower_bound(scales, jnp.asarray(scale_bound, dt))
  v = y_hat - means.astype(dt) if means is not None else y_hat
  v = jnp.abs(v)
  p = _std_cdf((0.5 - v) / scales) - _std_cdf((-0.5 - v) / scales)
  if likelihood_bound > 0:
    p = _lower_bound(p, jnp.asarray(likelihood_bound, dt))
  return p


def gaussian_conditional(y: Float[Array, "batch *rest"], scales: Float[Array, "batch *rest"],
                         means: Float[Array, "batch *rest"] | None = None, *, key=None,
                         training: bool, scale_bound: float = 0.11,
                         likelihood_bound: float = 1e-9) -> BottleneckOutput:
  """The Gaussian conditional entropy model as a bottleneck (noise in training, rounding at
  test around ``means``).

  Returns:
    :class:`~bottleneck_jax.core.BottleneckOutput` with ``z = y_hat``, ``bits`` per example
    ``[B]`` and ``aux = {"likelihoods": p}``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import gaussian_conditional
    >>> out = gaussian_conditional(jnp.zeros((2, 5)), jnp.ones((2, 5)), training=False)
    >>> out.bits.shape
    (2,)
  """
  fn = "gaussian_conditional"
  V.check_floating(fn, "y", y)
  V.check_rank(fn, "y", y, min_rank=2)
  _check_batched(fn, y)
  if not isinstance(training, bool):
    raise TypeError(f"{fn}: training must be a bool, got {type(training).__name__}")
  V.check_floating(fn, "scales", scales)
  V.check_same_shape(fn, "y", y, "scales", scales)
  if means is not None:
    V.check_floating(fn, "means", means)
    V.check_same_shape(fn, "y", y, "means", means)
    means = jnp.asarray(means)
  scales = jnp.asarray(scales)
  if training:
    if key is None:
      raise ValueError(f"{fn}: key must be given when training (the noise), got None")
    y_hat = quantize_latents(y, mode="noise", key=as_key(key, fn=fn))
  else:
    mu = means.astype(y.dtype) if means is not None else jnp.zeros_like(y)
    y_hat = jnp.round(y - mu) + mu
  p = gaussian_likelihood(y_hat, scales.astype(y.dtype), means, scale_bound=scale_bound,
                          likelihood_bound=likelihood_bound)
  return BottleneckOutput(z=y_hat, loss=jnp.zeros((), y.dtype), bits=_per_example_bits(p),
                          aux={"likelihoods": p})


def gaussian_scale_table(minimum: float = 0.11, maximum: float = 256.0,
                         levels: int = 64) -> np.ndarray:
  """CompressAI's scale table ``exp(linspace(log min, log max, levels))`` (host, float64).

  Example:
    >>> from bottleneck_jax.compression import gaussian_scale_table
    >>> t = gaussian_scale_table()
    >>> round(float(t[1]), 6), round(float(t[-1]), 6)
    (0.124404, 256.0)
  """
  fn = "gaussian_scale_table"
  V.check_scalar(fn, "minimum", minimum, low=0.0, low_inclusive=False, high=1e6, static=True)
  V.check_scalar(fn, "maximum", maximum, low=float(minimum), high=1e9, static=True)
  V.check_scalar(fn, "levels", levels, low=2, high=4096, integer=True, static=True)
  return np.exp(np.linspace(math.log(minimum), math.log(maximum), int(levels)))


def bits_per_pixel(likelihoods, num_pixels: int) -> Float[Array, ""]:
  """``sum(-log2 p) / num_pixels`` over every leaf of ``likelihoods`` (a pytree).

  ``num_pixels`` counts the pixels of the *input* images (``N H W``), not latents.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import bits_per_pixel
    >>> float(bits_per_pixel({"y": jnp.full((4,), 0.5)}, 4))
    1.0
  """
  return _bits_per_pixel("bits_per_pixel", likelihoods, num_pixels)


def _bits_per_pixel(fn: str, likelihoods, num_pixels):
  V.check_scalar(fn, "num_pixels", num_pixels, low=1, integer=True)
  leaves = jax.tree.leaves(likelihoods)
  if not leaves:
    raise ValueError(f"{fn}: likelihoods must hold at least one array, got {likelihoods!r}")
  for leaf in leaves:
    V.check_floating(fn, "likelihoods", leaf)
  total = sum(jnp.sum(-jnp.log(jnp.asarray(leaf).astype(jnp.float32))) for leaf in leaves)
  return total / (_LN2 * num_pixels)


class RateDistortion(NamedTuple):
  """Result of :func:`rate_distortion_loss`."""
  loss: Array
  bpp: Array
  mse: Array


def rate_distortion_loss(x: Float[Array, "b h w c"], x_hat: Float[Array, "b h w c"],
                         likelihoods, *, lmbda: float) -> RateDistortion:
  """CompressAI's ``RateDistortionLoss``: ``lmbda 255^2 MSE(x, x_hat) + bpp`` (x in [0, 1]).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import rate_distortion_loss
    >>> x = jnp.zeros((1, 4, 4, 3))
    >>> r = rate_distortion_loss(x, x + 0.1, {"y": jnp.full((1, 2), 0.5)}, lmbda=0.01)
    >>> round(float(r.loss), 4)   # 0.01 * 255^2 * 0.01 + 2 bits / 16 pixels
    6.6275
  """
  fn = "rate_distortion_loss"
  V.check_floating(fn, "x", x)
  V.check_rank(fn, "x", x, 4)
  V.check_floating(fn, "x_hat", x_hat)
  V.check_same_shape(fn, "x", x, "x_hat", x_hat)
  V.check_scalar(fn, "lmbda", lmbda, low=0.0)
  n, h, w = x.shape[:3]
  if n * h * w == 0:
    raise ValueError(f"{fn}: x must have at least one pixel, got {V.describe(x)}")
  bpp = _bits_per_pixel(fn, likelihoods, n * h * w)
  mse = jnp.mean(jnp.square(x.astype(jnp.float32) - x_hat.astype(jnp.float32)))
  return RateDistortion(lmbda * 255.0 ** 2 * mse + bpp, bpp, mse)


# --------------------------------------------------------------------------------------------
# NNX module


class EntropyQuantiles(nnx.Variable):
  """The tail quantiles of an :class:`EntropyBottleneck`; not a ``Param`` (no gradient)."""


class EntropyBottleneck(nnx.Module):
  """Factorised-prior entropy bottleneck (CompressAI's ``EntropyBottleneck``), channels last.

  ``__call__(y, *, key=None, training)`` returns the :class:`BottleneckOutput` of
  :func:`entropy_bottleneck`; :meth:`update_quantiles` refits the tail quantiles by bisection
  (call it before evaluation and before building the coder's tables).

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.compression import EntropyBottleneck
    >>> eb = EntropyBottleneck(4, rngs=nnx.Rngs(0))
    >>> eb.update_quantiles()
    >>> eb(jnp.ones((2, 3, 3, 4)), training=False).bits.shape
    (2,)
  """

  def __init__(self, channels: int, *, filters: Sequence[int] = (3, 3, 3, 3),
               init_scale: float = 10.0, tail_mass: float = 1e-9,
               likelihood_bound: float = 1e-9, rngs: nnx.Rngs):
    p = init_factorized_prior(rngs.params(), channels, filters=filters, init_scale=init_scale)
    self.matrices = nnx.List([nnx.Param(m) for m in p.matrices])
    self.biases = nnx.List([nnx.Param(b) for b in p.biases])
    self.factors = nnx.List([nnx.Param(f) for f in p.factors])
    q = jnp.tile(jnp.array([-init_scale, 0.0, init_scale], jnp.float32), (channels, 1))
    self.quantiles = EntropyQuantiles(q)
    self.tail_mass = float(tail_mass)
    self.likelihood_bound = float(likelihood_bound)

  @property
  def params(self) -> FactorizedPriorParams:
    """The prior's parameters as a :class:`FactorizedPriorParams` pytree."""
    return FactorizedPriorParams(tuple(m[...] for m in self.matrices),
                                 tuple(b[...] for b in self.biases),
                                 tuple(f[...] for f in self.factors))

  def medians(self) -> Array:
    """The per-channel medians ``[C]``."""
    return self.quantiles[...][:, 1]

  def update_quantiles(self) -> None:
    """Refit the quantiles by bisection on the current MLP."""
    self.quantiles[...] = fit_quantiles(self.params, tail_mass=self.tail_mass)

  def __call__(self, y, *, key=None, training: bool = False) -> BottleneckOutput:
    return entropy_bottleneck(self.params, self.medians(), y, key=key, training=training,
                              likelihood_bound=self.likelihood_bound)
