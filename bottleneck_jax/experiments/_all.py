"""Imports every experiment module so that each registers itself.

Add one line per experiment module; a module that fails to import raises here (loudly).
"""
from bottleneck_jax.experiments import vib_digits  # noqa: F401  (vib-digits, vib-digits-sweep)
from bottleneck_jax.experiments import splade_toy  # noqa: F401  (splade-toy)
from bottleneck_jax.experiments import wta_crs_memory  # noqa: F401  (wta-crs-memory)
from bottleneck_jax.experiments import chronicals_memory  # noqa: F401  (chronicals-cce-memory)
from bottleneck_jax.experiments import chronicals_packing  # noqa: F401  (chronicals-packing)
from bottleneck_jax.experiments import lexlip_toy  # noqa: F401  (lexlip-toy)
from bottleneck_jax.experiments import chronicals_lora_plus  # noqa: F401  (chronicals-lora-plus)
