"""``rettention-vs-topk``: at 3.125% of the keys, Re-ttention's error against dense attention is
far below that of plain top-k sparse attention.

Paper: *Re-ttention: Ultra Sparse Visual Generation via Attention Statistical Reshape* (NeurIPS
2025), https://arxiv.org/abs/2505.22918: with only 3.1% of the tokens attended, reshaping the
sparse softmax with statistics cached at an earlier full step keeps generation quality, where
plain sparse attention collapses.

What is measured (the test plan's synthetic setting): ``T`` tokens, head dim 64, ``q, k ~ N(0, 2)``,
``v ~ N(0, 1)`` per head. At the refresh step the static mask is each query's top ``keep`` keys
(3.125%) and :func:`bottleneck_jax.attention.rettention_refresh` caches ``rho`` and ``R``. The
"next denoising step" adds drift ``delta * N(0, same variance)`` to ``q, k, v``; Re-ttention
(:func:`~bottleneck_jax.attention.rettention_sparse`, ``lambda = 0``) reuses the static mask and
the cache; the baseline is plain sparse attention over a *fresh oracle* top-``keep`` mask of the
current step. Metric: relative L2 error ``||O - O_dense|| / ||O_dense||``, per drift.

Departures: synthetic Gaussian queries/keys/values instead of a diffusion transformer's
activations; one drifted step instead of a sampling trajectory; image quality metrics (FID,
CLIP, VBench) are not measured.
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
    RunContext,
    register,
)

PAPER_ID = "rettention"


def topk_mask(q, k, keep: int):
  """bool ``[B, H, T, T]``: each query's ``keep`` largest logits."""
  s = jnp.einsum("bqhd,bkhd->bhqk", q, k)
  thresh = jax.lax.top_k(s, keep)[0][..., -1:]
  return s >= thresh


def run(ctx: RunContext) -> dict[str, Any]:
  from bottleneck_jax.attention import rettention_refresh, rettention_sparse
  from bottleneck_jax.ops import attention

  cfg = ctx.config
  t, d, h = int(cfg["seq_len"]), int(cfg["head_dim"]), int(cfg["heads"])
  keep = max(1, int(round(t * float(cfg["keep_ratio"]))))
  std = float(np.sqrt(cfg["qk_variance"]))
  key = jax.random.key(ctx.seed)
  kq, kk, kv, kd = jax.random.split(key, 4)
  shape = (1, t, h, d)
  q = std * jax.random.normal(kq, shape)
  k = std * jax.random.normal(kk, shape)
  v = jax.random.normal(kv, shape)
  with jax.default_matmul_precision("highest"):
    mask = topk_mask(q, k, keep)
    _, cache = rettention_refresh(q, k, v, mask=mask, implementation="reference")
    rows, out = [], {}
    for step, delta in enumerate(cfg["drifts"]):
      dq, dk, dv = jax.random.split(jax.random.fold_in(kd, step), 3)
      q2 = q + delta * std * jax.random.normal(dq, shape)
      k2 = k + delta * std * jax.random.normal(dk, shape)
      v2 = v + delta * jax.random.normal(dv, shape)
      dense = attention(q2, k2, v2, implementation="reference").out
      rett, _ = rettention_sparse(q2, k2, v2, cache, mask=mask, implementation="reference")
      plain = attention(q2, k2, v2, mask=topk_mask(q2, k2, keep), implementation="reference").out
      norm = float(jnp.linalg.norm(dense))
      row = {"drift": float(delta),
             "err_rettention": float(jnp.linalg.norm(rett - dense)) / norm,
             "err_topk": float(jnp.linalg.norm(plain - dense)) / norm}
      row["ratio"] = row["err_rettention"] / max(row["err_topk"], 1e-30)
      rows.append(row)
      ctx.log(step, **row)
  small = [r for r in rows if 0 < r["drift"] <= 0.1]
  out = {
      "err_rettention_no_drift": next(r["err_rettention"] for r in rows if r["drift"] == 0),
      "max_ratio_small_drift": max(r["ratio"] for r in small),
      "err_rettention_0.05": next(r["err_rettention"] for r in rows if r["drift"] == 0.05),
      "err_topk_0.05": next(r["err_topk"] for r in rows if r["drift"] == 0.05),
      "mask_mass": float(jnp.mean(cache.ratio)),
      "keep": keep,
      "table": rows,
  }
  ctx.log(len(rows), split="summary", **{k_: v_ for k_, v_ in out.items() if k_ != "table"})
  return out


register(Experiment(
    name="rettention-vs-topk",
    paper_id=PAPER_ID,
    claim=("With 3.125% of the keys, Re-ttention (static mask + softmax mass and residual cached "
           "at a refresh step) stays close to dense attention at the next step, far closer than "
           "plain top-k sparse attention with a fresh oracle mask."),
    setting="proxy",
    departures=(
        "synthetic Gaussian q, k ~ N(0, 2), v ~ N(0, 1) instead of diffusion-transformer "
        "activations",
        "one drifted step instead of a denoising trajectory; no image or video quality metric",
    ),
    metric="max_ratio_small_drift",
    metrics={
        "err_rettention_no_drift": Metric("relative L2 error of Re-ttention on the refresh "
                                          "step's own inputs", low=0),
        "max_ratio_small_drift": Metric("max over drifts 0 < delta <= 0.1 of Re-ttention's error "
                                        "over plain top-k's", low=0),
        "err_rettention_0.05": Metric("Re-ttention relative error at drift 0.05", low=0),
        "err_topk_0.05": Metric("plain top-k relative error at drift 0.05", low=0),
        "mask_mass": Metric("mean softmax mass of the static mask at the refresh step",
                            low=0, high=1),
    },
    expectations=(
        Expectation("max_ratio_small_drift", "<=", 0.25,
                    reads=("seq_len", "keep_ratio", "qk_variance", "drifts"),
                    source="the project's test plan: err_rett <= 0.25 err_topk for "
                           "delta <= 0.1 (prototype: 0.034 vs 0.745 at delta = 0.05)"),
        Expectation("err_rettention_no_drift", "<", 1e-5,
                    source="the test plan: the same-step sparse output equals dense"),
    ),
    run=run,
    defaults={"seq_len": 1024, "head_dim": 64, "heads": 2, "keep_ratio": 0.03125,
              "qk_variance": 2.0, "drifts": [0.0, 0.05, 0.1, 0.2]},
    quick={"seq_len": 256},
    paper_value="3.1% of tokens attended with quality close to dense (CogVideoX, PixArt)",
))
