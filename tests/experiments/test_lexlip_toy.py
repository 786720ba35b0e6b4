"""lexlip-toy: sparse lexicon-weighting image-text retrieval on digits, far above chance."""

import numpy as np
import pytest

from bottleneck_jax.experiments import get, run_experiment
from bottleneck_jax.experiments.lexlip_toy import (
    _patches,
    chance_recall_at_k,
    ink_levels,
    make_captions,
    recall_at_k,
    word_ids,
)


def test_recall_at_k_by_hand():
  scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.0, 1.0, 0.5]])
  q = np.array([0, 0, 1])
  g = np.array([0, 1, 1])
  # top-1 items: 0 (group 0, hit), 2 (group 1, miss), 1 (group 1, hit)
  assert recall_at_k(scores, q, g, 1) == pytest.approx(2 / 3)
  # row 1 ranks items 2, 1 (both group 1) before its only relevant item 0
  assert recall_at_k(scores, q, g, 2) == pytest.approx(2 / 3)
  assert recall_at_k(scores, q, g, 3) == pytest.approx(1.0)


def test_chance_recall_matches_random_rankings():
  rng = np.random.default_rng(0)
  g = rng.integers(0, 6, size=40)
  hits = [recall_at_k(rng.random((40, 40)), g, g, 3) for _ in range(400)]
  assert abs(np.mean(hits) - chance_recall_at_k(g, g, 3)) < 0.01


def test_captions_and_ink_levels():
  rng = np.random.default_rng(1)
  x = rng.random((300, 64)).astype(np.float32)
  y = np.repeat(np.arange(10), 30)
  lev, thr = ink_levels(x, y)
  assert thr.shape == (10, 2) and np.all(np.bincount(lev, minlength=3) == 100)
  caps = make_captions(y, lev, vocab=64, synonyms=3, max_noise=4, seed=0)
  w = word_ids(3)
  assert caps.shape == (300, 6)
  for c, yi, li in zip(caps, y, lev):
    words = set(c[c > 0].tolist())
    assert len(words & set(w["digit"][yi].tolist())) == 1
    assert len(words & set(w["ink"][li].tolist())) == 1
    assert 3 <= int(np.sum(c > 0)) <= 6


def test_patches_are_4x4_blocks():
  img = np.arange(64, dtype=np.float32).reshape(1, 64)
  p = np.asarray(_patches(img))
  grid = img.reshape(8, 8)
  np.testing.assert_array_equal(p[0, 1], grid[:4, 4:].ravel())
  np.testing.assert_array_equal(p[0, 2], grid[4:, :4].ravel())


@pytest.mark.slow
def test_quick_run(tmp_path):
  exp = get("lexlip-toy")
  assert exp.paper_id == "lexlip" and exp.metric == "t2i_recall_at_1"
  assert exp.defaults["flops_weight"] == 0.002      # the paper's weight
  assert get("lexlip-toy-tuned").defaults["flops_weight"] == 0.5
  s = run_experiment("lexlip-toy", workdir=tmp_path, quick=True, progress=False)
  r = s["results"]
  assert 0.02 < r["chance_recall_at_1"] < 0.05          # 30 balanced groups
  assert r["t2i_recall_at_1"] > 5 * r["chance_recall_at_1"]
  assert r["i2t_recall_at_1"] > 5 * r["chance_recall_at_1"]
  assert r["t2i_recall_at_5"] > r["chance_recall_at_5"] + 0.3
  assert r["final_loss"] < r["first_loss"]
  assert r["image_sparsity"] > 0.3 and r["text_sparsity"] > 0.3   # relu zeros, at least
  assert (tmp_path / "plots" / "retrieval.png").exists()
  assert (tmp_path / "checkpoints" / str(exp.quick["steps"])).is_dir()
