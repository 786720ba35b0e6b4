"""Residual VQ, grouped (product) VQ and residual FSQ.

Papers: residual VQ — Zeghidour, Luebs, Omran, Skoglund, Tagliasacchi, "SoundStream: An End-to-End
Neural Audio Codec", IEEE/ACM TASLP 2021 (https://arxiv.org/abs/2107.03312), Algorithm 1;
product / grouped VQ — Jégou, Douze, Schmid, "Product Quantization for Nearest Neighbor Search",
TPAMI 2011; residual FSQ — FSQ (Mentzer et al., ICLR 2024) stacked as in
``lucidrains/vector-quantize-pytorch`` ``ResidualFSQ``.

Residual VQ. ``r_0 = z``; level ``i`` quantises the residual, ``q_i = VQ_i(r_i)``, and passes on
``r_{i+1} = r_i - sg(q_i)``; the output is ``sum_i q_i``, the indices ``[*batch, Q]``. Each level
carries the straight-through (or rotation-trick) gradient of its own input residual, and the
residual is passed on without gradient (vector-quantize-pytorch, its issue 33), so with the
straight-through estimator ``d out / d z = (number of active levels) * I``. Quantiser dropout
(training only in SoundStream) is ``active_levels``: levels ``>= active_levels`` are skipped,
their indices are ``-1`` and they add nothing; it may be traced (draw it with
``jax.random.randint``), so one compiled step serves every depth.

Grouped / product VQ. The last axis ``G * d_g`` is split into ``G`` groups, each quantised against
its own codebook (``[G, K, d_g]``, product quantisation) or one shared codebook (``[K, d_g]``,
multi-head VQ); indices ``[*batch, G]``, ``G log2 K`` bits per position.

Residual FSQ. Level ``i`` quantises ``r_i / s_i`` with :func:`~bottleneck_jax.quantize.fsq` and
scale ``s_i = (L - 1)^{-i}`` (per channel), ``q_i = s_i fsq(r_i / s_i)``, ``r_{i+1} = r_i - sg(q_i)``.

Departures: the FSQ bound of the inner quantiser is this library's (``(1 - eps)``, see
:func:`~bottleneck_jax.quantize.fsq`) where vector-quantize-pytorch uses ``(1 + eps)``; no input
soft-clamp and no projections (compose them outside); beam search over levels is not implemented.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.types import BottleneckOutput
from bottleneck_jax.kernels.sharding import take
from bottleneck_jax.quantize._fsq import _check_levels, fsq, fsq_indices_to_codes
from bottleneck_jax.quantize._nearest_code import METRICS
from bottleneck_jax.quantize._vq import (
  GRADS,
  VQEMAState,
  VQEMAVariable,
  _ema_update,
  _quantize,
  vq_ema_init,
)


def _positions_bits(z, per_position, dtype):
  if z.ndim == 1:
    return jnp.asarray(per_position, dtype)
  return (jnp.ones(z.shape[:1], dtype)
          * jnp.asarray(per_position, dtype) * math.prod(z.shape[1:-1]))


def _check_codebooks(fn, z, codebooks, rank=3):
  V.check_rank(fn, "z", z, min_rank=1)
  V.check_floating(fn, "z", z)
  V.check_rank(fn, "codebooks", codebooks, rank)
  V.check_floating(fn, "codebooks", codebooks)
  if jnp.dtype(codebooks.dtype) != jnp.dtype(z.dtype):
    raise TypeError(f"{fn}: codebooks must have the dtype of z ({jnp.dtype(z.dtype).name}), got "
                    f"{V.describe(codebooks)}")
  if 0 in codebooks.shape:
    raise ValueError(f"{fn}: codebooks must have at least one level/group and one code, got "
                     f"{V.describe(codebooks)}")
  if math.prod(z.shape[:-1]) < 1:
    raise ValueError(f"{fn}: z must hold at least one vector (the losses are means), got "
                     f"{V.describe(z)}")


def _check_active(fn, active_levels, q):
  if active_levels is None:
    return None
  V.check_scalar(fn, "active_levels", active_levels, low=1, high=q, integer=True)
  return jnp.asarray(active_levels, jnp.int32)


def residual_vq(z: Float[Array, "*batch d"], codebooks: Float[Array, "q k d"], *,
                beta: float | Float[Array, ""] = 0.25, metric: str = "l2", grad: str = "ste",
                active_levels: int | Int[Array, ""] | None = None,
                implementation: Any = None) -> BottleneckOutput:
  """Residual vector quantisation (SoundStream, Algorithm 1) over ``Q`` stacked codebooks.

  .. math::
    r_0 = z,\\quad q_i = e^{(i)}_{k^*_i},\\; k^*_i = \\operatorname{argmin}_k d(r_i, e^{(i)}_k),
    \\quad r_{i+1} = r_i - \\operatorname{sg}(q_i),\\quad \\hat z = \\sum_{i < A} q_i

  Args:
    z: encoder outputs ``[*batch, d]``, floating, at least one vector.
    codebooks: ``[Q, K, d]``, dtype of ``z``.
    beta: commitment weight ``>= 0``.
    metric: ``"l2"`` or ``"cosine"`` (per level).
    grad: ``"ste"`` or ``"rotation"``, applied per level to its residual.
    active_levels: ``A`` in ``[1, Q]`` (may be traced; quantiser dropout), ``None`` = ``Q``.
    implementation: of the nearest-code search.

  Returns:
    :class:`~bottleneck_jax.core.BottleneckOutput` with ``z`` the sum of the active levels'
    codes (shape and dtype of ``z``), ``loss = sum_i (codebook_i + beta commitment_i)`` over the
    active levels, ``bits = positions * A * log2 K`` per example, and ``aux``: ``"indices"``
    (int32 ``[*batch, Q]``, ``-1`` for skipped levels), ``"codebook_loss"`` / ``"commitment_loss"``
    / ``"perplexity"`` / ``"usage"`` (``[Q]``, zeros for skipped levels), ``"counts"``
    (int32 ``[Q, K]``), ``"residual"`` (what is left, ``z - sum of codes``, no gradient).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import residual_vq
    >>> cbs = jnp.array([[[0.0], [4.0]], [[-1.0], [1.0]]])    # Q = 2, K = 2, d = 1
    >>> out = residual_vq(jnp.array([[3.2], [0.9]]), cbs)
    >>> out.z[:, 0].tolist(), out.aux["indices"].tolist()
    ([3.0, 1.0], [[1, 0], [0, 1]])

  References:
    Zeghidour et al., "SoundStream: An End-to-End Neural Audio Codec", 2021,
    https://arxiv.org/abs/2107.03312.
  """
  fn = "residual_vq"
  _check_codebooks(fn, z, codebooks)
  V.check_axis_size(fn, "codebooks", codebooks, -1, z.shape[-1], "z.shape[-1]")
  V.check_choice(fn, "metric", metric, METRICS)
  V.check_choice(fn, "grad", grad, GRADS)
  V.check_scalar(fn, "beta", beta, low=0.0)
  nq, k = codebooks.shape[0], codebooks.shape[1]
  active = _check_active(fn, active_levels, nq)
  z, codebooks = jnp.asarray(z), jnp.asarray(codebooks)
  dtype = z.dtype
  on_all = active if active is not None else jnp.asarray(nq, jnp.int32)

  def level(carry, xs):
    residual, total = carry
    cb, i = xs
    p = _quantize(residual, cb, metric, grad, implementation)
    on = i < on_all
    onf = on.astype(dtype)
    z_q = jnp.where(on, p.z_q, jnp.zeros_like(p.z_q))
    residual = residual - jax.lax.stop_gradient(z_q)
    stats = (jnp.where(on, p.indices, -1), onf * p.codebook_loss, onf * p.commitment_loss,
             jnp.where(on, p.counts, 0), onf * p.perplexity, onf * p.usage)
    return (residual, total + z_q), stats

  (residual, out), stats = lax.scan(level, (z, jnp.zeros_like(z)),
                                    (codebooks, jnp.arange(nq, dtype=jnp.int32)))
  idx, cb_loss, com_loss, counts, perplexity, usage = stats
  loss = jnp.sum(cb_loss) + jnp.asarray(beta, dtype) * jnp.sum(com_loss)
  aux = {"indices": jnp.moveaxis(idx, 0, -1), "codebook_loss": cb_loss,
         "commitment_loss": com_loss, "counts": counts, "perplexity": perplexity,
         "usage": usage, "residual": jax.lax.stop_gradient(residual)}
  bits = _positions_bits(z, on_all.astype(dtype) * math.log2(k), dtype)
  return BottleneckOutput(z=out, loss=loss, bits=bits, aux=aux)


def residual_vq_decode(indices: Int[Array, "*batch q"], codebooks: Float[Array, "q k d"]
                       ) -> Float[Array, "*batch d"]:
  """The output of :func:`residual_vq` from its indices: ``sum_i codebooks[i, indices[..., i]]``
  (index ``-1`` adds nothing).

  Args:
    indices: integer ``[*batch, Q]`` in ``[-1, K)``.
    codebooks: ``[Q, K, d]``, floating.

  Returns:
    ``[*batch, d]`` in the codebooks' dtype.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import residual_vq_decode
    >>> cbs = jnp.array([[[0.0], [4.0]], [[-1.0], [1.0]]])
    >>> residual_vq_decode(jnp.array([[1, 0], [0, -1]]), cbs)[:, 0].tolist()
    [3.0, 0.0]

  References:
    Zeghidour et al., "SoundStream: An End-to-End Neural Audio Codec", 2021,
    https://arxiv.org/abs/2107.03312.
  """
  fn = "residual_vq_decode"
  V.check_rank(fn, "codebooks", codebooks, 3)
  V.check_floating(fn, "codebooks", codebooks)
  if codebooks.shape[1] < 1:
    raise ValueError(f"{fn}: codebooks must have at least one code (K >= 1), got "
                     f"{V.describe(codebooks)}")
  V.check_array(fn, "indices", indices)
  V.check_integer(fn, "indices", indices)
  V.check_rank(fn, "indices", indices, min_rank=1)
  V.check_axis_size(fn, "indices", indices, -1, codebooks.shape[0], "codebooks.shape[0] (Q)")
  idx = jnp.asarray(indices).astype(jnp.int32)
  codebooks = jnp.asarray(codebooks)
  codes = jax.vmap(lambda cb, i: jnp.where((i >= 0)[..., None], take(cb, jnp.maximum(i, 0)), 0.0),
                   in_axes=(0, -1))(codebooks, idx)
  return jnp.sum(codes, axis=0).astype(codebooks.dtype)


def residual_vq_ema_update(state: VQEMAState, z: Float[Array, "*batch d"],
                           indices: Int[Array, "*batch q"], *,
                           decay: float | Float[Array, ""] = 0.99,
                           epsilon: float = 1e-5) -> VQEMAState:
  """One EMA step of every level of a residual VQ (state stacked over levels).

  Level ``i`` moves towards its input residual ``r_i``, recomputed from ``z`` and the indices with
  the state's current (pre-update) codebooks, as :func:`residual_vq` saw them; each level then
  follows :func:`~bottleneck_jax.quantize.vq_ema_update`. Index ``-1`` counts nowhere.

  Args:
    state: :class:`~bottleneck_jax.quantize.VQEMAState` with a leading ``Q`` axis
      (``jax.vmap(vq_ema_init)(codebooks)``).
    z: the raw encoder outputs ``[*batch, d]``, dtype of the state.
    indices: ``out.aux["indices"]`` of :func:`residual_vq`, integer ``[*batch, Q]``.
    decay: EMA decay in ``[0, 1]``.
    epsilon: Laplace smoothing ``> 0``.

  Returns:
    The new stacked state.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.quantize import residual_vq_ema_update, vq_ema_init
    >>> cbs = jnp.array([[[0.0], [4.0]], [[-1.0], [1.0]]])
    >>> state = jax.vmap(vq_ema_init)(cbs)
    >>> new = residual_vq_ema_update(state, jnp.array([[3.2]]), jnp.array([[1, 0]]), decay=0.0)
    >>> new.cluster_size.tolist()
    [[0.0, 1.0], [1.0, 0.0]]

  References:
    Zeghidour et al., "SoundStream", 2021, https://arxiv.org/abs/2107.03312; Razavi et al.,
    "VQ-VAE-2", NeurIPS 2019, https://arxiv.org/abs/1906.00446.
  """
  fn = "residual_vq_ema_update"
  if not isinstance(state, VQEMAState):
    raise TypeError(f"{fn}: state must be a VQEMAState (stacked with jax.vmap(vq_ema_init)), "
                    f"got {type(state).__name__}")
  V.check_rank(fn, "state.codebook", state.codebook, 3)
  nq, k, d = state.codebook.shape
  if k < 1:
    raise ValueError(f"{fn}: state.codebook must have at least one code (K >= 1), got "
                     f"{V.describe(state.codebook)}")
  V.check_rank(fn, "z", z, min_rank=1)
  V.check_floating(fn, "z", z)
  V.check_axis_size(fn, "z", z, -1, d, "the codebooks' d")
  if jnp.dtype(z.dtype) != jnp.dtype(state.codebook.dtype):
    raise TypeError(f"{fn}: z must have the dtype of the state "
                    f"({jnp.dtype(state.codebook.dtype).name}), got {V.describe(z)}")
  V.check_array(fn, "indices", indices)
  V.check_integer(fn, "indices", indices)
  if tuple(jnp.shape(indices)) != (*z.shape[:-1], nq):
    raise ValueError(f"{fn}: indices must have shape {[*z.shape[:-1], nq]} (z.shape[:-1] + [Q]),"
                     f" got {list(jnp.shape(indices))}")
  V.check_scalar(fn, "decay", decay, low=0.0, high=1.0)
  V.check_scalar(fn, "epsilon", epsilon, low=0.0, low_inclusive=False, static=True)
  x = jax.lax.stop_gradient(jnp.asarray(z)).reshape(-1, d)
  idx = jnp.asarray(indices).astype(jnp.int32).reshape(-1, nq).T        # [Q, N]

  def level(residual, xs):
    cb, i = xs
    q = jnp.where((i >= 0)[:, None], take(cb, jnp.maximum(i, 0)), 0.0)
    return residual - q, residual

  _, residuals = lax.scan(level, x, (state.codebook, idx))              # [Q, N, d] inputs
  return jax.vmap(lambda s, r, i: _ema_update(s, r, i, decay, epsilon))(state, residuals, idx)


def grouped_vq(z: Float[Array, "*batch d"], codebooks: Float[Array, "..."], *,
               groups: int | None = None, beta: float | Float[Array, ""] = 0.25,
               metric: str = "l2", grad: str = "ste",
               implementation: Any = None) -> BottleneckOutput:
  """Grouped (product) VQ: the last axis split into ``G`` groups quantised independently.

  .. math::
    z = [z^{(1)}, \\dots, z^{(G)}],\\quad \\hat z^{(g)} = e^{(g)}_{k^*_g},\\;
    k^*_g = \\operatorname{argmin}_k d(z^{(g)}, e^{(g)}_k)

  Args:
    z: ``[*batch, G * d_g]``, floating, at least one vector.
    codebooks: ``[G, K, d_g]`` (product VQ, a codebook per group) or ``[K, d_g]`` (one codebook
      shared by the groups, multi-head VQ; then ``groups`` is required).
    groups: ``G`` (``None``: ``codebooks.shape[0]``; must agree with a 3-d codebook).
    beta, metric, grad, implementation: as :func:`~bottleneck_jax.quantize.vector_quantize`.

  Returns:
    :class:`~bottleneck_jax.core.BottleneckOutput`: ``z`` (shape of ``z``), ``loss`` the mean
    over groups of ``codebook + beta commitment``, ``bits = positions * G * log2 K``; ``aux``:
    ``"indices"`` (int32 ``[*batch, G]``), ``"codebook_loss"``, ``"commitment_loss"``,
    ``"perplexity"``, ``"usage"`` (``[G]``), ``"counts"`` (``[G, K]``).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import grouped_vq
    >>> cb = jnp.array([[0.0], [1.0]])                          # shared, K = 2, d_g = 1
    >>> out = grouped_vq(jnp.array([[0.9, 0.2, 0.6]]), cb, groups=3)
    >>> out.z.tolist(), out.aux["indices"].tolist()
    ([[1.0, 0.0, 1.0]], [[1, 0, 1]])

  References:
    Jégou, Douze, Schmid, "Product Quantization for Nearest Neighbor Search", IEEE TPAMI 2011,
    https://doi.org/10.1109/TPAMI.2010.57.
  """
  fn = "grouped_vq"
  V.check_rank(fn, "codebooks", codebooks, min_rank=2)
  shared = jnp.ndim(codebooks) == 2
  _check_codebooks(fn, z, codebooks, rank=2 if shared else 3)
  V.check_choice(fn, "metric", metric, METRICS)
  V.check_choice(fn, "grad", grad, GRADS)
  V.check_scalar(fn, "beta", beta, low=0.0)
  if shared:
    if groups is None:
      raise ValueError(f"{fn}: groups must be given with a shared [K, d_g] codebook, got None")
    V.check_scalar(fn, "groups", groups, low=1, integer=True, static=True)
    g = int(groups)
  else:
    g = codebooks.shape[0]
    if groups is not None:
      V.check_scalar(fn, "groups", groups, low=1, integer=True, static=True)
      if int(groups) != g:
        raise ValueError(f"{fn}: groups must equal codebooks.shape[0] ({g}), got {groups}")
  dg, k = codebooks.shape[-1], codebooks.shape[-2]
  if z.shape[-1] != g * dg:
    raise ValueError(f"{fn}: z must have size groups * d_g = {g} * {dg} = {g * dg} on axis -1, "
                     f"got {V.describe(z)}")
  z, codebooks = jnp.asarray(z), jnp.asarray(codebooks)
  zg = jnp.moveaxis(z.reshape(*z.shape[:-1], g, dg), -2, 0)
  p = jax.vmap(lambda a, cb: _quantize(a, cb, metric, grad, implementation),
               in_axes=(0, None if shared else 0))(zg, codebooks)
  z_q = jnp.moveaxis(p.z_q, 0, -2).reshape(z.shape)
  loss = jnp.mean(p.codebook_loss + jnp.asarray(beta, z.dtype) * p.commitment_loss)
  aux = {"indices": jnp.moveaxis(p.indices, 0, -1), "codebook_loss": p.codebook_loss,
         "commitment_loss": p.commitment_loss, "counts": p.counts,
         "perplexity": p.perplexity, "usage": p.usage}
  return BottleneckOutput(z=z_q, loss=loss, bits=_positions_bits(z, g * math.log2(k), z.dtype),
                          aux=aux)


def residual_fsq(z: Float[Array, "*batch d"], *, levels: Sequence[int],
                 num_levels: int) -> BottleneckOutput:
  """Residual FSQ: ``num_levels`` FSQ stages on shrinking scales ``s_i = (L - 1)^{-i}``.

  .. math::
    r_0 = z,\\quad q_i = s_i\\, \\operatorname{fsq}(r_i / s_i),\\quad
    r_{i+1} = r_i - \\operatorname{sg}(q_i),\\quad \\hat z = \\sum_i q_i

  Args:
    z: ``[*batch, d]``, ``d == len(levels)``, floating.
    levels: FSQ levels per channel, ints >= 3.
    num_levels: number of stages ``Q >= 1`` (static).

  Returns:
    :class:`~bottleneck_jax.core.BottleneckOutput` with ``z`` (the summed codes, shape of
    ``z``), ``loss`` 0, ``bits = positions * Q * log2 prod(levels)`` and ``aux``: ``"indices"``
    (int32 ``[*batch, Q]``), ``"codes"`` (``[Q, *batch, d]``, the scaled codes, no gradient).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import residual_fsq, residual_fsq_decode
    >>> out = residual_fsq(jnp.array([[0.3, -0.55, 0.1]]), levels=[5, 5, 5], num_levels=3)
    >>> dec = residual_fsq_decode(out.aux["indices"], levels=[5, 5, 5])
    >>> bool(jnp.allclose(dec, out.z)), out.aux["indices"].shape
    (True, (1, 3))

  References:
    Mentzer et al., "Finite Scalar Quantization: VQ-VAE Made Simple", ICLR 2024,
    https://arxiv.org/abs/2309.15505; Zeghidour et al., SoundStream, 2021.
  """
  fn = "residual_fsq"
  levels = _check_levels(fn, levels)
  V.check_scalar(fn, "num_levels", num_levels, low=1, integer=True, static=True)
  V.check_rank(fn, "z", z, min_rank=1)
  V.check_floating(fn, "z", z)
  V.check_axis_size(fn, "z", z, -1, len(levels), "len(levels)")
  z = jnp.asarray(z)
  base = np.asarray(levels, np.float64) - 1
  residual, out, idx, codes = z, jnp.zeros_like(z), [], []
  for i in range(int(num_levels)):
    scale = jnp.asarray(base ** -i, z.dtype)
    o = fsq(residual / scale, levels=levels)
    q = o.z * scale
    residual = residual - jax.lax.stop_gradient(q)
    out = out + q
    idx.append(o.aux["indices"])
    codes.append(jax.lax.stop_gradient(q))
  bits = _positions_bits(z, int(num_levels) * math.log2(math.prod(levels)), z.dtype)
  return BottleneckOutput(z=out, loss=jnp.zeros((), z.dtype), bits=bits,
                          aux={"indices": jnp.stack(idx, axis=-1), "codes": jnp.stack(codes)})


def residual_fsq_decode(indices: Int[Array, "*batch q"], *, levels: Sequence[int],
                        dtype=jnp.float32) -> Float[Array, "*batch d"]:
  """The output of :func:`residual_fsq` from its indices: ``sum_i s_i codes(indices[..., i])``.

  Args:
    indices: integer ``[*batch, Q]``.
    levels: FSQ levels per channel, ints >= 3.
    dtype: floating dtype of the output.

  Returns:
    ``[*batch, len(levels)]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import residual_fsq_decode
    >>> residual_fsq_decode(jnp.array([[12, 12]]), levels=[5, 5]).tolist()   # all-zero codes
    [[0.0, 0.0]]

  References:
    Mentzer et al., "Finite Scalar Quantization: VQ-VAE Made Simple", ICLR 2024,
    https://arxiv.org/abs/2309.15505.
  """
  fn = "residual_fsq_decode"
  levels = _check_levels(fn, levels)
  V.check_array(fn, "indices", indices)
  V.check_integer(fn, "indices", indices)
  V.check_rank(fn, "indices", indices, min_rank=1)
  if not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
    raise TypeError(f"{fn}: dtype must be a floating dtype, got {jnp.dtype(dtype).name}")
  idx = jnp.asarray(indices)
  nq = idx.shape[-1]
  if nq < 1:
    raise ValueError(f"{fn}: indices must have at least one level (Q >= 1 on the last axis), got "
                     f"{V.describe(indices)}")
  base = np.asarray(levels, np.float64) - 1
  scales = jnp.asarray(np.stack([base ** -i for i in range(nq)]), jnp.float32)   # [Q, d]
  codes = fsq_indices_to_codes(idx, levels=levels, dtype=jnp.float32)              # [..., Q, d]
  return jnp.sum(codes * scales, axis=-2).astype(dtype)


class ResidualVQ(nnx.Module):
  """Residual VQ with ``Q`` EMA codebooks (:func:`residual_vq` + :func:`residual_vq_ema_update`).

  Args:
    num_levels: ``Q``.
    num_codes: ``K`` per level.
    dim: ``d``.
    beta: commitment weight (the loss is ``beta`` times the summed commitment losses).
    metric, grad: as :func:`residual_vq`.
    ema_decay: EMA decay.
    epsilon: Laplace smoothing.
    rngs: for the codebook initialisation (uniform in ``[-1/K, 1/K]``).

  ``__call__(z, *, update=False, active_levels=None)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.quantize import ResidualVQ
    >>> rvq = ResidualVQ(3, 16, 4, rngs=nnx.Rngs(0))
    >>> rvq(jnp.ones((2, 5, 4)), update=True).aux["indices"].shape
    (2, 5, 3)
  """

  def __init__(self, num_levels: int, num_codes: int, dim: int, *, beta: float = 0.25,
               metric: str = "l2", grad: str = "ste", ema_decay: float = 0.99,
               epsilon: float = 1e-5, rngs: nnx.Rngs):
    fn = "ResidualVQ"
    for name, val in (("num_levels", num_levels), ("num_codes", num_codes), ("dim", dim)):
      V.check_scalar(fn, name, val, low=1, integer=True)
    V.check_scalar(fn, "beta", beta, low=0.0)
    V.check_choice(fn, "metric", metric, METRICS)
    V.check_choice(fn, "grad", grad, GRADS)
    V.check_scalar(fn, "ema_decay", ema_decay, low=0.0, high=1.0)
    V.check_scalar(fn, "epsilon", epsilon, low=0.0, low_inclusive=False)
    k = int(num_codes)
    init = jax.random.uniform(rngs.params(), (int(num_levels), k, int(dim)), jnp.float32,
                              -1.0 / k, 1.0 / k)
    state = jax.vmap(vq_ema_init)(init)
    self.codebook = VQEMAVariable(state.codebook)
    self.cluster_size = VQEMAVariable(state.cluster_size)
    self.embed_avg = VQEMAVariable(state.embed_avg)
    self.beta, self.metric, self.grad = float(beta), metric, grad
    self.ema_decay, self.epsilon = float(ema_decay), float(epsilon)

  def __call__(self, z: Float[Array, "*batch d"], *, update: bool = False,
               active_levels: int | Int[Array, ""] | None = None) -> BottleneckOutput:
    out = residual_vq(z, self.codebook[...], beta=self.beta, metric=self.metric, grad=self.grad,
                      active_levels=active_levels)
    out = out._replace(loss=self.beta * jnp.sum(out.aux["commitment_loss"]))
    if update:
      state = residual_vq_ema_update(
          VQEMAState(self.cluster_size[...], self.embed_avg[...], self.codebook[...]), z,
          out.aux["indices"], decay=self.ema_decay, epsilon=self.epsilon)
      self.cluster_size[...] = state.cluster_size
      self.embed_avg[...] = state.embed_avg
      self.codebook[...] = state.codebook
    return out


class ResidualFSQ(nnx.Module):
  """Residual FSQ as an ``nnx`` layer (no parameters): calls :func:`residual_fsq`.

  Args:
    levels: FSQ levels per channel.
    num_levels: number of stages.
    rngs: unused (uniform constructor).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import ResidualFSQ
    >>> ResidualFSQ([5, 5, 5], 2)(jnp.zeros((4, 3))).aux["indices"].shape
    (4, 2)
  """

  def __init__(self, levels: Sequence[int], num_levels: int, *, rngs: nnx.Rngs | None = None):
    del rngs
    self.levels = _check_levels("ResidualFSQ", levels)
    V.check_scalar("ResidualFSQ", "num_levels", num_levels, low=1, integer=True)
    self.num_levels = int(num_levels)

  def __call__(self, z: Float[Array, "*batch d"]) -> BottleneckOutput:
    return residual_fsq(z, levels=self.levels, num_levels=self.num_levels)

  def decode(self, indices: Int[Array, "*batch q"], dtype=jnp.float32
             ) -> Float[Array, "*batch d"]:
    """:func:`residual_fsq_decode` with these levels."""
    return residual_fsq_decode(indices, levels=self.levels, dtype=dtype)


__all__ = ["ResidualFSQ", "ResidualVQ", "grouped_vq", "residual_fsq", "residual_fsq_decode",
           "residual_vq", "residual_vq_decode", "residual_vq_ema_update"]
