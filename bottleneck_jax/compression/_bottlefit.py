"""BottleFit: a bottleneck injected into a split network, trained in two stages.

Paper: Yoshitomo Matsubara, Davide Callegaro, Sameer Singh, Marco Levorato, Francesco Restuccia,
"BottleFit: Learning Compressed Representations in Deep Neural Networks for Effective and
Efficient Split Computing", WoWMoM 2022 (https://arxiv.org/abs/2201.02693); reference code
yoshitomo-matsubara/bottlefit-split_computing (configurations on top of torchdistill).

Idea. Split computing runs the first layers of a network (the *head*) on a weak mobile device and
the rest (the *tail*) on an edge server. Cutting a pretrained network anywhere sends a tensor
larger than the input, so BottleFit replaces the head of a pretrained teacher by a small
*bottleneck*: an encoder (on the device) that squeezes the input into a narrow code of ``C``
channels, and a decoder (on the server) that restores the shape of the teacher's split-point
tensor, so the teacher's tail can be reused: ``model = tail o decoder o [channel] o encoder``.
Training has two stages:

1. *generalised head-network distillation*: the bottleneck learns to reproduce the teacher's
   intermediate features, with the tail frozen (initialised from the teacher),

   .. math::
     L_1 = \\sum_l w_l \\lVert h^S_l - h^T_l \\rVert_2^2

   summed over the pairs (student decoder output, teacher split tensor) and (student tail
   layers, teacher tail layers), ``reduction="sum"`` as in the reference configurations;
2. *fine-tuning* of the whole student with the task loss plus knowledge distillation (the
   torchdistill ``KDLoss``),

   .. math::
     L_2 = \\alpha\\, CE(s, y) + (1 - \\alpha)\\, T^2\\,
           \\frac1B \\sum_b KL(\\mathrm{softmax}(t_b / T) \\,\\Vert\\, \\mathrm{softmax}(s_b / T)),

   optionally with the encoder frozen (the "FE" variants: the on-device head stays fixed).

The stages are Optax label maps (:func:`bottlefit_param_labels`; :func:`bottlefit_transform`
applies the optimizer to the ``"train"`` parameters and zero updates to the ``"freeze"`` ones),
not separate model classes. What is sent over the channel is the code, optionally quantised with 8-bit min-max
affine quantisation (torchdistill's ``quantize_tensor``: ``scale = (max - min) / (2^b - 1)``,
``zero_point = trunc(clip(-min / scale, 0, 2^b - 1))``, ``q = round(clip(z / scale +
zero_point, 0, 2^b - 1))``, ``z' = scale (q - zero_point)``); its size is ``prod(code_shape) b``
bits plus the scale (float32) and the zero point (``b`` bits).

Departures: the code is quantised per example (the reference quantises the whole tensor, at batch
size 1 on the device, which is the same thing); the quantiser's range always includes 0, as
PyTorch's observers do (the reference's plain min-max clips the top of an all-positive tensor,
whose zero point is clipped to 0); an all-zero code gets ``scale = 1`` instead of a division by
zero; :class:`BottleneckHead` is a small convolutional encoder / decoder without the
BatchNorm layers of the ResNet-152 / DenseNet bottlenecks (the reference's layer stacks are
specific to those backbones and image sizes); the quantised forward pass of :class:`SplitModel`
has a straight-through gradient (the reference quantises at inference only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jaxtyping import Array, Float, Int, UInt8

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.types import BottleneckOutput

_FLOAT32_BITS = 32


# --------------------------------------------------------------------------------------------
# losses


def head_distillation_loss(student_feats: Sequence[Float[Array, "..."]],
                           teacher_feats: Sequence[Float[Array, "..."]], *,
                           weights: Sequence[float] | None = None,
                           reduction: Literal["sum", "mean"] = "sum") -> Float[Array, ""]:
  """Generalised head-network distillation loss ``sum_l w_l ||h^S_l - h^T_l||^2``.

  The teacher's features are constants (no gradient flows into them).

  Args:
    student_feats: the student's features, one array per distilled pair.
    teacher_feats: the teacher's features, the same shapes.
    weights: one non-negative weight per pair (``1`` each by default).
    reduction: ``"sum"`` (the reference: the squared error summed over the batch and all
      elements) or ``"mean"`` (averaged over the elements of each pair).

  Returns:
    The scalar loss.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import head_distillation_loss
    >>> float(head_distillation_loss([jnp.ones((2, 3)), jnp.zeros(2)],
    ...                              [jnp.zeros((2, 3)), jnp.ones(2)], weights=[1.0, 0.5]))
    7.0

  References:
    Matsubara et al., "BottleFit: Learning Compressed Representations in Deep Neural Networks
    for Effective and Efficient Split Computing", 2022, https://arxiv.org/abs/2201.02693
  """
  fn = "head_distillation_loss"
  for arg, feats in (("student_feats", student_feats), ("teacher_feats", teacher_feats)):
    if not isinstance(feats, (list, tuple)):
      raise TypeError(f"{fn}: {arg} must be a list or tuple of arrays, got "
                      f"{type(feats).__name__}")
  if len(student_feats) == 0:
    raise ValueError(f"{fn}: student_feats must hold at least one array, got an empty sequence")
  if len(student_feats) != len(teacher_feats):
    raise ValueError(f"{fn}: student_feats and teacher_feats must have the same length, got "
                     f"{len(student_feats)} and {len(teacher_feats)}")
  V.check_choice(fn, "reduction", reduction, ("sum", "mean"))
  if weights is None:
    weights = (1.0,) * len(student_feats)
  if not isinstance(weights, (list, tuple)) or len(weights) != len(student_feats):
    raise ValueError(f"{fn}: weights must be a list or tuple with one weight per pair "
                     f"({len(student_feats)}), got {weights!r}")
  for i, w in enumerate(weights):
    V.check_scalar(fn, f"weights[{i}]", w, low=0.0, high=1e30)
  for i, (s, t) in enumerate(zip(student_feats, teacher_feats)):
    V.check_floating(fn, f"student_feats[{i}]", s)
    V.check_floating(fn, f"teacher_feats[{i}]", t)
    V.check_same_shape(fn, f"student_feats[{i}]", s, f"teacher_feats[{i}]", t)
    if math.prod(s.shape) == 0:
      raise ValueError(f"{fn}: student_feats[{i}] must not be empty, got {V.describe(s)}")
  dtype = jnp.result_type(*[jnp.asarray(s).dtype for s in student_feats])
  total = jnp.zeros((), dtype)
  for s, t, w in zip(student_feats, teacher_feats, weights):
    s = jnp.asarray(s).astype(dtype)
    t = jax.lax.stop_gradient(jnp.asarray(t).astype(dtype))
    sq = jnp.square(s - t)
    term = jnp.sum(sq) if reduction == "sum" else jnp.mean(sq)
    if not isinstance(w, jax.core.Tracer):
      w = float(w)
    total = total + jnp.asarray(w, dtype) * term
  return total


def kd_loss(student_logits: Float[Array, "b k"], teacher_logits: Float[Array, "b k"],
            labels: Int[Array, "b"], *, temperature: float = 1.0,
            alpha: float = 0.5) -> Float[Array, ""]:
  """Knowledge-distillation loss ``alpha CE(s, y) + (1 - alpha) T^2 mean_b KL(p_t^T || p_s^T)``.

  ``p^T = softmax(logits / T)``; the KL is averaged over the batch (``batchmean``) and the
  teacher's logits get no gradient (torchdistill's ``KDLoss``; BottleFit uses ``T = 1``,
  ``alpha = 0.5``).

  Args:
    student_logits: ``[B, K]`` logits of the student.
    teacher_logits: ``[B, K]`` logits of the teacher.
    labels: ``[B]`` integer class labels.
    temperature: the softmax temperature ``T > 0``.
    alpha: weight of the cross-entropy with the labels, in ``[0, 1]``.

  Returns:
    The scalar loss.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import kd_loss
    >>> s = jnp.zeros((1, 2))
    >>> round(float(kd_loss(s, s, jnp.array([0]))), 4)  # 0.5 log 2 + 0.5 * 0
    0.3466
  """
  fn = "kd_loss"
  V.check_floating(fn, "student_logits", student_logits)
  V.check_rank(fn, "student_logits", student_logits, 2)
  V.check_floating(fn, "teacher_logits", teacher_logits)
  V.check_same_shape(fn, "student_logits", student_logits, "teacher_logits", teacher_logits)
  V.check_integer(fn, "labels", labels)
  V.check_shape(fn, "labels", labels, (student_logits.shape[0],))
  if student_logits.shape[0] == 0 or student_logits.shape[1] == 0:
    raise ValueError(f"{fn}: student_logits must have a non-empty batch and classes, got "
                     f"{V.describe(student_logits)}")
  V.check_scalar(fn, "temperature", temperature, low=0.0, low_inclusive=False, high=1e30)
  V.check_scalar(fn, "alpha", alpha, low=0.0, high=1.0)
  s = jnp.asarray(student_logits)
  t = jax.lax.stop_gradient(jnp.asarray(teacher_logits).astype(s.dtype))
  temp = temperature if isinstance(temperature, jax.core.Tracer) else float(temperature)
  alpha = alpha if isinstance(alpha, jax.core.Tracer) else float(alpha)
  log_ps = jax.nn.log_softmax(s / temp, axis=-1)
  log_pt = jax.nn.log_softmax(t / temp, axis=-1)
  kl = jnp.sum(jnp.exp(log_pt) * (log_pt - log_ps), axis=-1)
  soft = jnp.mean(kl) * temp * temp
  hard = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(s, jnp.asarray(labels)))
  return alpha * hard + (1.0 - alpha) * soft


# --------------------------------------------------------------------------------------------
# the transmitted code


class QuantizedCode(NamedTuple):
  """Result of :func:`quantize_code`: ``q`` (``uint8``, the code's shape) and, per example,
  ``scale`` (float) and ``zero_point`` (``int32`` in ``[0, 2^b - 1]``), both ``[batch]``."""
  q: Array
  scale: Array
  zero_point: Array


def _check_num_bits(fn: str, num_bits) -> None:
  V.check_scalar(fn, "num_bits", num_bits, low=1, high=8, integer=True, static=True)


def quantize_code(z: Float[Array, "b *code"], *, num_bits: int = 8) -> QuantizedCode:
  """Min-max affine quantisation of each example's code to ``num_bits`` bits (``<= 8``).

  ``scale = (max - min) / (2^b - 1)`` (``1`` for an all-zero code),
  ``zero_point = trunc(clip(-min / scale, 0, 2^b - 1))``,
  ``q = round(clip(z / scale + zero_point, 0, 2^b - 1))``, with ``min = min(0, min_i z_i)`` and
  ``max = max(0, max_i z_i)`` over each example. The error of :func:`dequantize_code` is at most
  ``scale`` (``scale / 2`` except at the truncated zero point's end).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import quantize_code
    >>> r = quantize_code(jnp.array([[-1.0, 0.0, 2.0]]), num_bits=2)
    >>> r.q.tolist(), r.scale.tolist(), r.zero_point.tolist()
    ([[0, 1, 3]], [1.0], [1])
  """
  fn = "quantize_code"
  V.check_floating(fn, "z", z)
  V.check_rank(fn, "z", z, min_rank=2)
  if math.prod(z.shape) == 0:
    raise ValueError(f"{fn}: z must have a non-empty batch and code, got {V.describe(z)}")
  _check_num_bits(fn, num_bits)
  z = jnp.asarray(z)
  qmax = float(2 ** int(num_bits) - 1)
  axes = tuple(range(1, z.ndim))
  # the range always holds 0 (as PyTorch's observers): an all-positive code is not clipped
  lo = jnp.minimum(jnp.min(z, axis=axes), 0.0)
  hi = jnp.maximum(jnp.max(z, axis=axes), 0.0)
  scale = jnp.where(hi > lo, (hi - lo) / qmax, jnp.ones_like(lo))
  zp = jnp.trunc(jnp.clip(-lo / scale, 0.0, qmax))
  expand = (slice(None),) + (None,) * (z.ndim - 1)
  q = jnp.round(jnp.clip(z / scale[expand] + zp[expand], 0.0, qmax))
  return QuantizedCode(q.astype(jnp.uint8), scale, zp.astype(jnp.int32))


def dequantize_code(q: UInt8[Array, "b *code"], scale: Float[Array, "b"],
                    zero_point: Int[Array, "b"]) -> Float[Array, "b *code"]:
  """``scale (q - zero_point)`` per example (the inverse of :func:`quantize_code` up to its
  rounding error ``<= scale / 2``).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import dequantize_code
    >>> dequantize_code(jnp.array([[0, 1, 3]], jnp.uint8), jnp.array([1.0]),
    ...                 jnp.array([1])).tolist()
    [[-1.0, 0.0, 2.0]]
  """
  fn = "dequantize_code"
  V.check_integer(fn, "q", q)
  V.check_rank(fn, "q", q, min_rank=2)
  V.check_floating(fn, "scale", scale)
  V.check_shape(fn, "scale", scale, (q.shape[0],))
  V.check_integer(fn, "zero_point", zero_point)
  V.check_shape(fn, "zero_point", zero_point, (q.shape[0],))
  scale = jnp.asarray(scale)
  expand = (slice(None),) + (None,) * (q.ndim - 1)
  qf = jnp.asarray(q).astype(scale.dtype)
  zp = jnp.asarray(zero_point).astype(scale.dtype)
  return scale[expand] * (qf - zp[expand])


def _check_shape_tuple(fn: str, arg: str, shape) -> tuple[int, ...]:
  if not isinstance(shape, (tuple, list)) or not all(
      isinstance(s, int) and not isinstance(s, bool) for s in shape):
    raise TypeError(f"{fn}: {arg} must be a tuple of ints, got {shape!r}")
  if len(shape) == 0 or any(s < 1 for s in shape):
    raise ValueError(f"{fn}: {arg} must be a non-empty tuple of positive ints, got {shape!r}")
  return tuple(shape)


def code_bits(code_shape: Sequence[int], *, num_bits: int = 8, side_bits: int = 0) -> int:
  """Bits sent per example: ``prod(code_shape) * num_bits + side_bits``.

  ``side_bits`` counts the side information of the quantiser (``32 + num_bits`` for the float32
  scale and the zero point of :func:`quantize_code`). For ResNet-152's "ver2" bottleneck with
  ``C = 3`` channels at 29x29 and 8 bits: ``3 * 841 * 8 = 20184`` bits = 2523 bytes.

  Example:
    >>> from bottleneck_jax.compression import code_bits
    >>> code_bits((3, 29, 29)) // 8
    2523
  """
  fn = "code_bits"
  shape = _check_shape_tuple(fn, "code_shape", code_shape)
  V.check_scalar(fn, "num_bits", num_bits, low=1, high=64, integer=True, static=True)
  V.check_scalar(fn, "side_bits", side_bits, low=0, high=2**62, integer=True, static=True)
  return math.prod(shape) * int(num_bits) + int(side_bits)


def data_reduction(code_bytes: float, input_bytes: float) -> float:
  """``1 - code_bytes / input_bytes``: the fraction of the input's size saved by sending the
  code (negative when the code is larger than the input).

  Example:
    >>> from bottleneck_jax.compression import data_reduction
    >>> data_reduction(16, 64)
    0.75
  """
  fn = "data_reduction"
  V.check_scalar(fn, "code_bytes", code_bytes, low=0.0, high=1e300, static=True)
  V.check_scalar(fn, "input_bytes", input_bytes, low=0.0, low_inclusive=False, high=1e300,
                 static=True)
  return 1.0 - float(code_bytes) / float(input_bytes)


# --------------------------------------------------------------------------------------------
# stages as Optax label maps


def _key_name(k) -> str | None:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return None


def bottlefit_param_labels(params, *, stage: Literal[1, 2], freeze_encoder: bool = False):
  """Labels ``"train"`` / ``"freeze"`` for every leaf of a :class:`SplitModel`'s parameters.

  Stage 1 (head distillation) trains ``head`` (encoder and decoder) and freezes ``tail``;
  stage 2 (fine-tuning) trains everything, except ``head.encoder`` when ``freeze_encoder``.

  Args:
    params: the parameter pytree (``nnx.state(model, nnx.Param)`` or a nested dict) whose
      top-level entries are ``head`` and ``tail``.
    stage: ``1`` or ``2``.
    freeze_encoder: stage 2 only: keep the on-device encoder fixed.

  Returns:
    A pytree of the same structure with a string at every leaf.

  Example:
    >>> from bottleneck_jax.compression import bottlefit_param_labels
    >>> p = {"head": {"encoder": {"w": 0.0}, "decoder": {"w": 0.0}}, "tail": {"w": 0.0}}
    >>> bottlefit_param_labels(p, stage=1)
    {'head': {'decoder': {'w': 'train'}, 'encoder': {'w': 'train'}}, 'tail': {'w': 'freeze'}}
  """
  fn = "bottlefit_param_labels"
  if stage not in (1, 2) or isinstance(stage, bool):
    raise ValueError(f"{fn}: stage must be 1 or 2, got {stage!r}")
  if not isinstance(freeze_encoder, bool):
    raise TypeError(f"{fn}: freeze_encoder must be a bool, got {type(freeze_encoder).__name__}")
  if stage == 1 and freeze_encoder:
    raise ValueError(f"{fn}: freeze_encoder applies to stage 2 only (stage 1 trains the head)")
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  if not leaves:
    raise ValueError(f"{fn}: params must hold at least one array, got an empty pytree")
  tops = {_key_name(path[0]) for path, _ in leaves}
  if "head" not in tops:
    raise ValueError(f"{fn}: params must have a top-level 'head' entry (a SplitModel's "
                     f"parameters), got entries {sorted(t for t in tops if t is not None)}")

  def label(path, _):
    names = [_key_name(k) for k in path]
    if names[0] != "head":
      return "train" if stage == 2 else "freeze"
    if stage == 2 and freeze_encoder and len(names) > 1 and names[1] == "encoder":
      return "freeze"
    return "train"

  return jax.tree_util.tree_map_with_path(label, params)


def bottlefit_transform(tx: optax.GradientTransformation, *, stage: Literal[1, 2],
                        freeze_encoder: bool = False) -> optax.GradientTransformation:
  """``tx`` restricted to the parameters a stage trains (:func:`bottlefit_param_labels`).

  The gradients of the frozen parameters are zeroed before ``tx`` and their updates after it
  (so weight decay or momentum in ``tx`` cannot move them): frozen parameters stay
  bit-identical. Unlike ``optax.multi_transform`` the state holds only arrays (no masked
  nodes), so the transformation works inside ``nnx.Optimizer`` under ``nnx.eval_shape`` and a
  mesh; the price is that ``tx`` keeps (zero) moments for the frozen parameters too.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> from bottleneck_jax.compression import bottlefit_transform
    >>> p = {"head": {"encoder": jnp.ones(2), "decoder": jnp.ones(2)}, "tail": jnp.ones(2)}
    >>> tx = bottlefit_transform(optax.sgd(0.5), stage=1)
    >>> u, _ = tx.update(p, tx.init(p), p)
    >>> u["head"]["encoder"].tolist(), u["tail"].tolist()
    ([-0.5, -0.5], [0.0, 0.0])
  """
  fn = "bottlefit_transform"
  if not (hasattr(tx, "init") and hasattr(tx, "update")):
    raise TypeError(f"{fn}: tx must be an optax GradientTransformation, got "
                    f"{type(tx).__name__}")
  if stage not in (1, 2) or isinstance(stage, bool):
    raise ValueError(f"{fn}: stage must be 1 or 2, got {stage!r}")
  if not isinstance(freeze_encoder, bool):
    raise TypeError(f"{fn}: freeze_encoder must be a bool, got {type(freeze_encoder).__name__}")
  if stage == 1 and freeze_encoder:
    raise ValueError(f"{fn}: freeze_encoder applies to stage 2 only (stage 1 trains the head)")

  def zero_frozen_update(updates, state, params=None):
    del params
    labels = bottlefit_param_labels(updates, stage=stage, freeze_encoder=freeze_encoder)
    return jax.tree.map(lambda u, lab: jnp.zeros_like(u) if lab == "freeze" else u,
                        updates, labels), state

  zero_frozen = optax.GradientTransformation(lambda params: optax.EmptyState(),
                                             zero_frozen_update)
  return optax.chain(zero_frozen, tx, zero_frozen)


# --------------------------------------------------------------------------------------------
# NNX modules


class BottleneckHead(nnx.Module):
  """A convolutional bottleneck that replaces a network's head (channels-last images).

  Encoder (on the device): ``Conv(k, in -> hidden) . ReLU . Conv(k, stride, hidden -> C)``, the
  raw signed code ``[B, H/stride, W/stride, C]``. Decoder (on the server):
  ``ReLU . Conv(k, C -> hidden) . ReLU . Conv(k, hidden -> out) . ReLU``, the shape of the
  teacher's split-point tensor (``out`` channels at the code's resolution).

  ``__call__(x, *, quantize=False)`` returns a :class:`~bottleneck_jax.core.BottleneckOutput`:
  ``z`` (decoded features), ``loss = 0``, ``bits`` (the transmitted size per example: the code at
  ``num_bits`` bits plus the quantiser's scale and zero point) and ``aux = {"code": code}`` (the
  dequantised code when ``quantize``; its gradient is straight-through).

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.compression import BottleneckHead
    >>> head = BottleneckHead(1, 2, 8, hidden=4, rngs=nnx.Rngs(0))
    >>> out = head(jnp.ones((3, 8, 8, 1)))
    >>> out.z.shape, out.aux["code"].shape, out.bits.tolist()
    ((3, 4, 4, 8), (3, 4, 4, 2), [296.0, 296.0, 296.0])
  """

  def __init__(self, in_channels: int, code_channels: int, out_channels: int, *,
               hidden: int = 32, kernel_size: int = 3, stride: int = 2, num_bits: int = 8,
               rngs: nnx.Rngs):
    fn = "BottleneckHead"
    for arg, v in (("in_channels", in_channels), ("code_channels", code_channels),
                   ("out_channels", out_channels), ("hidden", hidden),
                   ("kernel_size", kernel_size), ("stride", stride)):
      V.check_scalar(fn, arg, v, low=1, high=2**20, integer=True)
    _check_num_bits(fn, num_bits)
    k = (int(kernel_size),) * 2
    self.num_bits = int(num_bits)
    self.code_channels = int(code_channels)
    self.encoder = nnx.Sequential(
        nnx.Conv(in_channels, hidden, k, rngs=rngs), jax.nn.relu,
        nnx.Conv(hidden, code_channels, k, strides=(int(stride),) * 2, rngs=rngs))
    self.decoder = nnx.Sequential(
        jax.nn.relu, nnx.Conv(code_channels, hidden, k, rngs=rngs), jax.nn.relu,
        nnx.Conv(hidden, out_channels, k, rngs=rngs), jax.nn.relu)

  def encode(self, x: Float[Array, "b h w c"]) -> Float[Array, "b h2 w2 code"]:
    """The code (the mobile device's part)."""
    V.check_floating("BottleneckHead.encode", "x", x)
    V.check_rank("BottleneckHead.encode", "x", x, 4)
    return self.encoder(x)

  def decode(self, code: Float[Array, "b h2 w2 code"]) -> Float[Array, "b h2 w2 out"]:
    """The restored split-point features (the server's part)."""
    V.check_floating("BottleneckHead.decode", "code", code)
    V.check_rank("BottleneckHead.decode", "code", code, 4)
    V.check_axis_size("BottleneckHead.decode", "code", code, -1, self.code_channels,
                      "code channels")
    return self.decoder(code)

  def transmit(self, code: Float[Array, "b h2 w2 code"]) -> Float[Array, "b h2 w2 code"]:
    """The code after quantisation and dequantisation (straight-through gradient)."""
    qc = quantize_code(code, num_bits=self.num_bits)
    deq = dequantize_code(qc.q, qc.scale, qc.zero_point).astype(code.dtype)
    return code + jax.lax.stop_gradient(deq - code)

  def __call__(self, x: Float[Array, "b h w c"], *, quantize: bool = False
               ) -> BottleneckOutput:
    code = self.encode(x)
    if quantize:
      code = self.transmit(code)
    z = self.decoder(code)
    bits = code_bits(tuple(code.shape[1:]), num_bits=self.num_bits,
                     side_bits=_FLOAT32_BITS + self.num_bits)
    return BottleneckOutput(z=z, loss=jnp.zeros((), z.dtype),
                            bits=jnp.full((code.shape[0],), float(bits), jnp.float32),
                            aux={"code": code})


class SplitOutput(NamedTuple):
  """Result of :class:`SplitModel`: the tail's ``logits`` and the head's ``bottleneck``
  output."""
  logits: Array
  bottleneck: BottleneckOutput


class SplitModel(nnx.Module):
  """``tail o decoder o [channel] o encoder``: a :class:`BottleneckHead` and the tail that
  consumes its decoded features (any NNX module or callable, e.g. a teacher's layers).

  ``encode(x)`` is the device's part, ``decode_and_classify(code)`` the server's; ``__call__(x,
  *, quantize=False)`` runs both (``quantize``: through the 8-bit channel).

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.compression import BottleneckHead, SplitModel
    >>> rngs = nnx.Rngs(0)
    >>> tail = nnx.Sequential(lambda h: h.mean(axis=(1, 2)),
    ...                       nnx.Linear(8, 10, rngs=rngs))
    >>> m = SplitModel(BottleneckHead(1, 2, 8, hidden=4, rngs=rngs), tail,
    ...                rngs=rngs)
    >>> m(jnp.ones((3, 8, 8, 1))).logits.shape
    (3, 10)
  """

  def __init__(self, head: BottleneckHead, tail: Callable[[Array], Array], *,
               rngs: nnx.Rngs | None = None):
    if not isinstance(head, BottleneckHead):
      raise TypeError(f"SplitModel: head must be a BottleneckHead, got {type(head).__name__}")
    if not callable(tail):
      raise TypeError(f"SplitModel: tail must be callable, got {type(tail).__name__}")
    self.head = head
    self.tail = tail

  def encode(self, x: Float[Array, "b h w c"]) -> Float[Array, "b h2 w2 code"]:
    """The code the device sends."""
    return self.head.encode(x)

  def decode_and_classify(self, code: Float[Array, "b h2 w2 code"]) -> Array:
    """The server's part: decoder, then tail."""
    return self.tail(self.head.decode(code))

  def __call__(self, x: Float[Array, "b h w c"], *, quantize: bool = False) -> SplitOutput:
    out = self.head(x, quantize=quantize)
    return SplitOutput(self.tail(out.z), out)


__all__ = [
    "BottleneckHead",
    "QuantizedCode",
    "SplitModel",
    "SplitOutput",
    "bottlefit_param_labels",
    "bottlefit_transform",
    "code_bits",
    "data_reduction",
    "dequantize_code",
    "head_distillation_loss",
    "kd_loss",
    "quantize_code",
]
