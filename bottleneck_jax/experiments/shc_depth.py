"""``shc-depth``: products of residual-mixing matrices over depth, and a small model that trains.

Paper: "Beyond the Birkhoff Polytope: Spectral-Sphere-Constrained Hyper-Connections" (sHC), 2026,
arXiv 2603.20896, against HC (Zhu et al. 2024) and mHC (Xie et al. 2025). The claim checked here
is the stability argument behind mHC and sHC: the composition of the residual mixing matrices
``H_res`` over many layers stays bounded when each one is constrained (doubly stochastic for
mHC: norm exactly 1; on the spectral sphere for sHC: norm at most 1), while unconstrained HC
matrices compound, and a deep hyper-connected network trains stably under either constraint.
The sHC paper's own numbers were not available (only its abstract), so the thresholds are the
spec's.

Part 1, depth products (no training): for ``sigma`` in ``sigmas`` and ``trials`` seeds, 64
matrices ``I + sigma N(0, 1)`` of size 4 are used as HC matrices as they are, as sHC matrices
after :func:`~bottleneck_jax.architecture.spectral_normalize` and as mHC logits through
:func:`~bottleneck_jax.architecture.sinkhorn` (20 iterations); the spectral norm of the 64-fold
product is measured (:func:`~bottleneck_jax.architecture.product_norm`).

Part 2, training: an 8-layer pre-norm MLP residual network (width 64, ``n = 4`` streams, each
layer ``x + W_2 gelu(W_1 rms_norm(x))`` wrapped by
:class:`~bottleneck_jax.architecture.HyperConnection`) regresses the output of a fixed random
teacher network (16 inputs, 4 outputs, 4096 examples) with Adam 3e-3 for 300 steps, batches of
256, for ``kind`` in hc / mhc / shc and the plain residual network, each through
:func:`bottleneck_jax.train.train`. Measured: the relative loss reduction (first logged training
loss to the final full-data loss), finiteness, and for sHC the largest ``sigma_max(H_res)`` seen
at the evaluations; logged, not judged: the smallest entry of sHC's ``H_res`` (negative = the
subtractive mixing mHC cannot express) and ``||H_res - I||_F`` for mHC and sHC.

First run (defaults): largest sHC product norm 5.7e-5 (the sphere-normalised products shrink),
mHC within 3.6e-7 of 1, smallest HC product norm at sigma = 0.3 173.7; loss reductions 0.81
(plain), 0.80 (HC), 0.82 (mHC), 0.83 (sHC); sHC sigma_max(H_res) 1.0000004, its smallest entry
-0.27 (subtractive mixing is used); mHC's sigma_max reached 1.0064 (20 finite Sinkhorn
iterations are not exactly doubly stochastic once the logits sharpen). Every expectation held.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bottleneck_jax.experiments._training import fit, logged_curve, replicated
from bottleneck_jax.experiments.registry import (
    Expectation,
    Experiment,
    Metric,
    RunContext,
    register,
)
from bottleneck_jax.train.plots import plot_curves

PAPER_ID = "shc"
VARIANTS = ("residual", "hc", "mhc", "shc")


def depth_products(*, sigmas, depth: int, n: int, trials: int, seed: int) -> list[dict]:
  """The product norms of Part 1, one row per (sigma, trial)."""
  from bottleneck_jax.architecture import product_norm, sinkhorn, spectral_normalize
  rows = []
  for sigma in sigmas:
    for t in range(trials):
      rng = np.random.default_rng([seed, t, int(round(1000 * sigma))])
      m = jnp.asarray(np.eye(n) + sigma * rng.standard_normal((depth, n, n)), jnp.float32)
      rows.append({"sigma": float(sigma), "trial": t, "hc": product_norm(m),
                   "shc": product_norm(spectral_normalize(m)),
                   "mhc": product_norm(sinkhorn(m, iters=20))})
  return rows


class _MLPBranch(nnx.Module):
  def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
    self.norm = nnx.RMSNorm(dim, rngs=rngs)
    self.up = nnx.Linear(dim, hidden, rngs=rngs)
    self.down = nnx.Linear(hidden, dim, rngs=rngs)

  def __call__(self, x):
    return self.down(jax.nn.gelu(self.up(self.norm(x))))


class DeepResidualNet(nnx.Module):
  """The Part 2 network: input projection, ``depth`` residual MLP layers (plain or wrapped by a
  hyper-connection of ``kind``), final RMSNorm and linear read-out."""

  def __init__(self, d_in: int, d_out: int, *, dim: int, hidden: int, depth: int,
               kind: str, n_streams: int, rngs: nnx.Rngs):
    from bottleneck_jax.architecture import HyperConnection
    self.kind = kind
    self.n_streams = n_streams
    self.inp = nnx.Linear(d_in, dim, rngs=rngs)
    branches = [_MLPBranch(dim, hidden, rngs=rngs) for _ in range(depth)]
    if kind == "residual":
      self.layers = nnx.List(branches)
    else:
      self.layers = nnx.List([HyperConnection(b, dim=dim, n_streams=n_streams, kind=kind,
                                              layer_index=i, rngs=rngs)
                              for i, b in enumerate(branches)])
    self.norm = nnx.RMSNorm(dim, rngs=rngs)
    self.out = nnx.Linear(dim, d_out, rngs=rngs)

  def h_res(self, x):
    """``[depth, batch, n, n]``: every layer's ``H_res`` on the streams it sees."""
    from bottleneck_jax.architecture import expand_streams
    s = expand_streams(self.inp(x), self.n_streams)
    mats = []
    for layer in self.layers:
      mats.append(layer.coeffs(s).h_res)
      s = layer(s)
    return jnp.stack(mats)

  def __call__(self, x):
    from bottleneck_jax.architecture import expand_streams, reduce_streams
    h = self.inp(x)
    if self.kind == "residual":
      for layer in self.layers:
        h = h + layer(h)
    else:
      s = expand_streams(h, self.n_streams)
      for layer in self.layers:
        s = layer(s)
      h = reduce_streams(s, reduction="mean")
    return self.out(self.norm(h))


def _teacher_data(config) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(int(config["data_seed"]))
  d_in, d_out, m = int(config["d_in"]), int(config["d_out"]), int(config["num_examples"])
  x = rng.standard_normal((m, d_in)).astype(np.float32)
  w1 = rng.standard_normal((d_in, 64)) / np.sqrt(d_in)
  w2 = rng.standard_normal((64, d_out)) / np.sqrt(64)
  y = (np.tanh(x @ w1 * 2.0) @ w2).astype(np.float32)
  return {"x": x, "y": y}


def _train_variant(ctx: RunContext, kind: str, data) -> dict[str, Any]:
  config = ctx.config
  seed = ctx.seed

  def model_fn():
    return DeepResidualNet(int(config["d_in"]), int(config["d_out"]), dim=int(config["dim"]),
                           hidden=int(config["hidden"]), depth=int(config["depth"]), kind=kind,
                           n_streams=int(config["n_streams"]), rngs=nnx.Rngs(seed))

  def loss_fn(model, batch, key):
    del key
    mse = jnp.mean(jnp.square(model(batch["x"]) - batch["y"]))
    return mse, {"mse": mse}

  @nnx.jit
  def evaluate(model, x, y):
    out = {"mse": jnp.mean(jnp.square(model(x) - y))}
    if kind != "residual":
      h = model.h_res(x[:256])
      gram = jnp.swapaxes(h, -1, -2) @ h
      out["sigma_max"] = jnp.max(jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(gram)[..., -1], 0)))
      out["h_res_min"] = jnp.min(h)
      out["h_res_dist_identity"] = jnp.mean(jnp.linalg.norm(h - jnp.eye(h.shape[-1]),
                                                            axis=(-2, -1)))
    return out

  full = {}

  def eval_fn(model, key):
    del key
    if not full:
      full.update(replicated(data, jax.sharding.get_mesh()))
    return evaluate(model, full["x"], full["y"])

  res = fit(ctx, kind, model_fn, optax.adam(float(config["lr"])), loss_fn, data,
            steps=int(config["steps"]), batch_size=int(config["batch_size"]),
            tags={"variant": kind}, eval_fn=eval_fn, eval_every=int(config["eval_every"]),
            log_every=int(config["log_every"]), desc=f"shc-depth {kind}")
  steps, losses = logged_curve(ctx, "mse", split="train", variant=kind)
  _, evals_sigma = logged_curve(ctx, "sigma_max", split="eval", variant=kind)
  first = float(losses[0]) if len(losses) else float("nan")
  final = float(res.metrics["mse"])
  out = {"initial_loss": first, "final_loss": final,
         "loss_reduction": 1.0 - final / first if first > 0 else float("nan"),
         "finite": bool(np.isfinite(losses).all() and np.isfinite(final))}
  if kind != "residual":
    out["sigma_max"] = float(np.max(evals_sigma)) if len(evals_sigma) else float(
        res.metrics["sigma_max"])
    out["h_res_min"] = float(res.metrics["h_res_min"])
    out["h_res_dist_identity"] = float(res.metrics["h_res_dist_identity"])
  return out


def run_shc_depth(ctx: RunContext) -> dict[str, Any]:
  config = ctx.config
  rows = depth_products(sigmas=[float(s) for s in config["sigmas"]],
                        depth=int(config["depth_product"]), n=int(config["n_streams"]),
                        trials=int(config["trials"]), seed=ctx.seed)
  top = max(float(s) for s in config["sigmas"])
  at_top = [r for r in rows if r["sigma"] == top]
  data = _teacher_data(config)
  variants = {k: _train_variant(ctx, k, data) for k in VARIANTS}
  if ctx.is_main_process:
    curves = {}
    for k in VARIANTS:
      steps, vals = logged_curve(ctx, "mse", split="train", variant=k)
      curves[k] = (steps.tolist(), vals.tolist())
    if any(len(s) for s, _ in curves.values()):
      plot_curves(ctx.plot_path("loss"), curves, ylabel="training MSE", logy=True,
                  title="8-layer residual MLP: plain vs hyper-connections")
  hyper = [variants[k] for k in ("hc", "mhc", "shc")]
  return {
      "shc_product_norm_max": max(r["shc"] for r in rows),
      "mhc_product_norm_error": max(abs(r["mhc"] - 1.0) for r in rows),
      "hc_product_norm_min_at_top_sigma": min(r["hc"] for r in at_top),
      "min_loss_reduction": min(v["loss_reduction"] for v in variants.values()),
      "min_loss_reduction_constrained": min(variants[k]["loss_reduction"]
                                            for k in ("mhc", "shc")),
      "all_finite": all(v["finite"] for v in variants.values()),
      "shc_sigma_max": variants["shc"]["sigma_max"],
      "shc_h_res_min": variants["shc"]["h_res_min"],
      "final_loss": {k: v["final_loss"] for k, v in variants.items()},
      "variants": variants,
      "products": rows,
      "hyper_final_loss_max": max(v["final_loss"] for v in hyper),
  }


_SRC = "the project's test plan"

SHC_DEPTH = register(Experiment(
    name="shc-depth",
    paper_id=PAPER_ID,
    claim=("Constraining the residual mixing keeps its composition over depth bounded: products "
           "of 64 sHC (spectral-sphere) matrices have norm <= 1 and of mHC (doubly stochastic) "
           "matrices norm 1, while unconstrained HC products compound; an 8-layer "
           "hyper-connected network trains stably under either constraint."),
    setting="proxy",
    departures=(
        "random 4x4 mixing matrices I + sigma N(0, 1) instead of the matrices of a trained LLM",
        "an 8-layer MLP on a teacher-regression task instead of language-model pre-training",
        "sHC's parameterisation inferred from the abstract (W / ||W||_2, identity at init)",
        "no gradient-norm ratio check (train() does not expose per-step gradient norms)",
    ),
    metric="shc_product_norm_max",
    metrics={
        "shc_product_norm_max": Metric("largest ||prod of 64 sHC matrices||_2 over sigmas and "
                                       "trials", low=0),
        "mhc_product_norm_error": Metric("largest | ||prod of 64 mHC matrices||_2 - 1 |", low=0),
        "hc_product_norm_min_at_top_sigma": Metric("smallest ||prod of 64 HC matrices||_2 at "
                                                   "the largest sigma", low=0),
        "min_loss_reduction": Metric("smallest 1 - final / initial training MSE over the four "
                                     "variants", high=1),
        "min_loss_reduction_constrained": Metric("the same over mHC and sHC", high=1),
        "all_finite": "every logged loss of every variant is finite",
        "shc_sigma_max": Metric("largest sigma_max(H_res) of the sHC model at the evaluations",
                                low=0),
    },
    expectations=(
        Expectation("shc_product_norm_max", "<=", 1.0 + 1e-5, reads=("sigmas",),
                    source=f"{_SRC}: sHC product norm <= 1"),
        Expectation("mhc_product_norm_error", "<=", 1e-6, reads=("sigmas",),
                    source=f"{_SRC}: mHC product norm = 1 +- 1e-6"),
        Expectation("hc_product_norm_min_at_top_sigma", ">", 10.0, reads=("sigmas",),
                    source=f"{_SRC}: HC product norm > 10 at sigma = 0.3 (1295 in the test plan)"),
        Expectation("all_finite", "==", True, source=f"{_SRC}: all losses finite"),
        Expectation("min_loss_reduction", ">=", 0.5, reads=("steps", "lr"), quick_value=0.2,
                    source=f"{_SRC}: every loss decreases by >= 50 % in 300 steps"),
        Expectation("shc_sigma_max", "<=", 1.0 + 1e-5,
                    source=f"{_SRC}: sigma_max(H_res) <= 1 + 1e-5 for sHC"),
    ),
    run=run_shc_depth,
    defaults={"sigmas": [0.1, 0.3], "depth_product": 64, "trials": 5, "n_streams": 4,
              "d_in": 16, "d_out": 4, "num_examples": 4096, "data_seed": 0, "dim": 64,
              "hidden": 128, "depth": 8, "lr": 3e-3, "steps": 300, "batch_size": 256,
              "eval_every": 50, "log_every": 10, "checkpoint_every": 150, "keep": 2},
    quick={"steps": 60, "trials": 2, "eval_every": 30, "checkpoint_every": 60},
    paper_value="qualitative (abstract): sHC removes the Birkhoff polytope's non-negativity "
                "and identity-degeneration limits while keeping deep compositions bounded",
))

__all__ = ["SHC_DEPTH", "DeepResidualNet", "depth_products"]
