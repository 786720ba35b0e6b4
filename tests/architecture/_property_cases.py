"""Property-test rows of the ``architecture`` family (collected by ``tests/test_properties.py``)."""

import jax.numpy as jnp

from bottleneck_jax import architecture as A
from tests._cases import KEY, Case, floats

_f = floats
_SIZES = (1, 4, 1)
_STAGES = [A.Stage(1.0, 1, 1.0), A.Stage(0.5, 1, 0.5), A.Stage(1.0, 1, 0.25)]

CASES = [
    # winner-init
    Case("spectral_centroid", A.spectral_centroid,
         lambda r: {"signal": _f(r, 8, 2), "freq_axis": -2, "channel_axis": -1}, ("signal",)),
    Case("winner_scales", A.winner_scales,
         lambda r: {"psi": 0.6, "n_channels": 1, "schedule": A.WinnerSchedule.audio()},
         ("psi",)),
    Case("siren_init", A.siren_init,
         lambda r: {"key": KEY, "layer_sizes": [1, 4, 1], "omega_first": 30.0,
                    "omega_hidden": 30.0}, ("key", "layer_sizes")),
    Case("winner_init", A.winner_init,
         lambda r: {"key": KEY, "layer_sizes": [1, 4, 1], "target": _f(r, 8, 1),
                    "omega_hidden": 30.0}, ("key", "layer_sizes", "target")),
    Case("siren_apply", A.siren_apply,
         lambda r: {"params": A.siren_init(KEY, _SIZES), "coords": _f(r, 3, 1),
                    "omega_first": 30.0}, ("params", "coords")),
    # shc
    Case("sinkhorn", A.sinkhorn, lambda r: {"logits": _f(r, 2, 3, 3), "iters": 3}, ("logits",)),
    Case("spectral_normalize", A.spectral_normalize,
         lambda r: {"w": _f(r, 2, 3, 3), "mode": "sphere", "method": "eig", "iters": 2,
                    "epsilon": 1e-12}, ("w",)),
    Case("expand_streams", A.expand_streams, lambda r: {"x": _f(r, 2, 3), "n_streams": 2},
         ("x",)),
    Case("reduce_streams", A.reduce_streams,
         lambda r: {"streams": _f(r, 2, 2, 3), "reduction": "sum"}, ("streams",)),
    Case("hc_init", A.hc_init,
         lambda r: {"n_streams": 2, "dim": 3, "kind": "mhc", "layer_index": 1,
                    "gate_scale": 0.01}, ("n_streams", "dim")),
    Case("hc_coeffs", A.hc_coeffs,
         lambda r: {"params": A.hc_init(2, 3, kind="shc"), "streams": _f(r, 2, 2, 3),
                    "kind": "shc", "sinkhorn_iters": 3, "epsilon": 1e-6},
         ("params", "streams")),
    Case("hc_width", A.hc_width, lambda r: {"streams": _f(r, 2, 2, 3), "h_pre": _f(r, 2, 2)},
         ("streams", "h_pre")),
    Case("hc_depth", A.hc_depth,
         lambda r: {"streams": _f(r, 2, 2, 3), "branch_out": _f(r, 2, 3), "h_post": _f(r, 2, 2),
                    "h_res": _f(r, 2, 2, 2)}, ("streams", "branch_out", "h_post", "h_res")),
    Case("hyper_connection", A.hyper_connection,
         lambda r: {"params": A.hc_init(2, 3, kind="mhc"), "streams": _f(r, 2, 2, 3),
                    "branch_fn": jnp.tanh, "kind": "mhc", "sinkhorn_iters": 3},
         ("params", "streams", "branch_fn")),
    Case("product_norm", A.product_norm, lambda r: {"matrices": _f(r, 3, 2, 2)}, ("matrices",)),
    # bottleneck-sampling
    Case("shift_sd3", A.shift_sd3, lambda r: {"t": _f(r, 3) * 0.1, "shift": 3.0}, ("t",)),
    Case("shift_flux", A.shift_flux, lambda r: {"t": _f(r, 3) * 0.1, "mu": 1.0}, ("t",)),
    Case("flux_mu", A.flux_mu, lambda r: {"seq_len": 1024, "base_shift": 0.5, "max_shift": 1.15},
         ("seq_len",)),
    Case("stage_timesteps", A.stage_timesteps,
         lambda r: {"t_start": 1.0, "t_end": 0.0, "num_steps": 3, "shift": 2.0},
         ("t_start", "t_end", "num_steps")),
    Case("renoise", A.renoise, lambda r: {"x0": _f(r, 2, 3), "t": 0.5, "key": KEY}, ("x0",)),
    Case("resize_latent", A.resize_latent,
         lambda r: {"x": _f(r, 4, 4, 1), "shape": [2, 2, 1], "method": "linear"}, ("x",)),
    Case("euler_flow_stage", A.euler_flow_stage,
         lambda r: {"velocity_fn": lambda x, t: -x, "x": _f(r, 2, 2),
                    "timesteps": jnp.asarray([1.0, 0.5, 0.0])},
         ("velocity_fn", "x", "timesteps")),
    Case("bottleneck_sample", A.bottleneck_sample,
         lambda r: {"velocity_fn": lambda x, t: -x, "full_shape": [4, 4, 1], "stages": _STAGES,
                    "key": KEY}, ("velocity_fn", "full_shape", "stages")),
    Case("sampling_cost", A.sampling_cost,
         lambda r: {"stages": _STAGES, "tokens_full": 16, "alpha_attn": 1.0, "beta_lin": 0.5},
         ("stages",)),
]
