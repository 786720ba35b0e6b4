"""LexLIP: lexicon-weighting representations and the lexicon bottleneck.

Paper: *LexLIP: Lexicon-Bottlenecked Language-Image Pre-Training for Large-Scale Image-Text
Retrieval*, Luo et al., ICCV 2023 (arXiv 2302.02908). Code: ChiYeungLaw/LexLIP-ICCV23.

Idea. Images and texts are both encoded as sparse, non-negative weights over the word vocabulary
("lexicon-weighting"), so retrieval runs on an inverted index (the paper reports 5.5-221.3x faster
retrieval and 13.2-48.8x less index memory than CLIP). Both towers end with an MLM head
``z = h W^T + b`` (``[B, L, V]``), pooled exactly as SPLADE, which is the fused
:func:`~bottleneck_jax.efficiency.lexical_max_pool`:

* lexicon weighting: ``w_bv = log(1 + max_l relu(z_blv))`` over unmasked positions
  (:func:`lexicon_weighting`);
* lexicon bottleneck (phase-1 pre-training): ``p_b = softmax_V(max_l z_bl)`` (raw logits, no
  relu), then the continuous bag of words ``p_b @ E_word`` (``[B, d_e]``) that conditions the
  weakened MLM decoders (:func:`lexicon_bottleneck`);
* objective: an in-batch, symmetric CLIP loss on L2-normalised representations at temperature
  ``T`` plus ``0.002 * (FLOPS(text) + FLOPS(image))`` with ``FLOPS(r) = sum_v (mean_b |r_bv|)^2``
  computed on the normalised representations (:func:`lexlip_contrastive_loss`).

From the paper's code (``Phase1/src/modules/objectives.py``, ``itr_module.py``): the pooling
(masked positions pushed to ``-1e6`` before relu/max/log1p), the raw max + softmax + ``@ E_word``
bottleneck, the ``clip_loss`` (mean of the two cross-entropies), ``F.normalize`` before both the
similarity and the FLOPS term, and the 0.002 weight.

Departures:

* masked positions are ``-inf`` (not ``-1e6``) before the max; an all-masked row gives a zero
  representation with zero gradient (and, in :func:`lexicon_bottleneck`, a uniform ``p``);
* the pooling never materialises ``[B, L, V]`` (the paper's code does);
* the temperature is an argument (default 0.05, our choice; the code reads it from its config);
  the phase-2 MoCo queue, the image tower (BEiT) and the weakened decoders are not included;
  the loss is computed on the local batch (the code all-gathers over devices first; under
  ``jit`` with a sharded batch the result here is the global-batch loss anyway).

References:
  Luo et al., LexLIP: Lexicon-Bottlenecked Language-Image Pre-Training for Large-Scale
  Image-Text Retrieval, ICCV 2023. https://arxiv.org/abs/2302.02908
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Bool, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.efficiency._sparton import check_head as _check_head
from bottleneck_jax.efficiency._sparton import flops_regularizer, lexical_max_pool
from bottleneck_jax.kernels.sharding import explicit_spec

# F.normalize's eps: x / max(||x||, eps). Squared, for the safe norm below.
_NORM_EPS = 1e-12


class LexiconBottleneckOutput(NamedTuple):
  """Result of :func:`lexicon_bottleneck`.

  Attributes:
    cbow: ``[*batch, d_e]`` f32 continuous bag-of-words vectors ``p @ E_word``.
    probs: ``[*batch, V]`` f32 lexicon distribution ``p = softmax_V(max_l z)``.
  """

  cbow: Float[Array, "*batch d_e"]
  probs: Float[Array, "*batch v"]


class LexLIPLoss(NamedTuple):
  """Result of :func:`lexlip_contrastive_loss`: a ``(loss, aux)`` pair, so
  ``jax.value_and_grad(f, has_aux=True)`` takes it as it is.

  Attributes:
    loss: scalar f32 total loss.
    aux: ``{"contrastive": scalar, "flops": scalar, "logits": [B, B]}`` (f32).
  """

  loss: Float[Array, ""]
  aux: dict[str, Array]


def lexicon_weighting(h: Float[Array, "*batch l d"], w: Float[Array, "v d"],
                      bias: Float[Array, "v"] | None = None, *,
                      mask: Bool[Array, "*batch l"] | Int[Array, "*batch l"] | None = None,
                      implementation=None,
                      block_size: int | None = None) -> Float[Array, "*batch v"]:
  """LexLIP's lexicon-weighting representation (identical to SPLADE's).

  .. math:: r_{bv} = \\log\\big(1 + \\max_{l:\\,mask_{bl}} \\mathrm{relu}(h_{bl} W_v + b_v)\\big)

  Args:
    h: ``[*batch, L, d]`` hidden states (text tokens or image patches; pass ``mask=None`` for
      patches, as LexLIP does).
    w: MLM-head decoder ``[V, d]``.
    bias: optional ``[V]``.
    mask: optional ``[*batch, L]`` attention mask.
    implementation, block_size: see :func:`~bottleneck_jax.efficiency.lexical_max_pool`.

  Returns:
    ``[*batch, V]`` f32, non-negative.

  Example:
    >>> lexicon_weighting(jnp.ones((2, 4, 8)), jnp.ones((16, 8))).shape
    (2, 16)
  """
  _check_head("lexicon_weighting", h, w, bias, mask)
  return lexical_max_pool(h, w, bias, mask=mask, activation="log1p_relu",
                          implementation=implementation, block_size=block_size)


def lexicon_bottleneck(h: Float[Array, "*batch l d"], w: Float[Array, "v d"],
                       bias: Float[Array, "v"] | None = None, *,
                       mask: Bool[Array, "*batch l"] | Int[Array, "*batch l"] | None = None,
                       word_emb: Float[Array, "v d_e"], implementation=None,
                       block_size: int | None = None) -> LexiconBottleneckOutput:
  """LexLIP's lexicon bottleneck: ``softmax_V(max_l z) @ E_word``.

  .. math:: p_b = \\mathrm{softmax}_v\\big(\\max_{l:\\,mask_{bl}} (h_{bl} W_v + b_v)\\big),
     \\qquad \\mathrm{out}_b = p_b E_{word}

  The max-pool is the fused kernel with ``activation="identity"``; the softmax and the
  ``[B, V] x [V, d_e]`` product are left to XLA.

  Args:
    h: ``[*batch, L, d]`` hidden states.
    w: MLM-head decoder ``[V, d]``.
    bias: optional ``[V]``.
    mask: optional ``[*batch, L]`` attention mask.
    word_emb: word embedding table ``[V, d_e]`` (the decoders' input embeddings).
    implementation, block_size: see :func:`~bottleneck_jax.efficiency.lexical_max_pool`.

  Returns:
    :class:`LexiconBottleneckOutput` ``(cbow, probs)``: ``[*batch, d_e]`` f32 continuous
    bag-of-words vectors and the ``[*batch, V]`` f32 distribution ``p``.

  Example:
    >>> out = lexicon_bottleneck(jnp.ones((2, 4, 8)), jnp.ones((16, 8)),
    ...                          word_emb=jnp.ones((16, 3)))
    >>> out.cbow.shape, out.probs.shape
    ((2, 3), (2, 16))
  """
  fn = "lexicon_bottleneck"
  _check_head(fn, h, w, bias, mask)
  V.check_rank(fn, "word_emb", word_emb, 2)
  V.check_floating(fn, "word_emb", word_emb)
  if word_emb.shape[0] != w.shape[0]:
    raise ValueError(f"{fn}: word_emb must have shape [{w.shape[0]}, *] (V of w), got "
                     f"{list(word_emb.shape)}")
  pooled = lexical_max_pool(h, w, bias, mask=mask, activation="identity",
                            implementation=implementation, block_size=block_size)
  p = jax.nn.softmax(pooled, axis=-1)
  out = jnp.einsum("...v,ve->...e", p, word_emb.astype(jnp.float32))
  return LexiconBottleneckOutput(out, p)


def _as_float(v):
  """A Python int hyper-parameter as a float (an int beyond int32 would overflow in XLA)."""
  return float(v) if isinstance(v, int) else v


def _rows_sharded_if_explicit(x):
  """``P(<x's row sharding>, None)`` when ``x`` lives on an Explicit mesh, else ``None``."""
  spec = explicit_spec(x)
  if spec is None:
    return None
  return jax.sharding.PartitionSpec(spec[0] if len(spec) else None, None)


def lexlip_contrastive_loss(text_reps: Float[Array, "b v"], image_reps: Float[Array, "b v"], *,
                            temperature: float = 0.05,
                            flops_weight: float = 0.002) -> LexLIPLoss:
  """LexLIP's in-batch contrastive objective with the FLOPS regulariser.

  .. math::
    \\hat t = t/\\|t\\|,\\ \\hat i = i/\\|i\\|,\\ S = \\hat t \\hat i^T / T,\\quad
    \\mathcal L = \\tfrac12[\\mathrm{CE}(S, \\mathrm{diag}) + \\mathrm{CE}(S^T, \\mathrm{diag})]
      + \\lambda\\,[\\mathrm{FLOPS}(\\hat t) + \\mathrm{FLOPS}(\\hat i)]

  Args:
    text_reps: ``[B, V]`` text representations (row ``b`` matches ``image_reps[b]``).
    image_reps: ``[B, V]`` image representations.
    temperature: ``T > 0``.
    flops_weight: ``lambda >= 0`` (0.002 in the paper's code).

  Returns:
    :class:`LexLIPLoss` ``(loss, aux)``: the scalar f32 loss and
    ``aux = {"contrastive", "flops", "logits"}``. An all-zero row is normalised to zero (as
    ``F.normalize``) with a finite gradient. ``B >= 1`` is required (an empty batch has no
    in-batch negatives and no mean): ``ValueError``.

  Example:
    >>> t = jnp.eye(4, 10)
    >>> loss, aux = lexlip_contrastive_loss(t, t)
    >>> float(loss) < 0.01, aux["logits"].shape
    (True, (4, 4))
  """
  fn = "lexlip_contrastive_loss"
  V.check_rank(fn, "text_reps", text_reps, 2)
  V.check_floating(fn, "text_reps", text_reps)
  V.check_floating(fn, "image_reps", image_reps)
  V.check_same_shape(fn, "text_reps", text_reps, "image_reps", image_reps)
  V.check_scalar(fn, "temperature", temperature, low=0.0, low_inclusive=False)
  V.check_scalar(fn, "flops_weight", flops_weight, low=0.0)
  temperature, flops_weight = _as_float(temperature), _as_float(flops_weight)
  if text_reps.shape[0] < 1:
    raise ValueError(f"{fn}: text_reps must have at least one row (B >= 1), got "
                     f"{V.describe(text_reps)}")

  def normalize(x):
    # x / max(||x||, eps) with a safe norm: the gradient of sqrt at 0 is inf, and 0 * inf
    # made the gradient of an all-zero row NaN; rsqrt(max(sum x^2, eps^2)) has none.
    x = x.astype(jnp.float32)
    sq = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq, _NORM_EPS * _NORM_EPS))

  t, i = normalize(text_reps), normalize(image_reps)
  # Under an Explicit mesh both operands are batch-sharded: keep the rows' sharding and
  # replicate the columns (the default would shard both axes of [B, B] over the same mesh axes).
  logits = jnp.matmul(t, i.T, out_sharding=_rows_sharded_if_explicit(t)) / temperature
  diag = jnp.sum(t * i, axis=-1) / temperature  # logits[b, b], without a gather
  ce_t = jnp.mean(jax.nn.logsumexp(logits, axis=1) - diag)
  ce_i = jnp.mean(jax.nn.logsumexp(logits, axis=0) - diag)
  contrastive = 0.5 * (ce_t + ce_i)
  flops = flops_regularizer(t) + flops_regularizer(i)
  loss = contrastive + flops_weight * flops
  return LexLIPLoss(loss, {"contrastive": contrastive, "flops": flops, "logits": logits})


class LexiconHead(nnx.Module):
  """A LexLIP MLM head (``W [V, d]``, ``b [V]``) with both poolings.

  ``head(h, mask)`` gives the lexicon-weighting representation; ``head.bottleneck(h, mask,
  word_emb=...)`` the lexicon bottleneck, a :class:`LexiconBottleneckOutput` (``word_emb`` defaults to the head's own ``W``, i.e. tied
  embeddings, when ``d_e == d``).

  Example:
    >>> head = LexiconHead(8, 16, rngs=nnx.Rngs(0))
    >>> head(jnp.ones((2, 4, 8))).shape, head.bottleneck(jnp.ones((2, 4, 8))).cbow.shape
    ((2, 16), (2, 8))
  """

  def __init__(self, hidden_size: int, vocab_size: int, *, use_bias: bool = True,
               implementation=None, block_size: int | None = None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    V.check_scalar("LexiconHead", "hidden_size", hidden_size, low=1, integer=True)
    V.check_scalar("LexiconHead", "vocab_size", vocab_size, low=1, integer=True)
    self.implementation, self.block_size = implementation, block_size
    self.weight = nnx.Param(
        0.02 * jax.random.normal(rngs.params(), (vocab_size, hidden_size), param_dtype))
    self.bias = nnx.Param(jnp.zeros((vocab_size,), param_dtype)) if use_bias else None

  def _b(self):
    return None if self.bias is None else self.bias[...]

  def __call__(self, h: Float[Array, "*batch l d"],
               mask: Bool[Array, "*batch l"] | Int[Array, "*batch l"] | None = None,
               ) -> Float[Array, "*batch v"]:
    return lexicon_weighting(h, self.weight[...], self._b(), mask=mask,
                             implementation=self.implementation, block_size=self.block_size)

  def bottleneck(self, h: Float[Array, "*batch l d"],
                 mask: Bool[Array, "*batch l"] | Int[Array, "*batch l"] | None = None, *,
                 word_emb: Float[Array, "v d_e"] | None = None) -> LexiconBottleneckOutput:
    emb = self.weight[...] if word_emb is None else word_emb
    return lexicon_bottleneck(h, self.weight[...], self._b(), mask=mask, word_emb=emb,
                              implementation=self.implementation, block_size=self.block_size)


__all__ = ["LexLIPLoss", "LexiconBottleneckOutput", "LexiconHead", "lexicon_bottleneck",
           "lexicon_weighting", "lexlip_contrastive_loss"]
