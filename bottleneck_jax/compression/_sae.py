"""The sparse autoencoder as a compression bottleneck layer.

The SAE maths (ReLU + L1, TopK, JumpReLU; SAELens' initialisation; the loss and the metrics) is
:mod:`bottleneck_jax.ops`' (:func:`~bottleneck_jax.ops.sae_encode` and friends, re-exported by
this family); this module adds the NNX layer that returns a
:class:`~bottleneck_jax.core.BottleneckOutput` with ``z = x_hat`` and ``bits`` the index cost
``L0 log2(d_sae)`` per example (a documented convention: which latents fire, not their values).
"""

from __future__ import annotations

import math
from typing import Literal

import jax.numpy as jnp
from flax import nnx

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.types import BottleneckOutput
from bottleneck_jax.ops._sparse_autoencoder import (
  ACTIVATIONS,
  SAEParams,
  init_sae,
  sae_decode,
  sae_encode,
  sae_loss,
)


class SparseAutoencoder(nnx.Module):
  """A sparse autoencoder as a bottleneck layer.

  ``__call__(x)`` returns a :class:`~bottleneck_jax.core.BottleneckOutput`: ``z = x_hat``,
  ``loss`` the sparsity term, ``bits = L0 log2(d_sae)`` per example (the index cost) and
  ``aux = {"features", "pre"}``. JumpReLU thresholds are a float32 ``nnx.Param`` (``theta``,
  initialised to ``threshold_init``).

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.compression import SparseAutoencoder
    >>> sae = SparseAutoencoder(8, 32, activation="topk", k=4, rngs=nnx.Rngs(0))
    >>> out = sae(jnp.ones((2, 8)))
    >>> out.z.shape, [round(float(b), 3) for b in out.bits]
    ((2, 8), [20.0, 20.0])
  """

  def __init__(self, d_in: int, d_sae: int, *,
               activation: Literal["relu", "topk", "jumprelu"] = "topk", k: int | None = None,
               l1: float = 1.0, l0: float = 1.0, bandwidth: float = 0.05,
               threshold_init: float = 0.01, decoder_init_norm: float = 0.1, rngs: nnx.Rngs):
    V.check_choice("SparseAutoencoder", "activation", activation, ACTIVATIONS)
    p = init_sae(rngs.params(), d_in, d_sae, decoder_init_norm=decoder_init_norm)
    self.W_enc, self.b_enc = nnx.Param(p.W_enc), nnx.Param(p.b_enc)
    self.W_dec, self.b_dec = nnx.Param(p.W_dec), nnx.Param(p.b_dec)
    self.threshold = nnx.Param(jnp.full((d_sae,), threshold_init, jnp.float32))
    self.activation, self.k = activation, k
    self.l1, self.l0, self.bandwidth = float(l1), float(l0), float(bandwidth)
    self.d_sae = int(d_sae)

  @property
  def params(self) -> SAEParams:
    return SAEParams(self.W_enc[...], self.b_enc[...], self.W_dec[...], self.b_dec[...])

  def __call__(self, x) -> BottleneckOutput:
    r = sae_loss(self.params, x, activation=self.activation, k=self.k, l1=self.l1, l0=self.l0,
                 threshold=self.threshold[...], bandwidth=self.bandwidth)
    feats = sae_encode(self.params, x, activation=self.activation, k=self.k,
                       threshold=self.threshold[...], bandwidth=self.bandwidth)
    x_hat = sae_decode(self.params, feats.features)
    l0 = jnp.sum((feats.features > 0).astype(x_hat.dtype), axis=-1)
    return BottleneckOutput(z=x_hat, loss=r.sparsity, bits=l0 * math.log2(self.d_sae),
                            aux={"features": feats.features, "pre": feats.pre})
