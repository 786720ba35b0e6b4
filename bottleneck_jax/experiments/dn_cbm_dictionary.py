"""``dn-cbm-dictionary``: a sparse autoencoder discovers the dictionary behind the data, and
naming by nearest text embedding names its latents right (Rao et al., 2024).

Paper: Rao, Mahajan, Bohle & Schiele, "Discover-then-Name: Task-Agnostic Concept Bottlenecks via
Automated Concept Discovery", ECCV 2024, https://arxiv.org/abs/2407.14499. Claim: an SAE trained
without labels on image embeddings discovers concept directions, and naming each dictionary
vector by its most similar word embedding gives semantically right names.

Setting (the project's test plan-3): G5 data: ``d = 32``, 24 unit atoms, each example a
non-negative combination of 3 random atoms with coefficients U(0.5, 1.5) plus noise 0.01
(8000 examples). :class:`~bottleneck_jax.concepts.ConceptSAE` with ``h = 128`` latents
(expansion 4), Adam 1e-3, batches of 512, trained by :func:`bottleneck_jax.train.train` for
each L1 weight of a small grid; the test plan's rule picks the smallest weight whose mean L0 is at
most 6. An atom is recovered when some decoder column has cosine >= 0.9 with it; a recovered
latent is named right when the nearest of (24 atom names + 200 distractor words) is its atom's
name. Expected by the test plan: >= 90 % of atoms recovered, >= 90 % of them named right.

First full run: all 24 atoms recovered and named right, but even the largest weight of the grid
(declared before measuring) left L0 = 7.3 > 6: the L0 expectation missed, recorded as such.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from bottleneck_jax.experiments._concepts import adam_fit, evaluate
from bottleneck_jax.experiments.registry import (
    Expectation,
    Experiment,
    Metric,
    RunContext,
    register,
)

PAPER_ID = "dn-cbm"


def run(ctx: RunContext) -> dict[str, Any]:
  from bottleneck_jax.concepts import ConceptSAE, name_concepts
  from bottleneck_jax.data import sparse_dictionary
  cfg = ctx.config
  d = sparse_dictionary(int(cfg["n"]), seed=int(cfg["data_seed"]))
  dim, n_atoms = d.x.shape[1], d.atoms.shape[0]
  chosen = None
  rows = []
  for lam in cfg["l1_grid"]:
    lam = float(lam)

    def loss(model, batch, key, lam=lam):
      out = model(batch["x"], l1=lam)
      return out.loss, {"mse": out.aux["mse"], "l0": out.aux["l0"]}

    res = adam_fit(ctx, f"sae_l1_{lam:g}",
                   lambda: ConceptSAE(dim, int(cfg["expansion"]), rngs=nnx.Rngs(ctx.seed)),
                   loss, {"x": d.x}, steps=int(cfg["steps"]), lr=float(cfg["lr"]),
                   batch_size=int(cfg["batch_size"]))
    w_dec, l0 = evaluate(res, lambda mod, x: (mod.params.W_dec, mod(x).aux["l0"]), x=d.x)
    rows.append({"l1": lam, "l0": float(l0), "w_dec": np.asarray(w_dec)})
    if chosen is None and float(l0) <= 6:
      chosen = rows[-1]
  if chosen is None:
    chosen = rows[-1]
  w_dec = chosen["w_dec"]
  cos = d.atoms @ w_dec.T  # [atoms, h]; w_dec holds the dictionary rows [h, d]
  best = np.argmax(cos, 1)
  recovered = cos[np.arange(n_atoms), best] >= 0.9
  vocab = np.concatenate([d.name_emb, d.distractor_emb])
  names = np.asarray(name_concepts(jnp.asarray(w_dec), jnp.asarray(vocab)).index)
  right = names[best[recovered]] == np.flatnonzero(recovered)
  return {"l1": chosen["l1"], "l0": chosen["l0"],
          "sweep": [{"l1": r["l1"], "l0": r["l0"]} for r in rows],
          "atoms_recovered": float(recovered.mean()),
          "named_right": float(right.mean()) if right.size else 0.0}


register(Experiment(
    name="dn-cbm-dictionary",
    paper_id=PAPER_ID,
    claim=("A sparse autoencoder trained without labels recovers the dictionary behind the "
           "embeddings, and naming each latent by its most similar word embedding names it "
           "right."),
    setting="proxy",
    departures=("G5 synthetic sparse data with a known 24-atom dictionary instead of CLIP "
                "features of CC3M",
                "h = 128 latents, a few thousand steps, no dead-latent resampling",
                "the vocabulary is 24 noisy atom names + 200 random words instead of 20k words"),
    metric="atoms_recovered",
    metrics={
        "atoms_recovered": Metric("fraction of atoms with a decoder column at cosine >= 0.9",
                                  low=0, high=1),
        "named_right": Metric("fraction of recovered atoms whose latent gets the atom's name",
                              low=0, high=1),
        "l0": Metric("mean active latents at the chosen L1 weight", low=0),
    },
    expectations=(
        Expectation("atoms_recovered", ">=", 0.9, reads=("l1_grid", "steps"),
                    source="the project's test plan"),
        Expectation("named_right", ">=", 0.9, reads=("l1_grid", "steps"),
                    source="the project's test plan"),
        Expectation("l0", "<=", 6.0, reads=("l1_grid",),
                    source="the project's test plan: L1 weight chosen so that L0 is in "
                           "[3, 6]"),
    ),
    run=run,
    defaults={"checkpoint_every": 0, "keep": 2, "n": 8000, "data_seed": 0, "expansion": 4,
              "l1_grid": [0.03, 0.1, 0.3],
              "steps": 2000, "lr": 1e-3, "batch_size": 512},
    quick={"steps": 200, "n": 2048},
    paper_value="DN-CBM ViT-B/16 ImageNet about 79.5 % (recalled); names semantically meaningful",
))
