"""chronicals-packing: BFD packing vs padding on long-tailed lengths, with exact ground truth."""

import numpy as np
import pytest

from bottleneck_jax.data import pack_sequences
from bottleneck_jax.experiments import get, run_experiment
from bottleneck_jax.experiments.chronicals_packing import (
    check_packed,
    chunk_lengths,
    make_sequences,
    model_flops,
    next_fit_rows,
    padded_flops,
    padded_slots,
    sample_lengths,
)


def test_helpers_by_hand():
  assert padded_slots(np.array([3, 1, 2, 2, 5]), 2) == (2 * 3 + 2 * 2 + 1 * 5, 2 * 9 + 2 * 4 + 25)
  # batches [3, 1] [2, 2] [5]: rows padded to 3, 2, 5 slots; attention m^2 per row
  assert padded_flops(np.array([3, 1, 2, 2, 5]), 2, 10.0, 1.0) == (
      2 * (30 + 9) + 2 * (20 + 4) + (50 + 25))
  assert next_fit_rows(np.array([3, 3, 2, 4, 1]), 6) == 3  # [3,3] [2,4] [1]
  assert chunk_lengths(np.array([5, 12, 4]), 4).tolist() == [4, 1, 4, 4, 4, 4]
  seqs = make_sequences(np.array([2, 3]))
  assert [s.tolist() for s in seqs] == [[1, 2], [3, 4, 5]]
  lengths = sample_lengths(20000, median_len=200.0, sigma=1.0, min_len=8, seed=0)
  assert lengths.min() >= 8 and abs(np.median(lengths) / 200.0 - 1) < 0.05


def test_model_flops_of_qwen_shape_by_hand():
  # Qwen2.5-0.5B: d=896, SwiGLU 4864, k/v 128, 24 layers, vocab 151936
  cfg = get("chronicals-packing").defaults
  per_token, per_score = model_flops(cfg)
  layer = 2 * (896 * 896 * 2 + 896 * 128 * 2 + 3 * 896 * 4864)
  assert per_token == 24 * layer + 2 * 896 * 151936
  assert per_score == 24 * 4 * 896
  # about 0.99 GFLOP per token: twice the ~0.49 B parameters (embedding tied to the head)
  assert 0.9e9 < per_token < 1.1e9


def test_check_packed_detects_corruption():
  seqs = make_sequences(np.array([3, 2, 1]))
  b = pack_sequences(seqs, seq_len=4)
  assert all(check_packed(b, 6, 3).values())
  labels = b.labels.copy()
  labels[0, 2] = b.tokens[0, 3]  # the last token of a segment predicts the next segment
  assert not check_packed(b._replace(labels=labels), 6, 3)["labels_within_segment"]
  tokens = b.tokens.copy()
  tokens[0, 0] = tokens[0, 1]  # a duplicated token
  assert not check_packed(b._replace(tokens=tokens), 6, 3)["each_token_once"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
  work = tmp_path_factory.mktemp("packing")
  return work, run_experiment("chronicals-packing", workdir=work, quick=True, progress=False)


def test_quick_run(quick):
  work, s = quick
  r = s["results"]
  assert s["setting"] == "proxy" and s["departures"]
  assert s["value"] == r["padding_compute_recovered"]
  assert {e["metric"] for e in s["expectations"]} == {"padding_compute_recovered",
                                                        "packing_exact"}
  assert r["packing_exact"] is True
  for k in ("each_token_once", "segments_contiguous", "positions_restart",
            "labels_within_segment", "one_ignored_label_per_segment"):
    assert r[k] is True, k
  assert r["rows_bfd"] >= r["rows_lower_bound"]
  # segment-aware attention wastes less than a dense segment mask over T x T
  assert r["padding_compute_recovered"] < r["padding_compute_recovered_varlen"] <= 1.0
  assert (work / "plots" / "efficiency.png").exists()


def test_efficiency_recomputed_naively(quick):
  _, s = quick
  r = s["results"]
  cfg = {**get("chronicals-packing").defaults, **get("chronicals-packing").quick}
  lengths = sample_lengths(cfg["n_sequences"], median_len=cfg["median_len"], sigma=cfg["sigma"],
                           min_len=cfg["min_len"], seed=0)
  assert r["total_tokens"] == int(lengths.sum())
  b = pack_sequences(make_sequences(lengths), seq_len=cfg["seq_len"], overlong="split")
  real = int(np.count_nonzero(b.segment_ids))
  assert real == r["total_tokens"]
  np.testing.assert_allclose(r["packing_efficiency"], real / b.tokens.size)
  # one sequence per seq_len row: efficiency = total / (number of chunks * T)
  n_rows = int(np.sum(np.ceil(lengths / cfg["seq_len"])))
  np.testing.assert_allclose(r["efficiency_pad_to_seq_len"],
                             lengths.sum() / (n_rows * cfg["seq_len"]))
  waste_dyn = r["total_tokens"] / r["efficiency_dynamic"] - r["total_tokens"]
  waste_bfd = b.tokens.size - real
  np.testing.assert_allclose(r["padding_recovered_token_slots"], 1 - waste_bfd / waste_dyn,
                             rtol=1e-9)
  # the compute version, recomputed from the packed rows: useful = tokens + own scores
  per_token, per_score = model_flops(cfg)
  pieces = chunk_lengths(lengths, cfg["seq_len"]).astype(np.float64)
  useful = per_token * pieces.sum() + per_score * np.sum(pieces ** 2)
  rows = b.tokens.shape[0]
  packed = rows * (per_token * cfg["seq_len"] + per_score * cfg["seq_len"] ** 2)
  dyn_wasted = r["compute_wasted_fraction_dynamic"]
  dyn_total = useful / (1 - dyn_wasted)
  np.testing.assert_allclose(r["padding_compute_recovered"],
                             1 - (packed - useful) / (dyn_total - useful), rtol=1e-9)
