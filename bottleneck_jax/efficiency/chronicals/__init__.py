"""Chronicals: A High-Performance Framework for LLM Fine-Tuning (2026), catalogue id ``chronicals``.

The paper speeds fine-tuning up by removing memory bottlenecks in the training step. Its parts,
one submodule each:

* :mod:`.linear_cross_entropy` — cut cross-entropy: loss and gradients of ``softmax(x W^T)``
  without ever materialising the ``[N, V]`` logits (reference / chunked XLA / Pallas);
* :mod:`.fused` — RMSNorm, SwiGLU and QK-RoPE with custom VJPs that save only what the backward
  needs (plus a Pallas RMSNorm);
* :mod:`.lora_plus` — LoRA+ as an Optax transformation (B learns ``ratio`` times faster than A)
  and a LoRA linear layer;
* :mod:`.packing` — best-fit-decreasing sequence packing with segment ids and positions for
  attention masks.

Departure from the paper: Chronicals' speed-ups are measured against PyTorch eager; under XLA the
elementwise chains already fuse, so here the lever is what is saved for the backward pass
(see each submodule and ``BENCHMARKS.md`` for measured numbers).

References:
  Chronicals: A High-Performance Framework for LLM Fine-Tuning with 3.51x Speedup over Unsloth
  (2026). Wijmans et al., Cut Your Losses in Large-Vocabulary Language Models (2024),
  https://arxiv.org/abs/2411.09009. Hayou et al., LoRA+: Efficient Low Rank Adaptation of Large
  Models (2024), https://arxiv.org/abs/2402.12354.
"""

from bottleneck_jax.efficiency.chronicals.fused import (
    FusedRMSNorm,
    apply_rope,
    qk_rope,
    rms_norm,
    swiglu,
    swiglu_linear,
)
from bottleneck_jax.efficiency.chronicals.linear_cross_entropy import (
    linear_cross_entropy,
    linear_logit_stats,
)
from bottleneck_jax.efficiency.chronicals.lora_plus import (
    FrozenWeight,
    LoRALinear,
    default_lora_label,
    lora_linear,
    lora_plus,
    lora_plus_labels,
)
from bottleneck_jax.efficiency.chronicals.packing import (
    PackedBatch,
    PackingStats,
    best_fit_decreasing,
    pack_sequences,
    packed_attention_mask,
)

__all__ = [
    "FrozenWeight",
    "FusedRMSNorm",
    "LoRALinear",
    "PackedBatch",
    "PackingStats",
    "apply_rope",
    "best_fit_decreasing",
    "default_lora_label",
    "linear_cross_entropy",
    "linear_logit_stats",
    "lora_linear",
    "lora_plus",
    "lora_plus_labels",
    "pack_sequences",
    "packed_attention_mask",
    "qk_rope",
    "rms_norm",
    "swiglu",
    "swiglu_linear",
]
