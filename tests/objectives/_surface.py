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
    # --- end of substrate .. agentcpm-explore ---
    # --- marag-r1, chi0, plasticity, graph-rlearner, brl, chart-perception ---
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
