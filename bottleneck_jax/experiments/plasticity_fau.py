"""``plasticity-fau``: a high replay ratio from the start costs a critic its active units.

Paper: Ma et al., *Revisiting Plasticity in Visual Reinforcement Learning: Data, Modules and
Training Stages*, ICLR 2024, https://arxiv.org/abs/2310.07418. Its finding: a high replay ratio
(gradient updates per environment step) early in training causes a catastrophic loss of the
critic's plasticity, visible as a drop of its fraction of active units (FAU); hence the adaptive
replay ratio, which starts low (0.5) and switches to high (2) once the FAU has flattened.

Stand-in (offline, exact, no simulator): a critic-like regression whose replay buffer grows with
the environment steps. A fixed random ReLU teacher ``q*(x)`` on ``x ~ N(0, I_8)`` plus noise gives
an endless pool of transitions; at update ``u`` the buffer holds the first
``warmup + floor(u / rr)`` of them and a batch is drawn uniformly from it. So for the same number
of updates, replay ratio 8 replays a buffer 16 times smaller than replay ratio 0.5. The critic is
:class:`~bottleneck_jax.objectives.ReLUMLP` (two hidden layers of ``width``), trained by
:func:`bottleneck_jax.train.train` with Adam; its FAU
(:func:`~bottleneck_jax.objectives.fraction_active_units`, pooled over both hidden layers) is
measured on a fixed probe batch of fresh inputs during and after training, for each seed. The
adaptive rule (:func:`~bottleneck_jax.objectives.arr_update`, one "episode" per evaluation) is run
on the low-ratio FAU trace and the switch point reported.

Departures: a supervised regression on a growing buffer instead of DrQ-v2 on DeepMind Control;
the same number of updates (not of environment steps) for both ratios; a two-layer MLP critic
without the convolutional encoder; a few thousand updates instead of millions.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bottleneck_jax.experiments._training import fit, logged_curve
from bottleneck_jax.experiments.registry import (
    Expectation,
    Experiment,
    Metric,
    Ref,
    RunContext,
    register,
)

PAPER_ID = "plasticity"
IN_DIM = 8


def _teacher(seed: int):
  rng = np.random.default_rng(10_000 + seed)
  w1 = rng.standard_normal((IN_DIM, 32)) / np.sqrt(IN_DIM)
  w2 = rng.standard_normal(32) / np.sqrt(32)
  return lambda x: np.maximum(x @ w1, 0) @ w2


def _stream(cfg, rr: float, seed: int):
  pool = int(cfg["warmup"]) + int(np.ceil(int(cfg["steps"]) / rr)) + 1
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((pool, IN_DIM)).astype(np.float32)
  y = (_teacher(seed)(x) + 0.1 * rng.standard_normal(pool)).astype(np.float32)
  batch, warm = int(cfg["batch_size"]), int(cfg["warmup"])

  def factory():
    r = np.random.default_rng(seed + 1)
    u = 0
    while True:
      n = min(warm + int(u / rr), pool)
      idx = r.integers(0, n, batch)
      yield {"x": x[idx], "y": y[idx]}
      u += 1
  return factory


def _train_one(ctx: RunContext, rr: float, seed: int) -> dict[str, Any]:
  from bottleneck_jax.objectives import ReLUMLP, fraction_active_units
  cfg = ctx.config
  width = int(cfg["width"])
  probe = jnp.asarray(np.random.default_rng(99).standard_normal((512, IN_DIM)), jnp.float32)

  def model_fn():
    return ReLUMLP(IN_DIM, (width, width), 1, rngs=nnx.Rngs(seed))

  def loss_fn(model, batch, key):
    pred = model(batch["x"])[:, 0]
    loss = jnp.mean(jnp.square(pred - batch["y"]))
    return loss, {"mse": loss}

  @nnx.jit
  def fau_of(model):
    _, acts = model.forward_with_acts(probe)
    return fraction_active_units(acts)

  def eval_fn(model, key):
    return {"fau": fau_of(model)}

  tags = {"rr": rr, "member": seed}
  res = fit(ctx, f"rr{rr:g}_seed{seed}", model_fn, optax.adam(float(cfg["lr"])), loss_fn,
            _stream(cfg, rr, seed), steps=int(cfg["steps"]), tags=tags, eval_fn=eval_fn,
            eval_every=int(cfg["eval_every"]), seed=seed, desc=f"rr={rr:g} seed={seed}")
  steps, trace = logged_curve(ctx, "fau", split="eval", **tags)
  return {"fau": float(res.metrics["fau"]), "trace": trace.tolist(), "trace_steps":
          steps.tolist()}


def run(ctx: RunContext) -> dict[str, Any]:
  from bottleneck_jax.objectives import arr_init, arr_update
  cfg = ctx.config
  low, high = float(cfg["rr_low"]), float(cfg["rr_high"])
  seeds = [ctx.seed + i for i in range(int(cfg["seeds"]))]
  runs = {rr: [_train_one(ctx, rr, s) for s in seeds] for rr in (low, high)}
  fau_low = [r["fau"] for r in runs[low]]
  fau_high = [r["fau"] for r in runs[high]]
  # the adaptive rule on the first low-ratio trace: one "episode" per evaluation
  state, switch_step = arr_init(rr_low=0.5), None
  tr = runs[low][0]
  for i, (st, f) in enumerate(zip(tr["trace_steps"], tr["trace"])):
    state = arr_update(state, float(f), i, check_freq=int(cfg["arr_check_freq"]),
                       gap=float(cfg["arr_gap"]))
    if switch_step is None and bool(state.switched):
      switch_step = int(st)
  out = {"fau_low_rr": float(np.mean(fau_low)), "fau_high_rr": float(np.mean(fau_high)),
         "fau_low_rr_per_seed": fau_low, "fau_high_rr_per_seed": fau_high,
         "seeds_high_below_low": int(sum(h < lo for h, lo in zip(fau_high, fau_low))),
         "num_seeds": len(seeds), "arr_switch_step": switch_step}
  ctx.log(int(cfg["steps"]), split="summary",
          **{k: v for k, v in out.items() if v is not None})
  if ctx.is_main_process:
    try:
      from bottleneck_jax.train.plots import plot_curves
      curves = {f"rr={rr:g} seed={s}": (r["trace_steps"], r["trace"])
                for rr in (low, high) for s, r in zip(seeds, runs[rr])}
      plot_curves(ctx.plot_path("fau"), curves, xlabel="update", ylabel="FAU (probe batch)",
                  title="critic FAU: low vs high replay ratio")
    except Exception:  # noqa: BLE001 - plotting is optional
      pass
  return out


register(Experiment(
    name="plasticity-fau",
    paper_id=PAPER_ID,
    claim=("A critic trained with a high replay ratio from the start loses active units: its "
           "FAU ends lower than with a low replay ratio (the paper's motivation for starting at "
           "RR = 0.5 and switching to RR = 2 once the FAU has flattened)."),
    setting="proxy",
    departures=(
        "supervised regression on a growing replay buffer instead of DrQ-v2 on DeepMind Control",
        "same number of updates for both ratios (the high ratio sees 16x fewer transitions)",
        "a two-layer ReLU MLP critic without the convolutional encoder",
    ),
    metric="fau_high_rr",
    metrics={
        "fau_high_rr": Metric("final critic FAU at the high replay ratio, mean over seeds",
                              low=0, high=1),
        "fau_low_rr": Metric("final critic FAU at the low replay ratio, mean over seeds",
                             low=0, high=1),
    },
    expectations=(
        Expectation("fau_high_rr", "<", Ref("fau_low_rr"), reads=("rr_low", "rr_high", "steps"),
                    source="the project's test plan (direction only): RR = 8 from step 0 "
                           "ends with a lower critic FAU than RR = 0.5"),
    ),
    run=run,
    defaults={"rr_low": 0.5, "rr_high": 8.0, "steps": 3000, "seeds": 3, "width": 256,
              "batch_size": 64, "warmup": 256, "lr": 3e-3, "eval_every": 100,
              "arr_check_freq": 5, "arr_gap": 1e-3, "checkpoint_every": 1000, "keep": 1},
    quick={"steps": 400, "seeds": 1, "width": 64, "eval_every": 100, "checkpoint_every": 400},
    paper_value="adaptive RR beats static RR 0.5 and 2 on DMC / Atari-100K (per-task returns)",
))

__all__: list[str] = []
