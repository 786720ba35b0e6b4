"""MI estimators and MI-constrained training of "How Does Information Bottleneck Help Deep
Learning?" (Kawaguchi, Deng, Ji & Huang, ICML 2023).

Paper: Kenji Kawaguchi, Zhun Deng, Xu Ji, Jiaoyang Huang, "How Does Information Bottleneck Help
Deep Learning?", ICML 2023 (https://arxiv.org/abs/2305.18887); code xu-ji/information-bottleneck.

Idea. The generalisation gap of a network is bounded by a term growing like
``sqrt((I(X; Z|Y) + I(phi; S)) / n)``: the information a representation keeps about the input
beyond the label (the "degree of IB") controls generalisation. The paper measures it with Monte
Carlo estimators on a stochastic encoder ``q(z|x) = N(mu(x), diag std(x)^2)`` and trains with a
constraint that steers ``I(X;Z)`` towards a target.

Estimators (``toy/util/model.py::log_marg_prob``, ``general.py::est_MI``), with
``l_ij = log q(z_i | x_j)`` over ``M`` samples ``z_i ~ q(.|x_i)``:

  mixture:  I(X;Z) ~= mean_i [ l_ii - (logsumexp_j l_ij - log M) ]      (<= log M)
  jensen:   I(X;Z) ~= mean_i [ l_ii - mean_j l_ij ]                      (an upper bound; loose)
  I(X;Z|Y) = sum_c p(c) I_c,  the mixture estimator within each class

For deterministic layers (``est_MI_binning``) ``I(X;Z) = H(Z_binned)`` with one global bin
width ``(max - min) / num_bins`` over the layer. MI-constrained training adds
``lam * (c - I(X;Z))`` to the loss and updates ``lam <- lam + eta (c - I(X;Z))`` (dual ascent).

Implemented here (nats): :func:`gaussian_encoder_mi`, :func:`conditional_gaussian_encoder_mi`,
:func:`layer_entropy_global_bins`, :func:`mi_constraint_step` and the thin
:class:`StochasticMLP` (separate mean and std heads, ``std = softplus(.)`` clamped at 1e-10).

Departures: the parameter-information term ``I(phi; S)`` (SWAG posteriors over several data
draws) is not implemented; the conditional estimator pools the within-class mixtures with masks
(one ``[M, M]`` matrix) instead of looping over classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.distributions import diag_gaussian_kl_std_normal
from bottleneck_jax.core.types import BottleneckOutput
from bottleneck_jax.core.units import LN2
from bottleneck_jax.information._entropy_estimators import _row_entropy
from bottleneck_jax.kernels.sharding import replicate

BOUNDS = ("mixture", "jensen")
_LOG_2PI = math.log(2 * math.pi)


def _check_encoder(fn: str, z, mu, std) -> None:
  for arg, a in (("z", z), ("mu", mu), ("std", std)):
    V.check_floating(fn, arg, a)
    V.check_rank(fn, arg, a, 2)
  V.check_same_shape(fn, "z", z, "mu", mu)
  V.check_same_shape(fn, "z", z, "std", std)
  if z.shape[0] < 1 or z.shape[1] < 1:
    raise ValueError(f"{fn}: z must be a non-empty [M, K] array, got {V.describe(z)}")
  if len({jnp.dtype(a.dtype) for a in (z, mu, std)}) != 1:
    raise TypeError(f"{fn}: z, mu and std must have the same dtype, got {V.describe(z)}, "
                    f"{V.describe(mu)}, {V.describe(std)}")


def _log_q_matrix(z, mu, std):
  """l[i, j] = log N(z_i; mu_j, diag std_j^2)."""
  z, mu, std = replicate(z), replicate(mu), replicate(std)
  inv = 1.0 / std
  quad = jnp.sum(((z[:, None, :] - mu[None, :, :]) * inv[None, :, :]) ** 2, axis=-1)
  return -0.5 * quad - jnp.sum(jnp.log(std), axis=-1)[None, :] - 0.5 * z.shape[1] * _LOG_2PI


def gaussian_encoder_mi(z: Float[Array, "m k"], mu: Float[Array, "m k"],
                        std: Float[Array, "m k"], *, bound: str = "mixture"
                        ) -> Float[Array, ""]:
  """Monte-Carlo estimate of ``I(X;Z)`` for a Gaussian encoder, in nats.

  .. math::
    \\hat I_{mix} = \\frac1M\\sum_i\\Big[l_{ii} - \\log\\frac1M\\sum_j e^{l_{ij}}\\Big],\\qquad
    \\hat I_{jensen} = \\frac1M\\sum_i\\Big[l_{ii} - \\frac1M\\sum_j l_{ij}\\Big]

  with ``l_ij = log N(z_i; mu_j, diag std_j^2)`` and ``z_i ~ q(.|x_i)``. The mixture estimate
  never exceeds ``log M``; the Jensen one is larger (a loose upper bound).

  Args:
    z: ``[M, K]`` one sample per input; mu, std: ``[M, K]`` the encoder's parameters.
    bound: ``"mixture"`` or ``"jensen"``.

  Returns:
    The estimate in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import gaussian_encoder_mi
    >>> mu = jnp.array([[0.0], [10.0]]); std = jnp.full((2, 1), 0.1)
    >>> round(float(gaussian_encoder_mi(mu, mu, std)), 4)   # two separated inputs: log 2
    0.6931
  """
  fn = "gaussian_encoder_mi"
  _check_encoder(fn, z, mu, std)
  V.check_choice(fn, "bound", bound, BOUNDS)
  lq = _log_q_matrix(z, mu, std)
  diag = jnp.diagonal(lq)
  if bound == "jensen":
    return jnp.mean(diag - jnp.mean(lq, axis=1))
  return jnp.mean(diag - jax.nn.logsumexp(lq, axis=1) + math.log(z.shape[0]))


def conditional_gaussian_encoder_mi(z: Float[Array, "m k"], mu: Float[Array, "m k"],
                                    std: Float[Array, "m k"], labels: Int[Array, "m"]
                                    ) -> Float[Array, ""]:
  """``I(X;Z|Y) = sum_c p(c) I_c`` with the mixture estimator inside each class, in nats.

  .. math::
    \\hat I(X;Z|Y) = \\frac1M\\sum_i\\Big[l_{ii} - \\log\\frac{1}{M_{y_i}}
    \\sum_{j: y_j = y_i} e^{l_{ij}}\\Big]

  Args:
    z, mu, std: ``[M, K]`` as in :func:`gaussian_encoder_mi`.
    labels: ``[M]`` integer labels.

  Returns:
    The estimate in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import conditional_gaussian_encoder_mi
    >>> mu = jnp.array([[0.0], [0.0], [9.0], [9.0]]); std = jnp.full((4, 1), 0.1)
    >>> y = jnp.array([0, 0, 1, 1])
    >>> abs(float(conditional_gaussian_encoder_mi(mu, mu, std, y))) < 1e-5   # z only codes y
    True
  """
  fn = "conditional_gaussian_encoder_mi"
  _check_encoder(fn, z, mu, std)
  V.check_integer(fn, "labels", labels)
  V.check_shape(fn, "labels", labels, (z.shape[0],))
  lq = _log_q_matrix(z, mu, std)
  labels = replicate(labels)
  same = labels[:, None] == labels[None, :]
  count = jnp.sum(same, axis=1).astype(z.dtype)
  lse = jax.nn.logsumexp(jnp.where(same, lq, -jnp.inf), axis=1)
  return jnp.mean(jnp.diagonal(lq) - lse + jnp.log(count))


def layer_entropy_global_bins(acts: Float[Array, "n d"], *, num_bins: int = 30
                              ) -> Float[Array, ""]:
  """``H(Z_binned)`` with one bin width ``(max - min) / num_bins`` over the whole layer, in nats.

  The deterministic-network estimator of the reference (``est_MI_binning``): ``I(X;Z) = H(Z)``
  since ``H(Z|X) = 0``. Bin ``b = floor((a - min) / width)``, the maximum in the last bin.

  Args:
    acts: ``[N, d]`` activations on the data set.
    num_bins: number of bins, ``>= 1``.

  Returns:
    The entropy in nats (0 for a constant layer).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import layer_entropy_global_bins, to_bits
    >>> float(to_bits(layer_entropy_global_bins(jnp.array([[0.0], [1.0], [2.0], [3.0]]),
    ...                                         num_bins=2)))
    1.0
  """
  fn = "layer_entropy_global_bins"
  V.check_floating(fn, "acts", acts)
  V.check_rank(fn, "acts", acts, 2)
  if acts.shape[0] < 1 or acts.shape[1] < 1:
    raise ValueError(f"{fn}: acts must be a non-empty [N, d] array, got {V.describe(acts)}")
  V.check_scalar(fn, "num_bins", num_bins, low=1, integer=True, static=True)
  a = acts.astype(jnp.float32)
  lo, hi = jnp.min(a), jnp.max(a)
  width = (hi - lo) / int(num_bins)
  codes = jnp.floor((a - lo) / jnp.where(width > 0, width, 1.0))
  codes = jnp.clip(codes, 0, int(num_bins) - 1).astype(jnp.int32)
  return _row_entropy(codes, jnp.ones((a.shape[0],), jnp.float32))


class MIConstraint(NamedTuple):
  """Result of :func:`mi_constraint_step`.

  Attributes:
    penalty: ``lam * (target - mi)``, to add to the loss (differentiable in ``mi``).
    lam: the updated multiplier ``lam + lam_lr * (target - mi)`` (gradient stopped).
  """
  penalty: Float[Array, ""]
  lam: Float[Array, ""]


def mi_constraint_step(mi: Float[Array, ""], lam: Float[Array, ""], *, target: float = 1.5,
                       lam_lr: float = 5e-4) -> MIConstraint:
  """One dual-ascent step of the constraint ``I(X;Z) = target``.

  .. math::
    \\text{penalty} = \\lambda\\,(c - \\hat I),\\qquad
    \\lambda \\leftarrow \\lambda + \\eta_\\lambda\\,(c - \\hat I)

  Args:
    mi: the current estimate ``Î(X;Z)`` (nats), a scalar.
    lam: the multiplier, a scalar.
    target: ``c`` in nats (the reference's ``MI_const = 1.5``).
    lam_lr: ``eta_lambda >= 0``.

  Returns:
    :class:`MIConstraint` ``(penalty, lam)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import mi_constraint_step
    >>> out = mi_constraint_step(jnp.array(1.0), jnp.array(2.0), target=1.5, lam_lr=0.1)
    >>> float(out.penalty), round(float(out.lam), 4)
    (1.0, 2.05)
  """
  fn = "mi_constraint_step"
  V.check_floating(fn, "mi", mi)
  V.check_shape(fn, "mi", mi, ())
  V.check_floating(fn, "lam", lam)
  V.check_shape(fn, "lam", lam, ())
  V.check_scalar(fn, "target", target)
  V.check_scalar(fn, "lam_lr", lam_lr, low=0.0)
  mi, lam = jnp.asarray(mi), jnp.asarray(lam)
  gap = jnp.asarray(target, mi.dtype) - mi
  new = lam + jnp.asarray(lam_lr, lam.dtype) * jax.lax.stop_gradient(gap).astype(lam.dtype)
  return MIConstraint(jax.lax.stop_gradient(lam).astype(mi.dtype) * gap,
                      jax.lax.stop_gradient(new))


class StochasticMLP(nnx.Module):
  """A stochastic MLP encoder ``q(z|x) = N(mu(x), diag std(x)^2)`` with separate mean and std
  towers (``std = max(softplus(.), 1e-10)``), as the reference's ``StochasticMLP``.

  ``__call__(x, *, key)`` returns a :class:`~bottleneck_jax.core.BottleneckOutput`: ``z`` one
  reparameterised sample, ``loss = 0`` (the MI terms are estimated over a batch with
  :func:`gaussian_encoder_mi`), ``bits`` the per-example ``KL(q(z|x) || N(0, I)) / ln 2``
  (an upper bound on the information through the layer), ``aux = {"mu", "std"}``.

  Args:
    in_dim: input features.
    hidden: widths of the hidden layers of each tower.
    latent_dim: size of ``z``.
    rngs: ``nnx.Rngs``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.information import StochasticMLP
    >>> m = StochasticMLP(2, hidden=(8,), latent_dim=3, rngs=nnx.Rngs(0))
    >>> m(jnp.zeros((4, 2)), key=jax.random.key(1)).z.shape
    (4, 3)
  """

  def __init__(self, in_dim: int, *, hidden: Sequence[int] = (64,), latent_dim: int = 8,
               rngs: nnx.Rngs):
    fn = "StochasticMLP"
    V.check_scalar(fn, "in_dim", in_dim, low=1, integer=True)
    V.check_scalar(fn, "latent_dim", latent_dim, low=1, integer=True)
    hidden = tuple(hidden)
    if not all(isinstance(h, int) and h >= 1 for h in hidden):
      raise ValueError(f"{fn}: hidden must be positive ints, got {list(hidden)}")
    sizes = (in_dim, *hidden, latent_dim)

    def tower():
      return nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
    self.mean_tower = tower()
    self.std_tower = tower()

  @staticmethod
  def _run(layers, x):
    h = x
    for i, layer in enumerate(layers):
      h = layer(h)
      if i < len(layers) - 1:
        h = jax.nn.relu(h)
    return h

  def __call__(self, x: Float[Array, "b d"], *, key) -> BottleneckOutput:
    mu = self._run(self.mean_tower, x)
    std = jnp.maximum(jax.nn.softplus(self._run(self.std_tower, x)), 1e-10)
    z = mu + std * jax.random.normal(key, mu.shape, mu.dtype)
    bits = diag_gaussian_kl_std_normal(mu, std) / LN2
    return BottleneckOutput(z, jnp.zeros((), mu.dtype), bits, {"mu": mu, "std": std})


__all__ = [
    "MIConstraint",
    "StochasticMLP",
    "conditional_gaussian_encoder_mi",
    "gaussian_encoder_mi",
    "layer_entropy_global_bins",
    "mi_constraint_step",
]
