"""``concept-location``: the concept location metric separates a model that looks at the right
pixels from one that looks elsewhere (Aysel et al., 2025).

Paper: Aysel, Cai & Prugel-Bennett, "Concept-Based Explainable Artificial Intelligence: Metrics
and Benchmarks", 2025, https://arxiv.org/abs/2501.19271. The concept location metric (CLM) asks
whether a concept's activation map (CoAM) points at the part the concept describes; the paper
finds that post-hoc CBMs often point at the wrong place. A metric is only useful if it scores a
correctly localising model 1 and a mislocalising one 0: that is what this experiment measures.

Setting: G2 sprite images (24x24, 6 coloured sprites with exact masks and centres), 500 images.
The "model" is a PCBM on a per-pixel feature map - the pixel colours themselves (``D = 3``) - with
concept vectors ``v_k = 2 colour_k - 1`` and zero intercepts, so its concept activation maps
(:func:`~bottleneck_jax.concepts.coam`) peak exactly on the sprite of that colour. The shifted
model is the same maps rolled by half the image (12 pixels in each direction). Oracle maps are the
masks. CLM is computed for the present concepts with a 3-pixel radius around the sprite centres
(the 5x5 sprite's pixels lie within 2.83 of its centre). Measurement only: nothing is trained.
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

PAPER_ID = "concept-metrics"
COLOURS = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1]],
                   np.float32)


def run(ctx: RunContext) -> dict[str, Any]:
  from bottleneck_jax.concepts import clm, coam, relevance_mass
  from bottleneck_jax.data import concept_sprites
  cfg = ctx.config
  s = concept_sprites(int(cfg["n_images"]), seed=int(cfg["data_seed"]))
  v = jnp.asarray(2 * COLOURS - 1)
  maps = coam(v, jnp.zeros(6), jnp.asarray(s.x))
  shift = int(cfg["shift"])
  rolled = jnp.roll(maps, (shift, shift), axis=(2, 3))
  keys, sel = jnp.asarray(s.centers), jnp.asarray(s.c)
  r = float(cfg["radius"])
  out = {
      "clm_colour_model": float(clm(maps, keys, sel, radius=r).score),
      "clm_shifted_model": float(clm(rolled, keys, sel, radius=r).score),
      "clm_oracle": float(clm(jnp.asarray(s.masks), keys, sel, radius=r).score),
      "n_pairs": int(clm(maps, keys, sel, radius=r).n_pairs),
  }
  pos = jnp.maximum(maps, 0)
  present = np.asarray(s.c, bool)
  mass = np.asarray(relevance_mass(pos, jnp.asarray(s.masks)))
  out["relevance_mass_colour_model"] = float(mass[present].mean())
  return out


register(Experiment(
    name="concept-location",
    paper_id=PAPER_ID,
    claim=("The concept location metric scores a model whose concept activation maps look at "
           "the concept's pixels 1.0 and a model looking elsewhere (maps shifted by half the "
           "image) 0.0."),
    setting="proxy",
    departures=("G2 synthetic sprites with exact centres instead of CUB part keypoints",
                "a hand-built PCBM on pixel-colour features instead of a trained CNN",
                "CLM hit rule: first argmax within 3 pixels of the keypoint (our reading)"),
    metric="clm_colour_model",
    metrics={
        "clm_colour_model": Metric("CLM of the colour model's CoAMs", low=0, high=1),
        "clm_shifted_model": Metric("CLM of the maps rolled by half the image", low=0, high=1),
        "clm_oracle": Metric("CLM of the ground-truth masks", low=0, high=1),
        "relevance_mass_colour_model": Metric("fraction of the positive CoAM inside the mask",
                                              low=0, high=1),
    },
    expectations=(
        Expectation("clm_colour_model", ">=", 0.99, reads=("radius",),
                    source="issue #12: a model looking at the right pixels scores 1.0"),
        Expectation("clm_shifted_model", "<=", 0.01, reads=("radius", "shift"),
                    source="issue #12 / the project's test plan: maps rolled by half the "
                           "image score 0.0"),
        Expectation("clm_oracle", ">=", 0.99, reads=("radius",),
                    source="the project's test plan: oracle maps score 1.0"),
    ),
    run=run,
    defaults={"n_images": 500, "data_seed": 0, "radius": 3.0, "shift": 12},
    quick={"n_images": 50},
    paper_value="qualitative: post-hoc CBMs' concept maps often cover the whole object or the "
                "wrong part",
))
