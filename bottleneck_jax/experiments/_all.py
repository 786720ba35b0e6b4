"""Imports every experiment module so that each registers itself.

Add one line per experiment module; a module that fails to import raises here (loudly).
"""
from bottleneck_jax.experiments import (
    chronicals_lora_plus,  # noqa: F401  (chronicals-lora-plus)
    chronicals_memory,  # noqa: F401  (chronicals-cce-memory)
    chronicals_packing,  # noqa: F401  (chronicals-packing)
    lexlip_toy,  # noqa: F401  (lexlip-toy, lexlip-toy-tuned)
    splade_toy,  # noqa: F401  (splade-toy)
    vib_digits,  # noqa: F401  (vib-digits, vib-digits-sweep)
    wta_crs_memory,  # noqa: F401  (wta-crs-memory)
)
