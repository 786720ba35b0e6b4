"""ARD-VAE: a hierarchical prior that finds the relevant latent dimensions of a VAE.

Paper: Surojit Saha, Sarang Joshi, Ross Whitaker, "ARD-VAE: A Statistical Formulation to Find
the Relevant Latent Dimensions of Variational Autoencoders", 2025
(https://arxiv.org/abs/2501.10901); reference code Surojit-Utah/ARD-VAE (TensorFlow 2:
``loss/vae_loss.py``, ``train/trainer.py``, ``get_encoded_statistics.py``).

Idea. Automatic relevance determination: the prior of each latent axis has its own precision,
``p(z | lambda) = prod_d N(z_d; 0, 1/lambda_d)`` with ``lambda_d ~ Gamma(alpha_0, beta_0)``.
Given latents ``z_n`` encoded from a held-out subset of the training data, the posterior of
``lambda_d`` is ``Gamma(alpha_0 + N/2, beta_0 + 1/2 sum_n z_nd^2)``; the prior variance used is
its posterior-mean counterpart

.. math::
  v_d = \\frac{\\beta_0 + \\tfrac12 \\sum_n z_{nd}^2}{\\alpha_0 + N/2}
  \\;\\xrightarrow{\\alpha_0 = \\beta_0 = 0}\\; \\frac1N \\sum_n z_{nd}^2,

refreshed periodically and held fixed (no gradient) in between. Axes the data do not need
collapse (their ``v_d`` and the decoder's sensitivity to them shrink together). The loss is the
reconstruction term plus ``kappa`` times ``KL(N(mu, sigma^2) || N(0, v))``,

.. math::
  KL = \\tfrac12 \\sum_d \\left[\\log v_d - \\log\\sigma_d^2 + \\frac{\\mu_d^2 + \\sigma_d^2}{v_d}
  - 1\\right].

Relevant axes are read off with the relevance score of the reference code:
``s_d = v_d sum_p (mean_n |d x_hat_p / d mu_d|)^2``, sorted; the relevant set is the smallest
prefix whose cumulative share exceeds 99 %.

Departures: the reference logs ``+ v_d`` where the KL has ``+ log v_d`` (a constant for the
network: identical gradients); we compute the true KL. The prior refresh is a function
(:func:`ard_prior_variance`) that the caller runs on its schedule (the experiment: every 100
steps on a 1000-sample subset), not a hidden trainer hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Bool, Float

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.rng import as_key
from bottleneck_jax.core.types import BottleneckOutput

_LN2 = math.log(2.0)


def _check_2d(fn: str, arg: str, x) -> None:
  V.check_floating(fn, arg, x)
  V.check_rank(fn, arg, x, 2)
  if x.shape[0] == 0 or x.shape[1] == 0:
    raise ValueError(f"{fn}: {arg} must have at least one row and one column, got "
                     f"{V.describe(x)}")


def ard_prior_variance(z_samples: Float[Array, "n l"], *, alpha0: float = 0.0,
                       beta0: float = 0.0) -> Float[Array, "l"]:
  """The ARD prior variance per axis, ``(beta0 + sum z^2 / 2) / (alpha0 + N / 2)``, no gradient.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import ard_prior_variance
    >>> ard_prior_variance(jnp.array([[1.0, 0.0], [3.0, 0.0]])).tolist()
    [5.0, 0.0]
  """
  fn = "ard_prior_variance"
  _check_2d(fn, "z_samples", z_samples)
  V.check_scalar(fn, "alpha0", alpha0, low=0.0)
  V.check_scalar(fn, "beta0", beta0, low=0.0)
  z = jax.lax.stop_gradient(jnp.asarray(z_samples))
  n = z.shape[0]
  a0, b0 = (jnp.asarray(v, z.dtype) if isinstance(v, jax.core.Tracer) else float(v)
            for v in (alpha0, beta0))
  return (b0 + 0.5 * jnp.sum(jnp.square(z), axis=0)) / (a0 + 0.5 * n)


def ard_kl(mu: Float[Array, "*batch l"], logvar: Float[Array, "*batch l"],
           prior_var: Float[Array, "l"], *, epsilon: float = 1e-12) -> Float[Array, "*batch"]:
  """``KL(N(mu, exp(logvar)) || N(0, prior_var))`` per example, in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import ard_kl
    >>> float(ard_kl(jnp.zeros((1, 2)), jnp.log(jnp.full((1, 2), 2.0)), jnp.full(2, 2.0))[0])
    0.0
  """
  return _ard_kl("ard_kl", mu, logvar, prior_var, epsilon)


def _ard_kl(fn, mu, logvar, prior_var, epsilon=1e-12):
  V.check_floating(fn, "mu", mu)
  V.check_rank(fn, "mu", mu, min_rank=1)
  V.check_floating(fn, "logvar", logvar)
  V.check_same_shape(fn, "mu", mu, "logvar", logvar)
  V.check_floating(fn, "prior_var", prior_var)
  V.check_shape(fn, "prior_var", prior_var, (mu.shape[-1],))
  V.check_scalar(fn, "epsilon", epsilon, low=0.0, static=True)
  mu = jnp.asarray(mu)
  logvar = jnp.asarray(logvar).astype(mu.dtype)
  v = jnp.asarray(prior_var).astype(mu.dtype) + epsilon
  return 0.5 * jnp.sum(jnp.log(v) - logvar + (jnp.square(mu) + jnp.exp(logvar)) / v - 1.0,
                       axis=-1)


class ARDLoss(NamedTuple):
  """Result of :func:`ard_vae_loss` (all scalars; ``kl`` in nats per example)."""
  loss: Array
  reconstruction: Array
  kl: Array


def ard_vae_loss(x: Float[Array, "b *d"], x_hat: Float[Array, "b *d"],
                 mu: Float[Array, "b l"], logvar: Float[Array, "b l"],
                 prior_var: Float[Array, "l"], *, kl_weight: float = 1.0,
                 likelihood: Literal["sse", "bernoulli"] = "sse",
                 noise_var: float = 0.5) -> ARDLoss:
  """``mean_b [recon + kl_weight KL]``; ``recon = SSE / (2 noise_var)`` (Gaussian, up to a
  constant; ``noise_var = 1/2`` is the reference's plain SSE) or Bernoulli NLL of logits
  ``x_hat``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import ard_vae_loss
    >>> r = ard_vae_loss(jnp.ones((2, 3)), jnp.zeros((2, 3)), jnp.zeros((2, 1)),
    ...                  jnp.zeros((2, 1)), jnp.ones(1))
    >>> float(r.loss), float(r.kl)
    (3.0, 0.0)
  """
  fn = "ard_vae_loss"
  V.check_floating(fn, "x", x)
  V.check_rank(fn, "x", x, min_rank=1)
  V.check_floating(fn, "x_hat", x_hat)
  V.check_same_shape(fn, "x", x, "x_hat", x_hat)
  V.check_choice(fn, "likelihood", likelihood, ("sse", "bernoulli"))
  V.check_scalar(fn, "kl_weight", kl_weight, low=0.0)
  V.check_scalar(fn, "noise_var", noise_var, low=0.0, low_inclusive=False)
  if x.shape[0] == 0:
    raise ValueError(f"{fn}: x must have a non-empty batch, got {V.describe(x)}")
  kl = _ard_kl(fn, mu, logvar, prior_var)
  if kl.shape != (x.shape[0],):
    raise ValueError(f"{fn}: mu must have shape [batch, L] with the batch of x, got "
                     f"{V.describe(mu)} for x {V.describe(x)}")
  x, x_hat = jnp.asarray(x), jnp.asarray(x_hat).astype(jnp.asarray(x).dtype)
  axes = tuple(range(1, x.ndim))
  if likelihood == "sse":
    rec = jnp.sum(jnp.square(x - x_hat), axis=axes) / (2.0 * noise_var)
  else:
    rec = jnp.sum(jnp.logaddexp(0.0, x_hat) - x * x_hat, axis=axes)
  rec = jnp.mean(rec)
  kl_mean = jnp.mean(kl).astype(rec.dtype)
  if not isinstance(kl_weight, jax.core.Tracer):
    kl_weight = float(kl_weight)
  return ARDLoss(rec + kl_weight * kl_mean, rec, kl_mean)


def relevance_scores(decoder_fn: Callable[[Array], Array], mu: Float[Array, "n l"],
                     prior_var: Float[Array, "l"]) -> Float[Array, "l"]:
  """ARD-VAE's relevance score ``s_d = v_d sum_p (mean_n |d x_hat_p / d mu_d|)^2``.

  Args:
    decoder_fn: maps one latent ``[L]`` to an output (any shape).
    mu: encoder means of ``n`` samples, ``[n, L]``.
    prior_var: ``v`` (the estimated latent variances), ``[L]``.

  Returns:
    ``[L]`` scores (for a linear decoder ``x = B z``: ``||B[:, d]||^2 v_d``).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import relevance_scores
    >>> b = jnp.array([[1.0, 0.0], [1.0, 0.1]])
    >>> s = relevance_scores(lambda z: b @ z, jnp.ones((3, 2)), jnp.array([1.0, 2.0]))
    >>> [round(float(v), 4) for v in s]
    [2.0, 0.02]
  """
  fn = "relevance_scores"
  if not callable(decoder_fn):
    raise TypeError(f"{fn}: decoder_fn must be callable, got {type(decoder_fn).__name__}")
  _check_2d(fn, "mu", mu)
  V.check_floating(fn, "prior_var", prior_var)
  V.check_shape(fn, "prior_var", prior_var, (mu.shape[1],))
  jac = jax.vmap(jax.jacfwd(lambda z: jnp.ravel(decoder_fn(z))))(jnp.asarray(mu))  # [n, P, L]
  j = jnp.sum(jnp.square(jnp.mean(jnp.abs(jac), axis=0)), axis=0)
  return j * jnp.asarray(prior_var).astype(j.dtype)


class RelevantAxes(NamedTuple):
  """Result of :func:`relevant_axes`."""
  mask: Array
  count: int


def relevant_axes(scores: Float[Array, "l"], *, threshold: float = 0.99) -> RelevantAxes:
  """The smallest set of axes whose (descending) cumulative share of ``scores`` exceeds
  ``threshold``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import relevant_axes
    >>> r = relevant_axes(jnp.array([0.001, 5.0, 3.0, 0.0]))
    >>> r.mask.tolist(), r.count
    ([False, True, True, False], 2)
  """
  fn = "relevant_axes"
  V.check_floating(fn, "scores", scores)
  V.check_rank(fn, "scores", scores, 1)
  V.check_scalar(fn, "threshold", threshold, low=0.0, high=1.0, low_inclusive=False,
                 static=True)
  s = jnp.asarray(scores)
  if s.shape[0] == 0:
    raise ValueError(f"{fn}: scores must not be empty, got {V.describe(scores)}")
  if isinstance(s, jax.core.Tracer):
    raise TypeError(f"{fn}: scores must be concrete (the count is a Python int), got a traced "
                    f"value")
  import numpy as np
  sn = np.asarray(s, np.float64)
  if not np.all(np.isfinite(sn)) or np.any(sn < 0):
    raise ValueError(f"{fn}: scores must be finite and non-negative, got {sn.tolist()}")
  total = sn.sum()
  order = np.argsort(-sn, kind="stable")
  if total <= 0:
    count = sn.size
  else:
    cum = np.cumsum(sn[order]) / total
    count = int(np.searchsorted(cum, threshold, side="right")) + 1
    count = min(count, sn.size)
  mask = np.zeros(sn.size, bool)
  mask[order[:count]] = True
  return RelevantAxes(jnp.asarray(mask), count)


def ard_generate(key, mu_mean: Float[Array, "l"], prior_var: Float[Array, "l"],
                 mask: Bool[Array, "l"], num: int) -> Float[Array, "num l"]:
  """Samples ``z = mean + eps sqrt(v 1_relevant)`` (irrelevant axes fixed at their mean).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import ard_generate
    >>> z = ard_generate(0, jnp.zeros(3), jnp.ones(3), jnp.array([True, False, True]), 4)
    >>> z.shape, bool(jnp.all(z[:, 1] == 0))
    ((4, 3), True)
  """
  fn = "ard_generate"
  key = as_key(key, fn=fn)
  V.check_floating(fn, "mu_mean", mu_mean)
  V.check_rank(fn, "mu_mean", mu_mean, 1)
  V.check_floating(fn, "prior_var", prior_var)
  V.check_same_shape(fn, "mu_mean", mu_mean, "prior_var", prior_var)
  V.check_bool_or_int(fn, "mask", mask)
  V.check_same_shape(fn, "mu_mean", mu_mean, "mask", mask)
  V.check_scalar(fn, "num", num, low=0, high=2**31 - 1, integer=True, static=True)
  mu_mean = jnp.asarray(mu_mean)
  eps = jax.random.normal(key, (int(num), mu_mean.shape[0]), mu_mean.dtype)
  scale = jnp.sqrt(jnp.asarray(prior_var).astype(mu_mean.dtype)
                   * jnp.asarray(mask).astype(mu_mean.dtype))
  return mu_mean + eps * scale


# --------------------------------------------------------------------------------------------
# NNX module


class ArdPriorVariance(nnx.Variable):
  """The ARD prior variance ``v`` of an :class:`ARDVAE` (refreshed, never trained)."""


class ARDVAE(nnx.Module):
  """A VAE with the ARD hierarchical prior.

  ``encoder(x) -> [B, 2L]`` (means then log-variances), ``decoder(z) -> x_hat``; both are user
  modules (or callables). ``__call__(x, *, key)`` returns a
  :class:`~bottleneck_jax.core.BottleneckOutput`: ``z`` (the reparameterised sample),
  ``loss = kl_weight mean KL`` (nats), ``bits = KL / ln 2`` per example and
  ``aux = {"mu", "logvar", "prior_var", "x_hat"}``. :meth:`refresh_prior` sets ``v`` from a
  held-out batch (sampled latents, as ``scatter_use_var=True`` in the reference).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.compression import ARDVAE
    >>> rngs = nnx.Rngs(0)
    >>> m = ARDVAE(nnx.Linear(5, 8, rngs=rngs), nnx.Linear(4, 5, rngs=rngs), 4, rngs=rngs)
    >>> m.refresh_prior(jnp.ones((10, 5)), key=jax.random.key(1))
    >>> m(jnp.ones((2, 5)), key=jax.random.key(2)).aux["x_hat"].shape
    (2, 5)
  """

  def __init__(self, encoder, decoder, latent_dim: int, *, kl_weight: float = 1.0,
               rngs: nnx.Rngs):
    V.check_scalar("ARDVAE", "latent_dim", latent_dim, low=1, integer=True)
    self.encoder, self.decoder = encoder, decoder
    self.latent_dim = int(latent_dim)
    self.kl_weight = float(kl_weight)
    self.prior_var = ArdPriorVariance(jnp.ones((self.latent_dim,), jnp.float32))

  def encode(self, x) -> tuple[Array, Array]:
    """``(mu, logvar)``, each ``[B, L]``."""
    h = self.encoder(x)
    return h[..., :self.latent_dim], h[..., self.latent_dim:2 * self.latent_dim]

  def refresh_prior(self, x, *, key) -> None:
    """``v <- mean_n z_n^2`` over sampled latents of the held-out batch ``x``."""
    mu, logvar = self.encode(x)
    eps = jax.random.normal(as_key(key, fn="ARDVAE.refresh_prior"), mu.shape, mu.dtype)
    self.prior_var[...] = ard_prior_variance(mu + jnp.exp(0.5 * logvar) * eps)

  def __call__(self, x, *, key) -> BottleneckOutput:
    mu, logvar = self.encode(x)
    eps = jax.random.normal(as_key(key, fn="ARDVAE"), mu.shape, mu.dtype)
    z = mu + jnp.exp(0.5 * logvar) * eps
    v = jax.lax.stop_gradient(self.prior_var[...])
    kl = ard_kl(mu, logvar, v)
    return BottleneckOutput(z=z, loss=self.kl_weight * jnp.mean(kl), bits=kl / _LN2,
                            aux={"mu": mu, "logvar": logvar, "prior_var": v,
                                 "x_hat": self.decoder(z)})
