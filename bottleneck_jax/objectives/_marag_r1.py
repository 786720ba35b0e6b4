"""MARAG-R1: the four retrieval tools and the trajectory reward of a multi-tool RAG agent.

Paper: Qi Luo, Xiaonan Li, Yuxin Wang, Tingshuo Fan, Yuan Li, Xinchi Chen, Xipeng Qiu,
"MARAG-R1: Beyond Single Retriever via Reinforcement-Learned Multi-Tool Agentic Retrieval", 2025
(https://arxiv.org/abs/2510.27569).

Idea. A retrieval-augmented model that can only call one retriever with a fixed top-``k`` sees a
narrow slice of the corpus; questions whose evidence is spread over the whole corpus (counts,
sums, extremes over all matching records) cannot be answered from it. MARAG-R1 gives the model
four tools — **semantic search** (dense top-``k``), **keyword search** (sparse BM25 top-``k``),
**filtering** (metadata predicates over the whole corpus) and **aggregation** (count / sum / max
over a filtered set) — and trains it to interleave them with reasoning: supervised fine-tuning on
tool-use trajectories, then reinforcement learning with leave-one-out (RLOO) advantages over a
composite trajectory reward.

Implemented here (pure ``jax.numpy``; the agent loop itself stays on the host):

- :func:`semantic_search`: cosine similarity to every document, ``jax.lax.top_k``;
- :func:`bm25_scores` / :func:`keyword_search`: Okapi BM25 over term-count matrices,

  .. math::
    s(q, d) = \\sum_t q_t\\, \\mathrm{idf}_t
      \\frac{f_{t,d}(k_1 + 1)}{f_{t,d} + k_1 (1 - b + b\\,|d| / \\overline{|d|})},\\qquad
    \\mathrm{idf}_t = \\log\\frac{N - n_t + 0.5}{n_t + 0.5},

  with ``q_t`` the query's count of term ``t`` (a repeated query word counts twice) and negative
  idfs replaced by ``epsilon`` times the mean idf — exactly ``rank_bm25.BM25Okapi``;
- :func:`filter_docs` (inclusive range predicates on metadata columns, all of them must hold)
  and :func:`aggregate_docs` (``count``, ``sum``, ``max``, ``min``, ``mean`` over a kept set);
- the reward: :func:`token_f1` (bag-of-tokens F1 of the answer, as in SQuAD / HotpotQA
  evaluation), :func:`document_coverage` (fraction of the gold documents retrieved anywhere along
  the trajectory) and :func:`marag_reward`,

  .. math::
    R = \\mathbb 1[\\text{format ok}]\\,\\big(w_a\\,F_1 + w_d\\,\\text{coverage}
        + w_t\\,\\tfrac{\\#\\text{tools used}}{4}\\big).

  The RLOO advantages of a group of trajectories are the substrate's leave-one-out advantages
  (``rloo_advantages`` of this family).

Departures. The paper's reward terms and weights could not be read here (the PDF was not
reachable); the reward above is a reconstruction from its description — answer quality, evidence
coverage and tool exploration, gated by a valid format — with unit weights by default. The
paper's semantic search uses a neural embedding model and its keyword search an external
engine; here both run on arrays the caller provides (``bottleneck_jax.data.retrieval_corpus``
ships a small embedded corpus with exact answers). There is no NNX module: the method has no
parameters of its own (the policy is a language model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from bottleneck_jax.core import validation as V

NUM_TOOLS = 4
AGGREGATE_OPS = ("count", "sum", "max", "min", "mean")


class SearchResult(NamedTuple):
  """The top-``k`` documents of a search: ``scores [*batch, k]`` (descending) and their
  ``indices [*batch, k]`` (ties broken by the lower index)."""
  scores: Array
  indices: Array


class MaragReward(NamedTuple):
  """The trajectory reward and its three terms (each ``[*batch]``, before weighting/gating)."""
  reward: Array
  answer: Array
  coverage: Array
  exploration: Array


def _check_k(fn: str, k, n: int) -> None:
  V.check_scalar(fn, "k", k, low=1, integer=True, static=True)
  if k > n:
    raise ValueError(f"{fn}: k must be <= the number of documents ({n}), got {k}")


def _check_docs(fn: str, arg: str, x) -> None:
  V.check_rank(fn, arg, x, 2)
  V.check_floating(fn, arg, x)
  if x.shape[0] < 1 or x.shape[1] < 1:
    raise ValueError(f"{fn}: {arg} must have at least one document and one feature, got "
                     f"{V.describe(x)}")


def _check_query(fn: str, arg: str, q, docs, docs_arg: str) -> None:
  V.check_rank(fn, arg, q, min_rank=1)
  V.check_floating(fn, arg, q)
  if q.shape[-1] != docs.shape[-1]:
    raise ValueError(f"{fn}: {arg} must have {docs.shape[-1]} features on its last axis (as "
                     f"{docs_arg}), got {V.describe(q)}")
  if jnp.dtype(q.dtype) != jnp.dtype(docs.dtype):
    raise TypeError(f"{fn}: {arg} must have the dtype of {docs_arg} "
                    f"({jnp.dtype(docs.dtype).name}), got {V.describe(q)}")


def semantic_search(query: Float[Array, "*batch d"], doc_emb: Float[Array, "n d"], *,
                    k: int, epsilon: float = 1e-12) -> SearchResult:
  """Dense retrieval: the ``k`` documents of highest cosine similarity to the query.

  .. math::
    s_i = \\frac{\\langle q, e_i\\rangle}{\\max(\\|q\\|, \\epsilon)\\max(\\|e_i\\|, \\epsilon)}

  Args:
    query: query embeddings ``[*batch, D]``.
    doc_emb: document embeddings ``[N, D]``, same dtype.
    k: how many documents, ``1 <= k <= N`` (static).
    epsilon: norm floor (a zero vector scores 0 against everything).

  Returns:
    :class:`SearchResult` with ``scores`` (cosines) and ``indices``, each ``[*batch, k]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import semantic_search
    >>> docs = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    >>> semantic_search(jnp.array([0.9, 0.1]), docs, k=2).indices
    Array([0, 2], dtype=int32)

  References:
    Luo et al., "MARAG-R1", 2025, https://arxiv.org/abs/2510.27569 (semantic search tool).
  """
  fn = "semantic_search"
  _check_docs(fn, "doc_emb", doc_emb)
  _check_query(fn, "query", query, doc_emb, "doc_emb")
  _check_k(fn, k, doc_emb.shape[0])
  V.check_scalar(fn, "epsilon", epsilon, low=0.0, low_inclusive=False, static=True)
  eps = jnp.asarray(epsilon, doc_emb.dtype)
  qn = query / jnp.maximum(jnp.linalg.norm(query, axis=-1, keepdims=True), eps)
  dn = doc_emb / jnp.maximum(jnp.linalg.norm(doc_emb, axis=-1, keepdims=True), eps)
  scores, idx = jax.lax.top_k(qn @ dn.T, int(k))
  return SearchResult(scores=scores, indices=idx)


def bm25_scores(query_tf: Float[Array, "*batch v"], doc_tf: Float[Array, "n v"], *,
                k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25
                ) -> Float[Array, "*batch n"]:
  """Okapi BM25 scores of every document for a bag-of-words query (``rank_bm25.BM25Okapi``).

  .. math::
    s(q, d) = \\sum_t q_t\\, \\mathrm{idf}_t
      \\frac{f_{t,d}(k_1 + 1)}{f_{t,d} + k_1 (1 - b + b\\,|d| / \\overline{|d|})}

  with ``idf_t = log((N - n_t + 0.5) / (n_t + 0.5))`` over the ``n_t`` documents containing
  ``t``; a negative idf (a term in more than half of the documents) is replaced by
  ``epsilon * mean_t idf_t`` (the mean over the terms that occur in the corpus), as rank_bm25
  does. ``|d|`` is the document's total term count.

  Args:
    query_tf: query term counts ``[*batch, V]`` (a word asked twice counts twice).
    doc_tf: document term counts ``[N, V]``, same dtype.
    k1: term-frequency saturation ``>= 0``.
    b: length normalisation in ``[0, 1]``.
    epsilon: the idf floor factor ``>= 0``.

  Returns:
    Scores ``[*batch, N]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import bm25_scores
    >>> docs = jnp.array([[2.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 3.0]])
    >>> bm25_scores(jnp.array([1.0, 0.0, 0.0]), docs).argmax()
    Array(0, dtype=int32)

  References:
    Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond", 2009;
    dorianbrown/rank_bm25 ``BM25Okapi``.
  """
  fn = "bm25_scores"
  _check_docs(fn, "doc_tf", doc_tf)
  _check_query(fn, "query_tf", query_tf, doc_tf, "doc_tf")
  _check_bm25_params(fn, k1, b, epsilon)
  return _bm25(query_tf, doc_tf, k1, b, epsilon)


def _check_bm25_params(fn, k1, b, epsilon):
  V.check_scalar(fn, "k1", k1, low=0.0, static=True)
  V.check_scalar(fn, "b", b, low=0.0, high=1.0, static=True)
  V.check_scalar(fn, "epsilon", epsilon, low=0.0, static=True)


def _bm25(query_tf, doc_tf, k1, b, epsilon):
  dt = doc_tf.dtype
  n = doc_tf.shape[0]
  present = doc_tf > 0
  n_t = jnp.sum(present, axis=0).astype(dt)
  idf = jnp.log((n - n_t + 0.5) / (n_t + 0.5))
  in_corpus = n_t > 0
  mean_idf = jnp.sum(jnp.where(in_corpus, idf, 0)) / jnp.maximum(jnp.sum(in_corpus), 1).astype(dt)
  idf = jnp.where(idf < 0, jnp.asarray(epsilon, dt) * mean_idf, idf)
  doc_len = jnp.sum(doc_tf, axis=1)
  avgdl = jnp.maximum(jnp.mean(doc_len), jnp.asarray(1e-12, dt))
  k1_, b_ = jnp.asarray(k1, dt), jnp.asarray(b, dt)
  denom = doc_tf + k1_ * (1 - b_ + b_ * doc_len[:, None] / avgdl)
  tf_part = jnp.where(present, doc_tf * (k1_ + 1) / jnp.where(present, denom, 1), 0)
  return query_tf @ (tf_part * idf[None, :]).T


def keyword_search(query_tf: Float[Array, "*batch v"], doc_tf: Float[Array, "n v"], *, k: int,
                   k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25) -> SearchResult:
  """Sparse retrieval: the ``k`` documents of highest :func:`bm25_scores`.

  Args:
    query_tf, doc_tf, k1, b, epsilon: as for :func:`bm25_scores`.
    k: how many documents, ``1 <= k <= N`` (static).

  Returns:
    :class:`SearchResult`, each field ``[*batch, k]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import keyword_search
    >>> docs = jnp.array([[2.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 3.0]])
    >>> keyword_search(jnp.array([0.0, 1.0, 0.0]), docs, k=1).indices
    Array([1], dtype=int32)

  References:
    Luo et al., "MARAG-R1", 2025, https://arxiv.org/abs/2510.27569 (keyword search tool).
  """
  fn = "keyword_search"
  _check_docs(fn, "doc_tf", doc_tf)
  _check_query(fn, "query_tf", query_tf, doc_tf, "doc_tf")
  _check_k(fn, k, doc_tf.shape[0])
  _check_bm25_params(fn, k1, b, epsilon)
  scores, idx = jax.lax.top_k(_bm25(query_tf, doc_tf, k1, b, epsilon), int(k))
  return SearchResult(scores=scores, indices=idx)


def filter_docs(meta: Float[Array, "n f"], *,
                where: Mapping[int, tuple[float, float]]) -> Bool[Array, " n"]:
  """The filtering tool: which documents satisfy every range predicate on their metadata.

  .. math::
    \\text{keep}_i = \\bigwedge_{(f, (lo, hi)) \\in \\text{where}} lo \\le m_{i,f} \\le hi

  Args:
    meta: numeric metadata ``[N, F]`` (floating).
    where: ``{column: (low, high)}``, inclusive bounds (``low == high`` is an equality test;
      use ``-inf`` / ``inf`` for one-sided ranges); an empty mapping keeps every document.

  Returns:
    ``bool [N]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import filter_docs
    >>> meta = jnp.array([[0.0, 2001.0], [1.0, 2005.0], [0.0, 2010.0]])
    >>> filter_docs(meta, where={0: (0.0, 0.0), 1: (2000.0, 2008.0)})
    Array([ True, False, False], dtype=bool)

  References:
    Luo et al., "MARAG-R1", 2025, https://arxiv.org/abs/2510.27569 (filtering tool).
  """
  fn = "filter_docs"
  V.check_rank(fn, "meta", meta, 2)
  V.check_floating(fn, "meta", meta)
  if not isinstance(where, Mapping):
    raise TypeError(f"{fn}: where must be a mapping {{column: (low, high)}}, got "
                    f"{type(where).__name__}")
  keep = jnp.ones(meta.shape[:1], bool)
  for col, bounds in where.items():
    if isinstance(col, bool) or not isinstance(col, (int, np.integer)) or not (
        0 <= col < meta.shape[1]):
      raise ValueError(f"{fn}: where keys must be column indices in [0, {meta.shape[1]}), got "
                       f"{col!r}")
    if not (isinstance(bounds, Sequence) and len(bounds) == 2 and all(
        isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and v == v
        for v in bounds)):
      raise ValueError(f"{fn}: where[{col}] must be a pair of numbers (low, high), got "
                       f"{bounds!r}")
    lo, hi = (float(v) for v in bounds)
    if lo > hi:
      raise ValueError(f"{fn}: where[{col}] must have low <= high, got {bounds!r}")
    col_v = meta[:, int(col)]
    keep = keep & (col_v >= lo) & (col_v <= hi)
  return keep


def aggregate_docs(values: Float[Array, " n"], keep: Bool[Array, " n"], *, op: str,
              empty: float = 0.0) -> Float[Array, ""]:
  """The aggregation tool: ``count``, ``sum``, ``max``, ``min`` or ``mean`` of the kept values.

  Args:
    values: per-document values ``[N]`` (floating).
    keep: which documents take part, ``bool [N]`` (e.g. from :func:`filter_docs`).
    op: one of ``"count"``, ``"sum"``, ``"max"``, ``"min"``, ``"mean"``.
    empty: the result of ``max``/``min``/``mean`` over an empty set (undefined otherwise);
      ``count`` and ``sum`` of an empty set are 0.

  Returns:
    A scalar of ``values``' dtype.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import aggregate_docs
    >>> v = jnp.array([3.0, 5.0, 9.0]); keep = jnp.array([True, True, False])
    >>> aggregate_docs(v, keep, op="max"), aggregate_docs(v, keep, op="count")
    (Array(5., dtype=float32), Array(2., dtype=float32))

  References:
    Luo et al., "MARAG-R1", 2025, https://arxiv.org/abs/2510.27569 (aggregation tool).
  """
  fn = "aggregate_docs"
  V.check_rank(fn, "values", values, 1)
  V.check_floating(fn, "values", values)
  V.check_rank(fn, "keep", keep, 1)
  V.check_bool_or_int(fn, "keep", keep)
  V.check_same_shape(fn, "values", values, "keep", keep)
  V.check_choice(fn, "op", op, AGGREGATE_OPS)
  V.check_scalar(fn, "empty", empty, static=True)
  dt = values.dtype
  keep = keep.astype(bool)
  count = jnp.sum(keep).astype(dt)
  fill = jnp.asarray(empty, dt)
  if op == "count":
    return count
  if op == "sum":
    return jnp.sum(jnp.where(keep, values, 0))
  if op == "mean":
    return jnp.where(count > 0, jnp.sum(jnp.where(keep, values, 0)) / jnp.maximum(count, 1), fill)
  if op == "max":
    return jnp.where(count > 0, jnp.max(jnp.where(keep, values, -jnp.inf), initial=-jnp.inf), fill)
  return jnp.where(count > 0, jnp.min(jnp.where(keep, values, jnp.inf), initial=jnp.inf), fill)


def _check_ids(fn: str, arg: str, x) -> None:
  V.check_rank(fn, arg, x, min_rank=1)
  V.check_integer(fn, arg, x)


def _id_pair(fn: str, a_name: str, a, b_name: str, b, pad):
  """Checks two padded id arrays with one batch shape and an integer ``pad``; returns both as
  int32."""
  _check_ids(fn, a_name, a)
  _check_ids(fn, b_name, b)
  if a.shape[:-1] != b.shape[:-1]:
    raise ValueError(f"{fn}: {a_name} and {b_name} must have the same batch shape, got "
                     f"{V.describe(a)} and {V.describe(b)}")
  V.check_scalar(fn, "pad", pad, integer=True, static=True)
  return a.astype(jnp.int32), b.astype(jnp.int32)


def token_f1(pred_ids: Int[Array, "*batch lp"], gold_ids: Int[Array, "*batch lg"], *,
             pad: int = -1) -> Float[Array, "*batch"]:
  """Bag-of-tokens F1 between a predicted and a gold answer (SQuAD / HotpotQA evaluation).

  With ``c`` the size of the multiset intersection of the (non-pad) tokens,
  ``P = c / |pred|``, ``R = c / |gold|`` and ``F1 = 2PR / (P + R)``; ``F1 = 0`` when ``c = 0``
  (an empty prediction or gold included).

  Args:
    pred_ids: predicted token ids ``[*batch, Lp]``, padded with ``pad`` (any integer dtype;
      compared as int32).
    gold_ids: gold token ids ``[*batch, Lg]``, padded with ``pad``.
    pad: the padding id.

  Returns:
    ``float32 [*batch]`` in ``[0, 1]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import token_f1
    >>> token_f1(jnp.array([1, 2, 2, -1]), jnp.array([2, 3]))   # c=1, P=1/3, R=1/2
    Array(0.4, dtype=float32)

  References:
    Rajpurkar et al., "SQuAD", 2016 (official evaluation script, ``f1_score``).
  """
  fn = "token_f1"
  pred_ids, gold_ids = _id_pair(fn, "pred_ids", pred_ids, "gold_ids", gold_ids, pad)
  pv = pred_ids != pad
  gv = gold_ids != pad
  same_p = (pred_ids[..., :, None] == pred_ids[..., None, :]) & pv[..., None, :]
  in_gold = (pred_ids[..., :, None] == gold_ids[..., None, :]) & gv[..., None, :]
  cnt_p = jnp.sum(same_p, -1).astype(jnp.float32)
  cnt_g = jnp.sum(in_gold, -1).astype(jnp.float32)
  # each distinct predicted token contributes min(count in pred, count in gold), spread evenly
  # over its count-in-pred occurrences
  common = jnp.sum(jnp.where(pv, jnp.minimum(cnt_p, cnt_g) / jnp.maximum(cnt_p, 1), 0), -1)
  n_p = jnp.sum(pv, -1).astype(jnp.float32)
  n_g = jnp.sum(gv, -1).astype(jnp.float32)
  prec = common / jnp.maximum(n_p, 1)
  rec = common / jnp.maximum(n_g, 1)
  return jnp.where(common > 0, 2 * prec * rec / jnp.where(common > 0, prec + rec, 1), 0.0)


def document_coverage(retrieved: Int[Array, "*batch m"], gold: Int[Array, "*batch g"], *,
                      pad: int = -1) -> Float[Array, "*batch"]:
  """Fraction of the distinct gold documents found among the retrieved ones.

  ``coverage = |set(gold) ∩ set(retrieved)| / |set(gold)|`` over non-pad ids; a trajectory's
  ``retrieved`` holds every id any tool returned (duplicates allowed). With no gold document the
  coverage is 1 (nothing to find).

  Args:
    retrieved: retrieved document ids ``[*batch, M]``, padded with ``pad``.
    gold: gold document ids ``[*batch, G]``, padded with ``pad``.
    pad: the padding id.

  Returns:
    ``float32 [*batch]`` in ``[0, 1]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import document_coverage
    >>> document_coverage(jnp.array([4, 7, 7, -1]), jnp.array([7, 2, 4, 9]))
    Array(0.5, dtype=float32)

  References:
    Luo et al., "MARAG-R1", 2025, https://arxiv.org/abs/2510.27569 (evidence coverage).
  """
  fn = "document_coverage"
  retrieved, gold = _id_pair(fn, "retrieved", retrieved, "gold", gold, pad)
  gv = gold != pad
  # count each distinct gold id once: only its first occurrence
  idx = jnp.arange(gold.shape[-1])
  earlier = (gold[..., :, None] == gold[..., None, :]) & (idx[None, :] < idx[:, None]) & gv[
      ..., None, :]
  first = gv & ~jnp.any(earlier, -1)
  found = jnp.any((gold[..., :, None] == retrieved[..., None, :]) & (retrieved != pad)[
      ..., None, :], -1)
  n_gold = jnp.sum(first, -1).astype(jnp.float32)
  hit = jnp.sum(first & found, -1).astype(jnp.float32)
  return jnp.where(n_gold > 0, hit / jnp.maximum(n_gold, 1), 1.0)


def marag_reward(f1: Float[Array, "*batch"], retrieved: Int[Array, "*batch m"],
                 gold: Int[Array, "*batch g"], tools_used: Bool[Array, "*batch 4"],
                 format_ok: Bool[Array, "*batch"], *,
                 weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 pad: int = -1) -> MaragReward:
  """The composite trajectory reward (reconstructed; see the module docstring).

  .. math::
    R = \\mathbb 1[\\text{format ok}]\\,\\big(w_a F_1 + w_d\\,\\text{coverage}
        + w_t\\,\\tfrac{1}{4}\\textstyle\\sum_j \\text{used}_j\\big)

  Args:
    f1: answer F1 to the gold answer ``[*batch]`` (e.g. :func:`token_f1`), floating.
    retrieved: every document id the trajectory retrieved ``[*batch, M]`` (``pad``-padded).
    gold: the gold document ids ``[*batch, G]`` (``pad``-padded).
    tools_used: which of the four tools (semantic, keyword, filter, aggregate) the
      trajectory called, ``bool [*batch, 4]``.
    format_ok: whether the trajectory is well-formed ``bool [*batch]``; 0 reward otherwise.
    weights: ``(w_a, w_d, w_t) >= 0``.
    pad: the padding id of ``retrieved`` and ``gold``.

  Returns:
    :class:`MaragReward` (``reward``, ``answer``, ``coverage``, ``exploration``), each
    ``[*batch]`` of ``f1``'s dtype; the terms are unweighted and ungated.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import marag_reward
    >>> r = marag_reward(jnp.array(1.0), jnp.array([3, 5]), jnp.array([3, 5, 8, -1]),
    ...                  jnp.array([True, False, True, True]), jnp.array(True))
    >>> round(float(r.reward), 4)      # 1 + 2/3 + 3/4
    2.4167

  References:
    Luo et al., "MARAG-R1", 2025, https://arxiv.org/abs/2510.27569.
  """
  fn = "marag_reward"
  V.check_floating(fn, "f1", f1)
  f1 = jnp.asarray(f1)
  _check_ids(fn, "retrieved", retrieved)
  _check_ids(fn, "gold", gold)
  V.check_rank(fn, "tools_used", tools_used, min_rank=1)
  V.check_bool_or_int(fn, "tools_used", tools_used)
  V.check_bool_or_int(fn, "format_ok", format_ok)
  batch = tuple(f1.shape)
  for arg, x in (("retrieved", retrieved), ("gold", gold), ("tools_used", tools_used)):
    if tuple(x.shape[:-1]) != batch:
      raise ValueError(f"{fn}: {arg} must have the batch shape of f1 {list(batch)} before its "
                       f"last axis, got {V.describe(x)}")
  if tools_used.shape[-1] != NUM_TOOLS:
    raise ValueError(f"{fn}: tools_used must have {NUM_TOOLS} entries on its last axis "
                     f"(semantic, keyword, filter, aggregate), got {V.describe(tools_used)}")
  if tuple(format_ok.shape) != batch:
    raise ValueError(f"{fn}: format_ok must have the shape of f1 {list(batch)}, got "
                     f"{V.describe(format_ok)}")
  if not (isinstance(weights, Sequence) and len(weights) == 3):
    raise ValueError(f"{fn}: weights must be three numbers (answer, coverage, tools), got "
                     f"{weights!r}")
  for w in weights:
    V.check_scalar(fn, "weights", w, low=0.0, static=True)
  V.check_scalar(fn, "pad", pad, integer=True, static=True)
  dt = f1.dtype
  cov = document_coverage(retrieved, gold, pad=pad).astype(dt)
  expl = jnp.mean(tools_used.astype(bool).astype(dt), axis=-1)
  wa, wd, wt = (jnp.asarray(w, dt) for w in weights)
  total = jnp.where(format_ok.astype(bool), wa * f1 + wd * cov + wt * expl, jnp.zeros((), dt))
  return MaragReward(reward=total, answer=f1, coverage=cov, exploration=expl)


__all__ = ["MaragReward", "SearchResult", "aggregate_docs", "bm25_scores", "document_coverage",
           "filter_docs", "keyword_search", "marag_reward", "semantic_search", "token_f1"]
