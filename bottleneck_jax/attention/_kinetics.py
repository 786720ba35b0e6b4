r"""Kinetics: the eFLOPs cost model of test-time scaling and block top-k sparse decoding.

Paper: Sadhukhan, Chen, et al., *Kinetics: Rethinking Test-Time Scaling Laws* (2025),
https://arxiv.org/abs/2506.05333, code https://github.com/Infini-AI-Lab/Kinetics.

Idea. At test time (long chains of thought, Best-of-N) a small model's cost is dominated by reading
its KV cache, not by its parameters. Kinetics measures cost in *effective* FLOPs,

.. math::

  \mathrm{eFLOPs} = C_\mathrm{comp} + I \cdot C_\mathrm{mem},

with ``I`` the accelerator's arithmetic intensity (FLOPs per byte; 562.5 in the paper, a B200's
4.5 PFLOP/s over 8 TB/s) and ``C_mem`` the bytes of KV cache read. For ``N`` trials of ``L_gen``
tokens after an ``L_in``-token prompt (shared by the trials), generated token ``t = 1..L_gen``
attends ``L_in + t`` keys; with ``P`` parameters, ``n_q``/``n_kv`` heads and ``d = head_dim x
layers``:

.. math::

  C_\mathrm{comp} = N\,[2 P L_\mathrm{gen} + 4 n_q d \textstyle\sum_t (L_\mathrm{in} + t)],
  \qquad
  C_\mathrm{mem} = 2 b\, n_{kv} d\, [L_\mathrm{in} L_\mathrm{gen} + N \textstyle\sum_t t],

(``b`` bytes per cached element, K and V). Sparse attention with a budget of ``B`` keys per token
replaces ``L_in + t`` by ``min(B, L_in + t)`` (no prompt sharing: each trial selects its own
blocks), summed to ``kappa``; block top-k adds the block search over the block-mean key cache
(``2 n_q d`` FLOPs and ``b n_kv d`` bytes per block of ``block_size`` keys).

Block top-k decoding (the paper's deployable sparse attention, ``blocktopk_decoder.py`` of the
reference code): always keep the first ``sink`` tokens and the last ``local`` tokens; split the
rest into blocks of ``block_size`` keys, score each block by the query's logit against the block's
mean key, averaged over the query heads of each KV group (GQA), and keep the ``topk_blocks`` best
blocks per KV head. Attention then reads only those blocks through
:func:`bottleneck_jax.ops.block_sparse_decode`. Scoring by ``q . mean(k)`` *is* the mean of the
block's logits (the dot product is linear), so the deployable block-mean scorer and the "oracle"
mean-logit scorer of the paper's ``sparsity_utils.py`` select the same blocks; the block means can
be kept as a compressed cache updated in O(1) per token (:func:`update_block_means`).

What is implemented: :func:`kinetics_cost` (dense, token top-k, block top-k; exact sums by
default, ``reference_compat=True`` reproduces the reference repository's closed forms),
:func:`expected_cost`, :func:`pass_at_k`, :func:`pareto_frontier`, :func:`block_means`,
:func:`update_block_means`, :func:`block_scores`, :func:`select_blocks`,
:func:`block_topk_decode`, and the NNX :class:`BlockTopKAttention` (one decoding layer with its
KV cache and the block-mean cache; configured layers stay dense, layer 0 by default).

Departures from the paper / its code:

* Exact sums over ``t = 1..L_gen`` by default. The reference approximates them by integrals and its
  ``zero_overhead_sparse_cost`` (token top-k) adds ``+ max(0, B - L_in)^2 / 2`` where the block
  version subtracts it (the ``-`` is the correct first-order form); ``reference_compat=True``
  reproduces the reference numbers, sign included.
* Sink and local windows are rounded out to whole blocks (the kernel reads whole blocks), so a few
  more keys than ``sink + local`` may be read; the top-k then chooses among the blocks between them.
* Parameter-memory traffic is off by default as in the reference (``include_param_bytes``).
* The Qwen3 head counts of :func:`qwen3_config` are taken from the public model configurations
  (the reference code only lists parameter counts).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Bool, Float, Int

from bottleneck_jax import ops
from bottleneck_jax.core import validation as V
from bottleneck_jax.kernels import blocks as _blocks

NEG_INF = float("-inf")


# ------------------------------------------------------------------------------ cost model


@dataclasses.dataclass(frozen=True)
class ModelCostConfig:
  """What the cost model needs of a decoder.

  Attributes:
    n_params: parameter count ``P``.
    n_q_heads: query heads per layer.
    n_kv_heads: key/value heads per layer.
    head_dim: dimension of one head.
    n_layers: number of layers (folded into ``d = head_dim * n_layers``).
  """

  n_params: float
  n_q_heads: int
  n_kv_heads: int
  head_dim: int
  n_layers: int


_QWEN3 = {  # P as counted by the reference code; heads and layers from the Qwen3 configs
    "0.6B": (0.752e9, 16, 8, 28), "1.7B": (2.03e9, 16, 8, 28), "4B": (4.02e9, 32, 8, 36),
    "8B": (8.19e9, 32, 8, 36), "14B": (14.77e9, 40, 8, 40), "32B": (32.76e9, 64, 8, 64),
}


def qwen3_config(size: str) -> ModelCostConfig:
  """The :class:`ModelCostConfig` of a Qwen3 model used by the paper (head dim 128).

  Args:
    size: one of ``"0.6B"``, ``"1.7B"``, ``"4B"``, ``"8B"``, ``"14B"``, ``"32B"``.

  Example:
    >>> qwen3_config("8B").n_q_heads
    32
  """
  V.check_choice("qwen3_config", "size", size, tuple(_QWEN3))
  p, nq, nkv, nl = _QWEN3[size]
  return ModelCostConfig(p, nq, nkv, 128, nl)


class CostBreakdown(NamedTuple):
  """eFLOPs of a generation: ``compute`` (FLOPs), ``memory`` (``I`` x bytes read, in FLOPs) and
  ``total = compute + memory``."""

  compute: float
  memory: float
  total: float


def _check_cfg(fn, cfg):
  if not isinstance(cfg, ModelCostConfig):
    raise TypeError(f"{fn}: cfg must be a ModelCostConfig, got {type(cfg).__name__}")
  V.check_scalar(fn, "cfg.n_params", cfg.n_params, low=0)
  for name in ("n_q_heads", "n_kv_heads", "head_dim", "n_layers"):
    V.check_scalar(fn, f"cfg.{name}", getattr(cfg, name), low=1, integer=True)


def _sum_range(a: int, n: int) -> float:
  """``sum_{t=1..n} (a + t)``."""
  return a * n + n * (n + 1) / 2


def _sum_min(budget: float, l_in: int, l_gen: int) -> float:
  """``kappa = sum_{t=1..L_gen} min(B, L_in + t)`` in closed form."""
  if budget <= l_in:
    return budget * l_gen
  m = min(l_gen, int(math.floor(budget - l_in)))
  return m * l_in + m * (m + 1) / 2 + (l_gen - m) * budget


def kinetics_cost(
    cfg: ModelCostConfig,
    l_in: int,
    l_gen: int,
    n_trials: int = 1,
    *,
    attention: str = "dense",
    budget: float | None = None,
    local: int = 0,
    block_size: int = 16,
    topk_blocks: int = 0,
    intensity: float = 562.5,
    kv_bytes: float = 2.0,
    include_param_bytes: bool = False,
    search_cost: bool = True,
    reference_compat: bool = False,
) -> CostBreakdown:
  r"""The eFLOPs of generating ``n_trials`` x ``l_gen`` tokens after an ``l_in``-token prompt.

  See the module docstring for the sums. ``attention``:

  * ``"dense"``: every token reads its whole context (the prompt's KV read once per step for all
    trials);
  * ``"topk"``: token top-k with budget ``budget`` keys and no search cost (the paper's
    zero-overhead oracle);
  * ``"block_topk"``: budget ``local + block_size * topk_blocks`` (or ``budget``) plus the block
    search over block-mean keys (``search_cost=False`` drops it).

  Args:
    cfg: the model (:func:`qwen3_config`).
    l_in: prompt length (>= 0).
    l_gen: generated tokens per trial (>= 1).
    n_trials: parallel trials ``N`` (Best-of-N).
    attention: ``"dense"``, ``"topk"`` or ``"block_topk"``.
    budget: keys attended per token for the sparse variants.
    local, block_size, topk_blocks: the block top-k configuration.
    intensity: arithmetic intensity ``I`` in FLOPs per byte.
    kv_bytes: bytes per cached K or V element (2 for bf16).
    include_param_bytes: add ``I * 2P`` bytes of parameter reads per decoding step (bf16 weights,
      read once per step for all trials).
    search_cost: whether block top-k pays its block search.
    reference_compat: reproduce the reference repository's closed forms (integrals, and its
      ``+`` sign in the token top-k budget correction) instead of the exact sums.

  Returns:
    :class:`CostBreakdown` in FLOPs (divide by ``1e12`` for the paper's tables).

  Example:
    >>> c = kinetics_cost(qwen3_config("0.6B"), 128, 32768, reference_compat=True)
    >>> round(c.total / 1e12)
    35079
  """
  fn = "kinetics_cost"
  _check_cfg(fn, cfg)
  V.check_scalar(fn, "l_in", l_in, low=0, integer=True)
  V.check_scalar(fn, "l_gen", l_gen, low=1, integer=True)
  V.check_scalar(fn, "n_trials", n_trials, low=1, integer=True)
  V.check_choice(fn, "attention", attention, ("dense", "topk", "block_topk"))
  V.check_scalar(fn, "local", local, low=0, integer=True)
  V.check_scalar(fn, "block_size", block_size, low=1, integer=True)
  V.check_scalar(fn, "topk_blocks", topk_blocks, low=0, integer=True)
  V.check_scalar(fn, "intensity", intensity, low=0)
  V.check_scalar(fn, "kv_bytes", kv_bytes, low=0, low_inclusive=False)
  for name, flag in (("include_param_bytes", include_param_bytes), ("search_cost", search_cost),
                     ("reference_compat", reference_compat)):
    if not isinstance(flag, bool):
      raise TypeError(f"{fn}: {name} must be a bool, got {type(flag).__name__}")
  if attention == "block_topk" and budget is None:
    budget = local + block_size * topk_blocks
  if attention != "dense":
    if budget is None:
      raise ValueError(f"{fn}: budget must be given for attention={attention!r}")
    V.check_scalar(fn, "budget", budget, low=0, low_inclusive=False)
  p, n = float(cfg.n_params), n_trials
  nq, nkv, d = cfg.n_q_heads, cfg.n_kv_heads, cfg.head_dim * cfg.n_layers
  kv = 2.0 * kv_bytes                      # K and V
  if reference_compat:
    attn_keys = (2 * l_in + l_gen) * l_gen / 2          # sum_t (L_in + t) as an integral
    own_keys = l_gen * l_gen / 2                         # sum_t t
  else:
    attn_keys = _sum_range(l_in, l_gen)
    own_keys = _sum_range(0, l_gen)
  comp = n * 2 * p * l_gen
  if attention == "dense":
    comp += n * 4 * nq * d * attn_keys
    mem = kv * nkv * d * (l_in * l_gen + n * own_keys)
  else:
    if reference_compat:
      excess = max(0.0, budget - l_in) ** 2 / 2
      kappa = budget * l_gen + (excess if attention == "topk" else -excess)
    else:
      kappa = _sum_min(budget, l_in, l_gen)
    comp += n * 4 * nq * d * kappa
    mem = n * kv * nkv * d * kappa
    if attention == "block_topk" and search_cost:
      if reference_compat:
        comp += n * ((2 * l_in + l_gen) // block_size) * l_gen * nq * d
        mem += ((2 * l_in + n * l_gen) // block_size) * l_gen * nkv * d
      else:
        t = np.arange(1, l_gen + 1, dtype=np.int64)
        blocks = (l_in + t) // block_size                 # complete blocks of the context
        comp += n * 2 * nq * d * float(blocks.sum())
        shared = l_in // block_size                       # the prompt's block means, read once
        mem += kv_bytes * nkv * d * float(shared * l_gen + n * (blocks - shared).sum())
  if include_param_bytes:
    mem += 2.0 * p * l_gen
  mem = intensity * mem
  return CostBreakdown(float(comp), float(mem), float(comp + mem))


def expected_cost(
    cfg: ModelCostConfig,
    l_in: int,
    l_gen_samples: Int[Array, "n"] | Any,
    n_trials: int = 1,
    **kwargs,
) -> CostBreakdown:
  """The mean :func:`kinetics_cost` over sampled generation lengths (as the reference averages
  the cost per query over its traces).

  Args:
    cfg: the model.
    l_in: prompt length.
    l_gen_samples: 1-D integer generation lengths (>= 1).
    n_trials: trials per query.
    **kwargs: passed to :func:`kinetics_cost`.

  Example:
    >>> cfg = qwen3_config("0.6B")
    >>> e = expected_cost(cfg, 128, [100, 300])
    >>> a, b = kinetics_cost(cfg, 128, 100), kinetics_cost(cfg, 128, 300)
    >>> bool(abs(e.total - (a.total + b.total) / 2) < 1e-6 * e.total)
    True
  """
  fn = "expected_cost"
  samples = np.asarray(l_gen_samples)
  if samples.ndim != 1 or samples.size == 0 or not np.issubdtype(samples.dtype, np.integer):
    raise ValueError(f"{fn}: l_gen_samples must be a non-empty 1-D integer array, got "
                     f"{V.describe(samples)}")
  try:
    costs = [kinetics_cost(cfg, l_in, int(s), n_trials, **kwargs) for s in samples]
  except (TypeError, ValueError) as e:  # name this function in the message
    raise type(e)(str(e).replace("kinetics_cost:", f"{fn}:", 1)) from None
  return CostBreakdown(*(float(np.mean([c[i] for c in costs])) for i in range(3)))


def pass_at_k(n: Int[Array, "*batch"] | int, c: Int[Array, "*batch"] | int,
              k: int) -> np.ndarray:
  r"""Unbiased pass@k from ``c`` correct answers among ``n`` samples (Chen et al. 2021).

  .. math:: \mathrm{pass@}k = 1 - \binom{n - c}{k} \Big/ \binom{n}{k}
     = 1 - \prod_{i = n - c + 1}^{n} (1 - k / i).

  Args:
    n: samples per problem (int or integer array).
    c: correct samples, ``0 <= c <= n`` (broadcasts with ``n``).
    k: ``1 <= k <= min(n)``.

  Returns:
    float64 NumPy array of the broadcast shape.

  Example:
    >>> float(pass_at_k(4, 1, 2))   # 1 - C(3, 2) / C(4, 2)
    0.5
  """
  fn = "pass_at_k"
  n_a, c_a = np.asarray(n), np.asarray(c)
  for name, a in (("n", n_a), ("c", c_a)):
    if not np.issubdtype(a.dtype, np.integer):
      raise TypeError(f"{fn}: {name} must be an integer or integer array, got {V.describe(a)}")
  V.check_scalar(fn, "k", k, low=1, integer=True)
  try:
    n_a, c_a = np.broadcast_arrays(n_a, c_a)
  except ValueError:
    raise ValueError(f"{fn}: n and c must broadcast, got shapes {list(np.shape(n))} and "
                     f"{list(np.shape(c))}") from None
  if n_a.size and (np.any(c_a < 0) or np.any(c_a > n_a) or np.any(n_a < k)):
    raise ValueError(f"{fn}: need 0 <= c <= n and k <= n, got n={n_a.tolist()}, "
                     f"c={c_a.tolist()}, k={k}")
  out = np.empty(n_a.shape, np.float64)
  for pos in np.ndindex(n_a.shape):
    nn, cc = int(n_a[pos]), int(c_a[pos])
    if nn - cc < k:
      out[pos] = 1.0
    else:
      out[pos] = 1.0 - float(np.prod(1.0 - k / np.arange(nn - cc + 1, nn + 1)))
  return out


def pareto_frontier(cost: Float[Array, "n"] | Any,
                    accuracy: Float[Array, "n"] | Any) -> tuple[np.ndarray, np.ndarray]:
  """The cost-accuracy Pareto frontier: points no other point beats on both axes.

  A point is dominated when another has lower-or-equal cost and higher-or-equal accuracy, one of
  them strictly.

  Args:
    cost: 1-D costs.
    accuracy: 1-D accuracies, same length.

  Returns:
    ``(idx, mask)``: frontier indices sorted by cost, and the boolean mask over the points.

  Example:
    >>> idx, mask = pareto_frontier([1.0, 2.0, 3.0], [0.5, 0.4, 0.9])
    >>> idx.tolist()
    [0, 2]
  """
  fn = "pareto_frontier"
  for name, x in (("cost", cost), ("accuracy", accuracy)):
    if np.iscomplexobj(x):
      raise TypeError(f"{fn}: {name} must be real, got {V.describe(x)}")
  c, a = np.asarray(cost, np.float64), np.asarray(accuracy, np.float64)
  if c.ndim != 1 or c.shape != a.shape or c.size == 0:
    raise ValueError(f"{fn}: cost and accuracy must be non-empty 1-D arrays of one length, got "
                     f"shapes {list(np.shape(cost))} and {list(np.shape(accuracy))}")
  le, ge = c[None, :] <= c[:, None], a[None, :] >= a[:, None]
  strict = (c[None, :] < c[:, None]) | (a[None, :] > a[:, None])
  mask = ~np.any(le & ge & strict, axis=1)
  idx = np.flatnonzero(mask)
  return idx[np.argsort(c[idx], kind="stable")], mask


# ---------------------------------------------------------------------- block top-k decode


def _check_cache(fn, q, k_cache, v_cache, lengths):
  V.check_rank(fn, "q", q, 3)
  V.check_floating(fn, "q", q)
  V.check_rank(fn, "k_cache", k_cache, 4)
  V.check_floating(fn, "k_cache", k_cache)
  V.check_floating(fn, "v_cache", v_cache)
  V.check_same_shape(fn, "k_cache", k_cache, "v_cache", v_cache)
  for name, x in (("k_cache", k_cache), ("v_cache", v_cache)):
    if jnp.dtype(x.dtype) != jnp.dtype(q.dtype):
      raise TypeError(f"{fn}: {name} must have the dtype of q ({jnp.dtype(q.dtype).name}), got "
                      f"{jnp.dtype(x.dtype).name}")
  b, h, d = q.shape
  if k_cache.shape[0] != b or k_cache.shape[3] != d or k_cache.shape[2] < 1 or \
     h % k_cache.shape[2] or k_cache.shape[1] < 1:
    raise ValueError(f"{fn}: k_cache must have shape [{b}, T >= 1, Hkv dividing {h}, {d}] "
                     f"(batch and head_dim of q), got {list(k_cache.shape)}")
  V.check_array(fn, "lengths", lengths)
  V.check_integer(fn, "lengths", lengths)
  V.check_shape(fn, "lengths", lengths, (b,))


def block_means(
    k_cache: Float[Array, "batch cache_len kv_heads head_dim"],
    lengths: Int[Array, "batch"],
    *,
    block_size: int = 16,
) -> Float[Array, "batch n_blocks kv_heads head_dim"]:
  """The mean key of each block of ``block_size`` cache slots, over the slots below the length.

  Blocks with no written slot get 0. This is the compressed key cache the block scorer reads.

  Args:
    k_cache: ``[B, T, Hkv, D]``.
    lengths: integer ``[B]``, written slots per row.
    block_size: keys per block.

  Returns:
    f32 ``[B, ceil(T / block_size), Hkv, D]``.

  Example:
    >>> k = jnp.arange(4.0).reshape(1, 4, 1, 1)
    >>> block_means(k, jnp.array([3]), block_size=2)[0, :, 0, 0].tolist()
    [0.5, 2.0]
  """
  fn = "block_means"
  V.check_rank(fn, "k_cache", k_cache, 4)
  V.check_floating(fn, "k_cache", k_cache)
  V.check_array(fn, "lengths", lengths)
  V.check_integer(fn, "lengths", lengths)
  V.check_shape(fn, "lengths", lengths, (k_cache.shape[0],))
  V.check_scalar(fn, "block_size", block_size, low=1, integer=True)
  b, t, hkv, d = k_cache.shape
  nb = _blocks.cdiv(t, block_size)
  pos = jnp.arange(nb * block_size)
  w = (pos[None] < jnp.minimum(jnp.asarray(lengths), t)[:, None]).astype(jnp.float32)
  kp = jnp.pad(k_cache.astype(jnp.float32), ((0, 0), (0, nb * block_size - t), (0, 0), (0, 0)))
  kp = jnp.where(w[:, :, None, None] > 0, kp, 0.0).reshape(b, nb, block_size, hkv, d)
  cnt = w.reshape(b, nb, block_size).sum(-1)[:, :, None, None]
  return kp.sum(2) / jnp.maximum(cnt, 1.0)


def update_block_means(
    means: Float[Array, "batch n_blocks kv_heads head_dim"],
    k_new: Float[Array, "batch kv_heads head_dim"],
    positions: Int[Array, "batch"],
    *,
    block_size: int = 16,
) -> Float[Array, "batch n_blocks kv_heads head_dim"]:
  r"""Adds the key written at ``positions`` to the running block means, in O(1) per row.

  With ``c = positions mod block_size`` keys already in the block,
  ``mean <- mean + (k_new - mean) / (c + 1)`` (the block's first key replaces whatever the slot
  held).

  Args:
    means: ``[B, nb, Hkv, D]`` (f32), e.g. from :func:`block_means`.
    k_new: the new keys ``[B, Hkv, D]``.
    positions: integer ``[B]``, the cache slot each new key is written to (``< nb * block_size``).
    block_size: keys per block.

  Returns:
    the updated means (same shape and dtype as ``means``).

  Example:
    >>> m = jnp.zeros((1, 2, 1, 1))
    >>> m = update_block_means(m, jnp.ones((1, 1, 1)), jnp.array([2]), block_size=2)
    >>> m = update_block_means(m, 3 * jnp.ones((1, 1, 1)), jnp.array([3]), block_size=2)
    >>> m[0, :, 0, 0].tolist()
    [0.0, 2.0]
  """
  fn = "update_block_means"
  V.check_rank(fn, "means", means, 4)
  V.check_floating(fn, "means", means)
  V.check_rank(fn, "k_new", k_new, 3)
  V.check_floating(fn, "k_new", k_new)
  b, _, hkv, d = means.shape
  V.check_shape(fn, "k_new", k_new, (b, hkv, d))
  V.check_array(fn, "positions", positions)
  V.check_integer(fn, "positions", positions)
  V.check_shape(fn, "positions", positions, (b,))
  V.check_scalar(fn, "block_size", block_size, low=1, integer=True)
  positions = jnp.asarray(positions)
  blk = positions // block_size
  c = (positions % block_size).astype(means.dtype)[:, None, None]
  rows = jnp.arange(b)
  old = means[rows, blk]
  new = old + (k_new.astype(means.dtype) - old) / (c + 1)
  return means.at[rows, blk].set(new)


def block_scores(
    q: Float[Array, "batch heads head_dim"],
    means: Float[Array, "batch n_blocks kv_heads head_dim"],
    lengths: Int[Array, "batch"],
    *,
    block_size: int = 16,
    sink: int = 4,
    local: int = 128,
) -> Float[Array, "batch kv_heads n_blocks"]:
  r"""Block scores for top-k selection: ``mean_g q_g . mean_key(block) / sqrt(D)``.

  Averaged over the ``G`` query heads of each KV group; ``-inf`` for blocks that are not
  candidates: blocks holding a sink token (``< sink``), blocks reaching into the local window
  (``>= length - local``) and blocks past the length. Those first two kinds are always read by
  :func:`block_topk_decode` anyway.

  Args:
    q: the decoding queries ``[B, H, D]``.
    means: block-mean keys ``[B, nb, Hkv, D]`` (:func:`block_means`).
    lengths: integer ``[B]``.
    block_size, sink, local: the selection configuration.

  Returns:
    f32 ``[B, Hkv, nb]``.
  """
  fn = "block_scores"
  V.check_rank(fn, "q", q, 3)
  V.check_floating(fn, "q", q)
  V.check_rank(fn, "means", means, 4)
  V.check_floating(fn, "means", means)
  b, h, d = q.shape
  if means.shape[0] != b or means.shape[3] != d or means.shape[2] < 1 or h % means.shape[2]:
    raise ValueError(f"{fn}: means must have shape [{b}, nb, Hkv dividing {h}, {d}], got "
                     f"{list(means.shape)}")
  V.check_array(fn, "lengths", lengths)
  V.check_integer(fn, "lengths", lengths)
  V.check_shape(fn, "lengths", lengths, (b,))
  for name, val in (("block_size", block_size), ("sink", sink), ("local", local)):
    V.check_scalar(fn, name, val, low=1 if name == "block_size" else 0, integer=True)
  return _block_scores(q, means, jnp.asarray(lengths), block_size, sink, local)


def _block_scores(q, means, lengths, block_size, sink, local):
  b, h, d = q.shape
  nb, hkv = means.shape[1], means.shape[2]
  qg = q.astype(jnp.float32).reshape(b, hkv, h // hkv, d).mean(2)
  s = jnp.einsum("bhd,bnhd->bhn", qg, means.astype(jnp.float32),
                 precision=jax.lax.Precision.HIGHEST) / math.sqrt(d)
  start = jnp.arange(nb) * block_size
  first_local = jnp.maximum(lengths - local, 0)[:, None]
  ok = (start[None] >= sink) & (start[None] + block_size <= first_local)
  return jnp.where(ok[:, None, :], s, NEG_INF)


def select_blocks(
    scores: Float[Array, "*batch n_blocks"],
    k: int,
) -> tuple[Int[Array, "*batch k"], Bool[Array, "*batch k"]]:
  """The ``k`` best blocks by score: ``(block_idx, valid)``; ``-inf`` scores are never valid.

  Ties go to the lower block index (``jax.lax.top_k``). When ``k`` exceeds the number of blocks
  the extra entries are invalid.

  Args:
    scores: ``[..., nb]`` (``-inf`` = not a candidate).
    k: static number of blocks to keep (>= 1).

  Returns:
    ``(int32 [..., k], bool [..., k])``.

  Example:
    >>> idx, ok = select_blocks(jnp.array([0.1, -jnp.inf, 0.7, 0.3]), 2)
    >>> idx.tolist(), ok.tolist()
    ([2, 3], [True, True])
  """
  fn = "select_blocks"
  V.check_rank(fn, "scores", scores, min_rank=1)
  V.check_floating(fn, "scores", scores)
  if scores.shape[-1] < 1:
    raise ValueError(f"{fn}: scores must have at least one block, got shape "
                     f"{list(scores.shape)}")
  V.check_scalar(fn, "k", k, low=1, integer=True)
  return _select(jnp.asarray(scores), int(k))


def _select(scores, k):
  nb = scores.shape[-1]
  kk = min(k, nb)
  val, idx = jax.lax.top_k(scores, kk)
  valid = val > NEG_INF
  idx = jnp.where(valid, idx, 0).astype(jnp.int32)
  if kk < k:
    pad = [(0, 0)] * (scores.ndim - 1) + [(0, k - kk)]
    idx, valid = jnp.pad(idx, pad), jnp.pad(valid, pad)
  return idx, valid


class BlockTopKOutput(NamedTuple):
  """What :func:`block_topk_decode` returns.

  Attributes:
    out: ``[B, H, D]`` attention output.
    lse: ``[B, H]`` f32 log-sum-exp over the attended keys.
    block_idx: ``[B, Hkv, n_sink + n_local + topk_blocks]`` int32, the blocks read.
    block_valid: the same shape, bool.
  """

  out: Float[Array, "batch heads head_dim"]
  lse: Float[Array, "batch heads"]
  block_idx: Int[Array, "batch kv_heads entries"]
  block_valid: Bool[Array, "batch kv_heads entries"]


def block_topk_decode(
    q: Float[Array, "batch heads head_dim"],
    k_cache: Float[Array, "batch cache_len kv_heads head_dim"],
    v_cache: Float[Array, "batch cache_len kv_heads head_dim"],
    lengths: Int[Array, "batch"],
    *,
    block_size: int = 16,
    topk_blocks: int = 64,
    sink: int = 4,
    local: int = 128,
    means: Float[Array, "batch n_blocks kv_heads head_dim"] | None = None,
    implementation: Any = None,
) -> BlockTopKOutput:
  """Block top-k sparse decode attention (Kinetics): sink + local + the best ``topk_blocks``.

  The table of each KV head is the sink blocks, the local-window blocks and the
  :func:`select_blocks` of :func:`block_scores`; attention reads only those blocks
  (:func:`bottleneck_jax.ops.block_sparse_decode`). With ``topk_blocks`` at least the number of
  blocks every written key is read and the result is dense attention over ``[0, length)``.

  Args:
    q: ``[B, H, D]`` queries of the new tokens.
    k_cache: ``[B, T, Hkv, D]``; ``v_cache`` the same shape.
    v_cache: the value cache.
    lengths: integer ``[B]``, written slots (the new token's key included).
    block_size, topk_blocks, sink, local: the selection (paper: 16, 64-256, 4, 128).
    means: optional block-mean keys ``[B, ceil(T / block_size), Hkv, D]`` (the compressed cache
      maintained by :func:`update_block_means`); default computed from ``k_cache``.
    implementation: of the decode kernel (see :func:`bottleneck_jax.ops.block_sparse_decode`).

  Returns:
    :class:`BlockTopKOutput`.

  Example:
    >>> q = jnp.ones((1, 2, 4)); kc = vc = jnp.ones((1, 64, 1, 4))
    >>> res = block_topk_decode(q, kc, vc, jnp.array([64]), topk_blocks=1, sink=4, local=16)
    >>> int(res.block_valid.sum())     # sink block, local block, one selected block
    3

  References:
    Sadhukhan et al., *Kinetics: Rethinking Test-Time Scaling Laws*, 2025,
    https://arxiv.org/abs/2506.05333.
  """
  fn = "block_topk_decode"
  _check_cache(fn, q, k_cache, v_cache, lengths)
  V.check_scalar(fn, "block_size", block_size, low=1, integer=True)
  V.check_scalar(fn, "topk_blocks", topk_blocks, low=1, integer=True)
  V.check_scalar(fn, "sink", sink, low=0, integer=True)
  V.check_scalar(fn, "local", local, low=0, integer=True)
  b, t, hkv, d = k_cache.shape
  nb = _blocks.cdiv(t, block_size)
  lengths = jnp.asarray(lengths).astype(jnp.int32)
  if means is None:
    means = block_means(k_cache, lengths, block_size=block_size)
  else:
    V.check_floating(fn, "means", means)
    V.check_shape(fn, "means", means, (b, nb, hkv, d))
  scores = _block_scores(q, means, lengths, block_size, sink, local)
  top_idx, top_ok = _select(scores, int(topk_blocks))
  n_sink = _blocks.cdiv(sink, block_size) if sink else 0
  n_local = _blocks.cdiv(local, block_size) + 1 if local else 0
  last = (lengths - 1) // block_size                                     # [B]
  parts_idx, parts_ok = [top_idx], [top_ok]
  if n_sink:
    s_idx = jnp.broadcast_to(jnp.arange(n_sink, dtype=jnp.int32), (b, hkv, n_sink))
    parts_idx.insert(0, s_idx)
    parts_ok.insert(0, s_idx * block_size < lengths[:, None, None])
  if n_local:
    first = jnp.maximum(lengths - local, 0) // block_size
    l_idx = first[:, None, None] + jnp.arange(n_local, dtype=jnp.int32)
    l_idx = jnp.broadcast_to(l_idx, (b, hkv, n_local))
    parts_idx.insert(-1, l_idx)
    parts_ok.insert(-1, (l_idx <= last[:, None, None]) & (lengths[:, None, None] > 0))
  idx = jnp.concatenate(parts_idx, axis=-1)
  ok = jnp.concatenate(parts_ok, axis=-1)
  idx = jnp.where(ok, idx, 0)
  res = ops.block_sparse_decode(q, k_cache, v_cache, idx, block_valid=ok, lengths=lengths,
                                block_size=block_size, implementation=implementation)
  return BlockTopKOutput(res.out, res.lse, idx, ok)


# ---------------------------------------------------------------------------- NNX module


class BlockTopKAttention(nnx.Module):
  """One decoding attention layer with a KV cache read by block top-k (Kinetics).

  Owns the q/k/v/o projections; the caches are explicit arguments and results (a pure decode
  step): each call writes the new token's key and value at ``lengths`` and attends with
  :func:`block_topk_decode`, or densely when ``layer_index`` is in ``dense_layers`` (the paper
  keeps layer 0 dense). The block-mean cache is updated in O(1) with
  :func:`update_block_means`.

  Args:
    d_model: model width.
    n_heads: query heads; ``n_kv_heads`` divides it.
    n_kv_heads: key/value heads.
    head_dim: per-head dimension.
    layer_index: this layer's index.
    dense_layers: layers that attend densely.
    block_size, topk_blocks, sink, local: the selection.
    rngs: ``nnx.Rngs`` for the projections.
  """

  def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, head_dim: int, *,
               layer_index: int = 1, dense_layers: tuple[int, ...] = (0,), block_size: int = 16,
               topk_blocks: int = 64, sink: int = 4, local: int = 128, rngs: nnx.Rngs):
    fn = "BlockTopKAttention"
    for name, val in (("d_model", d_model), ("n_heads", n_heads), ("n_kv_heads", n_kv_heads),
                      ("head_dim", head_dim)):
      V.check_scalar(fn, name, val, low=1, integer=True)
    if n_heads % n_kv_heads:
      raise ValueError(f"{fn}: n_kv_heads must divide n_heads ({n_heads}), got {n_kv_heads}")
    self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
    self.dense = layer_index in tuple(dense_layers)
    self.block_size, self.topk_blocks, self.sink, self.local = (block_size, topk_blocks, sink,
                                                                local)
    self.wq = nnx.Linear(d_model, n_heads * head_dim, use_bias=False, rngs=rngs)
    self.wk = nnx.Linear(d_model, n_kv_heads * head_dim, use_bias=False, rngs=rngs)
    self.wv = nnx.Linear(d_model, n_kv_heads * head_dim, use_bias=False, rngs=rngs)
    self.wo = nnx.Linear(n_heads * head_dim, d_model, use_bias=False, rngs=rngs)

  def __call__(self, x, k_cache, v_cache, means, lengths):
    """One decode step.

    Args:
      x: ``[B, d_model]`` hidden state of the new token.
      k_cache, v_cache: ``[B, T, Hkv, head_dim]``.
      means: ``[B, ceil(T / block_size), Hkv, head_dim]`` f32 block means.
      lengths: integer ``[B]``, tokens already cached (the new one goes to this slot).

    Returns:
      ``(y [B, d_model], k_cache, v_cache, means, lengths + 1)``.
    """
    b = x.shape[0]
    q = self.wq(x).reshape(b, self.n_heads, self.head_dim)
    kn = self.wk(x).reshape(b, self.n_kv_heads, self.head_dim)
    vn = self.wv(x).reshape(b, self.n_kv_heads, self.head_dim)
    rows = jnp.arange(b)
    k_cache = k_cache.at[rows, lengths].set(kn.astype(k_cache.dtype))
    v_cache = v_cache.at[rows, lengths].set(vn.astype(v_cache.dtype))
    means = update_block_means(means, kn, lengths, block_size=self.block_size)
    new_len = lengths + 1
    if self.dense:
      nb = means.shape[1]
      idx = jnp.broadcast_to(jnp.arange(nb, dtype=jnp.int32), (b, self.n_kv_heads, nb))
      out = ops.block_sparse_decode(q, k_cache, v_cache, idx, lengths=new_len,
                                    block_size=self.block_size).out
    else:
      out = block_topk_decode(q, k_cache, v_cache, new_len, block_size=self.block_size,
                              topk_blocks=self.topk_blocks, sink=self.sink, local=self.local,
                              means=means).out
    return self.wo(out.reshape(b, -1)), k_cache, v_cache, means, new_len


__all__ = [
    "BlockTopKAttention",
    "BlockTopKOutput",
    "CostBreakdown",
    "ModelCostConfig",
    "block_means",
    "block_scores",
    "block_topk_decode",
    "expected_cost",
    "kinetics_cost",
    "pareto_frontier",
    "pass_at_k",
    "qwen3_config",
    "select_blocks",
    "update_block_means",
]
