"""The pinned public surface of ``bottleneck_jax.attention``
(merged into ``tests/test_public_api.py``): every public name with its kind. Changing it is
deliberate: update this table in the same commit."""

SURFACE = {
    "BlockTopKAttention": "class",
    "BlockTopKOutput": "class",
    "CostBreakdown": "class",
    "ModelCostConfig": "class",
    "RettentionCache": "class",
    "RettentionSelfAttention": "class",
    "band_block_table": "function",
    "block_means": "function",
    "block_scores": "function",
    "block_topk_decode": "function",
    "expected_cost": "function",
    "kinetics_cost": "function",
    "pareto_frontier": "function",
    "pass_at_k": "function",
    "qwen3_config": "function",
    "rettention_refresh": "function",
    "rettention_schedule": "function",
    "rettention_sparse": "function",
    "rettention_step": "function",
    "select_blocks": "function",
    "update_block_means": "function",
}
