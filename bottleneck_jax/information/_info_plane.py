"""The information plane of a deep network (Shwartz-Ziv & Tishby 2017).

Paper: Ravid Shwartz-Ziv, Naftali Tishby, "Opening the Black Box of Deep Neural Networks via
Information", 2017 (https://arxiv.org/abs/1703.00810); code ravidziv/IDNNs.

Idea. Each hidden layer ``T_l`` of a network is a (deterministic) representation of the input;
plotting ``(I(X;T_l), I(T_l;Y))`` for every layer over training epochs traces the *information
plane*. On their 12-bit task with tanh units the paper sees two phases: a short *fitting* phase
in which both quantities grow, then a long *compression* phase in which ``I(X;T)`` of the last
layers falls while ``I(T;Y)`` stays near ``H(Y)``.

Estimator (IDNNs ``information_process.py``). Every activation is discretised on fixed edges
``linspace(lo, hi, num_edges)`` (``-1, 1, 30``: 29 equal intervals plus a bin above ``hi``);
the plug-in distribution of the binned rows over the **whole** data set gives

  I(X;T) = H(T) - H(T|X) = H(T)             (X rows distinct, T a function of X)
  I(T;Y) = H(T) - sum_y p(y) H(T | Y = y)

Implemented here:
- :func:`uniform_bin_codes`: ``digitize`` codes on fixed edges;
- :func:`binned_mi`: the two quantities above for one layer (with ``x_codes`` when the inputs
  are not distinct, ``I(X;T) = H(T) - H(T|X)`` from the joint);
- :func:`information_plane`: any per-layer estimator over a tuple of layers, optionally with a
  leading checkpoint axis (vmapped), ``-> [*checkpoints, L, 2]``;
- :func:`logspaced_epochs`, :func:`plot_information_plane` (PNG);
- :class:`LayerwiseMLP`: an MLP (the paper's 12-10-7-5-4-3-2 tanh network by default) whose
  call returns the logits and every hidden activation, for recording the plane during training.

All quantities in **nats** (:func:`~bottleneck_jax.information.to_bits` gives the paper's bits).

Implementation: the binned rows of a layer are packed into 32-bit integer digits
(``bit_length(num_edges)`` bits per unit) and put in ``(T, Y)`` order by one single-key sort per
digit (least significant first, the row position in the low bits keeping ties in the previous
order); ``H(T)`` and ``H(T, Y)`` are the run lengths of that one order. The numbers are those of
lexicographic sorts of the code rows, bit for bit, at a fraction of XLA:CPU's cost for sorts with
several keys.

Departures from the paper / reference code:
- Binning is one estimator among several: :func:`information_plane` takes any callable
  ``(t, labels) -> (I(X;T), I(T;Y))``, e.g. :func:`binned_estimator`, the adaptive estimators of
  ``adaptive-mi``, or :func:`~bottleneck_jax.information.kde_mi`.
- The reference trains with Adam (lr 4e-4) although the paper says SGD; the experiment
  ``info-plane-tishby`` follows the code.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, Int

from bottleneck_jax.core import validation as V
from bottleneck_jax.core.units import LN2
from bottleneck_jax.information._entropy_estimators import (
    _as_code_matrix,
    _row_entropy,
    _run_entropy,
)


class InformationPoint(NamedTuple):
  """One point of the information plane, in nats.

  Attributes:
    i_xt: ``I(X;T)``.
    i_ty: ``I(T;Y)``.
  """
  i_xt: Float[Array, ""]
  i_ty: Float[Array, ""]


def _check_layer(fn: str, arg: str, t) -> None:
  V.check_floating(fn, arg, t)
  V.check_rank(fn, arg, t, (1, 2))
  if t.shape[0] < 1 or (t.ndim == 2 and t.shape[1] < 1):
    raise ValueError(f"{fn}: {arg} must be a non-empty [N, d] array, got {V.describe(t)}")


def _check_labels(fn: str, labels, n: int) -> None:
  V.check_integer(fn, "labels", labels)
  V.check_shape(fn, "labels", labels, (n,))


def _check_binning(fn: str, num_edges, lo, hi) -> None:
  V.check_scalar(fn, "num_edges", num_edges, low=2, integer=True, static=True)
  V.check_scalar(fn, "lo", lo, static=True)
  V.check_scalar(fn, "hi", hi, static=True)
  if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
    raise ValueError(f"{fn}: lo and hi must be finite with lo < hi, got lo={lo}, hi={hi}")


def _bin_codes(t, num_edges, lo, hi):
  # "compare_all" (one comparison per edge) gives the binary search's codes (both use the sort
  # order's comparator: NaN above every edge) at about a ninth of its CPU time for 30 edges.
  edges = jnp.linspace(float(lo), float(hi), int(num_edges), dtype=jnp.float32)
  return jnp.searchsorted(edges, jnp.asarray(t, jnp.float32), side="right",
                          method="compare_all").astype(jnp.int32)


def uniform_bin_codes(t: Float[Array, "*batch"], *, num_edges: int = 30, lo: float = -1.0,
                      hi: float = 1.0) -> Int[Array, "*batch"]:
  """Bin indices of ``t`` on the fixed edges ``linspace(lo, hi, num_edges)`` (``digitize``).

  ``code = #{edges <= t}``: 0 below ``lo``, ``num_edges`` at or above ``hi``, as
  ``numpy.digitize`` (IDNNs replaces each value with ``bins[code - 1]``, the same partition).

  Args:
    t: activations, any shape, floating.
    num_edges: number of edges, a static int ``>= 2``.
    lo, hi: the first and last edge, finite, ``lo < hi``.

  Returns:
    int32 codes of the shape of ``t``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import uniform_bin_codes
    >>> uniform_bin_codes(jnp.array([-2.0, -1.0, 0.0, 0.99, 1.0]), num_edges=3).tolist()
    [0, 1, 2, 2, 3]
  """
  fn = "uniform_bin_codes"
  V.check_floating(fn, "t", t)
  _check_binning(fn, num_edges, lo, hi)
  return _bin_codes(t, num_edges, lo, hi)


def _packed_entropies(codes, code_bits: int, aux):
  """``(H(T), H(T, A))`` in nats for the rows of ``codes`` (``T``, ``[n, d]``, values in
  ``[0, 2**code_bits)``) paired with the integer rows ``aux`` (``A``, ``[n, da]``, any range).

  Each row of ``codes`` is a ``d * code_bits``-bit integer (column 0 most significant), cut into
  digits of ``32 - ceil(log2 n)`` bits. Starting from the order of ``aux`` (a stable lexsort),
  one least-significant-digit-first pass per digit sorts ``digit << idx_bits | position`` as a
  single ``uint32`` operand (XLA:CPU sorts one integer operand several times faster than keys
  with payloads) and composes the permutation; ties keep the previous order, so the result is
  ordered by ``(T, A)``: runs of ``T`` give ``H(T)``, runs of ``(T, A)`` give ``H(T, A)``. The
  runs come in the order of a lexsort of ``[codes, aux]``, so the sums are ``_row_entropy``'s.
  """
  n, d = codes.shape
  idx_bits = max(1, (n - 1).bit_length())
  width = 32 - idx_bits
  if width < 1:
    raise ValueError(f"_packed_entropies: {n} rows do not fit a 32-bit sort index")
  digit_mask = jnp.uint32((1 << width) - 1)
  idx_mask = jnp.uint32((1 << idx_bits) - 1)
  cu = codes.astype(jnp.uint32)
  digits = []  # least significant first
  for low in range(0, d * code_bits, width):
    digit = jnp.zeros((n,), jnp.uint32)
    for j in range(d):
      pos = (d - 1 - j) * code_bits  # the lowest bit of column j in the row's integer
      if pos >= low + width or pos + code_bits <= low:
        continue
      digit = digit | (cu[:, j] << (pos - low) if pos >= low else cu[:, j] >> (low - pos))
    digits.append(digit & digit_mask)
  order = jnp.lexsort(tuple(aux[:, j] for j in range(aux.shape[1] - 1, -1, -1)))
  order = order.astype(jnp.int32)
  iota = jnp.arange(n, dtype=jnp.uint32)
  for digit in digits:
    ranked = jax.lax.sort((digit[order] << idx_bits) | iota)
    order = order[(ranked & idx_mask).astype(jnp.int32)]
  a_sorted = aux[order]
  # the last (most significant) digit in sorted order is the sorted key's high part
  sorted_digits = [digit[order] for digit in digits[:-1]] + [ranked >> idx_bits]
  new_t = jnp.zeros((n - 1,), bool)
  for s in sorted_digits:
    new_t = new_t | (s[1:] != s[:-1])
  new_a = jnp.any(a_sorted[1:] != a_sorted[:-1], axis=1)
  first = jnp.ones((1,), bool)
  w = jnp.ones((n,), jnp.float32)
  h_t = _run_entropy(jnp.concatenate([first, new_t]), w)
  h_ta = _run_entropy(jnp.concatenate([first, new_t | new_a]), w)
  return h_t, h_ta


def _codes_mi(fn: str, codes, labels, x_codes, code_bits: int | None = None) -> InformationPoint:
  """``(I(X;T), I(T;Y))`` from integer codes; ``code_bits`` (static) says every code lies in
  ``[0, 2**code_bits)`` and selects the packed single-key sorts, otherwise lexsorts of rows."""
  n = codes.shape[0]
  w = jnp.ones((n,), jnp.float32)
  lab = labels.reshape(n, 1).astype(jnp.int32)
  if x_codes is not None:
    xc = _as_code_matrix(fn, "x_codes", x_codes).astype(jnp.int32)
    if xc.shape[0] != n:
      raise ValueError(f"{fn}: x_codes must have {n} rows (one per sample), got "
                       f"{V.describe(x_codes)}")
  if code_bits is None:
    h_t = _row_entropy(codes, w)
    i_ty = h_t + _row_entropy(lab, w) - _row_entropy(jnp.concatenate([codes, lab], 1), w)
    if x_codes is None:
      return InformationPoint(h_t, i_ty)
    i_xt = h_t + _row_entropy(xc, w) - _row_entropy(jnp.concatenate([codes, xc], 1), w)
    return InformationPoint(i_xt, i_ty)
  h_t, h_ty = _packed_entropies(codes, code_bits, lab)
  i_ty = h_t + _row_entropy(lab, w) - h_ty
  if x_codes is None:
    return InformationPoint(h_t, i_ty)
  _, h_tx = _packed_entropies(codes, code_bits, xc)
  return InformationPoint(h_t + _row_entropy(xc, w) - h_tx, i_ty)


def binned_mi(t: Float[Array, "n d"], labels: Int[Array, "n"], *,
              x_codes: Int[Array, "n dx"] | None = None, num_edges: int = 30,
              lo: float = -1.0, hi: float = 1.0) -> InformationPoint:
  """``I(X;T)`` and ``I(T;Y)`` of a layer by fixed-width binning (IDNNs), in nats.

  .. math::
    I(X;T) = H(T_{bin}) - H(T_{bin}\\mid X),\\qquad
    I(T;Y) = H(T_{bin}) + H(Y) - H(T_{bin}, Y)

  with plug-in entropies of the binned rows (:func:`uniform_bin_codes`) over the given samples.
  ``H(T|X) = 0`` when ``x_codes`` is ``None`` (the inputs are distinct, as in the 12-bit task).

  Args:
    t: the layer's activations on the data set, ``[N]`` or ``[N, d]``, floating.
    labels: integer labels ``[N]``.
    x_codes: optional integer codes of the inputs ``[N]`` or ``[N, dx]`` (when rows repeat).
    num_edges, lo, hi: the binning (see :func:`uniform_bin_codes`).

  Returns:
    :class:`InformationPoint` ``(i_xt, i_ty)`` in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import binned_mi, to_bits
    >>> t = jnp.array([[-0.9], [-0.9], [0.9], [0.9]]); y = jnp.array([0, 0, 1, 1])
    >>> [round(float(to_bits(v)), 4) for v in binned_mi(t, y)]
    [1.0, 1.0]
  """
  fn = "binned_mi"
  _check_layer(fn, "t", t)
  _check_labels(fn, labels, t.shape[0])
  _check_binning(fn, num_edges, lo, hi)
  codes = _bin_codes(t, num_edges, lo, hi)
  return _codes_mi(fn, codes.reshape(t.shape[0], -1), labels, x_codes,
                   code_bits=int(num_edges).bit_length())


def binned_estimator(*, num_edges: int = 30, lo: float = -1.0, hi: float = 1.0
                     ) -> Callable[[Float[Array, "n d"], Int[Array, "n"]], InformationPoint]:
  """The IDNNs binning estimator as a callable ``(t, labels) -> InformationPoint`` (nats), for
  :func:`information_plane`.

  Example:
    >>> from bottleneck_jax.information import binned_estimator
    >>> est = binned_estimator(num_edges=30)
    >>> callable(est)
    True
  """
  _check_binning("binned_estimator", num_edges, lo, hi)
  return lambda t, labels: binned_mi(t, labels, num_edges=num_edges, lo=lo, hi=hi)


def information_plane(layers: Sequence[Float[Array, "*checkpoints n d"]],
                      labels: Int[Array, "n"], *,
                      estimator: Callable[[Array, Array], tuple]
                      ) -> Float[Array, "*checkpoints layers 2"]:
  """``(I(X;T_l), I(T_l;Y))`` of every layer with any estimator, in the estimator's unit.

  Args:
    layers: one activation array per layer, each ``[N, d_l]`` or, for a whole training run at
      once, ``[C, N, d_l]`` with a common leading checkpoint axis (vmapped).
    labels: integer labels ``[N]`` (the same rows as the activations).
    estimator: ``(t [N, d], labels [N]) -> (i_xt, i_ty)``, e.g. :func:`binned_estimator`,
      :func:`~bottleneck_jax.information.adaptive_binning_estimator`, or
      ``lambda t, y: kde_mi(t, y, var=0.1)``; must be traceable for the vmapped case.

  Returns:
    ``[L, 2]`` (or ``[C, L, 2]``): column 0 ``I(X;T)``, column 1 ``I(T;Y)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from bottleneck_jax.information import binned_estimator, information_plane
    >>> y = jnp.array([0, 0, 1, 1])
    >>> layers = (jnp.array([[-.9], [-.5], [.5], [.9]]), jnp.array([[-.9], [-.9], [.9], [.9]]))
    >>> information_plane(layers, y, estimator=binned_estimator()).shape
    (2, 2)
  """
  fn = "information_plane"
  if not isinstance(layers, (list, tuple)) or not layers:
    raise TypeError(f"{fn}: layers must be a non-empty list or tuple of [N, d] (or [C, N, d]) "
                    f"arrays, got {type(layers).__name__}")
  if not callable(estimator):
    raise TypeError(f"{fn}: estimator must be callable (t, labels) -> (i_xt, i_ty), got "
                    f"{type(estimator).__name__}")
  ranks = set()
  for i, t in enumerate(layers):
    V.check_floating(fn, f"layers[{i}]", t)
    V.check_rank(fn, f"layers[{i}]", t, (2, 3))
    ranks.add(t.ndim)
  if len(ranks) != 1:
    raise ValueError(f"{fn}: layers must all be [N, d] or all be [C, N, d], got shapes "
                     f"{[list(t.shape) for t in layers]}")
  batched = ranks == {3}
  lead = {tuple(t.shape[:-1]) for t in layers}
  if len(lead) != 1:
    raise ValueError(f"{fn}: layers must share their leading axes ([C,] N), got shapes "
                     f"{[list(t.shape) for t in layers]}")
  n = layers[0].shape[-2]
  _check_labels(fn, labels, n)

  def one(t):
    out = estimator(t, labels)
    return jnp.stack([jnp.asarray(out[0], jnp.float32), jnp.asarray(out[1], jnp.float32)])

  f = jax.vmap(one) if batched else one
  return jnp.stack([f(t) for t in layers], axis=-2)


def logspaced_epochs(num_epochs: int, num_points: int) -> np.ndarray:
  """Distinct, increasing, roughly log-spaced epochs in ``[0, num_epochs]`` (0 and the last
  included), where the reference code measures the plane.

  Example:
    >>> from bottleneck_jax.information import logspaced_epochs
    >>> logspaced_epochs(1000, 6).tolist()
    [0, 3, 15, 62, 250, 1000]
  """
  fn = "logspaced_epochs"
  V.check_scalar(fn, "num_epochs", num_epochs, low=1, integer=True)
  V.check_scalar(fn, "num_points", num_points, low=2, integer=True)
  pts = np.unique(np.round(np.logspace(0, np.log10(num_epochs + 1), int(num_points))) - 1)
  return np.unique(np.concatenate([[0], pts, [num_epochs]]).astype(np.int64))


def plot_information_plane(path: str | os.PathLike, plane, epochs, *,
                           layer_names: Sequence[str] | None = None, title: str = "",
                           bits: bool = True, bounds: tuple[float, float] | None = None
                           ) -> Path:
  """Saves the information plane as a PNG: one curve per layer, points coloured by epoch.

  Args:
    path: the PNG file to write (folders are created).
    plane: ``[E, L, 2]`` values in nats (``(I(X;T), I(T;Y))`` per epoch and layer).
    epochs: ``[E]`` epoch numbers (the colour scale).
    layer_names: one label per layer (default ``T1..TL``).
    title: the figure title.
    bits: plot in bits (default) instead of nats.
    bounds: optional ``(H(X), H(Y))`` in the plotted unit, drawn as dashed lines.

  Returns:
    The path written.
  """
  fn = "plot_information_plane"
  p = np.asarray(plane, np.float64)
  e = np.asarray(epochs, np.float64)
  if p.ndim != 3 or p.shape[-1] != 2:
    raise ValueError(f"{fn}: plane must have shape [E, L, 2], got {list(p.shape)}")
  if e.shape != (p.shape[0],):
    raise ValueError(f"{fn}: epochs must have shape [{p.shape[0]}], got {list(e.shape)}")
  if bits:
    p = p / LN2
  names = list(layer_names) if layer_names is not None else [f"T{i + 1}"
                                                              for i in range(p.shape[1])]
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6.5, 4.5))
  try:
    norm = matplotlib.colors.LogNorm(vmin=max(e.min(), 1.0), vmax=max(e.max(), 2.0))
    for li in range(p.shape[1]):
      ax.plot(p[:, li, 0], p[:, li, 1], color="0.7", lw=0.6, zorder=1)
      sc = ax.scatter(p[:, li, 0], p[:, li, 1], c=np.maximum(e, 1.0), cmap="viridis",
                      norm=norm, s=12, zorder=2)
      ax.annotate(names[li], (p[-1, li, 0], p[-1, li, 1]), fontsize=8)
    if bounds is not None:
      ax.axvline(bounds[0], ls="--", color="k", lw=0.6)
      ax.axhline(bounds[1], ls="--", color="k", lw=0.6)
    fig.colorbar(sc, ax=ax, label="epoch")
    unit = "bits" if bits else "nats"
    ax.set_xlabel(f"I(X;T) ({unit})")
    ax.set_ylabel(f"I(T;Y) ({unit})")
    if title:
      ax.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
  finally:
    plt.close(fig)
  return path


class LayerwiseOutput(NamedTuple):
  """What :class:`LayerwiseMLP` returns.

  Attributes:
    logits: ``[B, C]``.
    hidden: one ``[B, d_l]`` activation per hidden layer (after the nonlinearity).
  """
  logits: Float[Array, "b c"]
  hidden: tuple


class LayerwiseMLP(nnx.Module):
  """An MLP that returns every hidden activation (for the information plane).

  Defaults are the paper's network: sizes ``12-10-7-5-4-3-2``, ``tanh``, weights drawn as
  TensorFlow's ``truncated_normal(stddev=1/sqrt(fan_in))`` (a normal with that scale, redrawn
  outside 2 scales) and zero biases (IDNNs ``model.py``).

  Args:
    sizes: layer widths, input first and number of classes last (at least 2 entries).
    activation: the hidden nonlinearity (``jnp.tanh``, ``jax.nn.relu``, ...).
    rngs: ``nnx.Rngs`` for the initialisation.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from bottleneck_jax.information import LayerwiseMLP
    >>> out = LayerwiseMLP(rngs=nnx.Rngs(0))(jnp.zeros((3, 12)))
    >>> out.logits.shape, [h.shape[1] for h in out.hidden]
    ((3, 2), [10, 7, 5, 4, 3])
  """

  def __init__(self, sizes: Sequence[int] = (12, 10, 7, 5, 4, 3, 2), *,
               activation: Callable = jnp.tanh, rngs: nnx.Rngs):
    fn = "LayerwiseMLP"
    sizes = tuple(sizes)
    if len(sizes) < 2 or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in sizes):
      raise ValueError(f"{fn}: sizes must be >= 2 positive ints (input ... classes), got "
                       f"{list(sizes)}")
    if not callable(activation):
      raise TypeError(f"{fn}: activation must be callable, got {type(activation).__name__}")
    self.activation = activation
    self.layers = nnx.List([
        nnx.Linear(int(a), int(b), rngs=rngs, bias_init=nnx.initializers.zeros,
                   kernel_init=jax.nn.initializers.truncated_normal(1.0 / math.sqrt(int(a))))
        for a, b in zip(sizes[:-1], sizes[1:])])

  def __call__(self, x: Float[Array, "b d"]) -> LayerwiseOutput:
    hidden = []
    h = x
    for layer in self.layers[:-1]:
      h = self.activation(layer(h))
      hidden.append(h)
    return LayerwiseOutput(self.layers[-1](h), tuple(hidden))


__all__ = [
    "InformationPoint",
    "LayerwiseMLP",
    "LayerwiseOutput",
    "binned_estimator",
    "binned_mi",
    "information_plane",
    "logspaced_epochs",
    "plot_information_plane",
    "uniform_bin_codes",
]
