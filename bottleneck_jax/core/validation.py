"""Input validation that runs in Python, before tracing.

Every helper raises ``ValueError`` or ``TypeError`` with a message of the form
``"{fn}: {arg} must be <expected>, got <actual>"`` so that a user mistake never becomes an XLA
traceback. The helpers only read static information (shapes, dtypes, Python values), so they are
safe to call on tracers inside ``jit``/``vmap``/``grad``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _shape(x) -> tuple[int, ...]:
  return tuple(np.shape(x)) if not hasattr(x, "shape") else tuple(x.shape)


def _dtype(x):
  if hasattr(x, "dtype"):
    return jnp.dtype(x.dtype)
  return jnp.result_type(x)


def describe(x) -> str:
  """A short human description of an array-like: ``float32[8, 3]``."""
  if hasattr(x, "shape") and hasattr(x, "dtype"):
    return f"{jnp.dtype(x.dtype).name}{list(x.shape)}"
  return f"{type(x).__name__} {x!r}"


def check_array(fn: str, arg: str, x: Any) -> None:
  """Checks that ``x`` is an array (anything with shape and dtype) or a Python/NumPy scalar.

  Lists and tuples are refused with a hint: ``jnp`` operations do not take them either.
  """
  if hasattr(x, "shape") and hasattr(x, "dtype"):
    return
  if isinstance(x, (int, float, np.number)) and not isinstance(x, bool):
    return
  if isinstance(x, (list, tuple)):
    raise TypeError(f"{fn}: {arg} must be an array, got {type(x).__name__} (convert it with "
                    f"jnp.asarray)")
  raise TypeError(f"{fn}: {arg} must be an array, got {type(x).__name__}")


def check_rank(fn: str, arg: str, x: Any, rank: int | Iterable[int] | None = None, *,
               min_rank: int | None = None) -> None:
  """Checks ``x.ndim``: equal to ``rank`` (one or several allowed), or at least ``min_rank``."""
  check_array(fn, arg, x)
  nd = len(_shape(x))
  if rank is not None:
    allowed = (rank,) if isinstance(rank, int) else tuple(rank)
    if nd not in allowed:
      exp = " or ".join(str(r) for r in allowed)
      raise ValueError(f"{fn}: {arg} must have rank {exp}, got rank {nd} (shape {_shape(x)})")
  if min_rank is not None and nd < min_rank:
    raise ValueError(f"{fn}: {arg} must have rank >= {min_rank}, got rank {nd} "
                     f"(shape {_shape(x)})")


def check_shape(fn: str, arg: str, x: Any, expected: Sequence[int | None | str]) -> None:
  """Checks ``x.shape`` against ``expected``; ``None`` entries match any size."""
  shape = _shape(x)
  ok = len(shape) == len(expected) and all(
      e is None or isinstance(e, str) or s == e for s, e in zip(shape, expected))
  if not ok:
    exp = "[" + ", ".join("*" if e is None else str(e) for e in expected) + "]"
    raise ValueError(f"{fn}: {arg} must have shape {exp}, got {list(shape)}")


def check_same_shape(fn: str, arg_a: str, a: Any, arg_b: str, b: Any) -> None:
  """Checks that two arrays have identical shapes."""
  if _shape(a) != _shape(b):
    raise ValueError(f"{fn}: {arg_a} and {arg_b} must have the same shape, got "
                     f"{list(_shape(a))} and {list(_shape(b))}")


def check_axis_size(fn: str, arg: str, x: Any, axis: int, size: int, what: str = "") -> None:
  """Checks ``x.shape[axis] == size``."""
  shape = _shape(x)
  if shape[axis] != size:
    extra = f" ({what})" if what else ""
    raise ValueError(f"{fn}: {arg} must have size {size} on axis {axis}{extra}, got shape "
                     f"{list(shape)}")


def check_floating(fn: str, arg: str, x: Any, allowed: Iterable[Any] | None = None) -> None:
  """Checks that ``x`` has a floating dtype (optionally one of ``allowed``)."""
  check_array(fn, arg, x)
  dt = _dtype(x)
  if not jnp.issubdtype(dt, jnp.floating):
    raise TypeError(f"{fn}: {arg} must have a floating dtype, got {dt.name}")
  if allowed is not None:
    allowed = tuple(jnp.dtype(a) for a in allowed)
    if dt not in allowed:
      raise TypeError(f"{fn}: {arg} must have dtype in {[a.name for a in allowed]}, got {dt.name}")


def check_integer(fn: str, arg: str, x: Any) -> None:
  """Checks that ``x`` has an integer dtype."""
  check_array(fn, arg, x)
  dt = _dtype(x)
  if not jnp.issubdtype(dt, jnp.integer):
    raise TypeError(f"{fn}: {arg} must have an integer dtype, got {dt.name}")


def check_bool_or_int(fn: str, arg: str, x: Any) -> None:
  """Checks that ``x`` is a boolean or integer mask."""
  check_array(fn, arg, x)
  dt = _dtype(x)
  if not (dt == jnp.bool_ or jnp.issubdtype(dt, jnp.integer)):
    raise TypeError(f"{fn}: {arg} must be a boolean or integer mask, got {dt.name}")


def _is_concrete_number(v) -> bool:
  return isinstance(v, (int, float, np.number)) and not isinstance(v, bool)


def check_scalar(fn: str, arg: str, v: Any, *, low: float | None = None,
                 high: float | None = None, low_inclusive: bool = True,
                 high_inclusive: bool = True, integer: bool = False,
                 static: bool = False) -> None:
  """Checks a Python (static) scalar configuration value lies in a range.

  Traced values (e.g. a ``beta`` swept under ``vmap``) are accepted without a range check,
  unless ``static=True``: the value configures the computation itself (an epsilon, a cap, a
  block size) and must be a Python number, so a traced one is a ``TypeError``.
  """
  if isinstance(v, jax.core.Tracer):
    if static:
      raise TypeError(f"{fn}: {arg} must be a static Python number (it configures the "
                      f"computation), got a traced value; pass it as a Python float or mark it "
                      f"static in jax.jit")
    return
  if hasattr(v, "shape") and _shape(v) == ():
    try:
      v = v.item()
    except Exception:  # noqa: BLE001 - not concrete
      return
  if integer:
    if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool)):
      raise TypeError(f"{fn}: {arg} must be an int, got {type(v).__name__} {v!r}")
  elif not _is_concrete_number(v):
    raise TypeError(f"{fn}: {arg} must be a number, got {type(v).__name__} {v!r}")
  if v != v:  # NaN
    raise ValueError(f"{fn}: {arg} must be a number, got nan")
  if low is not None and (v < low or (v == low and not low_inclusive)):
    op = ">=" if low_inclusive else ">"
    raise ValueError(f"{fn}: {arg} must be {op} {low}, got {v}")
  if high is not None and (v > high or (v == high and not high_inclusive)):
    op = "<=" if high_inclusive else "<"
    raise ValueError(f"{fn}: {arg} must be {op} {high}, got {v}")


def check_choice(fn: str, arg: str, v: Any, choices: Iterable[Any]) -> None:
  """Checks that ``v`` is one of ``choices``."""
  choices = tuple(choices)
  if v not in choices:
    raise ValueError(f"{fn}: {arg} must be one of {list(choices)}, got {v!r}")


__all__ = [
    "describe",
    "check_array",
    "check_rank",
    "check_shape",
    "check_same_shape",
    "check_axis_size",
    "check_floating",
    "check_integer",
    "check_bool_or_int",
    "check_scalar",
    "check_choice",
]
