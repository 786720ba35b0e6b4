"""The dkvb-incremental experiment: registered with the test plan's thresholds; a quick run keeps
the old classes with DKVB and forgets them with the MLP (slow: the full run)."""

import pytest

from bottleneck_jax.experiments import dkvb_incremental, registry


def test_registered_with_the_specs_thresholds():
  exp = dkvb_incremental.DKVB_INCREMENTAL
  assert exp.paper_id == "dkvb" and exp.setting == "proxy" and exp.departures
  values = [e.value for e in exp.expectations]
  assert 0.85 in values and exp.defaults["heads"] == 8 and exp.defaults["keys"] == 64


@pytest.mark.slow
def test_quick_run_dkvb_remembers_mlp_forgets(tmp_path):
  s = registry.run_experiment("dkvb-incremental", workdir=tmp_path, quick=True, progress=False)
  r = s["results"]
  assert r["keys_frozen"] and r["dkvb_accuracy"] > r["mlp_accuracy"] + 0.3
  assert s["expectation_held"]

