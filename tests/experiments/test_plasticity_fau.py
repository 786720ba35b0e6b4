"""plasticity-fau: the growing-buffer stream and (slow) a quick run."""

import numpy as np
import pytest

from bottleneck_jax.experiments import get, run_experiment
from bottleneck_jax.experiments.plasticity_fau import _stream


def test_buffer_grows_with_the_replay_ratio():
  """After u updates the buffer holds warmup + floor(u / rr) transitions: 64 batches of 512 draws
  at ratio 8 touch at most 16 + 7 distinct transitions, at ratio 0.5 up to 16 + 126."""
  cfg = {"warmup": 16, "steps": 64, "batch_size": 512}
  distinct = {}
  for rr in (0.5, 8.0):
    it = _stream(cfg, rr, seed=0)()
    rows = {tuple(r) for _ in range(64) for r in np.round(next(it)["x"], 6)}
    distinct[rr] = len(rows)
  assert distinct[8.0] <= 16 + 63 // 8 < 16 + 40 <= distinct[0.5] <= 16 + 63 * 2


def test_registered():
  exp = get("plasticity-fau")
  assert exp.paper_id == "plasticity" and exp.defaults["rr_low"] == 0.5
  assert exp.defaults["rr_high"] == 8.0


@pytest.mark.slow
def test_quick_run(tmp_path):
  s = run_experiment("plasticity-fau", workdir=tmp_path, quick=True, progress=False)
  r = s["results"]
  assert 0 < r["fau_low_rr"] <= 1 and 0 < r["fau_high_rr"] <= 1 and r["num_seeds"] == 1
