"""Architecture bottlenecks: initialisation, residual-stream mixing, in-context meta-learning and
diffusion sampling schedules.

* WINNER (``_winner_init.py``): SIREN and the noise-perturbed initialisation whose scales come
  from the target's spectral centroid (:func:`siren_init`, :func:`winner_init`,
  :func:`spectral_centroid`, :func:`winner_scales`, :func:`siren_apply`, :class:`Siren`).
* sHC (``_shc.py``): hyper-connections around any branch, with the residual mixing
  unconstrained (HC), doubly stochastic by Sinkhorn (mHC) or on the spectral-norm sphere (sHC)
  (:func:`hc_init`, :func:`hc_coeffs`, :func:`hyper_connection`, :class:`HyperConnection`,
  :func:`sinkhorn`, :func:`spectral_normalize`, :func:`expand_streams`,
  :func:`reduce_streams`, :func:`product_norm`).
* Bottleneck Sampling (``_bottleneck_sampling.py``): a high -> low -> high resolution schedule
  of any flow denoiser with re-noising and per-stage timestep shifts (:class:`Stage`,
  :func:`bottleneck_sample`, :func:`euler_flow_stage`, :func:`stage_timesteps`,
  :func:`shift_sd3`, :func:`shift_flux`, :func:`flux_mu`, :func:`renoise`,
  :func:`resize_latent`, :func:`sampling_cost`).
* GPICL (``_gpicl.py``): meta-training tasks from random projections and label permutations
  (:func:`task_params`, :func:`make_sequence`, :func:`sample_batch`), the transformer
  meta-learner :class:`GPICLTransformer`, :func:`gpicl_loss`, :func:`per_position_accuracy`
  and :func:`state_size`.

As everywhere in the library, implementation modules are private and the family re-exports their
public names. See ``bottleneck-jax list --family architecture`` for the catalogue.
"""

from bottleneck_jax.architecture._bottleneck_sampling import (
    SamplingCost,
    Stage,
    bottleneck_sample,
    euler_flow_stage,
    flux_mu,
    renoise,
    resize_latent,
    sampling_cost,
    shift_flux,
    shift_sd3,
    stage_timesteps,
)
from bottleneck_jax.architecture._gpicl import (
    GPICLBatch,
    GPICLTransformer,
    TaskParams,
    gpicl_loss,
    make_sequence,
    per_position_accuracy,
    sample_batch,
    state_size,
    task_params,
)
from bottleneck_jax.architecture._shc import (
    HCCoeffs,
    HyperConnection,
    expand_streams,
    hc_coeffs,
    hc_depth,
    hc_init,
    hc_width,
    hyper_connection,
    product_norm,
    reduce_streams,
    sinkhorn,
    spectral_normalize,
)
from bottleneck_jax.architecture._winner_init import (
    Siren,
    WinnerScales,
    WinnerSchedule,
    siren_apply,
    siren_init,
    spectral_centroid,
    winner_init,
    winner_scales,
)

__all__ = [
    "GPICLBatch",
    "GPICLTransformer",
    "HCCoeffs",
    "HyperConnection",
    "SamplingCost",
    "Siren",
    "Stage",
    "TaskParams",
    "WinnerScales",
    "WinnerSchedule",
    "bottleneck_sample",
    "euler_flow_stage",
    "expand_streams",
    "flux_mu",
    "gpicl_loss",
    "hc_coeffs",
    "hc_depth",
    "hc_init",
    "hc_width",
    "hyper_connection",
    "make_sequence",
    "per_position_accuracy",
    "product_norm",
    "reduce_streams",
    "renoise",
    "resize_latent",
    "sample_batch",
    "sampling_cost",
    "shift_flux",
    "shift_sd3",
    "siren_apply",
    "siren_init",
    "sinkhorn",
    "spectral_centroid",
    "spectral_normalize",
    "stage_timesteps",
    "state_size",
    "task_params",
    "winner_init",
    "winner_scales",
]
