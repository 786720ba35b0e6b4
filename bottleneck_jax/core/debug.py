"""Opt-in numerical guards: NaN/Inf checks that are off by default and never silent.

Two ways, both from JAX itself:

* :func:`checked` wraps a function with ``jax.experimental.checkify``'s float checks (NaN and
  Inf produced by any primitive, division by zero) plus index checks, and raises a
  ``FloatingPointError`` that names the function and the first failing operation. It works
  under ``jit`` (the check travels as a value) and costs a little speed, so use it while
  debugging. Pallas kernels do not support checkify: debug them through their ``"xla"`` or
  ``"reference"`` implementation (``with bottleneck_jax.kernels.force("reference"):``).
* :func:`debug_nans` is a context manager around JAX's ``jax_debug_nans`` flag, which re-runs
  the failing primitive eagerly to point at it (slow; no ``jit`` speed).

Example::

    from bottleneck_jax.core.debug import checked
    safe_vib = checked(vib)
    out = safe_vib(mean, std, key=key)   # raises FloatingPointError on a NaN rate
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import jax
from jax.experimental import checkify

_ERRORS = checkify.float_checks | checkify.index_checks


def checked(fn: Callable, *, jit: bool = True) -> Callable:
  """``fn`` with NaN/Inf/division-by-zero/out-of-bounds-index checks that raise.

  Args:
    fn: any JAX-traceable function (keyword arguments that are not arrays are treated as
      static, as they are in this library's pure functions).
    jit: compile the checked function (the check adds outputs, not host syncs). Each call
      traces anew (keyword arguments are closed over): a debugging tool, not a training path.

  Returns:
    A function with ``fn``'s signature and outputs that raises ``FloatingPointError`` naming
    ``fn`` and the failing operation when a check fails.
  """
  name = getattr(fn, "__name__", repr(fn))

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    def call(*a):
      return fn(*a, **kwargs)

    checked_call = checkify.checkify(call, errors=_ERRORS)
    if jit:
      checked_call = jax.jit(checked_call)
    err, out = checked_call(*args)
    msg = err.get()
    if msg is not None:
      raise FloatingPointError(f"{name}: numerical check failed: {msg}")
    return out

  return wrapper


@contextlib.contextmanager
def debug_nans(enabled: bool = True):
  """Context manager: JAX's ``jax_debug_nans`` inside (re-runs a NaN-producing op eagerly)."""
  prev = jax.config.jax_debug_nans
  jax.config.update("jax_debug_nans", enabled)
  try:
    yield
  finally:
    jax.config.update("jax_debug_nans", prev)


__all__ = ["checked", "debug_nans"]
