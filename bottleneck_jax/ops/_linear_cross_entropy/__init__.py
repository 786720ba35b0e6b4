"""Fused linear cross-entropy (Cut Cross-Entropy) over a large vocabulary.

A shared op (the Chronicals fine-tuning framework's loss head is a Cut-Cross-Entropy-style fused
kernel, "CCE logits 5 GB -> 135 MB"; any family with a large output layer uses it). Files:
``reference.py`` (materialised logits, the oracle), ``xla.py`` (chunked over the vocabulary),
``pallas.py`` (a Pallas forward kernel). The method comes from
Wijmans et al., *Cut Your Losses in Large-Vocabulary Language Models* (ICLR 2025,
arXiv:2411.09009, 2024), https://github.com/apple/ml-cross-entropy.

Idea: the cross-entropy of an LM head, ``loss_n = logsumexp_v(x_n . w_v) - x_n . w_{y_n}``, needs
only a few numbers per row, never the ``N x V`` logit matrix that a plain implementation writes
to memory (3.9 GiB in f32 for N=8192 tokens and a 128256-word vocabulary). The fused primitive
:func:`linear_logit_stats` streams over vocabulary blocks and keeps three f32 statistics per row:

* ``lse_n = log sum_v exp z_nv`` (online log-sum-exp: carry ``(m, s)``, per block
  ``m' = max(m, max_v z)``, ``s <- s e^{m - m'} + sum_v e^{z - m'}``, finally ``lse = m + log s``),
* ``t_n = z_{n, y_n}`` (the target logit) and ``s_n = sum_v z_nv`` (for label smoothing),

with ``z_nv = x_n . w_v + b_v``, soft-capped to ``c tanh(z / c)`` when ``softcap=c`` (Gemma 2).
The running max starts at ``-inf`` and the rescaling uses a zero shift while it is still ``-inf``
(a block of ``-inf`` logits anywhere, e.g. a ``-inf`` bias restricting the outputs to label
words, is exact; an all ``-inf`` row has ``lse = -inf``). Its ``custom_vjp`` saves
``x, w, labels, lse`` and recomputes each logit block in the backward: with cotangents
``(g_lse, g_t, g_s)`` per row,

    dL/dz_nv = p_nv g_lse,n + 1[v = y_n] g_t,n + g_s,n,     p_nv = exp(z_nv - lse_n),

times ``1 - (z_nv / c)^2`` with soft-capping (``z`` the capped logit), and ``dx = G W``,
``dW = G^T x``, ``db = sum_n G`` (4 matmul passes: 8NdV FLOPs).

:func:`linear_cross_entropy` composes losses from the statistics in plain ``jnp``:
``nll = lse - t``; label smoothing (PyTorch convention) ``(1 - a) nll + a (lse - s / V)``;
PaLM's z-loss ``+ lambda lse^2``; ``ignore_index`` rows give zero loss and zero gradient and are
left out of the ``mean`` denominator. For ``mean``/``sum`` losses (the usual training case) it
does not differentiate the statistics: the loss is a scalar at the end of the graph, so its
gradient is known up to the incoming scalar cotangent. A second ``custom_vjp`` at the loss level
runs, when differentiated, ONE sweep over row blocks (Liger-kernel style): per block of ``bn``
rows the complete ``[bn, V]`` f32 logit block (matmul 1) and its exact log-sum-exp; then one
loop over vocabulary chunks ``j`` forms ``G_j = coef_n (dloss_n/dz)`` on ``[bn, vc]`` and
applies it at once: ``dx_b += G_j W_j`` (matmul 2) and ``dW_j += G_j^T x_b`` (matmul 3). The
backward only scales ``dx, dW, db`` by the cotangent. Three matmul passes (6NdV, like autodiff
of the materialised logits), and the logit block is the only ``[bn, V]`` array alive (instead of
``[N, V]``); ``bn`` comes from ``_block_sizes`` (128 MiB of f32 logits, 16..512 rows). Value-only calls keep the streaming
forward (one matmul pass). ``reduction="none"`` (per-row cotangents: dW cannot be pre-scaled)
and inputs on a mesh (rows may be sharded) use the statistics VJP.

Implementations (``implementation=``, see :mod:`bottleneck_jax.kernels`):

* ``"reference"``: materialises the f32 ``[N, V]`` logits, plain ``jnp`` autodiff (the oracle);
* ``"xla"``: value: ``lax.fori_loop`` over vocabulary blocks plus a static tail block, online
  log-sum-exp; gradient of a reduced loss: the row-blocked three-matmul sweep; gradient of the
  statistics: blockwise recompute, ``dx`` accumulated in f32, ``dW`` written block by block with
  ``dynamic_update_slice``. Default on CPU, fallback everywhere;
* ``"pallas"``: value: a Pallas forward kernel (grid over row blocks x vocabulary splits,
  per-split partials merged by ``logsumexp`` in XLA; Triton on GPU, interpret mode on CPU);
  gradients: the same XLA sweeps as ``"xla"`` (cuBLAS GEMMs).

Edge cases, the same in every implementation: traced labels outside ``[0, V)`` that are not
``ignore_index`` give a NaN loss for their row and NaN gradients (concrete ones raise);
labels are compared in their own dtype (int64 / uint32 ids never wrap to int32); ignored rows
are selected out (a NaN in them reaches no gradient); a valid row whose logits are all ``-inf``
has a NaN loss (undefined distribution).

Departures from the paper / CCE:

* no gradient filtering by default (CCE skips backward tiles whose ``|p - onehot|`` is below
  ``eps``; that is approximate, see apple/ml-cross-entropy#14), and no vocabulary sorting; both
  only pay off in a fused backward kernel, which is not implemented (backward is chunked XLA);
* the gradient sweep accumulates ``dW`` in f32 across row blocks (as Liger does, but Liger
  accumulates in the weight dtype): for bf16 weights that is an f32 ``[V, d]`` temporary
  (1 GiB at V=128256, d=2048) on top of the ``[bn, V]`` logit block;
* no atomics: vocabulary splits are merged deterministically in XLA, not with CCE's spin-lock
  ``logaddexp``; no Kahan summation (all accumulators are f32);
* the weight layout is ``w: [V, d]`` (CCE's ``c``, a tied embedding); pass ``kernel.T`` for an
  ``nnx.Linear`` kernel (the transpose folds into the dot under ``jit``);
* rows are not compacted to the valid (non-ignored) ones, and there is no ``shift=`` argument:
  shift labels yourself;
* the backward casts the gradient tile ``G`` to the input dtype before its two GEMMs, as CCE
  does; the logits themselves are never rounded to bf16 before the log-sum-exp (Liger #1432);
* Chronicals' own Triton kernel runs one program per token with scalar vocabulary loops; this
  implementation tiles onto matrix units instead (CCE / tokamax tiling).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero
from jaxtyping import Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.kernels import Op, backend, pallas_interpret
from bottleneck_jax.kernels.sharding import current_mesh
from bottleneck_jax.ops._linear_cross_entropy import pallas as _lce_pallas
from bottleneck_jax.ops._linear_cross_entropy import reference as _lce_reference
from bottleneck_jax.ops._linear_cross_entropy import xla as _lce_xla

Array = jax.Array
F32 = jnp.float32
Implementation = Literal["reference", "xla", "pallas"]
_REDUCTIONS = ("mean", "sum", "none")


class CrossEntropyOutput(NamedTuple):
  """Result of :func:`linear_cross_entropy_with_aux`.

  Attributes:
    loss: the reduced loss (f32 scalar, or ``[*batch]`` for ``reduction="none"``).
    lse: f32 ``[*batch]`` log-sum-exp of each valid row's logits (``-inf`` for a row whose
      every logit is ``-inf``); 0 on ignored rows.
    nll: f32 ``[*batch]`` negative log-likelihood ``lse - z_y`` (0 on ignored rows).
    valid: bool ``[*batch]``, ``labels != ignore_index``.
  """
  loss: Array
  lse: Array
  nll: Array
  valid: Array


class BlockSizes(NamedTuple):
  """Block sizes of one call (see :func:`_block_sizes`)."""
  vocab: int      # vocabulary block of the streaming statistics sweep (xla)
  rows: int       # row block of the three-matmul loss+gradient sweep (xla)
  dw_chunk: int   # vocabulary chunk in which dW is accumulated in that sweep
  tile: int | None = None   # the caller's block_size for the Pallas kernel (None: its plan)
  pallas: dict | None = None   # Pallas tiles (block_n/v/d, warps, stages) for the platform


def _pow2_floor(n: float) -> int:
  return 1 << max(int(n), 1).bit_length() - 1


def _block_sizes(n: int, v: int, d: int, dtype, platform: str) -> BlockSizes:
  """Block sizes for ``n`` rows, ``v`` words, ``d`` features (the only place they are chosen).

  * ``vocab`` (statistics sweep, value-only path): 2048 columns, measured (CPU) as the knee of
    time vs temp memory; ``N x 2048`` f32 blocks.
  * ``rows`` (loss + gradient sweep): the largest power of two (16..512) whose f32 logit block
    ``rows x V`` fits 128 MiB — the only block-sized array of the sweep (the gradient tile is
    formed chunk by chunk). At V=128256 that is 256 rows: temp memory at N=8192, d=2048 is
    151 MiB (optax: 7.83 GiB). Larger blocks amortise the per-block read-modify-write of the
    ``[V, d]`` f32 dW accumulator and the two reads of ``W``, which is what the time depends on.
    Measured on the 2-core CPU (fwd+bwd, 3 interleaved rounds, CPU-time ratio to optax on
    materialised logits, N=512, d=2048, V=128256, otherwise idle): rows/chunk 128/512 1.23x,
    256/512 1.10x, 256/1024 1.05x, 512/512 1.03x (over the memory budget); at N=4096 (5
    rounds) 256/1024 is 1.09x, where the whole-tile sweep at 128 rows was 1.15x. At V=32000
    the cap gives 512 rows (0.94x at N=2048, d=1024).
  * ``dw_chunk``: the vocabulary chunk of the gradient loop (``dx_b += G_j W_j``,
    ``dW_j += G_j^T x_b``): about 8 MiB of ``dW`` per chunk (1024 words at d=2048). The
    chunk's dot output and the slice it is added to are the sweep's other temporaries
    (16 MiB chunks: 177 MiB at N=8192, under the 50x memory target).

  * ``pallas``: the Pallas kernel's tiles: ``pallas.GPU_CONFIG`` (the fastest of an 11-point
    sweep on an H200, bf16, N=8192, d=2048, V=128256) under the Triton lowering,
    ``pallas.INTERPRET_CONFIG`` in interpret mode (CPU); ``pallas.plan`` only clamps them to
    the shapes.

  ``dtype`` is accepted so that a tuned table can key on it.
  """
  del dtype
  interpret = pallas_interpret(platform)
  tiles = dict(_lce_pallas.INTERPRET_CONFIG if interpret else _lce_pallas.GPU_CONFIG)
  rows = max(16, min(512, _pow2_floor((128 << 20) // (4 * max(v, 1)))))
  rows = min(rows, max(n, 1))
  dw_chunk = max(128, min(8192, _pow2_floor((8 << 20) // (4 * max(d, 1)))))
  return BlockSizes(vocab=_lce_xla.DEFAULT_BLOCK_V, rows=rows, dw_chunk=min(dw_chunk, v),
                    pallas=tiles)


# --------------------------------------------------------------------------- validation


def _is_concrete(a) -> bool:
  return isinstance(a, (np.ndarray, np.generic, jax.Array)) and not isinstance(a, jax.core.Tracer)


def _validate(fn: str, x, w, labels, bias, softcap, block_size, ignore_index=None) -> None:
  V.check_rank(fn, "x", x, min_rank=1)
  V.check_rank(fn, "w", w, 2)
  V.check_floating(fn, "x", x)
  V.check_floating(fn, "w", w)
  if jnp.dtype(x.dtype) != jnp.dtype(w.dtype):
    raise TypeError(f"{fn}: w must have the same dtype as x ({jnp.dtype(x.dtype).name}), got "
                    f"{jnp.dtype(w.dtype).name}; cast one of them")
  d = x.shape[-1]
  if d < 1:
    raise ValueError(f"{fn}: x must have a non-empty feature (last) axis, got shape "
                     f"{list(x.shape)}")
  if w.shape[1] != d:
    raise ValueError(f"{fn}: w must have shape [V, {d}] (its last dim equal to x's last dim), "
                     f"got {list(w.shape)}")
  v = w.shape[0]
  if v < 1:
    raise ValueError(f"{fn}: w must have at least one row (V >= 1), got {list(w.shape)}")
  V.check_array(fn, "labels", labels)
  V.check_integer(fn, "labels", labels)
  V.check_shape(fn, "labels", labels, tuple(x.shape[:-1]))
  if bias is not None:
    V.check_floating(fn, "bias", bias)
    V.check_shape(fn, "bias", bias, (v,))
  if softcap is not None:
    V.check_scalar(fn, "softcap", softcap, low=0, low_inclusive=False, static=True)
  if block_size is not None:
    V.check_scalar(fn, "block_size", block_size, low=1, integer=True, static=True)
  if _is_concrete(labels):
    lab = np.asarray(labels)
    if ignore_index is not None:
      lab = lab[lab != ignore_index]
    if lab.size and (lab.min() < 0 or lab.max() >= v):
      bad = lab[(lab < 0) | (lab >= v)]
      extra = "" if ignore_index is None else f" or ignore_index={ignore_index}"
      raise ValueError(f"{fn}: labels must be in [0, {v}){extra}, got {int(bad[0])}")


def _label_masks(labels, v: int, ignore_index: int | None):
  """``(valid, in_range, safe_int32)``; comparisons in the labels' own dtype (no int32 wrap)."""
  labels = jnp.asarray(labels)
  info = np.iinfo(labels.dtype)
  if ignore_index is None or not info.min <= ignore_index <= info.max:
    valid = jnp.ones(labels.shape, bool)      # e.g. uint32 labels can never equal -100
  else:
    valid = labels != jnp.asarray(ignore_index, labels.dtype)
  in_range = labels < jnp.asarray(min(v, info.max), labels.dtype)
  if info.min < 0:
    in_range = in_range & (labels >= jnp.asarray(0, labels.dtype))
  if v > info.max:
    in_range = jnp.ones(labels.shape, bool) if info.min >= 0 else labels >= 0
  safe = jnp.where(valid & in_range, labels, jnp.zeros((), labels.dtype)).astype(jnp.int32)
  return valid, in_range, safe


# --------------------------------------------------------------------------- statistics op


def _forward(kernel, x, w, labels, bias, softcap, block_size):
  blocks = _block_sizes(x.shape[0], w.shape[0], x.shape[1], x.dtype, backend())
  if kernel == "pallas":
    return _lce_pallas.forward(x, w, labels, bias, softcap, block_size, config=blocks.pallas)
  return _lce_xla.forward(x, w, labels, bias, softcap, block_size or blocks.vocab)


def _check_pallas(x, w, block_size):
  """Raises UnsupportedInput (so the dispatcher can fall back) before entering custom_vjp."""
  blocks = _block_sizes(x.shape[0], w.shape[0], x.shape[1], x.dtype, backend())
  _lce_pallas.check_supported(x.shape[0], w.shape[0], x.shape[1], block_size,
                              config=blocks.pallas, itemsize=jnp.dtype(x.dtype).itemsize)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _fused_stats(x, w, labels, bias, softcap, block_size, kernel):
  return _forward(kernel, x, w, labels, bias, softcap, block_size)


def _fused_stats_fwd(x, w, labels, bias, softcap, block_size, kernel):
  lse, t, zs = _forward(kernel, x, w, labels, bias, softcap, block_size)
  return (lse, t, zs), (x, w, labels, bias, lse)


def _stats_backward(x, w, labels, bias, lse, dlse, dt, dzs, softcap, vb):
  dx, dw, db = _lce_xla.backward(x, w, labels, bias, lse, dlse, dt, dzs, softcap, vb)
  return dx, dw, db


def _fused_stats_bwd(softcap, block_size, kernel, res, cts):
  # The statistics primitive's backward recomputes each logit block (vocabulary-blocked). For
  # "pallas", block_size is the kernel's (small, power-of-two) tile, not a good XLA block.
  x, w, labels, bias, lse = res
  dlse, dt, dzs = cts
  vb = block_size if (kernel == "xla" and block_size is not None) else \
      _block_sizes(x.shape[0], w.shape[0], x.shape[1], x.dtype, backend()).vocab
  dx, dw, db = _stats_backward(x, w, labels, bias, lse, dlse, dt, dzs, softcap, vb)
  return dx, dw, None, db


_fused_stats.defvjp(_fused_stats_fwd, _fused_stats_bwd)


def _stats_xla(x, w, labels, bias, *, softcap, block_size):
  return _fused_stats(x, w, labels, bias, softcap, block_size, "xla")


def _stats_pallas(x, w, labels, bias, *, softcap, block_size):
  _check_pallas(x, w, block_size)
  return _fused_stats(x, w, labels, bias, softcap, block_size, "pallas")


_STATS = Op("linear_logit_stats", {"reference": _lce_reference.stats, "xla": _stats_xla,
                                   "pallas": _stats_pallas})


# --------------------------------------------------------------------------- loss op


def _row_losses(lse, t, zs, v, label_smoothing, z_loss):
  """``(nll, loss)`` per row from the statistics."""
  nll = lse - t
  loss = nll
  if label_smoothing:
    loss = (1.0 - label_smoothing) * nll + label_smoothing * (lse - zs / v)
  if z_loss:
    loss = loss + z_loss * jnp.square(lse)
  return nll, loss


def _weighted_sum(loss, coef):
  return jnp.sum(jnp.where(coef != 0, coef * loss, 0.0))


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7, 8, 9))
def _fused_loss(x, w, bias, labels, coef, softcap, label_smoothing, z_loss, blocks, kernel):
  """``(sum_n coef_n loss_n, lse, t)``; value-only: the streaming statistics sweep."""
  lse, t, zs = _forward(kernel, x, w, labels, bias, softcap, _kernel_block(kernel, blocks))
  _, loss = _row_losses(lse, t, zs, w.shape[0], label_smoothing, z_loss)
  return _weighted_sum(loss, coef), lse, t


def _kernel_block(kernel, blocks):
  return blocks.tile if kernel == "pallas" else blocks.vocab


def _value(a):
  return None if a is None else a.value


def _fused_loss_fwd(x, w, bias, labels, coef, softcap, label_smoothing, z_loss, blocks, kernel):
  # Under differentiation: one row-blocked sweep computes the statistics and the gradients of
  # the weighted loss sum (three matmul passes); the backward only scales them.
  xv, wv, bv, lv, cv = (_value(a) for a in (x, w, bias, labels, coef))
  # A frozen input (w of a frozen LM head, say) is not perturbed: skip its matmul pass.
  lse, t, zs, dx, dw, db = _lce_xla.fused_loss_grads(
      xv, wv, lv, bv, cv, softcap, label_smoothing, z_loss, blocks.rows, blocks.dw_chunk,
      need_dx=x.perturbed, need_dw=w.perturbed)
  _, loss = _row_losses(lse, t, zs, wv.shape[0], label_smoothing, z_loss)
  out = (_weighted_sum(loss, cv), lse, t)
  return out, (xv, wv, bv, lv, lse, dx, dw, db)


def _fused_loss_bwd(softcap, label_smoothing, z_loss, blocks, kernel, res, cts):
  del label_smoothing, z_loss, kernel
  x, w, bias, labels, lse, dx, dw, db = res
  g, dlse, dt = cts
  def scaled(saved, like):
    if saved is None or isinstance(g, SymbolicZero):
      return jnp.zeros_like(like)
    return (g.astype(F32) * saved.astype(F32)).astype(like.dtype)

  dx, dw = scaled(dx, x), scaled(dw, w)
  db = None if bias is None else scaled(db, bias)
  extra = [c for c in (dlse, dt) if not isinstance(c, SymbolicZero)]
  if extra:
    # Somebody differentiates the row statistics too (e.g. the aux lse): add their VJP.
    z = lambda c: jnp.zeros(lse.shape, F32) if c is None or isinstance(c, SymbolicZero) else c
    ex, ew, eb = _stats_backward(x, w, labels, bias, lse, z(dlse), z(dt), z(None), softcap,
                                 blocks.vocab)
    dx, dw = dx + ex, dw + ew
    if bias is not None:
      db = db + eb
  return dx, dw, db, None, None


_fused_loss.defvjp(_fused_loss_fwd, _fused_loss_bwd, symbolic_zeros=True)


def _loss_reference(x, w, bias, labels, coef, *, softcap, label_smoothing, z_loss, blocks):
  del blocks
  # Ignored rows are selected out of x first: autodiff of the materialised logits would
  # otherwise multiply their (possibly NaN) logits by a zero cotangent.
  x = jnp.where((coef != 0)[:, None], x, jnp.zeros((), x.dtype))
  lse, t, zs = _lce_reference.stats(x, w, labels, bias, softcap=softcap, block_size=None)
  _, loss = _row_losses(lse, t, zs, w.shape[0], label_smoothing, z_loss)
  return _weighted_sum(loss, coef), lse, t


def _loss_fused(kernel, x, w, bias, labels, coef, *, softcap, label_smoothing, z_loss, blocks):
  if current_mesh() is not None:
    # Rows may be sharded: use the vocabulary-blocked statistics path (its backward names the
    # dW sharding), four matmul passes instead of three.
    lse, t, zs = _fused_stats(x, w, labels, bias, softcap, _kernel_block(kernel, blocks),
                              kernel)
    _, loss = _row_losses(lse, t, zs, w.shape[0], label_smoothing, z_loss)
    return _weighted_sum(loss, coef), lse, t
  return _fused_loss(x, w, bias, labels, coef, softcap, label_smoothing, z_loss, blocks, kernel)


def _loss_xla(*args, **kwargs):
  return _loss_fused("xla", *args, **kwargs)


def _loss_pallas(x, w, bias, labels, coef, *, blocks, **kwargs):
  _check_pallas(x, w, blocks.tile)
  return _loss_fused("pallas", x, w, bias, labels, coef, blocks=blocks, **kwargs)


_LOSS = Op("linear_cross_entropy", {"reference": _loss_reference, "xla": _loss_xla,
                                    "pallas": _loss_pallas})


# --------------------------------------------------------------------------- public API


def linear_logit_stats(x: Float[Array, "*batch d"], w: Float[Array, "V d"],
                       labels: Int[Array, "*batch"], *, bias: Float[Array, "V"] | None = None,
                       softcap: float | None = None,
                       implementation: Implementation | Sequence[Implementation] | None = None,
                       block_size: int | None = None
                       ) -> tuple[Float[Array, "*batch"], Float[Array, "*batch"],
                                  Float[Array, "*batch"]]:
  r"""Row statistics of the logits ``z = x w^T + b`` without materialising them.

  .. math::

    \mathrm{lse}_n = \log \sum_v e^{z_{nv}}, \qquad t_n = z_{n, y_n}, \qquad
    s_n = \sum_v z_{nv},

  with ``z_nv = c tanh((x_n . w_v + b_v) / c)`` when ``softcap=c``. Differentiable in ``x``, ``w``
  and ``bias`` (a ``custom_vjp`` that recomputes logit blocks in the backward for the fused
  implementations). All statistics are f32; dots accumulate in f32 for bf16 inputs.

  ``-inf`` logits (a ``-inf`` bias masking words out) are exact in every implementation, in any
  vocabulary block; a row whose every logit is ``-inf`` has ``lse = -inf``. With ``"xla"`` and
  ``"pallas"``, rows whose cotangents are all zero contribute exactly nothing to the gradients,
  even if they hold NaN (``"reference"`` is plain autodiff).

  Args:
    x: features ``[*batch, d]`` (bf16, f16 or f32), ``d >= 1``.
    w: classifier / tied embedding ``[V, d]``, same dtype as ``x``.
    labels: integer ``[*batch]`` in ``[0, V)`` (checked when concrete; inside ``jit`` an
      out-of-range label gives ``t = 0``: use :func:`linear_cross_entropy` for a NaN instead).
    bias: optional ``[V]`` float bias.
    softcap: optional cap ``c > 0`` (Gemma-2 style soft-capping).
    implementation: ``None`` (platform default), ``"reference"``, ``"xla"``, ``"pallas"`` or a
      sequence to try in order.
    block_size: vocabulary block (default from ``_block_sizes``: 2048 for ``"xla"``; the
      Pallas tile on GPU, a power of two).

  Returns:
    ``(lse, target_logit, logit_sum)``, each f32 of shape ``[*batch]``.

  Example::

    >>> x = jnp.ones((4, 8)); w = jnp.ones((10, 8)); y = jnp.array([0, 1, 2, 3])
    >>> lse, t, s = linear_logit_stats(x, w, y)
    >>> float(lse[0] - t[0])  # log 10: all logits equal
    2.302585...

  References:
    Wijmans et al., *Cut Your Losses in Large-Vocabulary Language Models*, 2024,
    https://arxiv.org/abs/2411.09009.
  """
  fn = "linear_logit_stats"
  _validate(fn, x, w, labels, bias, softcap, block_size)
  batch = tuple(x.shape[:-1])
  x2 = jnp.reshape(x, (-1, x.shape[-1]))
  _, _, safe = _label_masks(jnp.reshape(jnp.asarray(labels), (-1,)), w.shape[0], None)
  softcap = None if softcap is None else float(softcap)
  block_size = None if block_size is None else int(block_size)
  lse, t, s = _STATS(x2, w, safe, bias, softcap=softcap, block_size=block_size,
                     implementation=implementation)
  return tuple(jnp.reshape(a, batch) for a in (lse, t, s))


def _cross_entropy(fn, x, w, labels, bias, ignore_index, softcap, label_smoothing, z_loss,
                   reduction, implementation, block_size) -> CrossEntropyOutput:
  V.check_choice(fn, "reduction", reduction, _REDUCTIONS)
  V.check_scalar(fn, "label_smoothing", label_smoothing, low=0.0, high=1.0,
                  high_inclusive=False, static=True)
  V.check_scalar(fn, "z_loss", z_loss, low=0.0, static=True)
  V.check_scalar(fn, "ignore_index", ignore_index, integer=True, static=True)
  _validate(fn, x, w, labels, bias, softcap, block_size, ignore_index=ignore_index)
  batch = tuple(x.shape[:-1])
  v = w.shape[0]
  x2 = jnp.reshape(x, (-1, x.shape[-1]))
  valid, in_range, safe = _label_masks(jnp.reshape(jnp.asarray(labels), (-1,)), v,
                                       int(ignore_index))
  n = x2.shape[0]
  # coef_n: the weight of row n in the reduced loss. 0 on ignored rows (selected out: no
  # gradient even through NaN), NaN on rows with an out-of-range label (NaN loss and grads).
  if reduction == "mean":
    base = 1.0 / jnp.maximum(jnp.sum(valid.astype(F32)), 1.0)
  else:
    base = jnp.ones((), F32)
  coef = jnp.where(valid, jnp.where(in_range, base, jnp.nan), 0.0).astype(F32)
  blocks = _block_sizes(n, v, x2.shape[1], x2.dtype, backend())
  if block_size is not None:
    blocks = blocks._replace(vocab=int(block_size), tile=int(block_size))
  kw = dict(softcap=None if softcap is None else float(softcap),
            label_smoothing=float(label_smoothing), z_loss=float(z_loss))
  if reduction == "none":
    # Per-row cotangents: dW cannot be pre-scaled, so differentiate the statistics primitive
    # (on x with the ignored rows selected out, so that nothing of theirs reaches dW).
    x2 = jnp.where(valid[:, None], x2, jnp.zeros((), x2.dtype))
    lse, t, zs = _STATS(x2, w, safe, bias, softcap=kw["softcap"], block_size=block_size,
                        implementation=implementation)
    _, loss = _row_losses(lse, t, zs, v, kw["label_smoothing"], kw["z_loss"])
    rows = jnp.where(valid, jnp.where(in_range, 1.0, jnp.nan), 0.0)
    out = jnp.reshape(jnp.where(valid, rows * loss, 0.0), batch)
  else:
    if n == 0:
      out, lse, t = jnp.zeros((), F32), jnp.zeros((0,), F32), jnp.zeros((0,), F32)
    else:
      out, lse, t = _LOSS(x2, w, bias, safe, coef, blocks=blocks, implementation=implementation,
                             **kw)
  nll = jnp.where(valid, jnp.where(in_range, lse - t, jnp.nan), 0.0)
  lse = jnp.where(valid, lse, 0.0)
  return CrossEntropyOutput(out, jnp.reshape(lse, batch), jnp.reshape(nll, batch),
                            jnp.reshape(valid, batch))


_CE_ARGS_DOC = r"""
  Args:
    x: features ``[*batch, d]`` (bf16, f16 or f32); statistics are f32.
    w: classifier / tied embedding ``[V, d]``, same dtype as ``x``.
    labels: integer ``[*batch]`` in ``[0, V)`` or equal to ``ignore_index``. Concrete
      out-of-range labels raise ``ValueError``; traced ones (under ``jit``) give a NaN loss for
      their row (so a ``mean``/``sum`` is NaN) and NaN gradients, in every implementation.
      Labels are compared in their own dtype (int64 / uint32 ids are never wrapped to int32).
    bias: optional ``[V]`` bias; ``-inf`` entries mask words out (exact in every
      implementation).
    ignore_index: static Python int; rows with this label have loss 0, contribute exactly 0 to
      every gradient (even when their ``x`` holds NaN) and are left out of the ``mean``.
    softcap: optional static logit soft-cap ``c > 0``: ``z <- c tanh(z / c)``.
    label_smoothing: static ``alpha`` in ``[0, 1)``.
    z_loss: static ``lambda >= 0``, weight of ``lse^2``.
    reduction: ``"mean"`` (over valid rows; 0 when there are none), ``"sum"`` or ``"none"``.
    implementation: ``None`` (platform default), ``"reference"``, ``"xla"``, ``"pallas"`` or a
      sequence to try in order.
    block_size: vocabulary block of the streaming statistics sweep (value-only and
      ``reduction="none"`` paths); see :func:`linear_logit_stats`.
"""


def linear_cross_entropy(x: Float[Array, "*batch d"], w: Float[Array, "V d"],
                         labels: Int[Array, "*batch"], *,
                         bias: Float[Array, "V"] | None = None,
                         ignore_index: int = -100, softcap: float | None = None,
                         label_smoothing: float = 0.0, z_loss: float = 0.0,
                         reduction: Literal["mean", "sum", "none"] = "mean",
                         implementation: Implementation | Sequence[Implementation] | None = None,
                         block_size: int | None = None) -> Array:
  r"""Cross-entropy of the LM head ``softmax(x w^T + b)`` without materialising the logits.

  .. math::

    \ell_n = (1 - \alpha)(\mathrm{lse}_n - t_n) + \alpha(\mathrm{lse}_n - s_n / V)
             + \lambda\,\mathrm{lse}_n^2

  for valid rows (``labels != ignore_index``) and 0 for ignored ones; ``alpha`` is
  ``label_smoothing`` (PyTorch convention: targets ``(1-alpha) onehot + alpha / V``) and
  ``lambda`` is ``z_loss`` (PaLM). ``mean`` divides by the number of valid rows (0 when there
  are none), ``sum`` sums, ``none`` returns ``[*batch]``.

  A valid row whose every logit is ``-inf`` has an undefined distribution: its loss is NaN (as
  for the materialised reference). For the log-sum-exp and NLL per row use
  :func:`linear_cross_entropy_with_aux`.

  Cost (``"xla"``/``"pallas"``, ``mean``/``sum``): value only, one streaming matmul pass over
  vocabulary blocks; under differentiation, one sweep over row blocks that computes the loss,
  ``dx`` and ``dW`` with three matmul passes (like autodiff of materialised logits) while only
  one ``[rows, V]`` logit block is alive. ``reduction="none"`` and sharded (mesh) inputs
  differentiate the statistics primitive instead (four matmul passes).
""" + _CE_ARGS_DOC + r"""
  Returns:
    The loss: f32 scalar, or ``[*batch]`` for ``reduction="none"``.

  Example::

    >>> x = jax.random.normal(jax.random.key(0), (2, 16, 64), jnp.bfloat16)
    >>> w = jax.random.normal(jax.random.key(1), (1000, 64), jnp.bfloat16) * 0.1
    >>> y = jnp.zeros((2, 16), jnp.int32).at[:, -1].set(-100)
    >>> loss, grads = jax.value_and_grad(linear_cross_entropy, argnums=(0, 1))(x, w, y)

  References:
    Wijmans et al., *Cut Your Losses in Large-Vocabulary Language Models*, 2024,
    https://arxiv.org/abs/2411.09009; *Chronicals: A High-Performance Framework for LLM
    Fine-Tuning*, 2026; Liger Kernel's row-chunked fused linear cross-entropy (Hsu et al.,
    2024, https://arxiv.org/abs/2410.10989).
  """
  return _cross_entropy("linear_cross_entropy", x, w, labels, bias, ignore_index, softcap,
                        label_smoothing, z_loss, reduction, implementation, block_size).loss


def linear_cross_entropy_with_aux(
    x: Float[Array, "*batch d"], w: Float[Array, "V d"], labels: Int[Array, "*batch"], *,
    bias: Float[Array, "V"] | None = None, ignore_index: int = -100,
    softcap: float | None = None, label_smoothing: float = 0.0, z_loss: float = 0.0,
    reduction: Literal["mean", "sum", "none"] = "mean",
    implementation: Implementation | Sequence[Implementation] | None = None,
    block_size: int | None = None) -> CrossEntropyOutput:
  r""":func:`linear_cross_entropy` plus per-row statistics, as a :class:`CrossEntropyOutput`.

  Every field is differentiable (``lse`` and ``nll`` through the statistics' VJP, which costs
  a recomputing backward sweep only when their cotangents are non-zero).
""" + _CE_ARGS_DOC + r"""
  Returns:
    ``CrossEntropyOutput(loss, lse, nll, valid)``; ``lse``, ``nll`` and ``valid`` have shape
    ``[*batch]``.

  Example::

    >>> x = jnp.ones((4, 8)); w = jnp.ones((10, 8)); y = jnp.array([0, 1, 2, -100])
    >>> out = linear_cross_entropy_with_aux(x, w, y)
    >>> out.valid.tolist()
    [True, True, True, False]
  """
  return _cross_entropy("linear_cross_entropy_with_aux", x, w, labels, bias, ignore_index,
                        softcap, label_smoothing, z_loss, reduction, implementation, block_size)


__all__ = ["BlockSizes", "CrossEntropyOutput", "Implementation", "linear_cross_entropy",
           "linear_cross_entropy_with_aux", "linear_logit_stats"]
