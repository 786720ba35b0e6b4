"""Procedural data with exact ground-truth mutual information.

Offline, seeded generators whose information content is known in closed form, so that MI
estimators and information-plane analyses can be tested against the truth rather than against
themselves:

* :func:`correlated_gaussians`: ``n`` pairs ``(x, y)`` in ``R^dim x R^dim`` whose components
  ``(x_k, y_k)`` are standard normal with correlation ``rho`` and independent across ``k``:

  .. math::
     y = \\rho\\, x + \\sqrt{1 - \\rho^2}\\, \\varepsilon,\\quad x, \\varepsilon \\sim N(0, I),
     \\qquad I(X;Y) = -\\frac{\\text{dim}}{2} \\log(1 - \\rho^2) \\ \\text{nats}.

* :func:`tishby12`: the 12-bit data set of Shwartz-Ziv & Tishby (2017): all ``2^12 = 4096``
  binary inputs in increasing binary order (bit 0 is the most significant), labelled by the
  rotation-invariant rule

  .. math::
     y = \\mathbb 1\\Big[\\textstyle\\sum_i x_i + \\big\\|\\sum_i x_i v_i\\big\\|_2 > \\theta\\Big],
     \\qquad \\theta = 7.63,

  where ``v_1..v_12`` are the vertices of a regular icosahedron (12 points on the unit sphere,
  coordinates built from the golden ratio ``phi``: ``a = 1/sqrt(1+phi^2)``,
  ``b = phi/sqrt(1+phi^2)``). Every ``theta`` in ``(7.5628, 7.7013)`` gives the same labels.
  The result is 2118 positives out of 4096 (``p(y=1) = 0.51709``), so
  ``I(X;Y) = H(Y) = 0.999157`` bits: the labels are a deterministic function of the inputs.
* :func:`additive_uniform`: ``X ~ U(0, 1)``, ``Y = X + U(-epsilon, epsilon)``, with
  ``I(X;Y) = epsilon - log(2 epsilon)`` nats for ``epsilon <= 1/2`` and ``1/(4 epsilon)`` above
  (the ``AdditiveUniformSampler`` task of cbg-ethz/bmi; derivation in Czyż et al. 2023).
* :func:`discrete_mutual_information` and :func:`discrete_entropy`: exact information of a
  probability table, ``I(A;B) = sum_ab p(a,b) log[p(a,b) / (p(a) p(b))]`` (``0 log 0 = 0``).

Departure from the paper: the paper describes the labels only as "a spherically symmetric
function of 12 points on a sphere"; the original data file (``data/var_u.mat`` in ravidziv/IDNNs)
is not redistributable, so the data set is generated, not shipped. The rule above was derived
from that file's labels and reported to reproduce all 4096 of them; the file itself is not
available offline, so the tests check the generator against the label statistics reported for
the file (2118 ones; by popcount ``k``: none for ``k <= 4``, 60/792, 532/924, 732/792 for
``k = 5, 6, 7``, all for ``k >= 8``).

All quantities are in **nats** (divide by ``ln 2`` for bits).

References:
  Ravid Shwartz-Ziv, Naftali Tishby, "Opening the Black Box of Deep Neural Networks via
  Information", 2017, https://arxiv.org/abs/1703.00810; code ravidziv/IDNNs.
  Thomas M. Cover, Joy A. Thomas, "Elements of Information Theory", 2nd ed., 2006
  (differential entropy and mutual information of Gaussians, chapter 8).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.rng import as_key

__all__ = [
    "AdditiveUniform",
    "CorrelatedGaussians",
    "Tishby12",
    "additive_uniform",
    "additive_uniform_mutual_information",
    "correlated_gaussians",
    "discrete_entropy",
    "discrete_mutual_information",
    "gaussian_mutual_information",
    "tishby12",
]

TISHBY12_THRESHOLD = 7.63


class CorrelatedGaussians(NamedTuple):
  """Samples of correlated Gaussians and their exact mutual information.

  Attributes:
    x: samples of ``X``, shape ``[n, dim]``.
    y: samples of ``Y``, shape ``[n, dim]``; ``corr(x[:, k], y[:, k]) = rho``.
    mutual_information: ``I(X;Y) = -dim/2 * log(1 - rho^2)`` in nats (a Python float).
  """
  x: Float[Array, "n dim"]
  y: Float[Array, "n dim"]
  mutual_information: float


class Tishby12(NamedTuple):
  """The 12-bit data set of Shwartz-Ziv & Tishby (2017).

  Attributes:
    x: all 4096 binary inputs, shape ``[4096, 12]``, values 0/1, row ``i`` is ``i`` in binary
      (bit 0 = most significant).
    y: the labels, shape ``[4096]``, int32 in ``{0, 1}``.
  """
  x: Float[Array, "4096 12"]
  y: Int[Array, "4096"]


def gaussian_mutual_information(rho: float, *, dim: int = 1) -> float:
  """``I(X;Y) = -dim/2 * log(1 - rho^2)`` nats for ``dim`` independent pairs of correlation rho.

  Example:
    >>> from bottleneck_jax.data.synthetic import gaussian_mutual_information
    >>> round(gaussian_mutual_information(0.5), 4)
    0.1438
  """
  fn = "gaussian_mutual_information"
  V.check_scalar(fn, "rho", rho, low=-1.0, high=1.0, low_inclusive=False, high_inclusive=False)
  V.check_scalar(fn, "dim", dim, low=1, integer=True)
  return -0.5 * int(dim) * math.log1p(-float(rho) ** 2)


def correlated_gaussians(n: int, *, dim: int = 1, rho: float, key,
                         dtype=jnp.float32) -> CorrelatedGaussians:
  """Samples ``n`` pairs of ``dim``-dimensional correlated Gaussians with known MI.

  .. math::
     x \\sim N(0, I_{dim}),\\quad y = \\rho x + \\sqrt{1-\\rho^2}\\,\\varepsilon,\\quad
     \\varepsilon \\sim N(0, I_{dim}),\\qquad I(X;Y) = -\\tfrac{dim}{2}\\log(1-\\rho^2).

  Args:
    n: number of samples, ``n >= 1``.
    dim: dimension of ``X`` and of ``Y``, ``dim >= 1``.
    rho: per-component correlation, ``-1 < rho < 1``.
    key: a ``jax.random.key`` or an int seed.
    dtype: floating dtype of the samples.

  Returns:
    :class:`CorrelatedGaussians` ``(x [n, dim], y [n, dim], mutual_information)`` with the MI in
    nats.

  Example:
    >>> import jax
    >>> from bottleneck_jax.data import correlated_gaussians
    >>> x, y, mi = correlated_gaussians(100, dim=2, rho=0.8, key=jax.random.key(0))
    >>> x.shape, y.shape, round(mi, 4)
    ((100, 2), (100, 2), 1.0217)

  References:
    Cover & Thomas, "Elements of Information Theory", 2006, chapter 8 (Gaussian mutual information).
  """
  fn = "correlated_gaussians"
  V.check_scalar(fn, "n", n, low=1, integer=True)
  V.check_scalar(fn, "dim", dim, low=1, integer=True)
  V.check_scalar(fn, "rho", rho, low=-1.0, high=1.0, low_inclusive=False,
                 high_inclusive=False, static=True)
  try:
    dt = jnp.dtype(dtype)
  except TypeError:
    dt = None
  if dtype is None or dt is None or not jnp.issubdtype(dt, jnp.floating):
    raise TypeError(f"{fn}: dtype must be a floating dtype, got {dtype!r}")
  key = as_key(key, fn=fn)
  kx, ke = jax.random.split(key)
  n, dim, rho = int(n), int(dim), float(rho)
  x = jax.random.normal(kx, (n, dim), dtype=dtype)
  eps = jax.random.normal(ke, (n, dim), dtype=dtype)
  y = jnp.asarray(rho, dtype) * x + jnp.asarray(math.sqrt(1.0 - rho * rho), dtype) * eps
  return CorrelatedGaussians(x, y, gaussian_mutual_information(rho, dim=dim))


def _icosahedron() -> np.ndarray:
  phi = (1.0 + math.sqrt(5.0)) / 2.0
  a = 1.0 / math.sqrt(1.0 + phi * phi)
  b = phi / math.sqrt(1.0 + phi * phi)
  return np.array([(0, -a, -b), (-a, -b, 0), (0, -a, b), (a, -b, 0), (-b, 0, a), (0, a, -b),
                   (-a, b, 0), (a, b, 0), (b, 0, a), (0, a, b), (b, 0, -a), (-b, 0, -a)],
                  np.float64)


def tishby12(*, dtype=jnp.float32) -> Tishby12:
  """The 12-bit data set of Shwartz-Ziv & Tishby (2017), generated exactly.

  .. math::
     y = \\mathbb 1\\Big[\\textstyle\\sum_i x_i + \\big\\|\\sum_i x_i v_i\\big\\|_2 > 7.63\\Big]

  with ``v_i`` the 12 icosahedron vertices (see the module docstring). Deterministic: no key.

  Args:
    dtype: dtype of the inputs ``x`` (floating or integer).

  Returns:
    :class:`Tishby12` ``(x [4096, 12], y int32 [4096])``; 2118 labels are 1.

  Example:
    >>> from bottleneck_jax.data import tishby12
    >>> x, y = tishby12()
    >>> x.shape, int(y.sum())
    ((4096, 12), 2118)

  References:
    Shwartz-Ziv & Tishby, "Opening the Black Box of Deep Neural Networks via Information", 2017,
    https://arxiv.org/abs/1703.00810.
  """
  bits = (np.arange(4096)[:, None] >> np.arange(11, -1, -1)[None, :]) & 1
  field = np.linalg.norm(bits.astype(np.float64) @ _icosahedron(), axis=-1)
  y = (bits.sum(-1) + field > TISHBY12_THRESHOLD).astype(np.int32)
  return Tishby12(jnp.asarray(bits, dtype=dtype), jnp.asarray(y))


class AdditiveUniform(NamedTuple):
  """Samples of ``Y = X + noise`` with uniform ``X`` and noise, and the exact MI.

  Attributes:
    x: samples of ``X ~ U(0, 1)``, shape ``[n, 1]``.
    y: samples of ``Y = X + U(-epsilon, epsilon)``, shape ``[n, 1]``.
    mutual_information: ``I(X;Y)`` in nats (a Python float).
  """
  x: Float[Array, "n 1"]
  y: Float[Array, "n 1"]
  mutual_information: float


def additive_uniform_mutual_information(epsilon: float) -> float:
  """``I(X;Y)`` in nats for ``X ~ U(0,1)``, ``Y = X + U(-epsilon, epsilon)``.

  .. math::
     I = \\begin{cases}\\epsilon - \\log 2\\epsilon & \\epsilon \\le 1/2\\\\
     1/(4\\epsilon) & \\epsilon > 1/2\\end{cases}

  Example:
    >>> from bottleneck_jax.data import additive_uniform_mutual_information
    >>> round(additive_uniform_mutual_information(0.75), 4)
    0.3333
  """
  fn = "additive_uniform_mutual_information"
  V.check_scalar(fn, "epsilon", epsilon, low=0.0, low_inclusive=False, static=True)
  e = float(epsilon)
  if not math.isfinite(e):
    raise ValueError(f"{fn}: epsilon must be finite, got {epsilon}")
  return e - math.log(2 * e) if e <= 0.5 else 1.0 / (4 * e)


def additive_uniform(n: int, *, epsilon: float, key, dtype=jnp.float32) -> AdditiveUniform:
  """Samples ``X ~ U(0, 1)`` and ``Y = X + N`` with ``N ~ U(-epsilon, epsilon)``, and the MI.

  ``h(Y|X) = log(2 epsilon)``; ``h(Y)`` is the entropy of the trapezoidal density of ``Y``, which
  gives :func:`additive_uniform_mutual_information`.

  Args:
    n: number of samples, ``n >= 1``.
    epsilon: half-width of the noise, finite and ``> 0``.
    key: a ``jax.random.key`` or an int seed.
    dtype: floating dtype of the samples.

  Returns:
    :class:`AdditiveUniform` ``(x [n, 1], y [n, 1], mutual_information)`` (nats).

  Example:
    >>> from bottleneck_jax.data import additive_uniform
    >>> x, y, mi = additive_uniform(5, epsilon=0.1, key=0)
    >>> x.shape, round(mi, 4)
    ((5, 1), 1.7094)

  References:
    Czyż, Grabowski, Vogt, Beerenwinkel, Marx, "Beyond Normal: On the Evaluation of Mutual
    Information Estimators", NeurIPS 2023 (the additive-noise task of cbg-ethz/bmi).
  """
  fn = "additive_uniform"
  V.check_scalar(fn, "n", n, low=1, integer=True)
  mi = additive_uniform_mutual_information(epsilon)
  try:
    dt = jnp.dtype(dtype)
  except TypeError:
    dt = None
  if dtype is None or dt is None or not jnp.issubdtype(dt, jnp.floating):
    raise TypeError(f"{fn}: dtype must be a floating dtype, got {dtype!r}")
  key = as_key(key, fn=fn)
  kx, kn = jax.random.split(key)
  x = jax.random.uniform(kx, (int(n), 1), dtype=dtype)
  noise = jax.random.uniform(kn, (int(n), 1), dtype=dtype, minval=-float(epsilon),
                             maxval=float(epsilon))
  return AdditiveUniform(x, x + noise, mi)


def _check_table(fn: str, arg: str, p, rank: int) -> None:
  V.check_floating(fn, arg, p)
  V.check_rank(fn, arg, p, rank)
  if 0 in tuple(p.shape):
    raise ValueError(f"{fn}: {arg} must be a non-empty probability table, got {V.describe(p)}")
  if isinstance(p, jax.core.Tracer):
    return
  a = np.asarray(p, np.float64)
  if not np.all(np.isfinite(a)) or np.any(a < 0):
    raise ValueError(f"{fn}: {arg} must hold finite non-negative probabilities, got min "
                     f"{np.nanmin(a):.3g}")
  total = float(a.sum())
  tol = 1e-3 if jnp.dtype(p.dtype).itemsize <= 2 else 1e-5
  if abs(total - 1.0) > tol:
    raise ValueError(f"{fn}: {arg} must sum to 1 (a probability table), got sum {total:.6g}")


def _plogp(p):
  return jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1)), jnp.zeros_like(p))


def discrete_entropy(p: Float[Array, "k"]) -> Float[Array, ""]:
  """Exact Shannon entropy ``H = -sum_i p_i log p_i`` of a probability vector, in nats.

  Args:
    p: probabilities, shape ``[k]``, floating, non-negative, summing to 1 (checked when
      concrete).

  Returns:
    The entropy in nats, a scalar (``0 log 0 = 0``).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.data import discrete_entropy
    >>> round(float(discrete_entropy(jnp.array([0.5, 0.5]))), 4)  # log 2
    0.6931
  """
  _check_table("discrete_entropy", "p", p, 1)
  return -jnp.sum(_plogp(p))


def discrete_mutual_information(joint: Float[Array, "a b"]) -> Float[Array, ""]:
  """Exact mutual information of a joint probability table, in nats.

  .. math::
     I(A;B) = \\sum_{a,b} p(a,b) \\log \\frac{p(a,b)}{p(a)\\,p(b)} = H(A) + H(B) - H(A,B)

  Args:
    joint: ``p(a, b)``, shape ``[|A|, |B|]``, floating, non-negative, summing to 1 (checked
      when concrete). Works under ``jit`` and ``grad``.

  Returns:
    ``I(A;B)`` in nats, a scalar.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.data import discrete_mutual_information
    >>> round(float(discrete_mutual_information(jnp.array([[0.5, 0.0], [0.0, 0.5]]))), 4)
    0.6931

  References:
    Cover & Thomas, "Elements of Information Theory", 2006, chapter 2 (mutual information).
  """
  _check_table("discrete_mutual_information", "joint", joint, 2)
  pa = jnp.sum(joint, axis=1)
  pb = jnp.sum(joint, axis=0)
  return jnp.sum(_plogp(joint)) - jnp.sum(_plogp(pa)) - jnp.sum(_plogp(pb))
