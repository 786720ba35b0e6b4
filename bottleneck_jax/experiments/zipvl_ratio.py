"""``zipvl-ratio``: the important-token ratio adapts to how concentrated attention is, and a
4/2-bit mixed-precision KV cache sits between uniform 4-bit and uniform 2-bit in error at a
fraction of the memory.

Paper: *ZipVL: Efficient Large Vision-Language Models with Dynamic Token Sparsification and KV
Cache Compression* (2024), https://arxiv.org/abs/2410.08584: a layer-wise adaptive ratio of
important tokens chosen from the attention-score distribution (the fewest tokens holding a
``tau`` share of the probe attention), attention over those tokens only at prefill, and a
mixed-precision cache (important tokens 4-bit, others 2-bit) for decoding; "2.6x faster prefill,
-50.0% GPU memory, -0.2% accuracy" (LongVA-7B, Video-MME).

What is measured, on synthetic "layers" whose queries and keys have growing scale ``sigma``
(sharper attention): the adaptive ratio ``p / n`` at ``tau`` (probes: the last 5% of positions
and a random 5%), the relative error of important-token prefill against dense causal attention
on the sharpest layer, and, for decoding one query over the cache of that layer, the error of
uniform 4-bit, mixed 4/2-bit (the important tokens of the probe scores at 4 bits) and uniform
2-bit caches, with the bits a compact store holds relative to bf16.

Departures: synthetic Gaussian activations instead of LongVA/LLaVA layers; no accuracy or
latency measured; keys per channel and values per token (KIVI-style) rather than ZipCache's
channel-separable value quantiser.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bottleneck_jax.experiments.registry import (
    Expectation,
    Experiment,
    Metric,
    Ref,
    RunContext,
    register,
)

PAPER_ID = "zipvl"


def run(ctx: RunContext) -> dict[str, Any]:
  from bottleneck_jax import attention as A
  from bottleneck_jax.ops import attention

  cfg = ctx.config
  n, h, d, tau = int(cfg["seq_len"]), int(cfg["heads"]), int(cfg["head_dim"]), float(cfg["tau"])
  rng = np.random.default_rng(ctx.seed)
  n_probe = max(1, n // 20)
  probes = np.unique(np.concatenate([np.arange(n - n_probe, n),
                                     rng.choice(n - n_probe, n_probe, replace=False)]))
  probes = jnp.asarray(probes, jnp.int32)
  rows, last = [], None
  with jax.default_matmul_precision("highest"):
    for step, sigma in enumerate(cfg["sigmas"]):
      q = jnp.asarray(sigma * rng.standard_normal((1, n, h, d)), jnp.float32)
      k = jnp.asarray(sigma * rng.standard_normal((1, n, h, d)), jnp.float32)
      v = jnp.asarray(rng.standard_normal((1, n, h, d)), jnp.float32)
      probs = A.probe_attention(q, k, probes)
      acc = A.accumulated_scores(probs, n_kv_heads=h).sum(1)                # [1, n]
      p = A.adaptive_keep_count(acc, tau)
      norm = A.normalized_scores(probs, probes, n_kv_heads=h).sum(1)
      idx, ok = A.select_important(norm, p, max_keep=n)
      sparse = A.important_token_prefill(q, k, v, idx, ok).out
      dense = attention(q, k, v, causal=True).out
      err = float(jnp.linalg.norm(sparse - dense) / jnp.linalg.norm(dense))
      row = {"sigma": float(sigma), "ratio": int(p[0]) / n, "prefill_rel_err": err}
      rows.append(row)
      ctx.log(step, **row)
      last = (q, k, v, ok, idx)
    q, k, v, ok, idx = last
    important = jnp.zeros((1, n), bool).at[0, idx[0]].max(ok[0])
    qd = q[:, -1]
    dense = attention(qd[:, None], k, v).out[:, 0]
    errs, bits = {}, {}
    for name, imp, hi, lo in (("4bit", jnp.ones_like(important), 4, 4),
                              ("mixed", important, 4, 2),
                              ("2bit", jnp.zeros_like(important), 2, 2)):
      m = A.build_mixed_kv(k, v, imp, max_important=n, hi_bits=hi, lo_bits=lo)
      o = A.mixed_kv_decode_attention(qd, m).out
      errs[name] = float(jnp.linalg.norm(o - dense) / jnp.linalg.norm(dense))
      bits[name] = float(A.mixed_kv_bits(m)) / (2 * n * h * d * 16)
  ratios = [r["ratio"] for r in rows]
  out = {
      "ratio_strictly_decreasing": bool(all(a > b for a, b in zip(ratios, ratios[1:]))),
      "ratio_flattest": ratios[0],
      "ratio_sharpest": ratios[-1],
      "prefill_rel_err_sharpest": rows[-1]["prefill_rel_err"],
      "decode_err_4bit": errs["4bit"],
      "decode_err_mixed": errs["mixed"],
      "decode_err_2bit": errs["2bit"],
      "mixed_memory_vs_bf16": bits["mixed"],
      "important_fraction": float(important.mean()),
      "table": rows,
  }
  ctx.log(len(rows), split="summary", **{k_: v_ for k_, v_ in out.items() if k_ != "table"})
  return out


register(Experiment(
    name="zipvl-ratio",
    paper_id=PAPER_ID,
    claim=("The number of important tokens that hold a tau share of the probe attention adapts "
           "to the layer (fewer for sharper attention), and a mixed 4/2-bit KV cache of the "
           "important/other tokens is more accurate than uniform 2-bit at well under half of "
           "bf16's memory."),
    setting="proxy",
    departures=(
        "synthetic Gaussian layers of growing query/key scale instead of LVLM activations",
        "no task accuracy or latency measured",
        "keys per channel and values per token (KIVI-style), not ZipCache's channel-separable "
        "value quantiser",
    ),
    metric="ratio_sharpest",
    metrics={
        "ratio_strictly_decreasing": "the adaptive ratio falls as attention sharpens",
        "ratio_flattest": Metric("p / n on the flattest layer", low=0, high=1),
        "ratio_sharpest": Metric("p / n on the sharpest layer", low=0, high=1),
        "prefill_rel_err_sharpest": Metric("important-token prefill vs dense, relative L2 error, "
                                           "sharpest layer", low=0),
        "decode_err_4bit": Metric("decode relative error, uniform 4-bit cache", low=0),
        "decode_err_mixed": Metric("decode relative error, mixed 4/2-bit cache", low=0),
        "decode_err_2bit": Metric("decode relative error, uniform 2-bit cache", low=0),
        "mixed_memory_vs_bf16": Metric("bits of the mixed cache over a bf16 cache", low=0),
        "important_fraction": Metric("fraction of tokens stored at 4 bits", low=0, high=1),
    },
    expectations=(
        Expectation("ratio_strictly_decreasing", "==", True, reads=("sigmas", "tau"),
                    source="paper: a layer-wise ratio adapted to the attention distribution"),
        Expectation("decode_err_mixed", "<", Ref("decode_err_2bit"),
                    source="the project's test plan"),
        Expectation("decode_err_mixed", ">", Ref("decode_err_4bit"),
                    source="the project's test plan"),
        Expectation("mixed_memory_vs_bf16", "<=", 0.5, reads=("seq_len", "head_dim"),
                    source="paper abstract: -50.0% GPU memory"),
    ),
    run=run,
    defaults={"seq_len": 1024, "heads": 4, "head_dim": 64, "tau": 0.975,
              "sigmas": [0.5, 1.0, 1.5, 2.0]},
    quick={"seq_len": 256},
    paper_value="2.6x prefill, -50.0% GPU memory, -0.2% accuracy (LongVA-7B, Video-MME)",
))
