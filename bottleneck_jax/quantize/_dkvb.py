"""Discrete Key-Value Bottleneck (DKVB).

Paper: Frederik Träuble, Anirudh Goyal, Nasim Rahaman, Michael Mozer, Kenji Kawaguchi, Yoshua
Bengio, Bernhard Schölkopf, "Discrete Key-Value Bottleneck", ICML 2023
(https://arxiv.org/abs/2207.11240).

Idea. A frozen encoder's feature ``z in R^m`` is split into ``C`` heads by fixed random
projections, ``z^c = P_c z in R^{d_k}``. Head ``c`` owns ``K`` pairs ``(k^c_j, v^c_j)``: the keys
are fitted once on unlabeled data (k-means) and then frozen; the input fetches the value of its
nearest key in every head,

  j^c(z) = argmin_j ||z^c - k^c_j||,        out^c = v^c_{j^c(z)}   (top-k: mean of the k nearest),

and the non-parametric decoder averages the ``C`` fetched values (``d_v`` = number of classes,
softmax in the loss). Only the values are trained, and an input touches only ``C`` of them
(``C * topk``), so training on new classes leaves the values of other regions of input space
alone: little forgetting in class-incremental learning without task boundaries.

Implemented here: :func:`dkvb_project`, :func:`dkvb_init_keys` (per-head k-means, the
:func:`~bottleneck_jax.quantize.kmeans` of this package), :func:`dkvb` (lookup + mean-pool
decoder, returning :class:`~bottleneck_jax.core.BottleneckOutput`) and the ``flax.nnx`` module
:class:`DiscreteKeyValueBottleneck` (projection and keys in :class:`DKVBFrozen` variables, not
``nnx.Param``; values an ``nnx.Param``). The ``topk = 1`` search is the
:func:`~bottleneck_jax.quantize.nearest_code` op (never the ``N x K`` matrix).

Departures from the paper:
- Keys are fitted by batch k-means (Lloyd, fixed rounds) on a sample of unlabeled inputs, not by
  the paper's EMA k-means over a stream; both end with frozen keys.
- ``topk > 1`` materialises each head's ``[N, K]`` distances (``lax.top_k``); ``topk = 1`` does not.
- Values start at zero (the reference implementation draws them from N(0, 1)), so that unseen
  regions predict uniformly instead of at random.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax
from jaxtyping import Array, Float

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.types import BottleneckOutput
from bottleneck_jax.kernels.sharding import take
from bottleneck_jax.quantize._kmeans import _check_key
from bottleneck_jax.quantize._kmeans_core import _kmeans
from bottleneck_jax.quantize._nearest_code import METRICS, nearest_code
from bottleneck_jax.quantize._nearest_code.common import normalise


def _check_proj(fn, z, proj):
  V.check_rank(fn, "z", z, min_rank=1)
  V.check_floating(fn, "z", z)
  V.check_rank(fn, "proj", proj, 3)
  V.check_floating(fn, "proj", proj)
  V.check_axis_size(fn, "proj", proj, 1, z.shape[-1], "z.shape[-1]")
  if jnp.dtype(proj.dtype) != jnp.dtype(z.dtype):
    raise TypeError(f"{fn}: proj must have the dtype of z ({jnp.dtype(z.dtype).name}), got "
                    f"{V.describe(proj)}")
  if 0 in proj.shape:
    raise ValueError(f"{fn}: proj must have C >= 1 heads and d_k >= 1, got {V.describe(proj)}")


def dkvb_project(z: Float[Array, "*batch m"], proj: Float[Array, "c m dk"]
                 ) -> Float[Array, "*batch c dk"]:
  """Fixed per-head projections ``z^c = z P_c`` (no gradient to ``proj``).

  Args:
    z: features ``[*batch, m]``, floating.
    proj: ``[C, m, d_k]``, dtype of ``z``.

  Returns:
    ``[*batch, C, d_k]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import dkvb_project
    >>> dkvb_project(jnp.ones((2, 3)), jnp.ones((4, 3, 5))).shape
    (2, 4, 5)

  References:
    Träuble et al., "Discrete Key-Value Bottleneck", ICML 2023, https://arxiv.org/abs/2207.11240.
  """
  _check_proj("dkvb_project", z, proj)
  return jnp.einsum("...m,cmd->...cd", jnp.asarray(z), jax.lax.stop_gradient(jnp.asarray(proj)))


def dkvb_init_keys(key: Any, z: Float[Array, "*batch m"], proj: Float[Array, "c m dk"],
                   num_keys: int, *, iters: int = 10, metric: str = "l2",
                   implementation: Any = None) -> Float[Array, "c k dk"]:
  """Keys of every head by k-means of the projected unlabeled inputs (then frozen).

  Args:
    key: ``jax.random`` key (initial means, per head).
    z: unlabeled features ``[*batch, m]``, floating, at least one.
    proj: ``[C, m, d_k]``, dtype of ``z``.
    num_keys: ``K >= 1`` per head (static).
    iters: k-means rounds (static).
    metric: ``"l2"`` or ``"cosine"``.
    implementation: of the nearest-code search.

  Returns:
    keys ``[C, K, d_k]`` (no gradient).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.quantize import dkvb_init_keys
    >>> z = jnp.array([[0.0], [0.1], [5.0], [5.1]])
    >>> keys = dkvb_init_keys(jax.random.key(0), z, jnp.ones((1, 1, 1)), 2)
    >>> sorted(round(v, 2) for v in keys[0, :, 0].tolist())
    [0.05, 5.05]

  References:
    Träuble et al., "Discrete Key-Value Bottleneck", ICML 2023, https://arxiv.org/abs/2207.11240.
  """
  fn = "dkvb_init_keys"
  _check_key(fn, key)
  _check_proj(fn, z, proj)
  V.check_scalar(fn, "num_keys", num_keys, low=1, integer=True, static=True)
  V.check_scalar(fn, "iters", iters, low=0, integer=True, static=True)
  V.check_choice(fn, "metric", metric, METRICS)
  zc = dkvb_project(z, proj)
  zc = jax.lax.stop_gradient(zc.reshape(-1, *zc.shape[-2:]))
  if zc.shape[0] < 1:
    raise ValueError(f"{fn}: z must hold at least one vector, got {V.describe(z)}")
  keys = jax.random.split(key, proj.shape[0])
  means, _ = jax.vmap(lambda k, x: _kmeans(k, x, int(num_keys), int(iters), metric,
                                           implementation),
                      in_axes=(0, 1))(keys, zc)
  return means


def dkvb(z: Float[Array, "*batch m"], proj: Float[Array, "c m dk"],
         keys: Float[Array, "c k dk"], values: Float[Array, "c k dv"], *, topk: int = 1,
         metric: str = "l2", implementation: Any = None) -> BottleneckOutput:
  """The discrete key-value bottleneck: per-head nearest keys, their values, mean over heads.

  .. math::
    z^c = z P_c,\\quad J^c = \\operatorname{top\\text{-}k}_j\\, {-d(z^c, k^c_j)},\\quad
    o^c = \\frac{1}{k}\\sum_{j \\in J^c} v^c_j,\\quad \\text{out} = \\frac{1}{C}\\sum_c o^c

  Gradients reach the values only (``proj`` and ``keys`` are stopped, the selection is
  discrete), and only the selected rows.

  Args:
    z: features ``[*batch, m]``, floating (from a frozen encoder).
    proj: ``[C, m, d_k]``; keys: ``[C, K, d_k]``; values: ``[C, K, d_v]``; all the dtype of ``z``.
    topk: keys fetched per head, ``1 <= topk <= K`` (static).
    metric: ``"l2"`` or ``"cosine"``.
    implementation: of the ``topk = 1`` nearest-code search.

  Returns:
    :class:`~bottleneck_jax.core.BottleneckOutput`: ``z`` the mean-pooled values
    ``[*batch, d_v]`` (logits of the non-parametric decoder), ``loss`` 0,
    ``bits = C log2 binom(K, topk)`` per example (scalar for ``z`` of rank 1), ``aux``:
    ``"indices"`` (int32 ``[*batch, C, topk]``), ``"head_values"`` (``[*batch, C, d_v]``).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import dkvb
    >>> proj = jnp.eye(2)[None]                               # one head, identity
    >>> keys = jnp.array([[[0.0, 0.0], [1.0, 1.0]]])
    >>> values = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])        # key 0 -> class 0, key 1 -> 1
    >>> out = dkvb(jnp.array([[0.9, 0.8], [0.1, 0.0]]), proj, keys, values)
    >>> out.z.tolist(), out.aux["indices"][..., 0].tolist()
    ([[0.0, 1.0], [1.0, 0.0]], [[1], [0]])

  References:
    Träuble et al., "Discrete Key-Value Bottleneck", ICML 2023, https://arxiv.org/abs/2207.11240.
  """
  fn = "dkvb"
  _check_proj(fn, z, proj)
  c, _, dk = proj.shape
  for name, arr, last in (("keys", keys, dk), ("values", values, None)):
    V.check_rank(fn, name, arr, 3)
    V.check_floating(fn, name, arr)
    if jnp.dtype(arr.dtype) != jnp.dtype(z.dtype):
      raise TypeError(f"{fn}: {name} must have the dtype of z ({jnp.dtype(z.dtype).name}), got "
                      f"{V.describe(arr)}")
    V.check_axis_size(fn, name, arr, 0, c, "proj.shape[0] (C)")
    if last is not None:
      V.check_axis_size(fn, name, arr, 2, last, "proj.shape[2] (d_k)")
  k = keys.shape[1]
  if k < 1 or values.shape[2] < 1:
    raise ValueError(f"{fn}: keys must have K >= 1 and values d_v >= 1, got {V.describe(keys)}, "
                     f"{V.describe(values)}")
  V.check_axis_size(fn, "values", values, 1, k, "keys.shape[1] (K)")
  V.check_scalar(fn, "topk", topk, low=1, integer=True, static=True)
  if topk > k:
    raise ValueError(f"{fn}: topk must be <= K = {k} (keys per head), got {topk}")
  V.check_choice(fn, "metric", metric, METRICS)
  z, values = jnp.asarray(z), jnp.asarray(values)
  keys = jax.lax.stop_gradient(jnp.asarray(keys))
  zc = jax.lax.stop_gradient(dkvb_project(z, proj))                  # [*b, C, dk]
  batch = zc.shape[:-2]
  flat = jnp.moveaxis(zc.reshape(-1, c, dk), 1, 0)                   # [C, N, dk]
  if topk == 1:
    idx = jax.vmap(lambda a, kk: nearest_code(a, kk, metric=metric,
                                              implementation=implementation).indices)(flat, keys)
    idx = idx[..., None]                                             # [C, N, 1]
  else:
    def head(a, kk):
      if metric == "cosine":
        a, kk = normalise(a), normalise(kk)
        dist = -(a @ kk.T)
      else:
        dist = jnp.sum(kk * kk, -1)[None, :] - 2.0 * (a @ kk.T)
      return lax.top_k(-dist, topk)[1].astype(jnp.int32)
    idx = jax.vmap(head)(flat, keys)                                 # [C, N, topk]
  fetched = jax.vmap(take)(values, idx)   # [C, N, topk, dv]
  head_values = jnp.mean(fetched, axis=2)                            # [C, N, dv]
  head_values = jnp.moveaxis(head_values, 0, 1).reshape(*batch, c, values.shape[-1])
  indices = jnp.moveaxis(idx, 0, 1).reshape(*batch, c, topk)
  out = jnp.mean(head_values, axis=-2)
  per_example = c * math.log2(math.comb(k, topk))
  if z.ndim == 1:
    bits = jnp.asarray(per_example, z.dtype)
  else:
    bits = jnp.full(z.shape[:1], per_example * math.prod(z.shape[1:-1]), z.dtype)
  return BottleneckOutput(z=out, loss=jnp.zeros((), z.dtype), bits=bits,
                          aux={"indices": indices, "head_values": head_values})


class DKVBFrozen(nnx.Variable):
  """The frozen parts of :class:`DiscreteKeyValueBottleneck` (projection, keys): no gradients."""


class DiscreteKeyValueBottleneck(nnx.Module):
  """DKVB layer: frozen random projections and keys, learnable values (:func:`dkvb`).

  Args:
    in_dim: ``m``, the frozen encoder's feature size.
    num_heads: ``C``.
    num_keys: ``K`` per head.
    key_dim: ``d_k`` (``None``: ``in_dim``).
    value_dim: ``d_v`` (number of classes for the non-parametric decoder).
    topk: keys fetched per head.
    metric: ``"l2"`` or ``"cosine"``.
    rngs: draws the projections (Xavier-normal) and the initial keys (N(0, 1)).

  Call :meth:`init_keys` on unlabeled data before training; ``__call__(z)`` returns
  :func:`dkvb`'s output. Train with ``nnx.Optimizer(model, tx, wrt=nnx.Param)``: only the values.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.quantize import DiscreteKeyValueBottleneck
    >>> layer = DiscreteKeyValueBottleneck(2, 4, 8, value_dim=3, rngs=nnx.Rngs(0))
    >>> layer.init_keys(jax.random.key(1), jnp.ones((16, 2)))
    >>> layer(jnp.ones((5, 2))).z.shape
    (5, 3)
  """

  def __init__(self, in_dim: int, num_heads: int, num_keys: int, *, key_dim: int | None = None,
               value_dim: int, topk: int = 1, metric: str = "l2", rngs: nnx.Rngs):
    fn = "DiscreteKeyValueBottleneck"
    for name, val in (("in_dim", in_dim), ("num_heads", num_heads), ("num_keys", num_keys),
                      ("value_dim", value_dim), ("topk", topk)):
      V.check_scalar(fn, name, val, low=1, integer=True)
    if key_dim is not None:
      V.check_scalar(fn, "key_dim", key_dim, low=1, integer=True)
    if topk > num_keys:
      raise ValueError(f"{fn}: topk must be <= num_keys = {num_keys}, got {topk}")
    V.check_choice(fn, "metric", metric, METRICS)
    m, c, k = int(in_dim), int(num_heads), int(num_keys)
    dk = m if key_dim is None else int(key_dim)
    std = math.sqrt(2.0 / (m + dk))
    self.proj = DKVBFrozen(std * jax.random.normal(rngs.params(), (c, m, dk), jnp.float32))
    self.keys = DKVBFrozen(jax.random.normal(rngs.params(), (c, k, dk), jnp.float32))
    self.values = nnx.Param(jnp.zeros((c, k, int(value_dim)), jnp.float32))
    self.topk, self.metric = int(topk), metric

  def init_keys(self, key: Any, z: Float[Array, "*batch m"], *, iters: int = 10) -> None:
    """Fits the keys by :func:`dkvb_init_keys` on unlabeled ``z`` (then they stay frozen)."""
    self.keys[...] = dkvb_init_keys(key, z, self.proj[...], self.keys.shape[1], iters=iters,
                                    metric=self.metric)

  def __call__(self, z: Float[Array, "*batch m"]) -> BottleneckOutput:
    return dkvb(z, self.proj[...], self.keys[...], self.values[...], topk=self.topk,
                metric=self.metric)


__all__ = ["DKVBFrozen", "DiscreteKeyValueBottleneck", "dkvb", "dkvb_init_keys", "dkvb_project"]
