"""The `objectives` family of bottleneck_jax (see `bottleneck_jax.catalog`)."""

# Imports are kept sorted by module (ruff isort), so both groups of papers interleave here;
# ``__all__`` below is grouped by paper.
# --- retrieval, merging, plasticity, causal, long-tail and contrastive papers (marag-r1, chi0,
# plasticity, graph-rlearner, brl, chart-perception) ---
from bottleneck_jax.objectives._marag_r1 import (
    MaragReward,
    SearchResult,
    aggregate_docs,
    bm25_scores,
    document_coverage,
    filter_docs,
    keyword_search,
    marag_reward,
    semantic_search,
    token_f1,
)
from bottleneck_jax.objectives._policy_gradient import (
    DPOOutput,
    PolicyGradientLoss,
    aggregate_token_loss,
    clipped_pg_per_token,
    dpo_logits,
    dpo_loss,
    group_advantages,
    grpo_loss,
    k3_kl,
    rloo_advantages,
    seq_logps,
)
from bottleneck_jax.objectives._vpo import VPOOutput, vpo_loss, vpo_tabular_loss

# --- end of marag-r1 .. chart-perception imports ---

__all__: list[str] = [
    # substrate .. agentcpm-explore
    "DPOOutput",
    "PolicyGradientLoss",
    "aggregate_token_loss",
    "clipped_pg_per_token",
    "dpo_logits",
    "dpo_loss",
    "group_advantages",
    "grpo_loss",
    "k3_kl",
    "rloo_advantages",
    "seq_logps",
    "VPOOutput",
    "vpo_loss",
    "vpo_tabular_loss",
    # end of substrate .. agentcpm-explore
    # marag-r1 .. chart-perception
    "MaragReward",
    "SearchResult",
    "aggregate_docs",
    "bm25_scores",
    "document_coverage",
    "filter_docs",
    "keyword_search",
    "marag_reward",
    "semantic_search",
    "token_f1",
    # end of marag-r1 .. chart-perception
]
