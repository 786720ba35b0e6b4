"""The concept data generators: their ground truth is what their docstrings say."""

import numpy as np
import pytest

from bottleneck_jax.data import (
    concept_embeddings,
    concept_sprites,
    confounded_embeddings,
    koh_concepts,
    load_breast_cancer_concepts,
    sparse_dictionary,
    two_slot,
)


def test_concept_embeddings_geometry_and_class_table():
  d = concept_embeddings(4000, seed=1)
  assert d.x.shape == (4000, 64) and d.c.shape == (4000, 12) and d.y.dtype == np.int32
  np.testing.assert_allclose(np.linalg.norm(d.x, axis=1), 1, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(d.concept_text, axis=1), 1, atol=1e-5)
  # empirical p(c_k | y) matches the table within sampling error (n/4 ~ 1000 per class)
  for m in range(4):
    emp = d.c[d.y == m].mean(0)
    np.testing.assert_allclose(emp, d.class_concept[m], atol=0.06)
    assert set(np.flatnonzero(d.class_concept[m] > 0.5)) == set(d.signature[m].tolist())
  # the text vectors point near their concept directions
  cos = np.sum(d.concept_text * d.concept_dirs, 1)
  assert cos.min() > 0.9
  # same world, other samples: the same directions; same seed: the same data
  d2 = concept_embeddings(10, seed=2)
  np.testing.assert_array_equal(d2.concept_dirs, d.concept_dirs)
  np.testing.assert_array_equal(concept_embeddings(10, seed=2).x, d2.x)


def test_cone_makes_every_similarity_positive():
  plain = concept_embeddings(500, seed=0)
  cone = concept_embeddings(500, seed=0, cone=2.0)
  assert (plain.x @ plain.concept_text.T).min() < 0
  assert (cone.x @ cone.concept_text.T).min() > 0
  assert (cone.x @ cone.class_text.T).min() > 0


def test_koh_labels_are_argmax_of_the_rule():
  d = koh_concepts(300, seed=3)
  np.testing.assert_array_equal(d.y, np.argmax(d.c @ d.rule, axis=1))
  resid = d.x - d.c @ d.concept_dirs
  assert abs(resid.std() - 0.45) < 0.02


def test_sprites_masks_centres_and_colours():
  s = concept_sprites(50, seed=4)
  np.testing.assert_array_equal(s.y, np.argmax(s.c @ s.rule, axis=1))
  area = s.masks.sum((2, 3))
  expected = np.array([25, 9, 15, 25, 9, 15])  # square, plus, bar (5x5 sprites)
  np.testing.assert_array_equal(area, s.c * expected)
  colours = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1]])
  for i in range(50):
    for k in np.flatnonzero(s.c[i]):
      pix = s.x[i][s.masks[i, k] > 0]
      np.testing.assert_array_equal(pix, np.broadcast_to(colours[k], pix.shape))
      rows, cols = np.nonzero(s.masks[i, k])
      # the centre is the centre of the 5x5 cell the sprite occupies
      assert s.centers[i, k, 0] == rows.min() + 2 - (1 if k % 3 == 2 else 0)
      assert s.centers[i, k, 1] == cols.min() + 2
    for k in np.flatnonzero(1 - s.c[i]):
      assert s.centers[i, k, 0] == -1 and s.masks[i, k].sum() == 0
  # sprites never overlap
  assert s.masks.sum(1).max() <= 1


def test_two_slot_cooccurrence_modes():
  ind = two_slot(2000, seed=0)
  co = two_slot(2000, mode="cooccur", p=1.0, seed=0)
  np.testing.assert_array_equal(co.c[:, 3], co.c[:, 0])
  agree = np.mean(ind.c[:, 3] == ind.c[:, 0])
  assert abs(agree - 0.5) < 0.04
  half = two_slot(4000, mode="cooccur", p=0.5, seed=0)
  assert abs(np.mean(half.c[:, 3] == half.c[:, 0]) - 0.75) < 0.03
  # the left concepts' masks lie in the left half, red objects are red there
  assert co.masks[:, :2, :, 16:].sum() == 0 and co.masks[:, 2:, :, :16].sum() == 0
  i = int(np.flatnonzero(co.c[:, 1] == 1)[0])
  pix = co.x[i][co.masks[i, 1] > 0]
  np.testing.assert_array_equal(pix, np.broadcast_to([1, 0, 0], pix.shape))
  # a circle is the 69 pixels within sqrt(20) of its centre, a square 9x9 = 81 pixels
  area = co.masks[:, 0].sum((1, 2))
  assert set(area[co.c[:, 0] == 1].tolist()) == {69.0}
  assert set(area[co.c[:, 0] == 0].tolist()) == {81.0}


def test_confounded_embeddings_strength():
  d = confounded_embeddings(8000, p=0.95, seed=0)
  assert abs(d.s[d.y == 0].mean() - 0.95) < 0.02
  assert abs(d.s[d.y != 0].mean() - 0.05) < 0.02
  k = confounded_embeddings(8000, p=0.05, variant="knobo", seed=0)
  assert abs(k.s[k.y <= 1].mean() - 0.05) < 0.02 and abs(k.s[k.y >= 2].mean() - 0.95) < 0.02
  resid = k.x - k.c @ k.concept_dirs - 1.5 * k.s[:, None] * k.spurious_dir
  assert abs(resid.std() - 0.45) < 0.01


def test_sparse_dictionary_codes():
  d = sparse_dictionary(500, seed=0)
  assert np.all((d.coef > 0).sum(1) == 3)
  nz = d.coef[d.coef > 0]
  assert nz.min() >= 0.5 and nz.max() <= 1.5
  assert np.abs(d.x - d.coef @ d.atoms).max() < 0.06
  assert np.argmax(d.name_emb @ d.atoms.T, 1).tolist() == list(range(24))
  assert d.distractor_emb.shape == (200, 32)


def test_breast_cancer_concepts():
  d = load_breast_cancer_concepts()
  assert d.x_train.shape == (426, 20) and d.x_test.shape == (143, 20)
  assert len(d.concept_names) == 10 and all(n.startswith("mean ") for n in d.concept_names)
  assert not any(n.startswith("mean ") for n in d.feature_names)
  # binarised at the training median: half of the training set on each side
  np.testing.assert_allclose(d.c_train.mean(0), 0.5, atol=0.01)
  np.testing.assert_allclose(d.x_train.mean(0), 0, atol=1e-5)
  assert d.y_train.sum() + d.y_test.sum() == 212  # malignant tumours


@pytest.mark.parametrize("call, msg", [
    (lambda: concept_embeddings(0), "concept_embeddings: n"),
    (lambda: concept_sprites(5, p_present=2.0), "concept_sprites: p_present"),
    (lambda: two_slot(5, mode="bad"), "two_slot: mode"),
    (lambda: confounded_embeddings(5, p=0.9, variant="x"), "confounded_embeddings: variant"),
    (lambda: sparse_dictionary(5, active=30), "sparse_dictionary: active"),
    (lambda: koh_concepts(5, noise=-1.0), "koh_concepts: noise"),
    (lambda: load_breast_cancer_concepts(test_fraction=1.0),
     "load_breast_cancer_concepts: test_fraction"),
])
def test_bad_arguments(call, msg):
  with pytest.raises((ValueError, TypeError), match=msg):
    call()
