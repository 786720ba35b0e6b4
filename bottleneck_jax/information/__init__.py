"""Information-bottleneck objectives and mutual-information estimators.

Built so far: Deep VIB (``_vib.py``), the base every paper of this family builds on, and the
mutual-information estimators (``_mi_estimators.py``: InfoNCE, NWJ, DV/MINE, JS bounds on critic
scores; the KSG nearest-neighbour estimator). As
everywhere in the library, implementation modules are private and the family re-exports their
public names: ``from bottleneck_jax.information import vib`` gives the function ``vib``. See ``bottleneck-jax list --family information`` for the catalogue.
"""

from bottleneck_jax.information._adaptive_mi import (
    adaptive_bin_codes,
    adaptive_binned_mi,
    adaptive_binning_estimator,
    adaptive_kde_mi,
    equal_count_bin_edges,
)
from bottleneck_jax.information._cib_reasoning import (
    cib_cost,
    cib_optimal_policy,
    cib_reward,
    token_surprisal,
)
from bottleneck_jax.information._entropy_estimators import (
    KDEInformation,
    club_upper_bound,
    discrete_mi,
    gaussian_mi,
    kde_entropy_lower,
    kde_entropy_upper,
    kde_mi,
    kl_entropy,
    row_entropy,
)
from bottleneck_jax.information._info_plane import (
    InformationPoint,
    LayerwiseMLP,
    LayerwiseOutput,
    binned_estimator,
    binned_mi,
    information_plane,
    logspaced_epochs,
    plot_information_plane,
    uniform_bin_codes,
)
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
    "InformationPoint",
    "KDEInformation",
    "LayerwiseMLP",
    "LayerwiseOutput",
    "MINEOutput",
    "MINEState",
    "VIB",
    "VIBClassifier",
    "VIBEncoder",
    "adaptive_bin_codes",
    "adaptive_binned_mi",
    "adaptive_binning_estimator",
    "adaptive_kde_mi",
    "binned_estimator",
    "binned_mi",
    "cib_cost",
    "cib_optimal_policy",
    "cib_reward",
    "club_upper_bound",
    "critic_scores",
    "discrete_mi",
    "dv_lower_bound",
    "equal_count_bin_edges",
    "gaussian_mi",
    "infonce_lower_bound",
    "information_plane",
    "js_lower_bound",
    "kde_entropy_lower",
    "kde_entropy_upper",
    "kde_mi",
    "kl_entropy",
    "ksg_mutual_information",
    "logspaced_epochs",
    "mine_init",
    "mine_lower_bound",
    "nwj_lower_bound",
    "plot_information_plane",
    "row_entropy",
    "to_bits",
    "token_surprisal",
    "uniform_bin_codes",
    "vib",
    "vib_loss",
    "vib_predictive_logprobs",
    "vib_rate",
]
