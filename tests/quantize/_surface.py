"""The pinned public surface of ``bottleneck_jax.quantize``
(merged into ``tests/test_public_api.py``): every public name with its kind. Changing it is
deliberate: update this table in the same commit."""

SURFACE = {
    "FSQ": "class",
    "LFQ": "class",
    "NearestCode": "class",
    "VQEMAState": "class",
    "VQEMAVariable": "class",
    "VectorQuantizer": "class",
    "fsq": "function",
    "fsq_codes_to_indices": "function",
    "fsq_indices_to_codes": "function",
    "lfq": "function",
    "lfq_indices_to_codes": "function",
    "nearest_code": "function",
    "vector_quantize": "function",
    "vq_ema_init": "function",
    "vq_ema_update": "function",
}
