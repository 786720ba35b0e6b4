"""Efficiency family: fused, memory-efficient kernels for training bottlenecks.

* ``chronicals`` — fused linear cross-entropy, RMSNorm/SwiGLU/QK-RoPE, LoRA+, sequence packing;
* ``sparton`` — SPLADE lexical max-pooling without the ``[B, L, V]`` logits;
* ``lexlip`` — lexicon-bottleneck heads and objective;
* ``wta_crs`` — linear layers with a sampled (winner-take-all column-row) weight gradient.

Kernels take ``implementation=None | "reference" | "xla" | "pallas"`` (see
:mod:`bottleneck_jax.kernels`).
"""

from bottleneck_jax.efficiency import chronicals
from bottleneck_jax.efficiency.chronicals import (
    FusedRMSNorm,
    LoRALinear,
    PackedBatch,
    apply_rope,
    best_fit_decreasing,
    linear_cross_entropy,
    linear_logit_stats,
    lora_plus,
    lora_plus_labels,
    pack_sequences,
    packed_attention_mask,
    qk_rope,
    rms_norm,
    swiglu,
    swiglu_linear,
)
from bottleneck_jax.efficiency.lexlip import (
    LexiconHead,
    lexicon_bottleneck,
    lexicon_weighting,
    lexlip_contrastive_loss,
)
from bottleneck_jax.efficiency.sparton import (
    SpladeHead,
    flops_regularizer,
    l1_regularizer,
    lexical_max_pool,
)
from bottleneck_jax.efficiency.wta_crs import (
    WTACRSGradNorms,
    WTACRSLinear,
    adaptive_c,
    budget,
    crs_sample,
    sampling_probs,
    store_grad_norms,
    wta_crs_linear,
    wta_crs_sample,
)

__all__ = [
    "FusedRMSNorm",
    "LexiconHead",
    "LoRALinear",
    "PackedBatch",
    "SpladeHead",
    "WTACRSGradNorms",
    "WTACRSLinear",
    "adaptive_c",
    "apply_rope",
    "best_fit_decreasing",
    "budget",
    "chronicals",
    "crs_sample",
    "flops_regularizer",
    "l1_regularizer",
    "lexical_max_pool",
    "lexicon_bottleneck",
    "lexicon_weighting",
    "lexlip_contrastive_loss",
    "linear_cross_entropy",
    "linear_logit_stats",
    "lora_plus",
    "lora_plus_labels",
    "pack_sequences",
    "packed_attention_mask",
    "qk_rope",
    "rms_norm",
    "sampling_probs",
    "store_grad_norms",
    "swiglu",
    "swiglu_linear",
    "wta_crs_linear",
    "wta_crs_sample",
]
