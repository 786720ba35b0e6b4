"""The splade-toy experiment (Sparton): quick mode runs and the fused head tracks the reference."""

import json

import numpy as np
import pytest

from bottleneck_jax.experiments import get, run_experiment
from bottleneck_jax.experiments.splade_toy import make_corpus, mrr_at_k


def test_mrr_at_k_by_hand():
  scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.0, 1.0, 0.5]])
  # ranks of the relevant columns: 1, 3, 3 (k=2 drops the last two)
  np.testing.assert_allclose(mrr_at_k(scores, np.array([0, 0, 2]), k=10), (1 + 1 / 3 + 1 / 2) / 3)
  np.testing.assert_allclose(mrr_at_k(scores, np.array([0, 0, 2]), k=1), 1 / 3)


def test_corpus_ground_truth():
  data = make_corpus(n_docs=6, vocab=40, topics=2, topic_words=5, doc_len=8, query_words=3,
                     train_queries_per_doc=2, eval_queries_per_doc=1, seed=0)
  assert data["docs"].shape == (6, 8) and data["train_q"].shape == (12, 4)
  for q, d in zip(data["eval_q"], data["eval_doc"]):
    assert set(q[:3]) <= set(data["docs"][d])  # the query's words come from its document


@pytest.mark.slow
def test_splade_toy_quick(tmp_path):
  exp = get("splade-toy")
  assert exp.paper_id == "sparton" and exp.setting == "proxy" and exp.departures
  s = run_experiment("splade-toy", workdir=tmp_path, quick=True, progress=False)
  r = s["results"]
  assert r["loss_early_max_rel_diff"] < 1e-4  # fused and reference heads: same trajectory
  assert abs(r["mrr_at_10_fused"] - r["mrr_at_10_reference"]) < 0.02
  assert r["mrr_at_10_fused"] > 0.3  # retrieval works far above chance (~0.05)
  # compiled temp bytes at B=32, L=256, d=768, V=30522: the reference holds the f32 [B, L, V]
  # activations (1 GB each); the fused head only [B, V]-sized blocks
  assert r["head_temp_bytes_reference"] >= 32 * 256 * 30522 * 4
  assert r["head_temp_bytes_fused"] < r["head_temp_bytes_reference"] / 10
  verdict = {e["metric"]: e["held"] for e in s["expectations"]}
  assert verdict["head_memory_ratio"] and verdict["loss_early_max_rel_diff"]
  assert json.loads((tmp_path / "summary.json").read_text())["metric"] == "mrr_at_10_fused"
  # trained by train(): one checkpoint folder per head, every step's loss in the log
  for head in ("xla", "reference"):
    assert (tmp_path / "checkpoints" / head).is_dir()
  recs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  steps = get("splade-toy").quick["steps"]
  for head in ("xla", "reference"):
    assert [x["step"] for x in recs if x.get("head") == head and x.get("split") == "train"] \
        == list(range(1, steps + 1))
