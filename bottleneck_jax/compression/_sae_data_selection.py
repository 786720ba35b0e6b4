"""Task-specific data selection with SAE features and a generalised Jaccard similarity (MoNA).

Paper: Ma et al., "Task-Specific Data Selection for Instruction Tuning via Monosemantic Neuronal
Activations", 2025 (https://arxiv.org/abs/2503.15573). No reference code was available.

Idea. Represent every instruction sample by the sparse, non-negative features that a sparse
autoencoder assigns to the model's activations (monosemantic neurons), aggregate them over the
tokens, build a prototype of the target task from a few exemplars, and keep the candidates most
similar to it under the *generalised (weighted) Jaccard* similarity

.. math::
  J(a, b) = \\frac{\\sum_i \\min(a_i, b_i)}{\\sum_i \\max(a_i, b_i)} \\in [0, 1],

which rewards shared active features and penalises features active in only one of the two
(it equals the set Jaccard index on binary vectors). The top ``ratio`` (5 % by default) of the
pool is selected.

Implemented: :func:`aggregate_features` (masked mean / max / sum over tokens),
:func:`generalized_jaccard` and its matrix form :func:`generalized_jaccard_matrix` (chunked with
``lax.map`` so the ``[N, M, m]`` broadcast is never materialised), :func:`task_prototype`,
:func:`score_candidates` (prototype, or the max / mean similarity to the exemplars) and
:func:`select_top_fraction`.

Departures (reconstructed from the abstract and secondary summaries): the token aggregation and
the prototype construction (mean) are our choices where the paper's exact recipe was not
available; the SAE is any encoder of this family (:func:`sae_encode`).
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V


def aggregate_features(features: Float[Array, "b t m"], mask: Array | None = None, *,
                       how: Literal["mean", "max", "sum"] = "mean") -> Float[Array, "b m"]:
  """Aggregates per-token features ``[B, T, m]`` over the (masked) tokens.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import aggregate_features
    >>> f = jnp.array([[[1.0, 0.0], [3.0, 2.0], [9.0, 9.0]]])
    >>> aggregate_features(f, jnp.array([[1, 1, 0]])).tolist()
    [[2.0, 1.0]]
  """
  fn = "aggregate_features"
  V.check_floating(fn, "features", features)
  V.check_rank(fn, "features", features, 3)
  V.check_choice(fn, "how", how, ("mean", "max", "sum"))
  f = jnp.asarray(features)
  if mask is None:
    m = jnp.ones(f.shape[:2], f.dtype)
  else:
    V.check_bool_or_int(fn, "mask", mask)
    V.check_shape(fn, "mask", mask, f.shape[:2])
    m = jnp.asarray(mask).astype(f.dtype)
  if how == "max":
    return jnp.max(jnp.where(m[..., None] > 0, f, -jnp.inf), axis=1, initial=0.0)
  s = jnp.sum(f * m[..., None], axis=1)
  if how == "sum":
    return s
  return s / jnp.maximum(jnp.sum(m, axis=1), 1.0)[:, None]


def generalized_jaccard(a: Float[Array, "*batch m"], b: Float[Array, "*batch m"], *,
                        epsilon: float = 1e-12) -> Float[Array, "*batch"]:
  """``sum min(a, b) / sum max(a, b)`` over the last axis (non-negative inputs).

  Two zero vectors have similarity 0 (the ``epsilon`` guard).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import generalized_jaccard
    >>> j = generalized_jaccard(jnp.array([1.0, 2.0, 0.0]), jnp.array([2.0, 1.0, 1.0]))
    >>> round(float(j), 6)
    0.4
  """
  fn = "generalized_jaccard"
  V.check_floating(fn, "a", a)
  V.check_rank(fn, "a", a, min_rank=1)
  V.check_floating(fn, "b", b)
  V.check_same_shape(fn, "a", a, "b", b)
  V.check_scalar(fn, "epsilon", epsilon, low=0.0, static=True)
  a = jnp.asarray(a)
  b = jnp.asarray(b).astype(a.dtype)
  return jnp.sum(jnp.minimum(a, b), -1) / (jnp.sum(jnp.maximum(a, b), -1) + epsilon)


def generalized_jaccard_matrix(a: Float[Array, "n m"], b: Float[Array, "k m"], *,
                               chunk: int = 256,
                               epsilon: float = 1e-12) -> Float[Array, "n k"]:
  """All pairwise generalised Jaccard similarities, ``[N, K]``, computed ``chunk`` rows of
  ``a`` at a time.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import generalized_jaccard_matrix
    >>> generalized_jaccard_matrix(jnp.eye(2), jnp.array([[1.0, 1.0]])).tolist()
    [[0.5], [0.5]]
  """
  fn = "generalized_jaccard_matrix"
  V.check_floating(fn, "a", a)
  V.check_rank(fn, "a", a, 2)
  V.check_floating(fn, "b", b)
  V.check_rank(fn, "b", b, 2)
  if a.shape[1] != b.shape[1]:
    raise ValueError(f"{fn}: a and b must have the same feature size, got {V.describe(a)} and "
                     f"{V.describe(b)}")
  V.check_scalar(fn, "chunk", chunk, low=1, high=2**20, integer=True, static=True)
  V.check_scalar(fn, "epsilon", epsilon, low=0.0, static=True)
  a = jnp.asarray(a)
  b = jnp.asarray(b).astype(a.dtype)
  n = a.shape[0]
  if n == 0 or b.shape[0] == 0:
    return jnp.zeros((n, b.shape[0]), a.dtype)
  c = min(int(chunk), n)
  pad = (-n) % c
  ap = jnp.pad(a, ((0, pad), (0, 0))).reshape(-1, c, a.shape[1])

  def one(block):
    num = jnp.sum(jnp.minimum(block[:, None, :], b[None]), -1)
    den = jnp.sum(jnp.maximum(block[:, None, :], b[None]), -1)
    return num / (den + epsilon)

  return jax.lax.map(one, ap).reshape(-1, b.shape[0])[:n]


def task_prototype(target: Float[Array, "k m"], *,
                   how: Literal["mean", "max"] = "mean") -> Float[Array, "m"]:
  """The task prototype: mean (or max) of the target exemplars' aggregated features.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import task_prototype
    >>> task_prototype(jnp.array([[1.0, 0.0], [3.0, 2.0]])).tolist()
    [2.0, 1.0]
  """
  fn = "task_prototype"
  V.check_floating(fn, "target", target)
  V.check_rank(fn, "target", target, 2)
  V.check_choice(fn, "how", how, ("mean", "max"))
  if target.shape[0] == 0:
    raise ValueError(f"{fn}: target must hold at least one exemplar, got {V.describe(target)}")
  t = jnp.asarray(target)
  return jnp.mean(t, 0) if how == "mean" else jnp.max(t, 0)


def score_candidates(candidates: Float[Array, "n m"], target: Float[Array, "k m"], *,
                     mode: Literal["prototype", "max_sim", "mean_sim"] = "prototype",
                     chunk: int = 256) -> Float[Array, "n"]:
  """Similarity of each candidate to the target task (generalised Jaccard).

  ``"prototype"``: to the mean exemplar; ``"max_sim"`` / ``"mean_sim"``: max / mean over the
  exemplars.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import score_candidates
    >>> score_candidates(jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([[1.0, 0.0]])).tolist()
    [1.0, 0.0]
  """
  fn = "score_candidates"
  V.check_choice(fn, "mode", mode, ("prototype", "max_sim", "mean_sim"))
  V.check_floating(fn, "target", target)
  V.check_rank(fn, "target", target, 2)
  V.check_floating(fn, "candidates", candidates)
  V.check_rank(fn, "candidates", candidates, 2)
  if target.shape[0] == 0:
    raise ValueError(f"{fn}: target must hold at least one exemplar, got {V.describe(target)}")
  if candidates.shape[1] != target.shape[1]:
    raise ValueError(f"{fn}: candidates and target must have the same feature size, got "
                     f"{V.describe(candidates)} and {V.describe(target)}")
  V.check_scalar(fn, "chunk", chunk, low=1, high=2**20, integer=True, static=True)
  cand = jnp.asarray(candidates)
  tgt = jnp.asarray(target).astype(cand.dtype)
  if mode == "prototype":
    return generalized_jaccard_matrix(cand, jnp.mean(tgt, 0, keepdims=True), chunk=chunk)[:, 0]
  sims = generalized_jaccard_matrix(cand, tgt, chunk=chunk)
  return jnp.max(sims, 1) if mode == "max_sim" else jnp.mean(sims, 1)


def select_top_fraction(scores: Float[Array, "n"], ratio: float = 0.05) -> Int[Array, "r"]:
  """Indices of the ``ceil(ratio N)`` highest scores, best first (ties: lower index first).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.compression import select_top_fraction
    >>> select_top_fraction(jnp.array([0.1, 0.9, 0.5, 0.7]), 0.5).tolist()
    [1, 3]
  """
  fn = "select_top_fraction"
  V.check_floating(fn, "scores", scores)
  V.check_rank(fn, "scores", scores, 1)
  V.check_scalar(fn, "ratio", ratio, low=0.0, high=1.0, low_inclusive=False, static=True)
  s = jnp.asarray(scores)
  r = min(s.shape[0], max(1, math.ceil(float(ratio) * s.shape[0]))) if s.shape[0] else 0
  if r == 0:
    return jnp.zeros((0,), jnp.int32)
  return jax.lax.top_k(s, r)[1].astype(jnp.int32)
