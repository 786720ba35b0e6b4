"""rlearner-graph: the reference DGP; (slow) a quick run."""

import numpy as np
import pytest

from bottleneck_jax.experiments import get, run_experiment
from bottleneck_jax.experiments.rlearner_graph import simulate


def test_dgp_matches_the_reference_equations():
  cfg = dict(get("rlearner-graph").defaults, n=200)
  d = simulate(cfg, seed=0)
  h0 = d["y"] - 0.5 * d["x"][:, 1] - d["t"] * d["tau"]   # = H_0 + 0.5 eps
  assert np.all(np.abs(np.arcsin(np.clip((d["tau"] - 2) / 1.5, -1, 1))) <= np.pi / 2)
  assert set(np.unique(d["t"])) <= {0.0, 1.0} and 0.05 < d["t"].mean() < 0.95
  assert np.all(d["tau"] >= 0.5) and np.all(d["tau"] <= 3.5)
  assert np.allclose(d["a_hat"], d["a_hat"].T) and abs(np.std(h0 - np.mean(h0))) > 0.1


@pytest.mark.slow
def test_quick_run(tmp_path):
  s = run_experiment("rlearner-graph", workdir=tmp_path, quick=True, progress=False)
  r = s["results"]
  assert r["repo_style_mse"] > r["linear_mse"]
