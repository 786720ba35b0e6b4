"""The catalogue: ids, titles and families match papers.md; every named function exists; the
status is what the repository supports."""

import json
import re
from pathlib import Path

import pytest

from bottleneck_jax import catalog

# The 49 ids of shared/papers.md, in order (pinned here so the test also runs without shared/).
PAPER_IDS = [
    "walloc", "skintokens-fsq", "winner-init", "sparton", "lpgnas", "hib", "vq-logits", "lexlip",
    "marag-r1", "cvib", "cs-ib", "sparse-cbm", "vpo", "ib-generalization", "ard-vae", "brl",
    "chi0", "shc", "gpicl", "dkvb", "pcbm", "labo", "graph-rlearner", "sae-data-selection",
    "kinetics", "cbm-input-features", "knobo", "adaptive-mi", "lossy-mi", "rettention", "wta-crs",
    "editreward", "agentcpm-explore", "ecbm", "cib-reasoning", "chart-perception", "dn-cbm",
    "info-plane", "codebook-features", "remix", "zipvl", "chronicals", "bottlenecked-transformer",
    "concept-metrics", "hicra", "plasticity", "sl-cbm", "bottlefit", "bottleneck-sampling",
]

PAPERS_MD = Path(__file__).resolve().parents[2] / "shared" / "papers.md"
ROOT = Path(__file__).resolve().parents[1]


def test_ids_match_the_paper_list():
  assert catalog.paper_ids() == PAPER_IDS
  assert len(set(PAPER_IDS)) == 49


@pytest.mark.skipif(not PAPERS_MD.exists(), reason="shared/papers.md not beside the checkout")
def test_ids_titles_and_families_match_papers_md():
  rows = re.findall(r"^\| (\d+) \| `([a-z0-9-]+)` \| (\w+) \| (.+?) \| (.+?) \|$",
                    PAPERS_MD.read_text(), flags=re.M)
  assert len(rows) == 49
  by_id = {e.id: e for e in catalog.entries(include_base=False)}
  for number, id_, family, title, listed in rows:
    e = by_id[id_]
    assert (e.number, e.family, e.title, e.listed) == (int(number), family, title, listed)


def test_every_listed_function_module_test_and_experiment_exists():
  from bottleneck_jax import experiments
  known = set(experiments.names())
  for e in catalog.entries():
    assert e.family in catalog.FAMILIES
    for path in e.functions:
      assert callable(catalog.resolve(path)), path
    for name in e.experiments:
      assert name in known, (e.id, name)
      assert experiments.get(name).paper_id == e.id
    for t in e.tests:
      assert (ROOT / t).exists(), t
    if e.status != "planned":
      __import__(e.module)


def _fake_experiment(name):
  from bottleneck_jax.experiments import registry
  from bottleneck_jax.experiments.expectations import Expectation, Metric
  return registry.Experiment(
      name=name, paper_id="x", claim="c", metric="acc", setting="proxy", departures=("toy",),
      metrics={"acc": Metric("accuracy", low=0, high=1)},
      expectations=(Expectation("acc", ">=", 0.9, source="spec"),
                    Expectation("acc", "<", 0.999, source="spec")),
      run=lambda ctx: {"acc": 0.95})


def _record(**kw):
  rec = {"status": "ok", "expectation_held": True, "quick": False, "custom": False,
         "legacy": False, "value": 0.95,
         "expectations": [{"expectation": "acc >= 0.9", "held": True},
                          {"expectation": "acc < 0.999", "held": True}]}
  rec.update(kw)
  return rec


def test_status_is_computed_from_functions_tests_and_recorded_results(monkeypatch, tmp_path):
  from bottleneck_jax.experiments import registry
  for name in ("catalog-fake", "catalog-fake-2"):
    monkeypatch.setitem(registry._REGISTRY, name, _fake_experiment(name))
  e = catalog.Entry(1, "x", "information", "t", "d", "m", functions=("a.b",), tests=("t.py",),
                    experiments=("catalog-fake",))
  path = tmp_path / "r.json"
  monkeypatch.setattr(catalog, "RESULTS_PATH", path)
  assert e.status == "implemented"  # nothing recorded

  def status(**kw):
    path.write_text(json.dumps({"catalog-fake": _record(**kw)}))
    return e.status, catalog.record_problem("catalog-fake", catalog.recorded_results()[
        "catalog-fake"])

  assert status() == ("reproduced", None)
  assert status(quick=True) == ("implemented", "a quick run")
  assert status(custom=True) == ("implemented", "a custom configuration")
  assert status(custom=None)[0] == "implemented"   # not known to be the declared configuration
  assert status(expectation_held=False)[1] == "the expectations were missed"
  assert status(status="error", error="RuntimeError: boom") == (
      "implemented", "the run failed: RuntimeError: boom")
  held = _record()["expectations"]
  assert status(expectations=[dict(held[0], held=False)] + held[1:])[0] == "implemented"
  assert status(expectations=[])[0] == "implemented"  # the old format: a verdict of run()
  assert status(legacy=True)[0] == "implemented"
  changed = [dict(r, expectation=r["expectation"] + "0") for r in held]
  assert status(expectations=changed)[1] == \
      "the declared expectations changed since the run was recorded"
  # a row is reproduced only when every one of its experiments is
  two = catalog.Entry(1, "x", "information", "t", "d", "m", functions=("a.b",),
                      tests=("t.py",), experiments=("catalog-fake", "catalog-fake-2"))
  path.write_text(json.dumps({"catalog-fake": _record()}))
  assert two.status == "implemented"
  path.write_text(json.dumps({"catalog-fake": _record(), "catalog-fake-2": _record()}))
  assert two.status == "reproduced"
  path.write_text(json.dumps({"nope": _record()}))
  assert catalog.record_problem("nope", _record()) == "not a registered experiment"
  assert catalog.Entry(1, "x", "f", "t", "d", "m", functions=("a.b",)).status == "planned"


def test_filters_and_formats():
  rows = catalog.entries(family="efficiency")
  assert {e.id for e in rows} >= {"sparton", "lexlip", "chronicals", "wta-crs"}
  table = catalog.format_table(rows)
  assert "sparton" in table and "rows:" in table
  data = json.loads(catalog.to_json(rows))
  assert {d["id"] for d in data} == {e.id for e in rows}
  assert all(d["status"] in catalog.STATUSES for d in data)
  with pytest.raises(ValueError, match="entries: family must be one of"):
    catalog.entries(family="nope")
  with pytest.raises(ValueError, match="entries: status must be one of"):
    catalog.entries(status="done")
  with pytest.raises(ValueError, match="unknown catalogue id 'nope'"):
    catalog.get("nope")
  assert catalog.get("vib").number == 0


def test_a_damaged_results_record_is_an_error_not_a_silent_demotion(monkeypatch, tmp_path):
  bad = tmp_path / "r.json"
  bad.write_text('{"vib-digits": {"expectation_held": tr')
  monkeypatch.setattr(catalog, "RESULTS_PATH", bad)
  with pytest.raises(ValueError, match="recorded_results: .* is not valid JSON"):
    catalog.recorded_results()
