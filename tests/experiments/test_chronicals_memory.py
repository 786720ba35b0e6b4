"""chronicals-cce-memory: cut cross-entropy's compile-time memory against the materialised head."""

import json
import math

import pytest

from bottleneck_jax.experiments import get, run_experiment
from bottleneck_jax.experiments.chronicals_memory import head_temp_bytes


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
  work = tmp_path_factory.mktemp("cce")
  return work, run_experiment("chronicals-cce-memory", workdir=work, quick=True, progress=False)


def test_registered():
  exp = get("chronicals-cce-memory")
  assert exp.paper_id == "chronicals" and exp.metric == "memory_reduction"
  assert exp.defaults["vocab"] == 151936 and exp.defaults["hidden"] == 896
  assert max(exp.defaults["tokens"]) == 8192


@pytest.mark.slow
def test_quick_run(quick):
  work, s = quick
  r = s["results"]
  assert s["expectation_held"] and s["value"] == r["memory_reduction"] >= 10.0
  assert s["setting"] == "proxy" and len(s["expectations"]) == 2
  assert r["max_rel_diff"] <= 1e-5
  for f in ("config.json", "summary.json", "metrics.jsonl", "plots/memory_vs_tokens.png"):
    assert (work / f).exists(), f
  recs = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
  assert len(recs) == len(get("chronicals-cce-memory").quick["tokens"]) + 1


def test_memory_numbers_positive_ordered_and_bounded(quick):
  _, s = quick
  cfg = get("chronicals-cce-memory").quick
  table = s["results"]["table"]
  assert [row["tokens"] for row in table] == cfg["tokens"]
  for row in table:
    logits = row["tokens"] * cfg["vocab"] * 4
    assert row["logits_f32_bytes"] == logits
    assert 0 < row["xla_temp_bytes"] < logits <= row["reference_temp_bytes"]
  # the materialised logits grow linearly with N
  assert table[-1]["reference_temp_bytes"] > 3 * table[0]["reference_temp_bytes"]


def test_loss_value_matches_closed_form(quick):
  # logits x.w with x ~ N(0, I_d), w_v ~ N(0, 0.25 I_d / d): z ~ N(0, 0.25) per entry, so
  # E[lse] ~= log V + 0.25 / 2 and the mean loss is about log(1000) + 0.125.
  _, s = quick
  assert abs(s["results"]["check_loss"] - (math.log(1000) + 0.125)) < 0.1


def test_head_temp_bytes_reference_holds_the_logits():
  m = head_temp_bytes(64, 16, 4096, implementation="reference")
  assert m["temp"] >= 64 * 4096 * 4 and m["args"] == (64 * 16 + 4096 * 16 + 64) * 4
