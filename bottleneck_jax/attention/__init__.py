"""Attention family: sparse attention, KV-cache compression and their cost models.

* Kinetics (``_kinetics.py``) — the eFLOPs cost model of test-time scaling (compute plus
  arithmetic intensity times KV memory traffic) and block top-k sparse decoding;
* Re-ttention (``_rettention.py``) — ultra-sparse diffusion-transformer attention corrected by
  the softmax mass and residual cached at refresh steps;
* ZipVL (``_zipvl.py``) — the adaptive important-token count from probe attention, important-token
  prefill and a mixed-precision (4/2-bit) KV cache, on the packed KV quantisers of
  ``_kv_quant.py`` (per-channel / per-token groups);
* Bottlenecked Transformers (``_bottlenecked_transformer.py``) — a cache processor that rewrites
  the last reasoning step's KV entries and the top-k recalled ones in place.

The block-sparse kernels these methods run on are the shared ops
:func:`bottleneck_jax.ops.block_sparse_attention` and :func:`bottleneck_jax.ops.block_sparse_decode`.
"""

from bottleneck_jax.attention._bottlenecked_transformer import (
    CacheProcessor,
    consolidate,
    kv_rewrite,
    recall_indices,
    step_boundaries,
)
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
from bottleneck_jax.attention._kv_quant import (
    QuantizedKV,
    dequantize_kv,
    kv_bits,
    pack_bits,
    quantize_kv,
    unpack_bits,
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
from bottleneck_jax.attention._zipvl import (
    MixedKV,
    accumulated_scores,
    adaptive_keep_count,
    build_mixed_kv,
    important_token_prefill,
    mixed_kv_bits,
    mixed_kv_decode_attention,
    normalized_scores,
    probe_attention,
    select_important,
)

__all__ = [
    "BlockTopKAttention",
    "BlockTopKOutput",
    "CacheProcessor",
    "CostBreakdown",
    "MixedKV",
    "ModelCostConfig",
    "QuantizedKV",
    "RettentionCache",
    "RettentionSelfAttention",
    "accumulated_scores",
    "adaptive_keep_count",
    "band_block_table",
    "block_means",
    "block_scores",
    "block_topk_decode",
    "build_mixed_kv",
    "consolidate",
    "dequantize_kv",
    "expected_cost",
    "important_token_prefill",
    "kinetics_cost",
    "kv_bits",
    "kv_rewrite",
    "mixed_kv_bits",
    "mixed_kv_decode_attention",
    "normalized_scores",
    "pack_bits",
    "pareto_frontier",
    "pass_at_k",
    "probe_attention",
    "quantize_kv",
    "qwen3_config",
    "recall_indices",
    "rettention_refresh",
    "rettention_schedule",
    "rettention_sparse",
    "rettention_step",
    "select_blocks",
    "select_important",
    "step_boundaries",
    "unpack_bits",
    "update_block_means",
]
