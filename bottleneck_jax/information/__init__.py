"""Information-bottleneck objectives and mutual-information estimators.

Built so far: Deep VIB (``_vib.py``), the base every paper of this family builds on, and the
mutual-information estimators (``_mi_estimators.py``: InfoNCE, NWJ, DV/MINE, JS bounds on critic
scores; the KSG nearest-neighbour estimator). As
everywhere in the library, implementation modules are private and the family re-exports their
public names: ``from bottleneck_jax.information import vib`` gives the function ``vib``. See ``bottleneck-jax list --family information`` for the catalogue.
"""

from bottleneck_jax.information._mi_estimators import (
    MINEOutput,
    MINEState,
    critic_scores,
    dv_lower_bound,
    infonce_lower_bound,
    js_lower_bound,
    ksg_mutual_information,
    mine_init,
    mine_lower_bound,
    nwj_lower_bound,
    to_bits,
)
from bottleneck_jax.information._vib import (
    VIB,
    VIBClassifier,
    VIBEncoder,
    vib,
    vib_loss,
    vib_predictive_logprobs,
    vib_rate,
)

__all__ = [
    "MINEOutput",
    "MINEState",
    "VIB",
    "VIBClassifier",
    "VIBEncoder",
    "critic_scores",
    "dv_lower_bound",
    "infonce_lower_bound",
    "js_lower_bound",
    "ksg_mutual_information",
    "mine_init",
    "mine_lower_bound",
    "nwj_lower_bound",
    "to_bits",
    "vib",
    "vib_loss",
    "vib_predictive_logprobs",
    "vib_rate",
]
