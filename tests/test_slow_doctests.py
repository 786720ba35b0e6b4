"""tests/_slow_doctests.py stays current: every name it keeps under ``-m slow`` still names a
documented object with a docstring example, and none is an NNX module class (those run under
``-m slow`` by the rule in conftest.py, a listing would be redundant)."""

import importlib
import inspect

from flax import nnx

from tests._slow_doctests import SLOW_DOCTESTS


def _resolve(name):
  parts = name.split(".")
  for i in range(len(parts) - 1, 0, -1):
    try:
      obj = importlib.import_module(".".join(parts[:i]))
    except ImportError:
      continue
    for attr in parts[i:]:
      obj = getattr(obj, attr)
    return obj
  raise ImportError(name)


def test_every_listed_example_still_exists():
  stale, modules = [], []
  for name in sorted(SLOW_DOCTESTS):
    try:
      obj = _resolve(name)
    except (ImportError, AttributeError):
      stale.append(name)
      continue
    if ">>>" not in (inspect.getdoc(obj) or ""):
      stale.append(name)
    if inspect.isclass(obj) and issubclass(obj, nnx.Module):
      modules.append(name)
  assert not stale, f"no such docstring example (remove from tests/_slow_doctests.py): {stale}"
  assert not modules, f"NNX module classes are slow by rule, remove from the list: {modules}"
