"""Shared foundations: the bottleneck protocol, validation, units, key handling and the
diagonal-Gaussian densities several families use (:mod:`~bottleneck_jax.core.distributions`)."""

from bottleneck_jax.core import debug, distributions, validation
from bottleneck_jax.core.io import atomic_write_text
from bottleneck_jax.core.rng import as_key, split_like
from bottleneck_jax.core.types import Array, BottleneckOutput
from bottleneck_jax.core.units import LN2, bits_to_nats, nats_to_bits

__all__ = [
    "Array",
    "BottleneckOutput",
    "LN2",
    "as_key",
    "atomic_write_text",
    "bits_to_nats",
    "debug",
    "distributions",
    "nats_to_bits",
    "split_like",
    "validation",
]
