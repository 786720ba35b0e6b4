"""Units of information: nats and bits."""

from __future__ import annotations

import math

import jax.numpy as jnp

LN2 = math.log(2.0)


def nats_to_bits(x):
  """Converts an amount of information from nats to bits (divides by ``ln 2``)."""
  return jnp.asarray(x) / LN2


def bits_to_nats(x):
  """Converts an amount of information from bits to nats (multiplies by ``ln 2``)."""
  return jnp.asarray(x) * LN2


__all__ = ["LN2", "nats_to_bits", "bits_to_nats"]
