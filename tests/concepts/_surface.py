"""The pinned public surface of ``bottleneck_jax.concepts``
(merged into ``tests/test_public_api.py``): every public name with its kind. Changing it is
deliberate: update this table in the same commit."""

SURFACE = {
    "CBMLoss": "class",
    "CBMOutputs": "class",
    "ConceptAccuracy": "class",
    "ConceptBottleneckModel": "class",
    "InterventionCurve": "class",
    "InterventionRange": "class",
    "RegionMetrics": "class",
    "RegionScores": "class",
    "attribution_iou": "function",
    "auc_roc": "function",
    "bce_with_logits": "function",
    "bottleneck": "function",
    "cbm_loss": "function",
    "concept_accuracy": "function",
    "integrated_gradients": "function",
    "intervene": "function",
    "intervention_curve": "function",
    "intervention_percentiles": "function",
    "peak_distance": "function",
    "pointing_hit": "function",
    "random_group_mask": "function",
    "region_metrics": "function",
    "relevance_mass": "function",
    "saliency_grad": "function",
    "saliency_grad_x_input": "function",
    "segment_mean": "function",
    "soft_threshold": "function",
    "uncertainty_group_mask": "function",
}
