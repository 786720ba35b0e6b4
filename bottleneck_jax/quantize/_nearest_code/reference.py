"""Reference nearest-code search: materialises the ``[N, K]`` distances (the oracle of the tests)."""

from __future__ import annotations

import jax.numpy as jnp

from bottleneck_jax.quantize._nearest_code.common import compute_dtype, normalise


def nearest_code(z, codebook, *, metric, block_size=None):
  """``(indices [N] int32, distances [N])`` for ``z [N, d]``; see the package docstring."""
  out_dtype = z.dtype
  cdt = compute_dtype(z.dtype)
  z, codebook = z.astype(cdt), codebook.astype(cdt)
  del block_size
  if metric == "cosine":
    z, codebook = normalise(z), normalise(codebook)
    dist = 1.0 - z @ codebook.T
  else:
    dist = (jnp.sum(z * z, axis=-1, keepdims=True) - 2.0 * (z @ codebook.T)
            + jnp.sum(codebook * codebook, axis=-1)[None, :])
  indices = jnp.argmin(dist, axis=-1).astype(jnp.int32)
  picked = jnp.take_along_axis(dist, indices[:, None], axis=-1)[:, 0]
  return indices, picked.astype(out_dtype)
