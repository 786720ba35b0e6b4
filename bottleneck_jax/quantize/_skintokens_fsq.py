"""SkinTokens: skinning weights compressed to FSQ tokens by a conditional auto-encoder.

Paper: Zhang, Pu, Guo, Cao, Hu, "Skin Tokens: A Learned Compact Representation for Unified
Autoregressive Rigging", 2026.

Idea. Per-vertex, per-bone skinning weights are sparse (each vertex follows a couple of bones).
Instead of regressing them, an FSQ-CVAE compresses each bone's influence field ``w_b in [0,1]^P``
into ``T`` discrete tokens: a conditional encoder ``E(w_b, c) -> z in R^{T x d}`` (``c``: the
bone's parameters and geometry features), FSQ on every token (the paper's levels
``[8, 8, 8, 5, 5, 5]``, 64,000 codes), tokens ``t = fsq_codes_to_indices(z_hat)``, and a
conditional decoder ``D(z_hat, c) -> w_hat_b`` (sigmoid). FSQ has no KL or codebook loss, so the
"CVAE" trains as a conditional auto-encoder through FSQ's straight-through rounding. An
autoregressive model (TokenRig) then emits one sequence per character: each joint's coordinates
quantised to 256 bins, followed by that bone's SkinTokens.

Implemented here: :func:`quantize_coordinates` / :func:`dequantize_coordinates` (uniform bins),
:func:`rig_token_sequence` (the interleaved joint-coordinate / skin-token sequence, with the two
vocabularies stacked), :func:`split_rig_token_sequence` (its inverse), and the ``flax.nnx``
model :class:`FSQCVAE` (MLP encoder, :func:`~bottleneck_jax.quantize.fsq`, MLP decoder with a
sigmoid head, :meth:`FSQCVAE.decode_tokens` for generated tokens).

Departures from the paper: MLP encoder and decoder on a fixed set of ``P`` points instead of the
paper's mesh encoders (their architecture and losses were not available to us); binary
cross-entropy reconstruction loss; the autoregressive TokenRig model and its GRPO refinement are
out of scope (only the token sequence it models is built here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.types import BottleneckOutput
from bottleneck_jax.quantize._fsq import _check_levels, fsq, fsq_indices_to_codes

SKINTOKENS_LEVELS = (8, 8, 8, 5, 5, 5)


def _check_range(fn, bins, low, high):
  V.check_scalar(fn, "bins", bins, low=2, integer=True, static=True)
  V.check_scalar(fn, "low", low, static=True)
  V.check_scalar(fn, "high", high, static=True)
  if not high > low:
    raise ValueError(f"{fn}: high must be > low, got low={low}, high={high}")


def quantize_coordinates(x: Float[Array, "*batch"], *, bins: int = 256, low: float = -1.0,
                         high: float = 1.0) -> Int[Array, "*batch"]:
  """Uniform quantisation of coordinates to ``bins`` bins of ``[low, high]`` (clipped).

  ``token = clip(floor((x - low) / (high - low) * bins), 0, bins - 1)``.

  Args:
    x: coordinates, floating, any shape.
    bins: number of bins ``>= 2`` (TokenRig: 256).
    low, high: the range.

  Returns:
    int32 tokens in ``[0, bins)``, shape of ``x``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import quantize_coordinates
    >>> quantize_coordinates(jnp.array([-1.0, 0.0, 0.999, 5.0])).tolist()
    [0, 128, 255, 255]

  References:
    Zhang et al., "Skin Tokens: A Learned Compact Representation for Unified Autoregressive
    Rigging", 2026.
  """
  fn = "quantize_coordinates"
  V.check_array(fn, "x", x)
  V.check_floating(fn, "x", x)
  _check_range(fn, bins, low, high)
  x = jnp.asarray(x)
  t = jnp.floor((x - low) / (high - low) * bins)
  return jnp.clip(t, 0, bins - 1).astype(jnp.int32)


def dequantize_coordinates(tokens: Int[Array, "*batch"], *, bins: int = 256, low: float = -1.0,
                           high: float = 1.0, dtype=jnp.float32) -> Float[Array, "*batch"]:
  """Bin centres of coordinate tokens (inverse of :func:`quantize_coordinates` to half a bin).

  Args:
    tokens: integer tokens in ``[0, bins)``.
    bins, low, high: as :func:`quantize_coordinates`.
    dtype: floating output dtype.

  Returns:
    ``low + (token + 0.5) (high - low) / bins``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import dequantize_coordinates
    >>> dequantize_coordinates(jnp.array([0, 255]), bins=256).tolist()
    [-0.99609375, 0.99609375]

  References:
    Zhang et al., "Skin Tokens", 2026.
  """
  fn = "dequantize_coordinates"
  V.check_array(fn, "tokens", tokens)
  V.check_integer(fn, "tokens", tokens)
  _check_range(fn, bins, low, high)
  if not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
    raise TypeError(f"{fn}: dtype must be a floating dtype, got {jnp.dtype(dtype).name}")
  t = jnp.asarray(tokens).astype(jnp.float32)
  return (low + (t + 0.5) * (high - low) / bins).astype(dtype)


def rig_token_sequence(joint_tokens: Int[Array, "*batch j c"], skin_tokens: Int[Array, "*batch j t"],
                       *, coordinate_bins: int = 256) -> Int[Array, "*batch n"]:
  """The rig as one token sequence: per joint, its coordinate tokens then its bone's skin tokens.

  Skin tokens are shifted by ``coordinate_bins`` so that both vocabularies share one id space
  (``[0, bins)`` coordinates, ``[bins, bins + codebook)`` skin tokens).

  Args:
    joint_tokens: int ``[*batch, J, C]`` (e.g. ``C = 3`` coordinates) in ``[0, bins)``.
    skin_tokens: int ``[*batch, J, T]`` FSQ indices of each bone's weights.
    coordinate_bins: size of the coordinate vocabulary.

  Returns:
    int32 ``[*batch, J * (C + T)]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import rig_token_sequence
    >>> rig_token_sequence(jnp.array([[1, 2], [3, 4]]), jnp.array([[7], [9]]),
    ...                    coordinate_bins=10).tolist()
    [1, 2, 17, 3, 4, 19]

  References:
    Zhang et al., "Skin Tokens", 2026.
  """
  fn = "rig_token_sequence"
  for name, arr in (("joint_tokens", joint_tokens), ("skin_tokens", skin_tokens)):
    V.check_array(fn, name, arr)
    V.check_integer(fn, name, arr)
    V.check_rank(fn, name, arr, min_rank=2)
  V.check_scalar(fn, "coordinate_bins", coordinate_bins, low=1, integer=True, static=True)
  if tuple(joint_tokens.shape[:-1]) != tuple(skin_tokens.shape[:-1]):
    raise ValueError(f"{fn}: skin_tokens must have the leading shape of joint_tokens "
                     f"{list(joint_tokens.shape[:-1])}, got {V.describe(skin_tokens)}")
  j = jnp.asarray(joint_tokens).astype(jnp.int32)
  s = jnp.asarray(skin_tokens).astype(jnp.int32) + int(coordinate_bins)
  seq = jnp.concatenate([j, s], axis=-1)
  return seq.reshape(*seq.shape[:-2], -1)


def split_rig_token_sequence(sequence: Int[Array, "*batch n"], *, coords: int, tokens: int,
                             coordinate_bins: int = 256
                             ) -> tuple[Int[Array, "*batch j c"], Int[Array, "*batch j t"]]:
  """Inverse of :func:`rig_token_sequence`: ``(joint_tokens, skin_tokens)``.

  Args:
    sequence: int ``[*batch, J * (coords + tokens)]``.
    coords: coordinate tokens per joint ``C``.
    tokens: skin tokens per bone ``T``.
    coordinate_bins: the shift of the skin tokens.

  Returns:
    ``(joint_tokens [*batch, J, C], skin_tokens [*batch, J, T])``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import split_rig_token_sequence
    >>> j, s = split_rig_token_sequence(jnp.array([1, 2, 17, 3, 4, 19]), coords=2, tokens=1,
    ...                                 coordinate_bins=10)
    >>> j.tolist(), s.tolist()
    ([[1, 2], [3, 4]], [[7], [9]])

  References:
    Zhang et al., "Skin Tokens", 2026.
  """
  fn = "split_rig_token_sequence"
  V.check_array(fn, "sequence", sequence)
  V.check_integer(fn, "sequence", sequence)
  V.check_rank(fn, "sequence", sequence, min_rank=1)
  V.check_scalar(fn, "coords", coords, low=0, integer=True, static=True)
  V.check_scalar(fn, "tokens", tokens, low=1, integer=True, static=True)
  V.check_scalar(fn, "coordinate_bins", coordinate_bins, low=1, integer=True, static=True)
  per = int(coords) + int(tokens)
  n = sequence.shape[-1]
  if n % per:
    raise ValueError(f"{fn}: sequence length must be a multiple of coords + tokens = {per}, got "
                     f"{V.describe(sequence)}")
  seq = jnp.asarray(sequence).astype(jnp.int32).reshape(*sequence.shape[:-1], n // per, per)
  return seq[..., :coords], seq[..., coords:] - int(coordinate_bins)


class FSQCVAE(nnx.Module):
  """FSQ conditional auto-encoder of per-bone skinning weights (SkinTokens).

  ``encoder: [w_b, c] -> hidden (GELU) -> T * d``; :func:`~bottleneck_jax.quantize.fsq` per
  token; ``decoder: [z_hat, c] -> hidden (GELU) -> P`` logits, sigmoid weights.

  Args:
    num_points: ``P``.
    cond_dim: size of the condition ``c``.
    levels: FSQ levels (``d = len(levels)``; default the paper's ``[8, 8, 8, 5, 5, 5]``).
    num_tokens: ``T`` tokens per bone.
    hidden: hidden width.
    rngs: ``nnx.Rngs``.

  ``__call__(w, cond)`` returns a :class:`~bottleneck_jax.core.BottleneckOutput`: ``z`` the
  reconstructed weights ``[B, P]`` (sigmoid), ``loss`` 0, ``bits = T log2 prod(levels)``,
  ``aux``: ``"logits"`` ``[B, P]``, ``"tokens"`` int32 ``[B, T]``, ``"codes"`` ``[B, T, d]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.quantize import FSQCVAE
    >>> m = FSQCVAE(16, 2, levels=(8, 5, 5, 5), num_tokens=2, hidden=32, rngs=nnx.Rngs(0))
    >>> out = m(jnp.zeros((3, 16)), jnp.zeros((3, 2)))
    >>> out.z.shape, out.aux["tokens"].shape
    ((3, 16), (3, 2))
  """

  def __init__(self, num_points: int, cond_dim: int, *,
               levels: Sequence[int] = SKINTOKENS_LEVELS, num_tokens: int = 1,
               hidden: int = 256, rngs: nnx.Rngs):
    fn = "FSQCVAE"
    for name, val in (("num_points", num_points), ("num_tokens", num_tokens),
                      ("hidden", hidden)):
      V.check_scalar(fn, name, val, low=1, integer=True)
    V.check_scalar(fn, "cond_dim", cond_dim, low=0, integer=True)
    self.levels = _check_levels(fn, levels)
    p, c, t, h, d = int(num_points), int(cond_dim), int(num_tokens), int(hidden), len(self.levels)
    self.num_tokens = t
    self.enc1 = nnx.Linear(p + c, h, rngs=rngs)
    self.enc2 = nnx.Linear(h, t * d, rngs=rngs)
    self.dec1 = nnx.Linear(t * d + c, h, rngs=rngs)
    self.dec2 = nnx.Linear(h, p, rngs=rngs)

  def encode(self, w: Float[Array, "b p"], cond: Float[Array, "b c"]) -> BottleneckOutput:
    """FSQ of the encoder output: ``z`` the codes ``[B, T, d]`` (STE), ``aux["indices"]``."""
    z = self.enc2(jax.nn.gelu(self.enc1(jnp.concatenate([w, cond], axis=-1))))
    return fsq(z.reshape(*z.shape[:-1], self.num_tokens, len(self.levels)), levels=self.levels)

  def decode_logits(self, codes: Float[Array, "b t d"], cond: Float[Array, "b c"]
                    ) -> Float[Array, "b p"]:
    """Decoder logits from FSQ codes."""
    flat = codes.reshape(*codes.shape[:-2], -1)
    return self.dec2(jax.nn.gelu(self.dec1(jnp.concatenate([flat, cond], axis=-1))))

  def decode_tokens(self, tokens: Int[Array, "b t"], cond: Float[Array, "b c"]
                    ) -> Float[Array, "b p"]:
    """Skinning weights from (generated) tokens: ``sigmoid(decoder(codes(tokens), c))``."""
    codes = fsq_indices_to_codes(tokens, levels=self.levels, dtype=cond.dtype)
    return jax.nn.sigmoid(self.decode_logits(codes, cond))

  def __call__(self, w: Float[Array, "b p"], cond: Float[Array, "b c"]) -> BottleneckOutput:
    q = self.encode(w, cond)
    logits = self.decode_logits(q.z, cond)
    bits = jnp.full(w.shape[:1], self.num_tokens * math.log2(math.prod(self.levels)), w.dtype)
    return BottleneckOutput(z=jax.nn.sigmoid(logits), loss=jnp.zeros((), w.dtype), bits=bits,
                            aux={"logits": logits, "tokens": q.aux["indices"],
                                 "codes": q.aux["codes"]})


__all__ = ["SKINTOKENS_LEVELS", "FSQCVAE", "dequantize_coordinates", "quantize_coordinates",
           "rig_token_sequence", "split_rig_token_sequence"]
