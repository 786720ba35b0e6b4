"""``chart-negclip-toy``: hard-negative contrastive training makes a vision encoder read the
numbers of a chart.

Paper: Liu et al., *On the Perception Bottleneck of VLMs for Chart Understanding*, 2025,
https://arxiv.org/abs/2503.18435 (hkust-nlp/Vision4Chart). The retrieval test — does an image sit
closer to its true caption than to the same caption with one detail changed? — puts vanilla CLIP
near chance on charts; retraining the vision encoder with hard-negative captions (NegCLIP) lifts
it substantially.

Stand-in (offline, exact). A "chart" is a table of ``num_values`` digits; its "image" is a fixed
random linear rendering of the table's one-hot code into ``image_dim`` pixels plus Gaussian noise
(``noise``); its caption is the exact bag of (position, digit) tokens; the hard negative changes
one digit. :class:`~bottleneck_jax.objectives.ContrastiveTowers` (linear image and text heads,
learnable logit scale) are trained by :func:`bottleneck_jax.train.train` with
:func:`~bottleneck_jax.objectives.negclip_loss` (one hard negative per image) and, for comparison,
with the plain :func:`~bottleneck_jax.objectives.clip_loss`; both are scored by
:func:`~bottleneck_jax.objectives.hard_negative_accuracy` on held-out tables with fresh noise
(chance 0.5).

Departures: linear towers on a synthetic rendering instead of OpenCLIP ViT-L/14-336 on chart
images; one hard negative per image; a few hundred steps on one CPU instead of 3 epochs on 8 GPUs;
no downstream LVLM training.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bottleneck_jax.experiments._training import fit
from bottleneck_jax.experiments.registry import (
    Expectation,
    Experiment,
    Metric,
    RunContext,
    register,
)

PAPER_ID = "chart-perception"
DIGITS = 10


def _render(cfg, seed: int):
  rng = np.random.default_rng(1000 + seed)
  k = int(cfg["num_values"]) * DIGITS
  return rng.standard_normal((k, int(cfg["image_dim"]))).astype(np.float32) / np.sqrt(
      int(cfg["num_values"]))


def make_batch(rng: np.random.Generator, n: int, cfg, render: np.ndarray) -> dict[str, np.ndarray]:
  """``n`` tables: rendered images, exact captions and one-digit-changed hard negatives."""
  nv = int(cfg["num_values"])
  vals = rng.integers(0, DIGITS, (n, nv))
  pos = rng.integers(0, nv, n)
  neg_vals = vals.copy()
  neg_vals[np.arange(n), pos] = (vals[np.arange(n), pos] + rng.integers(1, DIGITS, n)) % DIGITS

  def onehot(v):
    out = np.zeros((n, nv * DIGITS), np.float32)
    out[np.arange(n)[:, None], np.arange(nv) * DIGITS + v] = 1.0
    return out

  cap = onehot(vals)
  img = cap @ render + float(cfg["noise"]) * rng.standard_normal((n, render.shape[1]))
  return {"img": img.astype(np.float32), "cap": cap, "neg": onehot(neg_vals)}


def _train(ctx: RunContext, variant: str) -> dict[str, float]:
  from bottleneck_jax.objectives import (
      ContrastiveTowers,
      clip_loss,
      hard_negative_accuracy,
      negclip_loss,
  )
  cfg = ctx.config
  render = _render(cfg, ctx.seed)
  bs = int(cfg["batch_size"])
  test = make_batch(np.random.default_rng(ctx.seed + 12345), int(cfg["test_size"]), cfg, render)

  def factory():
    rng = np.random.default_rng(ctx.seed)
    while True:
      yield make_batch(rng, bs, cfg, render)

  def model_fn():
    return ContrastiveTowers(int(cfg["image_dim"]), int(cfg["num_values"]) * DIGITS,
                             int(cfg["embed_dim"]), rngs=nnx.Rngs(ctx.seed))

  def loss_fn(model, batch, key):
    i, t = model(batch["img"], batch["cap"])
    if variant == "negclip":
      loss = negclip_loss(i, t, model.encode_text(batch["neg"]), model.scale())
    else:
      loss = clip_loss(i, t, model.scale())
    return loss, {"loss": loss}

  @nnx.jit
  def evaluate(model, img, cap, neg):
    return hard_negative_accuracy(model.encode_image(img), model.encode_text(cap),
                                  model.encode_text(neg))

  def eval_fn(model, key):
    return {"hard_negative_accuracy": evaluate(model, jnp.asarray(test["img"]),
                                               jnp.asarray(test["cap"]),
                                               jnp.asarray(test["neg"]))}

  res = fit(ctx, variant, model_fn, optax.adam(float(cfg["lr"])), loss_fn, factory,
            steps=int(cfg["steps"]), tags={"variant": variant}, eval_fn=eval_fn,
            eval_every=int(cfg["eval_every"]), desc=variant)
  return {"acc": float(res.metrics["hard_negative_accuracy"])}


def run(ctx: RunContext) -> dict[str, Any]:
  neg = _train(ctx, "negclip")
  plain = _train(ctx, "clip")
  out = {"negclip_hard_negative_accuracy": neg["acc"],
         "clip_hard_negative_accuracy": plain["acc"], "chance": 0.5}
  ctx.log(int(ctx.config["steps"]), split="summary", **out)
  return out


register(Experiment(
    name="chart-negclip-toy",
    paper_id=PAPER_ID,
    claim=("Contrastive training with hard-negative captions (NegCLIP) makes the vision encoder "
           "tell a chart's true caption from one with a single value changed (the paper's "
           "encoder bottleneck); the plain CLIP loss is reported alongside."),
    setting="proxy",
    departures=(
        "synthetic 3-digit tables rendered linearly with noise instead of chart images",
        "linear towers trained from scratch instead of retraining OpenCLIP ViT-L/14-336",
        "one hard negative per image; 1000 steps on one CPU",
    ),
    metric="negclip_hard_negative_accuracy",
    metrics={
        "negclip_hard_negative_accuracy": Metric("held-out fraction of images closer to the "
                                                 "true caption than to the hard negative, "
                                                 "NegCLIP training", low=0, high=1),
        "clip_hard_negative_accuracy": Metric("the same, plain CLIP training (reported, not "
                                              "asserted)", low=0, high=1),
    },
    expectations=(
        Expectation("negclip_hard_negative_accuracy", ">=", 0.9, quick_value=0.7,
                    reads=("steps", "noise", "num_values"),
                    source="the project's test plan: NegCLIP reaches hard-negative "
                           "accuracy >= 0.9 on the synthetic chart task (1k steps)"),
    ),
    run=run,
    defaults={"num_values": 3, "image_dim": 64, "embed_dim": 32, "noise": 0.5, "lr": 3e-3,
              "batch_size": 64, "steps": 1000, "test_size": 512, "eval_every": 250,
              "checkpoint_every": 1000, "keep": 1},
    quick={"steps": 200, "eval_every": 200, "checkpoint_every": 200},
    paper_value="vanilla CLIP near chance on chart hard negatives; NegCLIP lifts it "
                "substantially (exact numbers not reachable here)",
))

__all__: list[str] = []
