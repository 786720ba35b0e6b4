"""Cauchy-Schwarz divergence information bottleneck for regression (CS-IB).

Paper: Shujian Yu, Xi Yu, Sigurd Løkse, Robert Jenssen, José C. Príncipe, "Cauchy-Schwarz
Divergence Information Bottleneck for Regression", ICLR 2024 (https://arxiv.org/abs/2404.17951);
code SJYuCNEL/Cauchy-Schwarz-Information-Bottleneck (``loss_cs.py``).

Idea. Replace both terms of the IB Lagrangian for regression by Cauchy-Schwarz (CS) quantities
estimated with Gaussian kernels, with no variational bound and no distributional assumption:

  min_theta  D_CS( p(y|x) || q_theta(y_hat|x) ) + beta * I_CS(X; T)

With the (unnormalised) Gram matrices ``K_ij = k_s(x_i, x_j)``, ``k_s(a, b) = exp(-|a-b|^2 /
2 s^2)`` (normalising constants cancel in every CS ratio):

* CS divergence (the paper's convention, twice the textbook one; >= 0):
  ``D_CS(p; q) = log mean K_pp + log mean K_qq - 2 log mean K_pq``.
* CS quadratic mutual information (Prop. 2), with ``K = Gram(x)``, ``Q = Gram(t)``:
  ``I_CS = log(tr(K Q)/N^2) + log(1'K1 1'Q1 / N^4) - 2 log(1'K Q 1 / N^3)``, computed in log
  space; the training loss uses ``I_CS(x, t) / sqrt(I_CS(x, x) I_CS(t, t))``.
* Conditional CS divergence (Prop. 1), with ``L1 = Gram(y)``, ``L2 = Gram(y_hat)`` and
  ``L21_ji = k(y_hat_j, y_i)``:
  ``D = log sum_j [sum_i K_ji L1_ji / d_j] + log sum_j [sum_i K_ji L2_ji / d_j]
  - 2 log sum_j [sum_i K_ji L21_ji / d_j]``, with ``d_j = (sum_i K_ji)^2`` (the plug-in
  derivation from ``p(x, y)^2 / p(x)^2``; ``denominator="sq_of_sum"``) or ``d_j = sum_i K_ji^2``
  (the released code; ``denominator="sum_of_sq"``). Both are exactly 0 when ``y_hat = y``.

Implemented here (nats; the reference code uses ``log2``, i.e. bits: divide by ``ln 2``):
:func:`gaussian_gram`, :func:`cs_divergence`, :func:`cs_qmi`, :func:`cs_qmi_normalized`,
:func:`conditional_cs_divergence`, :func:`median_bandwidth`, :func:`cs_ib_loss` and the thin
:class:`CSIBRegressor` (MLP encoder to ``t``, MLP decoder to ``y_hat``).

Departures / quirks of the reference code:
- Its ``GaussianMatrix`` on 1-D targets (``y`` of shape ``[N]``, as in ``CS_IB_Housing.py``)
  builds constant matrices, so its ``CS_Div`` collapses to ``sum (y_hat - y)^2 / (s^2 ln 2)``:
  the published run trained on a scaled squared error plus ``beta`` times the normalised CS-QMI.
  Here targets are ``[N, d]`` and the kernel is always the pairwise one.
- Its bandwidth fallback ``sigma = 10 * median(pairwise squared distances)``
  (``sigma_estimation``) is offered as ``median_bandwidth(mode="reference_sq", scale=10)``;
  ``mode="sqrt"`` (the median distance) is the usual heuristic.
- The encoder is deterministic (``t`` = the encoder output), as the released script calls its
  stochastic encoder with ``training=False``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from bottleneck_jax.core import validation as V
from bottleneck_jax.kernels.sharding import replicate

DENOMINATORS = ("sq_of_sum", "sum_of_sq")


def _check_2d(fn: str, arg: str, a) -> None:
  V.check_floating(fn, arg, a)
  V.check_rank(fn, arg, a, 2)
  if a.shape[0] < 1 or a.shape[1] < 1:
    raise ValueError(f"{fn}: {arg} must be a non-empty [N, d] array, got {V.describe(a)}")


def _check_sigma(fn: str, arg: str, sigma) -> None:
  if isinstance(sigma, jax.core.Tracer):
    return
  V.check_scalar(fn, arg, sigma, low=0.0, low_inclusive=False)
  if not math.isfinite(float(sigma)):
    raise ValueError(f"{fn}: {arg} must be a finite positive number, got {sigma}")


def _check_rows(fn: str, names, arrays) -> None:
  n = arrays[0].shape[0]
  for name, a in zip(names[1:], arrays[1:]):
    if a.shape[0] != n:
      raise ValueError(f"{fn}: {names[0]} and {name} must have the same number of samples "
                       f"(axis 0), got {list(arrays[0].shape)} and {list(a.shape)}")


def _sqdist(a, b):
  a, b = replicate(a), replicate(b)
  d2 = (jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :] - 2.0 * a @ b.T)
  return jnp.maximum(d2, 0.0)


def _log_gram(a, b, sigma):
  return -_sqdist(a, b) / (2.0 * jnp.asarray(sigma, a.dtype) ** 2)


def gaussian_gram(a: Float[Array, "n da"], b: Float[Array, "m da"] | None = None, *,
                  sigma: float) -> Float[Array, "n m"]:
  """The Gaussian Gram matrix ``G_ij = exp(-|a_i - b_j|^2 / (2 sigma^2))`` (unnormalised).

  Args:
    a: ``[N, d]`` samples.
    b: ``[M, d]`` samples (default ``a``).
    sigma: kernel width, finite and ``> 0``.

  Returns:
    ``[N, M]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import gaussian_gram
    >>> round(float(gaussian_gram(jnp.zeros((1, 1)), jnp.ones((1, 1)), sigma=1.0)[0, 0]), 4)
    0.6065
  """
  fn = "gaussian_gram"
  _check_2d(fn, "a", a)
  if b is None:
    b = a
  _check_2d(fn, "b", b)
  if a.shape[1] != b.shape[1] or jnp.dtype(a.dtype) != jnp.dtype(b.dtype):
    raise ValueError(f"{fn}: a and b must have the same feature size and dtype, got "
                     f"{V.describe(a)} and {V.describe(b)}")
  _check_sigma(fn, "sigma", sigma)
  return jnp.exp(_log_gram(a, b, sigma))


def _logmean(logk):
  return jax.nn.logsumexp(logk) - math.log(logk.size)


def cs_divergence(xp: Float[Array, "n d"], xq: Float[Array, "m d"], *,
                  sigma: float) -> Float[Array, ""]:
  """Cauchy-Schwarz divergence between two samples, in nats (the paper's 2x convention).

  .. math::
    D_{CS}(p; q) = \\log \\overline{K_{pp}} + \\log \\overline{K_{qq}}
    - 2 \\log \\overline{K_{pq}} \\;\\ge 0

  Args:
    xp: ``[N, d]`` samples of ``p``.
    xq: ``[M, d]`` samples of ``q``.
    sigma: kernel width, finite and ``> 0``.

  Returns:
    The estimate in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import cs_divergence
    >>> x = jnp.arange(6.0).reshape(3, 2)
    >>> abs(float(cs_divergence(x, x, sigma=1.0))) < 1e-6
    True
  """
  fn = "cs_divergence"
  _check_2d(fn, "xp", xp)
  _check_2d(fn, "xq", xq)
  if xp.shape[1] != xq.shape[1] or jnp.dtype(xp.dtype) != jnp.dtype(xq.dtype):
    raise ValueError(f"{fn}: xp and xq must have the same feature size and dtype, got "
                     f"{V.describe(xp)} and {V.describe(xq)}")
  _check_sigma(fn, "sigma", sigma)
  return (_logmean(_log_gram(xp, xp, sigma)) + _logmean(_log_gram(xq, xq, sigma))
          - 2.0 * _logmean(_log_gram(xp, xq, sigma)))


def _cs_qmi(x, y, sx, sy):
  n = x.shape[0]
  lk, lq = _log_gram(x, x, sx), _log_gram(y, y, sy)
  t1 = jax.nn.logsumexp(lk + lq) - 2 * math.log(n)
  t2 = jax.nn.logsumexp(lk) + jax.nn.logsumexp(lq) - 4 * math.log(n)
  rk, rq = jax.nn.logsumexp(lk, axis=1), jax.nn.logsumexp(lq, axis=1)   # log (K1)_i, log (Q1)_i
  t3 = jax.nn.logsumexp(rk + rq) - 3 * math.log(n)
  return t1 + t2 - 2.0 * t3


def cs_qmi(x: Float[Array, "n dx"], y: Float[Array, "n dy"], *, sigma_x: float,
           sigma_y: float) -> Float[Array, ""]:
  """Cauchy-Schwarz quadratic mutual information ``I_CS(X;Y)``, in nats (Prop. 2).

  .. math::
    I_{CS} = \\log\\frac{\\operatorname{tr}(KQ)}{N^2}
    + \\log\\frac{\\mathbf 1^\\top K\\mathbf 1\\,\\mathbf 1^\\top Q\\mathbf 1}{N^4}
    - 2\\log\\frac{\\mathbf 1^\\top K Q\\mathbf 1}{N^3}

  with ``K = Gram(x; sigma_x)``, ``Q = Gram(y; sigma_y)`` (symmetric, so ``tr(KQ) = sum K∘Q``),
  in log space. It is the CS divergence between ``p(x, y)`` and ``p(x) p(y)`` smoothed by the
  kernels; 0 for independent or constant variables.

  Args:
    x: ``[N, dx]``; y: ``[N, dy]`` paired samples (same dtype).
    sigma_x, sigma_y: kernel widths, finite and ``> 0``.

  Returns:
    The estimate in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import cs_qmi
    >>> x = jnp.arange(8.0).reshape(4, 2)
    >>> abs(float(cs_qmi(x, jnp.ones((4, 1)), sigma_x=1.0, sigma_y=1.0))) < 1e-6   # constant y
    True
  """
  fn = "cs_qmi"
  _check_2d(fn, "x", x)
  _check_2d(fn, "y", y)
  _check_rows(fn, ("x", "y"), (x, y))
  if jnp.dtype(x.dtype) != jnp.dtype(y.dtype):
    raise TypeError(f"{fn}: y must have the dtype of x, got {V.describe(x)} and {V.describe(y)}")
  _check_sigma(fn, "sigma_x", sigma_x)
  _check_sigma(fn, "sigma_y", sigma_y)
  return _cs_qmi(x, y, sigma_x, sigma_y)


def cs_qmi_normalized(x: Float[Array, "n dx"], y: Float[Array, "n dy"], *,
                      sigma: float) -> Float[Array, ""]:
  """The normalised CS-QMI ``I_CS(x, y) / sqrt(I_CS(x, x) I_CS(y, y))`` (unit-free).

  The compression term of the released CS-IB training script (``CS_QMI_normalized``), one
  kernel width for both variables. Undefined (NaN) for a constant variable.

  Args:
    x: ``[N, dx]``; y: ``[N, dy]``.
    sigma: kernel width, finite and ``> 0``.

  Returns:
    The ratio, a scalar.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import cs_qmi_normalized
    >>> x = jnp.arange(8.0).reshape(4, 2)
    >>> round(float(cs_qmi_normalized(x, x, sigma=1.0)), 4)
    1.0
  """
  fn = "cs_qmi_normalized"
  _check_2d(fn, "x", x)
  _check_2d(fn, "y", y)
  _check_rows(fn, ("x", "y"), (x, y))
  if jnp.dtype(x.dtype) != jnp.dtype(y.dtype):
    raise TypeError(f"{fn}: y must have the dtype of x, got {V.describe(x)} and {V.describe(y)}")
  _check_sigma(fn, "sigma", sigma)
  return _cs_qmi(x, y, sigma, sigma) / jnp.sqrt(_cs_qmi(x, x, sigma, sigma)
                                                * _cs_qmi(y, y, sigma, sigma))


def conditional_cs_divergence(x: Float[Array, "n dx"], y: Float[Array, "n dy"],
                              y_hat: Float[Array, "n dy"], *, sigma_x: float, sigma_y: float,
                              denominator: str = "sq_of_sum") -> Float[Array, ""]:
  """Conditional CS divergence ``D_CS(p(y|x) || q(y_hat|x))``, in nats (Prop. 1).

  .. math::
    D = \\log\\sum_j \\frac{\\sum_i K_{ji}L^{1}_{ji}}{d_j}
    + \\log\\sum_j \\frac{\\sum_i K_{ji}L^{2}_{ji}}{d_j}
    - 2\\log\\sum_j \\frac{\\sum_i K_{ji}L^{21}_{ji}}{d_j}

  with ``K = Gram(x)``, ``L1 = Gram(y)``, ``L2 = Gram(y_hat)``, ``L21_ji = k(y_hat_j, y_i)``;
  ``d_j = (sum_i K_ji)^2`` (``"sq_of_sum"``, the derivation) or ``sum_i K_ji^2``
  (``"sum_of_sq"``, the released code). 0 when ``y_hat = y``.

  Args:
    x: ``[N, dx]`` inputs; y: ``[N, dy]`` targets; y_hat: ``[N, dy]`` predictions.
    sigma_x, sigma_y: kernel widths of ``x`` and of ``y``/``y_hat``.
    denominator: ``"sq_of_sum"`` or ``"sum_of_sq"``.

  Returns:
    The estimate in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import conditional_cs_divergence
    >>> x = jnp.arange(8.0).reshape(4, 2); y = jnp.arange(4.0)[:, None]
    >>> abs(float(conditional_cs_divergence(x, y, y, sigma_x=1.0, sigma_y=1.0))) < 1e-6
    True
  """
  fn = "conditional_cs_divergence"
  for arg, a in (("x", x), ("y", y), ("y_hat", y_hat)):
    _check_2d(fn, arg, a)
  V.check_same_shape(fn, "y", y, "y_hat", y_hat)
  _check_rows(fn, ("x", "y"), (x, y))
  if len({jnp.dtype(a.dtype) for a in (x, y, y_hat)}) != 1:
    raise TypeError(f"{fn}: x, y and y_hat must have the same dtype, got {V.describe(x)}, "
                    f"{V.describe(y)}, {V.describe(y_hat)}")
  _check_sigma(fn, "sigma_x", sigma_x)
  _check_sigma(fn, "sigma_y", sigma_y)
  V.check_choice(fn, "denominator", denominator, DENOMINATORS)
  lk = _log_gram(x, x, sigma_x)
  if denominator == "sq_of_sum":
    log_d = 2.0 * jax.nn.logsumexp(lk, axis=1)
  else:
    log_d = jax.nn.logsumexp(2.0 * lk, axis=1)

  def term(log_l):
    return jax.nn.logsumexp(jax.nn.logsumexp(lk + log_l, axis=1) - log_d)

  return (term(_log_gram(y, y, sigma_y)) + term(_log_gram(y_hat, y_hat, sigma_y))
          - 2.0 * term(_log_gram(y_hat, y, sigma_y)))


def median_bandwidth(x: Float[Array, "n d"], *, mode: str = "sqrt", scale: float = 1.0,
                     floor: float = 1e-2) -> Float[Array, ""]:
  """A kernel width from the median pairwise distance.

  ``mode="sqrt"``: ``scale * median_{i<j} |x_i - x_j|`` (the usual heuristic);
  ``mode="reference_sq"``: ``scale * median_{i<j} |x_i - x_j|^2`` (the released CS-IB code's
  ``sigma_estimation``, used there with ``scale=10``). The mean replaces a zero median and the
  result is at least ``floor``, as in the reference.

  Args:
    x: ``[N, d]`` samples, ``N >= 2``.
    mode: ``"sqrt"`` or ``"reference_sq"``.
    scale: a positive factor.
    floor: the smallest width returned (``>= 0``).

  Returns:
    The width, a scalar.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import median_bandwidth
    >>> float(median_bandwidth(jnp.array([[0.0], [1.0], [3.0]])))
    2.0
  """
  fn = "median_bandwidth"
  _check_2d(fn, "x", x)
  if x.shape[0] < 2:
    raise ValueError(f"{fn}: x must hold at least 2 samples, got {V.describe(x)}")
  V.check_choice(fn, "mode", mode, ("sqrt", "reference_sq"))
  V.check_scalar(fn, "scale", scale, low=0.0, low_inclusive=False)
  V.check_scalar(fn, "floor", floor, low=0.0)
  n = x.shape[0]
  iu = np.triu_indices(n, 1)
  d2 = _sqdist(x, x)[iu]
  d = d2 if mode == "reference_sq" else jnp.sqrt(d2)
  med = jnp.median(d)
  med = jnp.where(med > 0, med, jnp.mean(d))
  return jnp.maximum(jnp.asarray(scale, x.dtype) * med, jnp.asarray(floor, x.dtype))


class CSIBLoss(NamedTuple):
  """Result of :func:`cs_ib_loss` (nats, except the unit-free normalised QMI).

  Attributes:
    loss: ``prediction + beta * compression``.
    prediction: the conditional CS divergence ``D_CS(p(y|x) || q(y_hat|x))``.
    compression: ``I_CS(x; t)``, normalised or not.
  """
  loss: Float[Array, ""]
  prediction: Float[Array, ""]
  compression: Float[Array, ""]


def cs_ib_loss(x: Float[Array, "n dx"], y: Float[Array, "n dy"], y_hat: Float[Array, "n dy"],
               t: Float[Array, "n dt"], *, beta: float, sigma: float = 1.0,
               normalized: bool = True, denominator: str = "sq_of_sum") -> CSIBLoss:
  """The CS-IB objective for regression: ``D_CS(p(y|x) || q(y_hat|x)) + beta * I_CS(x; t)``.

  One kernel width ``sigma`` for ``x``, ``y``, ``y_hat`` and ``t`` (the released script: 1 on
  standardised inputs and targets). ``normalized=True`` uses :func:`cs_qmi_normalized`.

  Args:
    x: ``[N, dx]`` inputs; y: ``[N, dy]`` targets; y_hat: ``[N, dy]`` predictions;
    t: ``[N, dt]`` the representation.
    beta: the compression weight, ``>= 0``.
    sigma: kernel width.
    normalized: normalise the QMI.
    denominator: see :func:`conditional_cs_divergence`.

  Returns:
    :class:`CSIBLoss` ``(loss, prediction, compression)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import cs_ib_loss
    >>> x = jnp.arange(8.0).reshape(4, 2) / 4; y = jnp.arange(4.0)[:, None] / 4
    >>> out = cs_ib_loss(x, y, y, x, beta=0.1)
    >>> round(float(out.prediction), 4), round(float(out.compression), 4)
    (0.0, 1.0)
  """
  fn = "cs_ib_loss"
  V.check_scalar(fn, "beta", beta, low=0.0)
  for arg, a in (("x", x), ("y", y), ("y_hat", y_hat), ("t", t)):
    _check_2d(fn, arg, a)
  V.check_same_shape(fn, "y", y, "y_hat", y_hat)
  _check_rows(fn, ("x", "y"), (x, y))
  if len({jnp.dtype(a.dtype) for a in (x, y, y_hat, t)}) != 1:
    raise TypeError(f"{fn}: x, y, y_hat and t must have the same dtype, got {V.describe(x)}, "
                    f"{V.describe(y)}, {V.describe(y_hat)}, {V.describe(t)}")
  _check_sigma(fn, "sigma", sigma)
  V.check_choice(fn, "denominator", denominator, DENOMINATORS)
  _check_rows(fn, ("x", "t"), (x, t))
  pred = conditional_cs_divergence(x, y, y_hat, sigma_x=sigma, sigma_y=sigma,
                                   denominator=denominator)
  if jnp.dtype(t.dtype) != jnp.dtype(x.dtype):
    raise TypeError(f"{fn}: t must have the dtype of x, got {V.describe(x)} and {V.describe(t)}")
  comp = (cs_qmi_normalized(x, t, sigma=sigma) if normalized
          else cs_qmi(x, t, sigma_x=sigma, sigma_y=sigma))
  return CSIBLoss(pred + jnp.asarray(beta, pred.dtype) * comp, pred, comp)


class CSIBOutput(NamedTuple):
  """What :class:`CSIBRegressor` returns: the representation ``t [B, K]`` and ``y_hat [B, 1]``."""
  t: Float[Array, "b k"]
  y_hat: Float[Array, "b dy"]


class CSIBRegressor(nnx.Module):
  """A deterministic MLP encoder ``x -> t`` and decoder ``t -> y_hat`` for CS-IB regression.

  The reference architecture: encoder ``in -> hidden -> hidden -> latent`` (ReLU), decoder
  ``latent -> hidden -> out``.

  Args:
    in_dim: input features.
    latent_dim: size of ``t``.
    hidden: width of the hidden layers.
    out_dim: target size.
    rngs: ``nnx.Rngs``.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.information import CSIBRegressor
    >>> out = CSIBRegressor(8, latent_dim=4, hidden=16, rngs=nnx.Rngs(0))(jnp.zeros((3, 8)))
    >>> out.t.shape, out.y_hat.shape
    ((3, 4), (3, 1))
  """

  def __init__(self, in_dim: int, *, latent_dim: int = 128, hidden: int = 128,
               out_dim: int = 1, rngs: nnx.Rngs):
    fn = "CSIBRegressor"
    for arg, v in (("in_dim", in_dim), ("latent_dim", latent_dim), ("hidden", hidden),
                   ("out_dim", out_dim)):
      V.check_scalar(fn, arg, v, low=1, integer=True)
    sizes: Sequence[int] = (in_dim, hidden, hidden, latent_dim)
    self.encoder = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
    self.decoder = nnx.List([nnx.Linear(latent_dim, hidden, rngs=rngs),
                             nnx.Linear(hidden, out_dim, rngs=rngs)])

  def __call__(self, x: Float[Array, "b d"]) -> CSIBOutput:
    h = x
    for i, layer in enumerate(self.encoder):
      h = layer(h)
      if i < len(self.encoder) - 1:
        h = jax.nn.relu(h)
    t = h
    y_hat = self.decoder[1](jax.nn.relu(self.decoder[0](t)))
    return CSIBOutput(t, y_hat)


__all__ = [
    "CSIBLoss",
    "CSIBOutput",
    "CSIBRegressor",
    "conditional_cs_divergence",
    "cs_divergence",
    "cs_ib_loss",
    "cs_qmi",
    "cs_qmi_normalized",
    "gaussian_gram",
    "median_bandwidth",
]
