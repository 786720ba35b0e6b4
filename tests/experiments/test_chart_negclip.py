"""chart-negclip-toy: the synthetic chart task; (slow) a quick run."""

import numpy as np
import pytest

from bottleneck_jax.experiments import get, run_experiment
from bottleneck_jax.experiments.chart_negclip import DIGITS, _render, make_batch


def test_hard_negatives_change_exactly_one_value():
  cfg = get("chart-negclip-toy").defaults
  render = _render(cfg, 0)
  b = make_batch(np.random.default_rng(0), 32, cfg, render)
  nv = cfg["num_values"]
  assert b["cap"].shape == b["neg"].shape == (32, nv * DIGITS)
  assert np.all(b["cap"].sum(1) == nv) and np.all(b["neg"].sum(1) == nv)
  # one (position, digit) token removed and one added per caption
  assert np.all(np.abs(b["cap"] - b["neg"]).sum(1) == 2)
  noise = b["img"] - b["cap"] @ render
  assert abs(noise.std() - cfg["noise"]) < 0.05


@pytest.mark.slow
def test_quick_run(tmp_path):
  s = run_experiment("chart-negclip-toy", workdir=tmp_path, quick=True, progress=False)
  assert s["expectation_held"], s["expectations"]
