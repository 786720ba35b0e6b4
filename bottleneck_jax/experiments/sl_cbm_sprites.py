"""``sl-cbm-sprites``: SL-CBM's token concept maps land on the concept's own patch, where a
post-hoc CBM's saliency spreads to look-alike objects, at the accuracy of a linear probe.

Paper: Zhang, Cheng, Wen, Zhang, Zhang & Hermanns, "SL-CBM: Enhancing Concept Bottleneck Models
with Semantic Locality for Better Interpretability", AAAI 2026, https://arxiv.org/abs/2601.12804.
Claim: a 1x1 token projection with cross-attention pooling, trained with concept supervision and
a per-token concept entropy loss, gives concept saliency maps with substantially better locality
(soft IoU with the concept's region) than post-hoc CBMs explained with gradient saliency, at
competitive accuracy; the entropy regulariser makes each patch commit to one concept.

Setting (the project's test plan): G2 sprite images (24x24, 6 sprites of distinct colour and
shape on a 4x4 grid of 6x6 cells, labels ``argmax(c R)`` over 4 classes). The frozen encoder is
a fixed random linear patch embedding (ViT-style): each 6x6x3 cell becomes a 32-d token
(``N = 16`` tokens); the global embedding is the normalised mean token. The concept bank
``V[k]`` is the normalised mean token of the cells that hold sprite ``k`` in the training set
plus noise ``0.3 xi / sqrt(D)`` (a stand-in for a text embedding). Trained through
:func:`bottleneck_jax.train.train` (Adam): the SL-CBM head
(:class:`~bottleneck_jax.concepts.SLCBMHead`, loss :func:`~bottleneck_jax.concepts.slcbm_loss`
with the reference's weights ``(1, 1, 5)``), the same head without the entropy term (``lam3 = 0``), and a linear probe on the
mean token. The post-hoc baseline is a PCBM-style concept score ``V_k . mean_n Z_n`` explained
by gradient x input on the tokens (summed over the token width). Locality is scored on the 4x4
token grid against the cell that holds each present concept: the pointing game and SL-CBM's soft
IoU (:func:`~bottleneck_jax.concepts.attribution_iou`: negative values clamped, max-normalised).

Expectations (fixed before the first run): the test plan's pointing >= 0.95, soft IoU >= 0.6,
accuracy within 0.02 of the linear probe, lower token entropy with the entropy term; and, the
paper's claim, a higher soft IoU than the post-hoc baseline.

First full run (defaults, 1500 steps, CPU): pointing 0.813, soft IoU 0.571 against the
baseline's 0.573 (baseline pointing 0.974), accuracy 0.815 against the probe's 0.699, concept
accuracy 0.894, token entropy 28.02 against 28.14 without the entropy term (the maximum is
``16 ln 6 = 28.67``): three of the five expectations missed. The training curves were still
falling (the concept term at ``1e4 * 0.20``). A custom run with 4000 steps (not a reproduction)
gave pointing 0.999, soft IoU 0.632 against 0.573, accuracy 0.857 against 0.804 and entropy
27.64 against 27.88: all five held. The per-token entropy stays near its maximum either way,
since the reference's ``1e4`` concept weight dominates the entropy term.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bottleneck_jax.experiments._concepts import Linear, accuracy, adam_fit, evaluate
from bottleneck_jax.experiments.registry import (
    Expectation,
    Experiment,
    Metric,
    Ref,
    RunContext,
    register,
)

PAPER_ID = "sl-cbm"
_GRID, _CELL = 4, 6


def _patchify(x: np.ndarray) -> np.ndarray:
  """``[n, 24, 24, 3]`` images to ``[n, 16, 108]`` row-major cells."""
  n = x.shape[0]
  p = x.reshape(n, _GRID, _CELL, _GRID, _CELL, 3).transpose(0, 1, 3, 2, 4, 5)
  return p.reshape(n, _GRID * _GRID, _CELL * _CELL * 3)


def _cell_masks(masks: np.ndarray) -> np.ndarray:
  """``[n, K, 24, 24]`` pixel masks to ``[n, K, 4, 4]`` cell masks."""
  n, k = masks.shape[:2]
  return masks.reshape(n, k, _GRID, _CELL, _GRID, _CELL).max(axis=(3, 5))


def _encode(x: np.ndarray, proj: np.ndarray):
  tokens = (_patchify(x) @ proj).astype(np.float32)
  e = tokens.mean(1)
  e = e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
  return tokens, e.astype(np.float32)


def _locality(maps: np.ndarray, cell_masks: np.ndarray, present: np.ndarray):
  """Mean pointing hit and soft IoU of ``maps[n, K, 4, 4]`` over the present concepts."""
  from bottleneck_jax.concepts import attribution_iou, pointing_hit
  m, cm = jnp.asarray(maps), jnp.asarray(cell_masks)
  hit = np.asarray(pointing_hit(m, cm))
  iou = np.asarray(attribution_iou(m, cm).iou)
  return float(hit[present].mean()), float(iou[present].mean())


def run(ctx: RunContext) -> dict[str, Any]:
  from bottleneck_jax.concepts import (
      SLCBMHead,
      class_saliency,
      relevance_mass,
      saliency_grad_x_input,
      slcbm_loss,
      token_concept_entropy,
      upsample_token_map,
  )
  from bottleneck_jax.data import concept_sprites
  cfg = ctx.config
  ds, seed = int(cfg["data_seed"]), ctx.seed
  tr = concept_sprites(int(cfg["n_train"]), seed=ds)
  te = concept_sprites(int(cfg["n_test"]), seed=ds + 1)
  d = int(cfg["token_dim"])
  wrng = np.random.default_rng([ds, 7])
  proj = (wrng.standard_normal((_CELL * _CELL * 3, d)) / np.sqrt(_CELL * _CELL * 3)
          ).astype(np.float32)
  z_tr, e_tr = _encode(tr.x, proj)
  z_te, e_te = _encode(te.x, proj)
  k, m = tr.c.shape[1], tr.rule.shape[1]
  cm_tr = _cell_masks(tr.masks).reshape(len(tr.x), k, -1)  # [n, K, 16]
  proto = np.einsum("nkt,ntd->kd", cm_tr, z_tr) / np.maximum(cm_tr.sum((0, 2))[:, None], 1)
  bank = proto / np.linalg.norm(proto, axis=-1, keepdims=True)
  bank = bank + float(cfg["text_noise"]) * wrng.standard_normal(bank.shape) / np.sqrt(d)
  bank = (bank / np.linalg.norm(bank, axis=-1, keepdims=True)).astype(np.float32)

  steps, lr, bs = int(cfg["steps"]), float(cfg["lr"]), int(cfg["batch_size"])
  data = {"z": z_tr, "e": e_tr, "y": tr.y, "c": tr.c}

  def make_loss(lams):
    def loss(model, batch, key):
      out = model(batch["z"], batch["e"])
      parts = slcbm_loss(out.logits, out.f, out.s, batch["y"], batch["c"], lams=lams)
      return parts.loss, {"ce": parts.ce, "concept": parts.concept, "entropy": parts.entropy}
    return loss

  def probe_loss(model, batch, key):
    logits = model(jnp.mean(batch["z"], 1))
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])), {}

  lam = tuple(float(v) for v in cfg["lams"])
  res = {}
  for name, lams in (("slcbm", lam), ("slcbm_no_entropy", (lam[0], lam[1], 0.0))):
    res[name] = adam_fit(ctx, name, lambda: SLCBMHead(bank, d, m, rngs=nnx.Rngs(seed)),
                         make_loss(lams), data, steps=steps, lr=lr, batch_size=bs)
  probe = adam_fit(ctx, "probe", lambda: Linear(d, m, rngs=nnx.Rngs(seed)), probe_loss,
                   {"z": z_tr, "y": tr.y}, steps=steps, lr=lr, batch_size=bs)

  outs = {n: evaluate(r, lambda mod, z, e: mod(z, e), z=z_te, e=e_te) for n, r in res.items()}
  o = outs["slcbm"]
  present = te.c == 1
  cm_te = _cell_masks(te.masks)  # [n, K, 4, 4]
  maps = np.moveaxis(o.s, -1, 1).reshape(len(te.x), k, _GRID, _GRID)
  out: dict[str, Any] = {}
  out["slcbm_pointing"], out["slcbm_iou"] = _locality(maps, cm_te, present)
  soft = np.moveaxis(np.asarray(jax.nn.softmax(jnp.asarray(o.s), -1)), -1, 1)
  out["slcbm_softmax_pointing"], out["slcbm_softmax_iou"] = _locality(
      soft.reshape(maps.shape), cm_te, present)

  # post-hoc baseline: gradient x input of V_k . mean(Z) on the tokens
  vb = jnp.asarray(bank)

  def base_maps(z):
    def score(t):
      return vb @ jnp.mean(t, 0)
    return jnp.stack([jnp.sum(saliency_grad_x_input(score, z, index=j), -1) for j in range(k)])

  bmaps = np.asarray(jax.jit(jax.vmap(base_maps))(jnp.asarray(z_te)))
  out["baseline_pointing"], out["baseline_iou"] = _locality(
      bmaps.reshape(maps.shape), cm_te, present)
  out["iou_gain_over_baseline"] = out["slcbm_iou"] - out["baseline_iou"]

  # pixel-level locality of the bicubic-upsampled maps
  from bottleneck_jax.concepts import attribution_iou
  up = upsample_token_map(jnp.asarray(maps.reshape(len(te.x), k, -1)), grid=(_GRID, _GRID),
                          size=(24, 24), method="cubic")
  out["slcbm_pixel_iou"] = float(np.asarray(
      attribution_iou(up, jnp.asarray(te.masks)).iou)[present].mean())

  # class saliency of the predicted class: share of its positive mass on present sprites' cells
  pred = np.argmax(o.logits, -1)
  w_eff = np.asarray(res["slcbm"].model.w_cls[...])
  cmap = np.asarray(class_saliency(jnp.asarray(w_eff), jnp.asarray(o.s), jnp.asarray(pred)))
  union = cm_te.max(1).reshape(len(te.x), -1)
  mass = np.asarray(relevance_mass(jnp.maximum(jnp.asarray(cmap), 0)[:, None, :],
                                   jnp.asarray(union)[:, None, :]))
  out["class_saliency_mass"] = float(mass[present.any(1)].mean())

  out["slcbm_accuracy"] = accuracy(o.logits, te.y)
  out["slcbm_no_entropy_accuracy"] = accuracy(outs["slcbm_no_entropy"].logits, te.y)
  out["probe_accuracy"] = accuracy(evaluate(probe, lambda mod, z: mod(jnp.mean(z, 1)), z=z_te),
                                   te.y)
  out["accuracy_gap"] = out["slcbm_accuracy"] - out["probe_accuracy"]
  out["concept_accuracy"] = float(np.mean((o.f >= 0) == present))
  out["entropy"] = float(token_concept_entropy(jnp.asarray(o.s)))
  out["entropy_no_entropy_loss"] = float(token_concept_entropy(
      jnp.asarray(outs["slcbm_no_entropy"].s)))
  out["entropy_drop"] = out["entropy_no_entropy_loss"] - out["entropy"]
  out["n_pairs"] = int(present.sum())
  return out


register(Experiment(
    name="sl-cbm-sprites",
    paper_id=PAPER_ID,
    claim=("SL-CBM's token concept maps localise each present concept on its own patch "
           "(pointing >= 0.95, soft IoU >= 0.6) and better than a post-hoc CBM's gradient x "
           "input saliency, at the accuracy of a linear probe; the entropy term lowers the "
           "per-token concept entropy."),
    setting="proxy",
    departures=("G2 synthetic sprites with exact cell masks instead of RIVAL10 / CUB / CelebA",
                "a frozen random linear patch embedding (16 tokens of width 32) instead of a "
                "CLIP ViT; the global embedding is the normalised mean token",
                "concept vectors are noisy mean tokens of each sprite's cells instead of CLIP "
                "text embeddings",
                "Adam lr 3e-3 for 1500 steps of batch 128 instead of lr 3e-4 for 5 epochs",
                "locality on the 4x4 token grid against the cell holding the concept (the paper "
                "upsamples to pixels; reported here as slcbm_pixel_iou, no expectation)",
                "post-hoc baseline: PCBM-style score V_k . mean(Z) with gradient x input "
                "(the paper compares several saliency methods on CLIP)"),
    metric="slcbm_iou",
    metrics={
        "slcbm_iou": Metric("soft IoU of SL-CBM's concept maps with the concept's cell "
                            "(present concepts)", low=0, high=1),
        "slcbm_pointing": Metric("pointing-game hit rate of SL-CBM's concept maps", low=0,
                                 high=1),
        "baseline_iou": Metric("soft IoU of the post-hoc baseline's gradient x input maps",
                               low=0, high=1),
        "baseline_pointing": Metric("pointing-game hit rate of the post-hoc baseline", low=0,
                                    high=1),
        "iou_gain_over_baseline": Metric("slcbm_iou - baseline_iou", low=-1, high=1),
        "slcbm_accuracy": Metric("test accuracy of SL-CBM", low=0, high=1),
        "probe_accuracy": Metric("test accuracy of a linear probe on the mean token", low=0,
                                 high=1),
        "accuracy_gap": Metric("slcbm_accuracy - probe_accuracy", low=-1, high=1),
        "entropy": Metric("token concept entropy with the entropy loss (lam3 = 5)", low=0),
        "entropy_no_entropy_loss": Metric("token concept entropy without it (lam3 = 0)", low=0),
        "entropy_drop": Metric("entropy_no_entropy_loss - entropy"),
        "concept_accuracy": Metric("accuracy of sigmoid(f) >= 0.5 against the concept labels",
                                   low=0, high=1),
        "slcbm_pixel_iou": Metric("soft IoU of the bicubic-upsampled maps with pixel masks",
                                  low=0, high=1),
        "class_saliency_mass": Metric("share of the positive predicted-class saliency on the "
                                      "present sprites' cells", low=0, high=1),
    },
    expectations=(
        Expectation("slcbm_pointing", ">=", 0.95, reads=("steps", "lams"),
                    source="the project's test plan: pointing-game hit >= 0.95"),
        Expectation("slcbm_iou", ">=", 0.6, reads=("steps", "lams"),
                    source="the project's test plan: soft IoU >= 0.6"),
        Expectation("slcbm_iou", ">", Ref("baseline_iou"), reads=("steps", "lams"),
                    source="paper abstract: substantially better locality than post-hoc "
                           "explanations"),
        Expectation("accuracy_gap", ">=", -0.02, reads=("steps",),
                    source="the project's test plan: accuracy within 0.02 of a linear "
                           "probe on mean tokens"),
        Expectation("entropy_drop", ">", 0.0, reads=("lams",),
                    source="the project's test plan: raising lam3 lowers token entropy"),
    ),
    run=run,
    defaults={"checkpoint_every": 0, "keep": 2, "n_train": 4000, "n_test": 1000,
              "data_seed": 0, "token_dim": 32, "text_noise": 0.3, "lams": [1.0, 1.0, 5.0],
              "steps": 1500, "lr": 3e-3, "batch_size": 128},
    quick={"n_train": 1000, "n_test": 300, "steps": 200},
    paper_value="qualitative: better concept- and class-level locality at competitive accuracy "
                "(RIVAL10, CUB, CelebA)",
))
