"""Vector quantisation (VQ-VAE): nearest code, straight-through estimator, codebook and
commitment losses, and the exponential-moving-average codebook.

Paper: Aaron van den Oord, Oriol Vinyals, Koray Kavukcuoglu, "Neural Discrete Representation
Learning", NeurIPS 2017 (https://arxiv.org/abs/1711.00937); EMA codebook: its appendix and
Razavi, van den Oord, Vinyals, "Generating Diverse High-Fidelity Images with VQ-VAE-2", NeurIPS
2019 (https://arxiv.org/abs/1906.00446).

Idea. Each encoder vector ``z_n`` is replaced by its nearest codebook row ``e_{k*}``; the
non-differentiable choice is bridged by the straight-through estimator
``z_q = z + sg(e_{k*} - z)`` (forward the code, backward identity). The codebook moves towards the
encoder outputs and the encoder is kept committed to its code:

  L = ||sg(z) - e_{k*}||^2 + beta * ||z - sg(e_{k*})||^2,           beta = 0.25.

Alternatively the codebook is an exponential moving average of the vectors assigned to each code
(no codebook loss; only ``beta`` times the commitment term), with Laplace smoothing of the counts
so that unused codes do not divide by zero:

  n_k <- g n_k + (1 - g) sum_n 1[k*_n = k]
  m_k <- g m_k + (1 - g) sum_n 1[k*_n = k] z_n
  n~_k = (n_k + eps) / (sum_j n_j + K eps) * sum_j n_j,     e_k = m_k / n~_k.

Implemented here: :func:`vector_quantize` (the bottleneck, returning
:class:`~bottleneck_jax.core.BottleneckOutput`; nearest-code search by the
:func:`~bottleneck_jax.quantize.nearest_code` op, whose ``"xla"`` implementation never builds the
``N x K`` distances), the optax-style pair :func:`vq_ema_init` / :func:`vq_ema_update` over a
:class:`VQEMAState`, and the ``flax.nnx`` module :class:`VectorQuantizer` (codebook as an
``nnx.Param``, or EMA buffers in :class:`VQEMAVariable`, never touched by gradients).

Departures from the paper / reference code:
- The squared norms of the losses are averaged over all elements (as Sonnet/Haiku and
  ``lucidrains/vector-quantize-pytorch``), not summed over the channels.
- The EMA state starts at ``cluster_size = 1`` and ``embed_avg = codebook`` as in
  ``vector-quantize-pytorch`` (Sonnet starts at 0 with a zero-debiased average); the update
  formulas are those of VQ-VAE-2 / Sonnet.
- ``metric="cosine"`` l2-normalises ``z`` and the codebook (``x / max(||x||, 1e-6)``); the output
  is the normalised code and the losses compare normalised vectors. The EMA update then averages
  the raw ``z``; renormalise the codebook if you need unit codes.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.types import BottleneckOutput
from bottleneck_jax.quantize._nearest_code import METRICS, check_codebook, nearest_code
from bottleneck_jax.quantize._nearest_code.common import normalise


def _bits(z, k: int, dtype):
  """``positions * log2(K)`` per example (first axis = examples)."""
  per_position = math.log2(k)
  if z.ndim == 1:
    return jnp.asarray(per_position, dtype)
  return jnp.full(z.shape[:1], math.prod(z.shape[1:-1]) * per_position, dtype)


def vector_quantize(z: Float[Array, "*batch d"], codebook: Float[Array, "k d"], *,
                    beta: float | Float[Array, ""] = 0.25, metric: str = "l2",
                    implementation: Any = None) -> BottleneckOutput:
  """VQ-VAE quantisation of the last axis of ``z`` against ``codebook``.

  .. math::
    k^*_n = \\operatorname{argmin}_k d(z_n, e_k),\\quad
    z_q = z + \\operatorname{sg}(e_{k^*} - z),\\quad
    L = \\overline{(\\operatorname{sg}(z) - e_{k^*})^2}
      + \\beta\\, \\overline{(z - \\operatorname{sg}(e_{k^*}))^2}

  (bars: means over all elements).

  Args:
    z: encoder outputs, shape ``[*batch, d]``, floating, at least one vector.
    codebook: codes, shape ``[K, d]``, dtype of ``z``.
    beta: commitment weight ``>= 0`` (may be traced).
    metric: ``"l2"`` or ``"cosine"`` (see :func:`~bottleneck_jax.quantize.nearest_code`).
    implementation: of the nearest-code search (``None``: ``"xla"``, blocked).

  Returns:
    :class:`~bottleneck_jax.core.BottleneckOutput` with

    - ``z``: the codes with the straight-through gradient, shape and dtype of ``z``;
    - ``loss``: ``codebook_loss + beta * commitment_loss`` (scalar);
    - ``bits``: ``positions * log2(K)`` per example, the first axis counting examples and the
      axes between the first and the last being positions (shape ``[batch]``; a scalar for ``z``
      of shape ``[d]``);
    - ``aux``: ``"indices"`` (int32 ``[*batch]``), ``"distances"`` (``[*batch]``),
      ``"codebook_loss"``, ``"commitment_loss"``, ``"counts"`` (int32 ``[K]``, the code-usage
      histogram), ``"perplexity"`` (``exp`` of the entropy of the histogram, in ``[1, K]``),
      ``"usage"`` (fraction of codes used in the batch).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import vector_quantize
    >>> cb = jnp.array([[0.0, 0.0], [1.0, 1.0]])
    >>> out = vector_quantize(jnp.array([[0.9, 1.2], [0.1, -0.1]]), cb)
    >>> out.z.tolist(), out.aux["indices"].tolist(), out.bits.tolist()
    ([[1.0, 1.0], [0.0, 0.0]], [1, 0], [1.0, 1.0])

  References:
    van den Oord et al., "Neural Discrete Representation Learning", NeurIPS 2017,
    https://arxiv.org/abs/1711.00937.
  """
  fn = "vector_quantize"
  check_codebook(fn, z, codebook)
  V.check_choice(fn, "metric", metric, METRICS)
  V.check_scalar(fn, "beta", beta, low=0.0)
  if math.prod(z.shape[:-1]) < 1:
    raise ValueError(f"{fn}: z must hold at least one vector (the losses are means), got "
                     f"{V.describe(z)}")
  z, codebook = jnp.asarray(z), jnp.asarray(codebook)
  k = codebook.shape[0]
  nc = nearest_code(z, codebook, metric=metric, implementation=implementation)
  if metric == "cosine":
    z, codebook = normalise(z), normalise(codebook)
  q = jnp.take(codebook, nc.indices, axis=0)
  codebook_loss = jnp.mean(jnp.square(jax.lax.stop_gradient(z) - q))
  commitment_loss = jnp.mean(jnp.square(z - jax.lax.stop_gradient(q)))
  z_q = z + jax.lax.stop_gradient(q - z)
  counts = jnp.zeros((k,), jnp.int32).at[nc.indices.reshape(-1)].add(1)
  probs = counts.astype(z.dtype) / jnp.asarray(nc.indices.size, z.dtype)
  entropy = -jnp.sum(jnp.where(counts > 0, probs * jnp.log(jnp.where(counts > 0, probs, 1.0)),
                               0.0))
  aux = {
      "indices": nc.indices,
      "distances": nc.distances,
      "codebook_loss": codebook_loss,
      "commitment_loss": commitment_loss,
      "counts": counts,
      "perplexity": jnp.exp(entropy),
      "usage": jnp.mean((counts > 0).astype(z.dtype)),
  }
  loss = codebook_loss + jnp.asarray(beta, z.dtype) * commitment_loss
  return BottleneckOutput(z=z_q, loss=loss, bits=_bits(z, k, z.dtype), aux=aux)


class VQEMAState(NamedTuple):
  """State of the EMA codebook (:func:`vq_ema_init`, :func:`vq_ema_update`).

  Attributes:
    cluster_size: ``[K]`` moving average of the number of vectors assigned to each code.
    embed_avg: ``[K, d]`` moving average of the sum of the vectors assigned to each code.
    codebook: ``[K, d]`` the codebook, ``embed_avg / smoothed(cluster_size)``.
  """

  cluster_size: Float[Array, "k"]
  embed_avg: Float[Array, "k d"]
  codebook: Float[Array, "k d"]


def vq_ema_init(codebook: Float[Array, "k d"]) -> VQEMAState:
  """Initial EMA state: ``cluster_size = 1``, ``embed_avg = codebook`` (vector-quantize-pytorch).

  Args:
    codebook: the initial codebook ``[K, d]``, floating.

  Returns:
    :class:`VQEMAState`.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import vq_ema_init
    >>> vq_ema_init(jnp.zeros((4, 2))).cluster_size.tolist()
    [1.0, 1.0, 1.0, 1.0]

  References:
    Razavi et al., "Generating Diverse High-Fidelity Images with VQ-VAE-2", NeurIPS 2019,
    https://arxiv.org/abs/1906.00446.
  """
  fn = "vq_ema_init"
  V.check_rank(fn, "codebook", codebook, 2)
  V.check_floating(fn, "codebook", codebook)
  codebook = jnp.asarray(codebook)
  return VQEMAState(jnp.ones(codebook.shape[:1], codebook.dtype), codebook, codebook)


def vq_ema_update(state: VQEMAState, z: Float[Array, "*batch d"], indices: Int[Array, "*batch"],
                  *, decay: float | Float[Array, ""] = 0.99,
                  epsilon: float = 1e-5) -> VQEMAState:
  """One EMA codebook step with Laplace-smoothed counts (VQ-VAE appendix, VQ-VAE-2).

  .. math::
    n_k \\leftarrow \\gamma n_k + (1-\\gamma) \\textstyle\\sum_n [k^*_n = k],\\quad
    m_k \\leftarrow \\gamma m_k + (1-\\gamma) \\sum_n [k^*_n = k] z_n,\\quad
    e_k = m_k \\Big/ \\left(\\frac{n_k + \\epsilon}{\\sum_j n_j + K\\epsilon}\\sum_j n_j\\right)

  Args:
    state: the current :class:`VQEMAState`.
    z: the (non-normalised) encoder outputs of the batch, ``[*batch, d]``, dtype of the state.
    indices: their assigned codes (``out.aux["indices"]``), integer ``[*batch]`` in ``[0, K)``.
    decay: ``gamma`` in ``[0, 1]`` (may be traced).
    epsilon: Laplace smoothing ``> 0`` (static).

  Returns:
    The new :class:`VQEMAState`. Gradients do not flow through it (the inputs are stopped).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import vq_ema_init, vq_ema_update
    >>> state = vq_ema_init(jnp.zeros((2, 1)))
    >>> state = vq_ema_update(state, jnp.array([[4.0], [2.0]]), jnp.array([1, 1]), decay=0.5)
    >>> state.cluster_size.tolist(), [round(v, 4) for v in state.codebook[:, 0].tolist()]
    ([0.5, 1.5], [0.0, 2.0])

  References:
    Razavi et al., "Generating Diverse High-Fidelity Images with VQ-VAE-2", NeurIPS 2019,
    https://arxiv.org/abs/1906.00446; van den Oord et al., NeurIPS 2017, appendix A.1.
  """
  fn = "vq_ema_update"
  if not isinstance(state, VQEMAState):
    raise TypeError(f"{fn}: state must be a VQEMAState (from vq_ema_init), got "
                    f"{type(state).__name__}")
  V.check_rank(fn, "state.codebook", state.codebook, 2)
  k, d = state.codebook.shape
  V.check_rank(fn, "z", z, min_rank=1)
  V.check_floating(fn, "z", z)
  V.check_axis_size(fn, "z", z, -1, d, "the codebook's d")
  if jnp.dtype(z.dtype) != jnp.dtype(state.codebook.dtype):
    raise TypeError(f"{fn}: z must have the dtype of the state "
                    f"({jnp.dtype(state.codebook.dtype).name}), got {V.describe(z)}")
  V.check_array(fn, "indices", indices)
  V.check_integer(fn, "indices", indices)
  if tuple(jnp.shape(indices)) != tuple(z.shape[:-1]):
    raise ValueError(f"{fn}: indices must have shape {list(z.shape[:-1])} (z.shape[:-1]), got "
                     f"{list(jnp.shape(indices))}")
  V.check_scalar(fn, "decay", decay, low=0.0, high=1.0)
  V.check_scalar(fn, "epsilon", epsilon, low=0.0, low_inclusive=False, static=True)
  dtype = state.codebook.dtype
  z = jax.lax.stop_gradient(jnp.asarray(z)).reshape(-1, d)
  onehot = jax.nn.one_hot(jnp.asarray(indices).reshape(-1), k, dtype=dtype)
  g = jnp.asarray(decay, dtype)
  cluster_size = g * state.cluster_size + (1 - g) * jnp.sum(onehot, axis=0)
  embed_avg = g * state.embed_avg + (1 - g) * (onehot.T @ z)
  total = jnp.sum(cluster_size)
  smoothed = (cluster_size + epsilon) / (total + k * epsilon) * total
  return VQEMAState(cluster_size, embed_avg, embed_avg / smoothed[:, None])


class VQEMAVariable(nnx.Variable):
  """EMA buffers of :class:`VectorQuantizer` (not an ``nnx.Param``: no gradients, no optimiser)."""


class VectorQuantizer(nnx.Module):
  """A VQ-VAE layer: a ``[K, d]`` codebook and :func:`vector_quantize`.

  With ``ema_decay=None`` the codebook is an ``nnx.Param`` trained by the codebook loss; with a
  decay it is an EMA codebook (:class:`VQEMAVariable` buffers updated by :func:`vq_ema_update`
  when called with ``update=True``) and ``loss`` is ``beta`` times the commitment loss only.
  The codebook starts uniform in ``[-1/K, 1/K]`` as in the VQ-VAE reference code.

  Args:
    num_codes: ``K``.
    dim: ``d``.
    beta: commitment weight.
    metric: ``"l2"`` or ``"cosine"``.
    ema_decay: ``None`` (learned codebook) or the EMA decay in ``[0, 1]`` (e.g. 0.99).
    epsilon: Laplace smoothing of the EMA counts.
    rngs: ``nnx.Rngs`` for the codebook initialisation.

  ``__call__(z, *, update=False)`` returns the :class:`~bottleneck_jax.core.BottleneckOutput` of
  :func:`vector_quantize` computed with the current codebook, then (EMA, ``update=True``) moves
  the codebook.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.quantize import VectorQuantizer
    >>> vq = VectorQuantizer(16, 4, ema_decay=0.99, rngs=nnx.Rngs(0))
    >>> vq(jnp.ones((2, 5, 4)), update=True).aux["indices"].shape
    (2, 5)
  """

  def __init__(self, num_codes: int, dim: int, *, beta: float = 0.25, metric: str = "l2",
               ema_decay: float | None = None, epsilon: float = 1e-5, rngs: nnx.Rngs):
    fn = "VectorQuantizer"
    V.check_scalar(fn, "num_codes", num_codes, low=1, integer=True)
    V.check_scalar(fn, "dim", dim, low=1, integer=True)
    V.check_scalar(fn, "beta", beta, low=0.0)
    V.check_choice(fn, "metric", metric, METRICS)
    if ema_decay is not None:
      V.check_scalar(fn, "ema_decay", ema_decay, low=0.0, high=1.0)
    V.check_scalar(fn, "epsilon", epsilon, low=0.0, low_inclusive=False)
    k, d = int(num_codes), int(dim)
    init = jax.random.uniform(rngs.params(), (k, d), jnp.float32, -1.0 / k, 1.0 / k)
    self.beta, self.metric, self.epsilon = float(beta), metric, float(epsilon)
    self.ema_decay = None if ema_decay is None else float(ema_decay)
    if self.ema_decay is None:
      self.codebook = nnx.Param(init)
    else:
      state = vq_ema_init(init)
      self.codebook = VQEMAVariable(state.codebook)
      self.cluster_size = VQEMAVariable(state.cluster_size)
      self.embed_avg = VQEMAVariable(state.embed_avg)

  def __call__(self, z: Float[Array, "*batch d"], *, update: bool = False) -> BottleneckOutput:
    out = vector_quantize(z, self.codebook[...], beta=self.beta, metric=self.metric)
    if self.ema_decay is None:
      return out
    out = out._replace(loss=self.beta * out.aux["commitment_loss"])
    if update:
      state = vq_ema_update(VQEMAState(self.cluster_size[...], self.embed_avg[...],
                                       self.codebook[...]),
                            z, out.aux["indices"], decay=self.ema_decay, epsilon=self.epsilon)
      self.cluster_size[...] = state.cluster_size
      self.embed_avg[...] = state.embed_avg
      self.codebook[...] = state.codebook
    return out


__all__ = ["VQEMAState", "VQEMAVariable", "VectorQuantizer", "vector_quantize", "vq_ema_init",
           "vq_ema_update"]
