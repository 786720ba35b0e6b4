"""Implementation dispatch: one public op, several implementations.

A hot spot is one public function with an ``implementation=`` argument:

* ``"reference"`` — plain ``jnp``, materialises everything; the oracle in tests;
* ``"xla"`` — memory-efficient XLA (chunked ``lax`` loops + ``custom_vjp``); runs everywhere and
  is the default on CPU;
* ``"pallas"`` — a ``jax.experimental.pallas`` kernel; native on GPU/TPU, ``interpret=True`` on
  CPU (see :func:`pallas_interpret`);
* ``"triton"`` — optional, GPU only, through jax-triton.

Each implementation is registered together with the platforms it has been validated on.
``implementation=None`` tries the platform's default order (:func:`default_order`), restricted to
implementations validated on the current platform, and falls back past one that raises
:class:`UnsupportedInput` (and only that: a ``NotImplementedError`` raised by JAX itself is a real
error and propagates), logging the first fallback of each op at WARNING. An explicit string runs
exactly that implementation, on any platform, and re-raises its reason. A sequence is tried in
order; if all fail, an :class:`UnsupportedInput` lists every reason.

Each op registers its implementations in an :class:`Op`::

    my_op = Op("my_op", {"reference": f_ref, "xla": f_xla, "pallas": f_pallas},
               validated_on={"pallas": ("gpu",)})
    out = my_op(x, w, implementation=implementation)
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import jax

logger = logging.getLogger("bottleneck_jax.kernels")

IMPLEMENTATIONS: tuple[str, ...] = ("reference", "xla", "pallas", "triton")
Implementation = Literal["reference", "xla", "pallas", "triton"]
PLATFORMS: tuple[str, ...] = ("cpu", "gpu", "tpu")


class UnsupportedInput(NotImplementedError):
  """An implementation cannot run these inputs (shape, dtype, platform): the dispatcher may fall
  back to the next implementation. Raise it before any tracing work, with the reason."""

_DEFAULT_ORDER: dict[str, tuple[str, ...]] = {
    "cpu": ("xla",),
    "gpu": ("pallas", "xla"),
    "cuda": ("pallas", "xla"),
    "rocm": ("pallas", "xla"),
    "tpu": ("pallas", "xla"),
}

_state = threading.local()


def backend() -> str:
  """The default JAX backend's platform name: ``"cpu"``, ``"gpu"`` or ``"tpu"``."""
  return jax.default_backend()


def default_order(platform: str | None = None) -> tuple[str, ...]:
  """Implementations tried, in order, when ``implementation=None``."""
  platform = platform or backend()
  return _DEFAULT_ORDER.get(platform, ("xla",))


@contextlib.contextmanager
def force(implementation: str | Sequence[str] | None):
  """Context manager: every op called with ``implementation=None`` inside uses this instead.

  The choice happens when an op is traced: a function already compiled by ``jax.jit`` keeps
  the implementation it was traced with (clear its cache or jit a new function to switch).

  Example::

      with bottleneck_jax.kernels.force("reference"):
        loss = linear_cross_entropy(x, w, labels)
  """
  if implementation is not None:
    _normalise("force", implementation)
  prev = getattr(_state, "forced", None)
  _state.forced = implementation
  try:
    yield
  finally:
    _state.forced = prev


def forced() -> str | Sequence[str] | None:
  """The implementation set by an enclosing :func:`force`, if any."""
  return getattr(_state, "forced", None)


def pallas_interpret(platform: str | None = None) -> bool:
  """Whether Pallas kernels should run with ``interpret=True``.

  True on CPU (there is no native Pallas lowering there), or when the environment variable
  ``BOTTLENECK_JAX_PALLAS_INTERPRET=1`` asks for it on any backend (debugging).
  """
  env = os.environ.get("BOTTLENECK_JAX_PALLAS_INTERPRET", "")
  if env.strip() in ("1", "true", "True"):
    return True
  return (platform or backend()) == "cpu"


def _normalise(name: str, implementation) -> tuple[tuple[str, ...], bool]:
  """Returns ``(order, explicit)``; validates names."""
  if isinstance(implementation, str):
    order, explicit = (implementation,), True
  elif isinstance(implementation, Sequence) and not isinstance(implementation, (bytes, bytearray)):
    order, explicit = tuple(implementation), False
    if not order:
      raise ValueError(f"{name}: implementation must be None, a name or a non-empty sequence of "
                       f"names from {list(IMPLEMENTATIONS)}, got an empty sequence")
  else:
    raise TypeError(f"{name}: implementation must be None, a str or a sequence of str, got "
                    f"{type(implementation).__name__}")
  for impl in order:
    if impl not in IMPLEMENTATIONS:
      raise ValueError(f"{name}: unknown implementation {impl!r}; expected None or one of "
                       f"{list(IMPLEMENTATIONS)}")
  return order, explicit


class Op:
  """A named op with several registered implementations and a dispatcher."""

  """A named op with several registered implementations and a dispatcher.

  Args:
    name: the public op's name (used in messages).
    implementations: ``{implementation name: function}``.
    validated_on: ``{implementation name: platforms}`` on which an implementation has been
      validated and may therefore be picked by default; implementations not listed are validated
      on every platform (``"reference"`` and ``"xla"`` usually). An explicit
      ``implementation="pallas"`` runs on any platform (e.g. interpret mode on CPU).
  """

  def __init__(self, name: str, implementations: Mapping[str, Callable[..., Any]], *,
               validated_on: Mapping[str, Sequence[str]] | None = None):
    for impl in implementations:
      if impl not in IMPLEMENTATIONS:
        raise ValueError(f"Op({name!r}): unknown implementation name {impl!r}")
    validated = {impl: PLATFORMS for impl in implementations}
    for impl, platforms in dict(validated_on or {}).items():
      if impl not in implementations:
        raise ValueError(f"Op({name!r}): validated_on names {impl!r}, which is not registered")
      bad = [p for p in platforms if p not in PLATFORMS]
      if bad or isinstance(platforms, str):
        raise ValueError(f"Op({name!r}): validated_on[{impl!r}] must be a sequence of "
                         f"{list(PLATFORMS)}, got {platforms!r}")
      validated[impl] = tuple(platforms)
    self.name = name
    self.implementations = dict(implementations)
    self.validated_on = validated
    self._warned = False

  def available(self) -> tuple[str, ...]:
    """Names of the registered implementations."""
    return tuple(self.implementations)

  def resolve(self, implementation) -> tuple[tuple[str, ...], bool]:
    """The order of implementations to try and whether the choice was explicit."""
    if implementation is None:
      implementation = forced()
    if implementation is None:
      platform = _platform_family(backend())
      order = tuple(i for i in default_order() if i in self.implementations
                    and platform in self.validated_on[i])
      if not order:  # an op with no validated implementation of the platform's default kinds
        order = ("xla",) if "xla" in self.implementations else ("reference",)
      return order, False
    order, explicit = _normalise(self.name, implementation)
    for impl in order:
      if impl not in self.implementations:
        if explicit:
          raise ValueError(f"{self.name}: implementation {impl!r} is not available for this op; "
                           f"available: {list(self.implementations)}")
    return order, explicit

  def __call__(self, *args, implementation=None, **kwargs):
    order, explicit = self.resolve(implementation)
    reasons = []
    for impl in order:
      fn = self.implementations.get(impl)
      if fn is None:
        reasons.append(f"{impl}: not registered for {self.name}")
        continue
      try:
        return fn(*args, **kwargs)
      except UnsupportedInput as e:
        if explicit:
          raise UnsupportedInput(f"{self.name}: implementation {impl!r} cannot run these "
                                 f"inputs: {e}") from e
        if not self._warned:
          self._warned = True
          logger.warning("%s: implementation %r cannot run these inputs (%s); falling back "
                         "(logged once per op)", self.name, impl, e)
        else:
          logger.debug("%s: implementation %r unavailable (%s); falling back", self.name, impl, e)
        reasons.append(f"{impl}: {e}")
    raise UnsupportedInput(f"{self.name}: no implementation could run these inputs; tried "
                           + "; ".join(reasons))


def _platform_family(platform: str) -> str:
  return "gpu" if platform in ("gpu", "cuda", "rocm") else platform


__all__ = [
    "IMPLEMENTATIONS",
    "PLATFORMS",
    "Implementation",
    "Op",
    "UnsupportedInput",
    "backend",
    "default_order",
    "force",
    "forced",
    "pallas_interpret",
]
