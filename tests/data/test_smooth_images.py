"""Tests for bottleneck_jax.data.smooth_images against independent references: a per-pixel
NumPy/SciPy transcription of the reference rasteriser (VanessB/Information-v3
``normal_to_rectangle_coords`` + ``rectangle_coords_to_rectangles``), the closed-form area, the
uniform law of the segment ends, and injectivity (the corners read back from the image)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import ndtr

from bottleneck_jax.data import (
    RectanglePairs,
    gaussian_mutual_information,
    rectangle_coordinates,
    rectangle_image_pairs,
    rectangle_images,
)


def _reference_images(xi, size, min_w, min_h):
  """Per-pixel loop as in the reference code (coordinates in pixel units, max side = size)."""
  out = np.zeros((xi.shape[0], size, size))
  for n, row in enumerate(np.asarray(xi, np.float64)):
    c = []
    for (p, q), m in (((0, 1), min_w), ((2, 3), min_h)):
      u0, u1 = ndtr(row[p]), ndtr(row[q])
      a = (1.0 - m) * (1.0 - math.sqrt(1.0 - u0))
      c += [a * size, (a + m + u1 * (1.0 - a - m)) * size]
    f = np.floor(c).astype(int)
    for i in range(f[0], min(f[1], size - 1) + 1):
      for j in range(f[2], min(f[3], size - 1) + 1):
        out[n, i, j] = (min(c[1], i + 1) - max(c[0], i)) * (min(c[3], j + 1) - max(c[2], j))
  return out


def test_rectangle_images_match_the_reference_rasteriser_and_area():
  xi = jax.random.normal(jax.random.key(0), (64, 4), jnp.float32) * 1.5
  img = np.asarray(rectangle_images(xi, size=8, min_width=0.2, min_height=0.1), np.float64)
  ref = _reference_images(np.asarray(xi), 8, 0.2, 0.1)
  np.testing.assert_allclose(img, ref, atol=2e-5)
  c = np.asarray(rectangle_coordinates(xi, min_width=0.2, min_height=0.1), np.float64)
  area = (c[:, 1] - c[:, 0]) * (c[:, 3] - c[:, 2]) * 64.0  # pixels, size 8
  np.testing.assert_allclose(img.sum(axis=(1, 2)), area, rtol=1e-5)
  assert np.all(c[:, 1] - c[:, 0] >= 0.2 - 1e-6) and np.all(c[:, 3] - c[:, 2] >= 0.1 - 1e-6)
  assert c.min() >= 0.0 and c.max() <= 1.0


def test_segment_ends_are_uniform_over_ordered_pairs():
  # for m = 0, (a, b) is uniform on {0 <= a < b <= 1}: P(a <= t) = 1 - (1 - t)^2, E[b - a] = 1/3
  xi = jax.random.normal(jax.random.key(1), (20000, 4), jnp.float32)
  c = np.asarray(rectangle_coordinates(xi), np.float64)
  for t in (0.1, 0.3, 0.6):
    assert abs(np.mean(c[:, 0] <= t) - (1.0 - (1.0 - t) ** 2)) < 0.015
  assert abs(np.mean(c[:, 1] - c[:, 0]) - 1.0 / 3.0) < 0.01


def test_images_are_injective_corners_read_back():
  xi = jax.random.normal(jax.random.key(2), (64, 4), jnp.float32)
  size = 8
  img = np.asarray(rectangle_images(xi, size=size), np.float64)
  c = np.asarray(rectangle_coordinates(xi), np.float64) * size
  # row profile / height = horizontal coverage; its sum is the width, its first partial pixel
  # gives the left end
  cx = img.sum(axis=2) / (c[:, 3] - c[:, 2])[:, None]
  width = cx.sum(axis=1)
  first = np.argmax(cx > 0, axis=1)
  left = first + 1.0 - cx[np.arange(len(cx)), first]
  left = np.where(width <= cx[np.arange(len(cx)), first] + 1e-9, c[:, 0], left)  # in one pixel
  np.testing.assert_allclose(width, c[:, 1] - c[:, 0], atol=2e-3)  # f32, thin rectangles
  inside = width > cx[np.arange(len(cx)), first] + 1e-9
  np.testing.assert_allclose(left[inside], c[inside, 0], atol=2e-3)


def test_pairs_have_the_requested_mi_and_image_the_latents():
  out = rectangle_image_pairs(64, mutual_information=1.5, key=3, size=8)
  assert isinstance(out, RectanglePairs) and out.mutual_information == 1.5
  rho = math.sqrt(1.0 - math.exp(-1.5 / 2.0))
  assert abs(gaussian_mutual_information(rho, dim=4) - 1.5) < 1e-12
  np.testing.assert_array_equal(np.asarray(out.x), np.asarray(rectangle_images(out.xi, size=8)))
  assert out.x.shape == (64, 8, 8) and out.eta.shape == (64, 4)


def test_validation():
  with pytest.raises(ValueError, match=r"rectangle_images: xi must be \[N, 4\]"):
    rectangle_images(jnp.zeros((3, 2)))
  with pytest.raises(ValueError, match="min_width"):
    rectangle_coordinates(jnp.zeros((3, 4)), min_width=1.0)
  with pytest.raises(ValueError, match="mutual_information"):
    rectangle_image_pairs(3, mutual_information=-1.0, key=0)
