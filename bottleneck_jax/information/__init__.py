"""Information-bottleneck objectives and mutual-information estimators.

Built so far: Deep VIB (``_vib.py``), the base every paper of this family builds on. As
everywhere in the library, implementation modules are private and the family re-exports their
public names: ``from bottleneck_jax.information import vib`` gives the function ``vib``. See ``bottleneck-jax list --family information`` for the catalogue.
"""

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
    "VIB",
    "VIBClassifier",
    "VIBEncoder",
    "vib",
    "vib_loss",
    "vib_predictive_logprobs",
    "vib_rate",
]
