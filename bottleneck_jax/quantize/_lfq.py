"""Lookup-Free Quantization (LFQ, MAGVIT-v2).

Paper: Lijun Yu, Jose Lezama, Nitesh B. Gundavarapu, et al., "Language Model Beats Diffusion --
Tokenizer is Key to Visual Generation", ICLR 2024 (https://arxiv.org/abs/2310.05737).

Idea. The codebook is the set of corners ``{-1, +1}^d``: each channel is quantised to its sign
(straight-through estimator), so there is no lookup and no codebook to learn, and the token index
is the binary number the signs spell. To use the ``2^d`` codes evenly the paper adds an entropy
penalty: each latent defines a soft assignment over the codes,

  p_n(c) = softmax_c(2 z_n . c / T),      c in {-1, +1}^d,

and the loss asks every ``p_n`` to be confident (low per-sample entropy) while the batch average
uses all codes (high codebook entropy):

  L_ent = mean_n H(p_n) - gamma * H(mean_n p_n).

Computed exactly here, without the ``N x 2^d`` matrix for the first term: ``2 z.c / T`` is a sum
over channels, so ``p_n`` is a product of independent Bernoullis with
``P(c_i = +1) = sigmoid(4 z_ni / T)`` and ``H(p_n) = sum_i H_b(sigmoid(4 z_ni / T))``. The batch
term needs the full distribution over the ``2^d`` codes; it is accumulated over chunks of 1024
codes (``log p_n(c) = sum_i log P(c_i)``, a log-mean-exp over ``n`` per code), so memory is
``O(N * 1024)`` and time ``O(N d 2^d)``: ``d <= 16`` when ``entropy_weight != 0``.

Implemented here: :func:`lfq` (the bottleneck, returning
:class:`~bottleneck_jax.core.BottleneckOutput`), :func:`lfq_indices_to_codes` and the thin
``flax.nnx`` module :class:`LFQ` (no parameters).

Departures from the paper / reference code:
- Index bit order: the first channel is the most significant bit (as
  ``lucidrains/vector-quantize-pytorch``; the paper writes ``sum_i 2^{i-1} 1[z_i > 0]``, the
  reverse order). ``z_i = 0`` quantises to ``-1``.
- The entropies are exact (natural log, no ``log(max(p, 1e-5))`` clamp as in
  ``vector-quantize-pytorch``); for confident latents the clamped version differs slightly.
- ``temperature = 0.01`` corresponds to ``vector-quantize-pytorch``'s ``inv_temperature = 100``.
- ``commitment_weight`` defaults to 0.25 (MAGVIT-v2 uses a commitment loss;
  ``vector-quantize-pytorch`` defaults to 0).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.types import BottleneckOutput

MAX_ENTROPY_DIM = 16
MAX_DIM = 30
_CHUNK = 1024


def _bits_matrix(idx, d: int):
  """``{0, 1}`` matrix ``[len(idx), d]`` of the binary digits, first column most significant."""
  shifts = jnp.arange(d - 1, -1, -1, dtype=jnp.int32)
  return jnp.right_shift(idx[:, None], shifts[None, :]) & 1


def _bernoulli_entropy(a):
  """``H_b(sigmoid(a))`` in nats, stable for large ``|a|``."""
  p = jax.nn.sigmoid(a)
  return p * jax.nn.softplus(-a) + (1 - p) * jax.nn.softplus(a)


def _codebook_entropy(logp, log1mp):
  """Entropy (nats) of ``mean_n p_n`` over all ``2^d`` codes, in chunks of codes."""
  n, d = logp.shape
  num = 2**d
  chunk = min(num, _CHUNK)
  diff = logp - log1mp                           # [N, d]
  base = jnp.sum(log1mp, axis=-1, keepdims=True)  # [N, 1]
  log_n = math.log(n)

  def body(acc, start):
    idx = start * chunk + jnp.arange(chunk, dtype=jnp.int32)
    bits = _bits_matrix(idx, d).astype(logp.dtype)               # [C, d]
    log_p = base + diff @ bits.T                                  # [N, C]
    log_mean = jax.nn.logsumexp(log_p, axis=0) - log_n           # [C]
    return acc - jnp.sum(jnp.exp(log_mean) * log_mean), None

  acc, _ = jax.lax.scan(body, jnp.zeros((), logp.dtype), jnp.arange(num // chunk))
  return acc


def lfq(z: Float[Array, "*batch d"], *, entropy_weight: float | Float[Array, ""] = 0.1,
        commitment_weight: float | Float[Array, ""] = 0.25,
        diversity_gamma: float | Float[Array, ""] = 1.0,
        temperature: float | Float[Array, ""] = 0.01) -> BottleneckOutput:
  """Lookup-Free Quantization: per-channel sign with the straight-through estimator, and the
  MAGVIT-v2 entropy loss.

  .. math::
    z_q = z + \\operatorname{sg}(\\operatorname{sign}(z) - z),\\quad
    p_n(c) \\propto e^{2 z_n\\cdot c / T},\\quad
    L = w_e\\left(\\overline{H(p_n)} - \\gamma H(\\overline{p_n})\\right)
      + w_c\\,\\overline{(z - \\operatorname{sg}(z_q))^2}

  with ``H(p_n) = sum_i H_b(sigmoid(4 z_ni / T))`` (exact, per bit) and the batch entropy over all
  ``2^d`` codes (chunked, ``d <= 16``; averages over every vector of ``z``).

  Args:
    z: latents, shape ``[*batch, d]``, floating, ``1 <= d <= 30`` (``d <= 16`` unless
      ``entropy_weight == 0``), at least one vector.
    entropy_weight: weight ``>= 0`` of the entropy loss.
    commitment_weight: weight ``>= 0`` of the commitment loss ``mean((z - sg(z_q))^2)``.
    diversity_gamma: weight ``gamma >= 0`` of the codebook entropy.
    temperature: ``T > 0`` of the soft assignment.

  Returns:
    :class:`~bottleneck_jax.core.BottleneckOutput` with

    - ``z``: the ``+-1`` codes with the straight-through gradient, shape and dtype of ``z``;
    - ``loss``: ``entropy_weight * entropy_loss + commitment_weight * commitment_loss``;
    - ``bits``: ``positions * d`` per example (the first axis counts examples, the axes between
      the first and the last are positions; a scalar for ``z`` of shape ``[d]``);
    - ``aux``: ``"indices"`` (int32 ``[*batch]``, first channel most significant),
      ``"codes"`` (the ``+-1`` codes, no gradient), ``"per_sample_entropy"``,
      ``"codebook_entropy"``, ``"entropy_loss"`` (nats; ``codebook_entropy`` is 0 when
      ``entropy_weight == 0`` and ``d > 16``), ``"commitment_loss"``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import lfq
    >>> out = lfq(jnp.array([[0.3, 0.2, -0.1, 0.5], [1.0, -1.0, -1.0, -1.0]]))
    >>> out.z.tolist(), out.aux["indices"].tolist(), out.bits.tolist()
    ([[1.0, 1.0, -1.0, 1.0], [1.0, -1.0, -1.0, -1.0]], [13, 8], [4.0, 4.0])

  References:
    Yu et al., "Language Model Beats Diffusion -- Tokenizer is Key to Visual Generation",
    ICLR 2024, https://arxiv.org/abs/2310.05737.
  """
  fn = "lfq"
  V.check_rank(fn, "z", z, min_rank=1)
  V.check_floating(fn, "z", z)
  d = z.shape[-1]
  if not 1 <= d <= MAX_DIM:
    raise ValueError(f"{fn}: z must have 1 <= d <= {MAX_DIM} channels on its last axis (int32 "
                     f"indices), got {V.describe(z)}")
  for name, v in (("entropy_weight", entropy_weight), ("commitment_weight", commitment_weight),
                  ("diversity_gamma", diversity_gamma)):
    V.check_scalar(fn, name, v, low=0.0)
  V.check_scalar(fn, "temperature", temperature, low=0.0, low_inclusive=False)
  needs_entropy = isinstance(entropy_weight, jax.core.Tracer) or float(entropy_weight) != 0.0
  if needs_entropy and d > MAX_ENTROPY_DIM:
    raise ValueError(f"{fn}: z must have d <= {MAX_ENTROPY_DIM} channels for the entropy loss "
                     f"(the codebook entropy sums over 2^d codes), got d = {d}; pass "
                     f"entropy_weight=0 for larger d")
  n = math.prod(z.shape[:-1])
  if n < 1:
    raise ValueError(f"{fn}: z must hold at least one vector (the losses are means), got "
                     f"{V.describe(z)}")
  z = jnp.asarray(z)
  dtype = z.dtype
  codes = jnp.where(z > 0, jnp.ones((), dtype), -jnp.ones((), dtype))
  z_q = z + jax.lax.stop_gradient(codes - z)
  weights = jnp.asarray(np.left_shift(1, np.arange(d - 1, -1, -1)).astype(np.int32))
  indices = jnp.sum((z > 0).astype(jnp.int32) * weights, axis=-1, dtype=jnp.int32)

  cdt = dtype if jnp.dtype(dtype).itemsize >= 4 else jnp.dtype(jnp.float32)
  a = 4.0 * z.reshape(n, d).astype(cdt) / jnp.asarray(temperature, cdt)
  per_sample = jnp.mean(jnp.sum(_bernoulli_entropy(a), axis=-1))
  if needs_entropy:
    codebook_entropy = _codebook_entropy(-jax.nn.softplus(-a), -jax.nn.softplus(a))
  else:
    codebook_entropy = jnp.zeros((), cdt)
  entropy_loss = (per_sample - jnp.asarray(diversity_gamma, cdt) * codebook_entropy).astype(dtype)
  commitment = jnp.mean(jnp.square(z - jax.lax.stop_gradient(z_q)))
  loss = (jnp.asarray(entropy_weight, dtype) * entropy_loss
          + jnp.asarray(commitment_weight, dtype) * commitment)
  if z.ndim == 1:
    bits = jnp.asarray(float(d), dtype)
  else:
    bits = jnp.full(z.shape[:1], float(math.prod(z.shape[1:-1]) * d), dtype)
  aux = {
      "indices": indices,
      "codes": codes,
      "per_sample_entropy": per_sample.astype(dtype),
      "codebook_entropy": codebook_entropy.astype(dtype),
      "entropy_loss": entropy_loss,
      "commitment_loss": commitment,
  }
  return BottleneckOutput(z=z_q, loss=loss, bits=bits, aux=aux)


def lfq_indices_to_codes(indices: Int[Array, "*batch"], *, dim: int,
                         dtype=jnp.float32) -> Float[Array, "*batch d"]:
  """The ``+-1`` LFQ codes of integer indices (first channel the most significant bit).

  Args:
    indices: integers in ``[0, 2^dim)``, shape ``[*batch]``.
    dim: the number of channels ``d``, ``1 <= d <= 30``.
    dtype: floating dtype of the codes.

  Returns:
    Codes in ``{-1, +1}``, shape ``[*batch, dim]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import lfq_indices_to_codes
    >>> lfq_indices_to_codes(jnp.array([13, 1]), dim=4).tolist()
    [[1.0, 1.0, -1.0, 1.0], [-1.0, -1.0, -1.0, 1.0]]

  References:
    Yu et al., "Language Model Beats Diffusion -- Tokenizer is Key to Visual Generation",
    ICLR 2024, https://arxiv.org/abs/2310.05737.
  """
  fn = "lfq_indices_to_codes"
  V.check_array(fn, "indices", indices)
  V.check_integer(fn, "indices", indices)
  V.check_scalar(fn, "dim", dim, low=1, high=MAX_DIM, integer=True)
  if not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
    raise TypeError(f"{fn}: dtype must be a floating dtype, got {jnp.dtype(dtype).name}")
  idx = jnp.asarray(indices).astype(jnp.int32)
  bits = _bits_matrix(idx.reshape(-1), int(dim)).reshape(*idx.shape, int(dim))
  return (2 * bits - 1).astype(dtype)


class LFQ(nnx.Module):
  """Lookup-Free Quantization as an ``nnx`` layer (no parameters): calls :func:`lfq`.

  Args:
    dim: the number of channels ``d`` (codebook size ``2^d``).
    entropy_weight, commitment_weight, diversity_gamma, temperature: see :func:`lfq`.
    rngs: accepted for a uniform constructor across bottlenecks; unused.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.quantize import LFQ
    >>> LFQ(4)(jnp.ones((2, 3, 4))).aux["indices"].tolist()
    [[15, 15, 15], [15, 15, 15]]
  """

  def __init__(self, dim: int, *, entropy_weight: float = 0.1, commitment_weight: float = 0.25,
               diversity_gamma: float = 1.0, temperature: float = 0.01,
               rngs: nnx.Rngs | None = None):
    del rngs
    fn = "LFQ"
    V.check_scalar(fn, "dim", dim, low=1, high=MAX_DIM, integer=True)
    V.check_scalar(fn, "temperature", temperature, low=0.0, low_inclusive=False)
    self.dim = int(dim)
    self.codebook_size = 2**self.dim
    self.entropy_weight = float(entropy_weight)
    self.commitment_weight = float(commitment_weight)
    self.diversity_gamma = float(diversity_gamma)
    self.temperature = float(temperature)

  def __call__(self, z: Float[Array, "*batch d"]) -> BottleneckOutput:
    V.check_rank("LFQ", "z", z, min_rank=1)
    V.check_axis_size("LFQ", "z", z, -1, self.dim, "dim")
    return lfq(z, entropy_weight=self.entropy_weight, commitment_weight=self.commitment_weight,
               diversity_gamma=self.diversity_gamma, temperature=self.temperature)


__all__ = ["LFQ", "lfq", "lfq_indices_to_codes"]
