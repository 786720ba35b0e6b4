"""The row type of the property-test table (``tests/test_properties.py``) and its argument
builders. A family adds its rows in ``tests/<family>/_property_cases.py`` as ``CASES``, a list of
:class:`Case`; the property test collects every such file."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class Case:
  """A public function, a builder of valid (small) arguments from a numpy ``Generator``, the
  names passed positionally, and an ``xfail`` reason for a bug in a module we do not own."""
  name: str
  fn: Callable
  build: Callable[[np.random.Generator], dict[str, Any]]
  positional: tuple[str, ...] = ()
  xfail: str | None = None  # a bug in a module we do not own: reported, not hidden

  def __repr__(self):
    return self.name


def _put(a: np.ndarray) -> jax.Array:
  """``a`` on the device, converted on the host: ``jax.device_put`` compiles nothing, while
  ``jnp.asarray`` compiles a copy (and a conversion) for every new shape and dtype."""
  return jax.device_put(a)


def floats(r, *shape):
  """Positive float32 values of ``shape`` (>= 0.1)."""
  return _put((np.abs(r.standard_normal(shape)) + 0.1).astype(np.float32))


def ints(r, *shape, high=3):
  """int32 values in ``[0, high)`` of ``shape``."""
  return _put(r.integers(0, high, shape).astype(np.int32))


KEY = jax.random.key(0)
