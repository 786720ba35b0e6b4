"""brl-longtail-blobs: the long-tailed blobs and the weight stream; (slow) a quick run."""

import numpy as np
import pytest

from bottleneck_jax.experiments import get, run_experiment
from bottleneck_jax.experiments.brl_longtail import _stream, make_blobs


def test_blobs_and_the_detached_weight_stream():
  cfg = dict(get("brl-longtail-blobs").defaults)
  xtr, ytr, xte, yte, counts = make_blobs(cfg, seed=0)
  assert counts.tolist()[0] == 500 and counts.tolist()[-1] == 5
  assert np.bincount(ytr).tolist() == counts.tolist()
  assert np.all(np.bincount(yte) == cfg["test_per_class"])
  cfg.update(steps_per_epoch=2, batch_size=8)
  it = _stream(xtr, ytr, counts, cfg, 0, reweight=True)()
  ws = [next(it)["w"][0] for _ in range(2 * 24)]
  assert all(np.all(w == 1) for w in ws[:2 * 19])           # epochs 0..18: uniform
  assert ws[2 * 19][-1] > 1 > ws[2 * 19][0]                # epoch 19 on: tail up-weighted
  plain = _stream(xtr, ytr, counts, cfg, 0, reweight=False)()
  assert all(np.all(next(plain)["w"] == 1) for _ in range(48))


@pytest.mark.slow
def test_quick_run(tmp_path):
  s = run_experiment("brl-longtail-blobs", workdir=tmp_path, quick=True, progress=False)
  assert s["results"]["num_seeds"] == 2 and 0 <= s["results"]["brl_tail_acc"] <= 1
