"""The row type of the property-test table (``tests/test_properties.py``) and its argument
builders. A family adds its rows in ``tests/<family>/_property_cases.py`` as ``CASES``, a list of
:class:`Case`; the property test collects every such file."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
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


def floats(r, *shape):
  """Positive float32 values of ``shape`` (>= 0.1)."""
  return jnp.asarray(np.abs(r.standard_normal(shape)) + 0.1, jnp.float32)


def ints(r, *shape, high=3):
  """int32 values in ``[0, high)`` of ``shape``."""
  return jnp.asarray(r.integers(0, high, shape), jnp.int32)


KEY = jax.random.key(0)
