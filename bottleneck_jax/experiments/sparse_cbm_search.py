"""``sparse-cbm-search``: Concept Matrix Search beats zero-shot classification when the class-name
text is a noisy description of the class (Semenov et al., 2024).

Paper: Semenov, Ivanov, Beznosikov & Gasnikov, "Sparse Concept Bottleneck Models: Gumbel Tricks
in Contrastive Learning", 2024, https://arxiv.org/abs/2404.03323. Claim (repository README):
training-free Concept Matrix Search (CMS) improves on CLIP zero-shot classification on several
datasets (ImageNet 77.82 vs 76.20, CIFAR-100 62.95 vs 52.84, ViT-L/14), by matching an image's
concept profile to each class's concept profile instead of its single class-name embedding.

Setting (the project's test plan): G1 embeddings with CLIP's positive cone (12 concepts, 4
classes, 2000 test images); concept texts near the true concept directions; class-name texts
``normalise(P[m] A + nu zeta)`` with noise ``nu`` in {0, 0.5, 1}. Zero-shot: argmax of the
image-class cosine; CMS: :func:`~bottleneck_jax.concepts.concept_matrix_search`. Measured by the
spec's NumPy prototype before this declaration: zero-shot 0.847 / 0.540 / 0.329, CMS 0.804 /
0.685 / 0.458. Measurement only: nothing is trained.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from bottleneck_jax.experiments.registry import (
    Expectation,
    Experiment,
    Metric,
    RunContext,
    register,
)

PAPER_ID = "sparse-cbm"


def run(ctx: RunContext) -> dict[str, Any]:
  from bottleneck_jax.concepts import concept_matrix_search
  from bottleneck_jax.data import concept_embeddings
  cfg = ctx.config
  out: dict[str, Any] = {}
  for nu in cfg["noises"]:
    d = concept_embeddings(int(cfg["n_images"]), cone=2.0, class_text_noise=float(nu),
                           seed=int(cfg["data_seed"]))
    zs = float(np.mean(np.argmax(d.x @ d.class_text.T, 1) == d.y))
    cms = concept_matrix_search(jnp.asarray(d.x), jnp.asarray(d.concept_text),
                                jnp.asarray(d.class_text))
    out[f"zero_shot_nu_{nu:g}"] = zs
    out[f"cms_nu_{nu:g}"] = float(np.mean(np.asarray(cms.pred) == d.y))
  out["cms_gain_nu_0.5"] = out["cms_nu_0.5"] - out["zero_shot_nu_0.5"]
  return out


register(Experiment(
    name="sparse-cbm-search",
    paper_id=PAPER_ID,
    claim=("Training-free Concept Matrix Search classifies better than zero-shot class-name "
           "matching when class names describe their classes noisily."),
    setting="proxy",
    departures=("G1 synthetic CLIP-like embeddings with a positive cone instead of CLIP "
                "ViT-L/14 on ImageNet / CIFAR",
                "class-name noise is explicit (nu) rather than the gap between a class name and "
                "its images"),
    metric="cms_gain_nu_0.5",
    metrics={
        "cms_gain_nu_0.5": Metric("CMS accuracy - zero-shot accuracy at nu = 0.5", low=-1,
                                  high=1),
        "cms_nu_0.5": Metric("CMS accuracy at nu = 0.5", low=0, high=1),
        "zero_shot_nu_0.5": Metric("zero-shot accuracy at nu = 0.5", low=0, high=1),
    },
    expectations=(
        Expectation("cms_gain_nu_0.5", ">", 0.1, reads=("noises",),
                    source="the project's test plan: CMS > zero-shot + 0.1 at nu = 0.5 "
                           "(measured 0.685 vs 0.540)"),
    ),
    run=run,
    defaults={"n_images": 2000, "data_seed": 1, "noises": [0.0, 0.5, 1.0]},
    quick={"n_images": 500},
    paper_value="CMS ImageNet 77.82 vs zero-shot 76.20; CIFAR-100 62.95 vs 52.84 (ViT-L/14)",
))
