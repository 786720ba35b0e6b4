"""Shared primitives that several families build on, each one op with several implementations.

Every op is one public function with an ``implementation=`` argument (``"reference"``, ``"xla"``,
``"pallas"``; ``None`` picks the best validated one for the backend, see
:mod:`bottleneck_jax.kernels`). The implementations of an op live in one private folder
(``ops/_linear_cross_entropy/{reference,xla,pallas}.py``), re-exported here:

* :func:`attention` — scaled dot-product attention with masks, segment ids (packed sequences)
  and causality, returning the output and the log-sum-exp; its XLA path is flash-style (memory
  linear in sequence length), the base of the sparse and cached attention families;
* :func:`block_sparse_attention`, :func:`block_sparse_decode` (and :func:`block_mask_to_table`)
  — attention over the key blocks a block table selects (prefill and flash-decode), never a
  dense mask; the base of block top-k decoding and banded sparse attention;
* :func:`linear_cross_entropy`, :func:`linear_logit_stats` — the cross-entropy of a linear head
  over a large vocabulary without materialising the logits (Cut Cross-Entropy);
* :func:`rms_norm` (and the NNX :class:`FusedRMSNorm`) — RMSNorm with a lean hand VJP;
* :func:`swiglu`, :func:`swiglu_linear` — the SwiGLU gate, alone or fused with its projections;
* :func:`apply_rope`, :func:`qk_rope` — rotary position embeddings with a residual-free VJP;
* :func:`sae_encode`, :func:`sae_decode`, :func:`sae_loss` (with :func:`init_sae`,
  :func:`normalize_decoder`, :func:`sae_metrics`, :func:`topk_activation`, :func:`jumprelu`,
  :func:`heaviside_step`) — sparse autoencoders (ReLU + L1, TopK, JumpReLU), the dictionary
  bottleneck of the compression family and of DN-CBM's concept discovery (one implementation).
"""

from bottleneck_jax.ops._attention import AttentionOutput, attention
from bottleneck_jax.ops._block_sparse_attention import (
    block_mask_to_table,
    block_sparse_attention,
    block_sparse_decode,
)
from bottleneck_jax.ops._linear_cross_entropy import (
    CrossEntropyOutput,
    linear_cross_entropy,
    linear_cross_entropy_with_aux,
    linear_logit_stats,
)
from bottleneck_jax.ops._rms_norm import FusedRMSNorm, rms_norm
from bottleneck_jax.ops._rope import apply_rope, qk_rope
from bottleneck_jax.ops._sparse_autoencoder import (
    SAEFeatures,
    SAELoss,
    SAEMetrics,
    SAEParams,
    heaviside_step,
    init_sae,
    jumprelu,
    normalize_decoder,
    sae_decode,
    sae_encode,
    sae_loss,
    sae_metrics,
    topk_activation,
)
from bottleneck_jax.ops._swiglu import swiglu, swiglu_linear

__all__ = [
    "AttentionOutput",
    "CrossEntropyOutput",
    "FusedRMSNorm",
    "SAEFeatures",
    "SAELoss",
    "SAEMetrics",
    "SAEParams",
    "apply_rope",
    "attention",
    "block_mask_to_table",
    "block_sparse_attention",
    "block_sparse_decode",
    "heaviside_step",
    "init_sae",
    "jumprelu",
    "linear_cross_entropy",
    "linear_cross_entropy_with_aux",
    "linear_logit_stats",
    "normalize_decoder",
    "qk_rope",
    "rms_norm",
    "sae_decode",
    "sae_encode",
    "sae_loss",
    "sae_metrics",
    "swiglu",
    "swiglu_linear",
    "topk_activation",
]
