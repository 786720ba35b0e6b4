"""LPGNAS: learned low-precision graph neural networks (differentiable quantisation search).

Paper: Yiren Zhao, Duo Wang, Daniel Bates, Robert Mullins, Mateja Jamnik, Pietro Liò, "Learned
Low Precision Graph Neural Networks", 2020 (https://arxiv.org/abs/2009.09232).

Idea. A differentiable architecture search (DARTS) whose search space also holds the numeric
precision of every component of a GNN (weights, activations). Each discrete choice with
candidates ``Q_1 .. Q_M`` carries logits ``beta``; the relaxed layer uses the mixture
``Q(x) = sum_m softmax(beta)_m Q_m(x)``; the network weights and the logits are trained together
(the logits on held-out nodes) with a size penalty ``gamma * E[bits]`` pushing towards cheap
precisions; the argmax choice is kept at the end. Quantisers (straight-through gradients):

  fixed point (w bits incl. sign, f fraction bits):
      Q(x) = clip(round(x 2^f), -2^{w-1}, 2^{w-1} - 1) 2^{-f}
  binary:  Q(x) = sign(x) mean|x|
  ternary: Q(x) = alpha sign(x) [|x| > Delta],  Delta = 0.7 mean|x|,  alpha = mean_{|x|>Delta} |x|

Implemented here: :func:`fixed_point_quantize`, :func:`binary_quantize`,
:func:`ternary_quantize`, :class:`QuantSpec` and :func:`quantize_with`, the relaxations
:func:`mixed_quantize`, :func:`mixed_op`, the size penalty :func:`expected_bits`, and the
``flax.nnx`` layer :class:`QuantGCNLayer` (GCN propagation ``A_hat Q_a(x) Q_w(W)`` with weight /
activation precision logits in :class:`ArchParam`, a subclass of ``nnx.Param`` so an optimizer
can treat them apart).

Departures from the paper: only the quantisation part of the search space is implemented (no
attention / aggregation / connection choices); softmax mixing rather than sampling; the size
penalty is ``gamma`` times the expected bits per weight (the paper's exact penalty form and
candidate list were not available to us); first-order (simultaneous) updates of weights and
logits instead of the alternating bilevel schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from bottleneck_jax.core import validation as V

STES = ("identity", "clipped")
KINDS = ("fixed", "binary", "ternary", "float")


def _check_x(fn, x):
  V.check_array(fn, "x", x)
  V.check_floating(fn, "x", x)


def _fixed(x, total_bits, frac_bits, ste):
  scale = jnp.asarray(2.0 ** frac_bits, x.dtype)
  lo = jnp.asarray(-(2.0 ** (total_bits - 1)), x.dtype)
  hi = jnp.asarray(2.0 ** (total_bits - 1) - 1, x.dtype)
  q = jnp.clip(jnp.round(x * scale), lo, hi) / scale
  base = jnp.clip(x, lo / scale, hi / scale) if ste == "clipped" else x
  return base + jax.lax.stop_gradient(q - base)


def fixed_point_quantize(x: Float[Array, "*shape"], *, total_bits: int, frac_bits: int,
                         ste: str = "identity") -> Float[Array, "*shape"]:
  """Signed fixed-point quantisation with a straight-through gradient.

  .. math::
    Q(x) = \\operatorname{clip}\\left(\\operatorname{round}(x 2^f), -2^{w-1}, 2^{w-1}-1\\right)
    2^{-f}

  Args:
    x: floating array.
    total_bits: ``w >= 1`` (sign included).
    frac_bits: ``f`` (may be negative or exceed ``w``).
    ste: ``"identity"`` (gradient 1 everywhere) or ``"clipped"`` (0 outside the range).

  Returns:
    ``Q(x)``, shape and dtype of ``x``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import fixed_point_quantize
    >>> fixed_point_quantize(jnp.array([0.3, -2.0, 0.96]), total_bits=4, frac_bits=3).tolist()
    [0.25, -1.0, 0.875]

  References:
    Zhao et al., "Learned Low Precision Graph Neural Networks", 2020,
    https://arxiv.org/abs/2009.09232.
  """
  fn = "fixed_point_quantize"
  _check_x(fn, x)
  V.check_scalar(fn, "total_bits", total_bits, low=1, high=32, integer=True, static=True)
  V.check_scalar(fn, "frac_bits", frac_bits, low=-32, high=32, integer=True, static=True)
  V.check_choice(fn, "ste", ste, STES)
  return _fixed(jnp.asarray(x), int(total_bits), int(frac_bits), ste)


def _binary(x):
  q = jnp.where(x >= 0, 1.0, -1.0).astype(x.dtype) * jnp.mean(jnp.abs(x))
  return x + jax.lax.stop_gradient(q - x)


def binary_quantize(x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
  """Binary quantisation ``sign(x) mean|x|`` (``sign(0) = +1``), straight-through gradient.

  Args:
    x: floating array, at least one element.

  Returns:
    shape and dtype of ``x``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import binary_quantize
    >>> binary_quantize(jnp.array([0.5, -1.5, 1.0])).tolist()
    [1.0, -1.0, 1.0]

  References:
    Rastegari et al., "XNOR-Net", ECCV 2016; Zhao et al., LPGNAS, 2020.
  """
  fn = "binary_quantize"
  _check_x(fn, x)
  if jnp.size(x) < 1:
    raise ValueError(f"{fn}: x must have at least one element, got {V.describe(x)}")
  return _binary(jnp.asarray(x))


def _ternary(x, threshold):
  a = jnp.abs(x)
  delta = threshold * jnp.mean(a)
  big = a > delta
  alpha = jnp.sum(jnp.where(big, a, 0.0)) / jnp.maximum(jnp.sum(big), 1).astype(x.dtype)
  q = jnp.where(big, jnp.sign(x) * alpha, 0.0).astype(x.dtype)
  return x + jax.lax.stop_gradient(q - x)


def ternary_quantize(x: Float[Array, "*shape"], *, threshold: float = 0.7
                     ) -> Float[Array, "*shape"]:
  """Ternary quantisation (TWN): ``alpha sign(x) [|x| > Delta]``, ``Delta = t mean|x|``.

  Args:
    x: floating array, at least one element.
    threshold: ``t >= 0`` (0.7 in Ternary Weight Networks).

  Returns:
    shape and dtype of ``x`` (straight-through gradient).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import ternary_quantize
    >>> ternary_quantize(jnp.array([0.1, -2.0, 1.0, 0.05])).tolist()
    [0.0, -1.5, 1.5, 0.0]

  References:
    Li, Zhang, Liu, "Ternary Weight Networks", 2016; Zhao et al., LPGNAS, 2020.
  """
  fn = "ternary_quantize"
  _check_x(fn, x)
  V.check_scalar(fn, "threshold", threshold, low=0.0)
  if jnp.size(x) < 1:
    raise ValueError(f"{fn}: x must have at least one element, got {V.describe(x)}")
  x = jnp.asarray(x)
  return _ternary(x, jnp.asarray(threshold, x.dtype))


class QuantSpec(NamedTuple):
  """One candidate quantiser: ``kind`` in ``("fixed", "binary", "ternary", "float")``; for
  ``"fixed"`` its ``total_bits`` and ``frac_bits``. ``bits`` is the storage cost per value
  (``"float"``: 32, ternary 2, binary 1)."""

  kind: str
  total_bits: int = 32
  frac_bits: int = 0

  @property
  def bits(self) -> int:
    return {"fixed": self.total_bits, "binary": 1, "ternary": 2, "float": 32}[self.kind]

  def __str__(self) -> str:
    return f"fix{self.total_bits}.{self.frac_bits}" if self.kind == "fixed" else self.kind


def _check_spec(fn, spec):
  if not isinstance(spec, QuantSpec) or spec.kind not in KINDS:
    raise TypeError(f"{fn}: candidates must be QuantSpec with kind in {list(KINDS)}, got "
                    f"{spec!r}")
  if spec.kind == "fixed" and not 1 <= spec.total_bits <= 32:
    raise ValueError(f"{fn}: a fixed-point QuantSpec needs 1 <= total_bits <= 32, got {spec!r}")


def _apply(x, spec):
  if spec.kind == "fixed":
    return _fixed(x, spec.total_bits, spec.frac_bits, "identity")
  if spec.kind == "binary":
    return _binary(x)
  if spec.kind == "ternary":
    return _ternary(x, jnp.asarray(0.7, x.dtype))
  return x


def quantize_with(x: Float[Array, "*shape"], spec: QuantSpec) -> Float[Array, "*shape"]:
  """Applies one :class:`QuantSpec` (identity straight-through gradients).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import QuantSpec, quantize_with
    >>> quantize_with(jnp.array([0.3]), QuantSpec("fixed", 4, 3)).tolist()
    [0.25]
  """
  fn = "quantize_with"
  _check_x(fn, x)
  _check_spec(fn, spec)
  if spec.kind in ("binary", "ternary") and jnp.size(x) < 1:
    raise ValueError(f"{fn}: x must have at least one element, got {V.describe(x)}")
  return _apply(jnp.asarray(x), spec)


def _check_logits(fn, logits, m):
  V.check_rank(fn, "logits", logits, 1)
  V.check_floating(fn, "logits", logits)
  V.check_axis_size(fn, "logits", logits, 0, m, "len(candidates)")


def _check_candidates(fn, candidates):
  if not isinstance(candidates, Sequence) or isinstance(candidates, (str, QuantSpec)) \
      or not candidates:
    raise TypeError(f"{fn}: candidates must be a non-empty sequence of QuantSpec, got "
                    f"{candidates!r}")
  for c in candidates:
    _check_spec(fn, c)
  return tuple(candidates)


def mixed_quantize(x: Float[Array, "*shape"], logits: Float[Array, "m"],
                   candidates: Sequence[QuantSpec]) -> Float[Array, "*shape"]:
  """The relaxed quantiser ``sum_m softmax(logits)_m Q_m(x)`` (differentiable in the logits).

  Args:
    x: floating array.
    logits: ``[M]`` one per candidate.
    candidates: ``M`` :class:`QuantSpec`.

  Returns:
    shape of ``x``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import QuantSpec, mixed_quantize
    >>> c = (QuantSpec("fixed", 4, 3), QuantSpec("float"))
    >>> mixed_quantize(jnp.array([0.3]), jnp.array([0.0, 0.0]), c).tolist()   # (0.25 + 0.3) / 2
    [0.2750000059604645]

  References:
    Liu, Simonyan, Yang, "DARTS", ICLR 2019; Zhao et al., LPGNAS, 2020.
  """
  fn = "mixed_quantize"
  _check_x(fn, x)
  candidates = _check_candidates(fn, candidates)
  _check_logits(fn, logits, len(candidates))
  x = jnp.asarray(x)
  if any(c.kind in ("binary", "ternary") for c in candidates) and jnp.size(x) < 1:
    raise ValueError(f"{fn}: x must have at least one element, got {V.describe(x)}")
  p = jax.nn.softmax(jnp.asarray(logits).astype(x.dtype))
  return sum(p[m] * _apply(x, c) for m, c in enumerate(candidates))


def mixed_op(x, logits: Float[Array, "m"], ops: Sequence[Callable]):
  """The DARTS mixture ``sum_m softmax(logits)_m op_m(x)`` of architecture choices.

  Args:
    x: the input (any pytree the ops accept).
    logits: ``[M]``.
    ops: ``M`` callables with outputs of one shape.

  Returns:
    The mixture.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import mixed_op
    >>> mixed_op(jnp.array(2.0), jnp.array([0.0, 0.0]), [lambda v: v, lambda v: v * 3]).tolist()
    4.0

  References:
    Liu, Simonyan, Yang, "DARTS: Differentiable Architecture Search", ICLR 2019,
    https://arxiv.org/abs/1806.09055.
  """
  fn = "mixed_op"
  if not isinstance(ops, Sequence) or not ops or not all(callable(o) for o in ops):
    raise TypeError(f"{fn}: ops must be a non-empty sequence of callables, got {ops!r}")
  _check_logits(fn, logits, len(ops))
  p = jax.nn.softmax(jnp.asarray(logits))
  return sum(p[m] * op(x) for m, op in enumerate(ops))


def expected_bits(logits: Float[Array, "m"], candidates: Sequence[QuantSpec], *,
                  numel: int = 1) -> Float[Array, ""]:
  """The size penalty: ``numel * sum_m softmax(logits)_m bits_m``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import QuantSpec, expected_bits
    >>> c = (QuantSpec("fixed", 8, 4), QuantSpec("binary"))
    >>> float(expected_bits(jnp.array([0.0, 0.0]), c, numel=10))
    45.0

  References:
    Zhao et al., LPGNAS, 2020, https://arxiv.org/abs/2009.09232.
  """
  fn = "expected_bits"
  candidates = _check_candidates(fn, candidates)
  _check_logits(fn, logits, len(candidates))
  V.check_scalar(fn, "numel", numel, low=0, integer=True)
  p = jax.nn.softmax(jnp.asarray(logits))
  return numel * jnp.sum(p * jnp.asarray([c.bits for c in candidates], p.dtype))


class ArchParam(nnx.Param):
  """Architecture / precision logits: an ``nnx.Param`` subclass, so that
  ``nnx.Optimizer(model, tx, wrt=ArchParam)`` (or a filter excluding it) separates them."""


class QuantGCNLayer(nnx.Module):
  """GCN layer ``A_hat Q_a(x) Q_w(W) + b`` with searchable weight and activation precisions.

  Args:
    in_dim, out_dim: sizes.
    weight_candidates, act_candidates: :class:`QuantSpec` tuples (a single one = fixed).
    rngs: Glorot-uniform weights; logits start at zero (uniform mixture).

  ``__call__(x, adj)``; :meth:`expected_weight_bits` the size penalty per weight;
  :meth:`choice` the argmax candidates.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.quantize import QuantGCNLayer, QuantSpec
    >>> layer = QuantGCNLayer(3, 2, weight_candidates=(QuantSpec("fixed", 4, 3),),
    ...                       act_candidates=(QuantSpec("fixed", 8, 4),), rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((5, 3)), jnp.eye(5)).shape
    (5, 2)
  """

  def __init__(self, in_dim: int, out_dim: int, *, weight_candidates: Sequence[QuantSpec],
               act_candidates: Sequence[QuantSpec], rngs: nnx.Rngs):
    fn = "QuantGCNLayer"
    V.check_scalar(fn, "in_dim", in_dim, low=1, integer=True)
    V.check_scalar(fn, "out_dim", out_dim, low=1, integer=True)
    self.weight_candidates = _check_candidates(fn, weight_candidates)
    self.act_candidates = _check_candidates(fn, act_candidates)
    init = nnx.initializers.glorot_uniform()
    self.w = nnx.Param(init(rngs.params(), (int(in_dim), int(out_dim)), jnp.float32))
    self.b = nnx.Param(jnp.zeros((int(out_dim),), jnp.float32))
    self.w_logits = ArchParam(jnp.zeros((len(self.weight_candidates),), jnp.float32))
    self.a_logits = ArchParam(jnp.zeros((len(self.act_candidates),), jnp.float32))

  def _q(self, x, logits, candidates):
    if len(candidates) == 1:
      return _apply(x, candidates[0])
    return mixed_quantize(x, logits, candidates)

  def __call__(self, x: Float[Array, "n din"], adj: Float[Array, "n n"]) -> Float[Array, "n dout"]:
    xq = self._q(x, self.a_logits[...], self.act_candidates)
    wq = self._q(self.w[...], self.w_logits[...], self.weight_candidates)
    return adj @ (xq @ wq) + self.b[...]

  def expected_weight_bits(self) -> Float[Array, ""]:
    """Expected bits per weight under the current logits."""
    return expected_bits(self.w_logits[...], self.weight_candidates)

  def choice(self) -> tuple[QuantSpec, QuantSpec]:
    """``(weight, activation)`` candidates with the largest logits (the derived precision)."""
    return (self.weight_candidates[int(jnp.argmax(self.w_logits[...]))],
            self.act_candidates[int(jnp.argmax(self.a_logits[...]))])


__all__ = ["ArchParam", "QuantGCNLayer", "QuantSpec", "binary_quantize", "expected_bits",
           "fixed_point_quantize", "mixed_op", "mixed_quantize", "quantize_with",
           "ternary_quantize"]
