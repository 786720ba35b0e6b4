"""Codebook Features: sparse, discrete hidden states by snapping to the top-k codes.

Paper: Alex Tamkin, Mohammad Taufeeque, Noah D. Goodman, "Codebook Features: Sparse and Discrete
Interpretability for Neural Networks", ICML 2024 (https://arxiv.org/abs/2310.17230); reference
code ``taufeeque9/codebook-features``.

Idea. A codebook layer after an attention head or MLP block replaces the hidden state ``x`` by
the combination of its ``k`` most similar codes,

  s_j = x . c_j / ||c_j||   (inner product; cosine also divides by ||x||; or -||x - c_j||^2),
  J = top-k_j s_j,          out = (1/k) sum_{j in J} c_j   (the reference code's mean; "sum"),

so every hidden state is a small set of discrete, interpretable codes. Gradients (the reference
``custom autograd``): the input receives the upstream gradient unchanged (straight-through); the
selected codes receive the upstream gradient (``/k`` for the mean) and, with ``grad_mode =
"aeloss"``, the gradient of the reconstruction ``mean_n ||out_n - x_n||^2``; ``"vqvae"`` also adds
``2 beta (x - out)`` to the input gradient. Interventions steer the model: disabled codes are
never selected; forced ids replace the selection.

Implemented here: :func:`codebook_snap` (a ``jax.custom_vjp`` over the selected ids; returns
:class:`~bottleneck_jax.core.BottleneckOutput`), :func:`group_codebook_snap` (one codebook per
head, ``vmap``), and the ``flax.nnx`` modules :class:`CodebookLayer` and
:class:`GroupCodebookLayer`.

Departures: no k-means initialisation or dead-code replacement inside the layer (compose with
:func:`~bottleneck_jax.quantize.kmeans` / :func:`~bottleneck_jax.quantize.replace_dead_codes`);
the top-k search materialises the ``[N, K]`` scores (``lax.top_k``).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax
from jaxtyping import Array, Bool, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.types import BottleneckOutput
from bottleneck_jax.kernels.sharding import segment_sum, take

METRICS = ("inner", "cosine", "l2")
REDUCES = ("mean", "sum")
GRAD_MODES = ("aeloss", "base", "vqvae")


def _combine(codebook, ids, reduce):
  codes = take(codebook, jnp.maximum(ids, 0))                 # [N, k, D]
  codes = jnp.where((ids >= 0)[..., None], codes, 0.0)
  out = jnp.sum(codes, axis=-2)
  return out / ids.shape[-1] if reduce == "mean" else out


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _snap(x, codebook, ids, reduce, grad_mode, beta):
  return _combine(codebook, ids, reduce)


def _snap_fwd(x, codebook, ids, reduce, grad_mode, beta):
  out = _combine(codebook, ids, reduce)
  return out, (x, codebook, ids, out)


def _snap_bwd(reduce, grad_mode, beta, res, g):
  x, codebook, ids, out = res
  k = ids.shape[-1]
  scale = 1.0 / k if reduce == "mean" else 1.0
  per_code = g
  if grad_mode == "aeloss":
    n = math.prod(x.shape[:-1])
    per_code = per_code + 2.0 * (out - x) / n
  upd = jnp.broadcast_to((per_code * scale)[..., None, :], (*ids.shape, x.shape[-1]))
  flat_ids = jnp.where(ids >= 0, ids, codebook.shape[0]).reshape(-1)
  g_cb = segment_sum(upd.reshape(-1, x.shape[-1]), flat_ids,
                     codebook.shape[0]).astype(codebook.dtype)
  g_x = g
  if grad_mode == "vqvae":
    g_x = g_x + 2.0 * beta * (x - out)
  return g_x.astype(x.dtype), g_cb, None


_snap.defvjp(_snap_fwd, _snap_bwd)


def _scores(x, codebook, metric):
  if metric == "l2":
    return -(jnp.sum(x * x, -1, keepdims=True) - 2.0 * x @ codebook.T
             + jnp.sum(codebook * codebook, -1)[None, :])
  norms = jnp.maximum(jnp.linalg.norm(codebook, axis=-1), 1e-6)
  s = (x @ codebook.T) / norms[None, :]
  if metric == "cosine":
    s = s / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)
  return s


def codebook_snap(x: Float[Array, "*batch d"], codebook: Float[Array, "k d"], *, k: int = 1,
                  metric: str = "inner", reduce: str = "mean", grad_mode: str = "aeloss",
                  beta: float = 0.25, disabled: Bool[Array, "num_codes"] | None = None,
                  forced_ids: Int[Array, "*batch topk"] | None = None) -> BottleneckOutput:
  """Snaps every vector of ``x`` to the mean (or sum) of its top-``k`` codes.

  .. math::
    J_n = \\operatorname{top\\text{-}k}_j \\frac{x_n\\cdot c_j}{\\|c_j\\|},\\qquad
    \\text{out}_n = \\frac{1}{k}\\sum_{j\\in J_n} c_j

  Backward (custom VJP): ``dL/dx = g`` (straight-through; ``"vqvae"`` adds
  ``2 beta (x - out)``); ``dL/dc_j = sum_{n: j in J_n} (g_n + [aeloss] 2 (out_n - x_n) / N) / k``
  (no ``1/k`` for ``reduce="sum"``); unselected codes get 0.

  Args:
    x: hidden states ``[*batch, d]``, floating, at least one vector.
    codebook: ``[K, d]``, dtype of ``x``.
    k: codes per vector, ``1 <= k <= K`` (static).
    metric: ``"inner"`` (the reference default), ``"cosine"`` or ``"l2"``.
    reduce: ``"mean"`` (reference code) or ``"sum"`` (paper text).
    grad_mode: ``"aeloss"`` (default), ``"base"`` or ``"vqvae"``.
    beta: commitment weight of ``"vqvae"``.
    disabled: optional bool ``[K]``: codes never selected (an intervention).
    forced_ids: optional int ``[*batch, k]``: ids used instead of the search (``-1`` adds nothing).

  Returns:
    :class:`~bottleneck_jax.core.BottleneckOutput`: ``z`` the snapped states (shape of ``x``),
    ``loss`` 0, ``bits = positions * log2 binom(K, k)`` per example, ``aux``: ``"ids"`` (int32
    ``[*batch, k]``, best first), ``"counts"`` (int32 ``[K]``, how often each code was used).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import codebook_snap
    >>> cb = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> out = codebook_snap(jnp.array([[0.9, 0.2], [0.1, -0.3]]), cb, k=1)
    >>> out.z.tolist(), out.aux["ids"][:, 0].tolist()
    ([[1.0, 0.0], [1.0, 0.0]], [0, 0])

  References:
    Tamkin, Taufeeque, Goodman, "Codebook Features: Sparse and Discrete Interpretability for
    Neural Networks", ICML 2024, https://arxiv.org/abs/2310.17230.
  """
  fn = "codebook_snap"
  V.check_rank(fn, "x", x, min_rank=1)
  V.check_floating(fn, "x", x)
  V.check_rank(fn, "codebook", codebook, 2)
  V.check_floating(fn, "codebook", codebook)
  if jnp.dtype(codebook.dtype) != jnp.dtype(x.dtype):
    raise TypeError(f"{fn}: codebook must have the dtype of x ({jnp.dtype(x.dtype).name}), got "
                    f"{V.describe(codebook)}")
  V.check_axis_size(fn, "codebook", codebook, -1, x.shape[-1], "x.shape[-1]")
  num = codebook.shape[0]
  if num < 1:
    raise ValueError(f"{fn}: codebook must have at least one code, got {V.describe(codebook)}")
  V.check_scalar(fn, "k", k, low=1, integer=True, static=True)
  if k > num:
    raise ValueError(f"{fn}: k must be <= K = {num} (codes), got {k}")
  V.check_choice(fn, "metric", metric, METRICS)
  V.check_choice(fn, "reduce", reduce, REDUCES)
  V.check_choice(fn, "grad_mode", grad_mode, GRAD_MODES)
  V.check_scalar(fn, "beta", beta, low=0.0, static=True)
  if math.prod(x.shape[:-1]) < 1:
    raise ValueError(f"{fn}: x must hold at least one vector, got {V.describe(x)}")
  if disabled is not None:
    V.check_array(fn, "disabled", disabled)
    if jnp.dtype(disabled.dtype) != jnp.bool_ or tuple(disabled.shape) != (num,):
      raise TypeError(f"{fn}: disabled must be a bool array of shape [{num}], got "
                      f"{V.describe(disabled)}")
  if forced_ids is not None:
    V.check_array(fn, "forced_ids", forced_ids)
    V.check_integer(fn, "forced_ids", forced_ids)
    if tuple(forced_ids.shape) != (*x.shape[:-1], k):
      raise ValueError(f"{fn}: forced_ids must have shape {[*x.shape[:-1], k]}, got "
                       f"{V.describe(forced_ids)}")
  x, codebook = jnp.asarray(x), jnp.asarray(codebook)
  batch = x.shape[:-1]
  flat = x.reshape(-1, x.shape[-1])
  if forced_ids is not None:
    ids = jnp.asarray(forced_ids).astype(jnp.int32).reshape(-1, k)
  else:
    s = _scores(jax.lax.stop_gradient(flat), jax.lax.stop_gradient(codebook), metric)
    if disabled is not None:
      s = jnp.where(jnp.asarray(disabled)[None, :], -jnp.inf, s)
    ids = lax.top_k(s, k)[1].astype(jnp.int32)
  out = _snap(flat, codebook, ids, reduce, grad_mode, float(beta))
  counts = segment_sum(jnp.ones(ids.size, jnp.int32), jnp.where(ids >= 0, ids, num).reshape(-1),
                       num)
  per_position = math.log2(math.comb(num, k))
  bits = (jnp.asarray(per_position, x.dtype) if x.ndim == 1 else
          jnp.full(x.shape[:1], per_position * math.prod(x.shape[1:-1]), x.dtype))
  return BottleneckOutput(z=out.reshape(x.shape), loss=jnp.zeros((), x.dtype), bits=bits,
                          aux={"ids": ids.reshape(*batch, k), "counts": counts})


def group_codebook_snap(x: Float[Array, "*batch g d"], codebooks: Float[Array, "g k d"], *,
                        k: int = 1, metric: str = "inner", reduce: str = "mean",
                        grad_mode: str = "aeloss", beta: float = 0.25) -> BottleneckOutput:
  """:func:`codebook_snap` with one codebook per group (attention head): ``x [..., G, d]``.

  Returns:
    :class:`~bottleneck_jax.core.BottleneckOutput` with ``z`` of the shape of ``x``,
    ``bits`` summed over groups, ``aux["ids"]`` ``[*batch, G, k]`` and ``aux["counts"]``
    ``[G, K]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import group_codebook_snap
    >>> cbs = jnp.stack([jnp.eye(2), -jnp.eye(2)])            # G = 2 heads, K = 2, d = 2
    >>> out = group_codebook_snap(jnp.array([[[1.0, 0.1], [1.0, 0.1]]]), cbs)
    >>> out.aux["ids"][..., 0].tolist()
    [[0, 1]]

  References:
    Tamkin, Taufeeque, Goodman, "Codebook Features", ICML 2024, https://arxiv.org/abs/2310.17230.
  """
  fn = "group_codebook_snap"
  V.check_rank(fn, "x", x, min_rank=2)
  V.check_floating(fn, "x", x)
  V.check_rank(fn, "codebooks", codebooks, 3)
  V.check_axis_size(fn, "codebooks", codebooks, 0, x.shape[-2], "x.shape[-2] (groups)")
  x = jnp.asarray(x)
  xg = jnp.moveaxis(x, -2, 0)
  snap = functools.partial(codebook_snap, k=k, metric=metric, reduce=reduce,
                           grad_mode=grad_mode, beta=beta)
  # validate once on the first group (clear errors, named after this function, before vmap)
  try:
    jax.eval_shape(lambda a, c: snap(a, c), xg[0], jnp.asarray(codebooks)[0])
  except (ValueError, TypeError) as e:
    raise type(e)(str(e).replace("codebook_snap:", f"{fn}:", 1)) from None
  outs = jax.vmap(lambda a, c: snap(a, c))(xg, jnp.asarray(codebooks))
  z = jnp.moveaxis(outs.z, 0, -2)
  bits = jnp.sum(outs.bits, axis=0)
  return BottleneckOutput(z=z, loss=jnp.zeros((), x.dtype), bits=bits,
                          aux={"ids": jnp.moveaxis(outs.aux["ids"], 0, -2),
                               "counts": outs.aux["counts"]})


class CodebookLayer(nnx.Module):
  """A codebook layer (:func:`codebook_snap`) with a learnable ``[K, d]`` codebook.

  Args:
    dim: ``d``.
    num_codes: ``K``.
    k, metric, reduce, grad_mode, beta: as :func:`codebook_snap`.
    rngs: codebook initialisation (normal, std ``d^{-1/2}``).

  ``__call__(x, *, disabled=None, forced_ids=None)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.quantize import CodebookLayer
    >>> CodebookLayer(4, 16, k=2, rngs=nnx.Rngs(0))(jnp.ones((3, 4))).aux["ids"].shape
    (3, 2)
  """

  def __init__(self, dim: int, num_codes: int, *, k: int = 1, metric: str = "inner",
               reduce: str = "mean", grad_mode: str = "aeloss", beta: float = 0.25,
               rngs: nnx.Rngs):
    fn = "CodebookLayer"
    V.check_scalar(fn, "dim", dim, low=1, integer=True)
    V.check_scalar(fn, "num_codes", num_codes, low=1, integer=True)
    V.check_scalar(fn, "k", k, low=1, integer=True)
    if k > num_codes:
      raise ValueError(f"{fn}: k must be <= num_codes = {num_codes}, got {k}")
    V.check_choice(fn, "metric", metric, METRICS)
    V.check_choice(fn, "reduce", reduce, REDUCES)
    V.check_choice(fn, "grad_mode", grad_mode, GRAD_MODES)
    self.codebook = nnx.Param(jax.random.normal(rngs.params(), (int(num_codes), int(dim)),
                                                jnp.float32) / math.sqrt(dim))
    self.k, self.metric, self.reduce = int(k), metric, reduce
    self.grad_mode, self.beta = grad_mode, float(beta)

  def __call__(self, x: Float[Array, "*batch d"], *, disabled=None, forced_ids=None
               ) -> BottleneckOutput:
    return codebook_snap(x, self.codebook[...], k=self.k, metric=self.metric,
                         reduce=self.reduce, grad_mode=self.grad_mode, beta=self.beta,
                         disabled=disabled, forced_ids=forced_ids)


class GroupCodebookLayer(nnx.Module):
  """One codebook per group / head (:func:`group_codebook_snap`); ``x [..., G, d]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.quantize import GroupCodebookLayer
    >>> GroupCodebookLayer(4, 8, 3, rngs=nnx.Rngs(0))(jnp.ones((2, 3, 4))).z.shape
    (2, 3, 4)
  """

  def __init__(self, dim: int, num_codes: int, num_groups: int, *, k: int = 1,
               metric: str = "inner", reduce: str = "mean", grad_mode: str = "aeloss",
               beta: float = 0.25, rngs: nnx.Rngs):
    fn = "GroupCodebookLayer"
    for name, val in (("dim", dim), ("num_codes", num_codes), ("num_groups", num_groups),
                      ("k", k)):
      V.check_scalar(fn, name, val, low=1, integer=True)
    self.codebooks = nnx.Param(jax.random.normal(
        rngs.params(), (int(num_groups), int(num_codes), int(dim)), jnp.float32)
        / math.sqrt(dim))
    self.k, self.metric, self.reduce = int(k), metric, reduce
    self.grad_mode, self.beta = grad_mode, float(beta)

  def __call__(self, x: Float[Array, "*batch g d"]) -> BottleneckOutput:
    return group_codebook_snap(x, self.codebooks[...], k=self.k, metric=self.metric,
                               reduce=self.reduce, grad_mode=self.grad_mode, beta=self.beta)


__all__ = ["CodebookLayer", "GroupCodebookLayer", "codebook_snap", "group_codebook_snap"]
