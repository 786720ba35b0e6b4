"""Kernel infrastructure: implementation dispatch, Pallas interpret switch, block sizes,
sharded kernel calls and test utilities. The ops themselves live in their families
(e.g. ``bottleneck_jax.efficiency.linear_cross_entropy``)."""

from bottleneck_jax.kernels import testing
from bottleneck_jax.kernels.blocks import cdiv, next_power_of_2, pick_block, round_up
from bottleneck_jax.kernels.dispatch import (
    IMPLEMENTATIONS,
    Op,
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
    "Op",
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
