"""χ0 (kai0): model arithmetic, stage advantage and chunk-wise temporal smoothing.

Paper: "χ0: Resource-Aware Robust Manipulation via Taming Distributional Inconsistencies",
OpenDriveLab / HKU MMLab, 2026 (code: OpenDriveLab/kai0). A vision-language-action policy for
long-horizon garment manipulation that tames three inconsistencies between data and deployment
with three tools, implemented here as pure functions:

**Model Arithmetic** (``model_arithmetic/arithmetic.py``). ``N`` checkpoints fine-tuned on
different data subsets are merged in weight space, ``θ_mix = Σ_k w_k θ_k``, with weights chosen
on held-out data:

- ``average``: ``w_k = 1/N``;
- ``inverse_loss`` (:func:`inverse_loss_weights`): ``w_k ∝ (1 / (L_k + 1e-8))^2``;
- ``gradient_descent`` (:func:`optimize_mix_weights`): ``w = softmax(ℓ)`` and, with
  ``g_k = ⟨∇_θ L(θ_mix), θ_k⟩``, the logit gradient ``∂L/∂ℓ_k = w_k (g_k − Σ_j w_j g_j)``
  (:func:`simplex_grad`, the chain rule through the softmax), Adam on a cosine-decayed step
  (``alpha = 0.01``), keeping the weights of the best loss seen; the ``adaptive`` variant scales
  the gradient by ``(L / 0.05)^2``;
- ``greedy`` (:func:`greedy_soup`): the greedy soup — the best single checkpoint, then every
  further one (best first) whose addition to the uniform average lowers the loss.

**Stage advantage** (``stage_advantage/``): frames get a progress label from manual stage
boundaries, ``p = k/K + (1/K)·(t − b_k)/(b_{k+1} − b_k)`` (:func:`stage_progress`); the advantage of
frame ``n`` is ``clip(V(n + h) − V(n), −1, 1)`` with ``h = 50`` (:func:`stage_advantage`); the top
``30 %`` of advantages (overall or per stage) are labelled positive
(:func:`discretize_advantage`) and the policy is behaviour-cloned conditioned on that label (AWBC).

**Temporal chunk-wise smoothing** (``integrate_new_chunk``): when a new action chunk arrives
while the old one is executing, drop the first ``min(k_elapsed, max_k)`` new actions (they are
already in the past), pad the remaining old actions to ``min_m`` with the last one, cross-fade the
overlap with ``w_old = linspace(1, 0, L)`` and continue with the new tail
(:func:`chunk_crossfade`).

Departures. Merge weights are *not* normalised unless ``normalize=True`` (the repository always
passes simplex weights; users asked peer libraries for negative / unnormalised task weights).
:func:`optimize_mix_weights` averages the loss over a stack of held-out batches inside one
compiled scan instead of the repository's Python loop; it returns the loss trace too.
:func:`stage_advantage` clamps ``n + h`` to the last frame of the episode (the repository's
value model is queried on a clipped index; the exact end handling was not verified).
The value model itself (a π0.5 backbone) and the AWBC policy are out of scope.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V


class MixWeights(NamedTuple):
  """Result of :func:`optimize_mix_weights`: the best ``weights [N]`` (on the simplex), their
  ``loss``, and the loss of every step's weights ``losses [steps]``."""
  weights: Array
  loss: Array
  losses: Array


class CrossfadedChunk(NamedTuple):
  """Result of :func:`chunk_crossfade`: ``chunk [Ln, D]`` (valid up to ``length``, zeros after)
  and ``length = Ln − min(k_elapsed, max_k)``."""
  chunk: Array
  length: Array


def _num_models(fn: str, stack) -> int:
  leaves = jax.tree.leaves(stack)
  if not leaves:
    raise ValueError(f"{fn}: stack must be a pytree with at least one array leaf, got {stack!r}")
  sizes = set()
  for leaf in leaves:
    V.check_array(fn, "stack", leaf)
    if np.ndim(leaf) < 1:
      raise ValueError(f"{fn}: every leaf of stack must have a leading model axis, got "
                       f"{V.describe(leaf)}")
    if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
      raise TypeError(f"{fn}: stack leaves must be floating, got {V.describe(leaf)}")
    sizes.add(np.shape(leaf)[0])
  if len(sizes) != 1:
    raise ValueError(f"{fn}: every leaf of stack must have the same leading (model) size, got "
                     f"{sorted(sizes)}")
  n = sizes.pop()
  if n < 1:
    raise ValueError(f"{fn}: stack must hold at least one model, got leading size {n}")
  return n


def _check_weights(fn: str, w, n: int) -> None:
  V.check_rank(fn, "weights", w, 1)
  V.check_floating(fn, "weights", w)
  if w.shape[0] != n:
    raise ValueError(f"{fn}: weights must have one entry per model ({n}), got {V.describe(w)}")


def mix_params(stack: Any, weights: Float[Array, " n"], *, normalize: bool = False) -> Any:
  """Weight-space merge ``θ_mix = Σ_k w_k θ_k`` of ``N`` stacked checkpoints.

  Args:
    stack: a pytree whose leaves have a leading model axis ``[N, ...]`` (e.g.
      ``jax.tree.map(lambda *p: jnp.stack(p), *params_list)``), floating.
    weights: ``[N]`` merge weights (any real numbers; negative ones subtract a checkpoint).
    normalize: divide by ``Σ_k w_k`` first (so the weights sum to one).

  Returns:
    A pytree like one checkpoint (leaves without the model axis), in each leaf's dtype.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import mix_params
    >>> stack = {"w": jnp.array([[1.0, 0.0], [0.0, 2.0]])}
    >>> mix_params(stack, jnp.array([0.5, 0.5]))["w"]
    Array([0.5, 1. ], dtype=float32)

  References:
    OpenDriveLab/kai0 ``model_arithmetic/common.py``; Wortsman et al., "Model soups", ICML 2022.
  """
  fn = "mix_params"
  n = _num_models(fn, stack)
  _check_weights(fn, weights, n)
  if normalize:
    weights = weights / jnp.sum(weights)
  return jax.tree.map(
      lambda p: jnp.tensordot(weights.astype(p.dtype), jnp.asarray(p), axes=1), stack)


def inverse_loss_weights(losses: Float[Array, " n"], *, power: float = 2.0,
                         epsilon: float = 1e-8) -> Float[Array, " n"]:
  """Merge weights inversely proportional to each checkpoint's held-out loss.

  .. math::
    w_k = \\frac{(L_k + \\epsilon)^{-p}}{\\sum_j (L_j + \\epsilon)^{-p}}

  Args:
    losses: ``[N]`` held-out losses ``>= 0``.
    power: the exponent ``p > 0`` (2 in the repository).
    epsilon: added to each loss (``1e-8`` in the repository).

  Returns:
    ``[N]`` weights on the simplex.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import inverse_loss_weights
    >>> inverse_loss_weights(jnp.array([1.0, 2.0]))
    Array([0.8, 0.2], dtype=float32)

  References:
    OpenDriveLab/kai0 ``model_arithmetic/arithmetic.py`` (``inverse_loss``).
  """
  fn = "inverse_loss_weights"
  V.check_rank(fn, "losses", losses, 1)
  V.check_floating(fn, "losses", losses)
  if losses.shape[0] < 1:
    raise ValueError(f"{fn}: losses must hold at least one model, got {V.describe(losses)}")
  V.check_scalar(fn, "power", power, low=0.0, low_inclusive=False, static=True)
  V.check_scalar(fn, "epsilon", epsilon, low=0.0, low_inclusive=False, static=True)
  # log-domain normalisation: large powers / tiny losses do not overflow
  logits = -float(power) * jnp.log(jnp.maximum(losses, 0) + jnp.asarray(epsilon, losses.dtype))
  return jax.nn.softmax(logits)


def simplex_grad(g: Float[Array, "*batch n"], weights: Float[Array, "*batch n"]
                 ) -> Float[Array, "*batch n"]:
  """The gradient with respect to softmax logits from the per-model directional derivatives.

  With ``w = softmax(ℓ)``, ``θ_mix = Σ_k w_k θ_k`` and ``g_k = ⟨∇_θ L(θ_mix), θ_k⟩``,

  .. math::
    \\frac{\\partial L}{\\partial \\ell_k} = w_k \\Big(g_k - \\sum_j w_j g_j\\Big).

  Args:
    g: ``[..., N]`` directional derivatives.
    weights: ``[..., N]`` the current simplex weights ``softmax(ℓ)``.

  Returns:
    ``[..., N]``, the logit gradient.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import simplex_grad
    >>> simplex_grad(jnp.array([1.0, 3.0]), jnp.array([0.5, 0.5]))
    Array([-0.5,  0.5], dtype=float32)

  References:
    OpenDriveLab/kai0 ``model_arithmetic/arithmetic.py`` (``gradient_descent``).
  """
  fn = "simplex_grad"
  V.check_rank(fn, "g", g, min_rank=1)
  V.check_floating(fn, "g", g)
  V.check_floating(fn, "weights", weights)
  V.check_same_shape(fn, "g", g, "weights", weights)
  if jnp.dtype(g.dtype) != jnp.dtype(weights.dtype):
    raise TypeError(f"{fn}: weights must have the dtype of g ({jnp.dtype(g.dtype).name}), got "
                    f"{V.describe(weights)}")
  return weights * (g - jnp.sum(weights * g, axis=-1, keepdims=True))


def _batch_mean_loss(loss_fn, params, batches):
  return jnp.mean(jax.lax.map(lambda b: jnp.asarray(loss_fn(params, b), jnp.float32), batches))


def _check_loss_inputs(fn, loss_fn, stack, batches) -> int:
  if not callable(loss_fn):
    raise TypeError(f"{fn}: loss_fn must be callable loss_fn(params, batch) -> scalar, got "
                    f"{type(loss_fn).__name__}")
  n = _num_models(fn, stack)
  leaves = jax.tree.leaves(batches)
  if not leaves or any(np.ndim(x) < 1 for x in leaves):
    raise ValueError(f"{fn}: batches must be a pytree of arrays with a leading batch-index axis "
                     f"(a stack of held-out batches), got {batches!r}")
  if len({np.shape(x)[0] for x in leaves}) != 1 or np.shape(leaves[0])[0] < 1:
    raise ValueError(f"{fn}: every leaf of batches must have the same leading size >= 1, got "
                     f"{[np.shape(x) for x in leaves]}")
  return n


def optimize_mix_weights(loss_fn: Callable[[Any, Any], Float[Array, ""]], stack: Any,
                         batches: Any, *, steps: int = 50, learning_rate: float = 0.05,
                         adaptive: bool = False) -> MixWeights:
  """Simplex merge weights minimising the held-out loss of the merged model (χ0's
  ``gradient_descent`` / ``adaptive_gradient_descent``).

  ``w = softmax(ℓ)`` from ``ℓ = 0`` (uniform); each step computes ``θ_mix``, the loss
  ``L = mean_b loss_fn(θ_mix, batch_b)``, its parameter gradient, ``g_k = ⟨∇_θ L, θ_k⟩`` and the
  logit gradient :func:`simplex_grad` (times ``(L / 0.05)^2`` when ``adaptive``), then an
  ``optax.adam(cosine_decay_schedule(learning_rate, steps, alpha=0.01))`` step. The weights of the
  lowest loss seen (the initial uniform ones included) are returned.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar`` (params shaped like one checkpoint).
    stack: the checkpoints, leaves ``[N, ...]`` (see :func:`mix_params`).
    batches: held-out batches stacked on a leading axis (leaves ``[num_batches, ...]``).
    steps: optimisation steps ``>= 1`` (50 in the repository).
    learning_rate: Adam's peak step size ``> 0`` (0.05 from the repository's command line).
    adaptive: scale the gradient by ``(L / 0.05)^2``.

  Returns:
    :class:`MixWeights` ``(weights [N], loss, losses [steps])``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import optimize_mix_weights
    >>> stack = {"w": jnp.array([[0.0], [4.0]])}
    >>> batches = {"y": jnp.array([[1.0], [1.0]])}
    >>> loss = lambda p, b: jnp.mean((p["w"] - b["y"]) ** 2)
    >>> r = optimize_mix_weights(loss, stack, batches, steps=200, learning_rate=0.1)
    >>> bool(abs(r.weights[1] - 0.25) < 0.02)
    True

  References:
    OpenDriveLab/kai0 ``model_arithmetic/arithmetic.py``.
  """
  fn = "optimize_mix_weights"
  n = _check_loss_inputs(fn, loss_fn, stack, batches)
  V.check_scalar(fn, "steps", steps, low=1, integer=True, static=True)
  V.check_scalar(fn, "learning_rate", learning_rate, low=0.0, low_inclusive=False, static=True)
  tx = optax.adam(optax.cosine_decay_schedule(float(learning_rate), int(steps), alpha=0.01))

  def loss_and_logit_grad(logits):
    w = jax.nn.softmax(logits)
    mixed = mix_params(stack, w)
    loss, grad = jax.value_and_grad(lambda p: _batch_mean_loss(loss_fn, p, batches))(mixed)
    g = sum(jnp.tensordot(jnp.reshape(s, (n, -1)).astype(jnp.float32),
                          jnp.reshape(d, (-1,)).astype(jnp.float32), axes=1)
            for s, d in zip(jax.tree.leaves(stack), jax.tree.leaves(grad)))
    gl = simplex_grad(g, w)
    if adaptive:
      gl = gl * jnp.square(loss / 0.05)
    return loss, gl, w

  def step(carry, _):
    logits, opt_state, best_w, best_loss = carry
    loss, gl, w = loss_and_logit_grad(logits)
    better = loss < best_loss
    best_w = jnp.where(better, w, best_w)
    best_loss = jnp.where(better, loss, best_loss)
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int and float
      updates, opt_state = tx.update(gl, opt_state, logits)
    return (optax.apply_updates(logits, updates), opt_state, best_w, best_loss), loss

  logits0 = jnp.zeros((n,), jnp.float32)
  with jax.numpy_dtype_promotion("standard"):
    opt_state0 = tx.init(logits0)
  init = (logits0, opt_state0, jnp.full((n,), 1.0 / n, jnp.float32),
          jnp.asarray(jnp.inf, jnp.float32))
  (logits, _, best_w, best_loss), losses = jax.lax.scan(step, init, None, length=int(steps))
  final_loss, _, final_w = loss_and_logit_grad(logits)
  better = final_loss < best_loss
  return MixWeights(weights=jnp.where(better, final_w, best_w),
                    loss=jnp.where(better, final_loss, best_loss), losses=losses)


def greedy_soup(loss_fn: Callable[[Any, Any], Array], stack: Any, batches: Any
                ) -> Float[Array, " n"]:
  """Greedy-soup merge weights: start from the best single checkpoint and add the others, best
  first, whenever the uniform average of the soup lowers the held-out loss.

  Runs on the host (a Python loop over ``N`` compiled loss evaluations).

  Args:
    loss_fn, stack, batches: as for :func:`optimize_mix_weights`.

  Returns:
    ``[N]`` weights: ``1 / |soup|`` for the checkpoints in the soup, 0 otherwise.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import greedy_soup
    >>> stack = {"w": jnp.array([[0.0], [2.0], [9.0]])}
    >>> loss = lambda p, b: jnp.mean((p["w"] - b["y"]) ** 2)
    >>> greedy_soup(loss, stack, {"y": jnp.array([[1.0]])})
    Array([0.5, 0.5, 0. ], dtype=float32)

  References:
    Wortsman et al., "Model soups", ICML 2022 (greedy soup); OpenDriveLab/kai0 ``greedy``.
  """
  fn = "greedy_soup"
  n = _check_loss_inputs(fn, loss_fn, stack, batches)
  evaluate = jax.jit(lambda w: _batch_mean_loss(loss_fn, mix_params(stack, w), batches))
  eye = np.eye(n, dtype=np.float32)
  single = np.array([float(evaluate(jnp.asarray(eye[k]))) for k in range(n)])
  order = np.argsort(single, kind="stable")
  soup = [int(order[0])]
  best = single[order[0]]
  for k in order[1:]:
    trial = np.zeros(n, np.float32)
    trial[soup + [int(k)]] = 1.0 / (len(soup) + 1)
    loss = float(evaluate(jnp.asarray(trial)))
    if loss < best:
      soup.append(int(k))
      best = loss
  w = np.zeros(n, np.float32)
  w[soup] = 1.0 / len(soup)
  return jnp.asarray(w)


def stage_progress(frame_idx: Int[Array, "*batch"] | Float[Array, "*batch"],
                   bounds: Int[Array, " k1"] | Float[Array, " k1"]) -> Float[Array, "*batch"]:
  """Task progress in ``[0, 1]`` from manual stage boundaries.

  With ``K`` stages ``[b_k, b_{k+1})`` and ``t`` in stage ``k``,

  .. math::
    p(t) = \\frac{k}{K} + \\frac{1}{K}\\,\\frac{t - b_k}{b_{k+1} - b_k},

  clipped to ``[0, 1]`` (frames before ``b_0`` are 0, from ``b_K`` on 1).

  Args:
    frame_idx: frame indices, any shape.
    bounds: ``[K + 1]`` strictly increasing stage boundaries (frame numbers).

  Returns:
    float32 progress, shape of ``frame_idx``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import stage_progress
    >>> stage_progress(jnp.array([0, 5, 10, 20, 30]), jnp.array([0, 10, 30]))
    Array([0.  , 0.25, 0.5 , 0.75, 1.  ], dtype=float32)

  References:
    OpenDriveLab/kai0 ``stage_advantage/`` (``stage_progress_gt``).
  """
  fn = "stage_progress"
  V.check_array(fn, "frame_idx", frame_idx)
  V.check_rank(fn, "bounds", bounds, 1)
  for arg, x in (("frame_idx", frame_idx), ("bounds", bounds)):
    dt = jnp.result_type(x)
    if not (jnp.issubdtype(dt, jnp.integer) or jnp.issubdtype(dt, jnp.floating)):
      raise TypeError(f"{fn}: {arg} must be integer or floating, got {V.describe(x)}")
  if bounds.shape[0] < 2:
    raise ValueError(f"{fn}: bounds must hold at least two boundaries (one stage), got "
                     f"{V.describe(bounds)}")
  if not isinstance(bounds, jax.core.Tracer) and not np.all(np.diff(np.asarray(bounds)) > 0):
    raise ValueError(f"{fn}: bounds must be strictly increasing, got {np.asarray(bounds)}")
  t = jnp.asarray(frame_idx).astype(jnp.float32)
  b = bounds.astype(jnp.float32)
  k_stages = b.shape[0] - 1
  k = jnp.clip(jnp.searchsorted(b, t, side="right") - 1, 0, k_stages - 1)
  lo, hi = b[k], b[k + 1]
  p = (k.astype(jnp.float32) + (t - lo) / (hi - lo)) / k_stages
  return jnp.clip(p, 0.0, 1.0)


def stage_advantage(values: Float[Array, "*batch t"], *, horizon: int = 50
                    ) -> Float[Array, "*batch t"]:
  """Per-frame advantage ``clip(V(n + h) − V(n), −1, 1)`` over an episode's predicted progress.

  ``n + h`` is clamped to the last frame (the last ``h`` frames look to the episode's end).

  Args:
    values: ``[..., T]`` predicted progress values of the frames of an episode.
    horizon: ``h >= 1`` frames (50 in the repository).

  Returns:
    ``[..., T]`` advantages in ``[−1, 1]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import stage_advantage
    >>> stage_advantage(jnp.array([0.0, 0.25, 0.5, 0.25]), horizon=2)
    Array([ 0.5 ,  0.  , -0.25,  0.  ], dtype=float32)

  References:
    OpenDriveLab/kai0 ``stage_advantage/`` (``absolute_advantage``).
  """
  fn = "stage_advantage"
  V.check_rank(fn, "values", values, min_rank=1)
  V.check_floating(fn, "values", values)
  V.check_scalar(fn, "horizon", horizon, low=1, integer=True, static=True)
  t = values.shape[-1]
  ahead = jnp.minimum(jnp.arange(t) + int(horizon), max(t - 1, 0))
  return jnp.clip(jnp.take(values, ahead, axis=-1) - values, -1.0, 1.0)


def discretize_advantage(adv: Float[Array, " t"], stage_idx: Int[Array, " t"] | None = None, *,
                         top_pct: float = 30.0, n_stages: int = 1) -> Int[Array, " t"]:
  """Binary AWBC labels: 1 for the top ``top_pct`` % of advantages (per stage), else 0.

  A frame is positive when its advantage is ``>=`` the ``(100 − top_pct)``-th percentile
  (linear interpolation, as ``numpy.percentile``) of the advantages of its stage (all frames
  when ``n_stages == 1``).

  Args:
    adv: ``[T]`` advantages.
    stage_idx: ``[T]`` integer stage of each frame in ``[0, n_stages)`` (ignored, may be
      ``None``, when ``n_stages == 1``).
    top_pct: the positive share in ``(0, 100]`` (30 in the repository).
    n_stages: number of stages with their own percentile (static).

  Returns:
    int32 ``[T]`` labels.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import discretize_advantage
    >>> discretize_advantage(jnp.arange(10.0), top_pct=30.0)
    Array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1], dtype=int32)

  References:
    OpenDriveLab/kai0 ``stage_advantage/annotation/discretize_advantage.py``.
  """
  fn = "discretize_advantage"
  V.check_rank(fn, "adv", adv, 1)
  V.check_floating(fn, "adv", adv)
  V.check_scalar(fn, "top_pct", top_pct, low=0.0, high=100.0, low_inclusive=False, static=True)
  V.check_scalar(fn, "n_stages", n_stages, low=1, integer=True, static=True)
  if adv.shape[0] < 1:
    raise ValueError(f"{fn}: adv must hold at least one frame, got {V.describe(adv)}")
  q = 100.0 - float(top_pct)
  if n_stages == 1:
    return (adv >= jnp.percentile(adv, q)).astype(jnp.int32)
  if stage_idx is None:
    raise ValueError(f"{fn}: stage_idx must be given when n_stages > 1, got None")
  V.check_rank(fn, "stage_idx", stage_idx, 1)
  V.check_integer(fn, "stage_idx", stage_idx)
  V.check_same_shape(fn, "adv", adv, "stage_idx", stage_idx)
  out = jnp.zeros(adv.shape, jnp.int32)
  for s in range(int(n_stages)):
    in_s = stage_idx == s
    thr = jnp.nanpercentile(jnp.where(in_s, adv, jnp.nan), q)
    out = jnp.where(in_s & (adv >= thr), 1, out)
  return out


def chunk_crossfade(old: Float[Array, "lo d"], old_len: Int[Array, ""] | int,
                    new: Float[Array, "ln d"], k_elapsed: Int[Array, ""] | int, *, max_k: int,
                    min_m: int = 8) -> CrossfadedChunk:
  """Integrates a newly predicted action chunk into the executing one (χ0's temporal smoothing).

  ``drop = min(k_elapsed, max_k)`` first actions of ``new`` are skipped (already in the past);
  the remaining old actions ``old[:old_len]`` are padded to ``min_m`` with the last of them; over
  the overlap ``L = min(max(old_len, min_m), Ln − drop)`` (0 when ``old_len == 0``) the output is
  ``w_i·old_i + (1 − w_i)·new_{drop+i}`` with ``w = linspace(1, 0, L)``; after it the new actions
  follow. The result has ``Ln − drop`` valid actions.

  Args:
    old: ``[Lo, D]`` the not-yet-executed actions of the current chunk (valid up to ``old_len``).
    old_len: how many of ``old`` are valid, ``0 <= old_len <= Lo`` (may be traced).
    new: ``[Ln, D]`` the new chunk, dtype of ``old``.
    k_elapsed: actions executed since the new chunk's observation (may be traced, ``>= 0``).
    max_k: the most actions dropped (static).
    min_m: the old chunk is padded to at least this many actions (static, 8 in the repository).

  Returns:
    :class:`CrossfadedChunk` ``(chunk [Ln, D], length)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import chunk_crossfade
    >>> old = jnp.zeros((4, 1)); new = jnp.ones((6, 1))
    >>> out = chunk_crossfade(old, 4, new, 1, max_k=2, min_m=3)
    >>> [round(float(a), 3) for a in out.chunk[:, 0]], int(out.length)
    ([0.0, 0.333, 0.667, 1.0, 1.0, 0.0], 5)

  References:
    OpenDriveLab/kai0 ``agilex_inference_openpi_temporal_smoothing.py`` (``integrate_new_chunk``).
  """
  fn = "chunk_crossfade"
  V.check_rank(fn, "old", old, 2)
  V.check_floating(fn, "old", old)
  V.check_rank(fn, "new", new, 2)
  V.check_floating(fn, "new", new)
  if old.shape[1] != new.shape[1]:
    raise ValueError(f"{fn}: old and new must have the same action size, got {V.describe(old)} "
                     f"and {V.describe(new)}")
  if jnp.dtype(old.dtype) != jnp.dtype(new.dtype):
    raise TypeError(f"{fn}: new must have the dtype of old ({jnp.dtype(old.dtype).name}), got "
                    f"{V.describe(new)}")
  if new.shape[0] < 1:
    raise ValueError(f"{fn}: new must hold at least one action, got {V.describe(new)}")
  V.check_scalar(fn, "max_k", max_k, low=0, high=new.shape[0] - 1, integer=True, static=True)
  V.check_scalar(fn, "min_m", min_m, low=1, integer=True, static=True)
  for arg, x in (("old_len", old_len), ("k_elapsed", k_elapsed)):
    V.check_array(fn, arg, x)
    if np.ndim(x) != 0 or not jnp.issubdtype(jnp.result_type(x), jnp.integer):
      raise TypeError(f"{fn}: {arg} must be an integer scalar, got {V.describe(x)}")
  V.check_scalar(fn, "old_len", old_len, low=0, high=old.shape[0])
  V.check_scalar(fn, "k_elapsed", k_elapsed, low=0)
  lo, ln = old.shape[0], new.shape[0]
  old_len = jnp.clip(jnp.asarray(old_len, jnp.int32), 0, lo)
  drop = jnp.clip(jnp.asarray(k_elapsed, jnp.int32), 0, int(max_k))
  length = ln - drop
  i = jnp.arange(ln)
  new_rem = new[jnp.minimum(i + drop, ln - 1)]
  old_p = old[jnp.clip(jnp.minimum(i, old_len - 1), 0, max(lo - 1, 0))] if lo else new_rem
  overlap = jnp.where(old_len > 0, jnp.minimum(jnp.maximum(old_len, int(min_m)), length), 0)
  w = jnp.where(overlap > 1, 1.0 - i / jnp.maximum(overlap - 1, 1), 1.0).astype(old.dtype)
  mixed = w[:, None] * old_p + (1 - w[:, None]) * new_rem
  out = jnp.where((i < overlap)[:, None], mixed, new_rem)
  out = jnp.where((i < length)[:, None], out, jnp.zeros((), old.dtype))
  return CrossfadedChunk(chunk=out, length=length)


__all__ = ["CrossfadedChunk", "MixWeights", "chunk_crossfade", "discretize_advantage",
           "greedy_soup", "inverse_loss_weights", "mix_params", "optimize_mix_weights",
           "simplex_grad", "stage_advantage", "stage_progress"]
