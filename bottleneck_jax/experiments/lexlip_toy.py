"""``lexlip-toy``: image-text retrieval with sparse lexicon-weighting representations (LexLIP).

Paper: Luo et al., *LexLIP: Lexicon-Bottlenecked Language-Image Pre-Training for Large-Scale
Image-Text Retrieval*, ICCV 2023, https://arxiv.org/abs/2302.02908. Both towers end in an MLM
head over the word vocabulary and are max-pooled into sparse, non-negative word weights
(``log(1 + max_l relu(z))``, :func:`~bottleneck_jax.efficiency.lexicon_weighting`);
image-text matching is a dot product of those weights, so retrieval can run on an inverted index
(5.5-221.3x faster than CLIP in the paper). Training uses the in-batch symmetric contrastive loss
on L2-normalised representations plus the FLOPS regulariser
(:func:`~bottleneck_jax.efficiency.lexlip_contrastive_loss`).

Data (offline, exact ground truth). "Images" are scikit-learn's 8x8 digits (1347 train / 450
test, stratified split). Each image gets a group ``g = (digit, ink)``: ``ink`` is the tercile
(thin / regular / bold) of the image's total ink *within its digit class* (thresholds from the
training images), so the 30 groups are balanced and the ink attribute is visible only in the
pixels. A caption is a shuffled bag of words over a ``vocab``-word vocabulary (0 = padding): one
of ``synonyms`` words for the digit, one of two words for the ink level, and 1 to ``max_noise``
noise words; captions of the test images are fresh draws. Retrieval is scored by group: a
retrieved image (text) is relevant when it has the query's group.

Towers. Image: the image goes through a small MLP into a global vector, each 4x4 patch (L=4)
through a linear map, tokens ``LN(gelu(W [patch + pos + global]))`` ``[B, 4, d]`` and a
:class:`~bottleneck_jax.efficiency.LexiconHead` (no mask, as LexLIP does for patches).
Text: word embedding + position, a context-mixing layer (each token plus a projection of the
masked mean, as in ``splade-toy``), dense + GELU + LayerNorm and its own ``LexiconHead``
(masked). Adam, batches of ``batch_size`` captions from distinct groups (no false in-batch
negatives).

Metrics on the held-out test set: text->image and image->text recall@1 / @5 (at least one
relevant item among the top k), with the exact chance levels of a random ranking
(``1 - C(N - n_g, k) / C(N, k)`` averaged over queries; about 0.033 for R@1), the number of
non-zero vocabulary weights per representation (sparsity), and how often the top-weighted word of
an image is one of its digit's words (whether the lexicon is readable).

Measured (``bottleneck-jax run lexlip-toy --set flops_weight=W``, 600 steps, seed 0; R@1 is
text->image, nnz of 256 words for images / texts): W=0.002 (the paper's weight) R@1 0.88, nnz
61 / 61; W=0.05: 0.84, 59 / 58; W=0.2: 0.80, 46 / 40; W=0.5 (default): 0.88, 31 / 29;
W=1: 0.72, 25 / 20. Seeds 1 and 2 at W=0.5: R@1 0.83 and 0.86. Most of the sparsity comes from
the relu of the lexicon head; the FLOPS term, computed on L2-normalised representations, needs
a weight far above the paper's 0.002 to act at this scale. The top-weighted word of an image is
practically never its digit's word: without the paper's MLM / lexicon-bottleneck pre-training,
the contrastive loss alone aligns the two towers on *some* shared words, not on the caption's
words.

Departures: toy towers (no BEiT / BERT), no lexicon-bottleneck pre-training phase, no MoCo
queue; ``flops_weight`` (0.5) and ``temperature`` (0.05) are our choices for this scale (the
paper's code uses 0.002 for FLOPS).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bottleneck_jax.efficiency import LexiconHead, lexlip_contrastive_loss
from bottleneck_jax.experiments.registry import Experiment, RunContext, register
from bottleneck_jax.experiments.splade_toy import ContextEncoder

PAPER_ID = "lexlip"
NUM_CLASSES = 10
INK_LEVELS = 3

# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------


def word_ids(synonyms: int) -> dict[str, np.ndarray]:
  """Word ids: ``digit[c, s]`` (synonym ``s`` of digit ``c``), ``ink[k, s]``, first noise id."""
  digit = 1 + np.arange(NUM_CLASSES * synonyms).reshape(NUM_CLASSES, synonyms)
  ink = 1 + NUM_CLASSES * synonyms + np.arange(INK_LEVELS * 2).reshape(INK_LEVELS, 2)
  return {"digit": digit, "ink": ink, "first_noise": int(ink.max()) + 1}


def ink_levels(x: np.ndarray, y: np.ndarray, thresholds: np.ndarray | None = None):
  """Per-class ink terciles: ``(levels [n] in {0,1,2}, thresholds [10, 2])``."""
  ink = x.sum(axis=1)
  if thresholds is None:
    thresholds = np.stack([np.quantile(ink[y == c], [1 / 3, 2 / 3]) for c in range(NUM_CLASSES)])
  lev = (ink > thresholds[y, 0]).astype(np.int32) + (ink > thresholds[y, 1]).astype(np.int32)
  return lev, thresholds


def make_captions(y: np.ndarray, ink: np.ndarray, *, vocab: int, synonyms: int, max_noise: int,
                  seed: int) -> np.ndarray:
  """Captions ``int32 [n, 2 + max_noise]`` (0-padded): digit word, ink word, noise, shuffled."""
  w = word_ids(synonyms)
  if w["first_noise"] >= vocab:
    raise ValueError(f"make_captions: vocab must exceed {w['first_noise']}, got {vocab}")
  rng = np.random.default_rng(seed)
  n, length = len(y), 2 + max_noise
  caps = np.zeros((n, length), np.int32)
  for i in range(n):
    words = [w["digit"][y[i], rng.integers(synonyms)], w["ink"][ink[i], rng.integers(2)]]
    words += list(rng.integers(w["first_noise"], vocab, size=rng.integers(1, max_noise + 1)))
    rng.shuffle(words)
    caps[i, :len(words)] = words
  return caps


def make_data(cfg: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
  from bottleneck_jax.data import load_digits
  ds = load_digits(seed=int(cfg["data_seed"]))
  ink_tr, thr = ink_levels(ds.x_train, ds.y_train)
  ink_te, _ = ink_levels(ds.x_test, ds.y_test, thr)
  kw = {"vocab": int(cfg["vocab"]), "synonyms": int(cfg["synonyms"]),
            "max_noise": int(cfg["max_noise"])}
  return {
      "x_train": ds.x_train, "y_train": ds.y_train, "g_train": ds.y_train * INK_LEVELS + ink_tr,
      "t_train": make_captions(ds.y_train, ink_tr, seed=seed, **kw),
      "x_test": ds.x_test, "y_test": ds.y_test, "g_test": ds.y_test * INK_LEVELS + ink_te,
      "t_test": make_captions(ds.y_test, ink_te, seed=seed + 1, **kw),
  }


# ------------------------------------------------------------------------------------------------
# Towers
# ------------------------------------------------------------------------------------------------


def _patches(x):
  """``[B, 64]`` 8x8 images -> ``[B, 4, 16]`` 4x4 patches (row-major)."""
  b = x.shape[0]
  p = jnp.reshape(x, (b, 2, 4, 2, 4)).transpose(0, 1, 3, 2, 4)
  return jnp.reshape(p, (b, 4, 16))


class ImageTower(nnx.Module):
  """Digits -> patch tokens ``[B, 4, d]`` -> lexicon weights ``[B, V]``."""

  def __init__(self, vocab: int, dim: int, *, rngs: nnx.Rngs):
    self.glob1 = nnx.Linear(64, 2 * dim, rngs=rngs)
    self.glob2 = nnx.Linear(2 * dim, dim, rngs=rngs)
    self.patch = nnx.Linear(16, dim, rngs=rngs)
    self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (4, dim)))
    self.mix = nnx.Linear(dim, dim, rngs=rngs)
    self.ln = nnx.LayerNorm(dim, rngs=rngs)
    self.head = LexiconHead(dim, vocab, rngs=rngs)

  def tokens(self, x):
    g = self.glob2(jax.nn.gelu(self.glob1(x)))
    t = self.patch(_patches(x)) + self.pos[...] + g[:, None, :]
    return self.ln(jax.nn.gelu(self.mix(t)))

  def __call__(self, x):
    return self.head(self.tokens(x))


class TextTower(nnx.Module):
  """Captions -> context-mixed tokens ``[B, L, d]`` -> lexicon weights ``[B, V]`` (masked)."""

  def __init__(self, vocab: int, dim: int, max_len: int, *, rngs: nnx.Rngs):
    self.encoder = ContextEncoder(vocab, dim, max_len, rngs=rngs)
    self.head = LexiconHead(dim, vocab, rngs=rngs)

  def __call__(self, tokens):
    x, mask = self.encoder(tokens)
    return self.head(x, mask)


class LexLIPToy(nnx.Module):
  def __init__(self, vocab: int, dim: int, max_len: int, *, rngs: nnx.Rngs):
    self.image = ImageTower(vocab, dim, rngs=rngs)
    self.text = TextTower(vocab, dim, max_len, rngs=rngs)


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------


def recall_at_k(scores: np.ndarray, q_groups: np.ndarray, g_groups: np.ndarray, k: int) -> float:
  """Fraction of queries with at least one same-group item among the top ``k`` (ties by index).

  ``scores [Q, G]``; the ranking is a stable descending sort.
  """
  top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  return float(np.mean(np.any(g_groups[top] == q_groups[:, None], axis=1)))


def chance_recall_at_k(q_groups: np.ndarray, g_groups: np.ndarray, k: int) -> float:
  """Expected recall@k of a uniformly random ranking: ``mean_q 1 - C(N - n_q, k) / C(N, k)``."""
  n = len(g_groups)
  counts = {g: int(np.sum(g_groups == g)) for g in np.unique(q_groups)}
  return float(np.mean([1.0 - math.comb(n - counts[g], k) / math.comb(n, k) for g in q_groups]))


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


def _distinct_group_batch(rng, groups: np.ndarray, size: int) -> np.ndarray:
  perm = rng.permutation(len(groups))
  _, first = np.unique(groups[perm], return_index=True)
  sel = perm[np.sort(first)]
  return rng.permutation(sel)[:size]


def train(data: dict[str, np.ndarray], cfg: dict[str, Any], *, seed: int, log=None
          ) -> tuple[LexLIPToy, list[float], float]:
  """Trains both towers with the LexLIP loss; returns ``(model, losses, seconds)``."""
  vocab, dim = int(cfg["vocab"]), int(cfg["dim"])
  model = LexLIPToy(vocab, dim, data["t_train"].shape[1], rngs=nnx.Rngs(seed))
  opt = nnx.Optimizer(model, optax.adam(float(cfg["learning_rate"])), wrt=nnx.Param)
  temp, lam = float(cfg["temperature"]), float(cfg["flops_weight"])

  @nnx.jit
  def step(model, opt, x, t):
    def loss_fn(model):
      loss, aux = lexlip_contrastive_loss(model.text(t), model.image(x), temperature=temp,
                                          flops_weight=lam)
      return loss, aux["contrastive"]
    (loss, ce), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    opt.update(model, grads)
    return loss, ce

  rng = np.random.default_rng(seed + 7)
  xtr, ttr = jnp.asarray(data["x_train"]), jnp.asarray(data["t_train"])
  losses = []
  t0 = time.time()
  steps = int(cfg["steps"])
  for s in range(steps):
    idx = jnp.asarray(_distinct_group_batch(rng, data["g_train"], int(cfg["batch_size"])))
    loss, ce = step(model, opt, xtr[idx], ttr[idx])
    losses.append(float(loss))
    if log is not None and (s % 25 == 0 or s == steps - 1):
      log(s, loss=float(loss), contrastive=float(ce))
  return model, losses, time.time() - t0


def evaluate(model: LexLIPToy, data: dict[str, np.ndarray], synonyms: int) -> dict[str, float]:
  """Held-out retrieval, chance levels, sparsity and readable top words."""
  img = np.asarray(nnx.jit(lambda m, x: m.image(x))(model, jnp.asarray(data["x_test"])))
  txt = np.asarray(nnx.jit(lambda m, t: m.text(t))(model, jnp.asarray(data["t_test"])))
  g = data["g_test"]
  scores = txt @ img.T  # dot products of the sparse weights (what an inverted index computes)
  out = {}
  for k in (1, 5):
    out[f"t2i_recall_at_{k}"] = recall_at_k(scores, g, g, k)
    out[f"i2t_recall_at_{k}"] = recall_at_k(scores.T, g, g, k)
    out[f"chance_recall_at_{k}"] = chance_recall_at_k(g, g, k)
  # digit-only relevance (the ink tercile is the hard, fine-grained part)
  y = data["y_test"]
  out["t2i_digit_recall_at_1"] = recall_at_k(scores, y, y, 1)
  vocab = img.shape[1]
  out["image_nonzeros"] = float(np.mean(np.sum(img > 0, axis=1)))
  out["text_nonzeros"] = float(np.mean(np.sum(txt > 0, axis=1)))
  out["image_sparsity"] = 1.0 - out["image_nonzeros"] / vocab
  out["text_sparsity"] = 1.0 - out["text_nonzeros"] / vocab
  digit_words = word_ids(synonyms)["digit"]
  top = np.argmax(img, axis=1)
  out["image_top_word_is_digit_word"] = float(np.mean(
      [top[i] in digit_words[y[i]] for i in range(len(y))]))
  return out


def run(ctx: RunContext) -> dict[str, Any]:
  cfg = dict(ctx.config)
  data = make_data(cfg, ctx.seed)
  # optax's bias correction mixes a Python float and an int32 count, which the strict dtype
  # promotion used by the test-suite rejects; train under the standard rules.
  with jax.numpy_dtype_promotion("standard"):
    model, losses, seconds = train(data, cfg, seed=ctx.seed, log=ctx.log)
    ev = evaluate(model, data, int(cfg["synonyms"]))
  r1, c1 = ev["t2i_recall_at_1"], ev["chance_recall_at_1"]
  held = bool(r1 >= float(cfg["min_recall_at_1"]) and r1 >= 10 * c1
              and ev["image_sparsity"] >= float(cfg["min_sparsity"])
              and ev["text_sparsity"] >= float(cfg["min_sparsity"]))
  result = {**ev, "first_loss": losses[0], "final_loss": losses[-1],
            "train_seconds": round(seconds, 2), "expectation_held": held}
  ctx.log(len(losses), **{k: v for k, v in result.items() if k != "expectation_held"})
  try:
    from bottleneck_jax.train import pyplot, save_figure
    plt = pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(losses)
    ax[0].set(xlabel="step", ylabel="LexLIP loss", yscale="log", title="training")
    names = ["t2i R@1", "t2i R@5", "i2t R@1", "i2t R@5"]
    vals = [ev["t2i_recall_at_1"], ev["t2i_recall_at_5"], ev["i2t_recall_at_1"],
            ev["i2t_recall_at_5"]]
    chance = [ev["chance_recall_at_1"], ev["chance_recall_at_5"]] * 2
    xs = np.arange(len(names))
    ax[1].bar(xs - 0.2, vals, 0.4, label="LexLIP toy")
    ax[1].bar(xs + 0.2, chance, 0.4, label="chance", color="gray")
    ax[1].set_xticks(xs, names)
    ax[1].set(ylim=(0, 1), title=f"held-out, nnz img {ev['image_nonzeros']:.1f} / "
              f"txt {ev['text_nonzeros']:.1f} of {cfg['vocab']}")
    ax[1].legend(fontsize=8)
    save_figure(fig, ctx.plot_path("retrieval"))
  except Exception as e:  # noqa: BLE001 - plotting is optional
    logging.getLogger(__name__).warning("lexlip-toy: no plot (%s)", e)
  return result


register(Experiment(
    name="lexlip-toy",
    paper_id=PAPER_ID,
    claim=("Sparse lexicon-weighting representations of images and texts, trained with an "
           "in-batch contrastive loss plus the FLOPS regulariser, support image-text retrieval "
           "by dot products over a word vocabulary (inverted-index friendly)."),
    metric="t2i_recall_at_1",
    expectation=("held-out text->image recall@1 (relevant = same digit and ink tercile, 30 "
                 "groups) >= min_recall_at_1 (0.5) and >= 10x chance (~0.033), with both "
                 "representations >= min_sparsity (80 %) zeros over the vocabulary"),
    run=run,
    defaults={"vocab": 256, "synonyms": 3, "max_noise": 4, "dim": 64, "batch_size": 30,
              "steps": 600, "learning_rate": 3e-3, "temperature": 0.05, "flops_weight": 0.5,
              "min_recall_at_1": 0.5, "min_sparsity": 0.8, "data_seed": 0},
    quick={"steps": 120, "min_recall_at_1": 0.2, "min_sparsity": 0.5},
    paper_value="5.5-221.3x faster retrieval and 13.2-48.8x less index memory than CLIP",
))
