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
Its ``custom_vjp`` saves only ``x, w, labels, lse`` and recomputes each logit block in the
backward: with cotangents ``(g_lse, g_t, g_s)`` per row,

    dL/dz_nv = p_nv g_lse,n + 1[v = y_n] g_t,n + g_s,n,     p_nv = exp(z_nv - lse_n),

times ``1 - (z_nv / c)^2`` with soft-capping (``z`` the capped logit), and ``dx = G W``,
``dW = G^T x``, ``db = sum_n G``. The FLOPs become 8NdV instead of 6NdV (one extra GEMM).

:func:`linear_cross_entropy` composes losses from the statistics in plain ``jnp``:
``nll = lse - t``; label smoothing (PyTorch convention) ``(1 - a) nll + a (lse - s / V)``;
PaLM's z-loss ``+ lambda lse^2``; ``ignore_index`` rows give zero loss and zero gradient and are
left out of the ``mean`` denominator.

Implementations (``implementation=``, see :mod:`bottleneck_jax.kernels`):

* ``"reference"``: materialises the f32 ``[N, V]`` logits, plain ``jnp`` autodiff (the oracle);
* ``"xla"``: ``lax.fori_loop`` over vocabulary blocks plus a static tail block, online
  log-sum-exp, ``custom_vjp`` with blockwise recompute; ``dx`` accumulated in f32, ``dW`` written
  block by block with ``dynamic_update_slice``. Default on CPU, fallback everywhere;
* ``"pallas"``: a Pallas forward kernel (grid over row blocks x vocabulary splits, per-split
  partials merged by ``logsumexp`` in XLA; Triton on GPU, interpret mode on CPU) and the
  chunked-XLA backward (cuBLAS GEMMs; the spec's "v1" backward).

Departures from the paper / CCE:

* no gradient filtering by default (CCE skips backward tiles whose ``|p - onehot|`` is below
  ``eps``; that is approximate, see apple/ml-cross-entropy#14), and no vocabulary sorting; both
  only pay off in a fused backward kernel, which is not implemented (backward is chunked XLA);
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
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bottleneck_jax.core import validation as V
from bottleneck_jax.kernels import Op
from bottleneck_jax.ops._linear_cross_entropy import pallas as _lce_pallas
from bottleneck_jax.ops._linear_cross_entropy import reference as _lce_reference
from bottleneck_jax.ops._linear_cross_entropy import xla as _lce_xla

Array = jax.Array
F32 = jnp.float32
_REDUCTIONS = ("mean", "sum", "none")


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
    V.check_scalar(fn, "block_size", block_size, low=1, integer=True)
  if _is_concrete(labels):
    lab = np.asarray(labels)
    if ignore_index is not None:
      lab = lab[lab != ignore_index]
    if lab.size and (lab.min() < 0 or lab.max() >= v):
      bad = lab[(lab < 0) | (lab >= v)]
      extra = "" if ignore_index is None else f" or ignore_index={ignore_index}"
      raise ValueError(f"{fn}: labels must be in [0, {v}){extra}, got {int(bad[0])}")


# --------------------------------------------------------------------------- implementations


def _forward(kernel, x, w, labels, bias, softcap, block_size):
  if kernel == "pallas":
    return _lce_pallas.forward(x, w, labels, bias, softcap, block_size)
  return _lce_xla.forward(x, w, labels, bias, softcap, block_size or _lce_xla.DEFAULT_BLOCK_V)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _fused_stats(x, w, labels, bias, softcap, block_size, kernel):
  return _forward(kernel, x, w, labels, bias, softcap, block_size)


def _fused_stats_fwd(x, w, labels, bias, softcap, block_size, kernel):
  lse, t, zs = _forward(kernel, x, w, labels, bias, softcap, block_size)
  return (lse, t, zs), (x, w, labels, bias, lse)


def _fused_stats_bwd(softcap, block_size, kernel, res, cts):
  # v1: every fused implementation uses the chunked-XLA backward. For "pallas", block_size is
  # the kernel's (small, power-of-two) tile, not a good XLA block: use the XLA default.
  x, w, labels, bias, lse = res
  dlse, dt, dzs = cts
  vb = block_size if (kernel == "xla" and block_size is not None) else _lce_xla.DEFAULT_BLOCK_V
  dx, dw, db = _lce_xla.backward(x, w, labels, bias, lse, dlse, dt, dzs, softcap, vb)
  return dx, dw, None, db


_fused_stats.defvjp(_fused_stats_fwd, _fused_stats_bwd)


def _stats_xla(x, w, labels, bias, *, softcap, block_size):
  return _fused_stats(x, w, labels, bias, softcap, block_size, "xla")


def _stats_pallas(x, w, labels, bias, *, softcap, block_size):
  # Raise UnsupportedInput (so the dispatcher can fall back) before entering custom_vjp.
  _lce_pallas.check_supported(x.shape[0], w.shape[0], x.shape[1], block_size,
                              itemsize=jnp.dtype(x.dtype).itemsize)
  return _fused_stats(x, w, labels, bias, softcap, block_size, "pallas")


_STATS = Op("linear_logit_stats", {"reference": _lce_reference.stats, "xla": _stats_xla,
                                   "pallas": _stats_pallas})


# --------------------------------------------------------------------------- public API


def linear_logit_stats(x: Array, w: Array, labels: Array, *, bias: Array | None = None,
                       softcap: float | None = None, implementation: Any = None,
                       block_size: int | None = None) -> tuple[Array, Array, Array]:
  r"""Row statistics of the logits ``z = x w^T + b`` without materialising them.

  .. math::

    \mathrm{lse}_n = \log \sum_v e^{z_{nv}}, \qquad t_n = z_{n, y_n}, \qquad
    s_n = \sum_v z_{nv},

  with ``z_nv = c tanh((x_n . w_v + b_v) / c)`` when ``softcap=c``. Differentiable in ``x``, ``w``
  and ``bias`` (a ``custom_vjp`` that recomputes logit blocks in the backward for the fused
  implementations). All statistics are f32; dots accumulate in f32 for bf16 inputs.

  Args:
    x: features ``[*batch, d]`` (bf16, f16 or f32).
    w: classifier / tied embedding ``[V, d]``, same dtype as ``x``.
    labels: integer ``[*batch]`` in ``[0, V)`` (checked when concrete; inside ``jit`` an
      out-of-range label gives ``t = 0`` with the fused implementations).
    bias: optional ``[V]`` float bias.
    softcap: optional cap ``c > 0`` (Gemma-2 style soft-capping).
    implementation: ``None`` (platform default), ``"reference"``, ``"xla"``, ``"pallas"`` or a
      sequence to try in order.
    block_size: vocabulary block (default 2048 for ``"xla"``, 256 for ``"pallas"`` on GPU;
      must be a power of two for ``"pallas"``).

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
  labels2 = jnp.reshape(jnp.asarray(labels), (-1,))
  softcap = None if softcap is None else float(softcap)
  block_size = None if block_size is None else int(block_size)
  lse, t, s = _STATS(x2, w, labels2, bias, softcap=softcap, block_size=block_size,
                     implementation=implementation)
  return tuple(jnp.reshape(a, batch) for a in (lse, t, s))


def linear_cross_entropy(x: Array, w: Array, labels: Array, *, bias: Array | None = None,
                         ignore_index: int = -100, softcap: float | None = None,
                         label_smoothing: float = 0.0, z_loss: float = 0.0,
                         reduction: str = "mean", return_aux: bool = False,
                         implementation: Any = None, block_size: int | None = None):
  r"""Cross-entropy of the LM head ``softmax(x w^T + b)`` without materialising the logits.

  .. math::

    \ell_n = (1 - \alpha)(\mathrm{lse}_n - t_n) + \alpha(\mathrm{lse}_n - s_n / V)
             + \lambda\,\mathrm{lse}_n^2

  for valid rows (``labels != ignore_index``) and 0 for ignored ones; ``alpha`` is
  ``label_smoothing`` (PyTorch convention: targets ``(1-alpha) onehot + alpha / V``) and
  ``lambda`` is ``z_loss`` (PaLM). ``mean`` divides by the number of valid rows (0 when there
  are none), ``sum`` sums, ``none`` returns ``[*batch]``.

  Args:
    x: features ``[*batch, d]`` (bf16, f16 or f32); statistics are f32.
    w: classifier / tied embedding ``[V, d]``, same dtype as ``x``.
    labels: integer ``[*batch]`` in ``[0, V)`` or equal to ``ignore_index``.
    bias: optional ``[V]`` bias.
    ignore_index: label value whose rows are ignored.
    softcap: optional logit soft-cap ``c > 0``: ``z <- c tanh(z / c)``.
    label_smoothing: ``alpha`` in ``[0, 1)``.
    z_loss: ``lambda >= 0``, weight of ``lse^2``.
    reduction: ``"mean"`` (over valid rows), ``"sum"`` or ``"none"``.
    return_aux: also return ``dict(lse, nll, valid)`` (each ``[*batch]``).
    implementation: see :func:`linear_logit_stats`.
    block_size: vocabulary block size, see :func:`linear_logit_stats`.

  Returns:
    The loss (f32 scalar, or ``[*batch]`` for ``reduction="none"``), and the aux dict when
    ``return_aux``.

  Example::

    >>> x = jax.random.normal(jax.random.key(0), (2, 16, 64), jnp.bfloat16)
    >>> w = jax.random.normal(jax.random.key(1), (1000, 64), jnp.bfloat16) * 0.1
    >>> y = jnp.zeros((2, 16), jnp.int32).at[:, -1].set(-100)
    >>> loss, grads = jax.value_and_grad(linear_cross_entropy, argnums=(0, 1))(x, w, y)

  References:
    Wijmans et al., *Cut Your Losses in Large-Vocabulary Language Models*, 2024,
    https://arxiv.org/abs/2411.09009; *Chronicals: A High-Performance Framework for LLM
    Fine-Tuning*, 2026.
  """
  fn = "linear_cross_entropy"
  V.check_choice(fn, "reduction", reduction, _REDUCTIONS)
  V.check_scalar(fn, "label_smoothing", label_smoothing, low=0.0, high=1.0,
                  high_inclusive=False)
  V.check_scalar(fn, "z_loss", z_loss, low=0.0)
  V.check_scalar(fn, "ignore_index", ignore_index, integer=True)
  _validate(fn, x, w, labels, bias, softcap, block_size, ignore_index=ignore_index)
  labels = jnp.asarray(labels)
  valid = labels != ignore_index
  safe = jnp.where(valid, labels, 0)
  lse, t, s = linear_logit_stats(x, w, safe, bias=bias, softcap=softcap,
                                 implementation=implementation, block_size=block_size)
  nll = lse - t
  loss = nll
  if not (isinstance(label_smoothing, (int, float)) and label_smoothing == 0):
    loss = (1.0 - label_smoothing) * nll + label_smoothing * (lse - s / w.shape[0])
  if not (isinstance(z_loss, (int, float)) and z_loss == 0):
    loss = loss + z_loss * jnp.square(lse)
  loss = jnp.where(valid, loss, 0.0)
  if reduction == "sum":
    out = jnp.sum(loss)
  elif reduction == "mean":
    out = jnp.sum(loss) / jnp.maximum(jnp.sum(valid.astype(F32)), 1.0)
  else:
    out = loss
  if return_aux:
    return out, {"lse": lse, "nll": jnp.where(valid, nll, 0.0), "valid": valid}
  return out


__all__ = ["linear_cross_entropy", "linear_logit_stats"]
