"""Shared types: the bottleneck protocol.

Every layer-like bottleneck in ``bottleneck_jax`` returns a :class:`BottleneckOutput`, so that a
user can swap one bottleneck for another (VIB, VQ, FSQ, an entropy bottleneck …) and compare them
on the same rate–distortion plane, in bits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax

Array = jax.Array


class BottleneckOutput(NamedTuple):
  """What every bottleneck layer returns (a pytree: ``NamedTuple`` is a JAX pytree node).

  Attributes:
    z: the representation that flows on to the rest of the model.
    loss: scalar auxiliary loss to add to the task loss (commitment, ``beta * KL``, rate …).
    bits: information through the bottleneck, in bits, per example: shape ``[batch]``.
    aux: method-specific extras (indices, perplexity, KL in nats, likelihoods …).
  """

  z: Array
  loss: Array
  bits: Array
  aux: Mapping[str, Any]


__all__ = ["Array", "BottleneckOutput"]
