"""Sparse autoencoders (a dictionary bottleneck): ReLU + L1, TopK and JumpReLU.

The one implementation of the SAE maths in the library: the compression family's
:class:`~bottleneck_jax.compression.SparseAutoencoder` (a bottleneck layer) and MoNA data
selection, and the concepts family's DN-CBM concept discovery
(:class:`~bottleneck_jax.concepts.ConceptSAE`) build on these functions.

References: Bricken et al., "Towards Monosemanticity" (2023, ReLU + L1); Gao et al., "Scaling
and evaluating sparse autoencoders" (2024, https://arxiv.org/abs/2406.04093, TopK); Rajamanoharan
et al., "Jumping Ahead: Improving Reconstruction Fidelity with JumpReLU Sparse Autoencoders"
(2024, https://arxiv.org/abs/2407.14435); the SAELens and dictionary_learning implementations.

With ``x_c = x - b_dec``, ``pre = x_c W_enc + b_enc`` and ``x_hat = f W_dec + b_dec``:

* ReLU: ``f = ReLU(pre)``, sparsity ``l1 mean_b sum_i f_i ||W_dec,i||``;
* TopK: ``f`` keeps the ``k`` largest ``ReLU(pre)`` per example (exactly ``k`` non-zeros unless
  fewer are positive);
* JumpReLU: ``f = pre H(pre - theta)`` with straight-through pseudo-gradients of the rectangle
  kernel ``K(u) = 1[|u| < 1/2]`` and bandwidth ``eps``:
  ``d f / d theta = -(theta / eps) K((pre - theta) / eps)``, and the L0 penalty
  ``sum_i H(pre_i - theta_i)`` with ``d / d theta = -(1 / eps) K(...)``.

The reconstruction loss is ``mean_b sum_dims (x_hat - x)^2``. :func:`init_sae` follows SAELens:
decoder rows Kaiming-uniform, normalised and scaled to ``decoder_init_norm``, ``W_enc = W_dec^T``,
zero biases.

Not built: the AuxK loss and BatchTopK. Neuron resampling is DN-CBM's
(:func:`bottleneck_jax.concepts.resample_dead`). The decoder rows are renormalised by the caller
(:func:`normalize_decoder`) when a unit-norm dictionary is wanted.
"""


from __future__ import annotations

import math
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.rng import as_key

ACTIVATIONS = ("relu", "topk", "jumprelu")


class SAEParams(NamedTuple):
  """``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_in]``, ``b_dec [d_in]``."""
  W_enc: Array
  b_enc: Array
  W_dec: Array
  b_dec: Array


def init_sae(key, d_in: int, d_sae: int, *, decoder_init_norm: float = 0.1) -> SAEParams:
  """SAELens' initialisation (see the module docstring).

  Example:
    >>> from bottleneck_jax.ops import init_sae
    >>> p = init_sae(0, 8, 32)
    >>> p.W_enc.shape, p.W_dec.shape
    ((8, 32), (32, 8))
  """
  fn = "init_sae"
  key = as_key(key, fn=fn)
  V.check_scalar(fn, "d_in", d_in, low=1, high=2**24, integer=True, static=True)
  V.check_scalar(fn, "d_sae", d_sae, low=1, high=2**24, integer=True, static=True)
  V.check_scalar(fn, "decoder_init_norm", decoder_init_norm, low=0.0, low_inclusive=False,
                 high=1e6, static=True)
  bound = math.sqrt(6.0 / d_in)
  w = jax.random.uniform(key, (d_sae, d_in), jnp.float32, -bound, bound)
  w = w / jnp.linalg.norm(w, axis=-1, keepdims=True) * decoder_init_norm
  return SAEParams(w.T, jnp.zeros(d_sae), w, jnp.zeros(d_in))


def _check_params(fn: str, params) -> tuple[int, int]:
  if not isinstance(params, SAEParams):
    raise TypeError(f"{fn}: params must be an SAEParams, got {type(params).__name__}")
  for name, a in zip(SAEParams._fields, params):
    V.check_floating(fn, f"params.{name}", a)
  d_in, d_sae = params.W_enc.shape if params.W_enc.ndim == 2 else (-1, -1)
  if (params.W_enc.ndim != 2 or params.W_dec.shape != (d_sae, d_in)
      or params.b_enc.shape != (d_sae,) or params.b_dec.shape != (d_in,)):
    raise ValueError(f"{fn}: params must have W_enc [d_in, d_sae], b_enc [d_sae], W_dec "
                     f"[d_sae, d_in], b_dec [d_in], got "
                     f"{[list(a.shape) for a in params]}")
  return d_in, d_sae


@jax.custom_vjp
def _jumprelu(x, threshold, bandwidth):
  return x * (x > threshold).astype(x.dtype)


def _jumprelu_fwd(x, threshold, bandwidth):
  return _jumprelu(x, threshold, bandwidth), (x, threshold, bandwidth)


def _jumprelu_bwd(res, g):
  x, threshold, bandwidth = res
  gate = (x > threshold).astype(x.dtype)
  kernel = (jnp.abs((x - threshold) / bandwidth) < 0.5).astype(x.dtype)
  d_theta = -(threshold / bandwidth) * kernel * g
  d_theta = jnp.sum(d_theta.reshape(-1, threshold.shape[-1]), axis=0).reshape(threshold.shape)
  return gate * g, d_theta, jnp.zeros_like(bandwidth)


_jumprelu.defvjp(_jumprelu_fwd, _jumprelu_bwd)


@jax.custom_vjp
def _step(x, threshold, bandwidth):
  return (x > threshold).astype(x.dtype)


def _step_fwd(x, threshold, bandwidth):
  return _step(x, threshold, bandwidth), (x, threshold, bandwidth)


def _step_bwd(res, g):
  x, threshold, bandwidth = res
  kernel = (jnp.abs((x - threshold) / bandwidth) < 0.5).astype(x.dtype)
  d_theta = -(1.0 / bandwidth) * kernel * g
  d_theta = jnp.sum(d_theta.reshape(-1, threshold.shape[-1]), axis=0).reshape(threshold.shape)
  return jnp.zeros_like(x), d_theta, jnp.zeros_like(bandwidth)


_step.defvjp(_step_fwd, _step_bwd)


def _check_jump(fn, x, threshold, bandwidth):
  V.check_floating(fn, "x", x)
  V.check_rank(fn, "x", x, min_rank=1)
  V.check_floating(fn, "threshold", threshold)
  V.check_shape(fn, "threshold", threshold, (x.shape[-1],))
  V.check_scalar(fn, "bandwidth", bandwidth, low=0.0, low_inclusive=False)
  x = jnp.asarray(x)
  return x, jnp.asarray(threshold).astype(x.dtype), jnp.asarray(bandwidth, x.dtype)


def jumprelu(x: Float[Array, "*batch m"], threshold: Float[Array, "m"], *,
             bandwidth: float = 0.05) -> Float[Array, "*batch m"]:
  """``x H(x - theta)`` with the straight-through threshold gradient of JumpReLU SAEs.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.ops import jumprelu
    >>> jumprelu(jnp.array([0.5, 1.02, 2.0]), jnp.full(3, 1.0)).tolist()
    [0.0, 1.0199999809265137, 2.0]
  """
  x, t, b = _check_jump("jumprelu", x, threshold, bandwidth)
  return _jumprelu(x, t, b)


def heaviside_step(x: Float[Array, "*batch m"], threshold: Float[Array, "m"], *,
                   bandwidth: float = 0.05) -> Float[Array, "*batch m"]:
  """``H(x - theta)`` (the L0 of a JumpReLU) with the straight-through threshold gradient.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.ops import heaviside_step
    >>> heaviside_step(jnp.array([0.5, 2.0]), jnp.ones(2)).tolist()
    [0.0, 1.0]
  """
  x, t, b = _check_jump("heaviside_step", x, threshold, bandwidth)
  return _step(x, t, b)


def topk_activation(pre: Float[Array, "*batch m"], k: int) -> Float[Array, "*batch m"]:
  """Keeps the ``k`` largest ``ReLU(pre)`` of each row, zeros elsewhere.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.ops import topk_activation
    >>> topk_activation(jnp.array([0.1, 3.0, -1.0, 2.0]), 2).tolist()
    [0.0, 3.0, 0.0, 2.0]
  """
  fn = "topk_activation"
  V.check_floating(fn, "pre", pre)
  V.check_rank(fn, "pre", pre, min_rank=1)
  V.check_scalar(fn, "k", k, low=1, integer=True, static=True)
  pre = jnp.asarray(pre)
  if k > pre.shape[-1]:
    raise ValueError(f"{fn}: k must be <= the number of latents {pre.shape[-1]}, got {k}")
  vals, idx = jax.lax.top_k(pre, int(k))
  mask = jnp.sum(jax.nn.one_hot(idx, pre.shape[-1], dtype=pre.dtype), axis=-2)
  return jax.nn.relu(pre) * mask


class SAEFeatures(NamedTuple):
  """``features`` (sparse activations) and ``pre`` (pre-activations), each ``[..., d_sae]``."""
  features: Array
  pre: Array


def sae_encode(params: SAEParams, x: Float[Array, "*batch d"], *,
               activation: Literal["relu", "topk", "jumprelu"] = "topk", k: int | None = None,
               threshold: Float[Array, "m"] | None = None,
               bandwidth: float = 0.05) -> SAEFeatures:
  """``pre = (x - b_dec) W_enc + b_enc``, then the activation.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.ops import init_sae, sae_encode
    >>> f = sae_encode(init_sae(0, 4, 16), jnp.ones((2, 4)), activation="topk", k=3)
    >>> int((f.features > 0).sum(-1).max()) <= 3
    True
  """
  return _sae_encode("sae_encode", params, x, activation, k, threshold, bandwidth)


def _sae_encode(fn, params, x, activation, k, threshold, bandwidth) -> SAEFeatures:
  d_in, _ = _check_params(fn, params)
  V.check_floating(fn, "x", x)
  V.check_rank(fn, "x", x, min_rank=1)
  if x.shape[-1] != d_in:
    raise ValueError(f"{fn}: x must have {d_in} features on its last axis, got "
                     f"{V.describe(x)}")
  V.check_choice(fn, "activation", activation, ACTIVATIONS)
  x = jnp.asarray(x)
  pre = (x - params.b_dec.astype(x.dtype)) @ params.W_enc.astype(x.dtype) + params.b_enc.astype(
      x.dtype)
  if activation == "relu":
    return SAEFeatures(jax.nn.relu(pre), pre)
  if activation == "topk":
    if k is None:
      raise ValueError(f"{fn}: k must be given for activation='topk', got None")
    V.check_scalar(fn, "k", k, low=1, high=pre.shape[-1], integer=True, static=True)
    return SAEFeatures(topk_activation(pre, k), pre)
  if threshold is None:
    raise ValueError(f"{fn}: threshold must be given for activation='jumprelu', got None")
  V.check_floating(fn, "threshold", threshold)
  V.check_shape(fn, "threshold", threshold, (pre.shape[-1],))
  V.check_scalar(fn, "bandwidth", bandwidth, low=0.0, low_inclusive=False)
  return SAEFeatures(_jumprelu(pre, jnp.asarray(threshold).astype(pre.dtype),
                               jnp.asarray(bandwidth, pre.dtype)), pre)


def sae_decode(params: SAEParams, features: Float[Array, "*batch m"]) -> Float[Array, "*batch d"]:
  """``x_hat = f W_dec + b_dec``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.ops import init_sae, sae_decode
    >>> sae_decode(init_sae(0, 4, 16), jnp.zeros((2, 16))).shape
    (2, 4)
  """
  fn = "sae_decode"
  _, d_sae = _check_params(fn, params)
  V.check_floating(fn, "features", features)
  V.check_rank(fn, "features", features, min_rank=1)
  if features.shape[-1] != d_sae:
    raise ValueError(f"{fn}: features must have {d_sae} latents on the last axis, got "
                     f"{V.describe(features)}")
  f = jnp.asarray(features)
  return f @ params.W_dec.astype(f.dtype) + params.b_dec.astype(f.dtype)


def normalize_decoder(params: SAEParams) -> SAEParams:
  """Decoder rows scaled to unit norm, the encoder unchanged (the standard re-projection after
  an optimiser step; the reconstruction of the current features changes with it).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.ops import init_sae, normalize_decoder
    >>> p = normalize_decoder(init_sae(0, 4, 16))
    >>> bool(jnp.allclose(jnp.linalg.norm(p.W_dec, axis=-1), 1.0))
    True
  """
  _check_params("normalize_decoder", params)
  n = jnp.linalg.norm(params.W_dec, axis=-1, keepdims=True)
  n = jnp.maximum(n, 1e-12)
  return SAEParams(params.W_enc, params.b_enc, params.W_dec / n, params.b_dec)


class SAEMetrics(NamedTuple):
  """Fraction of variance unexplained, mean L0 and the fraction of never-active latents."""
  fvu: Array
  l0: Array
  dead_fraction: Array


def sae_metrics(x: Float[Array, "b d"], x_hat: Float[Array, "b d"],
                features: Float[Array, "b m"]) -> SAEMetrics:
  """``FVU = sum (x - x_hat)^2 / sum (x - mean x)^2``, ``L0 = mean_b #(f > 0)``, dead fraction.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.ops import sae_metrics
    >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> m = sae_metrics(x, x, jnp.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]))
    >>> float(m.fvu), float(m.l0), round(float(m.dead_fraction), 3)
    (0.0, 1.0, 0.333)
  """
  fn = "sae_metrics"
  V.check_floating(fn, "x", x)
  V.check_rank(fn, "x", x, 2)
  V.check_floating(fn, "x_hat", x_hat)
  V.check_same_shape(fn, "x", x, "x_hat", x_hat)
  V.check_floating(fn, "features", features)
  V.check_rank(fn, "features", features, 2)
  if features.shape[0] != x.shape[0] or x.shape[0] == 0:
    raise ValueError(f"{fn}: features and x must have the same non-empty batch, got "
                     f"{V.describe(features)} and {V.describe(x)}")
  x, x_hat, f = jnp.asarray(x), jnp.asarray(x_hat).astype(x.dtype), jnp.asarray(features)
  fvu = jnp.sum(jnp.square(x - x_hat)) / jnp.maximum(
      jnp.sum(jnp.square(x - jnp.mean(x, axis=0))), 1e-30)
  active = (f > 0)
  return SAEMetrics(fvu, jnp.mean(jnp.sum(active, axis=-1).astype(x.dtype)),
                    jnp.mean((~jnp.any(active, axis=0)).astype(x.dtype)))


class SAELoss(NamedTuple):
  """``loss = reconstruction + sparsity``; ``l0`` the mean number of active latents."""
  loss: Array
  reconstruction: Array
  sparsity: Array
  l0: Array


def sae_loss(params: SAEParams, x: Float[Array, "b d"], *,
             activation: Literal["relu", "topk", "jumprelu"] = "topk", k: int | None = None,
             l1: float = 1.0, l0: float = 1.0, threshold: Array | None = None,
             bandwidth: float = 0.05) -> SAELoss:
  """The SAE training loss: ``mean_b ||x_hat - x||^2`` plus the activation's sparsity term
  (ReLU: ``l1 mean_b sum f ||W_dec||``; JumpReLU: ``l0 mean_b L0`` with the straight-through
  step; TopK: none).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.ops import init_sae, sae_loss
    >>> r = sae_loss(init_sae(0, 4, 16), jnp.ones((3, 4)), activation="relu")
    >>> r.loss.shape
    ()
  """
  fn = "sae_loss"
  V.check_scalar(fn, "l1", l1, low=0.0)
  V.check_scalar(fn, "l0", l0, low=0.0)
  V.check_floating(fn, "x", x)
  V.check_rank(fn, "x", x, 2)
  l1, l0 = (v if isinstance(v, jax.core.Tracer) else float(v) for v in (l1, l0))
  if x.shape[0] == 0:
    raise ValueError(f"{fn}: x must have a non-empty batch, got {V.describe(x)}")
  feats = _sae_encode(fn, params, x, activation, k, threshold, bandwidth)
  f = feats.features
  x = jnp.asarray(x)
  rec = jnp.mean(jnp.sum(jnp.square(sae_decode(params, f) - x), axis=-1))
  l0_value = jnp.mean(jnp.sum((f > 0).astype(x.dtype), axis=-1))
  if activation == "relu":
    norms = jnp.linalg.norm(params.W_dec, axis=-1).astype(x.dtype)
    sparsity = l1 * jnp.mean(jnp.sum(f * norms, axis=-1))
  elif activation == "jumprelu":
    step = _step(feats.pre, jnp.asarray(threshold).astype(x.dtype),
                 jnp.asarray(bandwidth, x.dtype))
    sparsity = l0 * jnp.mean(jnp.sum(step, axis=-1))
  else:
    sparsity = jnp.zeros((), x.dtype)
  return SAELoss(rec + sparsity, rec, sparsity, l0_value)


__all__ = [
    "ACTIVATIONS",
    "SAEFeatures",
    "SAELoss",
    "SAEMetrics",
    "SAEParams",
    "heaviside_step",
    "init_sae",
    "jumprelu",
    "normalize_decoder",
    "sae_decode",
    "sae_encode",
    "sae_loss",
    "sae_metrics",
    "topk_activation",
]
