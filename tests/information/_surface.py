"""The pinned public surface of ``bottleneck_jax.information``
(merged into ``tests/test_public_api.py``): every public name with its kind. Changing it is
deliberate: update this table in the same commit."""

SURFACE = {
    "MINEOutput": "class",
    "MINEState": "class",
    "VIB": "class",
    "VIBClassifier": "class",
    "VIBEncoder": "class",
    "critic_scores": "function",
    "dv_lower_bound": "function",
    "infonce_lower_bound": "function",
    "js_lower_bound": "function",
    "ksg_mutual_information": "function",
    "mine_init": "function",
    "mine_lower_bound": "function",
    "nwj_lower_bound": "function",
    "to_bits": "function",
    "vib": "function",
    "vib_loss": "function",
    "vib_predictive_logprobs": "function",
    "vib_rate": "function",
}
