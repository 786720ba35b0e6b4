"""Fault injection: what a run does when the disk, the checkpoints, another run or the numbers
go wrong. Every failure ends with one line naming the cause and a documented exit status
(bottleneck_jax.cli), never a hang, a traceback, garbage or a silently mixed run.

Subprocesses (fresh interpreters, as the console script runs) where the point is the process
itself: no hang at exit, SIGKILL. Everything else runs in-process on a tiny model.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bottleneck_jax import cli
from bottleneck_jax.experiments import registry
from bottleneck_jax.train.checkpoint import code_version

from . import _faulty
from . import _subproc as sp

pytestmark = pytest.mark.faults
FAULTY = str(Path(__file__).with_name("_faulty.py"))


@pytest.fixture(autouse=True)
def tiny(monkeypatch):
  monkeypatch.setitem(registry._REGISTRY, _faulty.NAME, _faulty.experiment())
  monkeypatch.setenv("BOTTLENECK_JAX_NO_CACHE", "1")
  code_version.cache_clear()  # the subprocesses read the git commit of now


def _run(capsys, workdir, *args):
  rc = cli.main(["run", _faulty.NAME, "--no-progress", "--workdir", str(workdir), *args])
  out = capsys.readouterr()
  return rc, out.out, out.err


def _error_line(err: str) -> str:
  lines = [ln for ln in err.splitlines() if ln.strip()]
  assert lines and "Traceback" not in err.split("bottleneck-jax run: error:")[-1], err
  return lines[-1]


def _spawn(fault, workdir, *args, devices=1):
  cmd = [sys.executable, FAULTY, "--fault", fault, "--", "run", _faulty.NAME, "--no-progress",
         "--workdir", str(workdir), *args]
  return subprocess.Popen(cmd, env=sp.env(devices, BOTTLENECK_JAX_NO_CACHE=1), cwd=sp.ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
  """The uninterrupted run's summary (in-process, 8 devices)."""
  d = tmp_path_factory.mktemp("clean")
  registry._REGISTRY[_faulty.NAME] = _faulty.experiment()
  try:
    return registry.run_experiment(_faulty.NAME, workdir=d, progress=False)
  finally:
    registry._REGISTRY.pop(_faulty.NAME, None)


# -- a checkpoint write that fails ----------------------------------------------------------------
def test_read_only_and_full_checkpoint_dirs_end_with_one_line_no_hang(tmp_path):
  # Without the fix, the read-only case logs the OSError and then waits forever on Orbax's
  # non-daemon writer threads (the timeout below fires); ENOSPC used to exit with status 2.
  procs = {f: _spawn(f, tmp_path / f) for f in ("read-only", "full")}
  reasons = {"read-only": "[Errno 30] Read-only file system", "full":
             "[Errno 28] No space left on device"}
  for fault, p in procs.items():
    try:
      _, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
      for q in procs.values():
        q.kill()
      pytest.fail(f"{fault}: the run hung after the checkpoint write failed")
    last = _error_line(err)
    assert p.returncode == cli.EXIT_FAILURE, (fault, p.returncode, err[-2000:])
    assert last.startswith("bottleneck-jax run: error: checkpoint write failed in "
                           f"{tmp_path / fault / 'checkpoints'}: {reasons[fault]}"), last
    assert not (tmp_path / fault / "summary.json").exists()


# -- damaged checkpoints --------------------------------------------------------------------------
def _largest_state_file(step_dir: Path) -> Path:
  files = [f for f in (step_dir / "state").rglob("*") if f.is_file()]
  return max(files, key=lambda f: f.stat().st_size)


def _truncate(step_dir):
  f = _largest_state_file(step_dir)
  f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _flip_bit(step_dir):
  f = _largest_state_file(step_dir)
  data = bytearray(f.read_bytes())
  data[len(data) // 2] ^= 0x10
  f.write_bytes(bytes(data))


def _partial(step_dir):
  (step_dir / "state" / "_METADATA").unlink()


@pytest.mark.parametrize("damage", [_truncate, _flip_bit, _partial])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys, clean,
                                                                  damage):
  rc, _, err = _run(capsys, tmp_path, "--steps", "6")
  assert rc == 0, err
  assert sp.checkpoint_steps(tmp_path) == [2, 4, 6]
  damage(tmp_path / "checkpoints" / "6")
  with pytest.warns(UserWarning, match=r"checkpoint step 6 .* is damaged \((checksum mismatch|"
                    r".* bytes, expected|missing file)"):
    rc, _, err = _run(capsys, tmp_path)  # continue to the default 8 steps
  assert rc == 0, err
  got = json.loads((tmp_path / "summary.json").read_text())["results"]
  assert got["resumed_from"] == 4
  assert got["params"] == clean["results"]["params"]  # bit-identical to the uninterrupted run
  assert got["loss"] == clean["results"]["loss"]
  assert [p.name.split("-")[0] for p in (tmp_path / "checkpoints" / "damaged").iterdir()] == ["6"]


def test_no_intact_checkpoint_left_is_one_line(tmp_path, capsys):
  rc, _, err = _run(capsys, tmp_path, "--steps", "4")
  assert rc == 0, err
  for s in (2, 4):
    _flip_bit(tmp_path / "checkpoints" / str(s))
  with pytest.warns(UserWarning, match="is damaged"):
    rc, _, err = _run(capsys, tmp_path)
  assert rc == cli.EXIT_FAILURE
  assert _error_line(err).startswith(
      f"bottleneck-jax run: error: no intact checkpoint left in {tmp_path / 'checkpoints'} "
      "(step 4: checksum mismatch in state/")


def test_sigkill_during_an_async_save_resumes_exactly(tmp_path, capsys, clean):
  p = _spawn("slow-save=4", tmp_path, devices=8)  # the numbers of the in-process runs
  try:
    deadline = time.time() + 60
    line = ""
    while "saving step 4" not in line and time.time() < deadline and p.poll() is None:
      line = p.stdout.readline()
    assert "saving step 4" in line, p.stderr.read() if p.poll() is not None else "timeout"
    assert list((tmp_path / "checkpoints").glob("4.orbax-checkpoint-tmp*"))  # in flight
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
  finally:
    if p.poll() is None:
      p.kill()
  assert sp.checkpoint_steps(tmp_path) == [2]
  assert not (tmp_path / "summary.json").exists()
  with pytest.warns(UserWarning, match=f"took over the lock left by pid {p.pid}"):
    rc, _, err = _run(capsys, tmp_path)
  assert rc == 0, err
  got = json.loads((tmp_path / "summary.json").read_text())["results"]
  assert got["resumed_from"] == 2
  assert got["params"] == clean["results"]["params"]
  assert not list((tmp_path / "checkpoints").glob("*.orbax-checkpoint-tmp*"))


# -- two runs, one directory ----------------------------------------------------------------------
def test_a_second_run_is_refused_while_the_first_holds_the_lock(tmp_path, capsys):
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from bottleneck_jax.core.io import "
       "DirectoryLock; DirectoryLock(sys.argv[1]).acquire(); print('locked', flush=True); "
       "time.sleep(60)", str(tmp_path)], env=sp.env(1), stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    rc, _, err = _run(capsys, tmp_path)
    assert rc == cli.EXIT_BUSY
    assert _error_line(err).startswith(
        f"bottleneck-jax run: error: work directory {tmp_path} is in use by another run "
        f"(pid {holder.pid} on ")
    assert not (tmp_path / "config.json").exists() and not (tmp_path / "checkpoints").exists()
  finally:
    holder.kill()
    holder.wait()
  # the holder was killed: its lock is stale and the next run takes it over
  with pytest.warns(UserWarning, match=f"took over the lock left by pid {holder.pid}"):
    rc, _, err = _run(capsys, tmp_path, "--steps", "2")
  assert rc == 0, err
  assert (tmp_path / ".lock").read_text() == ""  # released


# -- the work directory belongs to one run --------------------------------------------------------
def test_refused_rerun_writes_nothing_and_checks_before_restoring(tmp_path, capsys):
  rc, _, err = _run(capsys, tmp_path, "--steps", "2")
  assert rc == 0, err
  before = {p: p.read_bytes() for p in (tmp_path / "config.json", tmp_path / "metrics.jsonl")}
  # another model shape: refused by the configuration check, not by an Orbax shape error
  rc, _, err = _run(capsys, tmp_path, "--set", "width=16")
  assert rc == cli.EXIT_USAGE
  assert "holds a run with another configuration (differs in ['width'])" in _error_line(err)
  # another experiment into the same directory
  rc = cli.main(["run", "vib-digits", "--quick", "--no-progress", "--workdir", str(tmp_path)])
  assert rc == cli.EXIT_USAGE
  assert "holds a run of experiment 'faults-tiny', not 'vib-digits'" in capsys.readouterr().err
  # other code
  cfg = json.loads((tmp_path / "config.json").read_text())
  assert cfg["code"]["version"]
  rc, _, err = _run(capsys, tmp_path / "other")
  assert rc == 0
  cfg2 = json.loads((tmp_path / "other" / "config.json").read_text())
  cfg2["code"] = {"version": "0.0.1", "commit": None}
  (tmp_path / "other" / "config.json").write_text(json.dumps(cfg2))
  rc, _, err = _run(capsys, tmp_path / "other")
  assert rc == cli.EXIT_USAGE and "another code version (bottleneck_jax 0.0.1" in err
  rc, _, err = _run(capsys, tmp_path / "other", "--allow-code-change")  # on purpose: resumes
  assert rc == 0, err
  assert json.loads((tmp_path / "other" / "summary.json").read_text())["results"][
      "resumed_from"] == 8
  assert {p: p.read_bytes() for p in before} == before  # nothing was overwritten
  # files of an unknown run (no config.json) are not appended to
  (tmp_path / "foreign").mkdir()
  (tmp_path / "foreign" / "metrics.jsonl").write_text('{"step": 1, "loss": 3.0}\n')
  rc, _, err = _run(capsys, tmp_path / "foreign")
  assert rc == cli.EXIT_USAGE and "holds the files of another run" in err
  assert (tmp_path / "foreign" / "metrics.jsonl").read_text() == '{"step": 1, "loss": 3.0}\n'


def test_bad_workdir_is_one_line(tmp_path, capsys):
  (tmp_path / "file").write_text("x")
  for workdir, match in ((tmp_path / "file", "is a file, not a directory"),
                         (tmp_path / "file" / "sub", "cannot be used: Not a directory")):
    rc, _, err = _run(capsys, workdir)
    assert rc == cli.EXIT_USAGE
    assert match in _error_line(err) and str(workdir) in _error_line(err)


# -- numbers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("value,match", [
    ("-1", "'lr' of 'faults-tiny' is a learning rate and must be > 0, got -1.0"),
    ("NaN", "'lr' of 'faults-tiny' must be finite, got nan"),
    ("Infinity", "must be finite, got inf"),
])
def test_bad_hyperparameters_are_refused_before_training(tmp_path, capsys, value, match):
  rc, _, err = _run(capsys, tmp_path, "--set", f"lr={value}")
  assert rc == cli.EXIT_USAGE and match in _error_line(err)
  assert not tmp_path.exists() or not any(tmp_path.iterdir())


@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_divergence_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
  # SGD at lr=0.15 on this two-layer regression: the loss explodes within ~20 steps
  rc, _, err = _run(capsys, tmp_path, "--set", "lr=0.15", "--steps", "100", "--set",
                    "log_every=5")
  assert rc == cli.EXIT_DIVERGED, err
  line = _error_line(err)
  assert line.startswith("bottleneck-jax run: error: train: the loss became non-finite "
                         "(NaN or Inf) at step "), line
  bad = int(line.split("at step ")[1].split(";")[0])
  last = max(sp.checkpoint_steps(tmp_path))
  assert last == bad - 1 and f"the last checkpoint (step {last})" in line
  assert not (tmp_path / "summary.json").exists()
  # Independently (numpy, float32): the kept checkpoint's parameters are finite, and the loss
  # they give on the batch of step `bad` (the one the step computed) is not.
  from bottleneck_jax.data import batches
  state = sp.final_state(tmp_path, last)["0"]["layers"]
  w1, b1 = (np.asarray(state["0"][k]["value"]) for k in ("kernel", "bias"))
  w2, b2 = (np.asarray(state["1"][k]["value"]) for k in ("kernel", "bias"))
  assert all(np.isfinite(a).all() for a in (w1, b1, w2, b2))
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 8)).astype(np.float32)
  y = (x @ rng.normal(size=(8, 1)) + 0.1 * rng.normal(size=(64, 1))).astype(np.float32)
  it = batches({"x": x, "y": y}, batch_size=8, seed=0, process_index=0, process_count=1)
  losses = []
  with np.errstate(over="ignore", invalid="ignore"):
    for _ in range(bad):
      b = next(it)
      losses.append(np.mean(((b["x"] @ w1 + b1) @ w2 + b2 - b["y"]) ** 2, dtype=np.float32))
  assert not np.isfinite(losses[bad - 1])
  logged = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in logged] == list(range(5, bad, 5))
  assert all(np.isfinite(r["loss"]) for r in logged)


def test_run_files_get_the_users_umask(tmp_path, capsys):
  old = os.umask(0o027)
  try:
    rc, _, err = _run(capsys, tmp_path, "--steps", "2")
  finally:
    os.umask(old)
  assert rc == 0, err
  for name in ("config.json", "summary.json"):
    assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name
