"""Efficiency family: fused, memory-efficient training bottlenecks (4 papers).

* Chronicals (``_chronicals.py``) — LoRA+ as an Optax transformation over flax's ``nnx.LoRA``
  adapters and a pure LoRA linear;
  the framework's fused ops (linear cross-entropy, RMSNorm, SwiGLU, RoPE) are shared and live in
  :mod:`bottleneck_jax.ops`, its sequence packing in :mod:`bottleneck_jax.data`;
* Sparton (``_sparton.py``) — SPLADE lexical max-pooling without the ``[B, L, V]`` logits;
* LexLIP (``_lexlip.py``) — lexicon-bottleneck heads and the image–text objective;
* WTA-CRS (``_wta_crs.py``) — linear layers with a sampled (winner-take-all column-row)
  weight gradient.

Kernels take ``implementation=None | "reference" | "xla" | "pallas"`` (see
:mod:`bottleneck_jax.kernels`).
"""

from bottleneck_jax.efficiency._chronicals import (
    default_lora_label,
    lora_linear,
    lora_plus,
    lora_plus_labels,
)
from bottleneck_jax.efficiency._lexlip import (
    LexiconBottleneckOutput,
    LexiconHead,
    LexLIPLoss,
    lexicon_bottleneck,
    lexicon_weighting,
    lexlip_contrastive_loss,
)
from bottleneck_jax.efficiency._sparton import (
    LexicalPoolOutput,
    SpladeHead,
    flops_regularizer,
    l1_regularizer,
    lexical_max_pool,
    lexical_max_pool_with_indices,
)
from bottleneck_jax.efficiency._wta_crs import (
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
    "LexicalPoolOutput",
    "LexiconHead",
    "LexiconBottleneckOutput",
    "LexLIPLoss",
    "SpladeHead",
    "WTACRSGradNorms",
    "WTACRSLinear",
    "adaptive_c",
    "budget",
    "crs_sample",
    "default_lora_label",
    "flops_regularizer",
    "l1_regularizer",
    "lexical_max_pool",
    "lexical_max_pool_with_indices",
    "lexicon_bottleneck",
    "lexicon_weighting",
    "lexlip_contrastive_loss",
    "lora_linear",
    "lora_plus",
    "lora_plus_labels",
    "sampling_probs",
    "store_grad_norms",
    "wta_crs_linear",
    "wta_crs_sample",
]
