"""Attention family: sparse attention, KV-cache compression and their cost models.

* Kinetics (``_kinetics.py``) — the eFLOPs cost model of test-time scaling (compute plus
  arithmetic intensity times KV memory traffic) and block top-k sparse decoding;
* Re-ttention (``_rettention.py``) — ultra-sparse diffusion-transformer attention corrected by
  the softmax mass and residual cached at refresh steps.

The block-sparse kernels these methods run on are the shared ops
:func:`bottleneck_jax.ops.block_sparse_attention` and :func:`bottleneck_jax.ops.block_sparse_decode`.
"""

from bottleneck_jax.attention._kinetics import (
    BlockTopKAttention,
    BlockTopKOutput,
    CostBreakdown,
    ModelCostConfig,
    block_means,
    block_scores,
    block_topk_decode,
    expected_cost,
    kinetics_cost,
    pareto_frontier,
    pass_at_k,
    qwen3_config,
    select_blocks,
    update_block_means,
)
from bottleneck_jax.attention._rettention import (
    RettentionCache,
    RettentionSelfAttention,
    band_block_table,
    rettention_refresh,
    rettention_schedule,
    rettention_sparse,
    rettention_step,
)

__all__ = [
    "BlockTopKAttention",
    "BlockTopKOutput",
    "CostBreakdown",
    "ModelCostConfig",
    "RettentionCache",
    "RettentionSelfAttention",
    "band_block_table",
    "block_means",
    "block_scores",
    "block_topk_decode",
    "expected_cost",
    "kinetics_cost",
    "pareto_frontier",
    "pass_at_k",
    "qwen3_config",
    "rettention_refresh",
    "rettention_schedule",
    "rettention_sparse",
    "rettention_step",
    "select_blocks",
    "update_block_means",
]
