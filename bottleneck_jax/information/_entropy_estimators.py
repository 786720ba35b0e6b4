"""Entropy and mutual-information estimators that the information-family papers share.

Estimators of differential entropy, discrete (plug-in) entropy, kernel-density bounds, a
variational upper bound on MI, and closed forms, all in **nats** (:func:`to_bits` converts):

* :func:`gaussian_mi`: the closed form for a jointly Gaussian pair,
  ``I(X;Y) = 1/2 (log det S_xx + log det S_yy - log det S)``.
* :func:`kl_entropy`: the Kozachenko-Leonenko nearest-neighbour entropy with the max-norm (the
  estimator behind KSG; Kraskov et al. 2004, eq. 20),
  ``H = psi(N) - psi(k) + d log 2 + d mean_i log r_k(i)``, ``r_k(i)`` the max-norm distance from
  ``x_i`` to its ``k``-th neighbour.
* :func:`row_entropy` and :func:`discrete_mi`: plug-in entropy of discrete rows (each distinct
  row of a code matrix is one symbol) and ``I(A;B) = H(A) + H(B) - H(A,B)``. Sorting, not
  boolean indexing: the rows are sorted lexicographically, a new symbol starts where any column
  changes, and counts come from ``jax.ops.segment_sum`` with a static number of segments, so
  they jit and vmap.
* :func:`kde_entropy_upper`, :func:`kde_entropy_lower`, :func:`kde_mi`: the pairwise-distance
  bounds of Kolchinsky & Tracey (2017) on the entropy of a mixture of Gaussians
  ``T + N(0, var I)`` centred on the samples (used by Saxe et al. 2018 and Chelombiev et al.
  2019 for the information plane):

    H_up(T)  = d/2 - mean_i log[(1/N) sum_j N(h_i; h_j, var I)]          (pairwise KL)
    H_low(T) = H_up(T; 4 var) + (d/2) log(1/4)                           (Bhattacharyya)
    I(X;T)   = H_up(T) - (d/2)(log 2 pi var + 1),   I(T;Y) = H_up(T) - sum_y p(y) H_up(T|y)

* :func:`club_upper_bound`: CLUB (Cheng et al. 2020), ``mean_i log q(y_i|x_i) -
  mean_{i,j} log q(y_j|x_i)`` for a diagonal-Gaussian variational conditional ``q(y|x)``.

Memory. The ``O(N^2)`` pairwise work of :func:`kl_entropy` and the KDE bounds runs over blocks
of ``block_size`` rows (``jax.lax.map``), so peak memory is ``O(block_size * N)``; ``None``
processes all rows at once for the KDE bounds and picks a bounded block for :func:`kl_entropy`.

Departures / choices:
- Nothing is clipped and no jitter is added: a continuous estimator fed duplicated points gives
  ``-inf`` (a zero neighbour distance), which is the honest answer for a distribution with
  atoms; add noise yourself if you want NPEET's behaviour.
- :func:`kde_mi`'s conditional entropies use the same ``var`` and the class-conditional
  mixtures; ``p(y)`` is the empirical class frequency (as in Kolchinsky's ``kde.py``).

References:
  Kozachenko, Leonenko, "Sample estimate of the entropy of a random vector", 1987;
  Kraskov, Stögbauer, Grassberger, "Estimating mutual information", Phys. Rev. E 2004,
  https://arxiv.org/abs/cond-mat/0305641;
  Kolchinsky, Tracey, "Estimating Mixture Entropy with Pairwise Distances", Entropy 2017,
  https://arxiv.org/abs/1706.02419;
  Cheng, Hao, Dai, Liu, Gan, Carin, "CLUB: A Contrastive Log-ratio Upper Bound of Mutual
  Information", ICML 2020, https://arxiv.org/abs/2006.12013.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.information._knn import kth_neighbour_distance
from bottleneck_jax.kernels.sharding import replicate

# ------------------------------------------------------------------------------------------
# private helpers
# ------------------------------------------------------------------------------------------


def _check_samples(fn: str, arg: str, x, *, allow_1d: bool = True) -> None:
  V.check_floating(fn, arg, x)
  V.check_rank(fn, arg, x, (1, 2) if allow_1d else 2)
  if x.shape[0] < 1:
    raise ValueError(f"{fn}: {arg} must hold at least one sample, got {V.describe(x)}")
  if x.ndim == 2 and x.shape[1] < 1:
    raise ValueError(f"{fn}: {arg} must have at least one feature (shape [N, d], d >= 1), "
                     f"got {V.describe(x)}")


def _check_block_size(fn: str, block_size) -> None:
  if block_size is not None:
    V.check_scalar(fn, "block_size", block_size, low=1, integer=True, static=True)


def _check_variance(fn: str, var) -> None:
  if isinstance(var, jax.core.Tracer):
    return
  V.check_scalar(fn, "var", var, low=0.0, low_inclusive=False)
  if not math.isfinite(float(var)):
    raise ValueError(f"{fn}: var must be a finite positive number, got {var}")


def _map_rows(fn: Callable, n: int, block_size: int | None, *arrays):
  """``fn(idx [b], *rows [b, ...]) -> [b, ...]`` over blocks of ``block_size`` rows."""
  idx = jnp.arange(n)
  if block_size is None or block_size >= n:
    return fn(idx, *arrays)
  b = int(block_size)
  nb = -(-n // b)
  pad = nb * b - n
  padded = [jnp.pad(a, ((0, pad),) + ((0, 0),) * (a.ndim - 1)) for a in (idx, *arrays)]
  blocks = [a.reshape(nb, b, *a.shape[1:]) for a in padded]
  out = jax.lax.map(lambda args: fn(*args), tuple(blocks))
  return jax.tree.map(lambda o: o.reshape(nb * b, *o.shape[2:])[:n], out)


def _plogp_counts(counts, total):
  p = counts / total
  return jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1)), jnp.zeros_like(p))


# ------------------------------------------------------------------------------------------
# closed forms
# ------------------------------------------------------------------------------------------


def gaussian_mi(cov: Float[Array, "d d"], *, dx: int) -> Float[Array, ""]:
  """Mutual information between the first ``dx`` and the remaining coordinates of a Gaussian.

  .. math::
    I(X;Y) = \\tfrac12\\big(\\log\\det\\Sigma_{xx} + \\log\\det\\Sigma_{yy}
    - \\log\\det\\Sigma\\big)\\ \\text{nats}

  Args:
    cov: the joint covariance ``[dx + dy, dx + dy]``, symmetric positive definite.
    dx: the dimension of ``X``, ``1 <= dx < d``.

  Returns:
    ``I(X;Y)`` in nats, a scalar.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import gaussian_mi
    >>> round(float(gaussian_mi(jnp.array([[1.0, 0.5], [0.5, 1.0]]), dx=1)), 4)
    0.1438
  """
  fn = "gaussian_mi"
  V.check_floating(fn, "cov", cov)
  V.check_rank(fn, "cov", cov, 2)
  d = cov.shape[0]
  if cov.shape[1] != d or d < 2:
    raise ValueError(f"{fn}: cov must be a square [d, d] covariance with d >= 2, got "
                     f"{V.describe(cov)}")
  V.check_scalar(fn, "dx", dx, low=1, high=d - 1, integer=True, static=True)
  dx = int(dx)
  ld = lambda m: jnp.linalg.slogdet(m)[1]
  return 0.5 * (ld(cov[:dx, :dx]) + ld(cov[dx:, dx:]) - ld(cov))


# ------------------------------------------------------------------------------------------
# nearest-neighbour entropy
# ------------------------------------------------------------------------------------------


def kl_entropy(x: Float[Array, "n d"], *, k: int = 3,
               block_size: int | None = None) -> Float[Array, ""]:
  """Kozachenko-Leonenko differential entropy with the max-norm, in nats.

  .. math::
    \\hat H = \\psi(N) - \\psi(k) + d\\log 2 + \\frac dN\\sum_i \\log r_k(i)

  with ``r_k(i)`` the max-norm distance from ``x_i`` to its ``k``-th nearest other sample (the
  volume of the max-norm ball of radius ``r`` is ``(2r)^d``). Same convention as NPEET's
  ``entropy(x, k, base=e)`` without its jitter.

  Args:
    x: samples, ``[N]`` or ``[N, d]``, floating.
    k: the neighbour order, a static int with ``1 <= k < N``.
    block_size: rows per block of the pairwise search (``None``: a size that keeps a block's
      distances within a few tens of MiB; the value does not change the result).

  Returns:
    The estimate in nats (differential entropy: may be negative).

  Example:
    >>> import jax
    >>> from bottleneck_jax.information import kl_entropy
    >>> x = jax.random.normal(jax.random.key(0), (2000, 1))
    >>> abs(float(kl_entropy(x, k=3)) - 1.4189) < 0.1   # N(0, 1): 0.5 log(2 pi e)
    True

  References:
    Kozachenko & Leonenko 1987; Kraskov et al. 2004, eq. 20.
  """
  fn = "kl_entropy"
  _check_samples(fn, "x", x)
  V.check_scalar(fn, "k", k, low=1, integer=True, static=True)
  _check_block_size(fn, block_size)
  n = x.shape[0]
  if k >= n:
    raise ValueError(f"{fn}: k must be < N (the number of samples, {n}), got {k}")
  k = int(k)
  x2 = replicate(x).reshape(n, -1)
  d = x2.shape[1]

  r = kth_neighbour_distance(x2, k, block_size)
  dt = x.dtype
  return (digamma(jnp.asarray(n, dt)) - digamma(jnp.asarray(k, dt))
          + jnp.asarray(d * math.log(2.0), dt) + d * jnp.mean(jnp.log(r)))


# ------------------------------------------------------------------------------------------
# discrete (plug-in) entropy and MI
# ------------------------------------------------------------------------------------------


def _as_code_matrix(fn: str, arg: str, codes):
  V.check_integer(fn, arg, codes)
  V.check_rank(fn, arg, codes, (1, 2))
  if codes.shape[0] < 1:
    raise ValueError(f"{fn}: {arg} must hold at least one row, got {V.describe(codes)}")
  if codes.ndim == 2 and codes.shape[1] < 1:
    raise ValueError(f"{fn}: {arg} must have at least one column, got {V.describe(codes)}")
  return codes.reshape(codes.shape[0], -1)


def _row_entropy(codes, weights):
  keys = tuple(codes[:, j] for j in range(codes.shape[1] - 1, -1, -1))  # column 0 is primary
  order = jnp.lexsort(keys)
  s = codes[order]
  new = jnp.concatenate([jnp.ones((1,), bool), jnp.any(s[1:] != s[:-1], axis=1)])
  return _run_entropy(new, weights[order])


def _run_entropy(new, w):
  """Plug-in entropy (nats) of a sorted sequence with weights ``w`` (in sorted order), given
  its run starts ``new`` (``[n]`` bool, ``new[0]`` true): one symbol per run."""
  seg = jnp.cumsum(new.astype(jnp.int32)) - 1
  counts = jax.ops.segment_sum(w, seg, num_segments=new.shape[0])
  return -jnp.sum(_plogp_counts(counts, jnp.sum(w)))


def row_entropy(codes: Int[Array, "n d"], *,
                weights: Float[Array, "n"] | None = None) -> Float[Array, ""]:
  """Plug-in entropy of discrete rows, in nats: each distinct row of ``codes`` is one symbol.

  .. math::
    \\hat H = -\\sum_s \\hat p(s)\\log\\hat p(s),\\qquad
    \\hat p(s) = \\frac{\\sum_{i: \\text{row}_i = s} w_i}{\\sum_i w_i}

  Args:
    codes: integer codes ``[N]`` or ``[N, d]`` (e.g. bin indices of a layer's activations).
    weights: optional non-negative sample weights ``[N]`` (default: all 1), floating.

  Returns:
    The entropy in nats (``to_bits`` for bits); float32 unless ``weights`` says otherwise.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import row_entropy, to_bits
    >>> codes = jnp.array([[0, 1], [0, 1], [1, 0], [1, 1]])
    >>> round(float(to_bits(row_entropy(codes))), 4)   # p = (1/2, 1/4, 1/4)
    1.5
  """
  fn = "row_entropy"
  c = _as_code_matrix(fn, "codes", codes)
  if weights is None:
    w = jnp.ones((c.shape[0],), jnp.float32)
  else:
    V.check_floating(fn, "weights", weights)
    V.check_shape(fn, "weights", weights, (c.shape[0],))
    w = weights
  return _row_entropy(c, w)


def discrete_mi(a_codes: Int[Array, "n da"], b_codes: Int[Array, "n db"]) -> Float[Array, ""]:
  """Plug-in mutual information of two discrete variables given as code rows, in nats.

  .. math::
    \\hat I(A;B) = \\hat H(A) + \\hat H(B) - \\hat H(A, B)

  with each entropy from :func:`row_entropy` (the joint on the concatenated columns).

  Args:
    a_codes: integer codes of ``A``, ``[N]`` or ``[N, da]``.
    b_codes: integer codes of ``B``, ``[N]`` or ``[N, db]`` (e.g. the labels).

  Returns:
    The estimate in nats, ``0 <= I <= min(H(A), H(B))``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import discrete_mi, to_bits
    >>> a = jnp.array([0, 0, 1, 1]); b = jnp.array([5, 5, 7, 7])
    >>> round(float(to_bits(discrete_mi(a, b))), 4)
    1.0
  """
  fn = "discrete_mi"
  a = _as_code_matrix(fn, "a_codes", a_codes)
  b = _as_code_matrix(fn, "b_codes", b_codes)
  if a.shape[0] != b.shape[0]:
    raise ValueError(f"{fn}: a_codes and b_codes must have the same number of rows, got "
                     f"{list(a_codes.shape)} and {list(b_codes.shape)}")
  dt = jnp.promote_types(a.dtype, b.dtype)
  w = jnp.ones((a.shape[0],), jnp.float32)
  joint = jnp.concatenate([a.astype(dt), b.astype(dt)], axis=1)
  return _row_entropy(a, w) + _row_entropy(b, w) - _row_entropy(joint, w)


# ------------------------------------------------------------------------------------------
# kernel-density (pairwise-distance) bounds
# ------------------------------------------------------------------------------------------


def _kde_row_logmeans(h, var, labels, block_size):
  """Per row: log (1/N) sum_j exp(-|h_i-h_j|^2 / 2var) (and the same within the row's class)."""
  h = replicate(h)
  labels = None if labels is None else replicate(labels)
  n = h.shape[0]
  sq = jnp.sum(h * h, axis=1)

  def rows(idx, hb, *lab):
    d2 = jnp.maximum(sq[idx][:, None] + sq[None, :] - 2.0 * hb @ h.T, 0.0)
    d2 = jnp.where(idx[:, None] == jnp.arange(n)[None, :], 0.0, d2)  # exact self-distance
    logk = -d2 / (2.0 * var)
    all_ = jax.nn.logsumexp(logk, axis=1) - math.log(n)
    if not lab:
      return all_, all_
    same = lab[0][:, None] == labels[None, :]
    cnt = jnp.sum(same, axis=1).astype(h.dtype)
    cls = jax.nn.logsumexp(jnp.where(same, logk, -jnp.inf), axis=1) - jnp.log(cnt)
    return all_, cls

  args = (h,) if labels is None else (h, labels)
  return _map_rows(rows, n, block_size, *args)


def _kde_common(fn, h, var, block_size):
  _check_samples(fn, "h", h)
  _check_variance(fn, var)
  _check_block_size(fn, block_size)
  return h.reshape(h.shape[0], -1)


def kde_entropy_upper(h: Float[Array, "n d"], *, var: float,
                      block_size: int | None = None) -> Float[Array, ""]:
  """Pairwise-KL upper bound on the entropy of ``T + N(0, var I)``, ``T`` uniform on the rows.

  .. math::
    H_{up} = \\frac d2 - \\frac1N\\sum_i \\log\\frac1N\\sum_j \\mathcal N(h_i; h_j, \\text{var}\\,I)

  (Kolchinsky & Tracey 2017, the estimator of ``kde.py::entropy_estimator_kl`` in
  artemyk/ibsgd), in nats.

  Args:
    h: samples (a layer's activations), ``[N]`` or ``[N, d]``, floating.
    var: the variance of the added Gaussian noise, finite and ``> 0``.
    block_size: rows per block of the pairwise sums (``None``: all at once).

  Returns:
    The bound in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import kde_entropy_upper
    >>> h = jnp.zeros((8, 1))   # one atom: the entropy of N(0, var) = 0.5 log(2 pi e var)
    >>> round(float(kde_entropy_upper(h, var=1.0)), 4)
    1.4189
  """
  fn = "kde_entropy_upper"
  h2 = _kde_common(fn, h, var, block_size)
  d = h2.shape[1]
  var = jnp.asarray(var, h2.dtype)
  logm, _ = _kde_row_logmeans(h2, var, None, block_size)
  return d / 2 + (d / 2) * jnp.log(2 * math.pi * var) - jnp.mean(logm)


def kde_entropy_lower(h: Float[Array, "n d"], *, var: float,
                      block_size: int | None = None) -> Float[Array, ""]:
  """Bhattacharyya lower bound on the entropy of ``T + N(0, var I)``, in nats.

  .. math::
    H_{low} = H_{up}(h; 4\\,\\text{var}) + \\frac d2\\log\\frac14

  (``entropy_estimator_bd`` of artemyk/ibsgd); ``H_low <= H_up``.

  Args:
    h: samples, ``[N]`` or ``[N, d]``, floating.
    var: noise variance, finite and ``> 0``.
    block_size: rows per block (``None``: all at once).

  Returns:
    The bound in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import kde_entropy_lower
    >>> round(float(kde_entropy_lower(jnp.zeros((8, 1)), var=1.0)), 4)  # one atom: exact
    1.4189
  """
  fn = "kde_entropy_lower"
  h2 = _kde_common(fn, h, var, block_size)
  d = h2.shape[1]
  up = kde_entropy_upper(h2, var=4 * var, block_size=block_size)
  return up + (d / 2) * math.log(0.25)


class KDEInformation(NamedTuple):
  """Result of :func:`kde_mi`, in nats.

  Attributes:
    i_xt: ``I(X;T) = H_up(T) - (d/2)(log 2 pi var + 1)``.
    i_ty: ``I(T;Y) = H_up(T) - sum_y p(y) H_up(T | y)``.
  """
  i_xt: Float[Array, ""]
  i_ty: Float[Array, ""]


def kde_mi(h: Float[Array, "n d"], labels: Int[Array, "n"], *, var: float,
           block_size: int | None = None) -> KDEInformation:
  """KDE estimates of ``I(X;T)`` and ``I(T;Y)`` for a layer ``T = h(X) + N(0, var I)``, in nats.

  .. math::
    I(X;T) = H_{up}(T) - \\tfrac d2(\\log 2\\pi\\,\\text{var} + 1),\\qquad
    I(T;Y) = H_{up}(T) - \\sum_y p(y)\\,H_{up}(T\\mid y)

  ``H(T|X)`` is the entropy of the added noise (``h`` is a function of ``x``); the class-
  conditional bounds use the samples of each class (Saxe et al. 2018, Chelombiev et al. 2019).
  With distinct rows, ``I(X;T) -> log N`` as ``var -> 0``.

  Args:
    h: the layer's activations on the whole data set, ``[N]`` or ``[N, d]``, floating.
    labels: integer labels ``[N]``.
    var: noise variance, finite and ``> 0``.
    block_size: rows per block of the pairwise sums (``None``: all at once).

  Returns:
    :class:`KDEInformation` ``(i_xt, i_ty)`` in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import kde_mi
    >>> out = kde_mi(jnp.zeros((6, 2)), jnp.array([0, 1, 0, 1, 0, 1]), var=0.1)
    >>> round(float(out.i_xt), 4), round(float(out.i_ty), 4)   # a constant layer: no information
    (0.0, 0.0)
  """
  fn = "kde_mi"
  h2 = _kde_common(fn, h, var, block_size)
  V.check_integer(fn, "labels", labels)
  V.check_shape(fn, "labels", labels, (h2.shape[0],))
  d = h2.shape[1]
  var = jnp.asarray(var, h2.dtype)
  logm, logm_cls = _kde_row_logmeans(h2, var, labels, block_size)
  h_up = d / 2 + (d / 2) * jnp.log(2 * math.pi * var) - jnp.mean(logm)
  h_cond = d / 2 + (d / 2) * jnp.log(2 * math.pi * var) - jnp.mean(logm_cls)
  h_noise = (d / 2) * (jnp.log(2 * math.pi * var) + 1)
  return KDEInformation(h_up - h_noise, h_up - h_cond)


# ------------------------------------------------------------------------------------------
# CLUB
# ------------------------------------------------------------------------------------------


def club_upper_bound(mu: Float[Array, "n d"], logvar: Float[Array, "n d"],
                     y: Float[Array, "n d"]) -> Float[Array, ""]:
  """CLUB, the contrastive log-ratio upper bound on ``I(X;Y)``, in nats.

  With a variational conditional ``q(y|x_i) = N(mu_i, diag exp(logvar_i))``,

  .. math::
    I_{CLUB} = \\frac1N\\sum_i \\log q(y_i|x_i) - \\frac1{N^2}\\sum_{i,j}\\log q(y_j|x_i)

  (the normalising constants cancel). An upper bound when ``q`` is close to ``p(y|x)``; train
  ``q`` by maximising ``mean_i log q(y_i|x_i)`` (Cheng et al. 2020, Linear95/CLUB ``CLUB``).

  Args:
    mu: ``[N, d]`` means of ``q(y|x_i)``.
    logvar: ``[N, d]`` log-variances.
    y: ``[N, d]`` paired samples of ``Y``.

  Returns:
    The bound in nats, a scalar.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import club_upper_bound
    >>> z = jnp.zeros((4, 2))
    >>> float(club_upper_bound(z, z, jnp.ones((4, 2))))   # q ignores x: bound 0
    0.0
  """
  fn = "club_upper_bound"
  for arg, a in (("mu", mu), ("logvar", logvar), ("y", y)):
    V.check_floating(fn, arg, a)
    V.check_rank(fn, arg, a, 2)
  V.check_same_shape(fn, "mu", mu, "logvar", logvar)
  V.check_same_shape(fn, "mu", mu, "y", y)
  if mu.shape[0] < 1:
    raise ValueError(f"{fn}: mu must hold at least one sample, got {V.describe(mu)}")
  if len({jnp.dtype(a.dtype) for a in (mu, logvar, y)}) != 1:
    raise TypeError(f"{fn}: mu, logvar and y must have the same dtype, got "
                    f"{V.describe(mu)}, {V.describe(logvar)}, {V.describe(y)}")
  mu, logvar, y = replicate(mu), replicate(logvar), replicate(y)
  inv = jnp.exp(-logvar)
  positive = -0.5 * jnp.sum((mu - y) ** 2 * inv, axis=-1)
  # mean_j (y_j - mu_i)^2 = mean(y^2) - 2 mu_i mean(y) + mu_i^2, per coordinate
  ym, y2m = jnp.mean(y, axis=0), jnp.mean(y * y, axis=0)
  negative = -0.5 * jnp.sum((y2m - 2 * mu * ym + mu * mu) * inv, axis=-1)
  return jnp.mean(positive - negative)


__all__ = [
    "KDEInformation",
    "club_upper_bound",
    "discrete_mi",
    "gaussian_mi",
    "kde_entropy_lower",
    "kde_entropy_upper",
    "kde_mi",
    "kl_entropy",
    "row_entropy",
]
