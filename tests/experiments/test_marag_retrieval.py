"""marag-corpus-coverage: the single-retriever bottleneck on the generated corpus."""

from bottleneck_jax.experiments import get, run_experiment


def test_run_holds_and_is_consistent(tmp_path):
  exp = get("marag-corpus-coverage")
  assert exp.paper_id == "marag-r1" and exp.setting == "proxy"
  s = run_experiment("marag-corpus-coverage", workdir=tmp_path, quick=True, progress=False)
  r = s["results"]
  assert s["expectation_held"], s["expectations"]
  assert r["num_aggregate"] > 0 and r["num_questions"] > r["num_aggregate"]
  # the multi-tool agent answers lookups as the single retriever does
  assert r["multi_lookup_exact"] == r["single_lookup_exact"]
  assert r["single_aggregate_exact"] <= 1.0 and r["multi_aggregate_reward"] > 0
