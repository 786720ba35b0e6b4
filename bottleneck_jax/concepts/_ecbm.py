"""ECBM: energy-based concept bottleneck models.

Paper: Xinyue Xu, Yi Qin, Lu Mi, Hao Wang, Xiaomeng Li, "Energy-Based Concept Bottleneck Models:
Unifying Prediction, Concept Intervention, and Probabilistic Interpretations", ICLR 2024
(https://arxiv.org/abs/2401.14142); code xmed-lab/ECBM.

Idea. Instead of a feed-forward chain ``x -> c -> y``, three small energy networks score how well
an input, a concept vector and a class fit together (lower energy = more compatible). With
``z = Linear(x)`` (one projection for the class branch, another for the concept branch) and the
shared form

.. math::
  G(z, u) = w^\\top \\mathrm{ReLU}(z + z \\odot \\hat u) + b,
  \\qquad \\hat u = u / \\lVert u \\rVert,

the **class energy** is ``E_cls(x, m) = G_cls(z, u_m)`` with learned label embeddings ``u_m``; the
**concept energy** ``E_con(x, c_k) = G_k(z', v_k^{(c_k)})`` has one head per concept and two
embeddings per concept (state 0 = absent, state 1 = present); the **global energy**
``E_glob(c, m) = G_glob(P [v_1^{(c_1)}; ...; v_K^{(c_K)}], u_m)`` projects the (raw) concept
embeddings of a whole concept vector to one vector and scores it against the class.

Training treats each energy as a Boltzmann distribution over its free label and minimises the
negative log-likelihood of the true label, ``E[true] + logsumexp(-E[all])`` (a cross-entropy on
``-E``), weighted ``lam = (3, 1, 1)`` (class, sum over concepts, global), with the reference's
augmentation of the global term: in a random 20 % of the batch the same random 20 % of concepts
are flipped. **Inference** relaxes the discrete labels: free logits ``y_logit[M]`` and
``c_logit[K, 2]`` (zeros at start), ``y = softmax(y_logit)``, ``c_k = softmax(c_logit_k)``, mixed
embeddings ``u = sum_m y_m u_m`` and ``v_k = c_k0 v_k^{(0)} + c_k1 v_k^{(1)}``, and Adam
(lr 0.1) minimises ``1 E_cls + 1 sum_k E_con + 0.01 E_glob``, stopping when the class energy
has not dropped by more than ``min_delta = 1`` for ``patience = 10`` steps. An **intervention**
fixes the given concepts at logits ``(onehot(c) - 0.5) 10`` (probability ~0.99995), resets ``y``
and re-optimises the global energy alone (weights ``(0, 0, 3)``): the given concepts move the
class, and through the soft mixture the unknown concepts move too. **Probabilistic
interpretations**: ``p(y | x) = softmax_m(-E_cls)``, ``p(c_k | x) = softmax(-E_con)``,
``p(y | c) = softmax_m(-E_glob(c, .))``, and the reference's counting estimates of
``p(c_k = 1 | y)`` and of the most likely concept vector per class.

Implemented here: :class:`ECBMParams` and :func:`ecbm_init`, :func:`ecbm_energies` (relaxed
labels), :func:`ecbm_train_energies` (every label), :func:`boltzmann_nll`, :func:`ecbm_loss`,
:func:`ecbm_infer` (Adam in a ``lax.scan`` with a per-example early-stopping mask),
:func:`ecbm_intervene`, :func:`ecbm_conditionals`, :func:`concept_importance` and the NNX module
:class:`ECBMHead`.

Departures from the reference code (each deliberate):

* The global energy mixes the concept embeddings softly in inference too (the reference picks
  them with a hard ``p > 0.5``, so no gradient reaches the concepts from the global energy and an
  intervention cannot correct the unknown concepts); ``reference_compat=True`` restores the hard
  choice.
* State 1 is "present" in both the concept and the global energy (the reference uses the second
  embedding of a pair as "present" in the concept energy and the first in the global one; the
  embeddings are learned, so only the naming differs).
* Intervened concept logits are held fixed during re-optimisation (the reference leaves them
  trainable); ``reference_compat=True`` leaves them trainable.
* Early stopping is per example (the reference stops a whole batch on the batch-mean class
  energy), so a prediction does not depend on the other examples of its batch; each example's
  gradient is its own (sum, not mean, over the batch: Adam is invariant to that scale up to its
  ``epsilon``).
* One learning rate for both relaxed variables (the reference's ``lr_c`` and ``lr_y`` are both
  0.1 in its configurations).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import PartitionSpec
from jaxtyping import Array, Float, Int

from bottleneck_jax.concepts._cbm import _check_nonempty, _float, _labels01, _num
from bottleneck_jax.core import validation as V
from bottleneck_jax.core.rng import as_key
from bottleneck_jax.kernels.sharding import explicit_spec

_F32 = jnp.float32
_INTERVENE_LOGIT = 5.0  # (onehot - 0.5) * 10, as the reference


class ECBMParams(NamedTuple):
  """The parameters of the three energy networks (``D`` inputs, ``h`` hidden units, ``M``
  classes, ``K`` concepts).

  Attributes:
    w_xy, b_xy: class-branch projection ``[D, h]``, ``[h]``.
    w_xc, b_xc: concept-branch projection ``[D, h]``, ``[h]``.
    y_emb: label embeddings ``u_m``, ``[M, h]``.
    c_emb: concept embeddings ``[K, 2, h]`` (index 1: concept present).
    w_cls, b_cls: class-energy head ``[h]``, ``[]``.
    w_con, b_con: one concept-energy head per concept ``[K, h]``, ``[K]``.
    w_proj, b_proj: projection of the concatenated concept embeddings ``[K, h, h]``, ``[h]``
      (``g = sum_k v_k W_proj[k] + b_proj``, the reference's ``Linear(K h, h)``).
    w_glob, b_glob: global-energy head ``[h]``, ``[]``.
  """

  w_xy: Array
  b_xy: Array
  w_xc: Array
  b_xc: Array
  y_emb: Array
  c_emb: Array
  w_cls: Array
  b_cls: Array
  w_con: Array
  b_con: Array
  w_proj: Array
  b_proj: Array
  w_glob: Array
  b_glob: Array


class ECBMEnergies(NamedTuple):
  """Energies: ``cls`` (class), ``con`` (per concept), ``glob`` (global). Shapes
  ``[B]``, ``[B, K]``, ``[B]`` for relaxed labels (:func:`ecbm_energies`) and ``[B, M]``,
  ``[B, K, 2]``, ``[B, M]`` for every label (:func:`ecbm_train_energies`)."""

  cls: Array
  con: Array
  glob: Array


def _check_params(fn, params):
  """Validates ``params``; returns ``(D, h, M, K)``."""
  if not isinstance(params, ECBMParams):
    raise TypeError(f"{fn}: params must be ECBMParams, got {type(params).__name__}")
  _float(fn, "params.w_xy", params.w_xy, rank=2)
  d, h = params.w_xy.shape
  if d < 1 or h < 1:
    raise ValueError(f"{fn}: params.w_xy must be [D, h] with D, h >= 1, got "
                     f"{list(params.w_xy.shape)}")
  _float(fn, "params.y_emb", params.y_emb, rank=2)
  _float(fn, "params.c_emb", params.c_emb, rank=3)
  m, k = params.y_emb.shape[0], params.c_emb.shape[0]
  if m < 1 or k < 1:
    raise ValueError(f"{fn}: params must have at least one class and one concept, got y_emb "
                     f"{list(params.y_emb.shape)} and c_emb {list(params.c_emb.shape)}")
  shapes = {"b_xy": (h,), "w_xc": (d, h), "b_xc": (h,), "y_emb": (m, h), "c_emb": (k, 2, h),
            "w_cls": (h,), "b_cls": (), "w_con": (k, h), "b_con": (k,), "w_proj": (k, h, h),
            "b_proj": (h,), "w_glob": (h,), "b_glob": ()}
  for name, shape in shapes.items():
    a = getattr(params, name)
    _float(fn, f"params.{name}", a)
    V.check_shape(fn, f"params.{name}", a, shape)
  return d, h, m, k


def _check_x(fn, x, d):
  _float(fn, "x", x, rank=2)
  _check_nonempty(fn, "x", x, 0, "examples")
  V.check_axis_size(fn, "x", x, 1, d, "the input dimension of params")


def _check_lam(fn, lam):
  if not (isinstance(lam, (tuple, list)) and len(lam) == 3):
    raise TypeError(f"{fn}: lam must be a triple (class, concept, global) of weights, got "
                    f"{lam!r}")
  for v in lam:
    V.check_scalar(fn, "lam", v, low=0)
  return tuple(_num(v) for v in lam)


def ecbm_init(key, *, d_in: int, n_concepts: int, n_classes: int, hidden: int = 512
              ) -> ECBMParams:
  """Random :class:`ECBMParams` as the reference initialises them.

  Linear layers ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (weights and biases, PyTorch's default),
  label and concept embeddings ``N(0, 1)``.

  Args:
    key: PRNG key.
    d_in: input features ``D``.
    n_concepts: ``K``.
    n_classes: ``M``.
    hidden: ``h``.

  Returns:
    :class:`ECBMParams` (float32).

  Example:
    >>> import jax
    >>> from bottleneck_jax.concepts import ecbm_init
    >>> p = ecbm_init(jax.random.key(0), d_in=5, n_concepts=3, n_classes=2, hidden=4)
    >>> p.c_emb.shape, p.w_proj.shape
    ((3, 2, 4), (3, 4, 4))
  """
  fn = "ecbm_init"
  key = as_key(key, fn=fn)
  for arg, v in (("d_in", d_in), ("n_concepts", n_concepts), ("n_classes", n_classes),
                 ("hidden", hidden)):
    V.check_scalar(fn, arg, v, low=1, integer=True)
  d, k, m, h = int(d_in), int(n_concepts), int(n_classes), int(hidden)
  ks = iter(jax.random.split(key, 14))

  def unif(shape, fan_in):
    b = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(next(ks), shape, _F32, -b, b)

  return ECBMParams(
      w_xy=unif((d, h), d), b_xy=unif((h,), d), w_xc=unif((d, h), d), b_xc=unif((h,), d),
      y_emb=jax.random.normal(next(ks), (m, h), _F32),
      c_emb=jax.random.normal(next(ks), (k, 2, h), _F32),
      w_cls=unif((h,), h), b_cls=unif((), h), w_con=unif((k, h), h), b_con=unif((k,), h),
      w_proj=unif((k, h, h), k * h), b_proj=unif((h,), k * h),
      w_glob=unif((h,), h), b_glob=unif((), h))


def _f32(tree):
  """Every array of ``tree`` as float32 (the energies are computed in float32; one dtype
  means one compilation of the jitted cores)."""
  return jax.tree.map(lambda a: jnp.asarray(a).astype(_F32), tree)


def _unit(u):
  return u / jnp.maximum(jnp.linalg.norm(u, axis=-1, keepdims=True), 1e-12)


def _g(z, u_hat, w, b):
  """``w . relu(z + z * u_hat) + b`` over the last axis."""
  return jnp.sum(jax.nn.relu(z + z * u_hat) * w, axis=-1) + b


def _like_rows(mask, ref):
  """``mask`` (a fresh random array, replicated) laid out as ``ref``'s leading axes under an
  Explicit mesh (elementwise ops there need equal shardings)."""
  spec = explicit_spec(ref)
  if spec is None:
    return mask
  return jax.sharding.reshard(mask, PartitionSpec(*tuple(spec)[:mask.ndim]))


def _project(p, x, dropout, key):
  """Both branches' projections ``z_xy, z_xc`` ``[B, h]`` with (inverted) dropout."""
  x = x.astype(_F32)
  z_xy = x @ p.w_xy.astype(_F32) + p.b_xy.astype(_F32)
  z_xc = x @ p.w_xc.astype(_F32) + p.b_xc.astype(_F32)
  if dropout > 0:
    k1, k2 = jax.random.split(key)
    keep = 1.0 - dropout
    z_xy = jnp.where(_like_rows(jax.random.bernoulli(k1, keep, z_xy.shape), z_xy), z_xy / keep,
                     0.0)
    z_xc = jnp.where(_like_rows(jax.random.bernoulli(k2, keep, z_xc.shape), z_xc), z_xc / keep,
                     0.0)
  return z_xy, z_xc


def _glob(p, v, u_hat):
  """Global energy of raw concept embeddings ``v[B, K, h]`` against unit label vectors
  ``u_hat[B, h]`` -> ``[B]``."""
  g = jnp.einsum("bkh,khj->bj", v, p.w_proj.astype(_F32)) + p.b_proj.astype(_F32)
  return _g(g, u_hat, p.w_glob.astype(_F32), p.b_glob.astype(_F32))


def _check_dropout(fn, dropout, key):
  V.check_scalar(fn, "dropout", dropout, low=0, high=1, high_inclusive=False, static=True)
  if dropout > 0:
    if key is None:
      raise ValueError(f"{fn}: key must be given when dropout > 0, got None")
    return as_key(key, fn=fn)
  return None


def ecbm_energies(params: ECBMParams, x: Float[Array, "b d"], y_soft: Float[Array, "b m"],
                  c_soft: Float[Array, "b k 2"], *, reference_compat: bool = False,
                  dropout: float = 0.0, key=None) -> ECBMEnergies:
  """The three energies of relaxed (soft) labels.

  .. math::
    E_\\text{cls} = G_\\text{cls}(z, \\textstyle\\sum_m y_m u_m),\\quad
    E_{\\text{con},k} = G_k(z', c_{k0} v_k^{(0)} + c_{k1} v_k^{(1)}),\\quad
    E_\\text{glob} = G_\\text{glob}(P[\\ldots; c_{k0} v_k^{(0)} + c_{k1} v_k^{(1)}; \\ldots],
    \\textstyle\\sum_m y_m u_m)

  (``G`` normalises its label vector; the global energy's concept embeddings stay raw).

  Args:
    params: :class:`ECBMParams`.
    x: inputs ``[B, D]``.
    y_soft: class distribution ``[B, M]`` (e.g. ``softmax(y_logit)``).
    c_soft: concept distributions ``[B, K, 2]`` (index 1: present).
    reference_compat: the global energy picks ``v_k^{(1)}`` where ``c_k1 > 0.5`` and
      ``v_k^{(0)}`` elsewhere (the reference; no gradient to ``c_soft`` from it).
    dropout: dropout rate on both projections (training only; needs ``key``).
    key: PRNG key for dropout.

  Returns:
    :class:`ECBMEnergies` with shapes ``[B]``, ``[B, K]``, ``[B]``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.concepts import ecbm_energies, ecbm_init
    >>> p = ecbm_init(jax.random.key(0), d_in=5, n_concepts=3, n_classes=2, hidden=4)
    >>> e = ecbm_energies(p, jnp.ones((1, 5)), jnp.full((1, 2), 0.5), jnp.full((1, 3, 2), 0.5))
    >>> e.cls.shape, e.con.shape, e.glob.shape
    ((1,), (1, 3), (1,))
  """
  fn = "ecbm_energies"
  d, h, m, k = _check_params(fn, params)
  _check_x(fn, x, d)
  b = x.shape[0]
  _float(fn, "y_soft", y_soft)
  V.check_shape(fn, "y_soft", y_soft, (b, m))
  _float(fn, "c_soft", c_soft)
  V.check_shape(fn, "c_soft", c_soft, (b, k, 2))
  key = _check_dropout(fn, dropout, key)
  return _soft_energies(_f32(params), _f32(x), _f32(y_soft), _f32(c_soft), key,
                        dropout=_num(dropout),
                        reference_compat=bool(reference_compat))


@functools.partial(jax.jit, static_argnames=("dropout", "reference_compat"))
def _soft_energies(p, x, y_soft, c_soft, key, *, dropout, reference_compat):
  z_xy, z_xc = _project(p, x, dropout, key)
  ys, cs = y_soft.astype(_F32), c_soft.astype(_F32)
  u_hat = _unit(ys @ p.y_emb.astype(_F32))  # [B, h]
  emb = p.c_emb.astype(_F32)
  v = jnp.einsum("bks,ksh->bkh", cs, emb)  # [B, K, h]
  e_cls = _g(z_xy, u_hat, p.w_cls.astype(_F32), p.b_cls.astype(_F32))
  e_con = _g(z_xc[:, None, :], _unit(v), p.w_con.astype(_F32), p.b_con.astype(_F32))
  if reference_compat:
    v = jnp.where(cs[..., 1:2] > 0.5, emb[None, :, 1], emb[None, :, 0])
  e_glob = _glob(p, v, u_hat)
  return ECBMEnergies(e_cls, e_con, e_glob)


def _flip(key, c, frac_samples, frac_concepts):
  """The reference's augmentation: ``ceil(B f_s)`` random examples get the same
  ``ceil(K f_c)`` random concepts flipped."""
  b, k = c.shape
  n_s, n_c = math.ceil(b * frac_samples), math.ceil(k * frac_concepts)
  if n_s == 0 or n_c == 0:
    return c
  k1, k2 = jax.random.split(key)
  rows = _like_rows(jax.random.permutation(k1, b) < n_s, c)
  cols = jax.random.permutation(k2, k) < n_c
  return jnp.where(rows[:, None] & cols[None, :], 1 - c, c)


def ecbm_train_energies(params: ECBMParams, x: Float[Array, "b d"], c_true: Float[Array, "b k"],
                        *, dropout: float = 0.0, key=None) -> ECBMEnergies:
  """The energies of every label: ``cls[B, M]``, ``con[B, K, 2]`` and ``glob[B, M]`` (the
  global energy of the given concept vector ``c_true`` with each class).

  Args:
    params: :class:`ECBMParams`.
    x: inputs ``[B, D]``.
    c_true: 0/1 concepts ``[B, K]`` for the global energy.
    dropout: dropout rate on both projections (needs ``key``).
    key: PRNG key for dropout.

  Returns:
    :class:`ECBMEnergies`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.concepts import ecbm_init, ecbm_train_energies
    >>> p = ecbm_init(jax.random.key(0), d_in=5, n_concepts=3, n_classes=2, hidden=4)
    >>> e = ecbm_train_energies(p, jnp.ones((1, 5)), jnp.array([[1, 0, 1]]))
    >>> e.cls.shape, e.con.shape, e.glob.shape
    ((1, 2), (1, 3, 2), (1, 2))
  """
  fn = "ecbm_train_energies"
  d, h, m, k = _check_params(fn, params)
  _check_x(fn, x, d)
  _labels01(fn, "c_true", c_true)
  V.check_shape(fn, "c_true", c_true, (x.shape[0], k))
  key = _check_dropout(fn, dropout, key)
  return _train_energies(_f32(params), _f32(x), jnp.asarray(c_true).astype(_F32) >= 0.5,
                         dropout=_num(dropout), key=key)


@functools.partial(jax.jit, static_argnames=("dropout",))
def _train_energies(p, x, c_on, dropout, key):
  z_xy, z_xc = _project(p, x, dropout, key)
  u_hat = _unit(p.y_emb.astype(_F32))  # [M, h]
  emb = p.c_emb.astype(_F32)
  e_cls = _g(z_xy[:, None, :], u_hat[None], p.w_cls.astype(_F32), p.b_cls.astype(_F32))
  e_con = _g(z_xc[:, None, None, :], _unit(emb)[None], p.w_con.astype(_F32)[None, :, None],
             p.b_con.astype(_F32)[None, :, None])
  v = jnp.where(c_on[..., None], emb[None, :, 1], emb[None, :, 0])
  g = jnp.einsum("bkh,khj->bj", v, p.w_proj.astype(_F32)) + p.b_proj.astype(_F32)
  e_glob = _g(g[:, None, :], u_hat[None], p.w_glob.astype(_F32), p.b_glob.astype(_F32))
  return ECBMEnergies(e_cls, e_con, e_glob)


def boltzmann_nll(energies: Float[Array, "*batch n"], target: Int[Array, "*batch"]
                  ) -> Float[Array, ""]:
  """Mean negative log-likelihood of ``target`` under ``p(i) ∝ exp(-E_i)``.

  .. math::
    \\mathrm{NLL} = \\operatorname{mean}\\left(E_\\text{target}
      + \\log \\textstyle\\sum_i e^{-E_i}\\right)

  (a cross-entropy on ``-E``; the reference's ``EBMLoss_label`` / ``EBMLoss_concept`` terms).

  Args:
    energies: ``[*batch, n]`` energies of the ``n`` labels.
    target: ``int[*batch]`` in ``0..n-1``.

  Returns:
    The mean over ``*batch`` (float32 scalar).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import boltzmann_nll
    >>> round(float(boltzmann_nll(jnp.zeros((2, 4)), jnp.array([0, 3]))), 4)  # log 4
    1.3863
  """
  fn = "boltzmann_nll"
  _float(fn, "energies", energies, min_rank=1)
  _check_nonempty(fn, "energies", energies, -1, "labels")
  V.check_integer(fn, "target", target)
  V.check_shape(fn, "target", target, energies.shape[:-1])
  if math.prod(energies.shape[:-1]) < 1:
    raise ValueError(f"{fn}: energies must hold at least one example, got "
                     f"{V.describe(energies)}")
  e = energies.astype(_F32)
  pos = jnp.take_along_axis(e, jnp.asarray(target)[..., None].astype(jnp.int32), axis=-1)[..., 0]
  return jnp.mean(pos + jax.nn.logsumexp(-e, axis=-1))


class ECBMLoss(NamedTuple):
  """:func:`ecbm_loss`'s result: the scalar ``loss`` and ``aux`` (``cls_nll``, ``con_nll``
  (sum over concepts), ``glob_nll``, ``class_accuracy`` and ``concept_accuracy`` of the
  lowest-energy labels)."""

  loss: Array
  aux: dict


def ecbm_loss(params: ECBMParams, x: Float[Array, "b d"], c_true: Float[Array, "b k"],
              y: Int[Array, "b"], *, key, lam: Sequence[float] = (3.0, 1.0, 1.0),
              flip: Sequence[float] = (0.2, 0.2), dropout: float = 0.2) -> ECBMLoss:
  """The ECBM training loss.

  .. math::
    L = \\lambda_\\text{cls} \\mathrm{NLL}(E_\\text{cls}, y)
      + \\lambda_\\text{con} \\textstyle\\sum_k \\mathrm{NLL}(E_{\\text{con},k}, c_k)
      + \\lambda_\\text{glob} \\mathrm{NLL}(E_\\text{glob}(\\tilde c, \\cdot), y)

  with :func:`boltzmann_nll` (batch means) and ``c~`` the concepts after the flip augmentation.

  Args:
    params: :class:`ECBMParams`.
    x: inputs ``[B, D]``.
    c_true: 0/1 concepts ``[B, K]``.
    y: classes ``int[B]``.
    key: PRNG key (dropout and augmentation).
    lam: weights ``(class, concept, global)``.
    flip: ``(fraction of examples, fraction of concepts)`` of the augmentation: in
      ``ceil(B f_0)`` random examples the same ``ceil(K f_1)`` random concepts are flipped for
      the global term; ``(0, 0)`` turns it off.
    dropout: dropout rate on the projections.

  Returns:
    :class:`ECBMLoss`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.concepts import ecbm_init, ecbm_loss
    >>> p = ecbm_init(jax.random.key(0), d_in=5, n_concepts=3, n_classes=2, hidden=4)
    >>> out = ecbm_loss(p, jnp.ones((4, 5)), jnp.ones((4, 3)), jnp.zeros(4, int),
    ...                 key=jax.random.key(1))
    >>> out.loss.shape
    ()
  """
  fn = "ecbm_loss"
  d, h, m, k = _check_params(fn, params)
  _check_x(fn, x, d)
  b = x.shape[0]
  _labels01(fn, "c_true", c_true)
  V.check_shape(fn, "c_true", c_true, (b, k))
  V.check_integer(fn, "y", y)
  V.check_shape(fn, "y", y, (b,))
  lam = _check_lam(fn, lam)
  if not (isinstance(flip, (tuple, list)) and len(flip) == 2):
    raise TypeError(f"{fn}: flip must be a pair (fraction of examples, fraction of concepts), "
                    f"got {flip!r}")
  for v in flip:
    V.check_scalar(fn, "flip", v, low=0, high=1, static=True)
  V.check_scalar(fn, "dropout", dropout, low=0, high=1, high_inclusive=False, static=True)
  key = as_key(key, fn=fn)
  return _loss(_f32(params), _f32(x), jnp.asarray(c_true).astype(_F32),
               jnp.asarray(y).astype(jnp.int32), key, jnp.asarray(lam, _F32),
               flip=(float(flip[0]), float(flip[1])), dropout=_num(dropout))


@functools.partial(jax.jit, static_argnames=("flip", "dropout"))
def _loss(params, x, c_true, y, key, lam, *, flip, dropout):
  k_drop, k_flip = jax.random.split(key)
  c = (jnp.asarray(c_true).astype(_F32) >= 0.5).astype(jnp.int32)
  y = jnp.asarray(y).astype(jnp.int32)
  c_aug = _flip(k_flip, c, flip[0], flip[1])
  e = _train_energies(params, x, c_aug > 0, dropout=dropout, key=k_drop)
  # the class and concept energies do not depend on c; only the global one sees the flips
  cls_nll = boltzmann_nll(e.cls, y)
  con_nll = jnp.sum(jax.vmap(boltzmann_nll, in_axes=(1, 1))(e.con, c))
  glob_nll = boltzmann_nll(e.glob, y)
  loss = lam[0] * cls_nll + lam[1] * con_nll + lam[2] * glob_nll
  aux = {"cls_nll": cls_nll, "con_nll": con_nll, "glob_nll": glob_nll,
         "class_accuracy": jnp.mean((jnp.argmin(e.cls, -1) == y).astype(_F32)),
         "concept_accuracy": jnp.mean((jnp.argmin(e.con, -1) == c).astype(_F32))}
  return ECBMLoss(loss, aux)


class ECBMInference(NamedTuple):
  """:func:`ecbm_infer`'s result.

  Attributes:
    y_prob: ``softmax(y_logit)``, ``[B, M]``.
    c_prob: probability that each concept is present, ``[B, K]``.
    y_logit: the optimised class logits ``[B, M]``.
    c_logit: the optimised concept logits ``[B, K, 2]``.
    steps: optimisation steps taken per example ``int32[B]``.
    objective: the relaxed objective before each step, ``[steps, B]`` (constant once an example
      has stopped).
  """

  y_prob: Array
  c_prob: Array
  y_logit: Array
  c_logit: Array
  steps: Array
  objective: Array


def _check_infer_opts(fn, lam, steps, lr, patience, min_delta):
  lam = _check_lam(fn, lam)
  V.check_scalar(fn, "steps", steps, low=1, integer=True, static=True)
  V.check_scalar(fn, "lr", lr, low=0, low_inclusive=False)
  if patience is not None:
    V.check_scalar(fn, "patience", patience, low=1, integer=True, static=True)
  V.check_scalar(fn, "min_delta", min_delta, low=0)
  return lam


@functools.partial(jax.jit, static_argnames=("steps", "reference_compat"))
def _infer(p, x, y0, c0, fixed, fixed_logit, hold, lam, lr, patience, min_delta, *, steps,
           reference_compat):
  """Adam on ``(y_logit, c_logit)`` with per-example early stopping. Every option but
  ``steps`` and ``reference_compat`` is traced, so one compilation serves inference and
  interventions alike. Adam as PyTorch's (betas 0.9 / 0.999, epsilon 1e-8), written out."""
  b1, b2, eps = 0.9, 0.999, 1e-8

  # every per-example array laid out as the rows of x (Explicit meshes need equal shardings)
  y0, c0, fixed, fixed_logit = (_like_rows(a, x) for a in (y0, c0, fixed, fixed_logit))

  def pin(c):
    return jnp.where(fixed[..., None], fixed_logit, c)

  def objective(v):
    y_logit, c_logit = v
    e = ecbm_energies(p, x, jax.nn.softmax(y_logit, -1), jax.nn.softmax(c_logit, -1),
                      reference_compat=reference_compat)
    obj = lam[0] * e.cls + lam[1] * jnp.sum(e.con, -1) + lam[2] * e.glob
    return jnp.sum(obj), (obj, e.cls)

  v0 = (y0, pin(c0))
  b = x.shape[0]
  zeros = jax.tree.map(jnp.zeros_like, v0)
  init = (v0, (zeros, zeros, jnp.zeros((), _F32)),
          *(_like_rows(a, x) for a in (jnp.full((b,), jnp.inf, _F32), jnp.zeros((b,), jnp.int32),
                                       jnp.ones((b,), bool), jnp.zeros((b,), jnp.int32))))
  held = fixed & hold

  def step(carry, _):
    v, opt, best, count, active, n = carry
    (_, (obj, e_cls)), g = jax.value_and_grad(objective, has_aux=True)(v)
    g = (g[0], jnp.where(held[..., None], 0.0, g[1]))
    mu, nu, t = opt
    t = t + 1.0
    mu = jax.tree.map(lambda a, b: b1 * a + (1 - b1) * b, mu, g)
    nu = jax.tree.map(lambda a, b: b2 * a + (1 - b2) * b * b, nu, g)
    upd = jax.tree.map(
        lambda a, b: -lr * (a / (1 - b1 ** t)) / (jnp.sqrt(b / (1 - b2 ** t)) + eps), mu, nu)
    opt = (mu, nu, t)
    a = active.astype(_F32)
    c_new = v[1] + a[:, None, None] * upd[1]
    new = (v[0] + a[:, None] * upd[0], jnp.where(held[..., None], fixed_logit, c_new))
    improved = e_cls < best - min_delta
    best = jnp.where(active & improved, e_cls, best)
    count = jnp.where(active, jnp.where(improved, 0, count + 1), count)
    n = n + active.astype(jnp.int32)
    active = active & (count < patience)
    return (new, opt, best, count, active, n), obj

  (v, _, _, _, _, n), trace = jax.lax.scan(step, init, None, length=steps)
  y_logit, c_logit = v
  return ECBMInference(jax.nn.softmax(y_logit, -1), jax.nn.softmax(c_logit, -1)[..., 1],
                       y_logit, c_logit, n, trace)


def ecbm_infer(params: ECBMParams, x: Float[Array, "b d"], *,
               lam: Sequence[float] = (1.0, 1.0, 0.01), steps: int = 50, lr: float = 0.1,
               patience: int | None = 10, min_delta: float = 1.0,
               c_fixed_mask: Float[Array, "b k"] | None = None,
               c_fixed_val: Float[Array, "b k"] | None = None,
               y_init: Float[Array, "b m"] | None = None,
               c_init: Float[Array, "b k 2"] | None = None,
               reference_compat: bool = False) -> ECBMInference:
  """Gradient inference: the relaxed labels of lowest total energy.

  Minimises, per example, ``lam_cls E_cls + lam_con sum_k E_con,k + lam_glob E_glob`` over
  free logits ``y_logit[M]`` and ``c_logit[K, 2]`` (zeros unless ``y_init`` / ``c_init``) with
  Adam(``lr``) for at most ``steps`` steps. Early stopping as the reference: an example stops
  after ``patience`` consecutive steps in which its class energy did not fall more than
  ``min_delta`` below its best (``patience=None``: run all steps). Concepts in
  ``c_fixed_mask`` are held at logits ``(onehot(c_fixed_val) - 0.5) 10``.

  Args:
    params: :class:`ECBMParams`.
    x: inputs ``[B, D]``.
    lam: weights ``(class, concept, global)``.
    steps: maximum number of Adam steps (static).
    lr: Adam's learning rate.
    patience: early-stopping patience, or ``None``.
    min_delta: the class-energy drop that counts as an improvement.
    c_fixed_mask: optional 0/1 ``[B, K]``, the concepts given (intervened on).
    c_fixed_val: their 0/1 values ``[B, K]`` (required with ``c_fixed_mask``).
    y_init, c_init: optional initial logits ``[B, M]`` and ``[B, K, 2]``.
    reference_compat: the reference's hard global energy (see :func:`ecbm_energies`) and
      trainable given concepts.

  Returns:
    :class:`ECBMInference`.

  Example (not run as a doctest: it compiles the optimisation loop)::

    p = ecbm_init(jax.random.key(0), d_in=5, n_concepts=3, n_classes=2, hidden=4)
    r = ecbm_infer(p, jnp.ones((1, 5)), steps=5)
    r.y_prob.shape, r.c_prob.shape, r.objective.shape   # ((1, 2), (1, 3), (5, 1))
  """
  fn = "ecbm_infer"
  d, h, m, k = _check_params(fn, params)
  _check_x(fn, x, d)
  b = x.shape[0]
  lam = _check_infer_opts(fn, lam, steps, lr, patience, min_delta)
  if (c_fixed_mask is None) != (c_fixed_val is None):
    raise ValueError(f"{fn}: c_fixed_mask and c_fixed_val must be given together, got "
                     f"c_fixed_mask={'set' if c_fixed_mask is not None else None}, "
                     f"c_fixed_val={'set' if c_fixed_val is not None else None}")
  fixed = jnp.zeros((b, k), bool)
  fixed_logit = jnp.zeros((b, k, 2), _F32)
  if c_fixed_mask is not None:
    for arg, a in (("c_fixed_mask", c_fixed_mask), ("c_fixed_val", c_fixed_val)):
      _labels01(fn, arg, a)
      V.check_shape(fn, arg, a, (b, k))
    fixed = jnp.asarray(c_fixed_mask).astype(_F32) >= 0.5
    on = jnp.asarray(c_fixed_val).astype(_F32) >= 0.5
    fixed_logit = (jax.nn.one_hot(on.astype(jnp.int32), 2, dtype=_F32) - 0.5) * (
        2 * _INTERVENE_LOGIT)
  if y_init is None:
    y0 = jnp.zeros((b, m), _F32)
  else:
    _float(fn, "y_init", y_init)
    V.check_shape(fn, "y_init", y_init, (b, m))
    y0 = y_init.astype(_F32)
  if c_init is None:
    c0 = jnp.zeros((b, k, 2), _F32)
  else:
    _float(fn, "c_init", c_init)
    V.check_shape(fn, "c_init", c_init, (b, k, 2))
    c0 = c_init.astype(_F32)
  # no patience: a count that never reaches it
  pat = steps + 1 if patience is None else int(patience)
  return _infer(_f32(params), _f32(x), y0, c0, fixed, fixed_logit,
                jnp.asarray(not reference_compat),
                jnp.asarray(lam, _F32), jnp.asarray(lr, _F32), jnp.asarray(pat, jnp.int32),
                jnp.asarray(min_delta, _F32), steps=int(steps),
                reference_compat=bool(reference_compat))


def ecbm_intervene(params: ECBMParams, x: Float[Array, "b d"], c_true: Float[Array, "b k"],
                   mask: Float[Array, "b k"], *, c_init: Float[Array, "b k 2"] | None = None,
                   lam: Sequence[float] = (0.0, 0.0, 3.0), steps: int = 50, lr: float = 0.1,
                   patience: int | None = 10, min_delta: float = 1.0,
                   reference_compat: bool = False) -> ECBMInference:
  """Concept intervention: fix the given concepts, reset the class, re-optimise.

  The reference's second inference stage: the concept logits start from a first inference
  (``c_init``, e.g. ``ecbm_infer(params, x).c_logit``; run here with the default weights when
  ``None``), the concepts in ``mask`` are set to ``c_true`` (logits ``+-5``), the class logits
  restart at zero and :func:`ecbm_infer` minimises the global energy alone (weights
  ``(0, 0, 3)``). Unknown concepts move with the class through the soft global energy.

  Args:
    params: :class:`ECBMParams`.
    x: inputs ``[B, D]``.
    c_true: 0/1 true concepts ``[B, K]``.
    mask: 0/1 ``[B, K]``, the concepts given.
    c_init: concept logits ``[B, K, 2]`` of the first inference, or ``None``.
    lam, steps, lr, patience, min_delta, reference_compat: as :func:`ecbm_infer`.

  Returns:
    :class:`ECBMInference` after the intervention.

  Example (not run as a doctest: it compiles the optimisation loop)::

    first = ecbm_infer(p, x)
    r = ecbm_intervene(p, x, c_true, mask, c_init=first.c_logit)
    r.c_prob   # c_true where mask is 1 (to within 5e-5)
  """
  fn = "ecbm_intervene"
  d, h, m, k = _check_params(fn, params)
  _check_x(fn, x, d)
  b = x.shape[0]
  for arg, a in (("c_true", c_true), ("mask", mask)):
    _labels01(fn, arg, a)
    if np.shape(a) != (b, k):
      raise ValueError(f"{fn}: {arg} must have shape [{b}, {k}] (one entry per concept of "
                       f"each example), got {list(np.shape(a))}")
  _check_infer_opts(fn, lam, steps, lr, patience, min_delta)
  if c_init is None:
    c_init = ecbm_infer(params, x, reference_compat=reference_compat).c_logit
  return ecbm_infer(params, x, lam=lam, steps=steps, lr=lr, patience=patience,
                    min_delta=min_delta, c_fixed_mask=mask, c_fixed_val=c_true, c_init=c_init,
                    reference_compat=reference_compat)


class ECBMConditionals(NamedTuple):
  """:func:`ecbm_conditionals`' result: ``p_y_given_x[B, M]``, ``p_c_given_x[B, K]``
  (probability of each concept being present) and ``p_y_given_c[B, M]``."""

  p_y_given_x: Array
  p_c_given_x: Array
  p_y_given_c: Array


def ecbm_conditionals(params: ECBMParams, x: Float[Array, "b d"], c: Float[Array, "b k"]
                      ) -> ECBMConditionals:
  """The Boltzmann distributions of the three energies.

  .. math::
    p(y = m \\mid x) \\propto e^{-E_\\text{cls}(x, m)},\\quad
    p(c_k = s \\mid x) \\propto e^{-E_{\\text{con}}(x, c_k = s)},\\quad
    p(y = m \\mid c) \\propto e^{-E_\\text{glob}(c, m)}

  Args:
    params: :class:`ECBMParams`.
    x: inputs ``[B, D]``.
    c: 0/1 concept vectors ``[B, K]`` for ``p(y | c)`` (given, or predicted).

  Returns:
    :class:`ECBMConditionals`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.concepts import ecbm_conditionals, ecbm_init
    >>> p = ecbm_init(jax.random.key(0), d_in=5, n_concepts=3, n_classes=2, hidden=4)
    >>> r = ecbm_conditionals(p, jnp.ones((1, 5)), jnp.array([[1, 0, 1]]))
    >>> round(float(r.p_y_given_c.sum()), 5)
    1.0
  """
  fn = "ecbm_conditionals"
  d, h, m, k = _check_params(fn, params)
  _check_x(fn, x, d)
  _labels01(fn, "c", c)
  V.check_shape(fn, "c", c, (x.shape[0], k))
  return _conditionals(_f32(params), _f32(x), jnp.asarray(c).astype(_F32) >= 0.5)


@jax.jit
def _conditionals(params, x, c_on):
  e = _train_energies(params, x, c_on, dropout=0.0, key=None)
  return ECBMConditionals(jax.nn.softmax(-e.cls, -1), jax.nn.softmax(-e.con, -1)[..., 1],
                          jax.nn.softmax(-e.glob, -1))


class ConceptImportance(NamedTuple):
  """:func:`concept_importance`'s result.

  Attributes:
    marginal: ``p(c_k = 1 | y = m)`` ``[M, K]`` (zeros for a class never predicted).
    joint_mode: the most frequent concept vector among the examples of each class ``[M, K]``.
    joint_prob: its frequency within the class ``p(c = mode | y = m)`` ``[M]``.
    class_count: examples per class ``int32[M]``.
  """

  marginal: Array
  joint_mode: Array
  joint_prob: Array
  class_count: Array


def concept_importance(y_pred: Int[Array, "n"], c_pred: Float[Array, "n k"], *, n_classes: int
                       ) -> ConceptImportance:
  """Counting estimates of class-wise concept importance (the reference's
  ``CalcImportanceScore``): the marginal ``p(c_k = 1 | y)`` and the joint mode of ``p(c | y)``.

  Ties of the mode go to the concept vector whose first occurrence comes first.

  Args:
    y_pred: predicted classes ``int[N]``.
    c_pred: predicted 0/1 concepts ``[N, K]``.
    n_classes: ``M``.

  Returns:
    :class:`ConceptImportance`.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.concepts import concept_importance
    >>> r = concept_importance(jnp.array([0, 0, 0, 1]),
    ...                        jnp.array([[1, 0], [1, 0], [0, 1], [1, 1]]), n_classes=2)
    >>> r.class_count.tolist(), r.joint_mode.tolist(), r.marginal[1].tolist()
    ([3, 1], [[1, 0], [1, 1]], [1.0, 1.0])
  """
  fn = "concept_importance"
  V.check_integer(fn, "y_pred", y_pred)
  V.check_rank(fn, "y_pred", y_pred, 1)
  _labels01(fn, "c_pred", c_pred)
  V.check_rank(fn, "c_pred", c_pred, 2)
  V.check_axis_size(fn, "c_pred", c_pred, 0, np.shape(y_pred)[0], "one row per example")
  _check_nonempty(fn, "c_pred", c_pred, 0, "examples")
  _check_nonempty(fn, "c_pred", c_pred, 1, "concepts")
  V.check_scalar(fn, "n_classes", n_classes, low=1, integer=True)
  return _importance(y_pred, c_pred, m=int(n_classes))


@functools.partial(jax.jit, static_argnames=("m",))
def _importance(y_pred, c_pred, *, m):
  y = jnp.asarray(y_pred).astype(jnp.int32)
  c = (jnp.asarray(c_pred).astype(_F32) >= 0.5).astype(jnp.int32)
  onehot = jax.nn.one_hot(y, m, dtype=_F32)  # [N, M]; out-of-range classes count nowhere
  count = jnp.sum(onehot, 0)
  marginal = (onehot.T @ c.astype(_F32)) / jnp.maximum(count, 1.0)[:, None]
  same = jnp.all(c[:, None, :] == c[None, :, :], -1) & (y[:, None] == y[None, :])
  freq = jnp.sum(same, 1)  # examples of my class with my concept vector
  score = jnp.where(onehot.T > 0, freq[None, :].astype(_F32), -1.0)  # [M, N]
  best = jnp.argmax(score, -1)
  has = count > 0
  mode = jnp.where(has[:, None], c[best], 0)
  prob = jnp.where(has, freq[best].astype(_F32) / jnp.maximum(count, 1.0), 0.0)
  return ConceptImportance(marginal, mode, prob.astype(_F32), count.astype(jnp.int32))


class ECBMHead(nnx.Module):
  """The three energy networks as an NNX module on input features (e.g. a backbone's output).

  Thin: :meth:`params` collects the :class:`ECBMParams`; :meth:`loss`, :meth:`infer`,
  :meth:`intervene` and :meth:`conditionals` call the pure functions.

  Args:
    d_in: input features ``D``.
    n_concepts: ``K``.
    n_classes: ``M``.
    hidden: ``h`` (512 in the reference).
    dropout: dropout rate of the projections in :meth:`loss` (0.2 in the reference).
    rngs: ``nnx.Rngs``.

  Example::

    head = ECBMHead(64, n_concepts=6, n_classes=4, hidden=64, rngs=nnx.Rngs(0))
    loss = head.loss(features, c, y, key=key).loss       # training
    pred = head.infer(features)                           # gradient inference
    fixed = head.intervene(features, c, mask, c_init=pred.c_logit)
  """

  def __init__(self, d_in: int, n_concepts: int, n_classes: int, *, hidden: int = 512,
               dropout: float = 0.2, rngs: nnx.Rngs):
    V.check_scalar("ECBMHead", "dropout", dropout, low=0, high=1, high_inclusive=False)
    p = ecbm_init(rngs.params(), d_in=d_in, n_concepts=n_concepts, n_classes=n_classes,
                  hidden=hidden)
    for name, v in p._asdict().items():
      setattr(self, name, nnx.Param(v))
    self.dropout = float(dropout)

  def params(self) -> ECBMParams:
    """The current :class:`ECBMParams`."""
    return ECBMParams(*(getattr(self, f)[...] for f in ECBMParams._fields))

  def __call__(self, x, c) -> ECBMEnergies:
    """Every label's energies (:func:`ecbm_train_energies`, no dropout)."""
    return ecbm_train_energies(self.params(), x, c)

  def loss(self, x, c_true, y, *, key, **kw) -> ECBMLoss:
    """:func:`ecbm_loss` with this module's dropout."""
    return ecbm_loss(self.params(), x, c_true, y, key=key, **{"dropout": self.dropout, **kw})

  def infer(self, x, **kw) -> ECBMInference:
    """:func:`ecbm_infer`."""
    return ecbm_infer(self.params(), x, **kw)

  def intervene(self, x, c_true, mask, **kw) -> ECBMInference:
    """:func:`ecbm_intervene`."""
    return ecbm_intervene(self.params(), x, c_true, mask, **kw)

  def conditionals(self, x, c) -> ECBMConditionals:
    """:func:`ecbm_conditionals`."""
    return ecbm_conditionals(self.params(), x, c)
