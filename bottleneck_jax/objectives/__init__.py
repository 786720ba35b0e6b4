"""The `objectives` family of bottleneck_jax (see `bottleneck_jax.catalog`)."""

__all__: list[str] = []
