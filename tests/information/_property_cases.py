"""Property-test rows of the information family's estimators and paper methods (collected by
``tests/test_properties.py``); the Deep VIB and first MI-estimator rows live there."""

import jax.numpy as jnp

from bottleneck_jax import information as I
from tests._cases import Case, floats, ints

_f, _i = floats, ints

CASES = [
    # toolkit
    Case("gaussian_mi", I.gaussian_mi,
         lambda r: {"cov": jnp.asarray([[1.0, 0.5], [0.5, 1.0]], jnp.float32), "dx": 1},
         ("cov",)),
    Case("kl_entropy", I.kl_entropy, lambda r: {"x": _f(r, 4, 2), "k": 2, "block_size": 3},
         ("x",)),
    Case("row_entropy", I.row_entropy, lambda r: {"codes": _i(r, 4, 2), "weights": _f(r, 4)},
         ("codes",)),
    Case("discrete_mi", I.discrete_mi, lambda r: {"a_codes": _i(r, 4, 2), "b_codes": _i(r, 4)},
         ("a_codes", "b_codes")),
    Case("kde_entropy_upper", I.kde_entropy_upper,
         lambda r: {"h": _f(r, 4, 2), "var": 0.5, "block_size": 3}, ("h",)),
    Case("kde_entropy_lower", I.kde_entropy_lower, lambda r: {"h": _f(r, 4, 2), "var": 0.5},
         ("h",)),
    Case("kde_mi", I.kde_mi, lambda r: {"h": _f(r, 4, 2), "labels": _i(r, 4), "var": 0.5},
         ("h", "labels")),
    Case("club_upper_bound", I.club_upper_bound,
         lambda r: {"mu": _f(r, 3, 2), "logvar": _f(r, 3, 2), "y": _f(r, 3, 2)},
         ("mu", "logvar", "y")),
    # info-plane
    Case("uniform_bin_codes", I.uniform_bin_codes,
         lambda r: {"t": _f(r, 4, 2), "num_edges": 5, "lo": -1.0, "hi": 1.0}, ("t",)),
    Case("binned_mi", I.binned_mi,
         lambda r: {"t": _f(r, 4, 2), "labels": _i(r, 4), "num_edges": 5}, ("t", "labels")),
    Case("binned_estimator", I.binned_estimator, lambda r: {"num_edges": 5, "lo": -1.0}),
    Case("information_plane", I.information_plane,
         lambda r: {"layers": (_f(r, 4, 2), _f(r, 4, 3)), "labels": _i(r, 4),
                    "estimator": I.binned_estimator()}, ("layers", "labels")),
    # adaptive-mi
    Case("equal_count_bin_edges", I.equal_count_bin_edges,
         lambda r: {"acts": _f(r, 4, 2), "num_bins": 3, "low": 0.0}, ("acts",)),
    Case("adaptive_bin_codes", I.adaptive_bin_codes,
         lambda r: {"acts": _f(r, 4, 2), "num_bins": 3, "low": 0.0}, ("acts",)),
    Case("adaptive_binned_mi", I.adaptive_binned_mi,
         lambda r: {"t": _f(r, 4, 2), "labels": _i(r, 4), "num_bins": 3}, ("t", "labels")),
    Case("adaptive_binning_estimator", I.adaptive_binning_estimator,
         lambda r: {"num_bins": 3, "low": 0.0}),
    Case("adaptive_kde_mi", I.adaptive_kde_mi,
         lambda r: {"h": _f(r, 4, 2), "labels": _i(r, 4), "var": 0.1, "rescale": "max_abs"},
         ("h", "labels")),
    # cib-reasoning
    Case("token_surprisal", I.token_surprisal,
         lambda r: {"prior_logits": _f(r, 2, 3, 4), "tokens": _i(r, 2, 3),
                    "mask": _f(r, 2, 3)}, ("prior_logits", "tokens", "mask")),
    Case("cib_cost", I.cib_cost,
         lambda r: {"mask": _f(r, 2, 3), "kind": "kl", "prior_logp_tok": _f(r, 2, 3),
                    "policy_logp_tok": _f(r, 2, 3)}, ("mask",)),
    Case("cib_reward", I.cib_reward,
         lambda r: {"task_reward": _f(r, 3), "cost": _f(r, 3), "beta": 0.5},
         ("task_reward", "cost")),
    Case("cib_optimal_policy", I.cib_optimal_policy,
         lambda r: {"log_q": _f(r, 4), "rewards": _f(r, 4), "beta": 0.5}, ("log_q", "rewards")),
    # cs-ib
    Case("gaussian_gram", I.gaussian_gram,
         lambda r: {"a": _f(r, 3, 2), "b": _f(r, 4, 2), "sigma": 1.0}, ("a",)),
    Case("cs_divergence", I.cs_divergence,
         lambda r: {"xp": _f(r, 3, 2), "xq": _f(r, 4, 2), "sigma": 1.0}, ("xp", "xq")),
    Case("cs_qmi", I.cs_qmi,
         lambda r: {"x": _f(r, 4, 2), "y": _f(r, 4, 1), "sigma_x": 1.0, "sigma_y": 0.5},
         ("x", "y")),
    Case("cs_qmi_normalized", I.cs_qmi_normalized,
         lambda r: {"x": _f(r, 4, 2), "y": _f(r, 4, 1), "sigma": 1.0}, ("x", "y")),
    Case("conditional_cs_divergence", I.conditional_cs_divergence,
         lambda r: {"x": _f(r, 4, 2), "y": _f(r, 4, 1), "y_hat": _f(r, 4, 1), "sigma_x": 1.0,
                    "sigma_y": 1.0, "denominator": "sum_of_sq"}, ("x", "y", "y_hat")),
    Case("median_bandwidth", I.median_bandwidth,
         lambda r: {"x": _f(r, 4, 2), "mode": "sqrt", "scale": 1.0}, ("x",)),
    Case("cs_ib_loss", I.cs_ib_loss,
         lambda r: {"x": _f(r, 4, 2), "y": _f(r, 4, 1), "y_hat": _f(r, 4, 1), "t": _f(r, 4, 3),
                    "beta": 0.1}, ("x", "y", "y_hat", "t")),
    # ib-generalization
    Case("gaussian_encoder_mi", I.gaussian_encoder_mi,
         lambda r: {"z": _f(r, 4, 2), "mu": _f(r, 4, 2), "std": _f(r, 4, 2),
                    "bound": "jensen"}, ("z", "mu", "std")),
    Case("conditional_gaussian_encoder_mi", I.conditional_gaussian_encoder_mi,
         lambda r: {"z": _f(r, 4, 2), "mu": _f(r, 4, 2), "std": _f(r, 4, 2),
                    "labels": _i(r, 4)}, ("z", "mu", "std", "labels")),
    Case("layer_entropy_global_bins", I.layer_entropy_global_bins,
         lambda r: {"acts": _f(r, 4, 2), "num_bins": 3}, ("acts",)),
    Case("mi_constraint_step", I.mi_constraint_step,
         lambda r: {"mi": jnp.asarray(1.0, jnp.float32), "lam": jnp.asarray(0.5, jnp.float32),
                    "target": 1.5, "lam_lr": 0.1}, ("mi", "lam")),
    Case("logspaced_epochs", I.logspaced_epochs, lambda r: {"num_epochs": 10, "num_points": 4},
         ("num_epochs", "num_points")),
]

NO_ROW = {
    "plot_information_plane": "writes a PNG file; checked in tests/information/test_info_plane.py",
}
