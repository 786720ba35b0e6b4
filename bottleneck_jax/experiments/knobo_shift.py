"""``knobo-shift``: a knowledge bottleneck resists a confounder that a linear probe learns.

Paper: Yang et al., "A Textbook Remedy for Domain Shifts: Knowledge Priors for Medical Image
Analysis", 2024, https://arxiv.org/abs/2405.14839. Claim: on confounded medical datasets (sex,
age, hospital ... correlated with the label in training, reversed at test time) KnoBo - concept
predictors grounded on separate report data, a linear head on concept probabilities - keeps its
out-of-domain accuracy, beating fine-tuned / linear-probe models by 32.4 % on average.

Recipe (the project's test plan): G4 data (variant ``knobo``): ``x = c A + 1.5 s a + 0.45 eps`` (12
concepts, 4 classes, ``D = 64``) with the spurious ``s`` present with probability ``p`` in classes
{0, 1} and ``1 - p`` in {2, 3}. The concept probes
(:func:`~bottleneck_jax.concepts.fit_concept_probes`) are trained on a separate, unconfounded
"report corpus" (``p = 0.5``, 4000 examples) with 10 % concept-label noise. The head on concept
probabilities and the black-box linear probe on the embeddings are trained by
:func:`bottleneck_jax.train.train` (Adam) on the confounded set (``p = 0.95``, 4000); ID test
``p = 0.95``, OOD test ``p = 0.05`` (2000 each). A second head adds the parameter prior
(``lam = 1``; ``P = +1`` on each class's signature concepts, ``-1`` elsewhere).

Measured by the test plan's NumPy prototype before this declaration: probe ID 0.844 / OOD 0.556;
KnoBo head (no prior) ID 0.821 / OOD 0.785 (OOD concept accuracy 0.903).
"""

from __future__ import annotations

from typing import Any

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

PAPER_ID = "knobo"


def run(ctx: RunContext) -> dict[str, Any]:
  from bottleneck_jax.concepts import (
      KnoBoHead,
      concept_probs,
      fit_concept_probes,
      shift_report,
  )
  from bottleneck_jax.data import confounded_embeddings
  cfg = ctx.config
  ds, seed = int(cfg["data_seed"]), ctx.seed
  n, nt = int(cfg["n_train"]), int(cfg["n_test"])
  rep = confounded_embeddings(n, p=0.5, variant="knobo", seed=ds + 10)
  rng = np.random.default_rng(ds)
  noisy = np.where(rng.random(rep.c.shape) < float(cfg["label_noise"]), 1 - rep.c, rep.c)
  probes = fit_concept_probes(jnp.asarray(rep.x), jnp.asarray(noisy), jnp.asarray(1 - noisy),
                              l2=float(cfg["probe_l2"]), steps=int(cfg["probe_steps"]))
  tr = confounded_embeddings(n, p=float(cfg["p_train"]), variant="knobo", seed=ds)
  tests = {"id": confounded_embeddings(nt, p=float(cfg["p_train"]), variant="knobo",
                                       seed=ds + 1),
           "ood": confounded_embeddings(nt, p=1 - float(cfg["p_train"]), variant="knobo",
                                        seed=ds + 2)}
  pc = {k: np.asarray(concept_probs(probes, jnp.asarray(d.x))) for k, d in tests.items()}
  pc_tr = np.asarray(concept_probs(probes, jnp.asarray(tr.x)))
  m, k = tr.class_concept.shape
  prior = np.where(tr.class_concept > 0.5, 1.0, -1.0).astype(np.float32)
  steps, lr, bs = int(cfg["steps"]), float(cfg["lr"]), int(cfg["batch_size"])

  def make_loss(lam):
    def loss(model, batch, key):
      logits = model(batch["x"])
      ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]))
      extra = lam * model.prior_loss() if lam > 0 else 0.0
      return ce + extra, {}
    return loss

  def probe_loss(model, batch, key):
    logits = model(batch["x"])
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])), {}

  out: dict[str, Any] = {}
  probe = adam_fit(ctx, "probe", lambda: Linear(tr.x.shape[1], m, rngs=nnx.Rngs(seed)),
                   probe_loss, {"x": tr.x, "y": tr.y}, steps=steps, lr=lr, batch_size=bs)
  for name, lam in (("knobo", 0.0), ("knobo_prior", float(cfg["prior_lam"]))):
    res = adam_fit(ctx, name, lambda: KnoBoHead(prior, rngs=nnx.Rngs(seed)), make_loss(lam),
                   {"x": pc_tr, "y": tr.y}, steps=steps, lr=lr, batch_size=bs)
    accs = {s: accuracy(evaluate(res, lambda mod, x: mod(x), x=pc[s]), tests[s].y)
            for s in tests}
    rpt = shift_report(accs["id"], accs["ood"])
    out.update({f"{name}_id": rpt.id, f"{name}_ood": rpt.ood, f"{name}_gap": rpt.gap})
  accs = {s: accuracy(evaluate(probe, lambda mod, x: mod(x), x=d.x), d.y)
          for s, d in tests.items()}
  out.update(probe_id=accs["id"], probe_ood=accs["ood"], probe_gap=accs["id"] - accs["ood"])
  out["ood_concept_accuracy"] = float(np.mean((pc["ood"] >= 0.5) == (tests["ood"].c == 1)))
  out["ood_gain_over_probe"] = out["knobo_ood"] - out["probe_ood"]
  return out


register(Experiment(
    name="knobo-shift",
    paper_id=PAPER_ID,
    claim=("A concept bottleneck whose concept predictors are grounded on separate, "
           "unconfounded data keeps its accuracy when a training-set confounder is reversed, "
           "where a linear probe on the embeddings collapses."),
    setting="proxy",
    departures=("G4 synthetic confounded embeddings instead of chest X-ray / skin-lesion "
                "datasets with CLIP features",
                "the 'report corpus' is synthetic with 10 % label noise instead of LLM-read "
                "clinical reports",
                "concept probes by gradient descent instead of scikit-learn"),
    metric="knobo_ood",
    metrics={
        "knobo_ood": Metric("OOD accuracy of the KnoBo head (no prior)", low=0, high=1),
        "knobo_gap": Metric("ID - OOD accuracy of the KnoBo head", low=-1, high=1),
        "probe_ood": Metric("OOD accuracy of the linear probe on embeddings", low=0, high=1),
        "ood_gain_over_probe": Metric("knobo_ood - probe_ood", low=-1, high=1),
    },
    expectations=(
        Expectation("ood_gain_over_probe", ">=", 0.15, reads=("p_train",),
                    source="the project's test plan: OOD(KnoBo) - OOD(probe) >= 0.15 (measured "
                           "0.785 vs 0.556)"),
        Expectation("knobo_gap", "<=", 0.06, reads=("p_train",),
                    source="the project's test plan: gap(KnoBo) <= 0.06 (measured 0.821 / 0.785)"),
    ),
    run=run,
    defaults={"checkpoint_every": 0, "keep": 2, "n_train": 4000, "n_test": 2000, "p_train": 0.95,
              "data_seed": 0,
              "label_noise": 0.1, "probe_l2": 1e-3, "probe_steps": 300, "prior_lam": 1.0,
              "steps": 1500, "lr": 1e-2, "batch_size": 256},
    quick={"steps": 300, "probe_steps": 100},
    paper_value="KnoBo beats fine-tuned models on confounded datasets by 32.4 % on average",
))
