"""The codebook-digits experiment: registered with the test plan's thresholds; a quick run (slow)
keeps the accuracy, uses few codes and is steered by forced codes."""

import pytest

from bottleneck_jax.experiments import codebook_digits, registry


def test_registered_with_the_specs_thresholds():
  exp = codebook_digits.CODEBOOK_DIGITS
  assert exp.paper_id == "codebook-features" and exp.setting == "proxy" and exp.departures
  got = {e.metric: e.value for e in exp.expectations}
  assert got["codes_used"] == 20 and got["intervention_flip_rate"] == 0.5
  assert exp.defaults["num_codes"] == 256 and exp.defaults["k"] == 1


@pytest.mark.slow
def test_quick_run(tmp_path):
  s = registry.run_experiment("codebook-digits", workdir=tmp_path, quick=True, progress=False)
  r = s["results"]
  assert r["codebook_accuracy"] > 0.8 and r["codes_used"] <= 40
