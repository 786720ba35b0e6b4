"""Deep Variational Information Bottleneck (Deep VIB).

Paper: Alexander A. Alemi, Ian Fischer, Joshua V. Dillon, Kevin Murphy, "Deep Variational
Information Bottleneck", ICLR 2017 (https://arxiv.org/abs/1612.00410).

Idea. The information bottleneck asks for a representation ``Z`` of the input ``X`` that is
maximally informative about the target ``Y`` while keeping as little about ``X`` as possible,
``max I(Z;Y) - beta * I(Z;X)``. Deep VIB makes this trainable with a stochastic encoder
``p(z|x) = N(z; mu(x), diag(sigma(x)^2))``, a variational classifier ``q(y|z)`` and a fixed
variational marginal ``r(z) = N(0, I)``. Both mutual informations are then bounded by quantities
that the reparameterisation trick makes differentiable:

  I(Z;Y) >= E_{x,y} E_{z~p(z|x)} [log q(y|z)] + H(Y)
  I(Z;X) <= E_x KL(p(z|x) || r(z))                                       (the "rate")

so the loss minimised per example is

  L(x, y) = E_{eps~N(0,I)} [ -log q(y | mu(x) + sigma(x) * eps) ] + beta * KL(p(z|x) || r(z)),

  KL(N(mu, sigma^2) || N(0, I)) = 1/2 sum_k (mu_k^2 + sigma_k^2 - 1 - 2 log sigma_k),

with the class term averaged over ``S`` reparameterised samples. At test time the predictive
distribution is the sample average of the classifier's probabilities,
``log p(y|x) ~= logsumexp_s log softmax(logits_s) - log S``.

Implemented here:
- pure functions: :func:`diag_gaussian_kl_std_normal` (analytic KL, nats),
  :func:`diag_gaussian_log_prob`, :func:`vib_rate` (analytic, or the Monte-Carlo estimate
  ``mean_s [log p(z_s|x) - log r(z_s)]`` that the reference notebook uses), :func:`vib` (the
  bottleneck layer as a function, returning :class:`~bottleneck_jax.core.BottleneckOutput`),
  :func:`vib_loss` and :func:`vib_predictive_logprobs`. The Polyak average of the parameters
  that the paper evaluates is ``optax.incremental_update(params, ema, step_size=1 - decay)``
  (no wrapper here);
- thin ``flax.nnx`` modules: :class:`VIBEncoder` (MLP -> ``(mu, sigma)``), :class:`VIB`
  (encoder + bottleneck) and :class:`VIBClassifier` (encoder + bottleneck + linear decoder).

Departures from the paper / reference code:
- Units: everything is computed in **nats**; ``BottleneckOutput.bits`` is the KL in bits. The
  official JAX notebook (alexalemi/vib_demo ``JAX_DVIB_MNIST.ipynb``) measures both the class
  loss and the rate in bits, i.e. its loss is ours divided by ``ln 2``: same optimum, gradients
  scaled by ``1/ln 2`` (absorbed by Adam).
- ``vib`` uses the analytic KL for ``loss``; the notebook uses the single-/multi-sample
  Monte-Carlo rate. Both are returned (``aux["kl"]``, ``aux["rate_mc"]``); their expectations are
  equal.
- The encoder follows the notebook, not the paper's table: ``sigma = softplus(rho - 5)``,
  ``xavier_uniform`` kernels and zero biases; the paper used K=256 and a 1024-1024 MLP, the
  defaults here are sized for small data (``hidden=(256, 256)``, ``latent_dim=32``).
- Randomness comes only from an explicit ``key`` (never from ``nnx.Rngs`` at call time), so a
  training loop that derives keys from ``(seed, step)`` resumes exactly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.distributions import (
    _LOG_2PI,
  _check_gaussian,
  _stats,
  diag_gaussian_kl_std_normal,
  diag_gaussian_log_prob,
)
from bottleneck_jax.core.rng import as_key
from bottleneck_jax.core.types import BottleneckOutput
from bottleneck_jax.core.units import LN2

# --------------------------------------------------------------------------------------------
# validation helpers (private)
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# pure functions
# --------------------------------------------------------------------------------------------


def _check_nonempty_batch(fn: str, arg: str, batch, x) -> None:
  """A batch mean over zero examples is NaN: refuse it with a clear error."""
  if math.prod(batch) < 1:
    raise ValueError(f"{fn}: {arg} must have at least one example (a non-empty batch), got "
                     f"{V.describe(x)}")


def vib_rate(mean: Float[Array, "*batch k"], std: Float[Array, "*batch k"],
             z_samples: Float[Array, "s *batch k"] | None = None) -> Float[Array, "*batch"]:
  """The Deep VIB rate ``KL(p(z|x) || r(z))`` with ``r = N(0, I)``, per example, in nats.

  Analytic when ``z_samples`` is ``None``; otherwise the Monte-Carlo estimate used by the
  reference notebook,

  .. math::
    \\hat R = \\frac1S \\sum_{s=1}^S \\left[\\log p(z_s | x) - \\log r(z_s)\\right],
    \\qquad z_s \\sim p(z|x),

  whose expectation is the analytic KL.

  Args:
    mean: encoder means, shape ``[*batch, K]``.
    std: encoder standard deviations, same shape and dtype.
    z_samples: ``None`` or samples from ``N(mean, std^2)`` with a leading sample axis,
      shape ``[S, *batch, K]``, ``S >= 1`` (``S = 0`` is a ``ValueError``, not a NaN mean),
      dtype of ``mean``.

  Returns:
    The rate per example, shape ``[*batch]``, in nats.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.information import vib_rate
    >>> mean, std = jnp.zeros((4, 2)), jnp.full((4, 2), 0.5)
    >>> vib_rate(mean, std).shape
    (4,)
    >>> z = mean + std * jax.random.normal(jax.random.key(0), (8, 4, 2))
    >>> vib_rate(mean, std, z).shape
    (4,)

  References:
    Alemi et al., "Deep Variational Information Bottleneck", ICLR 2017,
    https://arxiv.org/abs/1612.00410; alexalemi/vib_demo ``JAX_DVIB_MNIST.ipynb``.
  """
  fn = "vib_rate"
  _check_gaussian(fn, mean, std)
  if z_samples is None:
    return diag_gaussian_kl_std_normal(mean, std)
  V.check_floating(fn, "z_samples", z_samples)
  if tuple(np.shape(z_samples)[1:]) != tuple(mean.shape) or np.ndim(z_samples) < 2:
    raise ValueError(f"{fn}: z_samples must have shape [S, {', '.join(map(str, mean.shape))}] "
                     f"(a leading sample axis, then mean's shape), got "
                     f"{list(np.shape(z_samples))}")
  if np.shape(z_samples)[0] < 1:
    raise ValueError(f"{fn}: z_samples must hold at least one sample (S >= 1), got "
                     f"{V.describe(z_samples)}")
  if jnp.dtype(z_samples.dtype) != jnp.dtype(mean.dtype):
    raise TypeError(f"{fn}: z_samples must have the dtype of mean "
                    f"({jnp.dtype(mean.dtype).name}), got {V.describe(z_samples)}")
  log_q = diag_gaussian_log_prob(z_samples, mean, std)
  log_r = -0.5 * jnp.sum(jnp.square(_stats(z_samples)) + _LOG_2PI, axis=-1)
  return jnp.mean(log_q - log_r, axis=0)


def vib(mean: Float[Array, "*batch k"], std: Float[Array, "*batch k"], *, key,
        beta: float | Float[Array, ""] = 1e-3, num_samples: int = 1) -> BottleneckOutput:
  """The Deep VIB bottleneck: reparameterised sample, KL rate, ``beta``-weighted loss.

  .. math::
    z = \\mu + \\sigma \\odot \\epsilon,\\quad \\epsilon \\sim N(0, I);\\qquad
    \\text{loss} = \\beta\\, \\operatorname{mean}_{batch} KL(N(\\mu, \\sigma^2) \\| N(0, I))

  Args:
    mean: encoder means ``mu(x)``, shape ``[*batch, K]`` (``K`` the latent size), floating.
    std: encoder standard deviations ``sigma(x) > 0``, same shape and dtype as ``mean``.
    key: a ``jax.random.key`` (or an int seed) for ``epsilon``.
    beta: the IB trade-off ``beta >= 0`` (may be a traced scalar, e.g. under ``vmap``).
    num_samples: how many samples ``S >= 1`` to draw (static Python int).

  An empty batch (``prod(mean.shape[:-1]) == 0``) is a ``ValueError``: ``loss`` is a batch mean.

  Returns:
    :class:`~bottleneck_jax.core.BottleneckOutput` with

    - ``z``: the samples, shape ``[*batch, K]`` when ``num_samples == 1`` else
      ``[num_samples, *batch, K]``;
    - ``loss``: scalar ``beta * mean(KL)`` in nats (add it to the task loss);
    - ``bits``: ``KL / ln 2`` per example, shape ``[*batch]``;
    - ``aux``: ``{"kl": KL in nats [*batch], "rate_mc": Monte-Carlo rate in nats [*batch]}``
      (``rate_mc`` is estimated from the drawn samples, see :func:`vib_rate`).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.information import vib
    >>> mean, std = jnp.zeros((5, 3)), jnp.full((5, 3), 0.1)
    >>> out = vib(mean, std, key=jax.random.key(0), beta=1e-3, num_samples=4)
    >>> out.z.shape, out.bits.shape, out.loss.shape
    ((4, 5, 3), (5,), ())

  References:
    Alemi et al., "Deep Variational Information Bottleneck", ICLR 2017,
    https://arxiv.org/abs/1612.00410.
  """
  fn = "vib"
  _check_gaussian(fn, mean, std)
  V.check_scalar(fn, "num_samples", num_samples, low=1, integer=True)
  V.check_scalar(fn, "beta", beta, low=0.0)
  _check_nonempty_batch(fn, "mean", mean.shape[:-1], mean)
  key = as_key(key, fn=fn)
  num_samples = int(num_samples)
  eps = jax.random.normal(key, (num_samples, *mean.shape), dtype=mean.dtype)
  z_s = mean + std * eps
  kl = diag_gaussian_kl_std_normal(mean, std)
  rate_mc = vib_rate(mean, std, z_s)
  loss = jnp.asarray(beta, kl.dtype) * jnp.mean(kl)
  z = z_s[0] if num_samples == 1 else z_s
  return BottleneckOutput(z=z, loss=loss, bits=kl / LN2, aux={"kl": kl, "rate_mc": rate_mc})


def _check_samples_classes(fn: str, logits_s) -> None:
  if logits_s.shape[0] < 1 or logits_s.shape[-1] < 1:
    raise ValueError(f"{fn}: logits_s must have at least one sample and one class (S >= 1, "
                     f"C >= 1), got {V.describe(logits_s)}")


def vib_predictive_logprobs(logits_s: Float[Array, "s *batch c"]) -> Float[Array, "*batch c"]:
  """Log of the sample-averaged predictive distribution of a VIB classifier.

  .. math::
    \\log p(y|x) \\approx \\log \\frac1S \\sum_s \\operatorname{softmax}(\\ell_s)_y
    = \\operatorname{logsumexp}_s \\log\\operatorname{softmax}(\\ell_s) - \\log S

  Args:
    logits_s: classifier logits for ``S`` samples of ``z``, shape ``[S, *batch, C]``.

  Returns:
    Normalised log-probabilities, shape ``[*batch, C]``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.information import vib_predictive_logprobs
    >>> logits = jnp.array([[[2.0, 0.0]], [[0.0, 2.0]]])      # S=2, B=1, C=2
    >>> jnp.exp(vib_predictive_logprobs(logits)).round(3)
    Array([[0.5, 0.5]], dtype=float32)

  References:
    Alemi et al., "Deep Variational Information Bottleneck", ICLR 2017,
    https://arxiv.org/abs/1612.00410 (test-time averaging over 12 samples).
  """
  fn = "vib_predictive_logprobs"
  V.check_rank(fn, "logits_s", logits_s, min_rank=2)
  V.check_floating(fn, "logits_s", logits_s)
  _check_samples_classes(fn, logits_s)
  logp = jax.nn.log_softmax(logits_s, axis=-1)
  return jax.nn.logsumexp(logp, axis=0) - math.log(logits_s.shape[0])


def vib_loss(logits_s: Float[Array, "s *batch c"], labels: Int[Array, "*batch"],
             rate: Float[Array, "*batch"], *,
             beta: float | Float[Array, ""]) -> tuple[Float[Array, ""], dict[str, Array]]:
  """The Deep VIB training loss: sample-averaged cross-entropy plus ``beta`` times the rate.

  .. math::
    L = \\frac{1}{S\\,B}\\sum_{s,b} -\\log\\operatorname{softmax}(\\ell_{s,b})_{y_b}
    + \\beta\\,\\frac1B\\sum_b R_b

  Labels outside ``[0, C)`` give a NaN loss (not checked, so that the function jits).

  Args:
    logits_s: logits for ``S`` samples of ``z``, shape ``[S, *batch, C]``.
    labels: integer class labels, shape ``[*batch]``.
    rate: per-example rate in nats, shape ``[*batch]`` (``out.aux["kl"]`` or
      ``out.aux["rate_mc"]`` from :func:`vib`).
    beta: the IB trade-off ``beta >= 0`` (may be traced).

  ``S = 0``, ``C = 0`` or an empty batch is a ``ValueError`` (the means would be NaN).

  Returns:
    ``(loss, aux)``: the scalar loss in nats, and scalars ``aux["class_loss"]`` (mean
    cross-entropy, nats), ``aux["rate"]`` (mean rate, nats), ``aux["rate_bits"]``,
    ``aux["accuracy"]`` (per-sample accuracy averaged over samples), ``aux["avg_accuracy"]`` and
    ``aux["avg_class_loss"]`` (accuracy and NLL of the sample-averaged prediction,
    :func:`vib_predictive_logprobs`).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import vib_loss
    >>> logits = jnp.zeros((2, 3, 4))                  # S=2, B=3, C=4: uniform predictions
    >>> loss, aux = vib_loss(logits, jnp.array([0, 1, 2]), jnp.full((3,), 10.0), beta=0.1)
    >>> round(float(aux["class_loss"]), 4), round(float(loss), 4)    # log 4, log 4 + 1
    (1.3863, 2.3863)

  References:
    Alemi et al., "Deep Variational Information Bottleneck", ICLR 2017,
    https://arxiv.org/abs/1612.00410 (eq. 8).
  """
  fn = "vib_loss"
  V.check_rank(fn, "logits_s", logits_s, min_rank=2)
  V.check_floating(fn, "logits_s", logits_s)
  _check_samples_classes(fn, logits_s)
  _check_nonempty_batch(fn, "logits_s", logits_s.shape[1:-1], logits_s)
  V.check_array(fn, "labels", labels)
  V.check_integer(fn, "labels", labels)
  labels = jnp.asarray(labels)
  batch = tuple(logits_s.shape[1:-1])
  if tuple(labels.shape) != batch:
    raise ValueError(f"{fn}: labels must have shape {list(batch)} (logits_s.shape[1:-1]), got "
                     f"{list(labels.shape)}")
  V.check_floating(fn, "rate", rate)
  if tuple(np.shape(rate)) != batch:
    raise ValueError(f"{fn}: rate must have shape {list(batch)} (logits_s.shape[1:-1]), got "
                     f"{list(np.shape(rate))}")
  V.check_scalar(fn, "beta", beta, low=0.0)
  logits_s, rate = _stats(logits_s), _stats(jnp.asarray(rate))
  dtype = logits_s.dtype
  labels = labels.astype(jnp.int32)
  logp = jax.nn.log_softmax(logits_s, axis=-1)
  idx = jnp.broadcast_to(labels[..., None], logp.shape[:-1] + (1,))
  picked = jnp.take_along_axis(logp, idx, axis=-1, mode="fill", fill_value=jnp.nan,
                               wrap_negative_indices=False)[..., 0]
  class_loss = -jnp.mean(picked)
  mean_rate = jnp.mean(rate).astype(dtype)
  loss = class_loss + jnp.asarray(beta, dtype) * mean_rate
  accuracy = jnp.mean((jnp.argmax(logits_s, axis=-1) == labels[None]).astype(dtype))
  avg_logp = vib_predictive_logprobs(logits_s)
  avg_picked = jnp.take_along_axis(avg_logp, labels[..., None], axis=-1, mode="fill",
                                   fill_value=jnp.nan, wrap_negative_indices=False)[..., 0]
  aux = {
      "class_loss": class_loss,
      "rate": mean_rate,
      "rate_bits": mean_rate / LN2,
      "accuracy": accuracy,
      "avg_accuracy": jnp.mean((jnp.argmax(avg_logp, axis=-1) == labels).astype(dtype)),
      "avg_class_loss": -jnp.mean(avg_picked),
  }
  return loss, aux


# --------------------------------------------------------------------------------------------
# NNX modules (thin: own parameters, call the pure functions)
# --------------------------------------------------------------------------------------------


def _check_positive_int(fn: str, arg: str, v) -> None:
  V.check_scalar(fn, arg, v, low=1, integer=True)


def _check_hidden(fn: str, hidden) -> tuple[int, ...]:
  if not isinstance(hidden, Sequence) or isinstance(hidden, (str, bytes)):
    raise TypeError(f"{fn}: hidden must be a sequence of ints >= 1, got "
                    f"{type(hidden).__name__} {hidden!r}")
  for h in hidden:
    if not (isinstance(h, (int, np.integer)) and not isinstance(h, bool)) or h < 1:
      raise ValueError(f"{fn}: hidden must be a sequence of ints >= 1, got {list(hidden)!r}")
  return tuple(int(h) for h in hidden)


def _dense(fin: int, fout: int, rngs: nnx.Rngs) -> nnx.Linear:
  return nnx.Linear(fin, fout, kernel_init=nnx.initializers.xavier_uniform(),
                    bias_init=nnx.initializers.zeros_init(), rngs=rngs)


class VIBEncoder(nnx.Module):
  """Gaussian VIB encoder: an MLP with ReLU and two linear heads ``(mu, sigma)``.

  ``sigma = softplus(rho - std_offset)`` as in the reference notebook (offset 5 starts the
  encoder nearly deterministic, ``sigma ~= 0.0067``). Kernels are ``xavier_uniform``, biases 0.

  Args:
    in_features: input size ``D``.
    latent_dim: latent size ``K``.
    hidden: widths of the hidden ReLU layers (may be empty: linear heads on ``x``).
    std_offset: subtracted from the raw scale before the softplus.
    rngs: ``nnx.Rngs`` for the initialisation.

  ``__call__(x)`` maps ``x: [*batch, D]`` to ``(mean, std)``, each ``[*batch, K]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.information import VIBEncoder
    >>> enc = VIBEncoder(6, 2, hidden=(8,), rngs=nnx.Rngs(0))
    >>> mean, std = enc(jnp.ones((3, 6)))
    >>> mean.shape, std.shape
    ((3, 2), (3, 2))
  """

  def __init__(self, in_features: int, latent_dim: int, *, hidden: Sequence[int] = (256, 256),
               std_offset: float = 5.0, rngs: nnx.Rngs):
    fn = "VIBEncoder"
    _check_positive_int(fn, "in_features", in_features)
    _check_positive_int(fn, "latent_dim", latent_dim)
    hidden = _check_hidden(fn, hidden)
    V.check_scalar(fn, "std_offset", std_offset)
    self.in_features = int(in_features)
    self.latent_dim = int(latent_dim)
    self.hidden = hidden
    self.std_offset = float(std_offset)
    widths = (self.in_features, *hidden)
    self.layers = nnx.List([_dense(a, b, rngs) for a, b in itertools.pairwise(widths)])
    self.mean_head = _dense(widths[-1], self.latent_dim, rngs)
    self.rho_head = _dense(widths[-1], self.latent_dim, rngs)

  def __call__(self, x: Float[Array, "*batch d"]) -> tuple[Float[Array, "*batch k"],
                                                           Float[Array, "*batch k"]]:
    fn = "VIBEncoder"
    V.check_rank(fn, "x", x, min_rank=1)
    V.check_floating(fn, "x", x)
    V.check_axis_size(fn, "x", x, -1, self.in_features, "in_features")
    h = x
    for layer in self.layers:
      h = jax.nn.relu(layer(h))
    mean = self.mean_head(h)
    std = jax.nn.softplus(self.rho_head(h) - self.std_offset)
    return mean, std


class VIB(nnx.Module):
  """A VIB bottleneck layer: :class:`VIBEncoder` followed by :func:`vib`.

  Drop-in layer with the common bottleneck protocol: ``__call__(x, *, key, num_samples=1)``
  returns a :class:`~bottleneck_jax.core.BottleneckOutput` (see :func:`vib` for the shapes).

  Args:
    in_features: input size ``D``.
    latent_dim: latent size ``K``.
    hidden: hidden widths of the encoder MLP (default: none, linear heads).
    beta: the IB trade-off used for ``out.loss``.
    std_offset: see :class:`VIBEncoder`.
    rngs: ``nnx.Rngs`` for the initialisation.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.information import VIB
    >>> layer = VIB(6, 2, rngs=nnx.Rngs(0))
    >>> out = layer(jnp.ones((3, 6)), key=jax.random.key(1))
    >>> out.z.shape, out.bits.shape
    ((3, 2), (3,))
  """

  def __init__(self, in_features: int, latent_dim: int, *, hidden: Sequence[int] = (),
               beta: float = 1e-3, std_offset: float = 5.0, rngs: nnx.Rngs):
    V.check_scalar("VIB", "beta", beta, low=0.0)
    self.encoder = VIBEncoder(in_features, latent_dim, hidden=hidden, std_offset=std_offset,
                              rngs=rngs)
    self.beta = float(beta)

  def __call__(self, x: Float[Array, "*batch d"], *, key,
               num_samples: int = 1) -> BottleneckOutput:
    mean, std = self.encoder(x)
    return vib(mean, std, key=key, beta=self.beta, num_samples=num_samples)


class VIBClassifier(nnx.Module):
  """Deep VIB classifier: :class:`VIBEncoder` -> :func:`vib` -> linear decoder ``q(y|z)``.

  Args:
    in_features: input size ``D``.
    num_classes: number of classes ``C``.
    hidden: hidden widths of the encoder MLP.
    latent_dim: latent size ``K``.
    beta: the IB trade-off used for ``out.loss``.
    std_offset: see :class:`VIBEncoder`.
    rngs: ``nnx.Rngs`` for the initialisation.

  ``__call__(x, *, key, num_samples=1)`` returns ``(logits_s, out)``: ``logits_s`` of shape
  ``[S, *batch, C]`` (always with the sample axis) and the :class:`BottleneckOutput` of
  :func:`vib`. Train with ``vib_loss(logits_s, labels, out.aux["kl"], beta=model.beta)``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.information import VIBClassifier
    >>> model = VIBClassifier(64, 10, hidden=(32,), latent_dim=4, rngs=nnx.Rngs(0))
    >>> logits_s, out = model(jnp.ones((5, 64)), key=jax.random.key(1), num_samples=3)
    >>> logits_s.shape, out.z.shape
    ((3, 5, 10), (3, 5, 4))
    >>> model.predict_logprobs(jnp.ones((5, 64)), key=jax.random.key(2)).shape
    (5, 10)

  References:
    Alemi et al., "Deep Variational Information Bottleneck", ICLR 2017,
    https://arxiv.org/abs/1612.00410; alexalemi/vib_demo ``JAX_DVIB_MNIST.ipynb``.
  """

  def __init__(self, in_features: int, num_classes: int, *, hidden: Sequence[int] = (256, 256),
               latent_dim: int = 32, beta: float = 1e-3, std_offset: float = 5.0,
               rngs: nnx.Rngs):
    fn = "VIBClassifier"
    _check_positive_int(fn, "num_classes", num_classes)
    V.check_scalar(fn, "beta", beta, low=0.0)
    self.encoder = VIBEncoder(in_features, latent_dim, hidden=hidden, std_offset=std_offset,
                              rngs=rngs)
    self.decoder = _dense(int(latent_dim), int(num_classes), rngs)
    self.num_classes = int(num_classes)
    self.latent_dim = int(latent_dim)
    self.beta = float(beta)

  def __call__(self, x: Float[Array, "*batch d"], *, key,
               num_samples: int = 1) -> tuple[Float[Array, "s *batch c"], BottleneckOutput]:
    mean, std = self.encoder(x)
    out = vib(mean, std, key=key, beta=self.beta, num_samples=num_samples)
    z_s = out.z if num_samples != 1 else out.z[None]
    return self.decoder(z_s), out

  def predict_logprobs(self, x: Float[Array, "*batch d"], *, key,
                       num_samples: int = 12) -> Float[Array, "*batch c"]:
    """Sample-averaged predictive log-probabilities (:func:`vib_predictive_logprobs`)."""
    logits_s, _ = self(x, key=key, num_samples=num_samples)
    return vib_predictive_logprobs(logits_s)


__all__ = [
    "VIB",
    "VIBClassifier",
    "VIBEncoder",
    "diag_gaussian_kl_std_normal",
    "diag_gaussian_log_prob",
    "vib",
    "vib_loss",
    "vib_predictive_logprobs",
    "vib_rate",
]
