"""bottleneck_jax: bottlenecks in JAX behind one functional interface.

The top-level package exposes the families and ``__version__``; import what you need from a
family, e.g. ``from bottleneck_jax.information import vib``.
"""

from importlib import import_module as _import_module

__version__ = "0.1.0"

_FAMILIES = (
    "core",
    "kernels",
    "ops",
    "information",
    "concepts",
    "quantize",
    "compression",
    "efficiency",
    "attention",
    "architecture",
    "objectives",
    "data",
    "train",
    "experiments",
    "catalog",
)


def __getattr__(name):  # lazy: `import bottleneck_jax` stays light
  if name in _FAMILIES:
    return _import_module(f"bottleneck_jax.{name}")
  raise AttributeError(f"module 'bottleneck_jax' has no attribute {name!r}")


def __dir__():
  return sorted(list(_FAMILIES) + ["__version__"])


__all__ = ["__version__", *_FAMILIES]
