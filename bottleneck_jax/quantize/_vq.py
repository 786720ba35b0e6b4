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
from bottleneck_jax.kernels.sharding import segment_sum, take
from bottleneck_jax.quantize._kmeans_core import _kmeans, _replace
from bottleneck_jax.quantize._nearest_code import METRICS, check_codebook, nearest_code
from bottleneck_jax.quantize._nearest_code.common import normalise


def _bits(z, k: int, dtype):
  """``positions * log2(K)`` per example (first axis = examples)."""
  per_position = math.log2(k)
  if z.ndim == 1:
    return jnp.asarray(per_position, dtype)
  return jnp.full(z.shape[:1], math.prod(z.shape[1:-1]) * per_position, dtype)


GRADS = ("ste", "rotation")


def _norm(x):
  return jnp.maximum(jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True)),
                     jnp.asarray(1e-6, x.dtype))


def _rotation_trick(z, q):
  sg = jax.lax.stop_gradient
  nz, nq = sg(_norm(z)), sg(_norm(q))
  zh, qh = sg(z) / nz, sg(q) / nq
  w = zh + qh
  w = w / _norm(w)
  lam = nq / nz
  zw = jnp.sum(z * w, axis=-1, keepdims=True)
  zz = jnp.sum(z * zh, axis=-1, keepdims=True)
  rot = lam * (z - 2.0 * zw * w + 2.0 * zz * qh)
  return sg(q) + (rot - sg(rot))      # exactly q in value (rot - rot == 0), rot's gradient


def rotation_trick(z: Float[Array, "*batch d"], q: Float[Array, "*batch d"]
                   ) -> Float[Array, "*batch d"]:
  """The rotation trick of Fifty et al.: forward ``q``, backward through a rotation-and-scale.

  .. math::
    \\lambda = \\frac{\\|q\\|}{\\|z\\|},\\; \\hat z = \\frac{z}{\\|z\\|},\\;
    \\hat q = \\frac{q}{\\|q\\|},\\; w = \\frac{\\hat z + \\hat q}{\\|\\hat z + \\hat q\\|},\\;
    R = I - 2 w w^\\top + 2 \\hat q \\hat z^\\top,\\quad \\tilde z = \\operatorname{sg}(\\lambda R)\\, z

  ``R`` rotates ``z``'s direction onto ``q``'s, so the output equals ``q`` and its Jacobian with
  respect to ``z`` is the constant ``lambda R`` (instead of the identity of the straight-through
  estimator). ``R`` is never formed: ``lambda (z - 2 (z.w) w + 2 (z.z_hat) q_hat)``; the output is
  then made exactly ``q`` in value as ``sg(q) + (r - sg(r))`` (gradient unchanged). Norms are floored at
  ``1e-6``.

  Args:
    z: encoder outputs, shape ``[*batch, d]``, floating.
    q: their codes (no gradient flows into ``q``), same shape and dtype.

  Returns:
    ``q`` in value, with the rotation-trick gradient to ``z``; shape and dtype of ``z``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.quantize import rotation_trick
    >>> z, q = jnp.array([1.0, 0.0]), jnp.array([0.0, 2.0])
    >>> rotation_trick(z, q).tolist()
    [0.0, 2.0]
    >>> g = jax.grad(lambda a: rotation_trick(a, q)[1])(z)   # lambda * R^T e_2
    >>> [round(v, 5) for v in g.tolist()]
    [2.0, 0.0]

  References:
    Fifty, Junkins, Duan, Iyengar, Liu, Amid, Thrun, Ré, "Restructuring Vector Quantization with
    the Rotation Trick", ICLR 2025, https://arxiv.org/abs/2410.06424.
  """
  fn = "rotation_trick"
  V.check_rank(fn, "z", z, min_rank=1)
  V.check_floating(fn, "z", z)
  V.check_array(fn, "q", q)
  if tuple(jnp.shape(q)) != tuple(jnp.shape(z)):
    raise ValueError(f"{fn}: q must have the shape of z {list(jnp.shape(z))}, got "
                     f"{V.describe(q)}")
  if jnp.dtype(jnp.asarray(q).dtype) != jnp.dtype(jnp.asarray(z).dtype):
    raise TypeError(f"{fn}: q must have the dtype of z ({jnp.dtype(z.dtype).name}), got "
                    f"{V.describe(q)}")
  return _rotation_trick(jnp.asarray(z), jnp.asarray(q))


class _VQParts(NamedTuple):
  z_q: Any
  indices: Any
  distances: Any
  codebook_loss: Any
  commitment_loss: Any
  counts: Any
  perplexity: Any
  usage: Any


def _histogram(indices, k, dtype):
  flat = indices.reshape(-1)
  counts = segment_sum(jnp.ones(flat.shape, jnp.int32), jnp.where(flat >= 0, flat, k), k)
  total = jnp.maximum(jnp.sum(counts), 1)
  probs = counts.astype(dtype) / total.astype(dtype)
  entropy = -jnp.sum(jnp.where(counts > 0, probs * jnp.log(jnp.where(counts > 0, probs, 1.0)),
                               0.0))
  return counts, jnp.exp(entropy), jnp.mean((counts > 0).astype(dtype))


def _quantize(z, codebook, metric, grad, implementation):
  """The unchecked core of :func:`vector_quantize` (also used by the residual and grouped VQs)."""
  k = codebook.shape[0]
  nc = nearest_code(z, codebook, metric=metric, implementation=implementation)
  if metric == "cosine":
    z, codebook = normalise(z), normalise(codebook)
  q = take(codebook, nc.indices)
  codebook_loss = jnp.mean(jnp.square(jax.lax.stop_gradient(z) - q))
  commitment_loss = jnp.mean(jnp.square(z - jax.lax.stop_gradient(q)))
  if grad == "rotation":
    z_q = _rotation_trick(z, jax.lax.stop_gradient(q))
    # the codebook still receives the codebook loss only; z_q carries no codebook gradient
  else:
    z_q = z + jax.lax.stop_gradient(q - z)
  counts, perplexity, usage = _histogram(nc.indices, k, z.dtype)
  return _VQParts(z_q, nc.indices, nc.distances, codebook_loss, commitment_loss, counts,
                  perplexity, usage)


def vector_quantize(z: Float[Array, "*batch d"], codebook: Float[Array, "k d"], *,
                    beta: float | Float[Array, ""] = 0.25, metric: str = "l2",
                    grad: str = "ste", implementation: Any = None) -> BottleneckOutput:
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
    grad: gradient estimator from ``z_q`` to ``z``: ``"ste"`` (straight-through, identity) or
      ``"rotation"`` (:func:`rotation_trick`). Either way ``z_q`` equals the code.
    implementation: of the nearest-code search (``None``: ``"xla"``, blocked).

  Returns:
    :class:`~bottleneck_jax.core.BottleneckOutput` with

    - ``z``: the codes with the chosen gradient estimator, shape and dtype of ``z``;
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
  V.check_choice(fn, "grad", grad, GRADS)
  V.check_scalar(fn, "beta", beta, low=0.0)
  if math.prod(z.shape[:-1]) < 1:
    raise ValueError(f"{fn}: z must hold at least one vector (the losses are means), got "
                     f"{V.describe(z)}")
  z, codebook = jnp.asarray(z), jnp.asarray(codebook)
  k = codebook.shape[0]
  p = _quantize(z, codebook, metric, grad, implementation)
  aux = {
      "indices": p.indices,
      "distances": p.distances,
      "codebook_loss": p.codebook_loss,
      "commitment_loss": p.commitment_loss,
      "counts": p.counts,
      "perplexity": p.perplexity,
      "usage": p.usage,
  }
  loss = p.codebook_loss + jnp.asarray(beta, z.dtype) * p.commitment_loss
  return BottleneckOutput(z=p.z_q, loss=loss, bits=_bits(z, k, z.dtype), aux=aux)


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
  return _ema_update(state, jax.lax.stop_gradient(jnp.asarray(z)).reshape(-1, d),
                     jnp.asarray(indices).reshape(-1), decay, epsilon)


def _ema_update(state, z, idx, decay, epsilon):
  """Unchecked EMA step on flat ``z [N, d]`` and ``idx [N]`` (-1: counted nowhere)."""
  k = state.codebook.shape[0]
  dtype = state.codebook.dtype
  idx = jnp.where(idx >= 0, idx, k)     # -1 (masked / dropped) counts nowhere
  g = jnp.asarray(decay, dtype)
  # segment sums: O(N d), never the [N, K] one-hot
  counts = segment_sum(jnp.ones(idx.shape, dtype), idx, k)
  sums = segment_sum(z, idx, k)
  cluster_size = g * state.cluster_size + (1 - g) * counts
  embed_avg = g * state.embed_avg + (1 - g) * sums
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

  EMA extras (both jit-safe, drawn from the ``rngs`` given at construction):
  ``kmeans_init=True`` replaces the codebook by :func:`~bottleneck_jax.quantize.kmeans` of the
  first batch seen with ``update=True`` (counts and sums start from the clusters, as
  vector-quantize-pytorch; a ``lax.cond`` on the ``initted`` buffer); ``dead_code_threshold > 0``
  runs :func:`~bottleneck_jax.quantize.replace_dead_codes` after every EMA step.

  Args:
    num_codes: ``K``.
    dim: ``d``.
    beta: commitment weight.
    metric: ``"l2"`` or ``"cosine"``.
    grad: ``"ste"`` or ``"rotation"`` (:func:`rotation_trick`).
    ema_decay: ``None`` (learned codebook) or the EMA decay in ``[0, 1]`` (e.g. 0.99).
    epsilon: Laplace smoothing of the EMA counts.
    kmeans_init: k-means initialisation on the first update (EMA only).
    kmeans_iters: its rounds.
    dead_code_threshold: EMA count below which a code is restarted (0: never; EMA only).
    rngs: ``nnx.Rngs`` for the codebook initialisation (and the k-means / restart draws).

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
               grad: str = "ste", ema_decay: float | None = None, epsilon: float = 1e-5,
               kmeans_init: bool = False, kmeans_iters: int = 10,
               dead_code_threshold: float = 0.0, rngs: nnx.Rngs):
    fn = "VectorQuantizer"
    V.check_scalar(fn, "num_codes", num_codes, low=1, integer=True)
    V.check_scalar(fn, "dim", dim, low=1, integer=True)
    V.check_scalar(fn, "beta", beta, low=0.0)
    V.check_choice(fn, "metric", metric, METRICS)
    V.check_choice(fn, "grad", grad, GRADS)
    if ema_decay is not None:
      V.check_scalar(fn, "ema_decay", ema_decay, low=0.0, high=1.0)
    V.check_scalar(fn, "epsilon", epsilon, low=0.0, low_inclusive=False)
    V.check_scalar(fn, "kmeans_iters", kmeans_iters, low=0, integer=True)
    V.check_scalar(fn, "dead_code_threshold", dead_code_threshold, low=0.0)
    if (kmeans_init or dead_code_threshold > 0) and ema_decay is None:
      raise ValueError(f"{fn}: kmeans_init and dead_code_threshold need an EMA codebook "
                       f"(ema_decay), got ema_decay=None")
    k, d = int(num_codes), int(dim)
    init = jax.random.uniform(rngs.params(), (k, d), jnp.float32, -1.0 / k, 1.0 / k)
    self.beta, self.metric, self.epsilon, self.grad = float(beta), metric, float(epsilon), grad
    self.ema_decay = None if ema_decay is None else float(ema_decay)
    self.kmeans_init, self.kmeans_iters = bool(kmeans_init), int(kmeans_iters)
    self.dead_code_threshold = float(dead_code_threshold)
    if self.ema_decay is None:
      self.codebook = nnx.Param(init)
    else:
      state = vq_ema_init(init)
      self.codebook = VQEMAVariable(state.codebook)
      self.cluster_size = VQEMAVariable(state.cluster_size)
      self.embed_avg = VQEMAVariable(state.embed_avg)
      self.initted = VQEMAVariable(jnp.asarray(not self.kmeans_init))
      if self.kmeans_init or self.dead_code_threshold > 0:
        self.rngs = nnx.Rngs(codebook=rngs.params())

  def _state(self) -> VQEMAState:
    return VQEMAState(self.cluster_size[...], self.embed_avg[...], self.codebook[...])

  def _set(self, state: VQEMAState) -> None:
    self.cluster_size[...] = state.cluster_size
    self.embed_avg[...] = state.embed_avg
    self.codebook[...] = state.codebook

  def __call__(self, z: Float[Array, "*batch d"], *, update: bool = False) -> BottleneckOutput:
    if self.ema_decay is not None and update and self.kmeans_init:
      x = jax.lax.stop_gradient(jnp.asarray(z)).reshape(-1, z.shape[-1])
      k = self.codebook.shape[0]
      key = self.rngs.codebook()

      def fresh(_):
        means, bins = _kmeans(key, x, k, self.kmeans_iters, self.metric, None)
        bins = bins.astype(means.dtype)
        return VQEMAState(bins, means * bins[:, None], means)

      state = jax.lax.cond(self.initted[...], lambda _: self._state(), fresh, None)
      self._set(state)
      self.initted[...] = jnp.asarray(True)
    out = vector_quantize(z, self.codebook[...], beta=self.beta, metric=self.metric,
                          grad=self.grad)
    if self.ema_decay is None:
      return out
    out = out._replace(loss=self.beta * out.aux["commitment_loss"])
    if update:
      state = vq_ema_update(self._state(), z, out.aux["indices"], decay=self.ema_decay,
                            epsilon=self.epsilon)
      if self.dead_code_threshold > 0:
        x = jax.lax.stop_gradient(jnp.asarray(z)).reshape(-1, z.shape[-1])
        state = _replace(self.rngs.codebook(), state, x, self.dead_code_threshold)
      self._set(state)
    return out


__all__ = ["VQEMAState", "VQEMAVariable", "VectorQuantizer", "rotation_trick", "vector_quantize",
           "vq_ema_init", "vq_ema_update"]
