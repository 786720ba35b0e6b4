"""The pinned public surface of ``bottleneck_jax.quantize``
(merged into ``tests/test_public_api.py``): every public name with its kind. Changing it is
deliberate: update this table in the same commit."""

SURFACE = {
    "FSQ": "class",
    "KMeans": "class",
    "LFQ": "class",
    "NearestCode": "class",
    "ResidualFSQ": "class",
    "ResidualVQ": "class",
    "VQEMAState": "class",
    "VQEMAVariable": "class",
    "VectorQuantizer": "class",
    "fsq": "function",
    "fsq_codes_to_indices": "function",
    "fsq_indices_to_codes": "function",
    "grouped_vq": "function",
    "kmeans": "function",
    "lfq": "function",
    "lfq_indices_to_codes": "function",
    "nearest_code": "function",
    "replace_dead_codes": "function",
    "residual_fsq": "function",
    "residual_fsq_decode": "function",
    "residual_vq": "function",
    "residual_vq_decode": "function",
    "residual_vq_ema_update": "function",
    "rotation_trick": "function",
    "vector_quantize": "function",
    "vq_ema_init": "function",
    "vq_ema_update": "function",
}
