"""The `objectives` family of bottleneck_jax (see `bottleneck_jax.catalog`)."""

# Imports are kept sorted by module (ruff isort), so both groups of papers interleave here;
# ``__all__`` below is grouped by paper.
# --- retrieval, merging, plasticity, causal, long-tail and contrastive papers (marag-r1, chi0,
# plasticity, graph-rlearner, brl, chart-perception) ---
from bottleneck_jax.objectives._chi0 import (
    CrossfadedChunk,
    MixWeights,
    chunk_crossfade,
    discretize_advantage,
    greedy_soup,
    inverse_loss_weights,
    mix_params,
    optimize_mix_weights,
    simplex_grad,
    stage_advantage,
    stage_progress,
)
from bottleneck_jax.objectives._hicra import (
    hicra_advantages,
    hicra_verl_advantages,
    semantic_entropy,
    sg_match_counts,
    sg_planning_mask,
)
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
from bottleneck_jax.objectives._plasticity import (
    ARRState,
    ReLUMLP,
    arr_init,
    arr_update,
    dormant_ratio,
    fraction_active_units,
    per_layer_fau,
    updates_at_step,
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
from bottleneck_jax.objectives._remix import (
    RemixPhase,
    ReplayBuffer,
    kl_convex,
    mix_policy_ppg_loss,
    remix_schedule,
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
    "hicra_advantages",
    "hicra_verl_advantages",
    "semantic_entropy",
    "sg_match_counts",
    "sg_planning_mask",
    "RemixPhase",
    "ReplayBuffer",
    "kl_convex",
    "mix_policy_ppg_loss",
    "remix_schedule",
    # end of substrate .. agentcpm-explore
    # marag-r1 .. chart-perception
    "ARRState",
    "ReLUMLP",
    "arr_init",
    "arr_update",
    "dormant_ratio",
    "fraction_active_units",
    "per_layer_fau",
    "updates_at_step",
    "CrossfadedChunk",
    "MixWeights",
    "chunk_crossfade",
    "discretize_advantage",
    "greedy_soup",
    "inverse_loss_weights",
    "mix_params",
    "optimize_mix_weights",
    "simplex_grad",
    "stage_advantage",
    "stage_progress",
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
