"""``chronicals-lora-plus``: does LoRA+ (``lr_B = 16 lr_A``) speed up LoRA fine-tuning?

Papers: *Chronicals: A High-Performance Framework for LLM Fine-Tuning* (2026) uses "LoRA+ with
theoretically-derived 16x differential learning rates between adapter matrices"; the method is
Hayou, Ghosh & Yu, *LoRA+: Efficient Low Rank Adaptation of Large Models* (ICML 2024),
https://arxiv.org/abs/2402.12354, which reports up to ~2x faster fine-tuning (and 1-2 % better
accuracy) at the same compute, comparing each method at its own best learning rate.

Task (offline). scikit-learn's 8x8 digits (1347 train / 450 test). The "pre-trained" network is
an MLP ``64 - hidden - hidden - 10`` whose base kernels are frozen random features (scaled
Gaussians, He-scaled); every layer is flax's ``nnx.LoRA`` around a bias-free ``nnx.Linear``
with a rank-``rank`` adapter (``lora_a`` he-uniform, ``lora_b`` zero, both ``nnx.LoRAParam``),
and only the adapters train: ``train(..., wrt=nnx.LoRAParam)`` with Adam through
:func:`~bottleneck_jax.efficiency.lora_plus`, ``ratio=1`` (plain LoRA) and ``ratio=16``
(LoRA+), same initialisation, same batches, over a grid of ``lr_A`` values. Each (ratio, lr_A)
member is one :func:`bottleneck_jax.train.train` call with its own checkpoint folder
(``checkpoints/member_<i>``), so a killed sweep resumes where it stopped; every step's training
loss is logged and read back from ``metrics.jsonl``.

Metric. Steps until the running mean (window ``smooth``) of the training loss first reaches
``target_loss``; the speed-up is plain LoRA's steps / LoRA+'s steps, each at the learning rate of
the grid that gets there fastest (``best-lr speed-up``, the paper's comparison). The speed-up at
the same ``lr_A`` (``fixed_lr``) is reported too; it is large by construction, since LoRA+ then
simply takes larger steps on ``B``.

Measured before the move to ``train()`` (same recipe, another draw of the random base
kernels; seed 0, CPU): the expectation is **not** met. At the same ``lr_A = 1e-3`` LoRA+ reaches the target 2.9x sooner (82 vs 237
steps), but at each method's best learning rate plain LoRA (``lr = 1e-2``: 55 steps) is as fast
as LoRA+ (``lr_A = 3e-3``: 60 steps), a best-lr speed-up of 0.92x; best test accuracy 0.973
(LoRA) vs 0.984 (LoRA+). With ``--set hidden=2048`` (about 80 s): 0.75x at the best lr, 2.2x
at the same lr. On this toy, with Adam, LoRA+ mostly moves the best learning rate (it saves
tuning) rather than speeding up a tuned LoRA. Quick mode now (hidden 128, 120 steps, lr_A in
{1e-3, 1e-2}, target 0.5): 0.97x at the best lr, 2.9x at lr_A = 1e-3.

Departures: a random-feature MLP on digits instead of a pre-trained transformer; width
``hidden`` (512) is far from the infinite-width regime of the LoRA+ analysis.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bottleneck_jax.experiments._training import batch_stream, fit, logged_curve, replicated
from bottleneck_jax.experiments.registry import (
    Expectation,
    Experiment,
    Metric,
    RunContext,
    register,
)
from bottleneck_jax.train.plots import plot_curves

PAPER_ID = "chronicals"


def steps_to_target(losses: np.ndarray, target: float, smooth: int) -> int:
  """First step (1-based, end of the window) whose ``smooth``-step mean loss is ``<= target``.

  ``len(losses) + 1`` when never reached.
  """
  losses = np.asarray(losses, np.float64)
  if len(losses) < smooth:
    return len(losses) + 1
  run_mean = np.convolve(losses, np.ones(smooth) / smooth, mode="valid")
  hit = np.nonzero(run_mean <= target)[0]
  return int(hit[0] + smooth) if hit.size else len(losses) + 1


class AdaptedMLP(nnx.Module):
  """``64 - hidden - hidden - 10``: frozen random-feature base kernels (scaled Gaussians, He
  scaling before a ReLU) wrapped in flax's ``nnx.LoRA`` adapters (``lora_a`` he-uniform,
  ``lora_b`` zero, both ``nnx.LoRAParam``)."""

  def __init__(self, sizes, rank: int, *, rngs: nnx.Rngs):
    layers = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
      gain = 2.0 if i < len(sizes) - 2 else 1.0  # He scaling before a ReLU
      base = nnx.Linear(a, b, use_bias=False, rngs=rngs, kernel_init=nnx.initializers.
                        variance_scaling(gain, "fan_in", "normal"))
      layers.append(nnx.LoRA(a, rank, b, base_module=base, rngs=rngs))
    self.layers = nnx.List(layers)

  def __call__(self, x):
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if i < len(self.layers) - 1:
        x = jax.nn.relu(x)
    return x


def train_member(ctx: RunContext, ds, *, member: int, ratio: float, lr: float
                 ) -> dict[str, Any]:
  """Trains the adapters of one (ratio, lr_A) member through :func:`bottleneck_jax.train.train`
  (checkpoints in ``checkpoints/member_<i>``); returns its per-step losses and test accuracy."""
  from bottleneck_jax.efficiency import lora_plus

  cfg = ctx.config
  h, steps, bs = int(cfg["hidden"]), int(cfg["steps"]), int(cfg["batch_size"])
  sizes = [ds.x_train.shape[1], h, h, ds.num_classes]

  def loss_fn(model, batch, key):
    del key
    logits = model(batch["x"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean(), {}

  def select(rng):  # the same batches for both ratios and every lr
    idx = rng.choice(len(ds.x_train), bs, replace=False)
    return {"x": ds.x_train[idx], "y": ds.y_train[idx]}

  res = fit(ctx, f"member_{member}",
            lambda: AdaptedMLP(sizes, int(cfg["rank"]), rngs=nnx.Rngs(ctx.seed)),
            lora_plus(lr, ratio=ratio, optimizer=optax.adam), loss_fn,
            batch_stream(select, seed=ctx.seed + 1), steps=steps, batch_size=bs,
            wrt=nnx.LoRAParam, tags={"member": member, "ratio": ratio, "lr": lr}, log_every=1,
            desc=f"lora ratio={ratio:g} lr={lr:g}")
  with jax.set_mesh(res.mesh):
    xte, yte = replicated((ds.x_test, ds.y_test), res.mesh)
    acc = nnx.jit(lambda m, x, y: jnp.mean((jnp.argmax(m(x), -1) == y).astype(jnp.float32)))(
        res.model, xte, yte)
  _, losses = logged_curve(ctx, "loss", member=member)
  return {"losses": losses, "test_accuracy": float(acc)}


def run(ctx: RunContext) -> dict[str, Any]:
  from bottleneck_jax.data import load_digits

  cfg = ctx.config
  ds = load_digits(seed=int(cfg["data_seed"]))
  lrs = [float(v) for v in cfg["learning_rates"]]
  target, smooth = float(cfg["target_loss"]), int(cfg["smooth"])
  out, secs = {}, {}
  member = 0
  for name, ratio in (("lora", 1.0), ("lora_plus", float(cfg["ratio"]))):
    t0 = time.time()
    rows = []
    for lr in lrs:
      rows.append(train_member(ctx, ds, member=member, ratio=ratio, lr=lr))
      member += 1
    secs[name] = time.time() - t0
    out[name] = {"losses": [r["losses"] for r in rows],
                 "test_accuracy": np.asarray([r["test_accuracy"] for r in rows])}
  n_steps = int(cfg["steps"])
  reach = {name: [steps_to_target(l, target, smooth) for l in out[name]["losses"]]
           for name in out}
  for j, lr in enumerate(lrs):
    ctx.log(j, split="summary", lr=lr, **{f"{n}_steps_to_target": reach[n][j] for n in out},
            **{f"{n}_test_accuracy": float(out[n]["test_accuracy"][j]) for n in out})
  best = {n: int(np.argmin(reach[n])) for n in out}
  best_steps = {n: reach[n][best[n]] for n in out}
  speedup = best_steps["lora"] / best_steps["lora_plus"]
  fixed = float(cfg["fixed_lr"])
  jf = int(np.argmin([abs(lr - fixed) for lr in lrs]))
  fixed_speedup = reach["lora"][jf] / reach["lora_plus"][jf]
  result = {
      "best_lr_speedup": speedup,
      "fixed_lr_speedup": fixed_speedup,
      "fixed_lr": lrs[jf],
      "lora_best_lr": lrs[best["lora"]], "lora_plus_best_lr": lrs[best["lora_plus"]],
      "lora_best_steps_to_target": best_steps["lora"],
      "lora_plus_best_steps_to_target": best_steps["lora_plus"],
      "lora_plus_reached_target": bool(best_steps["lora_plus"] <= n_steps),
      "lora_best_test_accuracy": float(np.max(out["lora"]["test_accuracy"])),
      "lora_plus_best_test_accuracy": float(np.max(out["lora_plus"]["test_accuracy"])),
      "lora_steps_to_target": reach["lora"], "lora_plus_steps_to_target": reach["lora_plus"],
      "learning_rates": lrs,
      "train_seconds_lora": round(secs["lora"], 2),
      "train_seconds_lora_plus": round(secs["lora_plus"], 2),
  }
  _plot(ctx, out, lrs, best, target, smooth)
  return result


def _plot(ctx, out, lrs, best, target, smooth) -> None:
  if not ctx.is_main_process:
    return
  k = np.ones(smooth) / smooth
  curves, styles = {}, {}
  for name, style in (("lora", "-"), ("lora_plus", "--")):
    for j, lr in enumerate(lrs):
      losses = out[name]["losses"][j]
      if len(losses) < smooth:
        continue
      curve = np.convolve(losses, k, mode="valid")
      label = f"{'LoRA+' if name == 'lora_plus' else 'LoRA'} lr={lr:g}"
      curves[label] = (np.arange(smooth, smooth + len(curve)), curve)
      styles[label] = {"ls": style, "color": f"C{j}", "lw": 2.2 if j == best[name] else 0.7,
                       "alpha": 1.0 if j == best[name] else 0.5}
  if curves:
    plot_curves(ctx.plot_path("loss_curves"), curves, ylabel=f"train loss (mean of {smooth})",
                logy=True, hline=target, styles=styles, figsize=(5.4, 3.4),
                title="LoRA (solid) vs LoRA+ (dashed); colour = lr_A, bold = fastest")


register(Experiment(
    name="chronicals-lora-plus",
    paper_id=PAPER_ID,
    claim=("LoRA+ (learning rate of B 16x that of A) fine-tunes faster than plain LoRA "
           "(LoRA+ paper: up to ~2x, each at its best learning rate)."),
    setting="proxy",
    departures=(
        "a frozen random-feature MLP on scikit-learn's 8x8 digits instead of a pre-trained "
        "transformer",
        "width 512 (far from the infinite-width regime of the LoRA+ analysis), rank-8 adapters",
        "speed measured as steps to a smoothed training loss of 0.1 over a 6-point lr grid",
    ),
    metric="best_lr_speedup",
    metrics={
        "best_lr_speedup": Metric("steps to the target loss, plain LoRA / LoRA+, each at its "
                                  "fastest lr_A of the grid", low=0),
        "lora_plus_reached_target": "LoRA+ reaches the target loss within the run",
        "fixed_lr_speedup": Metric("the same ratio at lr_A = fixed_lr", low=0),
    },
    expectations=(
        Expectation("lora_plus_reached_target", "==", True, reads=("steps", "target_loss"),
                    source="experiment design: the speed-up is measured on reached targets"),
        Expectation("best_lr_speedup", ">=", 1.5,
                    reads=("learning_rates", "target_loss", "ratio"),
                    source="LoRA+ paper (Hayou et al. 2024): up to ~2x faster fine-tuning at "
                           "each method's best learning rate (read as >= 1.5x)"),
    ),
    run=run,
    defaults={"hidden": 512, "rank": 8, "ratio": 16.0, "steps": 300, "batch_size": 128,
              "learning_rates": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2], "target_loss": 0.1,
              "smooth": 20, "fixed_lr": 1e-3, "data_seed": 0, "checkpoint_every": 150},
    quick={"hidden": 128, "steps": 120, "learning_rates": [1e-3, 1e-2], "target_loss": 0.5,
           "checkpoint_every": 60},
    paper_value="LoRA+: up to ~2x faster fine-tuning; Chronicals uses ratio 16",
))
