"""DN-CBM: Discover-then-Name concept bottlenecks.

Paper: Sukrut Rao, Sweta Mahajan, Moritz Bohle, Bernt Schiele, "Discover-then-Name: Task-Agnostic
Concept Bottlenecks via Automated Concept Discovery", ECCV 2024
(https://arxiv.org/abs/2407.14499); code neuroexplicit-saar/discover-then-name.

Idea. (1) *Discover*: a sparse autoencoder (SAE) on CLIP image embeddings, with a tied
pre-encoder bias,

.. math::
  f(x) = \\mathrm{ReLU}(W_{enc}(x - b_{dec}) + b_{enc}),\\qquad
  \\hat x = W_{dec} f + b_{dec},\\qquad
  L = \\lVert x - \\hat x\\rVert^2 + \\lambda \\lVert f\\rVert_1,

with unit-norm decoder columns and dead-latent resampling. (2) *Name*: each dictionary vector
``W_dec[:, j]`` gets the vocabulary word whose (CLIP text) embedding is most cosine-similar;
naming does not change the bottleneck. (3) *CBM*: a sparse linear probe ``CE + lam_p mean|W|`` on
the concept strengths ``f(x)``. Explanations are measured by how many concepts it takes to reach
90 / 95 / 99 % of an image's total contribution ``w_{y_hat, j} f_j(x)``.

Implemented here: :func:`resample_dead`, :func:`name_concepts`, :func:`sparse_probe_loss`,
:func:`explanation_size` and the NNX module :class:`ConceptSAE` (returns
:class:`~bottleneck_jax.core.BottleneckOutput`). The SAE maths itself is the library's one
implementation in :mod:`bottleneck_jax.ops` (:func:`~bottleneck_jax.ops.sae_encode`,
:func:`~bottleneck_jax.ops.sae_decode`, :func:`~bottleneck_jax.ops.sae_loss` with
``activation="relu"``; parameters :class:`~bottleneck_jax.ops.SAEParams` with ``W_enc [d, h]``
and dictionary rows ``W_dec [h, d]``): with unit-norm dictionary rows its ReLU sparsity term
``l1 sum_i f_i ||W_dec,i||`` is the paper's ``l1 |f|_1``.

Departures from the reference code:

* :class:`ConceptSAE` normalises its dictionary rows in the forward pass (so they are unit
  norm at every step of any optax loop); the reference renormalises the weights after each step
  (:func:`~bottleneck_jax.ops.normalize_decoder` does that for a hand-written loop). It starts
  from unit-norm Gaussian dictionary rows with the encoder their transpose and zero biases.
* :func:`resample_dead` follows the common recipe of the ``sparse_autoencoder`` library the
  reference uses (dead decoder columns re-initialised to normalised residuals of inputs drawn
  with probability proportional to their squared reconstruction error, encoder rows to the same
  direction scaled to 0.2 of the mean alive encoder norm, bias 0), without its Adam-state reset.
* :func:`explanation_size` returns the *count* of concepts; the reference logs the 0-based
  position of the first sufficient concept (count - 1).
* ``BottleneckOutput.bits`` is the code's index cost ``L0 * log2(h)`` (which latents fire), a
  lower bound that ignores the values.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jaxtyping import Array, Float, Int

from bottleneck_jax.concepts._cbm import _check_nonempty, _float, _num, _promote
from bottleneck_jax.core import validation as V
from bottleneck_jax.core.rng import as_key
from bottleneck_jax.core.types import BottleneckOutput
from bottleneck_jax.ops import SAEParams, sae_decode, sae_encode, sae_loss


def _unit_rows(w):
  return w / jnp.maximum(jnp.linalg.norm(w, axis=-1, keepdims=True), 1e-12)


def _check_params(fn, params):
  if not isinstance(params, SAEParams):
    raise TypeError(f"{fn}: params must be an SAEParams, got {type(params).__name__}")
  _float(fn, "params.W_enc", params.W_enc, rank=2)
  d, h = params.W_enc.shape
  if h < 1 or d < 1:
    raise ValueError(f"{fn}: params must have at least one latent and one input dimension, got "
                     f"W_enc {list(params.W_enc.shape)}")
  V.check_shape(fn, "params.W_dec", params.W_dec, (h, d))
  V.check_shape(fn, "params.b_enc", params.b_enc, (h,))
  V.check_shape(fn, "params.b_dec", params.b_dec, (d,))
  return h, d


def resample_dead(params: SAEParams, x: Float[Array, "n d"], fire_counts: Int[Array, "h"], *,
                  key, threshold: int = 0) -> SAEParams:
  """Re-initialises dead latents (``fire_counts <= threshold``) from badly reconstructed inputs.

  ``params`` is an :class:`~bottleneck_jax.ops.SAEParams` (``W_enc [d, h]``, ``W_dec [h, d]``).
  For each dead latent an input ``x_i`` is drawn with probability proportional to its squared
  reconstruction error; its dictionary row ``W_dec[j]`` becomes ``normalise(x_i - x_hat_i)``, its
  encoder column ``W_enc[:, j]`` the same direction scaled to 0.2 of the mean norm of the alive
  encoder columns, its encoder bias 0. Alive latents are unchanged.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.concepts import resample_dead
    >>> from bottleneck_jax.ops import init_sae
    >>> p = init_sae(0, 3, 6, decoder_init_norm=1.0)
    >>> q = resample_dead(p, jnp.ones((5, 3)), jnp.array([1, 0, 1, 1, 1, 1]), key=jax.random.key(1))
    >>> bool((q.W_dec[0] == p.W_dec[0]).all()), bool((q.W_dec[1] == p.W_dec[1]).all())
    (True, False)
  """
  fn = "resample_dead"
  h, d = _check_params(fn, params)
  _float(fn, "x", x, rank=2)
  _check_nonempty(fn, "x", x, 0, "examples")
  V.check_axis_size(fn, "x", x, 1, d, "the SAE's input dimension")
  V.check_integer(fn, "fire_counts", fire_counts)
  V.check_shape(fn, "fire_counts", fire_counts, (h,))
  V.check_scalar(fn, "threshold", threshold, low=0, integer=True)
  key = as_key(key, fn=fn)
  xf = x.astype(jnp.float32)
  p32 = SAEParams(*(a.astype(jnp.float32) for a in params))
  resid = xf - sae_decode(p32, sae_encode(p32, xf, activation="relu").features)
  err = jnp.sum(resid ** 2, -1)
  p = jnp.where(jnp.sum(err) > 0, err / jnp.maximum(jnp.sum(err), 1e-30), 1.0 / x.shape[0])
  idx = jax.random.choice(key, x.shape[0], (h,), p=p)
  new_dir = resid[idx]
  new_dir = new_dir / jnp.maximum(jnp.linalg.norm(new_dir, axis=-1, keepdims=True), 1e-12)
  dead = fire_counts <= threshold
  alive_norm = jnp.linalg.norm(params.W_enc.astype(jnp.float32), axis=0)
  n_alive = jnp.sum((~dead).astype(jnp.float32))
  scale = 0.2 * jnp.where(n_alive > 0, jnp.sum(jnp.where(dead, 0.0, alive_norm))
                          / jnp.maximum(n_alive, 1.0), 1.0)
  dt = params.W_enc.dtype
  w_enc = jnp.where(dead[None, :], (scale * new_dir).T.astype(dt), params.W_enc)
  w_dec = jnp.where(dead[:, None], new_dir.astype(params.W_dec.dtype), params.W_dec)
  b_enc = jnp.where(dead, jnp.zeros((), params.b_enc.dtype), params.b_enc)
  return SAEParams(w_enc, b_enc, w_dec, params.b_dec)


class Naming(NamedTuple):
  """:func:`name_concepts`'s result: the vocabulary index ``index[h]`` of each latent's name and
  its cosine ``similarity[h]``."""

  index: Array
  similarity: Array


def name_concepts(dictionary: Float[Array, "h d"], vocab_emb: Float[Array, "v d"]) -> Naming:
  """Names each dictionary vector (a row of an SAE's ``W_dec``) by its most cosine-similar
  vocabulary embedding.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import name_concepts
    >>> name_concepts(jnp.array([[1.0, 0.0], [0.0, 2.0]]), jnp.eye(2)[::-1]).index.tolist()
    [1, 0]
  """
  fn = "name_concepts"
  _float(fn, "dictionary", dictionary, rank=2)
  _float(fn, "vocab_emb", vocab_emb, rank=2)
  _check_nonempty(fn, "vocab_emb", vocab_emb, 0, "vocabulary words")
  _check_nonempty(fn, "dictionary", dictionary, 0, "latents")
  V.check_axis_size(fn, "vocab_emb", vocab_emb, 1, dictionary.shape[1],
                    "the dictionary dimension")
  d = _unit_rows(dictionary.astype(jnp.float32))
  v = _unit_rows(vocab_emb.astype(jnp.float32))
  sim = v @ d.T
  idx = jnp.argmax(sim, 0).astype(jnp.int32)
  return Naming(idx, jnp.max(sim, 0))


def sparse_probe_loss(w: Float[Array, "m h"], f: Float[Array, "b h"], y: Int[Array, "b"], *,
                      lam: float = 1.0) -> Float[Array, ""]:
  """DN-CBM's probe objective ``CE(f W^T, y) + lam * mean|W|`` (no bias).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import sparse_probe_loss
    >>> round(float(sparse_probe_loss(jnp.zeros((2, 3)), jnp.ones((1, 3)), jnp.array([0]))), 4)
    0.6931
  """
  fn = "sparse_probe_loss"
  _float(fn, "w", w, rank=2)
  _check_nonempty(fn, "w", w, 0, "classes")
  _float(fn, "f", f, rank=2)
  _check_nonempty(fn, "f", f, 0, "examples")
  V.check_axis_size(fn, "f", f, 1, w.shape[1], "one column per latent of w")
  V.check_integer(fn, "y", y)
  V.check_shape(fn, "y", y, (f.shape[0],))
  V.check_scalar(fn, "lam", lam, low=0)
  logits = f.astype(jnp.float32) @ w.astype(jnp.float32).T
  ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
  return ce + _num(lam) * jnp.mean(jnp.abs(w.astype(jnp.float32)))


def explanation_size(w: Float[Array, "m h"], f: Float[Array, "b h"], y_pred: Int[Array, "b"], *,
                     fracs: tuple[float, ...] = (0.9, 0.95, 0.99), mode: str = "positive"
                     ) -> Int[Array, "b n"]:
  """How many concepts reach each fraction of an image's total contribution.

  Contributions ``c_j = w[y_pred, j] f_j`` (their positive part, or ``|c_j|`` with
  ``mode="abs"``) are sorted in decreasing order; the result is the smallest count whose
  cumulative sum reaches ``frac * total`` (0 when the total is 0).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import explanation_size
    >>> explanation_size(jnp.ones((1, 4)), jnp.array([[5.0, 3.0, 1.0, 1.0]]), jnp.array([0]),
    ...                  fracs=(0.9,)).tolist()
    [[3]]
  """
  fn = "explanation_size"
  _float(fn, "w", w, rank=2)
  _float(fn, "f", f, rank=2)
  V.check_axis_size(fn, "f", f, 1, w.shape[1], "one column per latent of w")
  _check_nonempty(fn, "w", w, 0, "classes")
  V.check_integer(fn, "y_pred", y_pred)
  V.check_shape(fn, "y_pred", y_pred, (f.shape[0],))
  V.check_choice(fn, "mode", mode, ("positive", "abs"))
  if not isinstance(fracs, (tuple, list)) or not fracs:
    raise TypeError(f"{fn}: fracs must be a non-empty tuple of fractions, got {fracs!r}")
  for q in fracs:
    V.check_scalar(fn, "fracs", q, low=0, high=1, low_inclusive=False)
  dt = _promote(w.dtype, f.dtype)
  c = w.astype(dt)[y_pred] * f.astype(dt)
  c = jnp.maximum(c, 0) if mode == "positive" else jnp.abs(c)
  srt = -jnp.sort(-c, axis=-1)
  cum = jnp.cumsum(srt, -1)
  tot = cum[..., -1:]
  q = jnp.asarray([float(v) for v in fracs], dt)
  need = (cum[:, None, :] < q[None, :, None] * tot[:, None, :] * (1 - 1e-6))
  count = jnp.sum(need.astype(jnp.int32), -1) + 1
  return jnp.where(tot > 0, jnp.minimum(count, c.shape[-1]), 0).astype(jnp.int32)


class ConceptSAE(nnx.Module):
  """DN-CBM's concept-discovery SAE as a bottleneck layer: ``f = relu((x - b_dec) W_enc +
  b_enc)`` with unit-norm dictionary rows (normalised in the forward pass); the concept
  strengths ``f`` are the bottleneck.

  ``__call__(x, l1=...)`` returns :class:`~bottleneck_jax.core.BottleneckOutput` with
  ``z = f``, ``loss = mse + l1 |f|_1`` (batch means; :func:`~bottleneck_jax.ops.sae_loss`),
  ``bits = L0 log2(h)`` per example and ``aux = {"x_hat", "mse", "l0"}``. :attr:`params` are
  the current :class:`~bottleneck_jax.ops.SAEParams` with unit dictionary rows.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.concepts import ConceptSAE
    >>> sae = ConceptSAE(4, 2, rngs=nnx.Rngs(0))
    >>> sae(jnp.ones((3, 4))).z.shape
    (3, 8)
  """

  def __init__(self, d: int, expansion: int, *, rngs: nnx.Rngs):
    fn = "ConceptSAE"
    V.check_scalar(fn, "d", d, low=1, integer=True)
    V.check_scalar(fn, "expansion", expansion, low=1, integer=True)
    h = int(d) * int(expansion)
    w_dec = _unit_rows(jax.random.normal(rngs.params(), (int(d), h)).T)
    self.W_enc, self.b_enc = nnx.Param(w_dec.T), nnx.Param(jnp.zeros(h))
    self.W_dec, self.b_dec = nnx.Param(w_dec), nnx.Param(jnp.zeros(int(d)))

  @property
  def params(self) -> SAEParams:
    """The current parameters with unit dictionary rows."""
    return SAEParams(self.W_enc[...], self.b_enc[...], _unit_rows(self.W_dec[...]),
                     self.b_dec[...])

  def __call__(self, x, *, l1: float = 3e-5) -> BottleneckOutput:
    p = self.params
    r = sae_loss(p, x, activation="relu", l1=l1)
    f = sae_encode(p, x, activation="relu").features
    x_hat = sae_decode(p, f)
    l0 = jnp.sum((f > 0).astype(jnp.float32), -1)
    bits = l0 * math.log2(max(f.shape[-1], 2))
    return BottleneckOutput(f, r.loss, bits, {"x_hat": x_hat, "mse": r.reconstruction,
                                              "l0": jnp.mean(l0)})
