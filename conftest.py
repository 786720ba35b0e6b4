"""Test configuration: 8 CPU devices before JAX starts, strict dtype promotion, a persistent
compilation cache, and auto-skipping of accelerator-only tests.

At the repository root so that it applies however pytest is started: ``pytest``, ``pytest tests``
and ``pytest bottleneck_jax`` (the docstring examples alone) all run under it."""

import os

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("JAX_PLATFORMS", "cpu") if os.environ.get("CI") else None
# Not --xla_backend_optimization_level=0, although it saves ~15 % of the suite's CPU time: at that
# level a run resumed from a checkpoint is no longer bit-identical to the uninterrupted one
# (tests/train/test_faults.py::test_sigkill_during_an_async_save_resumes_exactly, ~1e-7 apart).
# XLA:CPU's older fusion emitters compile the suite's tiny programs with less CPU time (a
# tests/quantize sample: see the commit); the resume above stays bit-identical under them.
# Appended, so a user's own XLA_FLAGS still apply. Only on the jaxlib line it was measured on:
# XLA aborts on a flag it does not know, so a newer jaxlib runs without it until re-measured.
_FLAG = "--xla_cpu_use_fusion_emitters=false"


def _jaxlib_line():
  from importlib.metadata import PackageNotFoundError, version
  try:
    return tuple(int(p) for p in version("jaxlib").split(".")[:2])
  except (PackageNotFoundError, ValueError):
    return None


if _jaxlib_line() == (0, 10) and _FLAG.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
_cache = os.path.join(os.path.expanduser("~"), ".cache", "bottleneck_jax", "jax_cache")
try:
  os.makedirs(_cache, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", _cache)
  # Every compile, however quick: with 2 xdist workers the second one to need a program reads it
  # instead of compiling it again. A 0.5 s threshold cached what happened to compile slowly on a
  # busy machine and little on a quiet one (no CPU cost measured for caching everything).
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
except Exception:  # noqa: BLE001 - the cache is an optimisation only
  pass


@pytest.hookimpl(tryfirst=True)   # before -m deselects the slow items
def pytest_collection_modifyitems(config, items):
  """Skips accelerator-only tests off their backend. The heavy docstring examples run with
  ``-m slow`` (suite time): those listed in tests/_slow_doctests.py (0.6 s or more each) and
  those of NNX module classes; the other examples run in the default suite."""
  backend = jax.default_backend()
  slow_examples = _slow_doctests()
  for item in items:
    if type(item).__name__ == "DoctestItem" and (
        item.name in slow_examples or _is_module_example(item)):
      item.add_marker(pytest.mark.slow)
    if "gpu" in item.keywords and backend != "gpu":
      item.add_marker(pytest.mark.skip(reason="needs a GPU"))
    if "tpu" in item.keywords and backend != "tpu":
      item.add_marker(pytest.mark.skip(reason="needs a TPU"))


def _slow_doctests() -> frozenset:
  """tests/_slow_doctests.py's names, loaded by path (conftest.py runs however pytest started)."""
  import importlib.util
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests", "_slow_doctests.py")
  spec = importlib.util.spec_from_file_location("_slow_doctests", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.SLOW_DOCTESTS


def _is_module_example(item) -> bool:
  """A doctest of an NNX module class: it builds and compiles a model."""
  import importlib
  import inspect

  from flax import nnx
  if type(item).__name__ != "DoctestItem":
    return False
  mod_name, _, attr = item.name.rpartition(".")
  try:
    obj = getattr(importlib.import_module(mod_name), attr)
  except Exception:  # noqa: BLE001 - not resolvable: the example stays in the default run
    return False
  return inspect.isclass(obj) and issubclass(obj, nnx.Module)

