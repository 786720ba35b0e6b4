"""SIGKILL in the middle of training, rerun into the same work directory: the final metrics and
parameters are bit-identical to an uninterrupted run."""

import json
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from . import _subproc as sp

STEPS, EVERY = 400, 25
ARGS = ("--steps", str(STEPS), "--set", f"checkpoint_every={EVERY}", "--set", "eval_every=200")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_sigkill_then_resume_is_bit_identical(tmp_path):
  env = sp.env(1)
  killed, clean = tmp_path / "killed", tmp_path / "clean"
  proc = subprocess.Popen(sp.train_cmd(killed, *ARGS), env=env, cwd=sp.ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 150
    while not sp.checkpoint_steps(killed) and proc.poll() is None and time.time() < deadline:
      time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
  finally:
    if proc.poll() is None:
      proc.kill()
  steps_at_kill = sp.checkpoint_steps(killed)
  assert steps_at_kill and max(steps_at_kill) < STEPS, (
      f"expected a mid-training checkpoint at the kill, got {steps_at_kill}")
  assert not (killed / "summary.json").exists()

  sp.run(sp.train_cmd(killed, *ARGS), env)     # resumes
  sp.run(sp.train_cmd(clean, *ARGS), env)      # uninterrupted
  a, b = sp.summary(killed), sp.summary(clean)
  assert a["results"]["resumed_from"] == max(steps_at_kill)
  assert b["results"]["resumed_from"] is None
  for k in ("test_accuracy", "test_bits", "test_class_loss", "train_accuracy", "train_bits"):
    assert a["results"][k] == b["results"][k], k
  sa, sb = sp.final_state(killed, STEPS), sp.final_state(clean, STEPS)
  la, lb = jax.tree.leaves(sa), jax.tree.leaves(sb)
  assert len(la) == len(lb) > 10
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # The metrics log ends as the uninterrupted run's (replayed steps are not logged twice).
  def records(d):
    out = []
    for line in (d / "metrics.jsonl").read_text().splitlines():
      rec = json.loads(line)
      rec.pop("time")
      out.append(rec)
    return out
  assert records(killed) == records(clean)
