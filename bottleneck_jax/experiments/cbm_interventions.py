"""``cbm-interventions``: test-time interventions with true concepts (Koh et al., 2020).

Paper: Koh et al., "Concept Bottleneck Models", ICML 2020, https://arxiv.org/abs/2007.04612.
Claim: replacing predicted concepts by their true values at test time raises task accuracy, and
helps independent models (head trained on true concepts) most: on CUB the independent model
gains the most from intervening on attribute groups.

Recipe (the project's test plan): G1-Koh data (``K = 12`` fair concepts, ``M = 4``
classes, ``y = argmax(c R)``, ``x = c A + 0.45 eps`` in ``D = 64``), 4000 training and 2000 test
examples. Concept predictor: a linear layer per concept trained with the concept loss
(independent logistic regressions). Independent head: linear, trained on the true concepts;
sequential head: linear, trained on the frozen predictor's probabilities. Random interventions
on 0/3/6/9/12 concepts (5 draws each), probability space. Every model is trained by
:func:`bottleneck_jax.train.train` (Adam).

Measured by the test plan's NumPy prototype before this declaration: independent 0.760 / 0.795 /
0.838 / 0.899 / 0.992, sequential 0.762 / ... / 0.955; concept accuracy 0.845.
A first run here with 1500 Adam steps at lr 1e-2 missed (independent full 0.9695): the head had
not converged (it scored 0.9695 on the true concepts, where the linear rule allows 1.0); the
recipe now trains 2000 steps at lr 5e-2, thresholds unchanged.
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
  RunContext,
  register,
)

PAPER_ID = "cbm"


def run(ctx: RunContext) -> dict[str, Any]:
  from bottleneck_jax.concepts import (
      ConceptBottleneckModel,
      cbm_loss,
      concept_accuracy,
      intervention_curve,
  )
  from bottleneck_jax.data import koh_concepts
  cfg = ctx.config
  tr = koh_concepts(int(cfg["n_train"]), seed=int(cfg["data_seed"]))
  te = koh_concepts(int(cfg["n_test"]), seed=int(cfg["data_seed"]) + 1)
  k, m = tr.c.shape[1], int(tr.y.max()) + 1
  steps, lr, bs = int(cfg["steps"]), float(cfg["lr"]), int(cfg["batch_size"])
  seed = ctx.seed

  def concept_loss(model, batch, key):
    c_logit = model.concept_logits(batch["x"])
    out = cbm_loss(c_logit, jnp.zeros((c_logit.shape[0], m)), batch["c"], batch["y"],
                   mode="concept")
    return out.loss, {"concept_accuracy": out.aux["concept_accuracy"]}

  g = adam_fit(ctx, "concepts", lambda: ConceptBottleneckModel(tr.x.shape[1], k, m,
                                                               rngs=nnx.Rngs(seed)),
               concept_loss, {"x": tr.x, "c": tr.c.astype(np.float32), "y": tr.y},
               steps=steps, lr=lr, batch_size=bs)
  p_tr = evaluate(g, lambda mod, x: jax.nn.sigmoid(mod.concept_logits(x)), x=tr.x)
  p_te = evaluate(g, lambda mod, x: jax.nn.sigmoid(mod.concept_logits(x)), x=te.x)

  def head_loss(model, batch, key):
    logits = model(batch["z"])
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]))
    return loss, {"accuracy": jnp.mean((jnp.argmax(logits, -1) == batch["y"])
                                       .astype(jnp.float32))}

  heads = {}
  # The sequential head learns from the predictor's outputs, so its checkpoint belongs to the
  # predictor's step count: a run extended to more steps trains it afresh on the new outputs.
  for name, folder, z in (("independent", "independent", tr.c.astype(np.float32)),
                          ("sequential", f"sequential_after_{steps}", p_tr)):
    res = adam_fit(ctx, folder, lambda: Linear(k, m, rngs=nnx.Rngs(seed + 1)), head_loss,
                   {"z": z, "y": tr.y}, steps=steps, lr=lr, batch_size=bs,
                   tags={"model": name})
    w = {kk: np.asarray(v) for kk, v in evaluate(
        res, lambda mod: {"w": mod.layer.kernel[...], "b": mod.layer.bias[...]}).items()}
    heads[name] = w
  ns = tuple(int(v) for v in cfg["ns"])
  out: dict[str, Any] = {"ns": list(ns)}
  for name, w in heads.items():
    wk, wb = jnp.asarray(w["w"]), jnp.asarray(w["b"])
    curve = intervention_curve(lambda z, wk=wk, wb=wb: z @ wk + wb, jnp.asarray(p_te),
                               jnp.asarray(te.c), jnp.asarray(te.y), ns=ns,
                               key=jax.random.key(seed), n_draws=int(cfg["n_draws"]))
    acc = [float(v) for v in np.asarray(curve.accuracy)]
    out[f"{name}_curve"] = acc
    out[f"{name}_full"] = acc[-1]
    out[f"{name}_none"] = acc[0]
    out[f"{name}_area"] = float(curve.area)
  ind = out["independent_curve"]
  out["independent_min_step"] = float(min(b - a for a, b in zip(ind[:-1], ind[1:])))
  out["concept_accuracy"] = float(concept_accuracy(jnp.asarray(p_te), jnp.asarray(te.c)).mean)
  out["independent_gain"] = out["independent_full"] - out["independent_none"]
  out["oracle_head_accuracy"] = accuracy(te.c @ heads["independent"]["w"]
                                         + heads["independent"]["b"], te.y)
  return out


register(Experiment(
    name="cbm-interventions",
    paper_id=PAPER_ID,
    claim=("Intervening with true concepts raises a CBM's accuracy, and an independent CBM "
           "(head trained on true concepts) gains most: with all concepts given it approaches "
           "the oracle, while a sequential CBM ends lower."),
    setting="proxy",
    departures=("G1-Koh synthetic data (12 concepts, 4 classes) instead of CUB / OAI",
                "linear concept predictor on 64-d inputs instead of Inception-v3 on images",
                "interventions on single concepts (no attribute groups), random policy"),
    metric="independent_full",
    metrics={
        "independent_full": Metric("test accuracy of the independent CBM with all 12 concepts "
                                   "intervened", low=0, high=1),
        "sequential_full": Metric("the same for the sequential CBM", low=0, high=1),
        "independent_none": Metric("independent CBM without interventions", low=0, high=1),
        "independent_min_step": Metric("smallest change of the independent curve between "
                                       "consecutive numbers of intervened concepts",
                                       low=-1, high=1),
        "concept_accuracy": Metric("mean test concept accuracy of the predictor", low=0,
                                   high=1),
    },
    expectations=(
        Expectation("independent_full", ">=", 0.97, reads=("ns",),
                    source="the project's test plan (measured 0.992)"),
        Expectation("independent_min_step", ">=", -0.01,
                    source="the project's test plan: the curve is non-decreasing (tol 0.01)"),
        Expectation("sequential_full", "<", 0.97, reads=("ns",),
                    source="the project's test plan: sequential full intervention 0.955 < "
                           "independent (paper: interventions help independent models most)"),
    ),
    run=run,
    defaults={"checkpoint_every": 0, "keep": 2, "n_train": 4000, "n_test": 2000, "data_seed": 0,
              "steps": 2000, "lr": 5e-2,
              "batch_size": 256, "ns": [0, 3, 6, 9, 12], "n_draws": 5},
    quick={"steps": 300},
    paper_value="CUB task error joint 0.199 / sequential 0.243 / independent 0.240; "
                "interventions help the independent model most",
))
