"""Offline data with exact concept ground truth, for concept bottleneck models.

Every generator is seeded NumPy (no network, no model weights) and returns the ground truth that
a concept-bottleneck method is supposed to recover: the concept labels of every example, the
concept directions of an embedding space, the pixel masks and centres of every concept, the
dictionary atoms behind a sparse code.

* :func:`concept_embeddings` (G1): a stand-in for a CLIP embedding space with known concepts.
  A *world* seed fixes unit concept directions ``A[k]`` (``K`` of them in ``R^D``) and a
  class-to-concept table ``P[M, K]`` (0.1 everywhere, 0.9 on three "signature" concepts per
  class). An example draws ``y ~ U{0..M-1}``, ``c ~ Bernoulli(P[y])`` and
  ``e = normalise(sum_k c_k A_k + sigma * eps)``. Concept "text embeddings" are
  ``T_k = normalise(A_k + 0.3 xi / sqrt(D))``; class-name "text" ``t_m = normalise(P[m] A + nu
  zeta)``. With ``cone > 0`` every vector (images and texts) becomes ``normalise(v + cone * mu)``
  for one shared unit vector ``mu``, as real CLIP similarities are all positive.
* :func:`koh_concepts` (G1-Koh): deterministic labels ``y = argmax(c R)`` from fair binary
  concepts, inputs ``x = c A + noise * eps`` (unnormalised).
* :func:`concept_sprites` (G2): 24x24 RGB images on a 4x4 grid of 6x6 cells; concept ``k``
  (of 6) is a 5x5 sprite of its own colour and shape, present with probability 0.5 in a random
  free cell; per-concept pixel masks and centres; labels by the G1-Koh rule.
* :func:`two_slot` (G3): 16x32 images with one object per half, concepts
  ``[L_circle, L_red, R_circle, R_red]``, independent or co-occurring (``R_red = L_circle``
  with probability ``p``).
* :func:`confounded_embeddings` (G4): G1 plus a spurious binary feature ``s`` correlated with
  the class (``P(s=1 | y in S) = p``, ``1 - p`` otherwise) injected along a fixed direction.
* :func:`sparse_dictionary` (G5): non-negative sparse combinations of unit atoms, with noisy
  atom "name" embeddings and distractor "words".
* :func:`load_breast_cancer_concepts`: scikit-learn's breast-cancer data as a tabular CBM:
  inputs = the 20 "error"/"worst" features, concepts = the 10 "mean" features binarised at the
  training median (named), label = malignant.

These generators follow a common design for synthetic concept benchmarks; the exact numbers
(sizes, noise levels) are ours.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bottleneck_jax.core import validation as V

__all__ = [
    "ConceptEmbeddings",
    "ConceptSprites",
    "ConfoundedEmbeddings",
    "KohConcepts",
    "SparseDictionary",
    "TabularConcepts",
    "TwoSlot",
    "concept_embeddings",
    "concept_sprites",
    "confounded_embeddings",
    "koh_concepts",
    "load_breast_cancer_concepts",
    "sparse_dictionary",
    "two_slot",
]


def _normalise(v: np.ndarray) -> np.ndarray:
  return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _check_n(fn: str, n) -> None:
  V.check_scalar(fn, "n", n, low=1, integer=True)


class ConceptEmbeddings(NamedTuple):
  """A G1 sample (:func:`concept_embeddings`).

  Attributes:
    x: image embeddings ``float32[n, D]`` (unit norm).
    c: concept labels ``int32[n, K]`` in {0, 1}.
    y: class labels ``int32[n]``.
    concept_dirs: the true concept directions ``float32[K, D]`` (unit norm, before the cone).
    concept_text: concept "text embeddings" ``float32[K, D]`` (unit norm).
    class_text: class-name "text embeddings" ``float32[M, D]`` (unit norm).
    class_concept: the table ``P[M, K]`` of ``p(c_k = 1 | y = m)``.
    signature: ``int32[M, 3]``, the signature concepts of each class.
    cone_dir: the shared unit vector ``mu`` of the cone option ``float32[D]`` (used only when
      ``cone > 0``).
  """

  x: np.ndarray
  c: np.ndarray
  y: np.ndarray
  concept_dirs: np.ndarray
  concept_text: np.ndarray
  class_text: np.ndarray
  class_concept: np.ndarray
  signature: np.ndarray
  cone_dir: np.ndarray


def _world(world_seed: int, n_concepts: int, n_classes: int, dim: int):
  rng = np.random.default_rng([world_seed, 1])
  a = _normalise(rng.standard_normal((n_concepts, dim)))
  table = np.full((n_classes, n_concepts), 0.1)
  sig = np.stack([rng.choice(n_concepts, 3, replace=False) for _ in range(n_classes)])
  for m in range(n_classes):
    table[m, sig[m]] = 0.9
  text = _normalise(a + 0.3 * rng.standard_normal(a.shape) / np.sqrt(dim))
  mu = _normalise(rng.standard_normal(dim))
  zeta = rng.standard_normal((n_classes, dim))
  return a, table, sig.astype(np.int32), text, mu, zeta


def concept_embeddings(n: int, *, n_concepts: int = 12, n_classes: int = 4, dim: int = 64,
                       sigma: float = 0.35, cone: float = 0.0, class_text_noise: float = 0.0,
                       world_seed: int = 0, seed: int = 0) -> ConceptEmbeddings:
  """G1: a fake CLIP space whose concepts are known exactly (see the module docstring).

  Args:
    n: number of examples.
    n_concepts: ``K`` (>= 3).
    n_classes: ``M``.
    dim: embedding dimension ``D``.
    sigma: noise of the image embeddings before normalisation.
    cone: strength of the shared offset ``mu`` (0: none; 2.0 emulates CLIP's positive cone).
    class_text_noise: ``nu``, noise of the class-name text embeddings.
    world_seed: fixes the concept directions, the class table and the texts.
    seed: fixes the examples.

  Returns:
    A :class:`ConceptEmbeddings`.

  Example:
    >>> from bottleneck_jax.data import concept_embeddings
    >>> d = concept_embeddings(100, seed=0)
    >>> d.x.shape, d.c.shape, d.concept_text.shape
    ((100, 64), (100, 12), (12, 64))
  """
  fn = "concept_embeddings"
  _check_n(fn, n)
  V.check_scalar(fn, "n_concepts", n_concepts, low=3, integer=True)
  V.check_scalar(fn, "n_classes", n_classes, low=2, integer=True)
  V.check_scalar(fn, "dim", dim, low=2, integer=True)
  V.check_scalar(fn, "sigma", sigma, low=0)
  V.check_scalar(fn, "cone", cone, low=0)
  V.check_scalar(fn, "class_text_noise", class_text_noise, low=0)
  a, table, sig, text, mu, zeta = _world(world_seed, n_concepts, n_classes, dim)
  rng = np.random.default_rng([world_seed, seed, 2])
  y = rng.integers(0, n_classes, n)
  c = (rng.random((n, n_concepts)) < table[y]).astype(np.int32)
  x = _normalise(c @ a + sigma * rng.standard_normal((n, dim)))
  class_text = _normalise(table @ a + class_text_noise * zeta)
  if cone > 0:
    x, text, class_text = (_normalise(v + cone * mu) for v in (x, text, class_text))
  f = np.float32
  return ConceptEmbeddings(x.astype(f), c, y.astype(np.int32), a.astype(f), text.astype(f),
                           class_text.astype(f), table.astype(f), sig, mu.astype(f))


class KohConcepts(NamedTuple):
  """A G1-Koh sample (:func:`koh_concepts`): ``x[n, D]``, ``c[n, K]``, ``y[n]``, the concept
  directions ``concept_dirs[K, D]`` and the label rule ``rule[K, M]`` (``y = argmax(c R)``)."""

  x: np.ndarray
  c: np.ndarray
  y: np.ndarray
  concept_dirs: np.ndarray
  rule: np.ndarray


def koh_concepts(n: int, *, n_concepts: int = 12, n_classes: int = 4, dim: int = 64,
                 noise: float = 0.45, world_seed: int = 0, seed: int = 0) -> KohConcepts:
  """G1-Koh: labels that are a deterministic function of the concepts.

  ``c ~ Bernoulli(0.5)^K``, ``y = argmax_m (c R)_m`` with a fixed ``R ~ N(0, 1)^{K x M}``,
  ``x = c A + noise * eps`` with unit concept directions ``A`` (no normalisation).

  Args:
    n: number of examples.
    n_concepts, n_classes, dim: ``K``, ``M``, ``D``.
    noise: input noise.
    world_seed: fixes ``A`` and ``R``.
    seed: fixes the examples.

  Returns:
    A :class:`KohConcepts`.

  Example:
    >>> from bottleneck_jax.data import koh_concepts
    >>> koh_concepts(10).x.shape
    (10, 64)
  """
  fn = "koh_concepts"
  _check_n(fn, n)
  V.check_scalar(fn, "n_concepts", n_concepts, low=1, integer=True)
  V.check_scalar(fn, "n_classes", n_classes, low=2, integer=True)
  V.check_scalar(fn, "dim", dim, low=1, integer=True)
  V.check_scalar(fn, "noise", noise, low=0)
  w = np.random.default_rng([world_seed, 3])
  a = _normalise(w.standard_normal((n_concepts, dim)))
  rule = w.standard_normal((n_concepts, n_classes))
  rng = np.random.default_rng([world_seed, seed, 4])
  c = (rng.random((n, n_concepts)) < 0.5).astype(np.int32)
  y = np.argmax(c @ rule, axis=1).astype(np.int32)
  x = c @ a + noise * rng.standard_normal((n, dim))
  return KohConcepts(x.astype(np.float32), c, y, a.astype(np.float32),
                     rule.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# G2: sprites

_SPRITE_COLOURS = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1]],
                          np.float32)


def _sprite_shapes() -> np.ndarray:
  sq = np.ones((5, 5), bool)
  plus = np.zeros((5, 5), bool)
  plus[2, :] = plus[:, 2] = True
  bar = np.zeros((5, 5), bool)
  bar[1:4, :] = True
  return np.stack([sq, plus, bar])


class ConceptSprites(NamedTuple):
  """A G2 sample (:func:`concept_sprites`).

  Attributes:
    x: images ``float32[n, 24, 24, 3]``.
    c: concept labels ``int32[n, 6]``.
    y: class labels ``int32[n]`` (``argmax(c R)``).
    masks: ``float32[n, 6, 24, 24]``, the pixels of each present sprite (zeros when absent).
    centers: ``float32[n, 6, 2]``, (row, col) of each sprite's centre (-1 when absent).
    rule: the label rule ``R[6, M]``.
  """

  x: np.ndarray
  c: np.ndarray
  y: np.ndarray
  masks: np.ndarray
  centers: np.ndarray
  rule: np.ndarray


def concept_sprites(n: int, *, n_classes: int = 4, p_present: float = 0.5,
                    background_noise: float = 0.05, world_seed: int = 0,
                    seed: int = 0) -> ConceptSprites:
  """G2: sprite images with per-concept masks and centres.

  A 24x24x3 canvas of Gaussian noise (``background_noise``) split into a 4x4 grid of 6x6 cells;
  concept ``k`` (of 6: red square, green plus, blue bar, yellow square, cyan plus, magenta bar)
  is present with probability ``p_present`` and drawn as a 5x5 sprite in a random free cell.
  Labels follow the G1-Koh rule ``y = argmax(c R)`` with ``R`` fixed by ``world_seed``.

  Args:
    n: number of images.
    n_classes: ``M``.
    p_present: probability that a concept is present.
    background_noise: standard deviation of the background noise.
    world_seed: fixes the label rule.
    seed: fixes the images.

  Returns:
    A :class:`ConceptSprites`.

  Example:
    >>> from bottleneck_jax.data import concept_sprites
    >>> s = concept_sprites(4)
    >>> s.x.shape, s.masks.shape
    ((4, 24, 24, 3), (4, 6, 24, 24))
  """
  fn = "concept_sprites"
  _check_n(fn, n)
  V.check_scalar(fn, "n_classes", n_classes, low=2, integer=True)
  V.check_scalar(fn, "p_present", p_present, low=0, high=1)
  V.check_scalar(fn, "background_noise", background_noise, low=0)
  k = 6
  rule = np.random.default_rng([world_seed, 5]).standard_normal((k, n_classes))
  rng = np.random.default_rng([world_seed, seed, 6])
  c = (rng.random((n, k)) < p_present).astype(np.int32)
  y = np.argmax(c @ rule, axis=1).astype(np.int32)
  x = (background_noise * rng.standard_normal((n, 24, 24, 3))).astype(np.float32)
  masks = np.zeros((n, k, 24, 24), np.float32)
  centers = np.full((n, k, 2), -1.0, np.float32)
  shapes = _sprite_shapes()
  cells = np.argsort(rng.random((n, 16)), axis=1)  # a random order of the 16 cells per image
  for i in range(n):
    for j, kk in enumerate(np.flatnonzero(c[i])):
      r0, c0 = divmod(int(cells[i, j]), 4)
      r0, c0 = 6 * r0, 6 * c0
      shape = shapes[kk % 3]
      masks[i, kk, r0:r0 + 5, c0:c0 + 5] = shape
      x[i, r0:r0 + 5, c0:c0 + 5][shape] = _SPRITE_COLOURS[kk]
      centers[i, kk] = (r0 + 2, c0 + 2)
  return ConceptSprites(x, c, y, masks, centers, rule.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# G3: two slots

class TwoSlot(NamedTuple):
  """A G3 sample (:func:`two_slot`).

  Attributes:
    x: images ``float32[n, 16, 32, 3]``.
    c: concepts ``int32[n, 4]``: ``[L_circle, L_red, R_circle, R_red]`` (not circle = square,
      not red = blue).
    y: a label ``int32[n]`` in {0..3}: ``2 L_circle + R_red``.
    masks: ``float32[n, 4, 16, 32]``: the pixels of the object each concept describes (the
      left object for ``L_*``, the right one for ``R_*``).
  """

  x: np.ndarray
  c: np.ndarray
  y: np.ndarray
  masks: np.ndarray


def two_slot(n: int, *, mode: str = "independent", p: float = 1.0,
             background_noise: float = 0.05, seed: int = 0) -> TwoSlot:
  """G3: two objects, one per half, with controllable concept co-occurrence.

  Each half (16x16) holds one object of shape circle (the 69 pixels within ``sqrt(20)`` of
  the centre) or square (side 9) and colour red or blue, at a centre jittered by up to 2
  pixels. ``mode="independent"``: all four concepts are fair coins; ``mode="cooccur"``:
  ``R_red`` copies ``L_circle`` with probability ``p`` (``p = 1``: the two always co-occur, as
  with class-level labels).

  Args:
    n: number of images.
    mode: ``"independent"`` or ``"cooccur"``.
    p: co-occurrence probability (``mode="cooccur"``).
    background_noise: standard deviation of the background noise.
    seed: fixes the images.

  Returns:
    A :class:`TwoSlot`.

  Example:
    >>> from bottleneck_jax.data import two_slot
    >>> two_slot(3, mode="cooccur", p=1.0).c.shape
    (3, 4)
  """
  fn = "two_slot"
  _check_n(fn, n)
  V.check_choice(fn, "mode", mode, ("independent", "cooccur"))
  V.check_scalar(fn, "p", p, low=0, high=1)
  V.check_scalar(fn, "background_noise", background_noise, low=0)
  rng = np.random.default_rng([seed, 7])
  c = (rng.random((n, 4)) < 0.5).astype(np.int32)
  if mode == "cooccur":
    copy = rng.random(n) < p
    c[:, 3] = np.where(copy, c[:, 0], c[:, 3])
  x = (background_noise * rng.standard_normal((n, 16, 32, 3))).astype(np.float32)
  masks = np.zeros((n, 4, 16, 32), np.float32)
  rr, cc = np.mgrid[0:16, 0:16]
  jitter = rng.integers(-2, 3, (n, 2, 2))
  for i in range(n):
    for side in range(2):
      circle, red = c[i, 2 * side], c[i, 2 * side + 1]
      cy, cx = 8 + jitter[i, side, 0], 8 + jitter[i, side, 1]
      if circle:
        m = (rr - cy) ** 2 + (cc - cx) ** 2 <= 20
      else:
        m = (np.abs(rr - cy) <= 4) & (np.abs(cc - cx) <= 4)
      colour = np.array([1, 0, 0] if red else [0, 0, 1], np.float32)
      x[i, :, 16 * side:16 * side + 16][m] = colour
      masks[i, 2 * side:2 * side + 2, :, 16 * side:16 * side + 16] = m
  y = (2 * c[:, 0] + c[:, 3]).astype(np.int32)
  return TwoSlot(x, c, y, masks)


# ---------------------------------------------------------------------------------------------
# G4: confounded embeddings

class ConfoundedEmbeddings(NamedTuple):
  """A G4 sample (:func:`confounded_embeddings`).

  Attributes:
    x: embeddings ``float32[n, D]``.
    c: the true concepts ``int32[n, K]``.
    y: labels ``int32[n]``.
    s: the spurious feature ``int32[n]``.
    concept_dirs: ``float32[K, D]``; spurious_dir: ``float32[D]`` (unit, orthogonal to none in
      particular).
    concept_text: concept "text embeddings" ``float32[K, D]``.
    class_concept: ``P[M, K]``.
  """

  x: np.ndarray
  c: np.ndarray
  y: np.ndarray
  s: np.ndarray
  concept_dirs: np.ndarray
  spurious_dir: np.ndarray
  concept_text: np.ndarray
  class_concept: np.ndarray


def confounded_embeddings(n: int, *, p: float, variant: str = "pcbm", n_concepts: int = 12,
                          n_classes: int = 4, dim: int = 64, world_seed: int = 0,
                          seed: int = 0) -> ConfoundedEmbeddings:
  """G4: G1 plus a spurious feature correlated with the class.

  ``s ~ Bernoulli(p)`` for classes in ``S`` and ``Bernoulli(1 - p)`` otherwise, added along a
  fixed unit direction ``a``:

  * ``variant="pcbm"``: ``S = {0}``, ``x = normalise(normalise(c A + 0.35 eps) + s a)``;
  * ``variant="knobo"``: ``S = {0, 1}``, ``x = c A + 1.5 s a + 0.45 eps`` (unnormalised).

  Train on ``p`` near 1; test in domain with the same ``p``, out of domain with ``p = 0.5``
  (shift) or ``p`` near 0 (reversed).

  Args:
    n: number of examples.
    p: the confounding strength in [0, 1].
    variant: ``"pcbm"`` or ``"knobo"``.
    n_concepts, n_classes, dim: ``K``, ``M``, ``D``.
    world_seed: fixes the world (shared with :func:`concept_embeddings`, plus ``a``).
    seed: fixes the examples.

  Returns:
    A :class:`ConfoundedEmbeddings`.

  Example:
    >>> from bottleneck_jax.data import confounded_embeddings
    >>> confounded_embeddings(5, p=0.95).s.shape
    (5,)
  """
  fn = "confounded_embeddings"
  _check_n(fn, n)
  V.check_scalar(fn, "p", p, low=0, high=1)
  V.check_choice(fn, "variant", variant, ("pcbm", "knobo"))
  V.check_scalar(fn, "n_concepts", n_concepts, low=3, integer=True)
  V.check_scalar(fn, "n_classes", n_classes, low=2, integer=True)
  V.check_scalar(fn, "dim", dim, low=2, integer=True)
  a, table, _, text, _, _ = _world(world_seed, n_concepts, n_classes, dim)
  sdir = _normalise(np.random.default_rng([world_seed, 8]).standard_normal(dim))
  rng = np.random.default_rng([world_seed, seed, 9])
  y = rng.integers(0, n_classes, n)
  c = (rng.random((n, n_concepts)) < table[y]).astype(np.int32)
  in_s = y == 0 if variant == "pcbm" else y <= 1
  s = (rng.random(n) < np.where(in_s, p, 1 - p)).astype(np.int32)
  eps = rng.standard_normal((n, dim))
  if variant == "pcbm":
    x = _normalise(_normalise(c @ a + 0.35 * eps) + s[:, None] * sdir)
  else:
    x = c @ a + 1.5 * s[:, None] * sdir + 0.45 * eps
  f = np.float32
  return ConfoundedEmbeddings(x.astype(f), c, y.astype(np.int32), s, a.astype(f),
                              sdir.astype(f), text.astype(f), table.astype(f))


# ---------------------------------------------------------------------------------------------
# G5: sparse dictionary

class SparseDictionary(NamedTuple):
  """A G5 sample (:func:`sparse_dictionary`).

  Attributes:
    x: ``float32[n, d]`` data.
    coef: ``float32[n, n_atoms]`` the true non-negative sparse codes.
    atoms: ``float32[n_atoms, d]`` unit atoms.
    name_emb: ``float32[n_atoms, d]``: the "text embedding" of each atom's name.
    distractor_emb: ``float32[n_distractors, d]``: embeddings of random other "words".
  """

  x: np.ndarray
  coef: np.ndarray
  atoms: np.ndarray
  name_emb: np.ndarray
  distractor_emb: np.ndarray


def sparse_dictionary(n: int, *, dim: int = 32, n_atoms: int = 24, active: int = 3,
                      n_distractors: int = 200, noise: float = 0.01, world_seed: int = 0,
                      seed: int = 0) -> SparseDictionary:
  """G5: sparse non-negative combinations of unit atoms (for dictionary discovery).

  Each example is ``x = sum_{j in S} a_j d_j + noise * eps`` with ``|S| = active`` random atoms
  and ``a_j ~ U(0.5, 1.5)``. Atom names: ``normalise(d_j + 0.1 xi)``; distractors: random unit
  vectors.

  Args:
    n: number of examples.
    dim: ``d``.
    n_atoms: dictionary size.
    active: atoms per example.
    n_distractors: distractor words.
    noise: additive noise.
    world_seed: fixes the atoms and words.
    seed: fixes the examples.

  Returns:
    A :class:`SparseDictionary`.

  Example:
    >>> from bottleneck_jax.data import sparse_dictionary
    >>> sparse_dictionary(8).x.shape
    (8, 32)
  """
  fn = "sparse_dictionary"
  _check_n(fn, n)
  V.check_scalar(fn, "dim", dim, low=1, integer=True)
  V.check_scalar(fn, "n_atoms", n_atoms, low=1, integer=True)
  V.check_scalar(fn, "active", active, low=1, high=n_atoms, integer=True)
  V.check_scalar(fn, "n_distractors", n_distractors, low=0, integer=True)
  V.check_scalar(fn, "noise", noise, low=0)
  w = np.random.default_rng([world_seed, 10])
  atoms = _normalise(w.standard_normal((n_atoms, dim)))
  names = _normalise(atoms + 0.1 * w.standard_normal(atoms.shape))
  distract = _normalise(w.standard_normal((n_distractors, dim)))
  rng = np.random.default_rng([world_seed, seed, 11])
  idx = np.argsort(rng.random((n, n_atoms)), axis=1)[:, :active]
  coef = np.zeros((n, n_atoms))
  np.put_along_axis(coef, idx, rng.uniform(0.5, 1.5, (n, active)), axis=1)
  x = coef @ atoms + noise * rng.standard_normal((n, dim))
  f = np.float32
  return SparseDictionary(x.astype(f), coef.astype(f), atoms.astype(f), names.astype(f),
                          distract.astype(f))


# ---------------------------------------------------------------------------------------------
# tabular CBM

class TabularConcepts(NamedTuple):
  """A tabular CBM split (:func:`load_breast_cancer_concepts`): standardised inputs
  ``x_*[n, 20]``, concepts ``c_*[n, 10]``, labels ``y_*[n]`` (1 = malignant), and the
  ``concept_names`` / ``feature_names``."""

  x_train: np.ndarray
  c_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  c_test: np.ndarray
  y_test: np.ndarray
  concept_names: tuple[str, ...]
  feature_names: tuple[str, ...]


def load_breast_cancer_concepts(*, seed: int = 0, test_fraction: float = 0.25
                                ) -> TabularConcepts:
  """scikit-learn's breast-cancer data (569 tumours) as a concept bottleneck task.

  Inputs: the 20 "... error" and "worst ..." features (standardised with training statistics);
  concepts: the 10 "mean ..." features (``mean radius``, ``mean texture`` ...) binarised at
  their training median; label: 1 = malignant (scikit-learn's target 0). Stratified split.

  Args:
    seed: the split's seed.
    test_fraction: fraction held out for testing, in (0, 1).

  Returns:
    A :class:`TabularConcepts`.

  Example:
    >>> from bottleneck_jax.data import load_breast_cancer_concepts
    >>> d = load_breast_cancer_concepts()
    >>> d.x_train.shape[1], d.c_train.shape[1], d.concept_names[0]
    (20, 10, 'mean radius')
  """
  fn = "load_breast_cancer_concepts"
  V.check_scalar(fn, "seed", seed, low=0, integer=True)
  V.check_scalar(fn, "test_fraction", test_fraction, low=0, high=1, low_inclusive=False,
                 high_inclusive=False)
  from sklearn.datasets import load_breast_cancer
  from sklearn.model_selection import train_test_split
  raw = load_breast_cancer()
  names = [str(s) for s in raw.feature_names]
  c_idx = [i for i, s in enumerate(names) if s.startswith("mean ")]
  x_idx = [i for i, s in enumerate(names) if not s.startswith("mean ")]
  y = (raw.target == 0).astype(np.int32)
  tr, te = train_test_split(np.arange(len(y)), test_size=test_fraction, random_state=seed,
                            stratify=y)
  data = raw.data
  med = np.median(data[tr][:, c_idx], axis=0)
  c = (data[:, c_idx] > med).astype(np.int32)
  x = data[:, x_idx]
  mean, std = x[tr].mean(0), x[tr].std(0)
  x = ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)
  return TabularConcepts(x[tr], c[tr], y[tr], x[te], c[te], y[te],
                         tuple(names[i] for i in c_idx), tuple(names[i] for i in x_idx))
