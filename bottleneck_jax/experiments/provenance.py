"""Provenance of a run: which code, configuration, libraries and machine produced a number."""

from __future__ import annotations

import datetime
import hashlib
import json
import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import bottleneck_jax

PACKAGE_DIR = Path(bottleneck_jax.__file__).resolve().parent

# Files that ``reproduce --record`` itself writes: changing them does not make the code dirty.
RECORD_OUTPUTS = ("bottleneck_jax/experiments/recorded_results.json", "README.md")

_DISTRIBUTIONS = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def _git(root: Path, *args: str, strip: bool = True) -> str | None:
  try:
    p = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                       timeout=30, check=False)
  except (OSError, subprocess.SubprocessError):
    return None
  if p.returncode != 0:
    return None
  return p.stdout.strip() if strip else p.stdout


def source_root(package_dir: Path = PACKAGE_DIR) -> Path | None:
  """The git work tree whose tracked files include the package (a clone or an editable
  install); ``None`` for an installed copy (even one that sits inside some other work tree)."""
  top = _git(package_dir, "rev-parse", "--show-toplevel")
  if not top:
    return None
  root = Path(top).resolve()
  try:
    rel = (package_dir / "__init__.py").relative_to(root)
  except ValueError:
    return None
  if _git(root, "ls-files", "--error-unmatch", "--", str(rel)) is None:
    return None
  return root


def git_state(package_dir: Path = PACKAGE_DIR) -> dict[str, Any]:
  """``{"commit", "dirty", "dirty_files"}`` of the package's work tree; ``None`` values for an
  installed copy. ``dirty`` counts tracked changes and untracked, unignored files, apart from
  the files a recording writes (:data:`RECORD_OUTPUTS`)."""
  root = source_root(package_dir)
  if root is None:
    return {"commit": None, "dirty": None, "dirty_files": None}
  commit = _git(root, "rev-parse", "HEAD")
  status = _git(root, "status", "--porcelain", "-z", "--untracked-files=all", strip=False)
  if status is None:
    return {"commit": commit, "dirty": None, "dirty_files": None}
  files, entries = [], iter(status.split("\0"))
  for entry in entries:
    if len(entry) < 4:
      continue
    if entry[0] in "RC":  # a rename or copy: the source path follows as its own entry
      next(entries, None)
    path = entry[3:]
    if path not in RECORD_OUTPUTS:
      files.append(path)
  return {"commit": commit, "dirty": bool(files), "dirty_files": files}


def config_hash(config: Mapping[str, Any]) -> str:
  """sha256 of the configuration as canonical JSON (sorted keys)."""
  text = json.dumps(dict(config), sort_keys=True, default=str, separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()


def library_versions() -> dict[str, str | None]:
  out: dict[str, str | None] = {"python": platform.python_version()}
  for d in _DISTRIBUTIONS:
    try:
      out[d] = metadata.version(d)
    except metadata.PackageNotFoundError:
      out[d] = None
  out["bottleneck_jax"] = getattr(bottleneck_jax, "__version__", None)
  return out


def machine() -> dict[str, Any]:
  try:
    import jax
    devices = jax.devices()
    return {"backend": jax.default_backend(), "device_count": len(devices),
            "device_kind": devices[0].device_kind if devices else None,
            "process_count": jax.process_count()}
  except Exception as e:  # noqa: BLE001 - provenance never fails a run
    return {"backend": None, "device_count": None, "error": f"{type(e).__name__}: {e}"}


def collect(config: Mapping[str, Any], *, seconds: float | None = None,
            started: datetime.datetime | None = None) -> dict[str, Any]:
  """The provenance record of a run with the resolved ``config``."""
  config = json.loads(json.dumps(dict(config), default=str))
  started = started or datetime.datetime.now(datetime.UTC)
  return {
      "git": git_state(),
      "config": config,
      "config_sha256": config_hash(config),
      "versions": library_versions(),
      **machine(),
      "date_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
      "seconds": None if seconds is None else round(float(seconds), 2),
  }


__all__ = ["RECORD_OUTPUTS", "collect", "config_hash", "git_state", "library_versions",
           "source_root"]
