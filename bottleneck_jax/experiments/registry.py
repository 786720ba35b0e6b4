"""The registry of named, reproducible experiments.

An experiment checks one claim of one paper on small offline data. It declares the catalogue id
it belongs to, the claim (with the paper's number where there is one), the metric, the expectation
that counts as reproduced, default and quick configurations, and a ``run(ctx)`` function.

Running one (:func:`run_experiment`, or ``bottleneck-jax run NAME``) writes, under the work
directory, ``config.json``, ``metrics.jsonl`` (via :meth:`RunContext.log`), ``plots/*.png`` and
``summary.json`` (the dict that ``run`` returns plus ``expectation_held``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bottleneck_jax.core.io import atomic_write_text


@dataclasses.dataclass(frozen=True)
class Experiment:
  """A named claim check.

  Attributes:
    name: the experiment's name (``vib-digits``); starts with or relates to the paper id.
    paper_id: the catalogue id it belongs to (``vib``, ``chronicals`` …).
    claim: the paper's claim in one sentence.
    metric: what is measured (name of the key in the summary).
    expectation: the condition that counts as reproduced, in words.
    run: ``run(ctx: RunContext) -> dict``; the dict must contain ``metric`` and a boolean
      ``expectation_held``.
    defaults: the default configuration.
    quick: overrides applied in quick mode (CI, notebooks).
    paper_value: the paper's own number, as text, where there is one.
  """

  name: str
  paper_id: str
  claim: str
  metric: str
  expectation: str
  run: Callable[["RunContext"], dict]
  defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  quick: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  paper_value: str | None = None


_REGISTRY: dict[str, Experiment] = {}


def register(exp: Experiment) -> Experiment:
  """Adds an experiment to the registry (its name must be new)."""
  if exp.name in _REGISTRY and _REGISTRY[exp.name] is not exp:
    raise ValueError(f"register: experiment {exp.name!r} is already registered")
  _REGISTRY[exp.name] = exp
  return exp


def _load_all() -> None:
  # Importing the package imports every experiment module, which registers itself.
  import bottleneck_jax.experiments  # noqa: F401


def names() -> list[str]:
  """Sorted names of all registered experiments."""
  _load_all()
  return sorted(_REGISTRY)


def get(name: str) -> Experiment:
  """The experiment called ``name``; a clear ``ValueError`` listing the known names otherwise."""
  _load_all()
  if not isinstance(name, str) or name not in _REGISTRY:
    raise ValueError(f"get: unknown experiment {name!r}; known experiments: {sorted(_REGISTRY)}")
  return _REGISTRY[name]


def parse_overrides(items, *, fn: str = "run") -> dict[str, Any]:
  """Parses ``["key=value", ...]``; values are read as JSON when they parse, else as strings."""
  out: dict[str, Any] = {}
  for item in items or ():
    if not isinstance(item, str) or "=" not in item:
      raise ValueError(f"{fn}: --set expects key=value, got {item!r}")
    k, v = item.split("=", 1)
    k = k.strip()
    if not k:
      raise ValueError(f"{fn}: --set expects key=value with a non-empty key, got {item!r}")
    try:
      out[k] = json.loads(v)
    except json.JSONDecodeError:
      out[k] = v
  return out


def resolve_config(exp: Experiment, *, quick: bool = False, steps: int | None = None,
                   seed: int | None = None, overrides: Mapping[str, Any] | None = None
                   ) -> dict[str, Any]:
  """The configuration of a run: defaults, then quick overrides, then explicit ones.

  Unknown keys are an error naming the experiment's known options.
  """
  config = dict(exp.defaults)
  if quick:
    config.update(exp.quick)
  for k, v in (overrides or {}).items():
    if k not in exp.defaults:
      raise ValueError(f"run: unknown option {k!r} for experiment {exp.name!r}; known options: "
                       f"{sorted(exp.defaults)}")
    want = type(exp.defaults[k])
    if exp.defaults[k] is not None and want is float and isinstance(v, int):
      v = float(v)
    if exp.defaults[k] is not None and not isinstance(v, want) and not (
        want in (list, tuple) and isinstance(v, (list, tuple))):
      raise ValueError(f"run: option {k!r} of {exp.name!r} must be {want.__name__}, got "
                       f"{type(v).__name__} {v!r}")
    config[k] = v
  if steps is not None:
    if not isinstance(steps, int) or steps < 1:
      raise ValueError(f"run: steps must be a positive int, got {steps!r}")
    config["steps"] = steps
  if seed is not None:
    if not isinstance(seed, int) or seed < 0:
      raise ValueError(f"run: seed must be a non-negative int, got {seed!r}")
    config["seed"] = seed
  config.setdefault("seed", 0)
  config["quick"] = bool(quick)
  return config


@dataclasses.dataclass
class RunContext:
  """What an experiment's ``run`` receives: where to write, and the resolved configuration."""

  experiment: Experiment
  workdir: Path
  config: dict[str, Any]
  progress: bool = True
  is_main_process: bool = True
  _logged: set | None = dataclasses.field(default=None, repr=False)

  @property
  def seed(self) -> int:
    return int(self.config["seed"])

  @property
  def quick(self) -> bool:
    return bool(self.config.get("quick", False))

  @property
  def metrics_path(self) -> Path:
    return self.workdir / "metrics.jsonl"

  @property
  def checkpoint_dir(self) -> Path:
    return self.workdir / "checkpoints"

  def plot_path(self, name: str) -> Path:
    """``workdir/plots/NAME.png`` (the folder is created)."""
    d = self.workdir / "plots"
    d.mkdir(parents=True, exist_ok=True)
    return d / (name if name.endswith(".png") else f"{name}.png")

  def log(self, step: int, **metrics) -> None:
    """Appends one JSON line ``{"step": step, **metrics}`` to ``metrics.jsonl`` (process 0).

    A run resumed after a kill replays the steps after its last checkpoint, bit-identically:
    a record already in the file (same content apart from its time stamp) is not written
    twice, and a line cut short by the kill is dropped, so the file ends as an uninterrupted
    run's would.
    """
    if not self.is_main_process:
      return
    if self._logged is None:
      self._logged = self._load_logged()
    rec = {"step": int(step)}
    rec.update({k: _jsonable(v) for k, v in metrics.items()})
    ident = _identity(rec)
    if ident in self._logged:
      return
    self._logged.add(ident)
    rec["time"] = time.time()
    with open(self.metrics_path, "a") as f:
      f.write(json.dumps(rec) + "\n")

  def _load_logged(self) -> set[str]:
    if not self.metrics_path.exists():
      return set()
    good, logged = [], set()
    for line in self.metrics_path.read_text().splitlines():
      try:
        rec = json.loads(line)
      except json.JSONDecodeError:
        continue  # a line cut short by a kill
      good.append(line)
      logged.add(_identity(rec))
    atomic_write_text(self.metrics_path, "".join(g + "\n" for g in good))
    return logged


def _identity(rec: Mapping[str, Any]) -> str:
  return json.dumps({k: v for k, v in rec.items() if k != "time"}, sort_keys=True, default=str)


def _jsonable(v):
  try:
    import numpy as np
    if hasattr(v, "shape") and getattr(v, "shape", None) == ():
      return float(np.asarray(v))
    if hasattr(v, "tolist"):
      return np.asarray(v).tolist()
  except Exception:  # noqa: BLE001
    pass
  return v


def run_experiment(name: str, *, workdir: str | os.PathLike | None = None,
                   steps: int | None = None, seed: int | None = None, quick: bool = False,
                   overrides: Mapping[str, Any] | None = None, progress: bool = True
                   ) -> dict[str, Any]:
  """Runs a registered experiment and writes its files; returns the summary dict."""
  exp = get(name)
  config = resolve_config(exp, quick=quick, steps=steps, seed=seed, overrides=overrides)
  workdir = Path(workdir) if workdir is not None else Path("runs") / name
  try:
    import jax
    is_main = jax.process_index() == 0
  except Exception:  # noqa: BLE001
    is_main = True
  workdir.mkdir(parents=True, exist_ok=True)
  if is_main:
    atomic_write_text(workdir / "config.json", json.dumps(
        {"experiment": name, "paper_id": exp.paper_id, **config}, indent=2, default=str))
  ctx = RunContext(experiment=exp, workdir=workdir, config=config, progress=progress,
                   is_main_process=is_main)
  t0 = time.time()
  result = dict(exp.run(ctx))
  if "expectation_held" not in result or exp.metric not in result:
    raise RuntimeError(f"experiment {name!r} returned no {exp.metric!r} or expectation_held")
  summary = {
      "experiment": name,
      "paper_id": exp.paper_id,
      "claim": exp.claim,
      "paper_value": exp.paper_value,
      "metric": exp.metric,
      "value": _jsonable(result[exp.metric]),
      "expectation": exp.expectation,
      "expectation_held": bool(result["expectation_held"]),
      "quick": bool(config["quick"]),
      "seconds": round(time.time() - t0, 2),
      "results": {k: _jsonable(v) for k, v in result.items()},
  }
  if is_main:
    atomic_write_text(workdir / "summary.json", json.dumps(summary, indent=2, default=str))
  return summary


__all__ = [
    "Experiment",
    "RunContext",
    "get",
    "names",
    "parse_overrides",
    "register",
    "resolve_config",
    "run_experiment",
]
