"""Plasticity in visual RL: the fraction of active units (FAU) and the adaptive replay ratio.

Paper: Guozheng Ma, Lu Li, Sen Zhang, Zixuan Liu, Zhen Wang, Yixin Chen, Li Shen, Xueqian Wang,
Dacheng Tao, "Revisiting Plasticity in Visual Reinforcement Learning: Data, Modules and Training
Stages", ICLR 2024 (https://arxiv.org/abs/2310.07418; code Guozheng-Ma/Adaptive-Replay-Ratio).

Idea. A network loses *plasticity* — its ability to keep fitting new targets — and the fraction of
its ReLU units that are active is a cheap proxy for it. The paper finds that data augmentation is
essential to keep plasticity, that the critic is the module whose plasticity limits sample
efficiency, and that a high replay ratio (gradient updates per environment step) *early* in
training causes a catastrophic, unrecoverable loss of critic plasticity. Hence the **adaptive
replay ratio**: train at a low ratio until the critic's FAU stops changing, then switch (once) to
a high one.

Implemented here:

- :func:`fraction_active_units` (the paper's ``forward_with_FAU``): for a module with ReLU
  outputs ``a_n`` pooled over its layers and the batch,

  .. math::
    \\Phi = \\frac{1}{N}\\sum_n \\mathbb 1[a_n > 0]

  (counts pooled, so a wide layer weighs more); :func:`per_layer_fau` gives each layer's own
  fraction;
- :func:`dormant_ratio` (ReDo, Sokar et al. 2023): a unit is dormant when its mean absolute
  activation over the batch, divided by the layer's mean of that quantity, is ``<= tau``;
  fraction of dormant units pooled over the layers;
- the adaptive replay ratio as an optax-style pure state machine: :func:`arr_init` /
  :func:`arr_update` over :class:`ARRState` (DrQ-v2 ``train_adapt_rr.py``): the FAU of every
  update made during the last episode of each window of ``check_freq`` episodes is averaged;
  when the window closes, if ``|Φ̄_now − Φ̄_prev| <= gap`` the ratio switches once from
  ``rr_low`` (0.5) to ``rr_high`` (2); then ``Φ̄_prev ← Φ̄_now`` (``Φ̄_prev`` starts at 0, as the
  repository's ``init_Phi``); :func:`updates_at_step` turns a ratio into the number of updates to
  make at an environment step (0.5: one update every second step; 2: two per step);
- :class:`ReLUMLP`: a flax NNX MLP whose ``forward_with_acts`` returns its hidden ReLU outputs
  with the prediction, so FAU is read from the training forward pass without a second one.

Departures. The repository measures FAU of the DrQ-v2 encoder (4 conv ReLUs), actor and critic
(both Q heads); here any pytree of post-ReLU activations is accepted. The repository's FAU uses
the activations of one update batch; the switch rule is otherwise the repository's.
:class:`ReLUMLP` returns its activations rather than ``sow``-ing them as ``nnx.Intermediate``: a
module that sows outside ``nnx.capture`` changes its graph inside a jitted training step. The
exact normalisation of Plasticine's ``compute_dormant_units`` was not verified;
:func:`dormant_ratio`
follows the ReDo paper's definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V


def _layers(fn: str, acts: Any) -> list:
  leaves = jax.tree.leaves(acts)
  if not leaves:
    raise ValueError(f"{fn}: acts must hold at least one array of activations, got {acts!r}")
  for x in leaves:
    V.check_array(fn, "acts", x)
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
      raise TypeError(f"{fn}: acts must be floating activations, got {V.describe(x)}")
  if sum(int(np.size(x)) for x in leaves) == 0:
    raise ValueError(f"{fn}: acts must hold at least one activation (all arrays are empty)")
  return leaves


def fraction_active_units(acts: Any) -> Float[Array, ""]:
  """The fraction of active (``> 0``) units, counts pooled over all layers and the batch.

  .. math::
    \\Phi = \\frac{\\sum_{\\ell} \\#\\{a \\in A_\\ell : a > 0\\}}{\\sum_\\ell |A_\\ell|}

  Args:
    acts: a pytree (list, dict, ``nnx.State`` …) of post-ReLU activation arrays of any shapes.

  Returns:
    A float32 scalar in ``[0, 1]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import fraction_active_units
    >>> fraction_active_units([jnp.array([[1.0, 0.0], [0.0, 2.0]]), jnp.array([[0.0, 0.0, 3.0]])])
    Array(0.42857143, dtype=float32)

  References:
    Ma et al., "Revisiting Plasticity in Visual Reinforcement Learning", ICLR 2024
    (``forward_with_FAU``); RLE-Foundation/Plasticine ``compute_active_units``.
  """
  leaves = _layers("fraction_active_units", acts)
  active = sum(jnp.sum(jnp.asarray(x) > 0) for x in leaves)
  total = sum(int(np.size(x)) for x in leaves)
  return (active / total).astype(jnp.float32)


def per_layer_fau(acts: Any) -> Any:
  """Each layer's own fraction of active units (a pytree of float32 scalars like ``acts``;
  an empty layer gives 0).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import per_layer_fau
    >>> per_layer_fau({"h1": jnp.array([1.0, 0.0]), "h2": jnp.array([3.0, 2.0])})["h1"]
    Array(0.5, dtype=float32)

  References:
    Ma et al., "Revisiting Plasticity in Visual Reinforcement Learning", ICLR 2024.
  """
  _layers("per_layer_fau", acts)
  return jax.tree.map(
      lambda x: (jnp.sum(jnp.asarray(x) > 0) / max(int(np.size(x)), 1)).astype(jnp.float32),
      acts)


def dormant_ratio(acts: Any, *, tau: float = 0.0, epsilon: float = 1e-9) -> Float[Array, ""]:
  """The fraction of dormant units (ReDo), pooled over the layers.

  For a layer with activations ``h [..., K]`` (units on the last axis, samples on the others),
  ``s_k = E|h_k| / ((1/K) Σ_j E|h_j|)``; unit ``k`` is dormant when ``s_k <= tau``.

  Args:
    acts: a pytree of activation arrays, each of rank >= 1 (units on the last axis).
    tau: the dormancy threshold ``>= 0`` (0: units that never fire).
    epsilon: guards the division for a layer whose units are all silent (all dormant).

  Returns:
    A float32 scalar in ``[0, 1]``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import dormant_ratio
    >>> dormant_ratio([jnp.array([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]])])
    Array(0.33333334, dtype=float32)

  References:
    Sokar et al., "The Dormant Neuron Phenomenon in Deep Reinforcement Learning", ICML 2023.
  """
  fn = "dormant_ratio"
  leaves = _layers(fn, acts)
  V.check_scalar(fn, "tau", tau, low=0.0, static=True)
  V.check_scalar(fn, "epsilon", epsilon, low=0.0, low_inclusive=False, static=True)
  dormant, units = jnp.zeros((), jnp.float32), 0
  for x in leaves:
    x = jnp.asarray(x, jnp.float32)
    if x.ndim < 1 or x.shape[-1] == 0:
      continue
    score = jnp.mean(jnp.abs(x).reshape(-1, x.shape[-1]), axis=0) if x.size else jnp.zeros(
        x.shape[-1], jnp.float32)
    norm = score / (jnp.mean(score) + epsilon)
    dormant = dormant + jnp.sum(norm <= float(tau)).astype(jnp.float32)
    units += x.shape[-1]
  if units == 0:
    raise ValueError(f"{fn}: acts must hold at least one unit (a last axis of size >= 1)")
  return dormant / units


class ARRState(NamedTuple):
  """State of the adaptive replay ratio: the previous window's mean FAU ``last_avg``, the running
  sum / count of FAU values of the window's last episode (``win_sum``, ``win_cnt``) and that
  episode's index ``win_ep``, the current replay ratio ``rr`` and whether it has ``switched``."""
  last_avg: Array
  win_sum: Array
  win_cnt: Array
  win_ep: Array
  rr: Array
  switched: Array


def arr_init(*, rr_low: float = 0.5) -> ARRState:
  """The initial :class:`ARRState`: ratio ``rr_low``, ``last_avg = 0`` (as the repository).

  Example:
    >>> from bottleneck_jax.objectives import arr_init
    >>> float(arr_init().rr)
    0.5
  """
  V.check_scalar("arr_init", "rr_low", rr_low, low=0.0, low_inclusive=False, static=True)
  z = jnp.zeros((), jnp.float32)
  return ARRState(last_avg=z, win_sum=z, win_cnt=jnp.zeros((), jnp.int32),
                  win_ep=jnp.full((), -1, jnp.int32), rr=jnp.asarray(float(rr_low), jnp.float32),
                  switched=jnp.zeros((), bool))


def arr_update(state: ARRState, fau: Float[Array, ""] | float,
               episode_idx: Int[Array, ""] | int, *, check_freq: int = 50, gap: float = 1e-3,
               rr_high: float = 2.0) -> ARRState:
  """One step of the adaptive replay ratio; call it after every update with the critic's FAU.

  Updates made during episode ``e`` with ``(e + 1) % check_freq == 0`` (the last episode of a
  window) accumulate their FAU; at the first update of another episode the window closes:
  ``now = mean``; if ``|now − last_avg| <= gap`` the ratio becomes ``rr_high`` for good; then
  ``last_avg = now``. Pure and jittable (``episode_idx`` and ``fau`` may be traced).

  Args:
    state: the current :class:`ARRState` (from :func:`arr_init`).
    fau: the critic's fraction of active units at this update.
    episode_idx: the 0-based index of the episode this update belongs to.
    check_freq: window length in episodes ``>= 1`` (50 in the repository).
    gap: the flatness threshold ``>= 0`` (``Phi_gap = 0.001``).
    rr_high: the ratio after the switch ``> 0`` (2).

  Returns:
    The new :class:`ARRState`.

  Example:
    >>> from bottleneck_jax.objectives import arr_init, arr_update
    >>> s = arr_init()
    >>> for ep, fau in enumerate([0.6, 0.5, 0.45, 0.4502, 0.4501]):
    ...   s = arr_update(s, fau, ep, check_freq=1)
    ...   print(ep, float(s.rr))
    0 0.5
    1 0.5
    2 0.5
    3 0.5
    4 2.0

  References:
    Ma et al., ICLR 2024; Guozheng-Ma/Adaptive-Replay-Ratio ``train_adapt_rr.py``.
  """
  fn = "arr_update"
  if not isinstance(state, ARRState):
    raise TypeError(f"{fn}: state must be an ARRState (from arr_init), got "
                    f"{type(state).__name__}")
  V.check_array(fn, "fau", fau)
  if np.ndim(fau) != 0 or not jnp.issubdtype(jnp.result_type(fau), jnp.floating):
    raise TypeError(f"{fn}: fau must be a floating scalar, got {V.describe(fau)}")
  V.check_array(fn, "episode_idx", episode_idx)
  if np.ndim(episode_idx) != 0 or not jnp.issubdtype(jnp.result_type(episode_idx), jnp.integer):
    raise TypeError(f"{fn}: episode_idx must be an integer scalar, got "
                    f"{V.describe(episode_idx)}")
  V.check_scalar(fn, "episode_idx", episode_idx, low=0)
  V.check_scalar(fn, "check_freq", check_freq, low=1, integer=True, static=True)
  V.check_scalar(fn, "gap", gap, low=0.0, static=True)
  V.check_scalar(fn, "rr_high", rr_high, low=0.0, low_inclusive=False, static=True)
  fau = jnp.asarray(fau, jnp.float32)
  ep = jnp.asarray(episode_idx, jnp.int32)
  in_last = (ep + 1) % int(check_freq) == 0
  closes = (state.win_cnt > 0) & (ep != state.win_ep)
  now = state.win_sum / jnp.maximum(state.win_cnt, 1).astype(jnp.float32)
  flat = jnp.abs(now - state.last_avg) <= float(gap)
  switch = closes & flat & ~state.switched
  switched = state.switched | switch
  rr = jnp.where(switch, jnp.asarray(float(rr_high), jnp.float32), state.rr)
  last_avg = jnp.where(closes, now, state.last_avg)
  win_sum = jnp.where(closes, 0.0, state.win_sum)
  win_cnt = jnp.where(closes, 0, state.win_cnt)
  win_sum = jnp.where(in_last, win_sum + fau, win_sum)
  win_cnt = jnp.where(in_last, win_cnt + 1, win_cnt)
  win_ep = jnp.where(in_last, ep, state.win_ep)
  return ARRState(last_avg=last_avg, win_sum=win_sum, win_cnt=win_cnt, win_ep=win_ep, rr=rr,
                  switched=switched)


def updates_at_step(step: Int[Array, "*batch"] | int, rr: Float[Array, ""] | float
                    ) -> Int[Array, "*batch"]:
  """How many gradient updates to make at environment step ``step`` for replay ratio ``rr``:
  ``floor((step + 1)·rr) − floor(step·rr)``, so that ``step`` steps make ``floor(step·rr)``
  updates (0.5: one update every second step; 2: two per step).

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.objectives import updates_at_step
    >>> updates_at_step(jnp.arange(6), 0.5)
    Array([0, 1, 0, 1, 0, 1], dtype=int32)
  """
  fn = "updates_at_step"
  V.check_array(fn, "step", step)
  if not jnp.issubdtype(jnp.result_type(step), jnp.integer):
    raise TypeError(f"{fn}: step must be integer, got {V.describe(step)}")
  V.check_array(fn, "rr", rr)
  if np.ndim(rr) != 0 or not (jnp.issubdtype(jnp.result_type(rr), jnp.floating)
                              or jnp.issubdtype(jnp.result_type(rr), jnp.integer)):
    raise TypeError(f"{fn}: rr must be a real scalar, got {V.describe(rr)}")
  V.check_scalar(fn, "rr", rr, low=0.0)
  s = jnp.asarray(step).astype(jnp.float32)
  r = jnp.asarray(float(rr) if isinstance(rr, (int, float, np.number)) else rr).astype(jnp.float32)
  return (jnp.floor((s + 1) * r) - jnp.floor(s * r)).astype(jnp.int32)


class ReLUMLP(nnx.Module):
  """An MLP with ReLU hidden layers that also returns its hidden activations (the repository's
  ``forward_with_FAU``), so FAU is read from the training forward pass without a second one.

  Args:
    in_features: input size.
    hidden: hidden widths (each followed by a ReLU).
    out_features: output size (linear head).
    rngs: ``nnx.Rngs``.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.objectives import ReLUMLP, fraction_active_units
    >>> m = ReLUMLP(3, (8, 8), 1, rngs=nnx.Rngs(0))
    >>> y, acts = m.forward_with_acts(jnp.ones((4, 3)))
    >>> y.shape, len(acts), 0.0 <= float(fraction_active_units(acts)) <= 1.0
    ((4, 1), 2, True)
  """

  def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, *,
               rngs: nnx.Rngs):
    sizes = [int(in_features), *(int(h) for h in hidden)]
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
    self.head = nnx.Linear(sizes[-1], int(out_features), rngs=rngs)

  def forward_with_acts(self, x) -> tuple[Array, list[Array]]:
    """``(output, [post-ReLU activations of each hidden layer])``."""
    acts = []
    for layer in self.layers:
      x = jax.nn.relu(layer(x))
      acts.append(x)
    return self.head(x), acts

  def __call__(self, x):
    return self.forward_with_acts(x)[0]


__all__ = ["ARRState", "ReLUMLP", "arr_init", "arr_update", "dormant_ratio",
           "fraction_active_units", "per_layer_fau", "updates_at_step"]
