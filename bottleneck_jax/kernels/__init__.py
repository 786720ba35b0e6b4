"""Kernel infrastructure: implementation dispatch, Pallas interpret switch, block sizes,
sharded kernel calls and test utilities. The shared ops live in :mod:`bottleneck_jax.ops`."""

from bottleneck_jax.kernels import testing
from bottleneck_jax.kernels.blocks import cdiv, next_power_of_2, pick_block, round_up
from bottleneck_jax.kernels.dispatch import (
    IMPLEMENTATIONS,
    PLATFORMS,
    Implementation,
    Op,
    UnsupportedInput,
    backend,
    default_order,
    force,
    forced,
    pallas_interpret,
)
from bottleneck_jax.kernels.sharding import (
    batch_axes,
    batch_shard_map,
    current_mesh,
    explicit_spec,
    is_explicit,
)

__all__ = [
    "IMPLEMENTATIONS",
    "PLATFORMS",
    "Implementation",
    "Op",
    "UnsupportedInput",
    "backend",
    "batch_axes",
    "batch_shard_map",
    "cdiv",
    "current_mesh",
    "default_order",
    "explicit_spec",
    "force",
    "forced",
    "is_explicit",
    "next_power_of_2",
    "pallas_interpret",
    "pick_block",
    "round_up",
    "testing",
]
