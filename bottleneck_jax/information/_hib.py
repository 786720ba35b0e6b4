"""HIB: a history encoder trained with the information bottleneck (sim-to-real).

Paper: Haoran He, Peilin Wu, Chenjia Bai, Hang Lai, Lingxiao Wang, Ling Pan, Xiaolin Hu,
Weinan Zhang, "Bridging the Sim-to-Real Gap from the Information Bottleneck Perspective",
CoRL 2024 (https://arxiv.org/abs/2305.18464).

Idea. A policy deployed on a robot cannot see the privileged state ``e`` (dynamics parameters,
terrain) that the simulator knows, only its recent history ``h`` of observations and actions. HIB
trains a history encoder ``q(z|h) = N(mu(h), diag std(h)^2)`` to keep the information about
``e`` and discard the rest of the history:

  max I(Z; E) - beta I(Z; H)
  I(Z; H) <= E_h KL(q(z|h) || N(0, I))                                      (the VIB rate)
  I(Z; E) >= log B - L_NCE,  L_NCE = -mean_i [ g_ii - logsumexp_j g_ij ],
             g_ij = z_i^T W psi(e_j) / tau                                  (InfoNCE, bilinear)

with ``psi`` an encoder of the privileged state; ``L = L_NCE + beta KL`` is added to the RL loss.

Implemented here (nats): :func:`infonce_bilinear`, :func:`hib_loss`, and the thin modules
:class:`HistoryEncoder` (an MLP over the flattened history, a
:class:`~bottleneck_jax.core.BottleneckOutput`) and :class:`PrivilegedEncoder`.

Departures: no public code exists; the equations are our reconstruction from the abstract. The
privileged encoder is trained jointly (no momentum target), the critic is bilinear, and the PPO
part is out of scope (the objectives family owns RL losses).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jaxtyping import Array, Float

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.distributions import diag_gaussian_kl_std_normal
from bottleneck_jax.core.rng import as_key
from bottleneck_jax.core.types import BottleneckOutput
from bottleneck_jax.core.units import LN2
from bottleneck_jax.kernels.sharding import replicate


def _check_pair(fn, z, e_emb, w):
  V.check_floating(fn, "z", z)
  V.check_rank(fn, "z", z, 2)
  V.check_floating(fn, "e_emb", e_emb)
  V.check_rank(fn, "e_emb", e_emb, 2)
  V.check_floating(fn, "w", w)
  V.check_shape(fn, "w", w, (z.shape[1], e_emb.shape[1]))
  if z.shape[0] != e_emb.shape[0]:
    raise ValueError(f"{fn}: z and e_emb must have the same batch size, got {V.describe(z)} "
                     f"and {V.describe(e_emb)}")
  if len({jnp.dtype(a.dtype) for a in (z, e_emb, w)}) != 1:
    raise TypeError(f"{fn}: z, e_emb and w must have the same dtype, got {V.describe(z)}, "
                    f"{V.describe(e_emb)}, {V.describe(w)}")
  if z.shape[0] < 2:
    raise ValueError(f"{fn}: the batch must hold at least 2 pairs (in-batch negatives), got "
                     f"{V.describe(z)}")


def _nce(z, e_emb, w, temperature):
  z, e_emb = replicate(z), replicate(e_emb)
  g = (z @ w @ e_emb.T) / temperature
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(g, jnp.arange(z.shape[0])))


def infonce_bilinear(z: Float[Array, "b k"], e_emb: Float[Array, "b e"], w: Float[Array, "k e"],
                     *, temperature: float = 1.0) -> Float[Array, ""]:
  """InfoNCE lower bound on ``I(Z;E)`` with the bilinear critic ``g_ij = z_i^T W e_j / tau``.

  .. math::
    I(Z;E) \\ge \\log B + \\frac1B\\sum_i\\Big[g_{ii} - \\log\\sum_j e^{g_{ij}}\\Big]

  Args:
    z: ``[B, K]`` representations; e_emb: ``[B, E]`` privileged embeddings (paired rows);
    w: ``[K, E]`` the critic's matrix.
    temperature: ``tau > 0``.

  Returns:
    The bound in nats (at most ``log B``).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import infonce_bilinear
    >>> z = 30.0 * jnp.eye(4)
    >>> round(float(infonce_bilinear(z, jnp.eye(4), jnp.eye(4))), 4)   # log 4
    1.3863
  """
  fn = "infonce_bilinear"
  _check_pair(fn, z, e_emb, w)
  V.check_scalar(fn, "temperature", temperature, low=0.0, low_inclusive=False, static=True)
  return math.log(z.shape[0]) - _nce(z, e_emb, w, float(temperature))


class HIBLoss(NamedTuple):
  """Result of :func:`hib_loss` (nats).

  Attributes:
    loss: ``nce + beta * kl``.
    nce: the InfoNCE cross-entropy ``L_NCE``.
    kl: mean ``KL(q(z|h) || N(0, I))``, the bound on ``I(Z;H)``.
    mi_lower_bound: ``log B - nce``, the bound on ``I(Z;E)``.
    z: the sampled representations ``[B, K]``.
  """
  loss: Float[Array, ""]
  nce: Float[Array, ""]
  kl: Float[Array, ""]
  mi_lower_bound: Float[Array, ""]
  z: Float[Array, "b k"]


def hib_loss(z_mu: Float[Array, "b k"], z_std: Float[Array, "b k"], e_emb: Float[Array, "b e"],
             w: Float[Array, "k e"], *, key, beta: float, temperature: float = 1.0) -> HIBLoss:
  """The HIB representation loss ``L_NCE(z, e) + beta * KL(q(z|h) || N(0, I))``.

  ``z = z_mu + z_std * eps`` (reparameterised), scored against the privileged embeddings of the
  batch with :func:`infonce_bilinear`'s critic.

  Args:
    z_mu, z_std: ``[B, K]`` the history encoder's Gaussian.
    e_emb: ``[B, E]`` privileged embeddings; w: ``[K, E]`` the critic.
    key: a ``jax.random.key``.
    beta: the compression weight ``>= 0``.
    temperature: critic temperature.

  Returns:
    :class:`HIBLoss`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.information import hib_loss
    >>> out = hib_loss(jnp.zeros((4, 2)), jnp.ones((4, 2)), jnp.ones((4, 3)), jnp.zeros((2, 3)),
    ...                key=jax.random.key(0), beta=0.1)
    >>> round(float(out.kl), 4), round(float(out.mi_lower_bound), 4)   # prior, no information
    (0.0, 0.0)
  """
  fn = "hib_loss"
  V.check_floating(fn, "z_std", z_std)
  _check_pair(fn, z_mu, e_emb, w)
  V.check_same_shape(fn, "z_mu", z_mu, "z_std", z_std)
  if jnp.dtype(z_std.dtype) != jnp.dtype(z_mu.dtype):
    raise TypeError(f"{fn}: z_std must have the dtype of z_mu, got {V.describe(z_std)}")
  V.check_scalar(fn, "beta", beta, low=0.0)
  V.check_scalar(fn, "temperature", temperature, low=0.0, low_inclusive=False, static=True)
  if not isinstance(beta, jax.core.Tracer):
    beta = float(beta)
  temperature = float(temperature)
  key = as_key(key, fn=fn)
  z = z_mu + z_std * jax.random.normal(key, z_mu.shape, z_mu.dtype)
  nce = _nce(z, e_emb, w, temperature)
  kl = jnp.mean(diag_gaussian_kl_std_normal(z_mu, z_std))
  return HIBLoss(nce + beta * kl, nce, kl, math.log(z.shape[0]) - nce, z)


def _mlp(sizes, rngs):
  return nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])


def _run(layers, x):
  for i, layer in enumerate(layers):
    x = layer(x)
    if i < len(layers) - 1:
      x = jax.nn.elu(x)
  return x


class HistoryEncoder(nnx.Module):
  """``q(z|h) = N(mu(h), diag std(h)^2)`` from a history ``[B, H, obs_dim + act_dim]``.

  An MLP over the flattened history (``hidden`` widths, ELU) with a ``2 * z_dim`` head;
  ``std = softplus(.) + 1e-4``. ``__call__(history, *, key)`` returns a
  :class:`~bottleneck_jax.core.BottleneckOutput`: ``z`` a sample (the mean when ``key`` is
  ``None``), ``loss`` the mean KL to ``N(0, I)``, ``bits`` the per-example KL in bits,
  ``aux = {"mu", "std"}``.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.information import HistoryEncoder
    >>> enc = HistoryEncoder(4, 2, 10, hidden=(16,), z_dim=3, rngs=nnx.Rngs(0))
    >>> enc(jnp.zeros((5, 10, 6))).z.shape
    (5, 3)
  """

  def __init__(self, obs_dim: int, act_dim: int, history_len: int, *,
               hidden: Sequence[int] = (256, 128), z_dim: int = 32, rngs: nnx.Rngs):
    fn = "HistoryEncoder"
    for arg, v in (("obs_dim", obs_dim), ("act_dim", act_dim), ("history_len", history_len),
                   ("z_dim", z_dim)):
      V.check_scalar(fn, arg, v, low=1, integer=True)
    self.in_dim = (obs_dim + act_dim) * history_len
    self.z_dim = int(z_dim)
    self.net = _mlp((self.in_dim, *tuple(hidden), 2 * self.z_dim), rngs)

  def __call__(self, history: Float[Array, "b h f"], *, key=None) -> BottleneckOutput:
    b = history.shape[0]
    out = _run(self.net, history.reshape(b, -1))
    mu, rho = out[:, :self.z_dim], out[:, self.z_dim:]
    std = jax.nn.softplus(rho) + 1e-4
    z = mu if key is None else mu + std * jax.random.normal(key, mu.shape, mu.dtype)
    kl = diag_gaussian_kl_std_normal(mu, std)
    return BottleneckOutput(z, jnp.mean(kl), kl / LN2, {"mu": mu, "std": std})


class PrivilegedEncoder(nnx.Module):
  """``psi(e)``: an MLP embedding of the privileged state (``hidden`` widths, ELU).

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.information import PrivilegedEncoder
    >>> PrivilegedEncoder(2, 8, rngs=nnx.Rngs(0))(jnp.zeros((3, 2))).shape
    (3, 8)
  """

  def __init__(self, e_dim: int, emb_dim: int, *, hidden: Sequence[int] = (64,),
               rngs: nnx.Rngs):
    V.check_scalar("PrivilegedEncoder", "e_dim", e_dim, low=1, integer=True)
    V.check_scalar("PrivilegedEncoder", "emb_dim", emb_dim, low=1, integer=True)
    self.net = _mlp((e_dim, *tuple(hidden), emb_dim), rngs)

  def __call__(self, e: Float[Array, "b e"]) -> Float[Array, "b emb"]:
    return _run(self.net, e)


__all__ = ["HIBLoss", "HistoryEncoder", "PrivilegedEncoder", "hib_loss", "infonce_bilinear"]
