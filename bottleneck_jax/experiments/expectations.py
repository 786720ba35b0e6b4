"""Expectations as data: what counts as reproduced, fixed before measuring.

An :class:`Expectation` compares one measured metric with a threshold — a number, a boolean, or
a :class:`Ref` to another measured metric (``scale * other + offset``) — and names its source
(the paper, or the test plan). The registry evaluates an experiment's expectations on the
measurements its ``run`` returns; ``run`` itself never decides. A :class:`Metric` documents a
measured quantity and, where it has one, its range, so that an expectation that cannot fail
(``accuracy <= 1``) is refused when the experiment is registered.

Verdicts: a metric that is missing from the measurements is an error (the experiment is broken,
not unlucky); a NaN measurement or threshold is a miss; a value outside its documented range is
an error.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import operator
from collections.abc import Mapping
from typing import Any, Literal

Op = Literal[">", ">=", "<", "<=", "==", "!="]
OPS: dict[str, Any] = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
                       "==": operator.eq, "!=": operator.ne}


class MissingMetricError(RuntimeError):
  """The measurements lack a metric that an expectation reads (a defect of the experiment)."""


def _num(v: float) -> str:
  """A short text for a number that still reads back as the same number."""
  if isinstance(v, bool):
    return str(v)
  if isinstance(v, int):
    return str(v)
  g = format(v, "g")
  return g if float(g) == v else repr(float(v))


def _is_number(v) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _is_bool(v) -> bool:
  if isinstance(v, bool):
    return True
  return type(v).__name__ in ("bool_", "bool") and hasattr(v, "dtype")  # numpy / jax booleans


def _scalar(v):
  """A plain Python scalar from a number, a NumPy/JAX scalar or a 0-d array; else ``v``."""
  if hasattr(v, "shape") and getattr(v, "shape", None) == () and hasattr(v, "item"):
    v = v.item()
  elif hasattr(v, "item") and not isinstance(v, (list, tuple, dict, str)):
    try:
      v = v.item()
    except (ValueError, TypeError):
      pass
  return v


@dataclasses.dataclass(frozen=True)
class Ref:
  """A threshold read from another measured metric: ``scale * measurements[metric] + offset``.

  ``Ref("deterministic_accuracy", offset=-0.01)`` renders as ``deterministic_accuracy - 0.01``.
  """

  metric: str
  scale: float = 1.0
  offset: float = 0.0

  def __post_init__(self):
    if not isinstance(self.metric, str) or not self.metric:
      raise ValueError(f"Ref: metric must be a non-empty str, got {self.metric!r}")
    for k in ("scale", "offset"):
      v = getattr(self, k)
      if not _is_number(v) or not math.isfinite(v):
        raise ValueError(f"Ref: {k} must be a finite number, got {v!r}")
    if self.scale == 0:
      raise ValueError("Ref: scale must be non-zero (a constant threshold is a plain number)")

  def resolve(self, measurements: Mapping[str, Any]) -> float:
    if self.metric not in measurements:
      raise MissingMetricError(f"the measurements have no {self.metric!r} (read by a threshold); "
                               f"they have {sorted(measurements)}")
    v = _scalar(measurements[self.metric])
    if not _is_number(v):
      raise RuntimeError(f"metric {self.metric!r} must be a number, got {type(v).__name__} {v!r}")
    return self.scale * float(v) + self.offset

  def __str__(self) -> str:
    s = self.metric if self.scale == 1 else f"{_num(self.scale)} * {self.metric}"
    if self.offset > 0:
      s += f" + {_num(self.offset)}"
    elif self.offset < 0:
      s += f" - {_num(-self.offset)}"
    return s


Threshold = float | int | bool | Ref


def _check_threshold(fn: str, name: str, op: str, v) -> None:
  if isinstance(v, str):
    raise ValueError(f"{fn}: {name} must be a number, a bool or Ref(metric, ...), got the str "
                     f"{v!r} (to compare with another metric use Ref({v!r}))")
  if _is_bool(v):
    if op not in ("==", "!="):
      raise ValueError(f"{fn}: a boolean {name} needs op '==' or '!=', got {op!r}")
    return
  if isinstance(v, Ref):
    return
  if not _is_number(v) or not math.isfinite(v):
    raise ValueError(f"{fn}: {name} must be a finite number, a bool or Ref(metric, ...), got "
                     f"{v!r}")


@dataclasses.dataclass(frozen=True)
class Expectation:
  """``metric op value`` must hold for the experiment to count as reproduced.

  Attributes:
    metric: a key of the measurements that ``run`` returns.
    op: one of ``>``, ``>=``, ``<``, ``<=``, ``==``, ``!=``.
    value: the threshold: a finite number, a bool (with ``==``/``!=``), or a :class:`Ref` to
      another measured metric.
    source: where the threshold comes from, fixed before measuring (``"paper Table 2"``,
      ``"the project's test plan, Deep VIB"``); never loosened after.
    reads: the configuration keys the verdict depends on (``("beta", "steps")``); each must be
      a key of the experiment's defaults.
    quick_value: the threshold of a quick (smoke-test) run, if it differs; a quick run is never
      a reproduction.
  """

  metric: str
  op: Op
  value: Threshold
  source: str
  reads: tuple[str, ...] = ()
  quick_value: Threshold | None = None

  def __post_init__(self):
    fn = "Expectation"
    if not isinstance(self.metric, str) or not self.metric:
      raise ValueError(f"{fn}: metric must be a non-empty str, got {self.metric!r}")
    if self.op not in OPS:
      raise ValueError(f"{fn}: op must be one of {list(OPS)}, got {self.op!r}")
    _check_threshold(fn, "value", self.op, self.value)
    if self.quick_value is not None:
      _check_threshold(fn, "quick_value", self.op, self.quick_value)
      if _is_bool(self.quick_value) != _is_bool(self.value):
        raise ValueError(f"{fn}: quick_value and value must both be booleans or both not")
    if not isinstance(self.source, str) or not self.source.strip():
      raise ValueError(f"{fn}: source must name the paper or the test plan the threshold comes "
                       f"from, got {self.source!r}")
    reads = tuple(self.reads) if isinstance(self.reads, (list, tuple)) else self.reads
    if not isinstance(reads, tuple) or not all(isinstance(k, str) and k for k in reads):
      raise ValueError(f"{fn}: reads must be a tuple of config keys, got {self.reads!r}")
    object.__setattr__(self, "reads", reads)
    for v in (self.value, self.quick_value):
      if isinstance(v, Ref) and v.metric == self.metric:
        raise ValueError(f"{fn}: {self.metric!r} compared with itself cannot be a claim")

  def threshold(self, *, quick: bool = False) -> Threshold:
    """The declared threshold (the quick one in a quick run, when there is one)."""
    return self.quick_value if quick and self.quick_value is not None else self.value

  def metrics(self) -> tuple[str, ...]:
    """The measured metrics this expectation reads."""
    refs = tuple(v.metric for v in (self.value, self.quick_value) if isinstance(v, Ref))
    return (self.metric,) + tuple(dict.fromkeys(refs))

  def render(self, *, quick: bool = False, source: bool = True) -> str:
    """``"test_accuracy >= 0.93 (source: spec ...)"``."""
    v = self.threshold(quick=quick)
    text = f"{self.metric} {self.op} {v if isinstance(v, Ref) else _num(v)}"
    return text + (f" (source: {self.source})" if source else "")

  def __str__(self) -> str:
    return self.render()

  def check(self, measurements: Mapping[str, Any], *, quick: bool = False) -> dict[str, Any]:
    """Evaluates the expectation on the measurements; a JSON-able result dict.

    Returns ``{"metric", "op", "threshold", "value", "held", "source", "expectation"}``
    (``threshold`` resolved to a number when it is a :class:`Ref`).

    Raises:
      MissingMetricError: the metric (or a referenced one) is not measured.
      RuntimeError: the measured value has the wrong type.
    """
    if self.metric not in measurements:
      raise MissingMetricError(f"the measurements have no {self.metric!r} (read by the "
                               f"expectation {self.render(source=False)!r}); they have "
                               f"{sorted(measurements)}")
    value = _scalar(measurements[self.metric])
    t = self.threshold(quick=quick)
    if _is_bool(t):
      if not _is_bool(value):
        raise RuntimeError(f"metric {self.metric!r} must be a bool for "
                           f"{self.render(source=False)!r}, got {type(value).__name__} {value!r}")
      value, threshold = bool(value), bool(t)
      held = bool(OPS[self.op](value, threshold))
    else:
      if not _is_number(value):
        raise RuntimeError(f"metric {self.metric!r} must be a number for "
                           f"{self.render(source=False)!r}, got {type(value).__name__} {value!r}")
      value = float(value)
      threshold = t.resolve(measurements) if isinstance(t, Ref) else float(t)
      held = (not math.isnan(value) and not math.isnan(threshold)
              and bool(OPS[self.op](value, threshold)))
    return {"metric": self.metric, "op": self.op, "threshold": threshold, "value": value,
            "held": held, "source": self.source,
            "expectation": self.render(quick=quick, source=False)}


@dataclasses.dataclass(frozen=True)
class Metric:
  """Documents a measured quantity: what it is, and (where it has one) its range.

  ``Metric("fraction of held-out digits classified correctly", low=0, high=1)``. The range
  lets :func:`cannot_fail` find an expectation that holds for every possible value.
  """

  doc: str
  low: float | None = None
  high: float | None = None

  def __post_init__(self):
    if not isinstance(self.doc, str) or not self.doc.strip():
      raise ValueError(f"Metric: doc must be a non-empty str, got {self.doc!r}")
    for k in ("low", "high"):
      v = getattr(self, k)
      if v is not None and (not _is_number(v) or math.isnan(v)):
        raise ValueError(f"Metric: {k} must be a number or None, got {v!r}")
    if self.low is not None and self.high is not None and not self.low < self.high:
      raise ValueError(f"Metric: low must be < high, got {self.low} and {self.high}")


def as_metric(m) -> Metric:
  """A :class:`Metric` from a ``Metric`` or a plain docstring."""
  return m if isinstance(m, Metric) else Metric(m)


def cannot_fail(e: Expectation, metric: Metric, *, quick: bool = False) -> bool:
  """True when a constant threshold holds for every value in the metric's documented range
  (``accuracy <= 1`` with ``high=1``; ``bits >= 0`` with ``low=0``)."""
  t = e.threshold(quick=quick)
  if isinstance(t, Ref) or _is_bool(t):
    return False
  lo = -math.inf if metric.low is None else metric.low
  hi = math.inf if metric.high is None else metric.high
  if e.op == ">":
    return lo > t
  if e.op == ">=":
    return lo >= t
  if e.op == "<":
    return hi < t
  if e.op == "<=":
    return hi <= t
  if e.op == "!=":
    return t < lo or t > hi
  return False  # "==": fails for any other value in the range


def evaluate(expectations, measurements: Mapping[str, Any], *, quick: bool = False,
             metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """Evaluates every expectation; ``{"expectations": [...], "expectation_held": bool}``.

  ``held`` is true only when every expectation holds (and there is at least one). With
  ``metrics`` (name -> :class:`Metric`), a measured value outside its documented range is an
  error.

  Raises:
    MissingMetricError: a metric an expectation reads is not measured.
    RuntimeError: a value of the wrong type, or outside its documented range.
  """
  results = [e.check(measurements, quick=quick) for e in expectations]
  for name, m in (metrics or {}).items():
    m = as_metric(m)
    if name not in measurements or (m.low is None and m.high is None):
      continue
    v = _scalar(measurements[name])
    if not _is_number(v) or math.isnan(v):
      continue
    tol = 1e-9 * max(1.0, abs(v))
    if (m.low is not None and v < m.low - tol) or (m.high is not None and v > m.high + tol):
      raise RuntimeError(f"metric {name!r} = {v!r} is outside its documented range "
                         f"[{m.low}, {m.high}]")
  return {"expectations": results,
          "expectation_held": bool(results) and all(r["held"] for r in results)}


__all__ = [
    "OPS",
    "Expectation",
    "Metric",
    "MissingMetricError",
    "Ref",
    "as_metric",
    "cannot_fail",
    "evaluate",
]
