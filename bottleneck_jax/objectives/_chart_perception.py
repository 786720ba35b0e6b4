"""Chart perception: the hard-negative contrastive loss (NegCLIP) for a vision encoder.

Paper: Junteng Liu, Weihao Zeng, Xiwen Zhang, Yijun Wang, Zifei Shan, Junxian He, "On the
Perception Bottleneck of VLMs for Chart Understanding", 2025 (https://arxiv.org/abs/2503.18435;
code hkust-nlp/Vision4Chart).

Idea. A vision-language model can fail on charts because of two bottlenecks: the vision encoder
may not encode the chart's numbers at all (the *encoder* bottleneck), or the language model may
not extract what the encoder holds (the *extraction* bottleneck). The paper measures the first with
a retrieval test — does the image embedding sit closer to the true caption than to a caption
with one detail changed? — finds CLIP near chance, and fixes it by retraining the vision encoder
with hard-negative captions (NegCLIP): for a batch of ``B`` images the text tower encodes the ``B``
captions and their hard negatives, and

.. math::
  L = \\tfrac12\\Big[\\mathrm{CE}\\big(s\\,I\\,[T;\\,T^-]^\\top,\\ \\mathrm{arange}\\,B\\big)
      + \\mathrm{CE}\\big(s\\,T\\,I^\\top,\\ \\mathrm{arange}\\,B\\big)\\Big]

— image-to-text over the ``B`` positives and all negatives, text-to-image over the positives only
(``s`` the logit scale, features L2-normalised).

Implemented here: :func:`clip_loss` (open_clip's ``ClipLoss`` on one device),
:func:`negclip_loss` (``K >= 0`` hard negatives per image), :func:`hard_negative_accuracy` (the
fraction of images whose caption beats every hard negative in cosine similarity; chance is
``1/(K+1)``) and :class:`ContrastiveTowers`, two linear projection heads with a learnable log
logit scale (initialised to ``log(1/0.07)``, the scale clamped at 100 as in open_clip).

Departures. The paper fine-tunes OpenCLIP ViT-L/14-336 on chart data on 8 GPUs (features gathered
across ranks); here the losses take whatever features the caller's towers produce, on one device
(with ``jax.sharding`` the batch axis may be sharded and the loss stays global). The towers of
:class:`ContrastiveTowers` are linear heads, not a ViT.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from bottleneck_jax.core import validation as V
from bottleneck_jax.kernels.sharding import explicit_spec

MAX_LOGIT_SCALE = 100.0


def _rows_sharded_if_explicit(x):
  """``P(<x's row sharding>, None)`` on an Explicit mesh (keep the rows' sharding, replicate the
  columns of an all-pairs similarity), else ``None``."""
  spec = explicit_spec(x)
  if spec is None:
    return None
  return jax.sharding.PartitionSpec(spec[0] if len(spec) else None, None)


def _check_feats(fn: str, arg: str, x, ref=None, ref_arg: str = "img") -> None:
  V.check_rank(fn, arg, x, 2)
  V.check_floating(fn, arg, x)
  if x.shape[0] < 1 or x.shape[1] < 1:
    raise ValueError(f"{fn}: {arg} must have at least one row and one feature, got "
                     f"{V.describe(x)}")
  if ref is not None:
    V.check_same_shape(fn, ref_arg, ref, arg, x)
    if jnp.dtype(x.dtype) != jnp.dtype(ref.dtype):
      raise TypeError(f"{fn}: {arg} must have the dtype of {ref_arg} "
                      f"({jnp.dtype(ref.dtype).name}), got {V.describe(x)}")


def _check_scale(fn: str, logit_scale) -> None:
  V.check_array(fn, "logit_scale", logit_scale)
  if hasattr(logit_scale, "shape") and tuple(logit_scale.shape) != ():
    raise ValueError(f"{fn}: logit_scale must be a scalar, got {V.describe(logit_scale)}")
  if not jnp.issubdtype(jnp.result_type(logit_scale), jnp.floating) and not isinstance(
      logit_scale, int):
    raise TypeError(f"{fn}: logit_scale must be a real scalar, got {V.describe(logit_scale)}")
  V.check_scalar(fn, "logit_scale", logit_scale, low=0.0)


def _negatives(fn: str, img, txt_neg):
  V.check_rank(fn, "txt_neg", txt_neg, (2, 3))
  V.check_floating(fn, "txt_neg", txt_neg)
  if txt_neg.ndim == 2:
    txt_neg = txt_neg[:, None, :]
  if txt_neg.shape[0] != img.shape[0] or txt_neg.shape[2] != img.shape[1]:
    raise ValueError(f"{fn}: txt_neg must have shape [{img.shape[0]}, K, {img.shape[1]}] or "
                     f"[{img.shape[0]}, {img.shape[1]}], got {V.describe(txt_neg)}")
  if jnp.dtype(txt_neg.dtype) != jnp.dtype(img.dtype):
    raise TypeError(f"{fn}: txt_neg must have the dtype of img ({jnp.dtype(img.dtype).name}), "
                    f"got {V.describe(txt_neg)}")
  return txt_neg


def _scale(logit_scale, dtype):
  return jnp.asarray(float(logit_scale) if isinstance(logit_scale, (int, float)) else
                     logit_scale).astype(dtype)


def clip_loss(img: Float[Array, "b d"], txt: Float[Array, "b d"],
              logit_scale: float | Float[Array, ""]) -> Float[Array, ""]:
  """The symmetric CLIP contrastive loss (open_clip ``ClipLoss``, one device).

  .. math::
    L = \\tfrac12\\big[\\mathrm{CE}(s\\,I T^\\top, \\mathrm{arange}\\,B)
        + \\mathrm{CE}(s\\,T I^\\top, \\mathrm{arange}\\,B)\\big]

  Args:
    img: ``[B, D]`` image features (L2-normalised by the caller, as in open_clip).
    txt: ``[B, D]`` text features of the matching captions, same dtype.
    logit_scale: the multiplier ``s >= 0`` (open_clip passes ``exp`` of its learnable
      log-scale), a Python number or a scalar array (may be traced).

  Returns:
    A scalar.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import clip_loss
    >>> e = jnp.eye(3)
    >>> bool(clip_loss(e, e, 100.0) < 1e-6), float(clip_loss(e, e, 0.0)) == float(jnp.log(3))
    (True, True)

  References:
    Radford et al., "Learning Transferable Visual Models From Natural Language Supervision",
    ICML 2021; mlfoundations/open_clip ``ClipLoss``.
  """
  fn = "clip_loss"
  _check_feats(fn, "img", img)
  _check_feats(fn, "txt", txt, img)
  _check_scale(fn, logit_scale)
  s = _scale(logit_scale, img.dtype)
  li = s * jnp.matmul(img, txt.T, out_sharding=_rows_sharded_if_explicit(img))
  diag = s * jnp.sum(img * txt, axis=-1)  # li[b, b] without a gather
  return 0.5 * (jnp.mean(jax.nn.logsumexp(li, axis=1) - diag)
                + jnp.mean(jax.nn.logsumexp(li, axis=0) - diag))


def negclip_loss(img: Float[Array, "b d"], txt_pos: Float[Array, "b d"],
                 txt_neg: Float[Array, "b k d"] | Float[Array, "b d"],
                 logit_scale: float | Float[Array, ""]) -> Float[Array, ""]:
  """The NegCLIP loss: image-to-text over positives and hard negatives, text-to-image over the
  positives.

  .. math::
    L = \\tfrac12\\Big[\\mathrm{CE}\\big(s\\,I\\,[T;\\,T^-]^\\top, \\mathrm{arange}\\,B\\big)
        + \\mathrm{CE}\\big(s\\,T I^\\top, \\mathrm{arange}\\,B\\big)\\Big]

  where ``T^-`` stacks all ``B·K`` negatives (every image sees every other image's negatives too,
  as in Vision4Chart's ``cat([texts, hard_captions])``). With ``K = 0`` it is :func:`clip_loss`.

  Args:
    img: ``[B, D]`` image features.
    txt_pos: ``[B, D]`` features of the true captions.
    txt_neg: ``[B, K, D]`` (or ``[B, D]`` for ``K = 1``) features of the hard-negative captions.
    logit_scale: the multiplier ``s >= 0``.

  Returns:
    A scalar.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import clip_loss, negclip_loss
    >>> img = jnp.eye(2, 3); pos = jnp.eye(2, 3); neg = jnp.zeros((2, 0, 3))
    >>> bool(negclip_loss(img, pos, neg, 10.0) == clip_loss(img, pos, 10.0))
    True

  References:
    Yuksekgonul et al., "When and Why Vision-Language Models Behave like Bags-of-Words", ICLR
    2023 (NegCLIP); hkust-nlp/Vision4Chart ``neg_clip/src/training/train.py``.
  """
  fn = "negclip_loss"
  _check_feats(fn, "img", img)
  _check_feats(fn, "txt_pos", txt_pos, img)
  neg = _negatives(fn, img, txt_neg)
  _check_scale(fn, logit_scale)
  s = _scale(logit_scale, img.dtype)
  b = img.shape[0]
  rows = _rows_sharded_if_explicit(img)
  li_pos = s * jnp.matmul(img, txt_pos.T, out_sharding=rows)                   # [B, B]
  li_neg = s * jnp.einsum("bd,ckd->bck", img, neg,
                          out_sharding=None if rows is None else
                          jax.sharding.PartitionSpec(rows[0], None, None))    # [B, B, K]
  li = jnp.concatenate([li_pos, jnp.reshape(li_neg, (b, -1))], axis=1)        # [B, B + BK]
  diag = s * jnp.sum(img * txt_pos, axis=-1)
  return 0.5 * (jnp.mean(jax.nn.logsumexp(li, axis=1) - diag)
                + jnp.mean(jax.nn.logsumexp(li_pos, axis=0) - diag))


def hard_negative_accuracy(img: Float[Array, "b d"], pos: Float[Array, "b d"],
                           neg: Float[Array, "b k d"] | Float[Array, "b d"],
                           *, epsilon: float = 1e-12) -> Float[Array, ""]:
  """The fraction of images whose true caption is more similar (cosine) than every one of its
  hard negatives: ``mean_i 1[cos(I_i, T_i) > max_k cos(I_i, T^-_{ik})]`` (chance ``1/(K+1)``).

  Args:
    img: ``[B, D]`` image features (any norm).
    pos: ``[B, D]`` true-caption features.
    neg: ``[B, K, D]`` (or ``[B, D]``) hard-negative features, ``K >= 1``.
    epsilon: norm floor.

  Returns:
    float32 scalar in ``[0, 1]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import hard_negative_accuracy
    >>> img = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> hard_negative_accuracy(img, img, jnp.array([[0.0, 1.0], [0.0, 2.0]]))
    Array(0.5, dtype=float32)

  References:
    Liu et al., "On the Perception Bottleneck of VLMs for Chart Understanding", 2025
    (hkust-nlp/Vision4Chart ``eval_clip/evaluate_clip.py``).
  """
  fn = "hard_negative_accuracy"
  _check_feats(fn, "img", img)
  _check_feats(fn, "pos", pos, img)
  negs = _negatives(fn, img, neg)
  if negs.shape[1] < 1:
    raise ValueError(f"{fn}: neg must hold at least one hard negative per image (K >= 1), got "
                     f"{V.describe(neg)}")
  V.check_scalar(fn, "epsilon", epsilon, low=0.0, low_inclusive=False, static=True)
  eps = jnp.asarray(epsilon, img.dtype)

  def unit(x):
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)

  i = unit(img)
  sp = jnp.sum(i * unit(pos), -1)
  sn = jnp.einsum("bd,bkd->bk", i, unit(negs))
  return jnp.mean((sp > jnp.max(sn, axis=-1)).astype(jnp.float32))


class ContrastiveTowers(nnx.Module):
  """Two linear projection heads and a learnable logit scale (CLIP's output layer).

  ``__call__(image_x, text_x)`` returns the L2-normalised ``(image_features, text_features)``;
  :meth:`scale` is ``min(exp(log_scale), 100)``, the multiplier for :func:`clip_loss` /
  :func:`negclip_loss`.

  Args:
    image_dim: image-encoder output size.
    text_dim: text-encoder output size.
    embed_dim: joint embedding size.
    init_scale: initial logit scale (``1/0.07`` as in CLIP).
    rngs: ``nnx.Rngs``.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.objectives import ContrastiveTowers, negclip_loss
    >>> m = ContrastiveTowers(6, 4, 8, rngs=nnx.Rngs(0))
    >>> i, t = m(jnp.ones((2, 6)), jnp.ones((2, 4)))
    >>> round(float(m.scale()), 2), i.shape
    (14.29, (2, 8))
  """

  def __init__(self, image_dim: int, text_dim: int, embed_dim: int, *,
               init_scale: float = 1 / 0.07, rngs: nnx.Rngs):
    self.image_proj = nnx.Linear(int(image_dim), int(embed_dim), use_bias=False, rngs=rngs)
    self.text_proj = nnx.Linear(int(text_dim), int(embed_dim), use_bias=False, rngs=rngs)
    self.log_scale = nnx.Param(jnp.asarray(math.log(float(init_scale)), jnp.float32))

  def encode_image(self, x):
    z = self.image_proj(x)
    return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)

  def encode_text(self, x):
    z = self.text_proj(x)
    return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)

  def scale(self):
    return jnp.minimum(jnp.exp(self.log_scale[...]), MAX_LOGIT_SCALE)

  def __call__(self, image_x, text_x):
    return self.encode_image(image_x), self.encode_text(text_x)


__all__ = ["ContrastiveTowers", "clip_loss", "hard_negative_accuracy", "negclip_loss"]
