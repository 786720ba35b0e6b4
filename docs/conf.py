"""Sphinx configuration: the API reference is built from the docstrings (autodoc + napoleon),
one page per family, plus the catalogue generated from ``bottleneck_jax.catalog``.

Build (warnings are errors, as in CI)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import bottleneck_jax  # noqa: E402

project = "bottleneck_jax"
author = "bottleneck_jax developers"
release = version = bottleneck_jax.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_typehints = "none"  # jaxtyping annotations read better in the docstrings' Args
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes:" as fields, not duplicate object descriptions
napoleon_attr_annotations = False  # jaxtyping shapes ("*batch V") are not reST
napoleon_custom_sections = [("Equations", "notes_style"), ("Raises", "params_style")]
exclude_patterns = ["_build"]
html_theme = "alabaster"
nitpicky = False
suppress_warnings = ["autodoc.import_object"]


def _write_catalogue(app):
  """docs/_generated/catalogue.rst from the catalogue (so the page never goes stale)."""
  from bottleneck_jax import catalog
  out = Path(app.srcdir) / "_generated"
  out.mkdir(exist_ok=True)
  rows = catalog.entries()
  counts = {s: sum(e.status == s for e in rows) for s in catalog.STATUSES}
  lines = ["The catalogue", "=============", "",
           f"{len(rows)} rows (49 papers and the Deep VIB base method): "
           + ", ".join(f"{n} {s}" for s, n in counts.items()) + ".", "",
           "A row is *implemented* when its functions exist and are tested against an independent",
           "reference, and *reproduced* when every one of its experiments held its expectations in",
           "the last recorded full run (``bottleneck-jax reproduce --all --record``).", "",
           ".. list-table::", "   :header-rows: 1", "   :widths: 4 16 12 12 56", "",
           "   * - #", "     - id", "     - family", "     - status", "     - title"]
  for e in rows:
    title = e.title.replace("*", r"\*")
    lines += [f"   * - {e.number or 'base'}", f"     - ``{e.id}``", f"     - {e.family}",
              f"     - {e.status}", f"     - {title}"]
  text = "\n".join(lines) + "\n"
  path = out / "catalogue.rst"
  if not path.exists() or path.read_text() != text:
    path.write_text(text)


def _skip_field_aliases(app, what, name, obj, skip, options):
  """NamedTuple fields ("Alias for field number 0") and dataclass fields are documented in the
  class docstring's Attributes section already."""
  doc = getattr(obj, "__doc__", None) or ""
  if what == "class" and (doc.startswith("Alias for field number") or
                          type(obj).__name__ in ("_tuplegetter", "member_descriptor")):
    return True
  return skip


def setup(app):
  app.connect("builder-inited", _write_catalogue)
  app.connect("autodoc-skip-member", _skip_field_aliases)
