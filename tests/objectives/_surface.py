"""The pinned public surface of ``bottleneck_jax.objectives``
(merged into ``tests/test_public_api.py``): every public name with its kind. Changing it is
deliberate: update this table in the same commit."""

SURFACE = {
    # --- substrate, vpo, hicra, remix, editreward, agentcpm-explore ---
    "DPOOutput": "class",
    "PolicyGradientLoss": "class",
    "aggregate_token_loss": "function",
    "clipped_pg_per_token": "function",
    "dpo_logits": "function",
    "dpo_loss": "function",
    "group_advantages": "function",
    "grpo_loss": "function",
    "k3_kl": "function",
    "rloo_advantages": "function",
    "seq_logps": "function",
    "VPOOutput": "class",
    "vpo_loss": "function",
    "vpo_tabular_loss": "function",
    "hicra_advantages": "function",
    "hicra_verl_advantages": "function",
    "semantic_entropy": "function",
    "sg_match_counts": "function",
    "sg_planning_mask": "function",
    # --- end of substrate .. agentcpm-explore ---
    # --- marag-r1, chi0, plasticity, graph-rlearner, brl, chart-perception ---
    "CrossfadedChunk": "class",
    "MixWeights": "class",
    "chunk_crossfade": "function",
    "discretize_advantage": "function",
    "greedy_soup": "function",
    "inverse_loss_weights": "function",
    "mix_params": "function",
    "optimize_mix_weights": "function",
    "simplex_grad": "function",
    "stage_advantage": "function",
    "stage_progress": "function",
    "MaragReward": "class",
    "SearchResult": "class",
    "aggregate_docs": "function",
    "bm25_scores": "function",
    "document_coverage": "function",
    "filter_docs": "function",
    "keyword_search": "function",
    "marag_reward": "function",
    "semantic_search": "function",
    "token_f1": "function",
    # --- end of marag-r1 .. chart-perception ---
}
