"""The `quantize` family of bottleneck_jax (see `bottleneck_jax.catalog`).

Base quantisers: :func:`fsq` (Finite Scalar Quantization), :func:`vector_quantize` (VQ-VAE with
the straight-through estimator or the :func:`rotation_trick`, commitment loss and an EMA codebook
with :func:`kmeans` initialisation and :func:`replace_dead_codes`) over the :func:`nearest_code`
op, :func:`residual_vq`, :func:`grouped_vq`, :func:`residual_fsq` and :func:`lfq` (Lookup-Free
Quantization, MAGVIT-v2).
"""

from bottleneck_jax.quantize._codebook_features import (
  CodebookLayer,
  GroupCodebookLayer,
  codebook_snap,
  group_codebook_snap,
)
from bottleneck_jax.quantize._dkvb import (
  DiscreteKeyValueBottleneck,
  DKVBFrozen,
  dkvb,
  dkvb_init_keys,
  dkvb_project,
)
from bottleneck_jax.quantize._fsq import FSQ, fsq, fsq_codes_to_indices, fsq_indices_to_codes
from bottleneck_jax.quantize._kmeans import KMeans, kmeans, replace_dead_codes
from bottleneck_jax.quantize._lfq import LFQ, lfq, lfq_indices_to_codes
from bottleneck_jax.quantize._lpgnas import (
  ArchParam,
  QuantGCNLayer,
  QuantSpec,
  binary_quantize,
  expected_bits,
  fixed_point_quantize,
  mixed_op,
  mixed_quantize,
  quantize_with,
  ternary_quantize,
)
from bottleneck_jax.quantize._nearest_code import NearestCode, nearest_code
from bottleneck_jax.quantize._residual import (
  ResidualFSQ,
  ResidualVQ,
  grouped_vq,
  residual_fsq,
  residual_fsq_decode,
  residual_vq,
  residual_vq_decode,
  residual_vq_ema_update,
)
from bottleneck_jax.quantize._skintokens_fsq import (
  FSQCVAE,
  SKINTOKENS_LEVELS,
  dequantize_coordinates,
  quantize_coordinates,
  rig_token_sequence,
  split_rig_token_sequence,
)
from bottleneck_jax.quantize._vq import (
  VectorQuantizer,
  VQEMAState,
  VQEMAVariable,
  rotation_trick,
  vector_quantize,
  vq_ema_init,
  vq_ema_update,
)
from bottleneck_jax.quantize._vq_logits import (
  VQLogitsHead,
  VQLogitsMap,
  VQLogitsMapping,
  vq_code_logits,
  vq_logits,
  vq_logits_cross_entropy,
  vq_logits_init_mapping,
  vq_logits_sample,
)

__all__: list[str] = [
    "ArchParam",
    "CodebookLayer",
    "DKVBFrozen",
    "DiscreteKeyValueBottleneck",
    "FSQ",
    "FSQCVAE",
    "GroupCodebookLayer",
    "KMeans",
    "LFQ",
    "NearestCode",
    "QuantGCNLayer",
    "QuantSpec",
    "ResidualFSQ",
    "ResidualVQ",
    "SKINTOKENS_LEVELS",
    "VQEMAState",
    "VQEMAVariable",
    "VQLogitsHead",
    "VQLogitsMap",
    "VQLogitsMapping",
    "VectorQuantizer",
    "binary_quantize",
    "codebook_snap",
    "dequantize_coordinates",
    "dkvb",
    "dkvb_init_keys",
    "dkvb_project",
    "expected_bits",
    "fixed_point_quantize",
    "fsq",
    "fsq_codes_to_indices",
    "fsq_indices_to_codes",
    "group_codebook_snap",
    "grouped_vq",
    "kmeans",
    "lfq",
    "lfq_indices_to_codes",
    "mixed_op",
    "mixed_quantize",
    "nearest_code",
    "quantize_coordinates",
    "quantize_with",
    "replace_dead_codes",
    "residual_fsq",
    "residual_fsq_decode",
    "residual_vq",
    "residual_vq_decode",
    "residual_vq_ema_update",
    "rig_token_sequence",
    "rotation_trick",
    "split_rig_token_sequence",
    "ternary_quantize",
    "vector_quantize",
    "vq_code_logits",
    "vq_ema_init",
    "vq_ema_update",
    "vq_logits",
    "vq_logits_cross_entropy",
    "vq_logits_init_mapping",
    "vq_logits_sample",
]
