"""Imports every experiment module so that each registers itself.

An experiment module is any public module of this package other than the machinery below (so a
new experiment needs no line here); a module that fails to import raises here, loudly.
"""
import importlib
import pkgutil
from pathlib import Path

_MACHINERY = {"expectations", "provenance", "registry", "report"}

for _info in pkgutil.iter_modules([str(Path(__file__).parent)]):
  if not _info.name.startswith("_") and _info.name not in _MACHINERY:
    importlib.import_module(f"{__package__}.{_info.name}")
