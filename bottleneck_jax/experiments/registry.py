"""The registry of named, reproducible experiments.

An experiment checks one claim of one paper on small offline data. It declares the catalogue id
it belongs to, the claim (with the paper's number where there is one), its setting (``"paper"``:
the paper's own data and scale; ``"proxy"``: a smaller stand-in, with its ``departures`` from the
paper listed), the metrics it measures (documented, with their ranges where they have one), and
its **expectations as data**: each one a metric, a comparison, a threshold and the source of the
threshold (the paper or the test plan), fixed before measuring and never loosened after.

``run(ctx)`` only measures: it returns a dict of measurements. The registry evaluates the
expectations on them (:meth:`Experiment.evaluate`): ``expectation_held`` is true only when every
expectation holds; a metric missing from the measurements is an error, a NaN is a miss. A run
whose configuration differs from the declared one (defaults, plus the quick overrides in quick
mode) in any key but :data:`NON_SEMANTIC_KEYS` is ``custom``; custom and quick runs are never
recorded as reproductions. :func:`register` refuses an experiment without expectations, with an
unknown setting, an undocumented metric, a ``reads`` key that is not an option, or an
expectation that cannot fail (a constant threshold outside the documented range of its metric).

Example::

  from bottleneck_jax.experiments.registry import (
      Expectation, Experiment, Metric, Ref, register)

  def run_vib(ctx):  # measures only
    ...
    return {"test_accuracy": acc, "deterministic_accuracy": det_acc, "test_bits": bits}

  register(Experiment(
      name="vib-digits", paper_id="vib",
      claim="A Deep VIB classifier (beta = 1e-3) keeps its accuracy ...",
      setting="proxy",
      departures=("scikit-learn digits (8x8, 1797 images) instead of MNIST",
                  "2000 steps instead of 200 epochs"),
      metric="test_accuracy",
      metrics={"test_accuracy": Metric("held-out accuracy, 12-sample predictive", low=0, high=1),
               "deterministic_accuracy": Metric("held-out accuracy of the encoder mean",
                                                low=0, high=1),
               "test_bits": Metric("KL(p(z|x) || N(0, I)) / ln 2 on the test set", low=0)},
      expectations=(
          Expectation("test_accuracy", ">=", 0.93, source="the project's test plan, Deep VIB",
                      reads=("beta",), quick_value=0.8),
          Expectation("test_accuracy", ">=", Ref("deterministic_accuracy", offset=-0.01),
                      source="paper Sec. 4.1"),
      ),
      run=run_vib, defaults={"beta": 1e-3, "steps": 2000}, quick={"steps": 300},
      paper_value="1.13 % test error on MNIST at beta = 1e-3"))

``str(expectation)`` renders it (``test_accuracy >= deterministic_accuracy - 0.01 (source:
paper Sec. 4.1)``).

Running one (:func:`run_experiment`, or ``bottleneck-jax run NAME``) writes, under the work
directory, ``config.json``, ``metrics.jsonl`` (via :meth:`RunContext.log`), ``plots/*.png`` and
``summary.json``: the measurements (``results``), the headline ``value``, one result per
expectation (``{"metric", "op", "threshold", "value", "held", "source", "expectation"}``),
``expectation_held``, ``setting``, ``departures``, ``quick``, ``custom`` (with the
``overrides``) and ``provenance`` (git commit and dirty flag, the resolved configuration and
its sha256, library versions, backend, device count, UTC date, seconds).

A work directory belongs to one run, identified by its ``config.json`` (experiment, resolved
configuration, code version). Before anything is written, :func:`run_experiment` locks the
directory (a second run into it is refused while the first is alive; a lock left by a killed
run is taken over) and checks an existing ``config.json``: another experiment, another
configuration (apart from ``steps``, which may grow to extend a run) or other code (unless
``allow_code_change``) is refused, and nothing is overwritten; the same run resumes.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bottleneck_jax.core.io import DirectoryLock, atomic_write_text
from bottleneck_jax.experiments import provenance as _provenance
from bottleneck_jax.experiments.expectations import (
    Expectation,
    Metric,
    MissingMetricError,
    Ref,
    as_metric,
    cannot_fail,
    evaluate,
)

SETTINGS: tuple[str, ...] = ("paper", "proxy")

# Options that change only bookkeeping, never a measurement: overriding them is not ``custom``.
NON_SEMANTIC_KEYS: frozenset[str] = frozenset({"checkpoint_every", "keep", "log_every"})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Experiment:
  """A named claim check (see the module docstring for an example).

  Attributes:
    name: the experiment's name (``vib-digits``); starts with or relates to the paper id.
    paper_id: the catalogue id it belongs to (``vib``, ``chronicals`` …).
    claim: the paper's claim in one sentence.
    metric: the headline measurement (a key of what ``run`` returns; shown in tables).
    metrics: every measurement an expectation reads (and the headline), documented:
      ``{name: Metric(doc, low=, high=)}`` or ``{name: "doc"}``.
    expectations: what must hold for the claim to count as reproduced (at least one).
    setting: ``"paper"`` (the paper's data and scale) or ``"proxy"`` (a stand-in).
    departures: how this experiment departs from the paper's setting, one item each.
    run: ``run(ctx: RunContext) -> dict`` of measurements (never a verdict).
    defaults: the default configuration.
    quick: overrides applied in quick mode (CI, notebooks); keys of ``defaults``.
    paper_value: the paper's own number, as text, where there is one.
  """

  name: str
  paper_id: str
  claim: str
  metric: str
  run: Callable[["RunContext"], dict]
  expectations: tuple[Expectation, ...] = ()
  setting: str = ""
  departures: tuple[str, ...] = ()
  metrics: Mapping[str, Metric | str] = dataclasses.field(default_factory=dict)
  defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  quick: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  paper_value: str | None = None

  def __post_init__(self):
    for k in ("expectations", "departures"):
      v = getattr(self, k)
      if isinstance(v, list):
        object.__setattr__(self, k, tuple(v))

  def describe_expectations(self, *, quick: bool = False, source: bool = True) -> list[str]:
    """The rendered expectations (``["test_accuracy >= 0.93 (source: ...)", ...]``)."""
    return [e.render(quick=quick, source=source) for e in self.expectations]

  def evaluate(self, measurements: Mapping[str, Any], *, quick: bool = False
               ) -> dict[str, Any]:
    """The verdict on ``measurements``: ``{"expectations": [...], "expectation_held": bool}``.

    Raises:
      MissingMetricError: a metric an expectation reads is not measured.
      RuntimeError: a measurement of the wrong type or outside its documented range.
    """
    return evaluate(self.expectations, measurements, quick=quick,
                    metrics={k: as_metric(m) for k, m in self.metrics.items()})

  def overrides(self, config: Mapping[str, Any]) -> list[str]:
    """The keys in which ``config`` differs from the declared configuration (defaults, then
    the quick overrides when ``config["quick"]``; seed 0 unless declared), apart from
    :data:`NON_SEMANTIC_KEYS`. Non-empty means the run is ``custom``."""
    declared = dict(self.defaults)
    if config.get("quick"):
      declared.update(self.quick)
    declared.setdefault("seed", 0)
    missing = object()

    def canon(v):
      return "<missing>" if v is missing else json.dumps(v, sort_keys=True, default=str)

    keys = (set(declared) | set(config)) - {"quick"} - NON_SEMANTIC_KEYS
    return sorted(k for k in keys
                  if canon(config.get(k, missing)) != canon(declared.get(k, missing)))


_REGISTRY: dict[str, Experiment] = {}


def validate(exp: Experiment) -> list[str]:
  """The defects of an experiment's declaration (empty when it can be registered)."""
  bad: list[str] = []
  for k in ("name", "paper_id", "claim", "metric"):
    if not isinstance(getattr(exp, k), str) or not getattr(exp, k).strip():
      bad.append(f"{k} must be a non-empty str, got {getattr(exp, k)!r}")
  if not callable(exp.run):
    bad.append("run must be callable")
  unknown_quick = sorted(set(exp.quick) - set(exp.defaults))
  if unknown_quick:
    bad.append(f"quick overrides keys that are not options (defaults): {unknown_quick}")
  if not exp.expectations:
    bad.append("expectations must be a non-empty tuple of Expectation")
  if exp.setting not in SETTINGS:
    bad.append(f"setting must be one of {list(SETTINGS)}, got {exp.setting!r}")
  if not all(isinstance(d, str) and d.strip() for d in exp.departures):
    bad.append(f"departures must be non-empty strs, got {exp.departures!r}")
  if exp.setting == "proxy" and not exp.departures:
    bad.append("a proxy experiment must list its departures from the paper's setting")
  try:
    metrics = {k: as_metric(m) for k, m in exp.metrics.items()}
  except ValueError as e:
    bad.append(str(e))
    metrics = {}
  if exp.metric not in metrics:
    bad.append(f"the headline metric {exp.metric!r} is not documented in metrics")
  for e in exp.expectations:
    if not isinstance(e, Expectation):
      bad.append(f"expectations must be Expectation objects, got {e!r}")
      continue
    for m in e.metrics():
      if m not in metrics:
        bad.append(f"metric {m!r} of {e.render(source=False)!r} is not documented in metrics")
    unknown = sorted(set(e.reads) - set(exp.defaults))
    if unknown:
      bad.append(f"{e.render(source=False)!r} reads {unknown}, which are not options "
                 f"(defaults: {sorted(exp.defaults)})")
    if e.metric in metrics:
      for quick in (False, True):
        if cannot_fail(e, metrics[e.metric], quick=quick):
          m = metrics[e.metric]
          bad.append(f"{e.render(quick=quick, source=False)!r} cannot fail: {e.metric} lies in "
                     f"[{m.low}, {m.high}]")
          break
  return bad


def register(exp: Experiment) -> Experiment:
  """Adds an experiment to the registry (its name must be new) after :func:`validate`."""
  if not isinstance(exp, Experiment):
    raise ValueError(f"register: expected an Experiment, got {type(exp).__name__}")
  bad = validate(exp)
  if bad:
    raise ValueError(f"register: experiment {exp.name!r}: " + "; ".join(bad))
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
  _check_values(exp, config)
  return config


_POSITIVE = re.compile(r"(^|_)(lr|lrs|learning_rates?)($|_)")  # learning rates: > 0
_NON_NEGATIVE = re.compile(r"(^|_)(betas?)($|_)")                # trade-off weights: >= 0


def _check_values(exp: Experiment, config: Mapping[str, Any]) -> None:
  """Generic hyperparameter rules: every number finite; learning rates (``lr``,
  ``learning_rate(s)``, ``*_lr``) > 0; ``beta(s)`` >= 0."""
  def numbers(v):
    if isinstance(v, bool):
      return
    if isinstance(v, (int, float)):
      yield v
    elif isinstance(v, (list, tuple)):
      for x in v:
        yield from numbers(x)

  for k, v in config.items():
    for x in numbers(v):
      if not math.isfinite(x):
        raise ValueError(f"run: option {k!r} of {exp.name!r} must be finite, got {v!r}")
      if _POSITIVE.search(k) and not x > 0:
        raise ValueError(f"run: option {k!r} of {exp.name!r} is a learning rate and must be "
                         f"> 0, got {v!r}")
      if _NON_NEGATIVE.search(k) and not x >= 0:
        raise ValueError(f"run: option {k!r} of {exp.name!r} must be >= 0, got {v!r}")


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


def _prepare_workdir(workdir: Path) -> None:
  """Creates the work directory; one clear ``ValueError`` when it cannot be used."""
  if workdir.exists() and not workdir.is_dir():
    raise ValueError(f"run: work directory {workdir} is a file, not a directory")
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    probe = workdir / f".write-test-{os.getpid()}"
    probe.write_text("")
    probe.unlink()
  except OSError as e:
    reason = e.strerror or type(e).__name__
    raise ValueError(f"run: work directory {workdir} cannot be used: {reason}"
                     + (f" ({e.filename})" if e.filename else "")) from None


def _check_same_run(workdir: Path, record: Mapping[str, Any], *, allow_code_change: bool
                    ) -> None:
  """Refuses a work directory that holds another run (before anything is written)."""
  from bottleneck_jax.train.checkpoint import describe_code, same_code
  path = workdir / "config.json"
  if not path.exists():
    if (workdir / "metrics.jsonl").exists() or (workdir / "summary.json").exists():
      raise ValueError(f"run: work directory {workdir} holds the files of another run (no "
                       "config.json); use another work directory")
    return
  try:
    saved = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise ValueError(f"run: cannot read {path} ({e}); use another work directory") from None
  if not isinstance(saved, dict):
    raise ValueError(f"run: {path} is not a run configuration; use another work directory")
  if saved.get("experiment") != record["experiment"]:
    raise ValueError(f"run: work directory {workdir} holds a run of experiment "
                     f"{saved.get('experiment')!r}, not {record['experiment']!r}; use another "
                     "work directory")
  def norm(c):
    c = json.loads(json.dumps(dict(c), default=str))
    return {k: v for k, v in c.items() if k not in ("steps", "code")}
  a, b = norm(saved), norm(record)
  if a != b:
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    raise ValueError(f"run: work directory {workdir} holds a run with another configuration "
                     f"(differs in {diff}); use another work directory")
  if not allow_code_change and not same_code(saved.get("code"), record["code"]):
    raise ValueError(f"run: work directory {workdir} holds a run of another code version "
                     f"({describe_code(saved.get('code'))}; this is "
                     f"{describe_code(record['code'])}); use another work directory, or "
                     "--allow-code-change to resume it with this code")


def run_experiment(name: str, *, workdir: str | os.PathLike | None = None,
                   steps: int | None = None, seed: int | None = None, quick: bool = False,
                   overrides: Mapping[str, Any] | None = None, progress: bool = True,
                   allow_code_change: bool = False) -> dict[str, Any]:
  """Runs a registered experiment and writes its files; returns the summary dict.

  The work directory is checked, locked and compared with its ``config.json`` before anything
  is written (see the module docstring); ``allow_code_change`` resumes a run written by
  another code version.

  Raises:
    ValueError: an unusable work directory, or one that holds another run.
    bottleneck_jax.core.io.DirectoryLockedError: another live run holds the work directory.
  """
  exp = get(name)
  config = resolve_config(exp, quick=quick, steps=steps, seed=seed, overrides=overrides)
  workdir = Path(workdir) if workdir is not None else Path("runs") / name
  try:
    import jax
    is_main = jax.process_index() == 0
  except Exception:  # noqa: BLE001
    is_main = True
  from bottleneck_jax.train.checkpoint import code_version
  from bottleneck_jax.train.loop import allowing_code_change
  _prepare_workdir(workdir)
  lock = DirectoryLock(workdir) if is_main else None
  if lock is not None:
    lock.acquire()
  try:
    record = {"experiment": name, "paper_id": exp.paper_id, **config, "code": code_version()}
    _check_same_run(workdir, record, allow_code_change=allow_code_change)  # check first ...
    if is_main:                                                           # ... write after
      atomic_write_text(workdir / "config.json", json.dumps(record, indent=2, default=str))
    ctx = RunContext(experiment=exp, workdir=workdir, config=config, progress=progress,
                     is_main_process=is_main)
    with allowing_code_change(allow_code_change):
      return _run_and_summarize(exp, ctx, config, is_main)
  finally:
    if lock is not None:
      lock.release()


def summarize(exp: Experiment, result: Mapping[str, Any], config: Mapping[str, Any], *,
              seconds: float, started: datetime.datetime | None = None) -> dict[str, Any]:
  """The summary of a run: the measurements, the verdict, setting and provenance.

  Raises:
    MissingMetricError: a metric the headline or an expectation reads is not measured.
    RuntimeError: ``run`` returned a verdict (``expectation_held``) itself, or a measurement
      has the wrong type or lies outside its documented range.
  """
  quick = bool(config.get("quick", False))
  result = dict(result)
  if "expectation_held" in result:
    raise RuntimeError(f"experiment {exp.name!r}: run() returned expectation_held; run only "
                       "measures, the registry evaluates the declared expectations")
  verdict = exp.evaluate(result, quick=quick)
  if exp.metric not in result:
    raise MissingMetricError(f"experiment {exp.name!r} returned no {exp.metric!r} (its "
                             f"headline metric); it returned {sorted(result)}")
  overridden = exp.overrides(config)
  reads = sorted({k for e in exp.expectations for k in e.reads} & set(overridden))
  return {
      "experiment": exp.name,
      "paper_id": exp.paper_id,
      "claim": exp.claim,
      "paper_value": exp.paper_value,
      "setting": exp.setting or None,
      "departures": list(exp.departures),
      "metric": exp.metric,
      "value": _jsonable(result[exp.metric]),
      "expectation": "; ".join(exp.describe_expectations(quick=quick, source=False)),
      "expectations": verdict["expectations"],
      "expectation_held": verdict["expectation_held"],
      "quick": quick,
      "custom": bool(overridden),
      "overrides": overridden,
      "overrides_read_by_expectations": reads,
      "seconds": round(seconds, 2),
      "results": {k: _jsonable(v) for k, v in result.items()},
      "provenance": _provenance.collect(config, seconds=seconds, started=started),
  }


def _run_and_summarize(exp: Experiment, ctx: RunContext, config: dict[str, Any],
                       is_main: bool) -> dict[str, Any]:
  started = datetime.datetime.now(datetime.UTC)
  t0 = time.time()
  result = exp.run(ctx)
  summary = summarize(exp, result, config, seconds=time.time() - t0, started=started)
  if is_main:
    atomic_write_text(ctx.workdir / "summary.json", json.dumps(summary, indent=2, default=str))
  return summary


__all__ = [
    "NON_SEMANTIC_KEYS",
    "SETTINGS",
    "Expectation",
    "Experiment",
    "Metric",
    "MissingMetricError",
    "Ref",
    "RunContext",
    "get",
    "names",
    "parse_overrides",
    "register",
    "resolve_config",
    "run_experiment",
    "summarize",
    "validate",
]
