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
       "metric": "acc", "value": 0.912345, "expectation": ">= 0.9", "expectation_held": True,
       "quick": False},
      {"experiment": "e2", "paper_id": "p", "claim": "c", "paper_value": None, "metric": "bits",
       "value": 3.0, "expectation": "< 1", "expectation_held": False, "quick": True},
      {"experiment": "e3", "paper_id": "q", "claim": "d", "paper_value": None, "metric": "m",
       "expectation": "x", "error": "RuntimeError: boom", "quick": False},
  ]
  lines = cli.results_table(rows).splitlines()
  assert lines[0].startswith("| paper | experiment | claim | paper's number | our number |")
  assert lines[2] == "| p | e1 | a\\|b | 1 % | acc = 0.9123 | >= 0.9 | yes |"
  assert lines[3].endswith("| bits = 3 | < 1 | **no** (quick) |")
  assert "error: RuntimeError: boom" in lines[4]


def test_reproduce_writes_the_table(tmp_path, capsys, monkeypatch):
  from bottleneck_jax.experiments import registry

  def fake_run(ctx):
    ctx.log(1, value=0.5)
    return {"score": 0.75, "expectation_held": ctx.config["k"] > 0}

  fake = registry.Experiment(name="cli-test-fake", paper_id="cli-test", claim="it works",
                             metric="score", expectation="score > 0.5", run=fake_run,
                             defaults={"k": 1}, paper_value="0.7")
  monkeypatch.setitem(registry._REGISTRY, fake.name, fake)
  out_md = tmp_path / "results.md"
  rc, out, err = _run(capsys, "reproduce", "cli-test-fake", "--quick", "--out", str(out_md),
                      "--workdir", str(tmp_path / "runs"), "--no-progress")
  assert rc == 0, err
  text = out_md.read_text()
  assert "| cli-test | cli-test-fake | it works | 0.7 | score = 0.75 | score > 0.5 | yes (quick) |" \
      in text
  assert (tmp_path / "runs" / "cli-test-fake" / "summary.json").exists()
  # by paper id too
  rc, out, err = _run(capsys, "reproduce", "cli-test", "--workdir", str(tmp_path / "runs2"),
                      "--no-progress")
  assert rc == 0 and "| cli-test | cli-test-fake |" in out


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
  assert "unknown benchmark 'nope'; available: ['efficiency']" in capsys.readouterr().err
  assert cli.main(["bench", "efficiency", "--quick", "--ops", "splade", "--skip-cpu-time"]) == 0
  out = capsys.readouterr().out
  assert "Temporary memory, forward + backward: SPLADE lexical max-pool" in out
