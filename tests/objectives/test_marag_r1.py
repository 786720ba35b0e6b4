"""MARAG-R1: retrieval tools against rank_bm25 / brute force, the corpus-level bottleneck of a
single top-k retriever, and the trajectory reward against plain-Python references."""

import collections
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax.data import corpus_questions, retrieval_corpus
from bottleneck_jax.objectives import (
    aggregate_docs,
    bm25_scores,
    document_coverage,
    filter_docs,
    keyword_search,
    marag_reward,
    rloo_advantages,
    semantic_search,
    token_f1,
)

FIXTURE = Path(__file__).parent / "fixtures" / "marag_r1_bm25.json"


@pytest.fixture(scope="module")
def corpus():
  return retrieval_corpus(50, seed=0)


def _tf(words_list, vocab):
  idx = {w: i for i, w in enumerate(vocab)}
  out = np.zeros((len(words_list), len(vocab)), np.float32)
  for r, words in enumerate(words_list):
    for w in words:
      if w in idx:
        out[r, idx[w]] += 1
  return jnp.asarray(out)


def test_bm25_equals_rank_bm25_okapi():
  """Golden scores of rank_bm25 0.2.2 BM25Okapi (20 docs, a word in 17 of them so its idf is
  floored, repeated query words, two parameter sets)."""
  fx = json.loads(FIXTURE.read_text())
  docs = _tf(fx["docs"], fx["vocab"])
  queries = _tf(fx["queries"], fx["vocab"])
  for case in fx["cases"]:
    kw = {"k1": case["k1"], "b": case["b"], "epsilon": case["epsilon"]}
    got, top = jax.jit(lambda q, d, kw=kw: (bm25_scores(q, d, **kw),
                                            keyword_search(q, d, k=3, **kw)))(queries, docs)
    np.testing.assert_allclose(np.asarray(got), np.asarray(case["scores"]), rtol=1e-5,
                               atol=1e-5)
    want = np.argsort(-np.asarray(case["scores"]), axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(np.asarray(top.indices), want)


def test_semantic_search_finds_the_nearest_neighbour(corpus):
  emb = jnp.asarray(corpus.embeddings)
  rng = np.random.default_rng(0)
  q = rng.standard_normal((6, emb.shape[1])).astype(np.float32)
  search = jax.jit(semantic_search, static_argnames="k")
  res = search(jnp.asarray(q), emb, k=4)
  cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ corpus.embeddings.T
  np.testing.assert_array_equal(np.asarray(res.indices), np.argsort(-cos, axis=1)[:, :4])
  np.testing.assert_allclose(np.asarray(res.scores), -np.sort(-cos, axis=1)[:, :4], atol=1e-5)
  # a document's own words retrieve it first
  own = jnp.asarray(np.stack([corpus.embed(corpus.texts[i].split()) for i in (3, 17)]))
  assert np.asarray(search(own, emb, k=1).indices)[:, 0].tolist() == [3, 17]


def test_single_retriever_cannot_cover_corpus_level_questions(corpus):
  """Aggregate questions whose gold set exceeds k: top-5 semantic / keyword search leave gold
  documents out, filter + aggregate covers all of them and gives the exact answer."""
  qs = [q for q in corpus_questions(corpus) if q.kind == "aggregate" and len(q.gold) > 5]
  assert len(qs) >= 3 * 3  # count / sum / max of at least three categories
  g = max(len(q.gold) for q in qs)
  gold = jnp.asarray(np.stack([np.pad(q.gold, (0, g - len(q.gold)), constant_values=-1)
                               for q in qs]))
  sem_q = jnp.asarray(np.stack([corpus.embed(q.words) for q in qs]))
  kwd_q = jnp.asarray(np.stack([corpus.encode(q.words) for q in qs]))
  meta = jnp.asarray(corpus.meta)
  keeps = jnp.stack([filter_docs(meta, where=q.where) for q in qs[::3]])  # one per category

  @jax.jit
  def measure(sem_q, kwd_q, gold, keeps):
    sem = semantic_search(sem_q, jnp.asarray(corpus.embeddings), k=5).indices
    kwd = keyword_search(kwd_q, jnp.asarray(corpus.term_counts), k=5).indices
    found = jnp.where(jnp.repeat(keeps, 3, axis=0), jnp.arange(corpus.num_docs), -1)
    answers = {op: jax.vmap(lambda k, op=op: aggregate_docs(meta[:, 3], k, op=op))(keeps)
               for op in ("count", "sum", "max")}
    return (jax.vmap(document_coverage)(sem, gold), jax.vmap(document_coverage)(kwd, gold),
            jax.vmap(document_coverage)(found, gold), answers)

  sem_cov, kwd_cov, filt_cov, answers = measure(sem_q, kwd_q, gold, keeps)
  assert np.all(np.asarray(sem_cov) < 1.0) and np.all(np.asarray(kwd_cov) < 1.0)
  np.testing.assert_array_equal(np.asarray(filt_cov), 1.0)
  for i, q in enumerate(qs):
    assert q.op == ("count", "sum", "max")[i % 3]
    assert float(answers[q.op][i // 3]) == q.answer
    if i % 3 == 0:
      assert np.flatnonzero(np.asarray(keeps[i // 3])).tolist() == sorted(q.gold.tolist())


def test_aggregate_ops_and_empty_set():
  v = jnp.asarray([3.0, -1.0, 7.0, 2.0])
  keep = jnp.asarray([True, True, False, True])
  want = {"count": 3, "sum": 4, "max": 3, "min": -1, "mean": 4 / 3}

  @jax.jit
  def all_ops(v, keep):
    none = jnp.zeros(4, bool)
    return ({op: aggregate_docs(v, keep, op=op) for op in want},
            [aggregate_docs(v, none, op="max", empty=-5.0), aggregate_docs(v, none, op="mean"),
             aggregate_docs(v, none, op="sum")])

  got, empty = all_ops(v, keep)
  for op, w in want.items():
    assert float(got[op]) == pytest.approx(w)
  assert [float(e) for e in empty] == [-5.0, 0.0, 0.0]


def _squad_f1(pred, gold):
  pred = [t for t in pred if t != -1]
  gold = [t for t in gold if t != -1]
  same = sum((collections.Counter(pred) & collections.Counter(gold)).values())
  if same == 0:
    return 0.0
  p, r = same / len(pred), same / len(gold)
  return 2 * p * r / (p + r)


def test_token_f1_and_coverage_equal_python_references():
  rng = np.random.default_rng(1)
  pred = rng.integers(-1, 5, (64, 6)).astype(np.int32)
  gold = rng.integers(-1, 5, (64, 4)).astype(np.int32)
  pred[0] = -1  # an empty prediction
  got = np.asarray(jax.jit(token_f1)(jnp.asarray(pred), jnp.asarray(gold)))
  want = [_squad_f1(p, g) for p, g in zip(pred.tolist(), gold.tolist())]
  np.testing.assert_allclose(got, want, atol=1e-6)
  cov = np.asarray(jax.jit(jax.vmap(document_coverage))(jnp.asarray(pred), jnp.asarray(gold)))
  for c, p, g in zip(cov, pred.tolist(), gold.tolist()):
    gs = {x for x in g if x != -1}
    want_c = len(gs & {x for x in p if x != -1}) / len(gs) if gs else 1.0
    assert c == pytest.approx(want_c)


_reward = jax.jit(marag_reward, static_argnames=("weights", "pad"))


def test_reward_terms_monotonicity_gate_and_gradient():
  gold = jnp.tile(jnp.asarray([1, 2, 3, 4]), (9, 1))
  retrieved = jnp.asarray([[9, 9, 9, 9], [1, 9, 9, 9], [1, 2, 9, 9], [1, 2, 3, 4]] + [[1, 9, 9, 9]]
                          * 5)
  f1 = jnp.asarray([0.5] * 4 + [0.0, 0.25, 0.5, 1.0, 1.0])
  tools = jnp.tile(jnp.asarray([True, True, False, False]), (9, 1))
  ok = jnp.asarray([True] * 8 + [False])
  r = _reward(f1, retrieved, gold, tools, ok, weights=(2.0, 1.0, 0.5))
  # weights: answer 2, coverage 1, tools 0.5 x 2/4
  want = [2 * 0.5 + c + 0.25 for c in (0.0, 0.25, 0.5, 1.0)]
  want += [2 * f + 0.25 + 0.25 for f in (0.0, 0.25, 0.5, 1.0)] + [0.0]
  np.testing.assert_allclose(np.asarray(r.reward), want, atol=1e-6)
  np.testing.assert_allclose(np.asarray(r.coverage), [0, 0.25, 0.5, 1] + [0.25] * 5)
  assert np.all(np.diff(np.asarray(r.reward)[:4]) > 0) and np.all(
      np.diff(np.asarray(r.reward)[4:8]) > 0)
  g = jax.grad(lambda f: jnp.sum(_reward(f, retrieved, gold, tools, ok,
                                         weights=(2.0, 1.0, 0.5)).reward))(f1)
  np.testing.assert_allclose(np.asarray(g), [2.0] * 8 + [0.0])


def test_rloo_advantages_of_a_group_of_trajectory_rewards():
  """The RL stage: leave-one-out advantages of a group's rewards (trl RLOO formula)."""
  rng = np.random.default_rng(2)
  f1 = jnp.asarray(rng.random(9), jnp.float32)
  ret = jnp.asarray(rng.integers(0, 8, (9, 4)), jnp.int32)
  gold = jnp.tile(jnp.asarray([1, 3, 5, -1]), (9, 1))
  tools = jnp.asarray(rng.random((9, 4)) < 0.5)
  r = _reward(f1, ret, gold, tools, jnp.ones(9, bool), weights=(2.0, 1.0, 0.5)).reward
  adv = jax.jit(rloo_advantages)(r)
  r = np.asarray(r, np.float64)
  want = r - (r.sum() - r) / (len(r) - 1)
  np.testing.assert_allclose(np.asarray(adv), want, atol=1e-5)


def test_errors():
  docs = jnp.ones((3, 4))
  with pytest.raises(ValueError, match="semantic_search: k must be <= the number of documents"):
    semantic_search(jnp.ones(4), docs, k=4)
  with pytest.raises(ValueError, match="keyword_search: query_tf must have 4 features"):
    keyword_search(jnp.ones(3), docs, k=1)
  with pytest.raises(ValueError, match="bm25_scores: b must be <= 1"):
    bm25_scores(jnp.ones(4), docs, b=2.0)
  with pytest.raises(ValueError, match="filter_docs: where keys must be column indices"):
    filter_docs(docs, where={7: (0, 1)})
  with pytest.raises(ValueError, match="filter_docs: where\\[0\\] must have low <= high"):
    filter_docs(docs, where={0: (2, 1)})
  with pytest.raises(ValueError, match="aggregate_docs: op must be one of"):
    aggregate_docs(jnp.ones(3), jnp.ones(3, bool), op="median")
  with pytest.raises(ValueError, match="marag_reward: tools_used must have 4 entries"):
    marag_reward(jnp.asarray(1.0), jnp.asarray([1]), jnp.asarray([1]), jnp.ones(3, bool),
                 jnp.asarray(True))
  with pytest.raises(ValueError, match="token_f1: pred_ids and gold_ids must have the same"):
    token_f1(jnp.ones((2, 3), jnp.int32), jnp.ones((3, 3), jnp.int32))
