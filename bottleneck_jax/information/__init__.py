"""Information-bottleneck objectives and mutual-information estimators.

Built so far: Deep VIB (module ``bottleneck_jax.information.vib``), the base every paper of this
family builds on. As everywhere in the library, the family re-exports the pure function under the
method's name: ``from bottleneck_jax.information import vib`` gives the function ``vib``. See ``bottleneck-jax list --family information`` for the catalogue.
"""

from bottleneck_jax.information.vib import (
    VIB,
    VIBClassifier,
    VIBEncoder,
    diag_gaussian_kl_std_normal,
    diag_gaussian_log_prob,
    ema_update,
    vib,
    vib_loss,
    vib_predictive_logprobs,
    vib_rate,
)

__all__ = [
    "VIB",
    "VIBClassifier",
    "VIBEncoder",
    "diag_gaussian_kl_std_normal",
    "diag_gaussian_log_prob",
    "ema_update",
    "vib",
    "vib_loss",
    "vib_predictive_logprobs",
    "vib_rate",
]
