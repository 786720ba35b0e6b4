"""Concept bottleneck models, interventions, concept metrics and saliency.

The base (``_cbm.py``): concept heads with probability / logit / hard straight-through
bottlenecks, the independent / sequential / joint losses, test-time interventions with random and
uncertainty policies and intervention curves, concept accuracy and AUC. ``_saliency.py``:
gradient, gradient x input and integrated-gradient attributions and region scores (relevance
mass, pointing game, soft IoU). One private module per paper builds on them. As everywhere in the
library, implementation modules are private and this package re-exports their public names. See
``bottleneck-jax list --family concepts`` for the catalogue.
"""

from bottleneck_jax.concepts._cbm import (
    CBMLoss,
    CBMOutputs,
    ConceptAccuracy,
    ConceptBottleneckModel,
    InterventionCurve,
    InterventionRange,
    auc_roc,
    bce_with_logits,
    bottleneck,
    cbm_loss,
    concept_accuracy,
    intervene,
    intervention_curve,
    intervention_percentiles,
    random_group_mask,
    segment_mean,
    soft_threshold,
    uncertainty_group_mask,
)
from bottleneck_jax.concepts._saliency import (
    RegionMetrics,
    RegionScores,
    attribution_iou,
    integrated_gradients,
    peak_distance,
    pointing_hit,
    region_metrics,
    relevance_mass,
    saliency_grad,
    saliency_grad_x_input,
)

__all__ = [
    "CBMLoss",
    "CBMOutputs",
    "ConceptAccuracy",
    "ConceptBottleneckModel",
    "InterventionCurve",
    "InterventionRange",
    "RegionMetrics",
    "RegionScores",
    "attribution_iou",
    "auc_roc",
    "bce_with_logits",
    "bottleneck",
    "cbm_loss",
    "concept_accuracy",
    "integrated_gradients",
    "intervene",
    "intervention_curve",
    "intervention_percentiles",
    "peak_distance",
    "pointing_hit",
    "random_group_mask",
    "region_metrics",
    "relevance_mass",
    "saliency_grad",
    "saliency_grad_x_input",
    "segment_mean",
    "soft_threshold",
    "uncertainty_group_mask",
]
