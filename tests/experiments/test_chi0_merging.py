"""merging-toy: χ0's model arithmetic on ridge checkpoints of distribution-shifted subsets."""

import numpy as np

from bottleneck_jax.experiments import get, run_experiment


def test_run_holds_and_weights_are_on_the_simplex(tmp_path):
  assert get("merging-toy").paper_id == "chi0"
  s = run_experiment("merging-toy", workdir=tmp_path, quick=True, progress=False)
  r = s["results"]
  assert s["expectation_held"], s["expectations"]
  for w in r["weights"].values():
    assert abs(sum(w) - 1) < 1e-3 and min(w) >= 0
  assert sum(r["subset_sizes"]) == 331 - 80
  assert r["best_single_test_mse"] == min(r["single_test_mse"])
  # the inverse-loss weights follow the validation losses
  order = np.argsort(r["single_val_mse"])
  assert np.argmax(r["weights"]["inverse_loss"]) == order[0]
