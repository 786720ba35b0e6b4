"""The pinned public surface of ``bottleneck_jax.architecture``
(merged into ``tests/test_public_api.py``): every public name with its kind. Changing it is
deliberate: update this table in the same commit."""

SURFACE = {
}
