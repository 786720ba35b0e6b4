"""The ``bottleneck-jax`` command line.

Commands:

* ``bottleneck-jax list [--family F] [--status S] [--json]``: the catalogue of papers;
* ``bottleneck-jax experiments [--json]``: the registered experiments with their claims;
* ``bottleneck-jax run NAME [--workdir DIR] [--steps N] [--seed S] [--quick] [--set k=v ...]
  [--allow-code-change]``: runs one experiment and prints its result (files under the work
  directory; rerun the same command to resume);
* ``bottleneck-jax compress IMAGE OUT [--model ID] [--container prior|webp]`` and
  ``bottleneck-jax decompress IN IMAGE``: the WaLLoC image codec (prints bits per pixel and
  PSNR);
* ``bottleneck-jax reproduce [ID ...] [--family F] [--all] [--quick] [--out results.md]
  [--record] [--readme README.md]``: runs the experiments of papers, a family or the whole
  catalogue and writes a markdown results table (setting, claim, paper's number, our number,
  expectations, held or not); ``--record`` runs each experiment in a fresh work directory and
  stores its verdict and provenance (a failure as an error) in
  ``experiments/recorded_results.json``, from which the catalogue computes ``reproduced`` (it
  refuses quick runs, a dirty git tree and an installed, non-editable package); ``--readme``
  regenerates the README's generated blocks (catalogue status, results) from the records.

Errors print one line on stderr (``bottleneck-jax run: error: ...``), without a traceback
(``BOTTLENECK_JAX_DEBUG=1`` shows it). Exit statuses:

* ``0``: success;
* ``1``: the run failed: a checkpoint could not be written or read (the message names the
  path; a damaged newest checkpoint is moved aside and the previous one used, so this means none
  is left), another I/O error, or an unexpected error;
* ``2``: usage: an unknown experiment, option or value (including a non-finite or negative
  learning rate), an unusable ``--workdir`` (a file, not creatable, not writable), or a work
  directory that holds another run (another experiment, configuration or code version);
* ``3``: the training diverged: the loss became NaN or infinite (the message names the step;
  no checkpoint holds non-finite values, so rerunning resumes from the last good one);
* ``75``: the work directory is in use by another live run (a lock left by a killed run is
  taken over);
* ``130``: interrupted (Ctrl-C); ``143``: preempted after saving a checkpoint. Rerun the same
  command to resume.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path


class UsageError(Exception):
  """A user mistake: printed without a traceback, exit status 2."""


class RunFailure(Exception):
  """A run that failed: printed as one line without a traceback, with its exit status."""

  def __init__(self, message: str, status: int):
    super().__init__(message)
    self.status = status


EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_DIVERGED, EXIT_BUSY = 0, 1, 2, 3, 75
EXIT_INTERRUPTED, EXIT_PREEMPTED = 130, 143


def _enable_compilation_cache() -> None:
  # Repeated runs skip XLA compilation (an optimisation only; never fatal).
  if os.environ.get("BOTTLENECK_JAX_NO_CACHE"):
    return
  try:
    import jax
    path = os.path.join(os.path.expanduser("~"), ".cache", "bottleneck_jax", "jax_cache")
    os.makedirs(path, exist_ok=True)
    if not jax.config.jax_compilation_cache_dir:
      jax.config.update("jax_compilation_cache_dir", path)
      jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  except Exception:  # noqa: BLE001, S110 - an optimisation only
    pass


def _fmt(v) -> str:
  from bottleneck_jax.experiments.report import _fmt as fmt
  return fmt(v)


# -- list / experiments ----------------------------------------------------------------------
def cmd_list(args) -> int:
  from bottleneck_jax import catalog
  try:
    rows = catalog.entries(family=args.family, status=args.status)
  except ValueError as e:
    raise UsageError(str(e)) from None
  print(catalog.to_json(rows) if args.json else catalog.format_table(rows))
  return 0


def _expectation_json(e) -> dict:
  def th(v):
    return v if v is None or isinstance(v, (bool, int, float)) else str(v)
  return {"metric": e.metric, "op": e.op, "value": th(e.value), "source": e.source,
          "reads": list(e.reads), "quick_value": th(e.quick_value), "text": str(e)}


def cmd_experiments(args) -> int:
  from bottleneck_jax.experiments import registry
  from bottleneck_jax.experiments.expectations import as_metric
  exps = [registry.get(n) for n in registry.names()]
  if args.json:
    print(json.dumps([{"name": e.name, "paper_id": e.paper_id, "claim": e.claim,
                       "setting": e.setting or None, "departures": list(e.departures),
                       "metric": e.metric,
                       "metrics": {k: dataclasses.asdict(as_metric(m))
                                   for k, m in e.metrics.items()},
                       "expectations": [_expectation_json(x) for x in e.expectations],
                       "expectation": "; ".join(e.describe_expectations()),
                       "paper_value": e.paper_value, "defaults": dict(e.defaults),
                       "quick": dict(e.quick)}
                      for e in exps], indent=2, default=str))
    return 0
  for e in exps:
    print(f"{e.name}  [{e.paper_id}]  setting: {e.setting or 'undeclared'}")
    print(f"    claim:        {e.claim}")
    print(f"    metric:       {e.metric}")
    for i, d in enumerate(e.departures):
      print(f"    {'departures:' if i == 0 else '':<13} - {d}")
    for i, x in enumerate(e.describe_expectations()):
      print(f"    {'expectations:' if i == 0 else '':<13} {x}")
  print(f"\n{len(exps)} experiments; run one with `bottleneck-jax run NAME [--quick]`")
  return 0


# -- run -------------------------------------------------------------------------------------
def _prepare(name, *, steps, seed, quick, sets):
  """Validates a run's arguments before anything heavy starts; returns (exp, overrides)."""
  from bottleneck_jax.experiments import registry
  try:
    exp = registry.get(name)
    overrides = registry.parse_overrides(sets)
    registry.resolve_config(exp, quick=quick, steps=steps, seed=seed, overrides=overrides)
  except ValueError as e:
    raise UsageError(str(e)) from None
  return exp, overrides


def _summary_line(summary: dict) -> str:
  """The verdict of a run: a headline line, then one line per expectation (held or missed)."""
  held = "held" if summary["expectation_held"] else "NOT held"
  tags = [f"{summary['seconds']:.1f} s"]
  if summary.get("setting"):
    n = len(summary.get("departures") or ())
    tags.append(summary["setting"] + (f", {n} departure{'s' if n != 1 else ''}" if n else ""))
  if summary.get("quick"):
    tags.append("quick: never a reproduction")
  if summary.get("custom"):
    tags.append(f"custom ({', '.join(summary.get('overrides') or ())}): never recorded")
  lines = [f"{summary['experiment']}: {summary['metric']} = {_fmt(summary['value'])} -> {held}  "
           f"[{'; '.join(tags)}]"]
  results = summary.get("expectations") or ()
  if not results and summary.get("expectation"):
    lines.append(f"    expectation: {summary['expectation']}")
  for r in results:
    measured = _fmt(r["value"])
    if r["expectation"].split(f" {r['op']} ", 1)[-1] != _fmt(r["threshold"]):
      measured += f" vs {_fmt(r['threshold'])}"
    lines.append(f"    {'held  ' if r['held'] else 'MISSED'}  {r['expectation']}  "
                 f"({r['metric']} = {measured}; source: {r['source']})")
  return "\n".join(lines)


def _one_line(e: BaseException) -> str:
  lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
  return " ".join(lines) if lines else type(e).__name__


def cmd_run(args) -> int:
  from bottleneck_jax.experiments import registry
  exp, overrides = _prepare(args.name, steps=args.steps, seed=args.seed, quick=args.quick,
                            sets=args.set)
  workdir = Path(args.workdir) if args.workdir else Path("runs") / exp.name
  _enable_compilation_cache()
  from bottleneck_jax.core.io import DirectoryLockedError
  from bottleneck_jax.train import NonFiniteLossError, PreemptedError
  try:
    summary = registry.run_experiment(exp.name, workdir=workdir, steps=args.steps,
                                      seed=args.seed, quick=args.quick, overrides=overrides,
                                      progress=not args.no_progress,
                                      allow_code_change=args.allow_code_change)
  except PreemptedError as e:
    print(f"bottleneck-jax run: {e}; rerun the same command to resume", file=sys.stderr)
    return EXIT_PREEMPTED
  except (KeyboardInterrupt, SystemExit):
    raise
  except Exception as e:  # noqa: BLE001 - every failure ends as one line and a status
    if os.environ.get("BOTTLENECK_JAX_DEBUG"):
      raise
    if isinstance(e, ValueError):  # e.g. a configuration the training loop rejects
      raise UsageError(f"{_one_line(e)} (set BOTTLENECK_JAX_DEBUG=1 to see the traceback)"
                       ) from None
    if isinstance(e, NonFiniteLossError):
      raise RunFailure(_one_line(e), EXIT_DIVERGED) from None
    if isinstance(e, DirectoryLockedError):
      raise RunFailure(_one_line(e), EXIT_BUSY) from None
    if isinstance(e, OSError):  # checkpoints (CheckpointError names the path), other I/O
      raise RunFailure(_one_line(e), EXIT_FAILURE) from None
    raise RunFailure(f"{type(e).__name__}: {_one_line(e)} (set BOTTLENECK_JAX_DEBUG=1 to see "
                     "the traceback)", EXIT_FAILURE) from None
  print(_summary_line(summary))
  for k, v in summary["results"].items():
    if k in (summary["metric"], "expectation_held") or isinstance(v, (list, dict)):
      continue
    print(f"    {k}: {_fmt(v)}")
  table = summary["results"].get("table")
  if isinstance(table, list) and table and isinstance(table[0], dict):
    keys = list(table[0])
    print("    " + "  ".join(f"{k:>14}" for k in keys))
    for row in table:
      print("    " + "  ".join(f"{_fmt(row.get(k)):>14}" for k in keys))
  print(f"    files: {_files_line(workdir)}")
  return 0


def _has_checkpoint(workdir: Path) -> bool:
  ckpt = workdir / "checkpoints"
  return ckpt.is_dir() and any(p.name.isdigit() for p in ckpt.iterdir())


def _files_line(workdir: Path) -> str:
  """``workdir/ (the files this run actually wrote)``: never a checkpoints/ that isn't there."""
  names = [n for n in ("config.json", "metrics.jsonl", "summary.json") if (workdir / n).exists()]
  names += [n + "/" for n in ("plots",) if (workdir / n).is_dir()]
  if _has_checkpoint(workdir):
    names.append("checkpoints/ (rerun the same command to resume)")
  return f"{workdir}/ ({', '.join(names)})"


# -- reproduce -------------------------------------------------------------------------------
def _experiments_for(ids, family, all_) -> list[str]:
  from bottleneck_jax import catalog
  from bottleneck_jax.experiments import registry
  names = registry.names()
  by_paper: dict[str, list[str]] = {}
  for n in names:
    by_paper.setdefault(registry.get(n).paper_id, []).append(n)
  if all_:
    return names
  wanted: list[str] = []
  if family is not None:
    try:
      rows = catalog.entries(family=family)
    except ValueError as e:
      raise UsageError(str(e)) from None
    ids = list(ids) + [e.id for e in rows]
  if not ids:
    raise UsageError("reproduce: name paper ids, --family F or --all")
  known_ids = {e.id for e in catalog.entries()}
  for id_ in ids:
    if id_ in names:  # an experiment name works too
      found = [id_]
    else:
      if id_ not in known_ids and id_ not in by_paper:
        raise UsageError(f"reproduce: unknown paper id {id_!r}; see `bottleneck-jax list`")
      found = list(by_paper.get(id_, []))
      if id_ in known_ids:
        found += [e for e in catalog.get(id_).experiments if e in names and e not in found]
    for n in found:
      if n not in wanted:
        wanted.append(n)
  return wanted


def _md(text) -> str:
  return str(text if text is not None else "—").replace("|", "\\|").replace("\n", " ")


def results_table(summaries: list[dict]) -> str:
  """A markdown table: paper, experiment, setting, claim, paper's number, our number,
  expectation, held (see :func:`bottleneck_jax.experiments.report.results_table`)."""
  from bottleneck_jax.experiments import report
  return report.results_table(summaries)


def _record_refusal() -> str | None:
  """Why results cannot be recorded here (``None`` when they can)."""
  from bottleneck_jax.experiments import provenance
  if provenance.source_root() is None:
    return ("--record writes experiments/recorded_results.json of a clone of the repository; "
            f"this bottleneck_jax ({provenance.PACKAGE_DIR}) is an installed copy, not a git "
            "work tree (use `pip install -e .` in a clone)")
  state = provenance.git_state()
  if state["commit"] is None:
    return "--record needs a commit to name: this work tree has none yet"
  if state["dirty"]:
    files = state["dirty_files"]
    shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    return (f"--record needs a clean git tree (each record names its commit); commit or "
            f"remove the changes first: {shown}")
  return None


def _error_summary(exp, e: BaseException, *, quick: bool, seconds: float) -> dict:
  from bottleneck_jax.experiments import provenance, registry
  s = {"experiment": exp.name, "paper_id": exp.paper_id, "claim": exp.claim,
       "paper_value": exp.paper_value, "setting": exp.setting or None,
       "departures": list(exp.departures), "metric": exp.metric,
       "expectation": "; ".join(exp.describe_expectations(quick=quick, source=False)),
       "status": "error", "error": f"{type(e).__name__}: {' '.join(str(e).split())}", "quick": quick,
       "custom": False, "seconds": round(seconds, 2)}
  try:
    s["provenance"] = provenance.collect(registry.resolve_config(exp, quick=quick),
                                         seconds=seconds)
  except Exception:  # noqa: BLE001, S110 - provenance never hides the error itself
    pass
  return s


_RECORD_KEYS = ("paper_id", "metric", "value", "setting", "departures", "expectations",
                "expectation_held", "quick", "custom", "overrides", "seconds",
                "provenance")


def _record(summary: dict, workdir: Path) -> None:
  """Stores one run's verdict (or error) in recorded_results.json, replacing the old record."""
  import datetime

  from bottleneck_jax import catalog
  from bottleneck_jax.core.io import atomic_write_text
  recorded = catalog.recorded_results()
  now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
  if summary.get("status") == "error":
    entry = {k: summary.get(k) for k in ("paper_id", "metric", "quick", "seconds", "error",
                                         "provenance")}
    entry["status"] = "error"
  else:
    entry = {k: summary.get(k) for k in _RECORD_KEYS}
    entry["status"] = "ok"
  entry.update(recorded=now, workdir=str(workdir))
  recorded[summary["experiment"]] = entry
  atomic_write_text(catalog.RESULTS_PATH,
                    json.dumps(recorded, indent=2, sort_keys=True, default=str) + "\n")


def cmd_reproduce(args) -> int:
  import tempfile

  from bottleneck_jax.experiments import registry
  from bottleneck_jax.train import PreemptedError
  if args.record and args.quick:
    raise UsageError("--record stores full runs only (a quick run reproduces nothing); "
                     "drop --quick or --record")
  names = _experiments_for(args.ids, args.family, args.all)
  if args.record:
    refusal = _record_refusal()
    if refusal:
      raise UsageError(refusal)
  if args.readme and not Path(args.readme).is_file():
    raise UsageError(f"--readme: no file {args.readme}")
  if not names:
    print("reproduce: no experiment registered for the selection", file=sys.stderr)
    return 0
  base = Path(args.workdir) if args.workdir else Path("runs") / "reproduce"
  _enable_compilation_cache()
  summaries = []
  for n in names:
    exp = registry.get(n)
    t0 = time.time()
    if args.record:  # a fresh directory: a record never resumes an old checkpoint
      base.mkdir(parents=True, exist_ok=True)
      workdir = Path(tempfile.mkdtemp(prefix=f"{n}-", dir=base))
    else:
      workdir = base / n
    try:
      s = registry.run_experiment(n, workdir=workdir, quick=args.quick,
                                  progress=not args.no_progress)
      print(_summary_line(s))
      if s.get("custom"):
        raise RuntimeError(f"a custom configuration ({s.get('overrides')}) is never recorded")
    except PreemptedError as e:
      print(f"bottleneck-jax reproduce: {e}; rerun the same command to resume", file=sys.stderr)
      return 143
    except Exception as e:  # noqa: BLE001 - a failed experiment stays in the table
      if os.environ.get("BOTTLENECK_JAX_DEBUG"):
        raise
      s = _error_summary(exp, e, quick=args.quick, seconds=time.time() - t0)
      print(f"{n}: ERROR {s['error']}", file=sys.stderr)
    summaries.append(s)
    if args.record:
      _record(s, workdir)
  table = results_table(summaries)
  if args.out:
    Path(args.out).write_text("# Results\n\n" + table)
    print(f"wrote {args.out}")
  else:
    print(table)
  if args.record:
    from bottleneck_jax import catalog
    print(f"recorded {len(summaries)} results in {catalog.RESULTS_PATH}")
    if args.all:  # records of experiments that no longer exist must not linger
      from bottleneck_jax.core.io import atomic_write_text
      recorded = catalog.recorded_results()
      gone = sorted(set(recorded) - set(registry.names()))
      if gone:
        for n in gone:
          del recorded[n]
        atomic_write_text(catalog.RESULTS_PATH,
                          json.dumps(recorded, indent=2, sort_keys=True, default=str) + "\n")
        print(f"dropped the records of unregistered experiments: {', '.join(gone)}")
  if args.readme:
    from bottleneck_jax.experiments import report
    changed = report.update_readme(args.readme)
    print(f"{'updated' if changed else 'unchanged'}: {args.readme}")
  return 0


# -- bench -----------------------------------------------------------------------------------
def _bench_dirs() -> list[Path]:
  import bottleneck_jax
  dirs = [Path.cwd() / "scripts", Path(bottleneck_jax.__file__).resolve().parents[1] / "scripts"]
  return [d for i, d in enumerate(dirs) if d.is_dir() and d not in dirs[:i]]


def _benches() -> dict[str, Path]:
  found: dict[str, Path] = {}
  for d in _bench_dirs():
    for f in sorted(d.glob("bench_*.py")):
      found.setdefault(f.stem[len("bench_"):], f)
  return found


def cmd_bench(args) -> int:
  import runpy
  benches = _benches()
  if not benches:
    raise UsageError("no scripts/bench_*.py found: run from a clone of the repository")
  if args.name not in benches:
    raise UsageError(f"unknown benchmark {args.name!r}; available: {sorted(benches)}")
  ns = runpy.run_path(str(benches[args.name]), run_name="bottleneck_jax_bench")
  return int(ns["main"](list(args.args)) or 0)


def _read_image(path: str):
  import numpy as np
  from PIL import Image, UnidentifiedImageError
  try:
    with Image.open(path) as im:
      if im.mode in ("L", "I;16", "I", "F", "1", "LA"):
        return np.asarray(im.convert("L"))
      return np.asarray(im.convert("RGB"))
  except FileNotFoundError:
    raise UsageError(f"no such image file: {path}") from None
  except (UnidentifiedImageError, OSError) as e:
    raise UsageError(f"cannot read {path} as an image (PNG or JPEG): {e}") from None


def cmd_compress(args) -> int:
  import numpy as np

  from bottleneck_jax.compression import compress_image, decompress_image
  from bottleneck_jax.compression._codec import psnr
  _enable_compilation_cache()
  img = _read_image(args.image)
  try:
    data = compress_image(img, model=args.model, container=args.container)
  except (ValueError, TypeError) as e:
    raise UsageError(str(e)) from None
  try:
    Path(args.out).write_bytes(data)
  except OSError as e:
    raise RunFailure(f"cannot write {args.out}: {e}", EXIT_FAILURE) from None
  rec = decompress_image(data)
  h, w = img.shape[:2]
  print(f"{args.image}: {w}x{h} {'grey' if img.ndim == 2 else 'RGB'} -> {args.out}: "
        f"{len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp, PSNR {psnr(img, rec):.2f} dB "
        f"(model {args.model}, container {args.container}, {np.asarray(img).nbytes} raw bytes)")
  return 0


def cmd_decompress(args) -> int:
  from PIL import Image

  from bottleneck_jax.compression import decompress_image
  _enable_compilation_cache()
  try:
    data = Path(args.input).read_bytes()
  except OSError as e:
    raise UsageError(f"cannot read {args.input}: {e}") from None
  try:
    img = decompress_image(data)
  except (ValueError, TypeError) as e:
    raise RunFailure(f"{args.input}: {e}", EXIT_FAILURE) from None
  try:
    Image.fromarray(img).save(args.image)
  except (OSError, ValueError) as e:
    raise UsageError(f"cannot write {args.image}: {e}") from None
  h, w = img.shape[:2]
  print(f"{args.input} -> {args.image}: {w}x{h}, {8 * len(data) / (h * w):.4f} bpp")
  return 0


# -- parser ----------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
  def error(self, message):  # exit status 2, one clear line, no traceback
    self.print_usage(sys.stderr)
    print(f"{self.prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _non_negative_int(text: str) -> int:
  try:
    v = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"must be an int, got {text!r}") from None
  if v < 0:
    raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
  return v


def _positive_int(text: str) -> int:
  v = _non_negative_int(text)
  if v < 1:
    raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
  return v


def build_parser() -> argparse.ArgumentParser:
  from bottleneck_jax import catalog
  p = _Parser(prog="bottleneck-jax",
              description="Bottlenecks in JAX: the catalogue, experiments and reproductions.")
  sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

  q = sub.add_parser("list", help="the catalogue of papers")
  q.add_argument("--family", choices=catalog.FAMILIES)
  q.add_argument("--status", choices=catalog.STATUSES)
  q.add_argument("--json", action="store_true", help="print JSON")
  q.set_defaults(func=cmd_list)

  q = sub.add_parser("experiments", help="the registered experiments and their claims")
  q.add_argument("--json", action="store_true", help="print JSON")
  q.set_defaults(func=cmd_experiments)

  q = sub.add_parser("run", help="run one experiment")
  q.add_argument("name", help="experiment name (see `bottleneck-jax experiments`)")
  q.add_argument("--workdir", help="output folder (default runs/NAME); rerun to resume")
  q.add_argument("--steps", type=_positive_int, help="training steps")
  q.add_argument("--seed", type=_non_negative_int, help="random seed")
  q.add_argument("--quick", action="store_true", help="the small CI configuration")
  q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override a configuration value (JSON values), repeatable")
  q.add_argument("--no-progress", action="store_true", help="no progress bar")
  q.add_argument("--allow-code-change", action="store_true",
                 help="resume a work directory written by another code version")
  q.set_defaults(func=cmd_run)

  q = sub.add_parser("bench", help="run a benchmark script (scripts/bench_NAME.py) of the clone")
  q.add_argument("name", help="benchmark name, e.g. efficiency")
  q.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
  q.set_defaults(func=cmd_bench)

  q = sub.add_parser("compress", help="compress an image (PNG/JPEG) with the WaLLoC codec")
  q.add_argument("image", help="input image (PNG or JPEG, RGB or grey, any size)")
  q.add_argument("out", help="the compressed file to write")
  q.add_argument("--model", default="walloc-rgb-16x",
                 help="a packaged model id or a codec .npz (default walloc-rgb-16x)")
  q.add_argument("--container", choices=("prior", "webp"), default="prior",
                 help="prior: learned prior + range coder; webp: the paper's lossless WebP")
  q.set_defaults(func=cmd_compress)

  q = sub.add_parser("decompress", help="decompress a file written by `compress`")
  q.add_argument("input", help="the compressed file")
  q.add_argument("image", help="the image to write (format from the suffix, e.g. .png)")
  q.set_defaults(func=cmd_decompress)

  q = sub.add_parser("reproduce", help="run the experiments of papers and write a results table")
  q.add_argument("ids", nargs="*", help="catalogue ids (or experiment names)")
  q.add_argument("--family", choices=catalog.FAMILIES)
  q.add_argument("--all", action="store_true", help="every registered experiment")
  q.add_argument("--quick", action="store_true", help="the small CI configurations")
  q.add_argument("--out", help="write the markdown table here (default: print it)")
  q.add_argument("--workdir", help="base folder for the runs (default runs/reproduce)")
  q.add_argument("--record", action="store_true",
                 help="run in fresh directories and store the verdicts and provenance in "
                      "experiments/recorded_results.json (needs a clean clone)")
  q.add_argument("--readme", metavar="README.md",
                 help="regenerate this README's generated blocks from the records")
  q.add_argument("--no-progress", action="store_true", help="no progress bars")
  q.set_defaults(func=cmd_reproduce)
  return p


def _silence_background() -> None:
  """Before the error line of a failed run: a failed Orbax writer keeps logging its own
  tracebacks from background threads for a while; none of that may follow the one line that
  says what went wrong (the process exits right after it)."""
  logging.disable(logging.CRITICAL)
  threading.excepthook = lambda _args: None


def _print_last_line(line: str) -> None:
  """Writes a failed run's error line as the last thing on stderr: the process exits right
  after it, and background threads (a failing Orbax writer) may be mid-way through printing a
  traceback, so stderr goes to /dev/null first and the line is written to a saved copy."""
  _silence_background()
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  os.write(saved, (line + "\n").encode())


def _end_program(status: int) -> None:
  """After a failed run, leave at once: never wait for background threads (a failed
  checkpoint writer could block interpreter shutdown) nor print their teardown noise after the
  error line."""
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)


def main(argv: list[str] | None = None) -> int:
  """Entry point of ``bottleneck-jax``; returns the exit status (see the module docstring).

  Called as the program (``argv=None``), a failed ``run`` exits the process directly after
  its error line.
  """
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    status = int(args.func(args) or 0)
  except UsageError as e:
    print(f"bottleneck-jax {args.command}: error: {e}", file=sys.stderr)
    status = EXIT_USAGE
  except RunFailure as e:
    if argv is None and args.command == "run":
      _print_last_line(f"bottleneck-jax {args.command}: error: {e}")
    else:
      print(f"bottleneck-jax {args.command}: error: {e}", file=sys.stderr)
    status = e.status
  except KeyboardInterrupt:
    workdir = getattr(args, "workdir", None) or (
        Path("runs") / args.name if getattr(args, "name", None) else None)
    if args.command == "run" and workdir is not None and _has_checkpoint(Path(workdir)):
      print("interrupted; rerun the same command to resume from the last checkpoint",
            file=sys.stderr)
    else:
      print("interrupted", file=sys.stderr)
    status = EXIT_INTERRUPTED
  if argv is None and status != 0 and args.command == "run":
    _end_program(status)
  return status


if __name__ == "__main__":
  sys.exit(main())
