"""Property-test rows of the ``concepts`` family (collected by ``tests/test_properties.py``):
one row per public function."""

import jax.numpy as jnp

from bottleneck_jax import concepts as C
from tests._cases import KEY, Case, floats, ints

_f, _i = floats, ints


def _score_fn(x):
  return jnp.stack([jnp.sum(x), jnp.sum(x * x)])


CASES = [
    # --- base: CBM, interventions, metrics ---
    Case("bce_with_logits", C.bce_with_logits,
         lambda r: {"logit": _f(r, 3, 4), "target": _i(r, 3, 4, high=2)}, ("logit", "target")),
    Case("bottleneck", C.bottleneck, lambda r: {"c_logit": _f(r, 3, 4), "mode": "hard"},
         ("c_logit",)),
    Case("cbm_loss", C.cbm_loss,
         lambda r: {"c_logit": _f(r, 3, 4), "y_logit": _f(r, 3, 2), "c_true": _i(r, 3, 4, high=2),
                    "y": _i(r, 3, high=2), "lam": 0.5, "mode": "joint"},
         ("c_logit", "y_logit", "c_true", "y")),
    Case("intervention_percentiles", C.intervention_percentiles,
         lambda r: {"train_c_logit": _f(r, 5, 3)}, ("train_c_logit",)),
    Case("intervene", C.intervene,
         lambda r: {"c_hat": _f(r, 3, 4), "c_true": _i(r, 3, 4, high=2),
                    "mask": _i(r, 3, 4, high=2), "lo": _f(r, 4), "hi": _f(r, 4)},
         ("c_hat", "c_true", "mask")),
    Case("random_group_mask", C.random_group_mask,
         lambda r: {"groups": (0, 0, 1), "n_concepts": 3, "batch": 2, "n": 1, "key": KEY},
         ("groups",)),
    Case("uncertainty_group_mask", C.uncertainty_group_mask,
         lambda r: {"c_prob": _f(r, 3, 4) / 5, "n": 2}, ("c_prob",)),
    Case("intervention_curve", C.intervention_curve,
         lambda r: {"head_fn": lambda z: z[:, :2], "c_hat": _f(r, 3, 4),
                    "c_true": _i(r, 3, 4, high=2), "y": _i(r, 3, high=2), "ns": (0, 2),
                    "key": KEY, "n_draws": 2},
         ("head_fn", "c_hat", "c_true", "y")),
    Case("concept_accuracy", C.concept_accuracy,
         lambda r: {"c_prob": _f(r, 3, 4) / 5, "c_true": _i(r, 3, 4, high=2)},
         ("c_prob", "c_true")),
    Case("auc_roc", C.auc_roc,
         lambda r: {"scores": _f(r, 2, 4), "labels": jnp.asarray([[0, 1, 0, 1], [1, 1, 0, 0]])},
         ("scores", "labels")),
    Case("segment_mean", C.segment_mean,
         lambda r: {"x": _f(r, 4, 3), "segment_ids": _i(r, 4, high=2), "num_segments": 2},
         ("x", "segment_ids")),
    Case("soft_threshold", C.soft_threshold, lambda r: {"w": _f(r, 3, 2), "threshold": 0.5},
         ("w",)),
    # --- saliency and region scores ---
    Case("saliency_grad", C.saliency_grad,
         lambda r: {"fn": _score_fn, "x": _f(r, 3, 4), "index": 1}, ("fn", "x")),
    Case("saliency_grad_x_input", C.saliency_grad_x_input,
         lambda r: {"fn": _score_fn, "x": _f(r, 3, 4), "index": 0}, ("fn", "x")),
    Case("integrated_gradients", C.integrated_gradients,
         lambda r: {"fn": _score_fn, "x": _f(r, 3, 4), "index": 1, "steps": 4}, ("fn", "x")),
    Case("relevance_mass", C.relevance_mass,
         lambda r: {"attr": _f(r, 2, 3, 4), "region": _i(r, 2, 3, 4, high=2)},
         ("attr", "region")),
    Case("pointing_hit", C.pointing_hit,
         lambda r: {"attr": _f(r, 2, 3, 4), "region": _i(r, 2, 3, 4, high=2)},
         ("attr", "region")),
    Case("peak_distance", C.peak_distance,
         lambda r: {"attr": _f(r, 2, 3, 4), "keypoint": _f(r, 2, 2)}, ("attr", "keypoint")),
    Case("attribution_iou", C.attribution_iou,
         lambda r: {"attr": _f(r, 2, 3, 4), "mask": _i(r, 2, 3, 4, high=2)}, ("attr", "mask")),
    Case("region_metrics", C.region_metrics,
         lambda r: {"attr": _f(r, 2, 3, 4), "mask": _i(r, 2, 3, 4, high=2)}, ("attr", "mask")),
]
