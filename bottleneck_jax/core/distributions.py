"""Diagonal-Gaussian densities and divergences that several families share (VIB, CVIB, HIB,
ARD-VAE, BottleFit): the KL to the standard normal and the log density, in nats.

Statistics are computed in at least float32, also for bf16 inputs.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from bottleneck_jax.core import validation as V

_LOG_2PI = math.log(2.0 * math.pi)


def _stats(x):
  """Statistics (KL, log-probs, losses) are computed in at least float32, also for bf16 inputs."""
  return x if jnp.finfo(x.dtype).bits >= 32 else x.astype(jnp.float32)


def _check_gaussian(fn: str, mean, std) -> None:
  V.check_rank(fn, "mean", mean, min_rank=1)
  V.check_floating(fn, "mean", mean)
  V.check_rank(fn, "std", std, min_rank=1)
  V.check_floating(fn, "std", std)
  V.check_same_shape(fn, "mean", mean, "std", std)
  if jnp.dtype(mean.dtype) != jnp.dtype(std.dtype):
    raise TypeError(f"{fn}: mean and std must have the same dtype, got "
                    f"{jnp.dtype(mean.dtype).name} and {jnp.dtype(std.dtype).name}")


def diag_gaussian_kl_std_normal(mean: Float[Array, "*batch k"],
                                std: Float[Array, "*batch k"]) -> Float[Array, "*batch"]:
  """KL divergence from a diagonal Gaussian to the standard normal, in nats.

  .. math::
    KL(N(\\mu, diag(\\sigma^2)) \\| N(0, I)) = \\tfrac12 \\sum_k (\\mu_k^2 + \\sigma_k^2 - 1
    - 2 \\log \\sigma_k)

  This is the Deep VIB rate (the upper bound on ``I(Z;X)`` per example).

  Args:
    mean: the means ``mu``, shape ``[*batch, K]``, floating.
    std: the standard deviations ``sigma > 0``, same shape and dtype as ``mean``.

  Returns:
    The KL per example, shape ``[*batch]`` (sums the last axis), in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.core.distributions import diag_gaussian_kl_std_normal
    >>> diag_gaussian_kl_std_normal(jnp.zeros(3), jnp.ones(3))
    Array(0., dtype=float32)
    >>> round(float(diag_gaussian_kl_std_normal(jnp.array([1.0]), jnp.array([1.0]))), 4)
    0.5

  References:
    Alemi et al., "Deep Variational Information Bottleneck", ICLR 2017,
    https://arxiv.org/abs/1612.00410 (eq. 13 and appendix).
  """
  fn = "diag_gaussian_kl_std_normal"
  _check_gaussian(fn, mean, std)
  mean, std = _stats(mean), _stats(std)
  return 0.5 * jnp.sum(jnp.square(mean) + jnp.square(std) - 1.0 - 2.0 * jnp.log(std), axis=-1)


def diag_gaussian_log_prob(z: Float[Array, "*sample_batch k"], mean: Float[Array, "*batch k"],
                           std: Float[Array, "*batch k"]) -> Float[Array, "*sample_batch"]:
  """Log density of ``z`` under a diagonal Gaussian, summed over the last axis, in nats.

  .. math::
    \\log N(z; \\mu, diag(\\sigma^2)) = -\\tfrac12 \\sum_k \\left[\\left(\\frac{z_k - \\mu_k}
    {\\sigma_k}\\right)^2 + 2\\log\\sigma_k + \\log 2\\pi\\right]

  ``z`` broadcasts against ``mean``/``std`` (numpy rules), so ``z`` of shape
  ``[S, *batch, K]`` scores ``S`` samples per example at once.

  Args:
    z: the points, shape broadcastable with ``[*batch, K]`` (same last axis ``K``), floating.
    mean: the means, shape ``[*batch, K]``, floating.
    std: the standard deviations (``> 0``), same shape and dtype as ``mean``.

  Returns:
    ``log N(z; mean, std^2)`` with the last axis summed: shape
    ``broadcast(z.shape, mean.shape)[:-1]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.core.distributions import diag_gaussian_log_prob
    >>> round(float(diag_gaussian_log_prob(jnp.zeros(2), jnp.zeros(2), jnp.ones(2))), 4)
    -1.8379

  References:
    Alemi et al., "Deep Variational Information Bottleneck", ICLR 2017,
    https://arxiv.org/abs/1612.00410.
  """
  fn = "diag_gaussian_log_prob"
  _check_gaussian(fn, mean, std)
  V.check_rank(fn, "z", z, min_rank=1)
  V.check_floating(fn, "z", z)
  if jnp.dtype(z.dtype) != jnp.dtype(mean.dtype):
    raise TypeError(f"{fn}: z must have the dtype of mean ({jnp.dtype(mean.dtype).name}), got "
                    f"{jnp.dtype(z.dtype).name}")
  if z.shape[-1] != mean.shape[-1]:
    raise ValueError(f"{fn}: z must have the last-axis size of mean ({mean.shape[-1]}), got "
                     f"shape {list(z.shape)}")
  try:
    np.broadcast_shapes(tuple(z.shape), tuple(mean.shape))
  except ValueError:
    raise ValueError(f"{fn}: z must broadcast against mean's shape {list(mean.shape)}, got "
                     f"shape {list(z.shape)}") from None
  z, mean, std = _stats(z), _stats(mean), _stats(std)
  u = (z - mean) / std
  return -0.5 * jnp.sum(jnp.square(u) + 2.0 * jnp.log(std) + _LOG_2PI, axis=-1)


__all__ = ["diag_gaussian_kl_std_normal", "diag_gaussian_log_prob"]
