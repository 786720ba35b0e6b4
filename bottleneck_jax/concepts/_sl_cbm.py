"""SL-CBM: concept bottleneck models with semantic locality.

Paper: Hanwei Zhang, Luo Cheng, Rui Wen, Yang Zhang, Lijun Zhang, Holger Hermanns, "SL-CBM:
Enhancing Concept Bottleneck Models with Semantic Locality for Better Interpretability", AAAI
2026 (https://arxiv.org/abs/2601.12804); code Uzukidd/sl-cbm (``models/spss_cbm.py``,
``utils/model_utils.py``, ``utils/loss_utils.py``, ``utils/eval_utils.py``).

Idea. A post-hoc CBM on a frozen vision-language encoder explains with one concept vector per
*image*; where in the image a concept was seen is left to after-the-fact saliency methods, which
often point elsewhere. SL-CBM makes the concept evidence local by construction: a 1x1
convolution maps every patch token to concept scores (these *are* the concept saliency maps),
a cross-attention pooling collects them into the image's concept activations, and the
classifier reads only those activations. Losses on the concept activations and on the
per-token concept distributions make each patch commit to one concept.

Implemented here, for patch tokens ``Z[N, D1]``, a global image embedding ``e[D2]`` and concept
vectors ``V[K, D2]`` (``N = h w`` tokens, ``K`` concepts, ``M`` classes):

* :func:`slcbm_concept_maps`: the 1x1 token projection ``S = Z W_tok + b_tok`` (``[N, K]``),
  optionally a softmax over concepts per token;
* :func:`simpool`: SimPool cross-attention pooling with the image-concept similarity as the
  query, ``q = e V^T``; ``L = LN(S)`` (LayerNorm over concepts, epsilon 1e-6),
  ``a = softmax_N((q W_q)(L W_k)^T / sqrt(K))``, ``f = a L`` (the concept activations ``[K]``;
  ``a`` is a second saliency view);
* :func:`slcbm_apply`: the whole head, ``logits = NEC-Linear(LN(f))``; :func:`nec_mask` keeps the
  ``n`` largest ``|w|`` of each class row (the reference's ``NECLinear``);
* losses (:func:`slcbm_loss`, the reference's ``spss_loss``):
  ``lam1 CE + lam2 * 1e4 * mean|sigmoid(f) - c| + lam3 H`` with
  :func:`token_concept_entropy` ``H = mean_batch(-sum_{n,c} p_nc log(p_nc + 1e-10))``,
  ``p = softmax_c(S)``; :func:`slcbm_contrastive`, the ``cspss`` InfoNCE term between the
  concept activations of two views (unit-normalised, temperature 1, one direction);
* saliency: :func:`class_saliency` ``S_l = sum_c w_lc S_c`` and :func:`upsample_token_map`
  (token grid to image size). Locality is scored with
  :func:`~bottleneck_jax.concepts.attribution_iou` (the reference's soft IoU / Dice / precision)
  and the other region scores of the family;
* :func:`slcbm_init` and the NNX module :class:`SLCBMHead` (concept vectors held frozen).

Departures: weights are initialised with LeCun-normal / zeros (the reference uses PyTorch's
uniform ``+-1/sqrt(fan_in)``); :func:`upsample_token_map` uses ``jax.image.resize`` (its cubic
kernel has ``a = -0.5``, PyTorch's bicubic ``a = -0.75``); NEC ties between equal ``|w|`` go to
the lower concept index (``torch.topk`` leaves them unspecified). The SimPool ``gamma`` /
``beta`` options are not implemented: the reference builds SL-CBM's pooling with
``gamma=None``, for which they are unused.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, Float, Int

from bottleneck_jax.concepts._cbm import _check_nonempty, _float, _labels01, _num, _promote
from bottleneck_jax.concepts._pcbm import BankVariable
from bottleneck_jax.core import validation as V
from bottleneck_jax.core.rng import as_key
from bottleneck_jax.kernels.sharding import take

_ENTROPY_TINY = 1e-10


class SLCBMParams(NamedTuple):
  """SL-CBM's trainable parameters (``D1`` token width, ``K`` concepts, ``M`` classes).

  Attributes:
    w_tok: the 1x1 token projection ``[D1, K]``.
    b_tok: its bias ``[K]``.
    ln_scale: SimPool's LayerNorm scale ``[K]``.
    ln_bias: SimPool's LayerNorm bias ``[K]``.
    w_q: the query projection ``[K, K]`` (no bias).
    w_k: the key projection ``[K, K]`` (no bias).
    head_scale: the classifier's LayerNorm scale ``[K]``.
    head_bias: the classifier's LayerNorm bias ``[K]``.
    w_cls: the class weights ``[M, K]`` (one row per class).
    b_cls: the class biases ``[M]``.
  """

  w_tok: Array
  b_tok: Array
  ln_scale: Array
  ln_bias: Array
  w_q: Array
  w_k: Array
  head_scale: Array
  head_bias: Array
  w_cls: Array
  b_cls: Array


def _check_params(fn, params):
  if not isinstance(params, SLCBMParams):
    raise TypeError(f"{fn}: params must be an SLCBMParams, got {type(params).__name__}")
  for name in SLCBMParams._fields:
    _float(fn, f"params.{name}", getattr(params, name))
  _float(fn, "params.w_tok", params.w_tok, rank=2)
  _check_nonempty(fn, "params.w_tok", params.w_tok, 1, "concepts")
  k = params.w_tok.shape[1]
  for name in ("b_tok", "ln_scale", "ln_bias", "head_scale", "head_bias"):
    V.check_shape(fn, f"params.{name}", getattr(params, name), [k])
  for name in ("w_q", "w_k"):
    V.check_shape(fn, f"params.{name}", getattr(params, name), [k, k])
  _float(fn, "params.w_cls", params.w_cls, rank=2)
  V.check_axis_size(fn, "params.w_cls", params.w_cls, 1, k, "one column per concept")
  _check_nonempty(fn, "params.w_cls", params.w_cls, 0, "classes")
  V.check_shape(fn, "params.b_cls", params.b_cls, [params.w_cls.shape[0]])
  return k


def _dtype(params, *arrays):
  return _promote(*(p.dtype for p in params), *(a.dtype for a in arrays))


def _layer_norm(x, scale, bias, epsilon):
  mu = jnp.mean(x, -1, keepdims=True)
  var = jnp.mean(jnp.square(x - mu), -1, keepdims=True)
  return (x - mu) * jax.lax.rsqrt(var + epsilon) * scale + bias


def slcbm_init(d_tokens: int, n_concepts: int, n_classes: int, *, key) -> SLCBMParams:
  """Initial :class:`SLCBMParams`: LeCun-normal weights, zero biases, unit LayerNorm scales.

  Example::

    import jax
    from bottleneck_jax.concepts import slcbm_init
    p = slcbm_init(8, 4, 3, key=jax.random.key(0))
    p.w_tok.shape, p.w_q.shape, p.w_cls.shape  # ((8, 4), (4, 4), (3, 4))
  """
  fn = "slcbm_init"
  V.check_scalar(fn, "d_tokens", d_tokens, low=1, integer=True)
  V.check_scalar(fn, "n_concepts", n_concepts, low=1, integer=True)
  V.check_scalar(fn, "n_classes", n_classes, low=1, integer=True)
  return _init_params(as_key(key, fn=fn), int(d_tokens), int(n_concepts), int(n_classes))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _init_params(key, d, k, m) -> SLCBMParams:
  k0, k1, k2, k3 = jax.random.split(key, 4)
  init = jax.nn.initializers.lecun_normal()
  f32 = jnp.float32
  zeros, ones = jnp.zeros((k,), f32), jnp.ones((k,), f32)
  return SLCBMParams(
      w_tok=init(k0, (d, k), f32), b_tok=zeros, ln_scale=ones, ln_bias=zeros,
      w_q=init(k1, (k, k), f32), w_k=init(k2, (k, k), f32), head_scale=ones, head_bias=zeros,
      w_cls=init(k3, (m, k), f32), b_cls=jnp.zeros((m,), f32))


def slcbm_concept_maps(params: SLCBMParams, tokens: Float[Array, "*batch n d1"], *,
                       concept_softmax: bool = False) -> Float[Array, "*batch n k"]:
  """The 1x1 token projection: per-token concept scores ``S = Z W_tok + b_tok``.

  ``S[..., n, c]`` is concept ``c``'s saliency at patch ``n``; with ``concept_softmax`` each
  token's scores are turned into a distribution over concepts.

  Example::

    import jax, jax.numpy as jnp
    from bottleneck_jax.concepts import slcbm_concept_maps, slcbm_init
    p = slcbm_init(8, 4, 3, key=jax.random.key(0))
    slcbm_concept_maps(p, jnp.ones((2, 16, 8))).shape  # (2, 16, 4)
  """
  fn = "slcbm_concept_maps"
  _check_params(fn, params)
  _float(fn, "tokens", tokens, min_rank=2)
  V.check_axis_size(fn, "tokens", tokens, -1, params.w_tok.shape[0],
                    "the token width D1 of params.w_tok")
  dt = _dtype(params, tokens)
  s = tokens.astype(dt) @ params.w_tok.astype(dt) + params.b_tok.astype(dt)
  return jax.nn.softmax(s, -1) if concept_softmax else s


class SimPoolOutput(NamedTuple):
  """:func:`simpool`'s result: the pooled concept activations ``f[*batch, K]`` and the
  attention over tokens ``attn[*batch, N]`` (sums to 1)."""

  f: Array
  attn: Array


def simpool(params: SLCBMParams, s: Float[Array, "*batch n k"], q: Float[Array, "*batch k"]
            ) -> SimPoolOutput:
  """SimPool cross-attention pooling of the token concept scores with an external query.

  .. math::
    L = \\mathrm{LN}(S),\\quad a = \\mathrm{softmax}_N\\!\\left(\\frac{(q W_q)(L W_k)^\\top}
    {\\sqrt K}\\right),\\quad f = a L

  (one head, no projection biases, LayerNorm epsilon 1e-6, as the reference's ``SimPool`` with
  ``gamma=None``).

  Example::

    import jax, jax.numpy as jnp
    from bottleneck_jax.concepts import simpool, slcbm_init
    p = slcbm_init(8, 4, 3, key=jax.random.key(0))
    out = simpool(p, jnp.ones((2, 16, 4)), jnp.ones((2, 4)))
    out.f.shape, out.attn.shape, float(out.attn[0].sum())  # ((2, 4), (2, 16), 1.0)
  """
  fn = "simpool"
  k = _check_params(fn, params)
  _float(fn, "s", s, min_rank=2)
  V.check_axis_size(fn, "s", s, -1, k, "one score per concept")
  _check_nonempty(fn, "s", s, -2, "tokens")
  _float(fn, "q", q, min_rank=1)
  if tuple(np.shape(q)) != tuple(np.shape(s)[:-2]) + (k,):
    raise ValueError(f"{fn}: q must have shape {list(np.shape(s)[:-2]) + [k]} (one query per "
                     f"image, one entry per concept), got {list(np.shape(q))}")
  dt = _dtype(params, s, q)
  p = jax.tree.map(lambda a: a.astype(dt), params)
  ln = _layer_norm(s.astype(dt), p.ln_scale, p.ln_bias, 1e-6)
  qq = q.astype(dt) @ p.w_q
  kk = ln @ p.w_k
  logits = jnp.einsum("...k,...nk->...n", qq, kk) / float(np.sqrt(k))
  attn = jax.nn.softmax(logits.astype(dt), -1)
  return SimPoolOutput(jnp.einsum("...n,...nk->...k", attn, ln), attn)


def nec_mask(w: Float[Array, "m k"], *, n: int) -> Float[Array, "m k"]:
  """The NEC mask: 1 on the ``n`` largest ``|w|`` of each class row, 0 elsewhere.

  Ties go to the lower concept index.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import nec_mask
    >>> nec_mask(jnp.array([[0.1, -3.0, 2.0, 0.5]]), n=2).tolist()
    [[0.0, 1.0, 1.0, 0.0]]
  """
  fn = "nec_mask"
  _float(fn, "w", w, rank=2)
  _check_nonempty(fn, "w", w, 1, "concepts")
  V.check_scalar(fn, "n", n, low=1, high=w.shape[1], integer=True)
  _, idx = jax.lax.top_k(jnp.abs(w), int(n))
  return jnp.sum(jax.nn.one_hot(idx, w.shape[1], dtype=w.dtype), axis=-2)


class SLCBMOutput(NamedTuple):
  """:func:`slcbm_apply`'s result.

  Attributes:
    logits: class logits ``[*batch, M]``.
    f: the pooled concept activations ``[*batch, K]`` (the bottleneck).
    s: the token concept maps ``[*batch, N, K]``.
    attn: SimPool's attention over tokens ``[*batch, N]``.
  """

  logits: Array
  f: Array
  s: Array
  attn: Array


def slcbm_apply(params: SLCBMParams, tokens: Float[Array, "*batch n d1"],
                e: Float[Array, "*batch d2"], concept_vectors: Float[Array, "k d2"], *,
                nec: int | None = None, concept_softmax: bool = False) -> SLCBMOutput:
  """The SL-CBM head on frozen encoder outputs.

  ``S = slcbm_concept_maps(Z)``, ``q = e V^T``, ``(f, a) = simpool(S, q)``,
  ``logits = LN(f) (w_cls * mask)^T + b_cls`` with the :func:`nec_mask` of ``nec`` concepts per
  class when ``nec`` is given (LayerNorm epsilon 1e-5).

  Args:
    params: the :class:`SLCBMParams`.
    tokens: patch tokens ``Z``.
    e: the global image embeddings.
    concept_vectors: the concept bank ``V`` (one row per concept, in the space of ``e``).
    nec: keep only the ``nec`` largest class weights per class (``None``: all).
    concept_softmax: softmax the token scores over concepts first.

  Returns:
    An :class:`SLCBMOutput`.

  Example::

    import jax, jax.numpy as jnp
    from bottleneck_jax.concepts import slcbm_apply, slcbm_init
    p = slcbm_init(8, 4, 3, key=jax.random.key(0))
    out = slcbm_apply(p, jnp.ones((2, 16, 8)), jnp.ones((2, 5)), jnp.ones((4, 5)))
    out.logits.shape, out.f.shape  # ((2, 3), (2, 4))
    out.s.shape, out.attn.shape  # ((2, 16, 4), (2, 16))
  """
  fn = "slcbm_apply"
  k = _check_params(fn, params)
  _float(fn, "tokens", tokens, min_rank=2)
  V.check_axis_size(fn, "tokens", tokens, -1, params.w_tok.shape[0],
                    "the token width D1 of params.w_tok")
  _float(fn, "concept_vectors", concept_vectors, rank=2)
  V.check_axis_size(fn, "concept_vectors", concept_vectors, 0, k,
                    "one vector per concept of params")
  _float(fn, "e", e, min_rank=1)
  V.check_axis_size(fn, "e", e, -1, concept_vectors.shape[1],
                    "the embedding width of concept_vectors")
  if tuple(np.shape(e)[:-1]) != tuple(np.shape(tokens)[:-2]):
    raise ValueError(f"{fn}: e must have batch shape {list(np.shape(tokens)[:-2])} (one "
                     f"embedding per image of tokens), got {list(np.shape(e))}")
  if nec is not None:
    V.check_scalar(fn, "nec", nec, low=1, high=k, integer=True)
  s = slcbm_concept_maps(params, tokens, concept_softmax=concept_softmax)
  dt = _dtype(params, tokens, e, concept_vectors)
  q = e.astype(dt) @ concept_vectors.astype(dt).T
  pooled = simpool(params, s.astype(dt), q)
  p = jax.tree.map(lambda a: a.astype(dt), params)
  w = p.w_cls if nec is None else p.w_cls * nec_mask(p.w_cls, n=nec)
  z = _layer_norm(pooled.f, p.head_scale, p.head_bias, 1e-5)
  return SLCBMOutput(z @ w.T + p.b_cls, pooled.f, s.astype(dt), pooled.attn)


def token_concept_entropy(s: Float[Array, "*batch n k"], *, already_prob: bool = False
                          ) -> Float[Array, ""]:
  """Entropy of the per-token concept distributions, summed over tokens, mean over images.

  ``H = mean_batch(-sum_{n,c} p_nc log(p_nc + 1e-10))`` with ``p = softmax_c(S)`` (or ``S``
  itself when ``already_prob``). Low when every patch commits to one concept.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.concepts import token_concept_entropy
    >>> round(float(jax.jit(token_concept_entropy)(jnp.zeros((1, 3, 4)))), 4)  # 3 log 4
    4.1589
  """
  fn = "token_concept_entropy"
  _float(fn, "s", s, min_rank=2)
  _check_nonempty(fn, "s", s, -1, "concepts")
  x = s.astype(jnp.promote_types(s.dtype, jnp.float32))
  p = x if already_prob else jax.nn.softmax(x, -1)
  h = -jnp.sum(p * jnp.log(p + _ENTROPY_TINY), axis=(-2, -1))
  return jnp.mean(h)


class SLCBMLoss(NamedTuple):
  """:func:`slcbm_loss`'s result: the weighted total ``loss`` and its unweighted terms ``ce``,
  ``concept`` (already multiplied by ``concept_scale``) and ``entropy``."""

  loss: Array
  ce: Array
  concept: Array
  entropy: Array


def slcbm_loss(logits: Float[Array, "b m"], f: Float[Array, "b k"], s: Float[Array, "b n k"],
               y: Int[Array, "b"], c_true: Float[Array, "b k"], *,
               lams: tuple[float, float, float] = (1.0, 1.0, 5.0), concept_scale: float = 1e4,
               already_prob: bool = False) -> SLCBMLoss:
  """SL-CBM's training loss (the reference's ``spss_loss``).

  .. math::
    \\lambda_1 \\mathrm{CE}(\\text{logits}, y) + \\lambda_2 \\cdot 10^4 \\cdot
    \\mathrm{mean}\\,|\\sigma(f) - c| + \\lambda_3 H(S)

  with :func:`token_concept_entropy` ``H``.

  Args:
    logits, f, s: :func:`slcbm_apply`'s outputs.
    y: class labels.
    c_true: concept labels in {0, 1}, the shape of ``f``.
    lams: ``(lam1, lam2, lam3)``; the reference's defaults are ``(1, 1, 5)``.
    concept_scale: the concept term's scale (``1 / 1e-4`` in the reference).
    already_prob: ``s`` is already a distribution over concepts (``concept_softmax=True``).

  Returns:
    An :class:`SLCBMLoss`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.concepts import slcbm_loss
    >>> loss = jax.jit(slcbm_loss, static_argnames="lams")
    >>> out = loss(jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.zeros((1, 1, 2)), jnp.array([0]),
    ...            jnp.array([[1, 0]]), lams=(1.0, 0.0, 0.0))
    >>> round(float(out.loss), 4), float(out.concept)  # log 2 and 1e4 * 0.5
    (0.6931, 5000.0)
  """
  fn = "slcbm_loss"
  _float(fn, "logits", logits, rank=2)
  _check_nonempty(fn, "logits", logits, 0, "examples")
  _check_nonempty(fn, "logits", logits, 1, "classes")
  _float(fn, "f", f, rank=2)
  V.check_axis_size(fn, "f", f, 0, logits.shape[0], "one row per example of logits")
  _check_nonempty(fn, "f", f, 1, "concepts")
  _float(fn, "s", s, rank=3)
  V.check_axis_size(fn, "s", s, 0, logits.shape[0], "one map per example of logits")
  V.check_axis_size(fn, "s", s, 2, f.shape[1], "one score per concept of f")
  V.check_integer(fn, "y", y)
  V.check_shape(fn, "y", y, [logits.shape[0]])
  _labels01(fn, "c_true", c_true)
  V.check_same_shape(fn, "f", f, "c_true", c_true)
  if not isinstance(lams, (tuple, list)) or len(lams) != 3:
    raise ValueError(f"{fn}: lams must be a tuple of three weights (ce, concept, entropy), got "
                     f"{lams!r}")
  for i, lam in enumerate(lams):
    V.check_scalar(fn, f"lams[{i}]", lam, low=0)
  V.check_scalar(fn, "concept_scale", concept_scale, low=0)
  f32 = jnp.float32
  ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits.astype(f32), y))
  conc = _num(concept_scale) * jnp.mean(jnp.abs(jax.nn.sigmoid(f.astype(f32))
                                                - jnp.asarray(c_true).astype(f32)))
  ent = token_concept_entropy(s, already_prob=already_prob).astype(f32)
  l1, l2, l3 = (_num(v) for v in lams)
  return SLCBMLoss(l1 * ce + l2 * conc + l3 * ent, ce, conc, ent)


def slcbm_contrastive(f_a: Float[Array, "b k"], f_b: Float[Array, "b k"], *,
                      temperature: float = 1.0) -> Float[Array, ""]:
  """The ``cspss`` InfoNCE term between the concept activations of two views of each image.

  Rows are L2-normalised; ``CE(f_a f_b^T / temperature, arange(B))`` (one direction, as the
  reference's ``ClipLoss``).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.concepts import slcbm_contrastive
    >>> round(float(jax.jit(slcbm_contrastive)(jnp.eye(2), jnp.eye(2))), 4)  # log(1 + e^-1)
    0.3133
  """
  fn = "slcbm_contrastive"
  _float(fn, "f_a", f_a, rank=2)
  _check_nonempty(fn, "f_a", f_a, 0, "examples")
  _check_nonempty(fn, "f_a", f_a, 1, "concepts")
  _float(fn, "f_b", f_b, rank=2)
  V.check_same_shape(fn, "f_a", f_a, "f_b", f_b)
  V.check_scalar(fn, "temperature", temperature, low=0, low_inclusive=False)

  def unit(a):
    a = a.astype(jnp.float32)
    return a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), 1e-12)

  logits = unit(f_a) @ unit(f_b).T / _num(temperature)
  labels = jnp.arange(f_a.shape[0])
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def class_saliency(w: Float[Array, "m k"], s: Float[Array, "*batch n k"],
                   cls: Int[Array, "*batch"]) -> Float[Array, "*batch n"]:
  """Class saliency maps ``S_l = sum_c w_lc S_c`` for class ``l = cls`` of each image.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import class_saliency
    >>> w = jnp.array([[1.0, 0.0], [2.0, -1.0]])
    >>> s = jnp.array([[[1.0, 3.0], [0.0, 1.0]]])
    >>> class_saliency(w, s, jnp.array([1])).tolist()
    [[-1.0, -1.0]]
  """
  fn = "class_saliency"
  _float(fn, "w", w, rank=2)
  _check_nonempty(fn, "w", w, 0, "classes")
  _float(fn, "s", s, min_rank=2)
  V.check_axis_size(fn, "s", s, -1, w.shape[1], "one score per concept of w")
  V.check_integer(fn, "cls", cls)
  if tuple(np.shape(cls)) != tuple(np.shape(s)[:-2]):
    raise ValueError(f"{fn}: cls must have shape {list(np.shape(s)[:-2])} (one class per map), "
                     f"got {list(np.shape(cls))}")
  dt = _promote(w.dtype, s.dtype)
  rows = take(w.astype(dt), jnp.asarray(cls))  # [*batch, K]; batch-sharded cls on a mesh too
  return jnp.einsum("...nk,...k->...n", s.astype(dt), rows)


def upsample_token_map(maps: Float[Array, "*batch n"], *, grid: tuple[int, int],
                       size: tuple[int, int], method: str = "cubic"
                       ) -> Float[Array, "*batch hh ww"]:
  """A token map ``[*batch, N]`` (row-major ``h x w`` grid) resized to image size ``H x W``.

  Args:
    maps: one value per token.
    grid: ``(h, w)`` with ``h w = N``.
    size: ``(H, W)``.
    method: ``"nearest"``, ``"linear"`` or ``"cubic"`` (``jax.image.resize``).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import upsample_token_map
    >>> m = upsample_token_map(jnp.arange(4.0), grid=(2, 2), size=(4, 4), method="nearest")
    >>> m[0].tolist(), m[3].tolist()
    ([0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0])
  """
  fn = "upsample_token_map"
  _float(fn, "maps", maps, min_rank=1)
  V.check_choice(fn, "method", method, ("nearest", "linear", "cubic"))
  for arg, v in (("grid", grid), ("size", size)):
    if (not isinstance(v, (tuple, list)) or len(v) != 2
        or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) and i >= 1
                   for i in v)):
      raise ValueError(f"{fn}: {arg} must be two positive ints (rows, cols), got {v!r}")
  h, w = int(grid[0]), int(grid[1])
  if h * w != maps.shape[-1]:
    raise ValueError(f"{fn}: grid {h}x{w} must hold the {maps.shape[-1]} tokens of maps "
                     f"(h * w = N), got h * w = {h * w}")
  lead = maps.shape[:-1]
  x = maps.reshape(*lead, h, w)
  return jax.image.resize(x, (*lead, int(size[0]), int(size[1])), method=method)


class SLCBMHead(nnx.Module):
  """SL-CBM's trainable head over a frozen encoder, with a frozen concept bank.

  ``__call__(tokens, e)`` returns :func:`slcbm_apply`'s :class:`SLCBMOutput`.

  Args:
    concept_vectors: the concept bank ``V[K, D2]`` (held as a never-trained variable).
    d_tokens: the token width ``D1``.
    n_classes: ``M``.
    nec: keep the ``nec`` largest class weights per class (``None``: all).
    concept_softmax: softmax the token scores over concepts.
    rngs: the initialisation keys.

  Example::

    import jax.numpy as jnp
    from flax import nnx
    from bottleneck_jax.concepts import SLCBMHead
    head = SLCBMHead(jnp.ones((4, 5)), 8, 3, rngs=nnx.Rngs(0))
    head(jnp.ones((2, 16, 8)), jnp.ones((2, 5))).logits.shape  # (2, 3)
  """

  def __init__(self, concept_vectors, d_tokens: int, n_classes: int, *, nec: int | None = None,
               concept_softmax: bool = False, rngs: nnx.Rngs):
    fn = "SLCBMHead"
    _float(fn, "concept_vectors", concept_vectors, rank=2)
    _check_nonempty(fn, "concept_vectors", concept_vectors, 0, "concepts")
    k = concept_vectors.shape[0]
    if nec is not None:
      V.check_scalar(fn, "nec", nec, low=1, high=k, integer=True)
    p = slcbm_init(d_tokens, k, n_classes, key=rngs.params())
    self.concept_vectors = BankVariable(jnp.asarray(concept_vectors))
    for name in SLCBMParams._fields:
      setattr(self, name, nnx.Param(getattr(p, name)))
    self.nec = None if nec is None else int(nec)
    self.concept_softmax = bool(concept_softmax)

  @property
  def params(self) -> SLCBMParams:
    return SLCBMParams(*(getattr(self, name)[...] for name in SLCBMParams._fields))

  def __call__(self, tokens, e) -> SLCBMOutput:
    return slcbm_apply(self.params, tokens, e, self.concept_vectors[...], nec=self.nec,
                       concept_softmax=self.concept_softmax)
