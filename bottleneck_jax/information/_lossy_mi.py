"""Information-bottleneck analysis via lossy compression (Butakov et al., ICLR 2024).

Paper: Ivan Butakov, Alexander Tolmachev, Sofia Malanchuk, Anna Neopryatnaya, Alexey Frolov,
Kirill Andreev, "Information Bottleneck Analysis of Deep Neural Networks via Lossy Compression",
ICLR 2024 (https://arxiv.org/abs/2305.08013); code VanessB/Information-v3 (``mutinfo``).

Idea. Non-parametric MI estimators fail in high dimension, but the data a network sees (and
its layers) often lie near a low-dimensional manifold. Compress both variables first,
``X~ = f(X)``, ``L~ = g(L)``, then estimate ``I(X~; L~)`` in low dimension: a compression that
is injective on the support keeps the MI exactly (``I(f(X); g(Y)) = I(X;Y)``), a lossy one gives
a lower bound by the data-processing inequality. To make ``I(X; L)`` finite for a deterministic
network, layers are made stochastic, ``L' = L + sigma eps`` (Goldfeld et al. 2019).

Implemented here (nats): :func:`pca_fit` / :func:`pca_transform` (the linear compressor; an
autoencoder is the paper's nonlinear one), :func:`lossy_mi` (PCA-compress and whiten both sides,
then KSG), :func:`noisy_forward` (Goldfeld noise after each layer).

Departures: PCA instead of the paper's trained autoencoders (fine when the data lie near a
linear subspace, a lower bound otherwise); KSG with ``k = 5`` as the low-dimensional estimator
(the paper also uses weighted Kozachenko-Leonenko and KDE entropies).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.rng import as_key
from bottleneck_jax.information._mi_estimators import ksg_mi


class PCA(NamedTuple):
  """A fitted PCA: ``mean [D]``, ``components [q, D]`` (orthonormal rows, decreasing variance),
  ``variances [q]`` (the variance along each component)."""
  mean: Float[Array, "d"]
  components: Float[Array, "q d"]
  variances: Float[Array, "q"]


def pca_fit(x: Float[Array, "n d"], *, num_components: int) -> PCA:
  """Principal components of ``x`` (SVD of the centred data).

  Args:
    x: ``[N, D]`` samples, ``N >= 2``.
    num_components: ``q`` with ``1 <= q <= min(N, D)``.

  Returns:
    :class:`PCA`.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import pca_fit
    >>> p = pca_fit(jnp.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0]]), num_components=1)
    >>> [abs(round(float(v), 4)) for v in p.components[0]], round(float(p.variances[0]), 4)
    ([1.0, 0.0], 4.0)
  """
  fn = "pca_fit"
  V.check_floating(fn, "x", x)
  V.check_rank(fn, "x", x, 2)
  n, d = x.shape
  if n < 2 or d < 1:
    raise ValueError(f"{fn}: x must be [N, D] with N >= 2 and D >= 1, got {V.describe(x)}")
  V.check_scalar(fn, "num_components", num_components, low=1, high=min(n, d), integer=True,
                 static=True)
  q = int(num_components)
  xf = x.astype(jnp.float32) if jnp.finfo(x.dtype).bits < 32 else x   # SVD needs >= f32
  mean = jnp.mean(xf, axis=0)
  _, s, vt = jnp.linalg.svd(xf - mean, full_matrices=False)
  return PCA(*(a.astype(x.dtype) for a in (mean, vt[:q], (s[:q] ** 2) / (n - 1))))


def pca_transform(x: Float[Array, "n d"], pca: PCA, *, whiten: bool = False
                  ) -> Float[Array, "n q"]:
  """Projects ``x`` on the fitted components (divided by their standard deviations when
  ``whiten``).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import pca_fit, pca_transform
    >>> x = jnp.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0]])
    >>> [abs(float(v)) for v in pca_transform(x, pca_fit(x, num_components=1))[:, 0]]
    [2.0, 0.0, 2.0]
  """
  fn = "pca_transform"
  V.check_floating(fn, "x", x)
  V.check_rank(fn, "x", x, 2)
  if not isinstance(pca, PCA):
    raise TypeError(f"{fn}: pca must be a PCA (from pca_fit), got {type(pca).__name__}")
  if x.shape[1] != pca.mean.shape[0]:
    raise ValueError(f"{fn}: x must have {pca.mean.shape[0]} features (as the fit), got "
                     f"{V.describe(x)}")
  if jnp.dtype(x.dtype) != jnp.dtype(pca.mean.dtype):
    raise TypeError(f"{fn}: x must have the dtype of the fit ({jnp.dtype(pca.mean.dtype).name}),"
                    f" got {V.describe(x)}")
  z = (x - pca.mean) @ pca.components.T
  if whiten:
    z = z / jnp.sqrt(jnp.maximum(pca.variances, 1e-12))
  return z


def lossy_mi(x: Float[Array, "n dx"], y: Float[Array, "n dy"], *, x_components: int,
             y_components: int, k: int = 5) -> Float[Array, ""]:
  """``I(X;Y)`` estimated after compressing both sides with PCA, in nats.

  .. math::
    \\hat I = \\hat I_{KSG}\\big(\\mathrm{whiten}(\\mathrm{PCA}_{q_x}(X)),\\,
    \\mathrm{whiten}(\\mathrm{PCA}_{q_y}(Y))\\big) \\;\\lesssim\\; I(X;Y)

  Exact (up to the estimator's error) when the projections are injective on the data's
  support, a data-processing lower bound otherwise.

  Args:
    x: ``[N, dx]``; y: ``[N, dy]`` paired samples (same dtype).
    x_components, y_components: PCA dimensions ``q_x``, ``q_y``.
    k: KSG neighbours.

  Returns:
    The estimate in nats.

  Example:
    >>> import jax
    >>> from bottleneck_jax.data import correlated_gaussians
    >>> from bottleneck_jax.information import lossy_mi
    >>> x, y, mi = correlated_gaussians(500, dim=1, rho=0.9, key=0)
    >>> abs(float(lossy_mi(x, y, x_components=1, y_components=1)) - mi) < 0.15
    True
  """
  fn = "lossy_mi"
  for arg, a in (("x", x), ("y", y)):
    V.check_floating(fn, arg, a)
    V.check_rank(fn, arg, a, 2)
  if x.shape[0] != y.shape[0]:
    raise ValueError(f"{fn}: x and y must have the same number of samples (axis 0), got "
                     f"{list(x.shape)} and {list(y.shape)}")
  V.check_scalar(fn, "k", k, low=1, integer=True, static=True)
  if k >= x.shape[0]:
    raise ValueError(f"{fn}: k must be < N (the number of samples, {x.shape[0]}), got {k}")
  for arg, q, a in (("x_components", x_components, x), ("y_components", y_components, y)):
    V.check_scalar(fn, arg, q, low=1, high=min(a.shape), integer=True, static=True)
  zx = pca_transform(x, pca_fit(x, num_components=x_components), whiten=True)
  zy = pca_transform(y, pca_fit(y, num_components=y_components), whiten=True)
  return ksg_mi(zx, zy.astype(zx.dtype), k=k)


def noisy_forward(layers: Sequence[Callable[[Array], Array]], x: Float[Array, "b d"], *, key,
                  sigma: float) -> tuple:
  """Runs ``x`` through ``layers`` adding ``N(0, sigma^2)`` noise after each one (Goldfeld et al.
  2019), so that ``I(X; L_l)`` of every recorded layer is finite.

  Args:
    layers: callables applied in order (``h -> h``).
    x: the input batch.
    key: a ``jax.random.key`` (or int seed).
    sigma: noise standard deviation ``>= 0``.

  Returns:
    A tuple of the noisy activations after each layer.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import noisy_forward
    >>> acts = noisy_forward([jnp.tanh, lambda h: 2 * h], jnp.zeros((3, 2)), key=0, sigma=0.0)
    >>> len(acts), acts[1].shape
    (2, (3, 2))
  """
  fn = "noisy_forward"
  if not isinstance(layers, (list, tuple)) or not layers or not all(callable(f) for f in layers):
    raise TypeError(f"{fn}: layers must be a non-empty list of callables, got {layers!r}")
  V.check_floating(fn, "x", x)
  V.check_scalar(fn, "sigma", sigma, low=0.0, static=True)
  sigma = float(sigma)
  key = as_key(key, fn=fn)
  keys = jax.random.split(key, len(layers))
  acts = []
  h = x
  for f, k in zip(layers, keys):
    h = f(h)
    h = h + sigma * jax.random.normal(k, h.shape, h.dtype)
    acts.append(h)
  return tuple(acts)


__all__ = ["PCA", "lossy_mi", "noisy_forward", "pca_fit", "pca_transform"]
