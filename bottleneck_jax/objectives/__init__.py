"""The `objectives` family of bottleneck_jax (see `bottleneck_jax.catalog`)."""

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

# --- end of marag-r1 .. chart-perception imports ---

__all__: list[str] = [
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
