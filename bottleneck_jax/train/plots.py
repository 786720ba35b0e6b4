"""PNG plots of training curves with matplotlib's Agg backend (no display needed).

:func:`plot_curves` draws labelled ``(x, y)`` curves into one PNG; :func:`pyplot` gives
``matplotlib.pyplot`` on the Agg backend and :func:`save_figure` writes and closes a figure,
for plots that need more than curves (bars, histograms, several panels).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def pyplot():
  """``matplotlib.pyplot`` with the non-interactive Agg backend."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 100) -> Path:
  """``tight_layout``, save as PNG (the folder is created) and close ``fig``; returns the path."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  try:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
  finally:
    pyplot().close(fig)
  return path


def _scale(ax, axis: str, value) -> None:
  if value is False or value is None:
    return
  setter = ax.set_xscale if axis == "x" else ax.set_yscale
  if value is True:
    setter("log")
  elif value == "symlog":
    setter("symlog")
  else:
    setter("log", base=value)


def plot_curves(path: str | os.PathLike,
                curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                *,
                xlabel: str = "step",
                ylabel: str = "",
                title: str | None = None,
                logx: bool | float | str = False,
                logy: bool | float | str = False,
                styles: Mapping[str, Mapping[str, Any]] | None = None,
                hline: float | None = None,
                figsize: tuple[float, float] = (5.2, 3.4),
                dpi: int = 100) -> Path:
  """Draws ``{label: (xs, ys)}`` as lines in one PNG.

  Args:
    path: the PNG to write (its folder is created).
    curves: label -> ``(xs, ys)`` of equal lengths; an empty curve is skipped.
    xlabel, ylabel, title: axis labels and title.
    logx, logy: ``True`` for a log axis, a number for a log axis of that base, ``"symlog"``.
    styles: label -> extra ``Axes.plot`` keywords (``{"ls": "--", "marker": "o"}``).
    hline: draw a dotted horizontal reference line at this value.
    figsize, dpi: figure size (inches) and resolution.

  Returns:
    The path written.

  Example:
    >>> import tempfile, os
    >>> out = plot_curves(os.path.join(tempfile.mkdtemp(), "loss.png"),
    ...                   {"adam": ([1, 2, 3], [1.0, 0.5, 0.25])}, ylabel="loss", logy=True)
    >>> out.stat().st_size > 0
    True
  """
  fn = "plot_curves"
  if not isinstance(curves, Mapping) or not curves:
    raise ValueError(f"{fn}: curves must be a non-empty dict label -> (xs, ys), got "
                     f"{type(curves).__name__}")
  for label, xy in curves.items():
    if not isinstance(xy, (tuple, list)) or len(xy) != 2 or len(xy[0]) != len(xy[1]):
      raise ValueError(f"{fn}: curves[{label!r}] must be (xs, ys) of equal lengths, got "
                       f"{type(xy).__name__}")
  plt = pyplot()
  fig, ax = plt.subplots(figsize=figsize)
  for label, (xs, ys) in curves.items():
    if len(xs):
      ax.plot(np.asarray(xs), np.asarray(ys), label=label, **dict((styles or {}).get(label, {})))
  if hline is not None:
    ax.axhline(hline, color="gray", lw=0.8, ls=":")
  _scale(ax, "x", logx)
  _scale(ax, "y", logy)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title, fontsize=9)
  if len(curves) > 1:
    ax.legend(fontsize=8)
  return save_figure(fig, path, dpi=dpi)


__all__ = ["plot_curves", "pyplot", "save_figure"]
