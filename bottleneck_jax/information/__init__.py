"""Information-bottleneck objectives and mutual-information estimators.

All quantities are in nats unless a name says bits (:func:`to_bits` converts).

* Base method: Deep VIB (``_vib.py``).
* Estimator toolkit: variational bounds on critic scores (InfoNCE, NWJ, DV/MINE, JS) and KSG
  (``_mi_estimators.py``); Kozachenko-Leonenko entropy, plug-in entropy/MI of discrete rows, KDE
  entropy bounds and KDE MI, CLUB, the Gaussian closed form (``_entropy_estimators.py``).
* Papers, one private module each (named after the catalogue id): the information plane and its
  binning estimator (``_info_plane.py``), adaptive binning and adaptive KDE
  (``_adaptive_mi.py``), the Cauchy-Schwarz IB for regression (``_cs_ib.py``), CVIB's channel
  masks and contrastive loss (``_cvib.py``), the Gaussian-encoder MI estimators and
  MI-constrained training of "How does IB help deep learning?" (``_ib_generalization.py``),
  compress-then-estimate MI (``_lossy_mi.py``), the HIB history encoder (``_hib.py``) and the
  conditional-IB reasoning reward (``_cib_reasoning.py``).

Implementation modules are private and the family re-exports their public names:
``from bottleneck_jax.information import vib`` gives the function ``vib``. See
``bottleneck-jax list --family information`` for the catalogue.
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
from bottleneck_jax.information._cs_ib import (
    CSIBLoss,
    CSIBOutput,
    CSIBRegressor,
    conditional_cs_divergence,
    cs_divergence,
    cs_ib_loss,
    cs_qmi,
    cs_qmi_normalized,
    gaussian_gram,
    median_bandwidth,
)
from bottleneck_jax.information._cvib import (
    CVIBLosses,
    VIBMask,
    VIBMaskParams,
    cross_view_infonce,
    cvib_losses,
    vib_mask,
    vib_mask_init,
    vib_mask_kl,
    vib_mask_log_alpha,
    vib_mask_sparsity,
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
from bottleneck_jax.information._hib import (
    HIBLoss,
    HistoryEncoder,
    PrivilegedEncoder,
    hib_loss,
    infonce_bilinear,
)
from bottleneck_jax.information._ib_generalization import (
    MIConstraint,
    StochasticMLP,
    conditional_gaussian_encoder_mi,
    gaussian_encoder_mi,
    layer_entropy_global_bins,
    mi_constraint_step,
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
from bottleneck_jax.information._lossy_mi import (
    PCA,
    lossy_mi,
    noisy_forward,
    pca_fit,
    pca_transform,
)
from bottleneck_jax.information._mi_estimators import (
    MINEOutput,
    MINEState,
    critic_scores,
    dv_lower_bound,
    infonce_lower_bound,
    js_lower_bound,
    ksg_mi,
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
    "CSIBLoss",
    "CSIBOutput",
    "CSIBRegressor",
    "CVIBLosses",
    "HIBLoss",
    "HistoryEncoder",
    "InformationPoint",
    "KDEInformation",
    "LayerwiseMLP",
    "LayerwiseOutput",
    "MIConstraint",
    "MINEOutput",
    "MINEState",
    "PCA",
    "PrivilegedEncoder",
    "StochasticMLP",
    "VIB",
    "VIBClassifier",
    "VIBEncoder",
    "VIBMask",
    "VIBMaskParams",
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
    "conditional_cs_divergence",
    "conditional_gaussian_encoder_mi",
    "critic_scores",
    "cross_view_infonce",
    "cs_divergence",
    "cs_ib_loss",
    "cs_qmi",
    "cs_qmi_normalized",
    "cvib_losses",
    "discrete_mi",
    "dv_lower_bound",
    "equal_count_bin_edges",
    "gaussian_encoder_mi",
    "gaussian_gram",
    "gaussian_mi",
    "hib_loss",
    "infonce_bilinear",
    "infonce_lower_bound",
    "information_plane",
    "js_lower_bound",
    "kde_entropy_lower",
    "kde_entropy_upper",
    "kde_mi",
    "kl_entropy",
    "ksg_mi",
    "layer_entropy_global_bins",
    "logspaced_epochs",
    "lossy_mi",
    "median_bandwidth",
    "mi_constraint_step",
    "mine_init",
    "mine_lower_bound",
    "noisy_forward",
    "nwj_lower_bound",
    "pca_fit",
    "pca_transform",
    "plot_information_plane",
    "row_entropy",
    "to_bits",
    "token_surprisal",
    "uniform_bin_codes",
    "vib",
    "vib_loss",
    "vib_mask",
    "vib_mask_init",
    "vib_mask_kl",
    "vib_mask_log_alpha",
    "vib_mask_sparsity",
    "vib_predictive_logprobs",
    "vib_rate",
]
