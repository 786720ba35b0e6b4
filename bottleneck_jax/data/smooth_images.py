"""Images with an exactly known mutual information: smooth, injective maps of Gaussian latents.

Butakov et al. (ICLR 2024) test MI estimators on high-dimensional data whose MI is known by
construction: sample latent pairs ``(xi, eta)`` with a chosen MI, then push each latent through
a smooth map that is injective on its support. Mutual information is invariant under such maps,
so ``I(f(xi); f(eta)) = I(xi; eta)`` exactly, while the data are images (here ``16 x 16 = 256``
dimensions by default).

* :func:`rectangle_images`: ``xi in R^4`` -> a ``size x size`` image of one axis-aligned
  rectangle. Each Gaussian coordinate becomes uniform (``u = Phi(xi)``); each pair becomes the
  ends ``a < b`` of a segment in ``[0, 1]``, uniformly distributed over the ordered pairs with
  ``b - a >= min_length``:

  .. math::
     a = (1 - m)\\big(1 - \\sqrt{1 - u_0}\\big),\\qquad b = a + m + u_1 (1 - a - m),

  the first pair giving the horizontal extent, the second the vertical one (scaled to pixels by
  ``size``). A pixel's value is the area of the rectangle inside it,
  ``img[i, j] = c_x(i) c_y(j)`` with ``c_x(i) = max(0, min(b_x, i + 1) - max(a_x, i))``
  (pixel units), which is piecewise smooth in ``xi``. The map is injective: the row and column
  profiles of the image give the four ends back (``img.sum()`` is the area, and the profiles are
  the clipped segment coverages).
* :func:`rectangle_image_pairs`: ``n`` pairs of such images whose latents are correlated
  Gaussians (:func:`~bottleneck_jax.data.correlated_gaussians` with ``dim = 4``, the MI split
  evenly over the four component pairs), with the exact MI in nats.

Departure from the reference code (VanessB/Information-v3 ``mutinfo/utils/synthetic.py``): the
same segment map and pixel-area rasterisation, vectorised as the outer product of the two
coverage profiles (equal to the reference's per-pixel loop), with the minimal width and height
given as fractions of the image side; the paper's other image family (plots of 2-D Gaussian
densities) is not included.

References:
  Ivan Butakov, Alexander Tolmachev, Sofia Malanchuk, Anna Neopryatnaya, Alexey Frolov, Kirill
  Andreev, "Information Bottleneck Analysis of Deep Neural Networks via Lossy Compression",
  ICLR 2024, https://arxiv.org/abs/2305.08013.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from bottleneck_jax.core import validation as V
from bottleneck_jax.data.synthetic import correlated_gaussians

__all__ = ["RectanglePairs", "rectangle_coordinates", "rectangle_image_pairs",
           "rectangle_images"]


class RectanglePairs(NamedTuple):
  """Pairs of rectangle images with correlated latents and their exact MI.

  Attributes:
    x: images of ``xi``, ``[n, size, size]``.
    y: images of ``eta``, ``[n, size, size]``.
    xi: the latents of ``x``, ``[n, 4]`` (standard normal coordinates).
    eta: the latents of ``y``, ``[n, 4]``; ``corr(xi[:, k], eta[:, k]) = rho``.
    mutual_information: ``I(x; y) = I(xi; eta)`` in nats (a Python float).
  """
  x: Float[Array, "n size size"]
  y: Float[Array, "n size size"]
  xi: Float[Array, "n 4"]
  eta: Float[Array, "n 4"]
  mutual_information: float


def _check_latents(fn: str, xi) -> None:
  V.check_floating(fn, "xi", xi)
  V.check_rank(fn, "xi", xi, 2)
  if xi.shape[1] != 4:
    raise ValueError(f"{fn}: xi must be [N, 4] (two segment ends per axis), got "
                     f"{V.describe(xi)}")


def _check_min(fn: str, arg: str, v) -> None:
  V.check_scalar(fn, arg, v, low=0.0, high=1.0, high_inclusive=False, static=True)


def _segment(u0, u1, m):
  a = (1.0 - m) * (1.0 - jnp.sqrt(jnp.clip(1.0 - u0, 0.0, 1.0)))
  return a, a + m + u1 * (1.0 - a - m)


def rectangle_coordinates(xi: Float[Array, "n 4"], *, min_width: float = 0.0,
                          min_height: float = 0.0) -> Float[Array, "n 4"]:
  """The rectangle ``(x0, x1, y0, y1)`` in ``[0, 1]`` of each latent (before rasterising).

  ``u = Phi(xi)`` per coordinate, then the segment map of the module docstring on
  ``(u_0, u_1)`` (horizontal, minimal length ``min_width``) and ``(u_2, u_3)`` (vertical,
  ``min_height``). Uniform over the admissible rectangles when ``xi ~ N(0, I)``.

  Args:
    xi: latents ``[N, 4]``, floating.
    min_width, min_height: minimal side lengths as fractions of the image side, in ``[0, 1)``.

  Returns:
    ``[N, 4]`` corners ``(x0, x1, y0, y1)``, ``0 <= x0 < x1 <= 1`` and likewise for ``y``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.data import rectangle_coordinates
    >>> [round(float(v), 4) for v in rectangle_coordinates(jnp.zeros((1, 4)))[0]]
    [0.2929, 0.6464, 0.2929, 0.6464]
  """
  fn = "rectangle_coordinates"
  _check_latents(fn, xi)
  _check_min(fn, "min_width", min_width)
  _check_min(fn, "min_height", min_height)
  u = jax.scipy.special.ndtr(xi)
  x0, x1 = _segment(u[:, 0], u[:, 1], float(min_width))
  y0, y1 = _segment(u[:, 2], u[:, 3], float(min_height))
  return jnp.stack([x0, x1, y0, y1], axis=1)


def rectangle_images(xi: Float[Array, "n 4"], *, size: int = 16, min_width: float = 0.0,
                     min_height: float = 0.0) -> Float[Array, "n size size"]:
  """Images of one rectangle per latent, each pixel holding the rectangle's area inside it.

  .. math::
     \\mathrm{img}[i, j] = c(i; s x_0, s x_1)\\, c(j; s y_0, s y_1),\\qquad
     c(i; a, b) = \\max\\big(0, \\min(b, i + 1) - \\max(a, i)\\big)

  with ``s = size`` and the corners of :func:`rectangle_coordinates`. Smooth almost everywhere
  and injective in ``xi``, so it keeps the mutual information of the latents exactly.

  Args:
    xi: latents ``[N, 4]``, floating.
    size: the image side in pixels (a static int ``>= 1``).
    min_width, min_height: minimal side lengths as fractions of the side, in ``[0, 1)``.

  Returns:
    ``[N, size, size]`` images in the dtype of ``xi``, values in ``[0, 1]``, summing to the
    rectangle's area in pixels.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.data import rectangle_images
    >>> img = rectangle_images(jnp.zeros((1, 4)), size=4)
    >>> round(float(img.sum()), 4), img.shape
    (2.0, (1, 4, 4))
  """
  fn = "rectangle_images"
  _check_latents(fn, xi)
  V.check_scalar(fn, "size", size, low=1, integer=True, static=True)
  c = rectangle_coordinates(xi, min_width=min_width, min_height=min_height) * int(size)
  pix = jnp.arange(int(size), dtype=c.dtype)

  def cover(a, b):
    return jnp.maximum(jnp.minimum(b[:, None], pix + 1) - jnp.maximum(a[:, None], pix), 0.0)

  cx = cover(c[:, 0], c[:, 1])
  cy = cover(c[:, 2], c[:, 3])
  return cx[:, :, None] * cy[:, None, :]


def rectangle_image_pairs(n: int, *, mutual_information: float, key, size: int = 16,
                          min_width: float = 0.0, min_height: float = 0.0,
                          dtype=jnp.float32) -> RectanglePairs:
  """``n`` pairs of rectangle images with an exact, chosen mutual information.

  The latents are :func:`~bottleneck_jax.data.correlated_gaussians` in ``R^4 x R^4`` with
  ``rho = sqrt(1 - exp(-mutual_information / 2))`` per component pair (so that
  ``-4/2 log(1 - rho^2) = mutual_information``); both are mapped by :func:`rectangle_images`,
  which is injective, so ``I(x; y) = mutual_information`` nats.

  Args:
    n: number of pairs, ``n >= 1``.
    mutual_information: the MI in nats, finite and ``>= 0``.
    key: a ``jax.random.key`` or an int seed.
    size, min_width, min_height: see :func:`rectangle_images`.
    dtype: floating dtype.

  Returns:
    :class:`RectanglePairs` ``(x, y, xi, eta, mutual_information)``.

  Example:
    >>> from bottleneck_jax.data import rectangle_image_pairs
    >>> x, y, xi, eta, mi = rectangle_image_pairs(3, mutual_information=1.0, key=0, size=8)
    >>> x.shape, xi.shape, mi
    ((3, 8, 8), (3, 4), 1.0)
  """
  fn = "rectangle_image_pairs"
  V.check_scalar(fn, "mutual_information", mutual_information, low=0.0, static=True)
  mi = float(mutual_information)
  if not math.isfinite(mi):
    raise ValueError(f"{fn}: mutual_information must be finite, got {mutual_information}")
  rho = math.sqrt(-math.expm1(-mi / 2.0))
  if rho >= 1.0:
    raise ValueError(f"{fn}: mutual_information is too large (the correlation rounds to 1), "
                     f"got {mutual_information}")
  xi, eta, _ = correlated_gaussians(n, dim=4, rho=rho, key=key, dtype=dtype)
  kw = dict(size=size, min_width=min_width, min_height=min_height)
  return RectanglePairs(rectangle_images(xi, **kw), rectangle_images(eta, **kw), xi, eta, mi)
