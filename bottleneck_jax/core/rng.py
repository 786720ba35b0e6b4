"""Key handling: randomness always comes in explicitly as ``key=``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def as_key(key, *, fn: str = "as_key", arg: str = "key") -> jax.Array:
  """Returns a JAX PRNG key from a key (raw ``uint32[2]`` or typed) or a Python int seed.

  Raises:
    TypeError: naming ``fn`` and ``arg`` when ``key`` is neither.
  """
  if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
    return jax.random.key(int(key))
  if isinstance(key, jax.Array) or isinstance(key, jax.core.Tracer):
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
      if key.shape != ():
        raise ValueError(f"{fn}: {arg} must be a single PRNG key, got a key array of shape "
                         f"{key.shape}")
      return key
    if key.dtype == jnp.uint32 and key.shape == (2,):
      return key
  raise TypeError(f"{fn}: {arg} must be a jax.random key (jax.random.key(seed)) or an int seed, "
                  f"got {type(key).__name__}"
                  + (f" with dtype {key.dtype} and shape {key.shape}" if hasattr(key, "dtype") else ""))


def split_like(key: jax.Array, tree) -> object:
  """Splits ``key`` into one key per leaf of ``tree`` (same structure)."""
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(key, max(len(leaves), 1))
  return jax.tree.unflatten(treedef, list(keys[: len(leaves)]))


__all__ = ["as_key", "split_like"]
