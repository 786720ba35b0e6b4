"""Reference linear-logit statistics: the f32 ``[N, V]`` logits materialised, plain autodiff.

The oracle the fused implementations are tested against.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bottleneck_jax.ops._linear_cross_entropy.xla import block_logits


def stats(x, w, labels, bias, *, softcap, block_size):
  """``(lse, target_logit, logit_sum)`` from the materialised f32 logits."""
  del block_size
  z = block_logits(x, w, bias, softcap)
  lse = jax.nn.logsumexp(z, axis=-1)
  t = jnp.take_along_axis(z, labels.astype(jnp.int32)[:, None], axis=-1)[:, 0]
  return lse, t, jnp.sum(z, axis=-1)
