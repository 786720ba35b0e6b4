"""The registry: expectations as data, verdicts, custom runs, provenance.

Every registered experiment is checked generically: a measurement that violates each of its
expectations must miss (and one that satisfies them all must hold), so an expectation that
cannot fail is caught here for each experiment, including ones added later.
"""

import hashlib
import json
import math
import operator
import subprocess

import pytest

from bottleneck_jax.experiments import provenance, registry
from bottleneck_jax.experiments.expectations import (
    Expectation,
    Metric,
    MissingMetricError,
    Ref,
    as_metric,
)

# -- generic checks of every registered experiment -----------------------------------------------

_PY_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
           "==": operator.eq, "!=": operator.ne}


def _range(m: Metric) -> tuple[float, float]:
  return (-math.inf if m.low is None else m.low, math.inf if m.high is None else m.high)


def _base(m: Metric) -> float:
  lo, hi = _range(m)
  if math.isfinite(lo) and math.isfinite(hi):
    return lo + 0.5 * (hi - lo)
  if math.isfinite(lo):
    return lo + 1.0
  if math.isfinite(hi):
    return hi - 1.0
  return 1.0


def _threshold(e: Expectation, values: dict, quick: bool):
  t = e.threshold(quick=quick)
  if isinstance(t, Ref):
    return t.scale * values[t.metric] + t.offset
  return t


def _holds(e, v, values, quick) -> bool:  # the reference verdict, written out independently
  t = _threshold(e, values, quick)
  if isinstance(t, bool):
    return _PY_OPS[e.op](bool(v), t)
  return not (math.isnan(v) or math.isnan(t)) and _PY_OPS[e.op](v, t)


def _candidates(m: Metric, thresholds) -> list:
  lo, hi = _range(m)
  cands = [_base(m)]
  if math.isfinite(lo) and math.isfinite(hi):
    cands += [lo + f * (hi - lo) for f in (0.01, 0.1, 0.25, 0.75, 0.9, 0.99)]
  cands += [lo, hi, 1.0, 0.1, 10.0, 0.0, -1.0]
  for t in thresholds:
    d = max(1e-6, 1e-3 * abs(t))
    cands += [t, t - d, t + d, t - 1, t + 1, 2 * t, t / 2]
  return [c for c in dict.fromkeys(cands) if math.isfinite(c) and lo <= c <= hi]


def _measurements(exp, *, quick: bool, violate: int | None = None) -> dict:
  """Measurements that satisfy every expectation of ``exp`` except ``violate`` (which they
  break), each value inside its metric's documented range, found by a small backtracking
  search. ``pytest.fail`` when there are none: the expectation cannot fail (or the
  expectations cannot all hold)."""
  metrics = {k: as_metric(m) for k, m in exp.metrics.items()}
  exps = list(exp.expectations)
  names = list(dict.fromkeys(m for e in exps for m in e.metrics()))
  deps = {m: {t.metric for e in exps if e.metric == m
              for t in (e.threshold(quick=quick),) if isinstance(t, Ref)} for m in names}
  order: list[str] = []
  while len(order) < len(names):
    ready = [m for m in names if m not in order and deps[m] <= set(order)]
    assert ready, f"{exp.name}: cyclic Ref thresholds among {names}"
    order += ready
  budget = [50_000]

  def options(m, values):
    mine = [(i, e) for i, e in enumerate(exps) if e.metric == m]
    if any(isinstance(e.threshold(quick=quick), bool) for _, e in mine):
      cands = [True, False]
    else:
      cands = _candidates(metrics[m], [float(_threshold(e, values, quick)) for _, e in mine])
    if not any(i == violate for i, _ in mine):
      return [c for c in cands if all(_holds(e, c, values, quick) for _, e in mine)]
    breaks = [c for c in cands if not _holds(exps[violate], c, values, quick)]
    clean = [c for c in breaks if all(_holds(e, c, values, quick) for i, e in mine
                                      if i != violate)]
    return clean + [c for c in breaks if c not in clean]  # a sibling may have to break too

  def search(k, values):
    if k == len(order):
      return dict(values)
    m = order[k]
    for c in options(m, values):
      budget[0] -= 1
      if budget[0] < 0:
        return None
      found = search(k + 1, {**values, m: c})
      if found is not None:
        return found
    return None

  found = search(0, {})
  if found is None:
    what = (f"make {exps[violate].render(quick=quick)!r} fail" if violate is not None
            else "satisfy every expectation")
    pytest.fail(f"{exp.name}: no measurements inside the documented ranges can {what}")
  return found


EXPERIMENTS = registry.names()


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_declares_expectations_as_data(name):
  exp = registry.get(name)
  assert registry.validate(exp) == []
  assert exp.setting in ("paper", "proxy")
  assert exp.setting == "paper" or exp.departures
  for e in exp.expectations:
    assert e.source.strip() and set(e.reads) <= set(exp.defaults)


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_expectation_can_fail_and_can_hold(name, quick):
  exp = registry.get(name)
  good = _measurements(exp, quick=quick)
  verdict = exp.evaluate(good, quick=quick)
  assert verdict["expectation_held"] is True, verdict
  for i, e in enumerate(exp.expectations):
    bad = _measurements(exp, quick=quick, violate=i)
    verdict = exp.evaluate(bad, quick=quick)
    assert verdict["expectations"][i]["held"] is False, (e.render(quick=quick), bad)
    assert verdict["expectation_held"] is False, (e.render(quick=quick), bad)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_misses_on_nan_and_errs_on_a_missing_metric(name):
  exp = registry.get(name)
  good = _measurements(exp, quick=False)
  for e in exp.expectations:
    if isinstance(good[e.metric], bool):
      continue
    nan = dict(good, **{e.metric: float("nan")})
    assert exp.evaluate(nan)["expectation_held"] is False, e.render()
  for m in good:
    with pytest.raises(MissingMetricError, match=repr(m)):
      exp.evaluate({k: v for k, v in good.items() if k != m})


def test_the_generic_check_passes_a_sound_experiment_and_catches_one_that_cannot_fail():
  exp = _fake()
  for quick in (False, True):
    good = _measurements(exp, quick=quick)
    assert exp.evaluate(good, quick=quick)["expectation_held"] is True
    for i in range(3):
      assert exp.evaluate(_measurements(exp, quick=quick, violate=i), quick=quick)[
          "expectations"][i]["held"] is False
  # both in [0, 1]: acc >= base - 2 holds for every pair, though register() cannot see it
  vacuous = _fake(metrics={"acc": Metric("a", low=0, high=1), "base": Metric("b", low=0, high=1)},
                  expectations=(Expectation("acc", ">=", Ref("base", offset=-2.0), source="s"),))
  assert registry.validate(vacuous) == []
  with pytest.raises(pytest.fail.Exception, match="can make 'acc >= base - 2 .*' fail"):
    _measurements(vacuous, quick=False, violate=0)


# -- Expectation, Ref, Metric ---------------------------------------------------------------


def test_rendering():
  e = Expectation("test_accuracy", ">=", Ref("deterministic_accuracy", offset=-0.01),
                  source="paper Table 2")
  assert str(e) == "test_accuracy >= deterministic_accuracy - 0.01 (source: paper Table 2)"
  assert e.render(source=False) == "test_accuracy >= deterministic_accuracy - 0.01"
  assert str(Ref("x", scale=2.0, offset=1.5)) == "2 * x + 1.5"
  assert str(Ref("x", scale=0.5)) == "0.5 * x"
  e = Expectation("bits", "<", 0.5, source="spec", quick_value=2.0)
  assert e.render(source=False) == "bits < 0.5"
  assert e.render(quick=True, source=False) == "bits < 2"
  assert Expectation("m", "==", True, source="s").render(source=False) == "m == True"
  assert Expectation("r", ">=", 10.0, source="s").render(source=False) == "r >= 10"
  assert Expectation("r", "<=", 1e-5, source="s").render(source=False) == "r <= 1e-05"
  assert Expectation("r", "<=", 0.123456789, source="s").render(source=False) == \
      "r <= 0.123456789"


@pytest.mark.parametrize("op", [">", ">=", "<", "<=", "==", "!="])
@pytest.mark.parametrize("value", [0.89, 0.9, 0.91, -1.0, math.inf, -math.inf])
def test_check_agrees_with_python_comparisons(op, value):
  r = Expectation("acc", op, 0.9, source="s").check({"acc": value})
  assert r["held"] is _PY_OPS[op](value, 0.9)
  assert (r["metric"], r["op"], r["threshold"], r["value"], r["source"]) == \
      ("acc", op, 0.9, value, "s")


def test_nan_is_a_miss_for_every_op_and_a_nan_reference_too():
  for op in _PY_OPS:
    assert Expectation("acc", op, 0.9, source="s").check({"acc": math.nan})["held"] is False
    e = Expectation("acc", op, Ref("base"), source="s")
    assert e.check({"acc": 0.5, "base": math.nan})["held"] is False


def test_ref_thresholds_resolve_from_the_measurements():
  e = Expectation("acc", ">=", Ref("base", scale=1.0, offset=-0.01), source="s")
  assert e.check({"acc": 0.80, "base": 0.81})["held"] is True   # 0.80 >= 0.80
  assert e.check({"acc": 0.79, "base": 0.81})["held"] is False
  r = Expectation("speedup", ">", Ref("baseline", scale=2.0), source="s").check(
      {"speedup": 3.0, "baseline": 1.25})
  assert (r["threshold"], r["held"]) == (2.5, True)


def test_numpy_and_jax_scalars_are_measurements():
  import jax.numpy as jnp
  import numpy as np
  e = Expectation("acc", ">=", 0.5, source="s")
  assert e.check({"acc": np.float32(0.75)})["held"] is True
  assert e.check({"acc": jnp.asarray(0.25)})["held"] is False
  assert Expectation("ok", "==", True, source="s").check({"ok": np.bool_(True)})["held"] is True


def test_wrong_types_and_missing_metrics_are_errors_not_misses():
  with pytest.raises(MissingMetricError, match="'acc'"):
    Expectation("acc", ">=", 0.5, source="s").check({"other": 1.0})
  with pytest.raises(MissingMetricError, match="'base'"):
    Expectation("acc", ">=", Ref("base"), source="s").check({"acc": 1.0})
  with pytest.raises(RuntimeError, match="must be a number"):
    Expectation("acc", ">=", 0.5, source="s").check({"acc": "high"})
  with pytest.raises(RuntimeError, match="must be a bool"):
    Expectation("ok", "==", True, source="s").check({"ok": 1.0})


@pytest.mark.parametrize("kwargs,match", [
    (dict(op="=>"), "op must be one of"),
    (dict(value="baseline_acc"), r"use Ref\('baseline_acc'\)"),
    (dict(value=math.nan), "finite number"),
    (dict(value=math.inf), "finite number"),
    (dict(value=True), "boolean value needs op '==' or '!='"),
    (dict(source=" "), "source must name the paper or the test plan"),
    (dict(value=Ref("acc")), "compared with itself"),
    (dict(reads="beta"), "reads must be a tuple of config keys"),
    (dict(op="==", value=1.0, quick_value=True), "both be booleans"),
    (dict(metric=""), "metric must be a non-empty str"),
])
def test_bad_expectations_are_refused(kwargs, match):
  args = dict(metric="acc", op=">=", value=0.9, source="spec")
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    Expectation(**args)


def test_bad_refs_and_metrics_are_refused():
  with pytest.raises(ValueError, match="scale must be non-zero"):
    Ref("x", scale=0.0)
  with pytest.raises(ValueError, match="offset must be a finite number"):
    Ref("x", offset=math.nan)
  with pytest.raises(ValueError, match="low must be < high"):
    Metric("m", low=1, high=0)
  with pytest.raises(ValueError, match="doc must be a non-empty str"):
    Metric("")


# -- register() -----------------------------------------------------------------------------


def _measure(ctx):
  return {"acc": 0.95 if ctx.config["k"] > 0 else 0.5, "base": 0.96, "ok": True}


def _fake(**kw):
  args = dict(name="registry-test-fake", paper_id="registry-test", claim="c", metric="acc",
              metrics={"acc": Metric("accuracy", low=0, high=1), "base": "baseline accuracy",
                       "ok": "a bool"},
              expectations=(
                  Expectation("acc", ">=", 0.9, source="spec", reads=("k",), quick_value=0.4),
                  Expectation("acc", ">=", Ref("base", offset=-0.02), source="paper Table 2"),
                  Expectation("ok", "==", True, source="spec")),
              setting="proxy", departures=("toy data",), run=_measure,
              defaults={"k": 1, "steps": 3, "checkpoint_every": 1, "other": 0.5},
              quick={"steps": 1})
  args.update(kw)
  return registry.Experiment(**args)


@pytest.mark.parametrize("kwargs,match", [
    (dict(expectations=()), "expectations must be a non-empty tuple"),
    (dict(setting="toy"), "setting must be one of"),
    (dict(departures=()), "a proxy experiment must list its departures"),
    (dict(metrics={"acc": "accuracy", "ok": "b"}), "metric 'base' of .* is not documented"),
    (dict(metric="loss"), "headline metric 'loss' is not documented"),
    (dict(expectations=(Expectation("acc", ">=", 0.5, source="s", reads=("zz",)),)),
     r"reads \['zz'\], which are not options"),
    (dict(expectations=(Expectation("acc", "<=", 1, source="s"),)), "cannot fail"),
    (dict(expectations=(Expectation("acc", ">=", 0.0, source="s"),)), "cannot fail"),
    (dict(expectations=(Expectation("acc", ">=", 0.5, source="s", quick_value=-1),)),
     "'acc >= -1' cannot fail"),
    (dict(expectations=(Expectation("acc", "!=", 2, source="s"),)), "cannot fail"),
    (dict(quick={"nope": 1}), r"quick overrides keys that are not options \(defaults\): \['nope'\]"),
])
def test_register_refuses_incomplete_declarations(kwargs, match):
  with pytest.raises(ValueError, match=match):
    registry.register(_fake(name="registry-test-bad", **kwargs))
  assert "registry-test-bad" not in registry._REGISTRY


def test_register_accepts_a_paper_setting_and_refuses_a_second_name(monkeypatch):
  monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
  exp = registry.register(_fake(setting="paper", departures=()))
  with pytest.raises(ValueError, match="already registered"):
    registry.register(_fake(setting="paper", departures=()))
  assert registry.get(exp.name) is exp


# -- verdicts of runs: custom, quick, summaries ---------------------------------------------


def test_overrides_make_a_run_custom_unless_bookkeeping_or_quick():
  exp = _fake()
  cfg = registry.resolve_config
  assert exp.overrides(cfg(exp)) == []
  assert exp.overrides(cfg(exp, quick=True)) == []                 # quick is its own flag
  assert exp.overrides(cfg(exp, overrides={"k": 2})) == ["k"]      # read by an expectation
  assert exp.overrides(cfg(exp, overrides={"other": 0.25})) == ["other"]  # any option counts
  assert exp.overrides(cfg(exp, steps=10)) == ["steps"]
  assert exp.overrides(cfg(exp, seed=3)) == ["seed"]
  assert exp.overrides(cfg(exp, overrides={"checkpoint_every": 2})) == []
  assert exp.overrides(cfg(exp, overrides={"k": 1})) == []          # the declared value


def test_summarize_evaluates_and_reports_per_expectation():
  exp = _fake()
  config = registry.resolve_config(exp, overrides={"k": 0})
  s = registry.summarize(exp, {"acc": 0.5, "base": 0.96, "ok": True}, config, seconds=1.0)
  assert s["expectation_held"] is False and s["custom"] is True
  assert s["overrides"] == ["k"] and s["overrides_read_by_expectations"] == ["k"]
  assert [r["held"] for r in s["expectations"]] == [False, False, True]
  assert s["expectations"][1] == {"metric": "acc", "op": ">=", "threshold": 0.94,
                                  "value": 0.5, "held": False, "source": "paper Table 2",
                                  "expectation": "acc >= base - 0.02"}
  assert (s["setting"], s["departures"], s["value"]) == ("proxy", ["toy data"], 0.5)
  quick = registry.resolve_config(exp, quick=True)
  s = registry.summarize(exp, {"acc": 0.5, "base": 0.51, "ok": True}, quick, seconds=1.0)
  assert s["expectation_held"] is True and s["quick"] is True and s["custom"] is False
  assert s["expectations"][0]["threshold"] == 0.4


def test_a_run_that_returns_a_verdict_or_misses_a_metric_is_an_error():
  exp = _fake()
  config = registry.resolve_config(exp)
  with pytest.raises(RuntimeError, match="run only measures"):
    registry.summarize(exp, {"acc": 1.0, "base": 1.0, "ok": True, "expectation_held": True},
                       config, seconds=0.0)
  with pytest.raises(MissingMetricError, match="'ok'"):
    registry.summarize(exp, {"acc": 1.0, "base": 1.0}, config, seconds=0.0)
  with pytest.raises(RuntimeError, match="outside its documented range"):
    registry.summarize(exp, {"acc": 1.5, "base": 1.0, "ok": True}, config, seconds=0.0)


def test_run_experiment_writes_the_verdict_and_provenance(tmp_path, monkeypatch):
  monkeypatch.setitem(registry._REGISTRY, "registry-test-fake", _fake())
  s = registry.run_experiment("registry-test-fake", workdir=tmp_path / "w", progress=False)
  saved = json.loads((tmp_path / "w" / "summary.json").read_text())
  assert saved["expectation_held"] is True and saved["custom"] is False
  assert len(saved["expectations"]) == 3 and all(r["held"] for r in saved["expectations"])
  p = saved["provenance"]
  want = {"k": 1, "steps": 3, "checkpoint_every": 1, "other": 0.5, "seed": 0, "quick": False}
  assert p["config"] == want
  text = json.dumps(want, sort_keys=True, separators=(",", ":"))
  assert p["config_sha256"] == hashlib.sha256(text.encode()).hexdigest()
  import jax
  assert p["backend"] == jax.default_backend() and p["device_count"] == jax.device_count()
  for lib in ("python", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint"):
    assert p["versions"][lib], lib
  assert p["versions"]["jax"] == jax.__version__
  assert p["git"]["commit"] is None or len(p["git"]["commit"]) == 40
  assert s["provenance"]["date_utc"].endswith("Z")


# -- provenance: git state ------------------------------------------------------------------


def _git(cwd, *args):
  subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                 check=True, capture_output=True)


def test_git_state_of_a_clone_an_untracked_copy_and_no_repository(tmp_path):
  pkg = tmp_path / "repo" / "pkg"
  pkg.mkdir(parents=True)
  (pkg / "__init__.py").write_text("")
  assert provenance.source_root(pkg) is None                  # not in any work tree
  _git(tmp_path / "repo", "init", "-q")
  assert provenance.source_root(pkg) is None                  # in a tree, but not tracked
  assert provenance.git_state(pkg) == {"commit": None, "dirty": None, "dirty_files": None}
  (tmp_path / "repo" / "README.md").write_text("a")
  _git(tmp_path / "repo", "add", ".")
  _git(tmp_path / "repo", "commit", "-q", "-m", "x")
  assert provenance.source_root(pkg) == (tmp_path / "repo").resolve()
  head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path / "repo", text=True,
                        capture_output=True, check=True).stdout.strip()
  assert provenance.git_state(pkg) == {"commit": head, "dirty": False, "dirty_files": []}
  (tmp_path / "repo" / "README.md").write_text("b")          # a file the recorder writes
  assert provenance.git_state(pkg)["dirty"] is False
  (pkg / "__init__.py").write_text("x = 1\n")
  (pkg / "new.py").write_text("")
  state = provenance.git_state(pkg)
  assert state["dirty"] is True and state["dirty_files"] == ["pkg/__init__.py", "pkg/new.py"]
