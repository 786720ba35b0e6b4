"""The bottleneck-jax command line: listing, errors (exit 2, one message, no traceback)."""

import json
import subprocess
import sys

import pytest

from bottleneck_jax import cli


def _run(capsys, *argv):
  try:
    rc = cli.main(list(argv))
  except SystemExit as e:  # argparse errors
    rc = e.code
  out = capsys.readouterr()
  return rc, out.out, out.err


def test_list_and_experiments(capsys):
  rc, out, _ = _run(capsys, "list", "--family", "information")
  assert rc == 0 and "vib" in out and "rows:" in out
  rc, out, _ = _run(capsys, "list", "--json")
  rows = json.loads(out)
  assert rc == 0 and any(r["id"] == "vib" for r in rows) and "status" in rows[0]
  rc, out, _ = _run(capsys, "experiments")
  assert rc == 0 and "vib-digits" in out and "claim:" in out


@pytest.mark.parametrize("argv,match", [
    (("run", "no-such-experiment"), "unknown experiment 'no-such-experiment'"),
    (("run", "vib-digits", "--set", "nope=1"), "unknown option 'nope'"),
    (("run", "vib-digits", "--set", "beta=high"), "option 'beta' of 'vib-digits' must be float"),
    (("run", "vib-digits", "--set", "beta"), "--set expects key=value"),
    (("run", "vib-digits", "--steps", "0"), "argument --steps: must be >= 1"),
    (("run", "vib-digits", "--steps", "ten"), "argument --steps: must be an int"),
    (("run", "vib-digits", "--bogus"), "unrecognized arguments: --bogus"),
    (("list", "--family", "nope"), "invalid choice: 'nope'"),
    (("reproduce", "no-such-paper"), "unknown paper id 'no-such-paper'"),
    (("reproduce",), "name paper ids, --family F or --all"),
    (("frobnicate",), "invalid choice: 'frobnicate'"),
])
def test_bad_input_exits_2_with_a_message(capsys, argv, match):
  rc, _, err = _run(capsys, *argv)
  assert rc == 2
  assert match in err
  assert "Traceback" not in err


def test_console_script_entry_point_exit_code():
  p = subprocess.run([sys.executable, "-m", "bottleneck_jax.cli", "run", "nope"],
                     capture_output=True, text=True, timeout=60, check=False)
  assert p.returncode == 2 and "unknown experiment 'nope'" in p.stderr
  assert "Traceback" not in p.stderr


def test_results_table_markdown():
  rows = [
      {"experiment": "e1", "paper_id": "p", "claim": "a|b", "paper_value": "1 %",
       "setting": "proxy", "departures": ["digits, not MNIST", "fewer steps"],
       "metric": "acc", "value": 0.912345, "expectation": "acc >= 0.9", "expectation_held": True,
       "quick": False},
      {"experiment": "e2", "paper_id": "p", "claim": "c", "paper_value": None, "metric": "bits",
       "setting": "paper", "departures": [],
       "value": 3.0, "expectation": "bits < 1", "expectation_held": False, "quick": True},
      {"experiment": "e3", "paper_id": "q", "claim": "d", "paper_value": None, "metric": "m",
       "setting": "proxy", "departures": ["toy"], "expectation": "m > 0", "status": "error",
       "error": "RuntimeError: boom", "quick": False},
  ]
  lines = cli.results_table(rows).splitlines()
  assert lines[0] == ("| paper | experiment | setting | claim | paper's number | our number | "
                      "expectation | held |")
  assert lines[2] == ("| p | e1 | proxy (2 departures) | a\\|b | 1 % | acc = 0.9123 | acc >= 0.9 "
                      "| yes |")
  assert lines[3] == "| p | e2 | paper | c | — | bits = 3 | bits < 1 | **no** (quick) |"
  assert lines[4] == ("| q | e3 | proxy (1 departure) | d | — | error: RuntimeError: boom | m > 0 "
                      "| error |")


def _fake_experiment(**kw):
  from bottleneck_jax.experiments import registry
  from bottleneck_jax.experiments.expectations import Expectation, Metric

  def fake_run(ctx):
    ctx.log(1, value=0.5)
    if ctx.config["k"] < 0:
      raise RuntimeError("boom")
    return {"score": 0.75 if ctx.config["k"] > 0 else 0.25}

  args = dict(name="cli-test-fake", paper_id="cli-test", claim="it works", metric="score",
              metrics={"score": Metric("a score", low=0, high=1)},
              expectations=(Expectation("score", ">", 0.5, source="spec", reads=("k",)),),
              setting="proxy", departures=("a toy",), run=fake_run, defaults={"k": 1},
              paper_value="0.7")
  args.update(kw)
  return registry.Experiment(**args)


def test_reproduce_writes_the_table(tmp_path, capsys, monkeypatch):
  from bottleneck_jax.experiments import registry
  fake = _fake_experiment()
  monkeypatch.setitem(registry._REGISTRY, fake.name, fake)
  out_md = tmp_path / "results.md"
  rc, out, err = _run(capsys, "reproduce", "cli-test-fake", "--quick", "--out", str(out_md),
                      "--workdir", str(tmp_path / "runs"), "--no-progress")
  assert rc == 0, err
  text = out_md.read_text()
  assert ("| cli-test | cli-test-fake | proxy (1 departure) | it works | 0.7 | score = 0.75 | "
          "score > 0.5 | yes (quick) |") in text
  assert "held    score > 0.5  (score = 0.75; source: spec)" in out
  assert (tmp_path / "runs" / "cli-test-fake" / "summary.json").exists()
  # by paper id too
  rc, out, err = _run(capsys, "reproduce", "cli-test", "--workdir", str(tmp_path / "runs2"),
                      "--no-progress")
  assert rc == 0 and "| cli-test | cli-test-fake |" in out


def test_experiments_lists_setting_departures_and_expectations(capsys, monkeypatch):
  from bottleneck_jax.experiments import registry
  fake = _fake_experiment()
  monkeypatch.setitem(registry._REGISTRY, fake.name, fake)
  rc, out, _ = _run(capsys, "experiments")
  assert rc == 0
  assert "cli-test-fake  [cli-test]  setting: proxy" in out
  assert "departures:   - a toy" in out and "expectations: score > 0.5 (source: spec)" in out
  rc, out, _ = _run(capsys, "experiments", "--json")
  (row,) = [r for r in json.loads(out) if r["name"] == "cli-test-fake"]
  assert row["expectations"] == [{"metric": "score", "op": ">", "value": 0.5, "source": "spec",
                                  "reads": ["k"], "quick_value": None,
                                  "text": "score > 0.5 (source: spec)"}]
  assert row["setting"] == "proxy" and row["departures"] == ["a toy"]


def _clean_clone(monkeypatch, tmp_path):
  from bottleneck_jax import catalog
  from bottleneck_jax.experiments import provenance
  monkeypatch.setattr(provenance, "source_root", lambda *a, **k: tmp_path)
  monkeypatch.setattr(provenance, "git_state", lambda *a, **k: {
      "commit": "f" * 40, "dirty": False, "dirty_files": []})
  monkeypatch.setattr(catalog, "RESULTS_PATH", tmp_path / "recorded.json")
  return tmp_path / "recorded.json"


def test_record_runs_fresh_and_an_error_replaces_an_old_verdict(tmp_path, capsys, monkeypatch):
  from bottleneck_jax.experiments import registry
  results = _clean_clone(monkeypatch, tmp_path)
  monkeypatch.setitem(registry._REGISTRY, "cli-test-fake", _fake_experiment())
  argv = ["reproduce", "cli-test-fake", "--record", "--workdir", str(tmp_path / "runs"),
          "--no-progress"]
  rc, out, err = _run(capsys, *argv)
  assert rc == 0, err
  rec = json.loads(results.read_text())["cli-test-fake"]
  assert rec["status"] == "ok" and rec["expectation_held"] is True and rec["custom"] is False
  assert rec["expectations"][0]["expectation"] == "score > 0.5"
  assert rec["provenance"]["git"]["commit"] == "f" * 40
  assert rec["provenance"]["config"] == {"k": 1, "seed": 0, "quick": False}
  first = rec["workdir"]
  rc, out, err = _run(capsys, *argv)  # a second record never resumes the first one's directory
  assert rc == 0, err
  second = json.loads(results.read_text())["cli-test-fake"]["workdir"]
  assert second != first
  assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(
      [first.rsplit("/", 1)[-1], second.rsplit("/", 1)[-1]])
  # the experiment now crashes: its old held verdict must not survive
  monkeypatch.setitem(registry._REGISTRY, "cli-test-fake", _fake_experiment(defaults={"k": -1}))
  rc, out, err = _run(capsys, *argv)
  assert rc == 0 and "cli-test-fake: ERROR RuntimeError: boom" in err
  rec = json.loads(results.read_text())["cli-test-fake"]
  assert rec["status"] == "error" and rec["error"] == "RuntimeError: boom"
  assert "expectation_held" not in rec and "value" not in rec
  from bottleneck_jax import catalog
  assert catalog.record_problem("cli-test-fake", rec) == "the run failed: RuntimeError: boom"


def test_record_all_drops_the_records_of_unregistered_experiments(tmp_path, capsys,
                                                                  monkeypatch):
  from bottleneck_jax.experiments import registry
  results = _clean_clone(monkeypatch, tmp_path)
  results.write_text(json.dumps({"renamed-long-ago": {"status": "ok", "expectation_held": True}}))
  monkeypatch.setattr(registry, "_REGISTRY", {"cli-test-fake": _fake_experiment()})
  rc, out, err = _run(capsys, "reproduce", "--all", "--record", "--workdir",
                      str(tmp_path / "runs"), "--no-progress")
  assert rc == 0, err
  assert sorted(json.loads(results.read_text())) == ["cli-test-fake"]
  assert "dropped the records of unregistered experiments: renamed-long-ago" in out


def test_record_refuses_a_dirty_tree_and_an_installed_package(tmp_path, capsys, monkeypatch):
  from bottleneck_jax.experiments import provenance, registry
  results = _clean_clone(monkeypatch, tmp_path)
  monkeypatch.setitem(registry._REGISTRY, "cli-test-fake", _fake_experiment())
  argv = ["reproduce", "cli-test-fake", "--record", "--workdir", str(tmp_path / "runs")]
  monkeypatch.setattr(provenance, "git_state", lambda *a, **k: {
      "commit": "f" * 40, "dirty": True, "dirty_files": ["bottleneck_jax/cli.py"]})
  rc, _, err = _run(capsys, *argv)
  assert rc == 2 and "--record needs a clean git tree" in err and "bottleneck_jax/cli.py" in err
  monkeypatch.setattr(provenance, "source_root", lambda *a, **k: None)
  rc, _, err = _run(capsys, *argv)
  assert rc == 2 and "is an installed copy, not a git work tree" in err
  assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
  assert not results.exists() and not (tmp_path / "runs").exists()


def test_summary_line_shows_each_expectation_held_or_missed():
  s = {"experiment": "e", "metric": "acc", "value": 0.5, "expectation_held": False,
       "seconds": 1.25, "setting": "proxy", "departures": ["toy"], "quick": False,
       "custom": True, "overrides": ["k"],
       "expectations": [
           {"metric": "acc", "op": ">=", "threshold": 0.9, "value": 0.5, "held": False,
            "source": "paper", "expectation": "acc >= 0.9"},
           {"metric": "acc", "op": ">=", "threshold": 0.4, "value": 0.5, "held": True,
            "source": "spec", "expectation": "acc >= base - 0.1"}]}
  assert cli._summary_line(s).splitlines() == [
      "e: acc = 0.5 -> NOT held  [1.2 s; proxy, 1 departure; custom (k): never recorded]",
      "    MISSED  acc >= 0.9  (acc = 0.5; source: paper)",
      "    held    acc >= base - 0.1  (acc = 0.5 vs 0.4; source: spec)"]


def test_run_rejects_a_configuration_the_experiment_cannot_use(tmp_path, capsys):
  from bottleneck_jax import cli
  rc = cli.main(["run", "vib-digits", "--quick", "--workdir", str(tmp_path / "w"), "--set",
                 "batch_size=100000", "--no-progress"])
  err = capsys.readouterr().err
  assert rc == 2
  assert "batch_size must be <=" in err and "Traceback" not in err


def test_reproduce_refuses_to_record_quick_runs(capsys):
  from bottleneck_jax import cli
  assert cli.main(["reproduce", "--all", "--quick", "--record"]) == 2
  assert "--record stores full runs only" in capsys.readouterr().err


def test_bench_runs_a_script_of_the_clone_and_rejects_unknown_names(capsys):
  from bottleneck_jax import cli
  assert cli.main(["bench", "nope"]) == 2
  err = capsys.readouterr().err
  assert "unknown benchmark 'nope'; available: [" in err and "'efficiency'" in err
  assert cli.main(["bench", "efficiency", "--quick", "--ops", "splade", "--skip-cpu-time"]) == 0
  out = capsys.readouterr().out
  assert "Temporary memory, forward + backward: SPLADE lexical max-pool" in out


def test_run_lists_only_the_files_it_wrote_and_promises_no_resume_without_checkpoints(
    tmp_path, capsys):
  from bottleneck_jax import cli
  w = tmp_path / "w"
  w.mkdir()
  (w / "config.json").write_text("{}")
  assert cli._files_line(w) == f"{w}/ (config.json)"
  (w / "checkpoints").mkdir()  # an empty folder is not a checkpoint
  assert "checkpoints" not in cli._files_line(w) and not cli._has_checkpoint(w)
  (w / "checkpoints" / "20").mkdir()
  assert cli._has_checkpoint(w) and "checkpoints/ (rerun the same command to resume)" in (
      cli._files_line(w))
