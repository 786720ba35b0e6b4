"""Helpers shared by the attention implementations (private).

Every implementation takes ``(q, k, v, mask, q_segment_ids, kv_segment_ids, *, causal, scale,
block_sizes)`` already validated by the public :func:`bottleneck_jax.ops.attention`:

* ``q [B, Lq, H, D]``, ``k, v [B, Lk, Hkv, D]`` of one floating dtype, ``H % Hkv == 0``;
* ``mask``: ``None`` or bool ``[B|1, H|1, Lq, Lk]`` (True = attend);
* ``q_segment_ids [B, Lq]`` and ``kv_segment_ids [B, Lk]``: both ``None`` or both integer;
* ``causal``: Python bool; ``scale``: Python float; ``block_sizes``: ``None`` or ``(bq, bk)``;

and returns ``(out [B, Lq, H, D] in q's dtype, lse [B, H, Lq] f32)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from bottleneck_jax.kernels import blocks
from bottleneck_jax.kernels.sharding import explicit_spec

F32 = jnp.float32
NEG_INF = float("-inf")

# Preferred tiles. XLA: a [B, H, 512, 512] f32 logit tile is 1 MiB per (batch, head): large
# enough for efficient GEMMs, small next to the [Lq, Lk] matrix at long lengths. Pallas on GPU:
# the FlashAttention-2 forward tiles (Triton needs powers of two, at least 16).
_XLA_BLOCK = 512
_PALLAS_INTERPRET_BLOCK = 64


def block_sizes(lq: int, lk: int, d: int, dtype, platform: str, implementation: str, *,
                interpret: bool = False) -> tuple[int, int]:
  """``(block_q, block_k)`` for one attention call: the single place where tiles are chosen.

  Args:
    lq, lk: query and key lengths.
    d: head dimension.
    dtype: the input dtype (wider tiles for 2-byte dtypes on GPU).
    platform: ``"cpu"``, ``"gpu"`` or ``"tpu"``.
    implementation: ``"xla"`` or ``"pallas"``.
    interpret: whether the Pallas kernel runs in interpret mode.
  """
  if implementation == "pallas":
    if interpret or platform != "gpu":
      return (blocks.pick_block(lq, _PALLAS_INTERPRET_BLOCK, power_of_2=True),
              blocks.pick_block(lk, _PALLAS_INTERPRET_BLOCK, power_of_2=True))
    small = jnp.dtype(dtype).itemsize <= 2
    d_pad = blocks.next_power_of_2(d)
    bq = 128 if (small and d_pad <= 128) else 64
    bk = 64 if d_pad <= 128 else 32
    return (blocks.pick_block(lq, bq, multiple=16, power_of_2=True),
            blocks.pick_block(lk, bk, multiple=16, power_of_2=True))
  return (blocks.pick_block(lq, _XLA_BLOCK, multiple=8),
          blocks.pick_block(lk, _XLA_BLOCK, multiple=8))


def pad_axis(x, axis: int, size: int, value=0):
  """``x`` padded at the end of ``axis`` to ``size`` (no copy when already that long)."""
  if x is None or x.shape[axis] == size:
    return x
  pads = [(0, 0)] * x.ndim
  pads[axis] = (0, size - x.shape[axis])
  return jnp.pad(x, pads, constant_values=value)


def match_batch_sharding(q, *arrays):
  """Under an Explicit mesh, reshards each array whose axis 0 is the batch (same size as ``q``'s,
  > 1) like ``q``'s batch axis; elementwise ops between the masks and the logits then agree on
  their sharding. Elsewhere returns the arrays unchanged."""
  spec = explicit_spec(q)
  if spec is None:
    return arrays
  batch = q.shape[0]
  out = []
  for a in arrays:
    if a is not None and a.ndim and a.shape[0] == batch and batch > 1:
      a = jax.sharding.reshard(a, P(spec[0], *([None] * (a.ndim - 1))))
    out.append(a)
  return tuple(out)
