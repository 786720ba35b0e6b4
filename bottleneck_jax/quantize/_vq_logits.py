"""VQ-Logits: an output layer with ``K << V`` code vectors and a token-to-code map.

Paper: Jintian Shao, Hongyi Huang, Jiayi Wu, YiMing Cheng, ZhiYu Wu, You Shan, MingKai Zheng,
"VQ-Logits: Compressing the Output Bottleneck of Large Language Models via Vector Quantized
Logits", 2025 (https://arxiv.org/abs/2505.10202).

Idea. The ``V x d`` output embedding of a language model is replaced by a codebook
``C in R^{K x d}`` and a map ``M: {0..V-1} -> {0..K-1}``. The model computes ``K`` code logits
``L_c = h C^T`` and scatters them to the vocabulary, ``L_v[i] = L_c[M(i)]``; tokens that share a
code share a logit. Output-layer parameters fall from ``V d`` to ``K d`` (plus ``V`` integers).

Implemented here (the scatter never needs to be materialised):

  log Z   = logsumexp_j (L_c[j] + log w_j),     w_j = sum_{i: M(i) = j} exp(b_i)   (w_j = n_j)
  CE(y)   = log Z - L_c[M(y)] - b_y

so the cross-entropy over ``V`` tokens is a ``K``-way log-sum-exp with per-code log weights: it
runs through the fused :func:`~bottleneck_jax.ops.linear_cross_entropy` (code logits streamed in
blocks, the log weights as its bias). Sampling is exact and two-stage: a code
``j ~ w_j exp(L_c[j] / T)`` (weights at temperature ``T``), then a token inside the code
``~ exp(b_i / T)`` (uniform without bias) by inverse CDF over the code's tokens. The map is
initialised by k-means of a reference output embedding (:func:`vq_logits_init_mapping`).

Implemented: :func:`vq_code_logits`, :func:`vq_logits` (the scattered logits, for reference and
decoding), :func:`vq_logits_cross_entropy`, :func:`vq_logits_sample`,
:func:`vq_logits_init_mapping`, and the ``flax.nnx`` head :class:`VQLogitsHead`.

Departures from the paper:
- The optional per-token bias ``b`` is our extension (off by default): without it tokens of one
  code cannot be ranked against each other.
- The paper's mapping-update schedule is not reproduced; the map is fixed after k-means
  initialisation (its initialisation details were not available to us either).
- The in-code sampler uses a float32 cumulative sum of ``exp(b / T)`` over the vocabulary.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.kernels.sharding import searchsorted, take
from bottleneck_jax.ops import linear_cross_entropy
from bottleneck_jax.quantize._kmeans import _check_key
from bottleneck_jax.quantize._kmeans_core import _kmeans
from bottleneck_jax.quantize._nearest_code import nearest_code

_EMPTY = -1e9   # log weight of a code that no token maps to (exp underflows to 0 in f32)


_NO_MAP = object()


def _check(fn, h, codebook, token_to_code=_NO_MAP, token_bias=None):
  V.check_rank(fn, "h", h, min_rank=1)
  V.check_floating(fn, "h", h)
  V.check_rank(fn, "codebook", codebook, 2)
  V.check_floating(fn, "codebook", codebook)
  if jnp.dtype(codebook.dtype) != jnp.dtype(h.dtype):
    raise TypeError(f"{fn}: codebook must have the dtype of h ({jnp.dtype(h.dtype).name}), got "
                    f"{V.describe(codebook)}")
  V.check_axis_size(fn, "codebook", codebook, -1, h.shape[-1], "h.shape[-1]")
  if codebook.shape[0] < 1:
    raise ValueError(f"{fn}: codebook must have at least one code (K >= 1), got "
                     f"{V.describe(codebook)}")
  if token_to_code is not _NO_MAP:
    V.check_rank(fn, "token_to_code", token_to_code, 1)
    V.check_integer(fn, "token_to_code", token_to_code)
    if token_to_code.shape[0] < 1:
      raise ValueError(f"{fn}: token_to_code must map at least one token (V >= 1), got "
                       f"{V.describe(token_to_code)}")
  if token_bias is not None:
    V.check_rank(fn, "token_bias", token_bias, 1)
    V.check_floating(fn, "token_bias", token_bias)
    V.check_axis_size(fn, "token_bias", token_bias, 0, token_to_code.shape[0],
                      "token_to_code.shape[0] (V)")


def _log_weights(token_to_code, k, token_bias, dtype, temperature=1.0):
  """``log sum_{i in code j} exp(b_i / T)`` per code (``_EMPTY`` for codes without tokens)."""
  m = jnp.asarray(token_to_code).astype(jnp.int32)
  if token_bias is None:
    counts = jax.ops.segment_sum(jnp.ones(m.shape, dtype), m, num_segments=k)
    return jnp.where(counts > 0, jnp.log(jnp.where(counts > 0, counts, 1.0)), _EMPTY)
  b = jnp.asarray(token_bias).astype(dtype) / temperature
  top = jax.lax.stop_gradient(jnp.max(b))
  s = jax.ops.segment_sum(jnp.exp(b - top), m, num_segments=k)
  return jnp.where(s > 0, jnp.log(jnp.where(s > 0, s, 1.0)) + top, _EMPTY)


def vq_code_logits(h: Float[Array, "*batch d"], codebook: Float[Array, "k d"]
                   ) -> Float[Array, "*batch k"]:
  """Code logits ``L_c = h C^T``.

  Args:
    h: hidden states ``[*batch, d]``, floating.
    codebook: ``[K, d]``, dtype of ``h``.

  Returns:
    ``[*batch, K]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import vq_code_logits
    >>> vq_code_logits(jnp.array([1.0, 2.0]), jnp.array([[1.0, 0.0], [0.0, 1.0]])).tolist()
    [1.0, 2.0]

  References:
    Shao et al., "VQ-Logits", 2025, https://arxiv.org/abs/2505.10202.
  """
  _check("vq_code_logits", h, codebook)
  return jnp.asarray(h) @ jnp.asarray(codebook).T


def vq_logits(h: Float[Array, "*batch d"], codebook: Float[Array, "k d"],
              token_to_code: Int[Array, "v"], *,
              token_bias: Float[Array, "v"] | None = None) -> Float[Array, "*batch v"]:
  """The scattered vocabulary logits ``L_v[i] = L_c[M(i)] + b_i`` (materialises ``[*batch, V]``;
  for decoding and as the reference of :func:`vq_logits_cross_entropy`).

  Args:
    h: ``[*batch, d]``, floating.
    codebook: ``[K, d]``, dtype of ``h``.
    token_to_code: int ``[V]`` in ``[0, K)``.
    token_bias: optional ``[V]`` per-token bias.

  Returns:
    ``[*batch, V]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import vq_logits
    >>> cb = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> vq_logits(jnp.array([1.0, 2.0]), cb, jnp.array([0, 1, 1, 0])).tolist()
    [1.0, 2.0, 2.0, 1.0]

  References:
    Shao et al., "VQ-Logits", 2025, https://arxiv.org/abs/2505.10202.
  """
  fn = "vq_logits"
  _check(fn, h, codebook, token_to_code, token_bias)
  lc = jnp.asarray(h) @ jnp.asarray(codebook).T
  out = jnp.take(lc, jnp.asarray(token_to_code).astype(jnp.int32), axis=-1)
  if token_bias is not None:
    out = out + jnp.asarray(token_bias).astype(out.dtype)
  return out


def vq_logits_cross_entropy(h: Float[Array, "*batch d"], codebook: Float[Array, "k d"],
                            token_to_code: Int[Array, "v"], targets: Int[Array, "*batch"], *,
                            token_bias: Float[Array, "v"] | None = None,
                            implementation: Any = None) -> Float[Array, "*batch"]:
  """Cross-entropy of ``softmax(vq_logits(h))`` at ``targets`` without the ``[*batch, V]`` logits.

  .. math::
    \\ell_n = \\operatorname{logsumexp}_j\\left(h_n\\cdot c_j + \\log w_j\\right)
      - h_n\\cdot c_{M(y_n)} - b_{y_n},\\qquad w_j = \\sum_{i: M(i)=j} e^{b_i}

  Computed by :func:`~bottleneck_jax.ops.linear_cross_entropy` over the ``K`` codes with the log
  weights as its bias (``O(N K d)``, never ``N x V``); differentiable in ``h``, the codebook and
  the bias.

  Args:
    h: ``[*batch, d]``, floating.
    codebook: ``[K, d]``, dtype of ``h``.
    token_to_code: int ``[V]`` in ``[0, K)``.
    targets: int ``[*batch]`` in ``[0, V)``.
    token_bias: optional ``[V]``.
    implementation: of the fused cross-entropy.

  Returns:
    Per-position losses ``[*batch]`` (float32).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import vq_logits_cross_entropy
    >>> cb = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> ce = vq_logits_cross_entropy(jnp.array([[0.0, 0.0]]), cb, jnp.array([0, 1, 1, 0]),
    ...                              jnp.array([2]))
    >>> round(float(ce[0]), 4)          # uniform over V = 4 tokens: log 4
    1.3863

  References:
    Shao et al., "VQ-Logits", 2025, https://arxiv.org/abs/2505.10202.
  """
  fn = "vq_logits_cross_entropy"
  _check(fn, h, codebook, token_to_code, token_bias)
  V.check_array(fn, "targets", targets)
  V.check_integer(fn, "targets", targets)
  if tuple(jnp.shape(targets)) != tuple(h.shape[:-1]):
    raise ValueError(f"{fn}: targets must have shape {list(h.shape[:-1])} (h.shape[:-1]), got "
                     f"{list(jnp.shape(targets))}")
  h, codebook = jnp.asarray(h), jnp.asarray(codebook)
  m = jnp.asarray(token_to_code).astype(jnp.int32)
  y = jnp.asarray(targets).astype(jnp.int32)
  k = codebook.shape[0]
  log_w = _log_weights(m, k, token_bias, jnp.float32).astype(h.dtype)
  code_y = take(m, y)
  base = linear_cross_entropy(h, codebook, code_y, bias=log_w, reduction="none",
                              implementation=implementation)
  b_y = 0.0 if token_bias is None else take(jnp.asarray(token_bias), y).astype(jnp.float32)
  return base + take(log_w, code_y).astype(jnp.float32) - b_y


def vq_logits_sample(key: Any, h: Float[Array, "*batch d"], codebook: Float[Array, "k d"],
                     token_to_code: Int[Array, "v"], *, temperature: float = 1.0,
                     token_bias: Float[Array, "v"] | None = None) -> Int[Array, "*batch"]:
  """Exact two-stage sampling from ``softmax(vq_logits(h) / T)`` without the ``V`` logits.

  Stage 1: ``j ~ softmax_j((L_c[j]) / T + log w_j(T))`` with
  ``w_j(T) = sum_{i in j} exp(b_i / T)``; stage 2: token ``i`` in code ``j`` with probability
  ``exp(b_i / T) / w_j(T)`` (inverse CDF; uniform without bias).

  Args:
    key: ``jax.random`` key.
    h: ``[*batch, d]``; codebook: ``[K, d]``; token_to_code: int ``[V]``; token_bias: optional.
    temperature: ``T > 0``.

  Returns:
    int32 tokens ``[*batch]``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.quantize import vq_logits_sample
    >>> cb = jnp.array([[50.0], [0.0]])                     # code 0 dominates
    >>> t = vq_logits_sample(jax.random.key(0), jnp.ones((1000, 1)), cb, jnp.array([1, 0, 0]))
    >>> sorted(set(t.tolist()))                               # tokens 1 and 2 map to code 0
    [1, 2]

  References:
    Shao et al., "VQ-Logits", 2025, https://arxiv.org/abs/2505.10202.
  """
  fn = "vq_logits_sample"
  _check_key(fn, key)
  _check(fn, h, codebook, token_to_code, token_bias)
  V.check_scalar(fn, "temperature", temperature, low=0.0, low_inclusive=False)
  h, codebook = jnp.asarray(h), jnp.asarray(codebook)
  m = jnp.asarray(token_to_code).astype(jnp.int32)
  k, vocab = codebook.shape[0], m.shape[0]
  t = jnp.asarray(temperature, jnp.float32)
  k1, k2 = jax.random.split(key)
  lc = (h @ codebook.T).astype(jnp.float32) / t
  log_w = _log_weights(m, k, token_bias, jnp.float32, t)
  code = jax.random.categorical(k1, lc + log_w, axis=-1).astype(jnp.int32)     # [*batch]
  order = jnp.argsort(m, stable=True)                                           # tokens by code
  if token_bias is None:
    mass = jnp.ones((vocab,), jnp.float32)
  else:
    b = jnp.asarray(token_bias).astype(jnp.float32)[order] / t
    mass = jnp.exp(b - jnp.max(b))
  cum = jnp.cumsum(mass)                                                        # [V]
  ends = jnp.searchsorted(m[order], jnp.arange(k), side="right")                # [K]
  starts = jnp.concatenate([jnp.zeros((1,), ends.dtype), ends[:-1]])
  lo = jnp.where(starts > 0, cum[jnp.maximum(starts - 1, 0)], 0.0)
  hi = cum[jnp.maximum(ends - 1, 0)]
  u = jax.random.uniform(k2, code.shape, jnp.float32)
  lo_c, hi_c = take(lo, code), take(hi, code)
  start_c, end_c = take(starts, code), take(ends, code)
  target = lo_c + u * (hi_c - lo_c)
  pos = searchsorted(cum, target, side="right")
  pos = jnp.clip(pos, start_c, jnp.maximum(end_c - 1, start_c))
  return take(order, pos).astype(jnp.int32)


class VQLogitsMapping(NamedTuple):
  """What :func:`vq_logits_init_mapping` returns.

  Attributes:
    codebook: ``[K, d]`` the cluster means of the output embedding.
    token_to_code: int32 ``[V]`` the cluster of every token.
  """

  codebook: Float[Array, "k d"]
  token_to_code: Int[Array, "v"]


def vq_logits_init_mapping(key: Any, w_out: Float[Array, "v d"], num_codes: int, *,
                           iters: int = 20) -> VQLogitsMapping:
  """Codebook and token-to-code map by k-means of a (pre-trained) output embedding.

  Args:
    key: ``jax.random`` key (initial means).
    w_out: output embedding ``[V, d]``, floating, ``V >= num_codes``.
    num_codes: ``K`` (static).
    iters: k-means rounds (static).

  Returns:
    :class:`VQLogitsMapping` ``(codebook [K, d], token_to_code int32 [V])``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.quantize import vq_logits_init_mapping
    >>> w = jnp.array([[0.0], [0.1], [5.0], [5.2]])
    >>> cb, m = vq_logits_init_mapping(jax.random.key(0), w, 2)
    >>> bool(m[0] == m[1]) and bool(m[2] == m[3]) and bool(m[0] != m[2])
    True

  References:
    Shao et al., "VQ-Logits", 2025, https://arxiv.org/abs/2505.10202.
  """
  fn = "vq_logits_init_mapping"
  _check_key(fn, key)
  V.check_rank(fn, "w_out", w_out, 2)
  V.check_floating(fn, "w_out", w_out)
  V.check_scalar(fn, "num_codes", num_codes, low=1, integer=True, static=True)
  V.check_scalar(fn, "iters", iters, low=0, integer=True, static=True)
  if w_out.shape[0] < num_codes:
    raise ValueError(f"{fn}: w_out must have at least num_codes = {num_codes} rows (V >= K), got "
                     f"{V.describe(w_out)}")
  w = jax.lax.stop_gradient(jnp.asarray(w_out))
  means, _ = _kmeans(key, w, int(num_codes), int(iters), "l2", None)
  return VQLogitsMapping(means, nearest_code(w, means).indices)


class VQLogitsMap(nnx.Variable):
  """The token-to-code map of :class:`VQLogitsHead` (integers; never trained)."""


class VQLogitsHead(nnx.Module):
  """A VQ-Logits output layer: ``K`` code vectors (``nnx.Param``) and a fixed token-to-code map.

  Args:
    dim: ``d``.
    num_codes: ``K``.
    vocab_size: ``V``.
    token_bias: add a learnable per-token bias (our extension; off as in the paper).
    rngs: codebook initialisation (normal, std ``d^{-1/2}``) and the initial map (random).

  ``__call__(h)`` returns the vocabulary logits (:func:`vq_logits`); :meth:`cross_entropy` the
  fused loss; :meth:`sample` exact samples; :meth:`set_mapping` installs a k-means mapping.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.quantize import VQLogitsHead
    >>> head = VQLogitsHead(8, 4, 50, rngs=nnx.Rngs(0))
    >>> head(jnp.ones((2, 8))).shape, head.cross_entropy(jnp.ones((2, 8)), jnp.array([3, 7])).shape
    ((2, 50), (2,))
  """

  def __init__(self, dim: int, num_codes: int, vocab_size: int, *, token_bias: bool = False,
               rngs: nnx.Rngs):
    fn = "VQLogitsHead"
    for name, val in (("dim", dim), ("num_codes", num_codes), ("vocab_size", vocab_size)):
      V.check_scalar(fn, name, val, low=1, integer=True)
    d, k, vocab = int(dim), int(num_codes), int(vocab_size)
    self.codebook = nnx.Param(jax.random.normal(rngs.params(), (k, d), jnp.float32)
                              / math.sqrt(d))
    self.token_to_code = VQLogitsMap(jax.random.randint(rngs.params(), (vocab,), 0, k,
                                                        jnp.int32))
    self.token_bias = nnx.Param(jnp.zeros((vocab,), jnp.float32)) if token_bias else None

  def _bias(self):
    return None if self.token_bias is None else self.token_bias[...]

  def set_mapping(self, mapping: VQLogitsMapping) -> None:
    """Installs a codebook and map (e.g. from :func:`vq_logits_init_mapping`)."""
    self.codebook[...] = jnp.asarray(mapping.codebook, jnp.float32)
    self.token_to_code[...] = jnp.asarray(mapping.token_to_code, jnp.int32)

  def __call__(self, h: Float[Array, "*batch d"]) -> Float[Array, "*batch v"]:
    return vq_logits(h, self.codebook[...], self.token_to_code[...], token_bias=self._bias())

  def cross_entropy(self, h: Float[Array, "*batch d"], targets: Int[Array, "*batch"]
                    ) -> Float[Array, "*batch"]:
    """:func:`vq_logits_cross_entropy` of this head."""
    return vq_logits_cross_entropy(h, self.codebook[...], self.token_to_code[...], targets,
                                   token_bias=self._bias())

  def sample(self, key: Any, h: Float[Array, "*batch d"], *, temperature: float = 1.0
             ) -> Int[Array, "*batch"]:
    """:func:`vq_logits_sample` of this head."""
    return vq_logits_sample(key, h, self.codebook[...], self.token_to_code[...],
                            temperature=temperature, token_bias=self._bias())


__all__ = ["VQLogitsHead", "VQLogitsMap", "VQLogitsMapping", "vq_code_logits", "vq_logits",
           "vq_logits_cross_entropy", "vq_logits_init_mapping", "vq_logits_sample"]
