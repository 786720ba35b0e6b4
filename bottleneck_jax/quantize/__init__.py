"""The `quantize` family of bottleneck_jax (see `bottleneck_jax.catalog`).

Base quantisers: :func:`fsq` (Finite Scalar Quantization), :func:`vector_quantize` (VQ-VAE with
the straight-through estimator, commitment loss and an EMA codebook) over the
:func:`nearest_code` op, and :func:`lfq` (Lookup-Free Quantization, MAGVIT-v2).
"""

from bottleneck_jax.quantize._fsq import FSQ, fsq, fsq_codes_to_indices, fsq_indices_to_codes
from bottleneck_jax.quantize._lfq import LFQ, lfq, lfq_indices_to_codes
from bottleneck_jax.quantize._nearest_code import NearestCode, nearest_code
from bottleneck_jax.quantize._vq import (
  VectorQuantizer,
  VQEMAState,
  VQEMAVariable,
  vector_quantize,
  vq_ema_init,
  vq_ema_update,
)

__all__: list[str] = [
    "FSQ",
    "LFQ",
    "NearestCode",
    "VQEMAState",
    "VQEMAVariable",
    "VectorQuantizer",
    "fsq",
    "fsq_codes_to_indices",
    "fsq_indices_to_codes",
    "lfq",
    "lfq_indices_to_codes",
    "nearest_code",
    "vector_quantize",
    "vq_ema_init",
    "vq_ema_update",
]
