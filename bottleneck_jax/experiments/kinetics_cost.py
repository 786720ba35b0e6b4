"""``kinetics-cost``: the eFLOPs cost table of test-time scaling for the Qwen3 models.

Paper: *Kinetics: Rethinking Test-Time Scaling Laws* (2025), https://arxiv.org/abs/2506.05333.
Its cost model (``cost_model/utils.py`` of the reference code) charges a generation
``C_comp + I * C_mem`` with ``I = 562.5`` FLOPs/byte; its claim: for small models the KV-cache
memory term, not the parameters, dominates test-time cost, and block top-k sparse attention cuts
that cost several-fold.

What is measured: :func:`bottleneck_jax.attention.kinetics_cost` for the six Qwen3 sizes of the
paper at ``L_in = 128``, ``L_gen = 32768``, one trial, dense and block top-k (local 128, blocks of
16, top 256 blocks), both with the reference repository's closed forms
(``reference_compat=True``; compared with the test plan's golden values) and with the exact sums.
Nothing is trained; the run takes milliseconds.

Departures: the Qwen3 head and layer counts come from the public model configurations (the
reference lists parameter counts only).
"""

from __future__ import annotations

from typing import Any

from bottleneck_jax.experiments.registry import (
    Expectation,
    Experiment,
    Metric,
    RunContext,
    register,
)

PAPER_ID = "kinetics"
SIZES = ("0.6B", "1.7B", "4B", "8B", "14B", "32B")
# the project's test plan (reference formulas), units 1e12: dense total and
# block top-k total at L_in = 128, L_gen = 32768, N = 1.
GOLDEN = {"0.6B": (3.508e4, 9562.0), "8B": (4.573e4, 1.281e4), "32B": (8.306e4, 2.412e4)}


def run(ctx: RunContext) -> dict[str, Any]:
  from bottleneck_jax.attention import kinetics_cost, qwen3_config

  cfg = ctx.config
  l_in, l_gen = int(cfg["l_in"]), int(cfg["l_gen"])
  sparse_kw = dict(attention="block_topk", local=int(cfg["local"]),
                   block_size=int(cfg["block_size"]), topk_blocks=int(cfg["topk_blocks"]))
  rows, worst = [], 0.0
  for step, size in enumerate(SIZES):
    m = qwen3_config(size)
    dense = kinetics_cost(m, l_in, l_gen, reference_compat=True)
    sparse = kinetics_cost(m, l_in, l_gen, reference_compat=True, **sparse_kw)
    exact = kinetics_cost(m, l_in, l_gen)
    exact_sparse = kinetics_cost(m, l_in, l_gen, **sparse_kw)
    row = {"model": f"Qwen3-{size}", "dense_compute_T": dense.compute / 1e12,
           "dense_memory_T": dense.memory / 1e12, "dense_total_T": dense.total / 1e12,
           "block_topk_total_T": sparse.total / 1e12,
           "exact_dense_total_T": exact.total / 1e12,
           "exact_block_topk_total_T": exact_sparse.total / 1e12,
           "memory_to_compute": dense.memory / dense.compute,
           "block_topk_saving": dense.total / sparse.total}
    if size in GOLDEN and (l_in, l_gen) == (128, 32768) and sparse_kw["topk_blocks"] == 256:
      for got, want in zip((row["dense_total_T"], row["block_topk_total_T"]), GOLDEN[size]):
        worst = max(worst, abs(got - want) / want)
    rows.append(row)
    ctx.log(step, **row)
  by = {r["model"]: r for r in rows}
  small, large = by["Qwen3-0.6B"], by["Qwen3-32B"]
  result = {
      "golden_max_rel_err": worst,
      "memory_to_compute_0.6B": small["memory_to_compute"],
      "memory_to_compute_32B": large["memory_to_compute"],
      "memory_dominance_drop": small["memory_to_compute"] / large["memory_to_compute"],
      "block_topk_saving_0.6B": small["block_topk_saving"],
      "block_topk_saving_32B": large["block_topk_saving"],
      "exact_vs_compat_max_rel_diff": max(
          abs(r["exact_dense_total_T"] - r["dense_total_T"]) / r["dense_total_T"] for r in rows),
      "table": rows,
  }
  ctx.log(len(rows), split="summary", **{k: v for k, v in result.items() if k != "table"})
  return result


register(Experiment(
    name="kinetics-cost",
    paper_id=PAPER_ID,
    claim=("Under the eFLOPs cost model (compute + 562.5 x KV bytes), KV-cache memory dominates "
           "the test-time cost of small models (memory/compute about 200x for Qwen3-0.6B at "
           "32k generated tokens, about 24x for 32B), and block top-k attention cuts the total "
           "several-fold."),
    setting="paper",
    departures=("Qwen3 head and layer counts from the public model configurations (the "
                "reference code lists parameter counts only)",),
    metric="memory_to_compute_0.6B",
    metrics={
        "golden_max_rel_err": Metric("largest relative difference to the test plan's golden dense "
                                     "and block top-k totals (0.6B, 8B, 32B)", low=0),
        "memory_to_compute_0.6B": Metric("I*C_mem / C_comp, dense, Qwen3-0.6B", low=0),
        "memory_to_compute_32B": Metric("I*C_mem / C_comp, dense, Qwen3-32B", low=0),
        "memory_dominance_drop": Metric("memory_to_compute of 0.6B over that of 32B", low=0),
        "block_topk_saving_0.6B": Metric("dense total / block top-k total, Qwen3-0.6B", low=0),
        "block_topk_saving_32B": Metric("dense total / block top-k total, Qwen3-32B", low=0),
        "exact_vs_compat_max_rel_diff": Metric("exact sums vs the reference closed forms, dense "
                                               "totals", low=0),
    },
    expectations=(
        Expectation("golden_max_rel_err", "<=", 2e-3,
                    reads=("l_in", "l_gen", "local", "block_size", "topk_blocks"),
                    source="the project's test plan golden values (4 significant "
                           "digits)"),
        Expectation("memory_to_compute_0.6B", ">=", 100.0, reads=("l_in", "l_gen"),
                    source="paper: KV memory dominates small-model test-time cost; the test plan "
                           "ratio about 201"),
        Expectation("memory_dominance_drop", ">=", 5.0, reads=("l_in", "l_gen"),
                    source="the test plan: ratio about 201 for 0.6B and about 24 for 32B"),
        Expectation("block_topk_saving_0.6B", ">=", 3.0,
                    reads=("l_in", "l_gen", "local", "block_size", "topk_blocks"),
                    source="the test plan's golden totals: 3.508e4 dense vs 9562 block top-k"),
    ),
    run=run,
    defaults={"l_in": 128, "l_gen": 32768, "local": 128, "block_size": 16, "topk_blocks": 256},
    quick={},
    paper_value="0.6B: dense 3.508e4 vs block top-k 9562 (x1e12 eFLOPs) at 32k tokens",
))
