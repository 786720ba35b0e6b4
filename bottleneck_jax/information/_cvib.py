"""CVIB: variational-IB channel masks and a contrastive self-pruning loss.

Paper: Mingshan Chang, Min Yang, Qingshan Jiang, Ruifeng Xu, "Reducing Spurious Correlations
for Aspect-Based Sentiment Analysis with Variational Information Bottleneck and Contrastive
Learning", Knowledge-Based Systems 2024 (https://arxiv.org/abs/2303.02846); code shesshan/CVIB.

Idea. Two networks with the same backbone are trained together: the *original* network and a
*self-pruned* one whose hidden channels pass through VIB masks (Dai et al. 2018, "Compressing
Neural Networks using the Variational Information Bottleneck"). Each channel ``c`` has a learned,
input-independent multiplicative gate ``z_c ~ N(mu_c, exp(logvar_c))``; the KL term (closed form
after optimising a Gaussian prior) drives uninformative channels to be pruned, and an in-batch
contrastive loss between the two networks' pooled features makes the pruned network keep what
the original one represents. Inference uses the pruned network.

  z_c = mu_c + exp(logvar_c / 2) eps      (one draw per example, broadcast over tokens)
  KL = 1/2 * kl_mult * L_seq * sum_c log(1 + mu_c^2 / (exp(logvar_c) + 1e-8))
  log alpha_c = logvar_c - log(mu_c^2 + 1e-8);   channel pruned when log alpha_c >= thr (= 0)
  L_SD(a, b) = CE( cos(a_i, b_j) / tau, target j = i )
  L_orig  = CE(f_o) + lam_cl * L_SD(sg(h_p), h_o)
  L_prune = CE(f_p) + lam_kl * KL + lam_cl * L_SD(h_p, sg(h_o))

Implemented here (nats): :func:`vib_mask_init`, :func:`vib_mask_log_alpha`,
:func:`vib_mask_kl`, :func:`vib_mask_sparsity`, :func:`vib_mask` (the layer as a function, a
:class:`~bottleneck_jax.core.BottleneckOutput`), :func:`cross_view_infonce`,
:func:`cvib_losses`, and the thin :class:`VIBMask` module.

Departures: the BERT backbones (RGAT-BERT, BERT-SPC) and the ABSA data are out of scope; the
masks work on any ``[B, ..., D]`` features. ``bits`` of the mask layer is the per-sequence KL
(``seq_len = 1``) in bits, the same for every example (the gates do not depend on the input).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.rng import as_key
from bottleneck_jax.core.types import BottleneckOutput
from bottleneck_jax.core.units import LN2
from bottleneck_jax.kernels.sharding import replicate

MODES = ("sample", "hard", "weighted", "mean")
_EPS = 1e-8


class VIBMaskParams(NamedTuple):
  """The per-channel gate parameters: ``mu [D]`` and ``logvar [D]``."""
  mu: Float[Array, "d"]
  logvar: Float[Array, "d"]


def _check_params(fn: str, mu, logvar) -> None:
  V.check_floating(fn, "mu", mu)
  V.check_rank(fn, "mu", mu, 1)
  V.check_floating(fn, "logvar", logvar)
  V.check_same_shape(fn, "mu", mu, "logvar", logvar)
  if mu.shape[0] < 1:
    raise ValueError(f"{fn}: mu must hold at least one channel, got {V.describe(mu)}")
  if jnp.dtype(mu.dtype) != jnp.dtype(logvar.dtype):
    raise TypeError(f"{fn}: mu and logvar must have the same dtype, got {V.describe(mu)} and "
                    f"{V.describe(logvar)}")


def vib_mask_init(key, dim: int, *, init_mag: float = 9.0, init_var: float = 0.01,
                  dtype=jnp.float32) -> VIBMaskParams:
  """Initial gates: ``mu ~ N(1, init_var^2)``, ``logvar ~ N(-init_mag, init_var^2)``.

  As the reference (``post_z_mu.normal_(1, init_var)``, ``post_z_logD.normal_(-init_mag,
  init_var)``): the gates start open and almost deterministic.

  Example:
    >>> from bottleneck_jax.information import vib_mask_init
    >>> p = vib_mask_init(0, 4)
    >>> p.mu.shape, bool(abs(float(p.logvar.mean()) + 9) < 0.1)
    ((4,), True)
  """
  fn = "vib_mask_init"
  V.check_scalar(fn, "dim", dim, low=1, integer=True)
  V.check_scalar(fn, "init_mag", init_mag, static=True)
  V.check_scalar(fn, "init_var", init_var, low=0.0, static=True)
  init_mag, init_var = float(init_mag), float(init_var)
  key = as_key(key, fn=fn)
  k1, k2 = jax.random.split(key)
  mu = 1.0 + init_var * jax.random.normal(k1, (int(dim),), dtype)
  logvar = -init_mag + init_var * jax.random.normal(k2, (int(dim),), dtype)
  return VIBMaskParams(mu, logvar)


def vib_mask_log_alpha(mu: Float[Array, "d"], logvar: Float[Array, "d"]) -> Float[Array, "d"]:
  """``log alpha = logvar - log(mu^2 + 1e-8)``, the dropout-rate proxy of each channel.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import vib_mask_log_alpha
    >>> float(vib_mask_log_alpha(jnp.array([1.0]), jnp.array([0.0]))[0]) < 1e-6
    True
  """
  _check_params("vib_mask_log_alpha", mu, logvar)
  return logvar - jnp.log(mu * mu + _EPS)


def vib_mask_kl(mu: Float[Array, "d"], logvar: Float[Array, "d"], *, seq_len: int = 1,
                kl_mult: float = 1.0) -> Float[Array, ""]:
  """The gates' KL term, ``1/2 kl_mult seq_len sum_c log(1 + mu_c^2 / (exp(logvar_c) + 1e-8))``.

  Args:
    mu, logvar: ``[D]`` gate parameters.
    seq_len: positions the gates multiply (the reference scales by ``x.shape[1]``).
    kl_mult: a multiplier ``>= 0``.

  Returns:
    The KL in nats, a scalar.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import vib_mask_kl
    >>> round(float(vib_mask_kl(jnp.array([1.0]), jnp.array([-9.0]))), 4)   # ~ 1/2 log(1 + e^9)
    4.5
  """
  fn = "vib_mask_kl"
  _check_params(fn, mu, logvar)
  V.check_scalar(fn, "seq_len", seq_len, low=1, integer=True)
  V.check_scalar(fn, "kl_mult", kl_mult, low=0.0)
  return (0.5 * kl_mult * seq_len) * jnp.sum(jnp.log1p(mu * mu / (jnp.exp(logvar) + _EPS)))


def vib_mask_sparsity(mu: Float[Array, "d"], logvar: Float[Array, "d"], *,
                      threshold: float = 0.0) -> Float[Array, ""]:
  """Fraction of channels pruned, ``mean_c 1[log alpha_c >= threshold]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import vib_mask_sparsity
    >>> float(vib_mask_sparsity(jnp.array([1.0, 1.0]), jnp.array([-9.0, 3.0])))
    0.5
  """
  fn = "vib_mask_sparsity"
  _check_params(fn, mu, logvar)
  V.check_scalar(fn, "threshold", threshold)
  la = logvar - jnp.log(mu * mu + _EPS)
  return jnp.mean((la >= float(threshold)).astype(jnp.float32))


def vib_mask(h: Float[Array, "b *tokens d"], mu: Float[Array, "d"], logvar: Float[Array, "d"],
             *, key=None, mode: str = "sample", threshold: float = 0.0,
             kl_mult: float = 1.0) -> BottleneckOutput:
  """Applies VIB channel gates to features ``h [B, ..., D]``.

  ``mode``: ``"sample"`` (training: ``z = mu + exp(logvar/2) eps``, one draw per example,
  broadcast over the middle axes), ``"hard"`` (``1[log alpha < threshold]``), ``"weighted"``
  (``1[log alpha < threshold] * mu``, the reference's test-time mask) or ``"mean"`` (``mu``).

  Returns:
    :class:`~bottleneck_jax.core.BottleneckOutput` with ``z = h * mask``, ``loss`` the KL times
    ``kl_mult`` with ``seq_len`` the product of ``h``'s middle axes (nats), ``bits`` the
    per-sequence KL in bits for every example, ``aux = {"mask", "log_alpha", "sparsity"}``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import vib_mask
    >>> out = vib_mask(jnp.ones((2, 3)), jnp.array([1., 2., 0.]), jnp.array([-9., -9., 0.]),
    ...                mode="weighted")
    >>> out.z[0].tolist()
    [1.0, 2.0, 0.0]
  """
  fn = "vib_mask"
  V.check_floating(fn, "h", h)
  V.check_rank(fn, "h", h, min_rank=2)
  _check_params(fn, mu, logvar)
  if h.shape[-1] != mu.shape[0]:
    raise ValueError(f"{fn}: h's last axis must match the {mu.shape[0]} gates, got "
                     f"{V.describe(h)}")
  if jnp.dtype(h.dtype) != jnp.dtype(mu.dtype):
    raise TypeError(f"{fn}: h must have the dtype of mu ({jnp.dtype(mu.dtype).name}), got "
                    f"{V.describe(h)}")
  V.check_choice(fn, "mode", mode, MODES)
  V.check_scalar(fn, "threshold", threshold)
  V.check_scalar(fn, "kl_mult", kl_mult, low=0.0)
  la = logvar - jnp.log(mu * mu + _EPS)
  keep = (la < threshold).astype(h.dtype)
  if mode == "sample":
    if key is None:
      raise ValueError(f"{fn}: key is required for mode='sample'")
    key = as_key(key, fn=fn)
    eps = jax.random.normal(key, (h.shape[0], mu.shape[0]), h.dtype)
    gate = mu + jnp.exp(0.5 * logvar) * eps
    mask = gate.reshape((h.shape[0],) + (1,) * (h.ndim - 2) + (mu.shape[0],))
  elif mode == "hard":
    mask = keep
  elif mode == "weighted":
    mask = keep * mu
  else:
    mask = mu
  seq_len = math.prod(h.shape[1:-1])
  kl = 0.5 * jnp.sum(jnp.log1p(mu * mu / (jnp.exp(logvar) + _EPS)))
  loss = kl_mult * seq_len * kl
  bits = jnp.broadcast_to(kl / LN2, (h.shape[0],))
  return BottleneckOutput(h * mask, loss, bits,
                          {"mask": mask, "log_alpha": la,
                           "sparsity": jnp.mean(1.0 - keep.astype(jnp.float32))})


def cross_view_infonce(anchors: Float[Array, "b d"], others: Float[Array, "b d"], *,
                       temperature: float = 0.1) -> Float[Array, ""]:
  """The self-pruning contrastive loss ``CE(cos(a_i, b_j) / tau, target j = i)``, in nats.

  Rows of ``anchors`` are the queries; in-batch ``others`` are the keys (one direction, as the
  reference's ``SdConLoss``). ``log B`` minus the loss is an InfoNCE lower bound on the MI
  between the two views.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import cross_view_infonce
    >>> a = jnp.eye(4)
    >>> float(cross_view_infonce(a, a, temperature=0.05)) < 1e-6
    True
  """
  fn = "cross_view_infonce"
  _check_views(fn, "anchors", anchors, "others", others)
  V.check_scalar(fn, "temperature", temperature, low=0.0, low_inclusive=False)
  return _cross_view(anchors, others, temperature)


def _check_views(fn, name_a, a, name_b, b) -> None:
  V.check_floating(fn, name_a, a)
  V.check_rank(fn, name_a, a, 2)
  V.check_floating(fn, name_b, b)
  V.check_same_shape(fn, name_a, a, name_b, b)
  if a.shape[0] < 1 or a.shape[1] < 1:
    raise ValueError(f"{fn}: {name_a} must be a non-empty [B, D] array, got {V.describe(a)}")
  if jnp.dtype(a.dtype) != jnp.dtype(b.dtype):
    raise TypeError(f"{fn}: {name_a} and {name_b} must have the same dtype, got "
                    f"{V.describe(a)} and {V.describe(b)}")


def _cross_view(anchors, others, temperature):
  anchors, others = replicate(anchors), replicate(others)
  na = anchors / jnp.maximum(jnp.linalg.norm(anchors, axis=-1, keepdims=True), 1e-8)
  nb = others / jnp.maximum(jnp.linalg.norm(others, axis=-1, keepdims=True), 1e-8)
  s = na @ nb.T / temperature
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
      s, jnp.arange(anchors.shape[0])))


class CVIBLosses(NamedTuple):
  """Result of :func:`cvib_losses` (nats).

  Attributes:
    original: the original network's loss (its gradient never reaches the pruned network).
    pruned: the pruned network's loss (its gradient never reaches the original network).
    ce_original, ce_pruned, contrastive_original, contrastive_pruned: the parts.
  """
  original: Float[Array, ""]
  pruned: Float[Array, ""]
  ce_original: Float[Array, ""]
  ce_pruned: Float[Array, ""]
  contrastive_original: Float[Array, ""]
  contrastive_pruned: Float[Array, ""]


def cvib_losses(logits_o: Float[Array, "b c"], logits_p: Float[Array, "b c"],
                labels: Int[Array, "b"], h_o: Float[Array, "b d"], h_p: Float[Array, "b d"],
                kl: Float[Array, ""], *, kl_weight: float = 1e-6, cl_weight: float = 1.0,
                temperature: float = 0.1) -> CVIBLosses:
  """The two CVIB losses, each with its own stop-gradients (train them with two optimisers or
  sum them: the gradients are disjoint).

  .. math::
    L_o = CE(f_o) + \\lambda_{cl} L_{SD}(sg(h_p), h_o),\\qquad
    L_p = CE(f_p) + \\lambda_{kl} KL + \\lambda_{cl} L_{SD}(h_p, sg(h_o))

  Args:
    logits_o, logits_p: ``[B, C]`` logits of the original and the pruned network.
    labels: ``[B]`` class ids.
    h_o, h_p: ``[B, D]`` pooled features of the two networks.
    kl: the pruned network's mask KL (e.g. ``vib_mask(...).loss``).
    kl_weight, cl_weight: ``lambda_kl``, ``lambda_cl`` (``train.py`` defaults 1e-6 and 1).
    temperature: ``tau`` of the contrastive loss.

  Returns:
    :class:`CVIBLosses`.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import cvib_losses
    >>> z = jnp.zeros((4, 3)); h = jnp.eye(4)
    >>> out = cvib_losses(z, z, jnp.zeros(4, jnp.int32), h, h, jnp.array(0.0))
    >>> round(float(out.ce_original), 4)   # uniform logits over 3 classes: log 3
    1.0986
  """
  fn = "cvib_losses"
  for arg, a in (("logits_o", logits_o), ("logits_p", logits_p)):
    V.check_floating(fn, arg, a)
    V.check_rank(fn, arg, a, 2)
  V.check_same_shape(fn, "logits_o", logits_o, "logits_p", logits_p)
  V.check_integer(fn, "labels", labels)
  V.check_shape(fn, "labels", labels, (logits_o.shape[0],))
  V.check_floating(fn, "kl", kl)
  V.check_shape(fn, "kl", kl, ())
  kl = jnp.asarray(kl)
  _check_views(fn, "h_o", h_o, "h_p", h_p)
  if len({jnp.dtype(a.dtype) for a in (logits_o, logits_p, h_o, kl)}) != 1:
    raise TypeError(f"{fn}: logits_o, logits_p, h_o, h_p and kl must have the same dtype, got "
                    f"{V.describe(logits_o)}, {V.describe(logits_p)}, {V.describe(h_o)}, "
                    f"{V.describe(kl)}")
  if h_o.shape[0] != logits_o.shape[0]:
    raise ValueError(f"{fn}: h_o must have one row per example ({logits_o.shape[0]}), got "
                     f"{V.describe(h_o)}")
  V.check_scalar(fn, "kl_weight", kl_weight, low=0.0)
  V.check_scalar(fn, "cl_weight", cl_weight, low=0.0)
  V.check_scalar(fn, "temperature", temperature, low=0.0, low_inclusive=False)
  kl_weight, cl_weight = float(kl_weight), float(cl_weight)
  sg = jax.lax.stop_gradient
  ce_o = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits_o, labels))
  ce_p = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits_p, labels))
  cl_o = _cross_view(sg(h_p), h_o, temperature)
  cl_p = _cross_view(h_p, sg(h_o), temperature)
  return CVIBLosses(ce_o + cl_weight * cl_o, ce_p + kl_weight * kl + cl_weight * cl_p,
                    ce_o, ce_p, cl_o, cl_p)


class VIBMask(nnx.Module):
  """VIB channel gates as a layer (parameters ``mu``, ``logvar`` of shape ``[dim]``).

  ``__call__(h, *, key=None, mode="sample", threshold=0.0)`` calls :func:`vib_mask`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.information import VIBMask
    >>> m = VIBMask(3, rngs=nnx.Rngs(0))
    >>> m(jnp.ones((2, 3)), key=jax.random.key(1)).z.shape
    (2, 3)
  """

  def __init__(self, dim: int, *, init_mag: float = 9.0, init_var: float = 0.01,
               kl_mult: float = 1.0, rngs: nnx.Rngs):
    p = vib_mask_init(rngs.params(), dim, init_mag=init_mag, init_var=init_var)
    self.mu = nnx.Param(p.mu)
    self.logvar = nnx.Param(p.logvar)
    self.kl_mult = float(kl_mult)

  def __call__(self, h: Float[Array, "b *tokens d"], *, key=None, mode: str = "sample",
               threshold: float = 0.0) -> BottleneckOutput:
    return vib_mask(h, self.mu[...], self.logvar[...], key=key, mode=mode, threshold=threshold,
                    kl_mult=self.kl_mult)


__all__ = [
    "CVIBLosses",
    "VIBMask",
    "VIBMaskParams",
    "cross_view_infonce",
    "cvib_losses",
    "vib_mask",
    "vib_mask_init",
    "vib_mask_kl",
    "vib_mask_log_alpha",
    "vib_mask_sparsity",
]
