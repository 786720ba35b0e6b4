"""The FSQ / VQ digits and SkinTokens experiments: registered with the test plan's thresholds; the
synthetic skinning generator has the test plan's sparsity; quick runs (slow) learn."""

import numpy as np
import pytest

from bottleneck_jax.experiments import fsq_digits, registry


def test_registered_with_the_specs_thresholds():
  got = {e.name: {x.metric: x.value for x in e.expectations}
         for e in (fsq_digits.FSQ_DIGITS, fsq_digits.VQ_DIGITS, fsq_digits.SKINTOKENS_SKINNING)}
  assert got["fsq-digits"] == {"test_mse": 0.020, "code_usage": 0.70}
  assert got["vq-digits"]["best_fix_usage_gain"] == 0.20
  assert got["skintokens-skinning"]["test_l1"] == 0.025
  assert got["skintokens-skinning"]["support_recall"] == 0.98


def test_skinning_fields_are_sparse_partitions_of_unity():
  d = fsq_digits.make_skinning(rigs=3, points=128, bones=6, falloff=0.05, seed=0)
  w = d["w"].reshape(3, 6, 128)
  np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-5)               # per point, over bones
  assert ((w > 0).sum(1) <= 2).all()                                  # top-2 bones per point
  assert 0.6 < float(np.mean(d["w"] == 0)) < 0.75                     # spec: ~68 % exact zeros
  assert (d["cond"][:, 0] < d["cond"][:, 1]).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fsq-digits", "skintokens-skinning"])
def test_quick_runs_hold(tmp_path, name):
  s = registry.run_experiment(name, workdir=tmp_path, quick=True, progress=False)
  assert s["expectation_held"], s["expectations"]
