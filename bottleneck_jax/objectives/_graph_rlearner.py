"""The R-learner for network causal inference, with a graph-aware final stage.

Paper: "The Final-Stage Bottleneck: A Systematic Dissection of the R-Learner for Network Causal
Inference", Sairam et al., 2025 (code S-Sairam/final-stage-bottleneck).

Idea. The R-learner (Nie & Wager, 2021) estimates a conditional average treatment effect
``τ(x)`` in two stages: cross-fitted nuisances ``m̂(x) = E[Y | X]`` and ``ê(x) = P(T = 1 | X)``,
residuals ``Ỹ = Y − m̂``, ``T̃ = T − ê``, then the final stage

.. math::
  \\hat\\tau = \\arg\\min_\\tau \\frac{1}{n}\\sum_i
    \\big(\\tilde Y_i - \\tau(X_i, G)\\,\\tilde T_i\\big)^2
  \\ (+\\ \\text{regulariser}).

On networks, where a unit's outcome and treatment depend on its neighbours, the paper finds that
the inductive bias of the *final stage* dominates: a graph-blind final stage fails (MSE > 4) even
with GNN nuisances, while a GCN final stage (the "Graph R-Learner") succeeds.

Implemented here: :func:`r_loss` (the final-stage objective, optional sample weights),
:func:`cross_fit` (K-fold cross-fitting of any nuisance on the host), :func:`linear_final_stage`
(closed-form ridge final stage with the design ``[T̃, φ(X)·T̃]``) and :func:`linear_cate`,
:func:`gcn_norm` (``D^{-1/2}(A + I)D^{-1/2}``), and the NNX modules :class:`GCNLayer` and
:class:`GraphCATE` (2-layer GCN, hidden 32, one effect per node) to train on :func:`r_loss`.

A finding about the reference code, and the departure it motivates: the reference's graph-blind
final stage fits ``Ridge(alpha=0.1)`` on the features ``X·T̃`` with a free intercept and predicts
``τ̂ = intercept + Xβ``. With no ``T̃`` column the constant part of ``τ`` cannot be represented
(the intercept absorbs ``mean(Ỹ)`` instead), so its error floor is about ``E[τ²]`` (≈ 4 in the
paper's data, where ``τ = 2 + 1.5 sin(·)``) — part of the reported failure is this design, not
only missing graph information. :func:`linear_final_stage` builds ``[T̃, φ·T̃]`` without a free
intercept (as EconML's ``LinearDML(fit_cate_intercept=True)`` does); the ridge penalty applies to
the ``φ`` coefficients only, not to the constant effect.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.rng import as_key


def _check_vec(fn: str, arg: str, x, n: int | None = None) -> None:
  V.check_rank(fn, arg, x, 1)
  V.check_floating(fn, arg, x)
  if n is not None and x.shape[0] != n:
    raise ValueError(f"{fn}: {arg} must have {n} entries (one per unit), got {V.describe(x)}")


def r_loss(tau: Float[Array, " n"], y_res: Float[Array, " n"], t_res: Float[Array, " n"],
           w: Float[Array, " n"] | None = None) -> Float[Array, ""]:
  """The R-learner's final-stage loss ``Σ_i w_i (Ỹ_i − τ_i T̃_i)² / Σ_i w_i``.

  Args:
    tau: ``[N]`` the effects ``τ(X_i, G)`` being fitted.
    y_res: ``[N]`` outcome residuals ``Y − m̂``.
    t_res: ``[N]`` treatment residuals ``T − ê``.
    w: optional ``[N]`` sample weights (``None``: all ones). A zero total weight gives 0.

  Returns:
    A scalar.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import r_loss
    >>> r_loss(jnp.array([2.0, 2.0]), jnp.array([1.0, -1.0]), jnp.array([0.5, -0.5]))
    Array(0., dtype=float32)

  References:
    Nie & Wager, "Quasi-Oracle Estimation of Heterogeneous Treatment Effects", Biometrika 2021.
  """
  fn = "r_loss"
  _check_vec(fn, "tau", tau)
  n = tau.shape[0]
  _check_vec(fn, "y_res", y_res, n)
  _check_vec(fn, "t_res", t_res, n)
  for arg, x in (("y_res", y_res), ("t_res", t_res)):
    if jnp.dtype(x.dtype) != jnp.dtype(tau.dtype):
      raise TypeError(f"{fn}: {arg} must have the dtype of tau ({jnp.dtype(tau.dtype).name}), "
                      f"got {V.describe(x)}")
  sq = jnp.square(y_res - tau * t_res)
  if w is None:
    return jnp.mean(sq) if n else jnp.zeros((), tau.dtype)
  _check_vec(fn, "w", w, n)
  w = w.astype(tau.dtype)
  den = jnp.sum(w)
  return jnp.where(den != 0, jnp.sum(w * sq) / jnp.where(den != 0, den, 1), 0.0).astype(
      tau.dtype)


def cross_fit(fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
              target: Float[Array, " n"] | np.ndarray, *, key, n_folds: int = 2
              ) -> Float[Array, " n"]:
  """K-fold cross-fitted nuisance predictions (host loop).

  The units are split at random into ``n_folds`` folds; for each fold ``k``,
  ``fit_predict(train_mask, target)`` fits on the units outside fold ``k`` (``train_mask`` is
  ``bool [N]``) and returns predictions ``[N]`` for all units, of which those in fold ``k`` are
  kept. So every unit's prediction comes from a model that never saw it — transductive graph
  models (a GCN over the whole graph, trained on masked nodes) fit this interface directly.

  Args:
    fit_predict: ``fit_predict(train_mask, target) -> predictions [N]``.
    target: ``[N]`` the nuisance's regression target (``Y`` or ``T``).
    key: a ``jax.random.key`` (or int seed) for the fold assignment.
    n_folds: ``K >= 2`` (2 in the reference).

  Returns:
    float32 ``[N]``.

  Example:
    >>> import numpy as np
    >>> from bottleneck_jax.objectives import cross_fit
    >>> y = np.arange(6.0)
    >>> mean_of_train = lambda mask, t: np.full(len(t), t[mask].mean())
    >>> cross_fit(mean_of_train, y, key=0).shape
    (6,)

  References:
    Chernozhukov et al., "Double/debiased machine learning", Econometrics Journal 2018;
    S-Sairam/final-stage-bottleneck ``get_nuisance_predictions`` (KFold 2).
  """
  fn = "cross_fit"
  if not callable(fit_predict):
    raise TypeError(f"{fn}: fit_predict must be callable fit_predict(train_mask, target), got "
                    f"{type(fit_predict).__name__}")
  V.check_rank(fn, "target", target, 1)
  dt = jnp.result_type(target)
  if not (jnp.issubdtype(dt, jnp.floating) or jnp.issubdtype(dt, jnp.integer)):
    raise TypeError(f"{fn}: target must be real (floating or integer), got {V.describe(target)}")
  V.check_scalar(fn, "n_folds", n_folds, low=2, integer=True, static=True)
  n = int(np.shape(target)[0])
  if n < n_folds:
    raise ValueError(f"{fn}: target must have at least n_folds ({n_folds}) units, got {n}")
  key = as_key(key, fn=fn)
  perm = np.asarray(jax.random.permutation(key, n))
  fold = np.empty(n, np.int64)
  fold[perm] = np.arange(n) % int(n_folds)
  tgt = np.asarray(target)
  out = np.zeros(n, np.float32)
  for k in range(int(n_folds)):
    held = fold == k
    pred = np.asarray(fit_predict(~held, tgt))
    if pred.shape != (n,):
      raise ValueError(f"{fn}: fit_predict must return predictions for all {n} units, got shape "
                       f"{pred.shape}")
    out[held] = pred[held]
  return jnp.asarray(out)


def linear_final_stage(phi: Float[Array, "n p"], y_res: Float[Array, " n"],
                       t_res: Float[Array, " n"], *, ridge: float = 0.1) -> Float[Array, " p1"]:
  """Closed-form linear final stage of the R-learner, ``τ(x) = β_0 + φ(x)·β_{1:}``.

  Minimises ``Σ_i (Ỹ_i − T̃_i β_0 − T̃_i φ_i·β_{1:})² + ridge·‖β_{1:}‖²`` — the design
  ``[T̃, φ·T̃]`` with no free intercept, so the constant effect ``β_0`` is estimated (and not
  penalised).

  Args:
    phi: ``[N, P]`` effect features (``X``, or graph features such as ``[X, ÂX]``).
    y_res: ``[N]`` outcome residuals.
    t_res: ``[N]`` treatment residuals.
    ridge: the penalty ``>= 0`` on ``β_{1:}``.

  Returns:
    ``[P + 1]`` coefficients ``(β_0, β_1, …, β_P)``; :func:`linear_cate` evaluates them.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from bottleneck_jax.objectives import linear_final_stage
    >>> x = jax.random.normal(jax.random.key(0), (500, 1))
    >>> t = jax.random.normal(jax.random.key(1), (500,))
    >>> beta = linear_final_stage(x, (1.0 + 2.0 * x[:, 0]) * t, t, ridge=0.0)
    >>> [round(float(b), 3) for b in beta]
    [1.0, 2.0]

  References:
    Nie & Wager 2021; py-why/EconML ``LinearDML(fit_cate_intercept=True)``.
  """
  fn = "linear_final_stage"
  V.check_rank(fn, "phi", phi, 2)
  V.check_floating(fn, "phi", phi)
  n = phi.shape[0]
  _check_vec(fn, "y_res", y_res, n)
  _check_vec(fn, "t_res", t_res, n)
  V.check_scalar(fn, "ridge", ridge, low=0.0, static=True)
  dt = jnp.float64 if jnp.dtype(phi.dtype) == jnp.float64 else jnp.float32  # solve in >= f32
  t = t_res.astype(dt)
  design = jnp.concatenate([t[:, None], phi.astype(dt) * t[:, None]], axis=1)
  pen = jnp.diag(jnp.concatenate([jnp.zeros((1,), dt),
                                  jnp.full((phi.shape[1],), float(ridge), dt)]))
  gram = design.T @ design + pen
  return jnp.linalg.solve(gram, design.T @ y_res.astype(dt))


def linear_cate(phi: Float[Array, "n p"], beta: Float[Array, " p1"]) -> Float[Array, " n"]:
  """The effects ``τ̂ = β_0 + φ·β_{1:}`` of :func:`linear_final_stage` coefficients.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import linear_cate
    >>> linear_cate(jnp.array([[0.0], [1.0]]), jnp.array([1.0, 2.0]))
    Array([1., 3.], dtype=float32)
  """
  fn = "linear_cate"
  V.check_rank(fn, "phi", phi, 2)
  V.check_floating(fn, "phi", phi)
  _check_vec(fn, "beta", beta, phi.shape[1] + 1)
  beta = beta.astype(phi.dtype)
  return beta[0] + phi @ beta[1:]


def gcn_norm(adj: Float[Array, "n n"]) -> Float[Array, "n n"]:
  """The GCN propagation matrix ``D^{-1/2} (A + I) D^{-1/2}`` (Kipf & Welling), ``D`` the degrees
  of ``A + I``.

  Args:
    adj: ``[N, N]`` symmetric non-negative adjacency (weights allowed), no self loops needed.

  Returns:
    ``[N, N]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import gcn_norm
    >>> gcn_norm(jnp.array([[0.0, 1.0], [1.0, 0.0]])).round(4)
    Array([[0.5, 0.5],
           [0.5, 0.5]], dtype=float32)

  References:
    Kipf & Welling, "Semi-Supervised Classification with Graph Convolutional Networks", ICLR
    2017.
  """
  fn = "gcn_norm"
  V.check_rank(fn, "adj", adj, 2)
  V.check_floating(fn, "adj", adj)
  if adj.shape[0] != adj.shape[1]:
    raise ValueError(f"{fn}: adj must be square [N, N], got {V.describe(adj)}")
  a = adj + jnp.eye(adj.shape[0], dtype=adj.dtype)
  d = jax.lax.rsqrt(jnp.maximum(jnp.sum(a, axis=1), jnp.asarray(1e-12, adj.dtype)))
  return d[:, None] * a * d[None, :]


class GCNLayer(nnx.Module):
  """One graph convolution ``Â H W + b`` (``Â`` from :func:`gcn_norm`).

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.objectives import GCNLayer, gcn_norm
    >>> layer = GCNLayer(3, 4, rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((5, 3)), gcn_norm(jnp.zeros((5, 5)))).shape
    (5, 4)
  """

  def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
    self.linear = nnx.Linear(int(in_features), int(out_features), rngs=rngs)

  def __call__(self, h, a_hat):
    return a_hat @ (h @ self.linear.kernel[...]) + self.linear.bias[...]


class GraphCATE(nnx.Module):
  """The Graph R-Learner's final stage: a 2-layer GCN giving one effect per node,
  ``τ(X, G) = Â relu(Â X W_1 + b_1) W_2 + b_2``; train it on :func:`r_loss`.

  Args:
    in_features: node feature size.
    hidden: hidden width (32 in the reference).
    rngs: ``nnx.Rngs``.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.objectives import GraphCATE, gcn_norm
    >>> m = GraphCATE(3, rngs=nnx.Rngs(0))
    >>> m(jnp.ones((5, 3)), gcn_norm(jnp.zeros((5, 5)))).shape
    (5,)
  """

  def __init__(self, in_features: int, hidden: int = 32, *, rngs: nnx.Rngs):
    self.conv1 = GCNLayer(in_features, hidden, rngs=rngs)
    self.conv2 = GCNLayer(hidden, 1, rngs=rngs)

  def __call__(self, x, a_hat):
    return self.conv2(jax.nn.relu(self.conv1(x, a_hat)), a_hat)[:, 0]


__all__ = ["GCNLayer", "GraphCATE", "cross_fit", "gcn_norm", "linear_cate",
           "linear_final_stage", "r_loss"]

