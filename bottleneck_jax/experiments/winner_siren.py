"""``winner-siren``: WINNER fits a high-frequency 1-D signal that plain SIREN cannot move on.

Paper: Chandravamsi et al., "Spectral Bottleneck in Deep Neural Networks: Noise is All You
Need", 2025, https://arxiv.org/abs/2509.09719. On audio clips (150k samples, 4x222 MLP) the
paper reports about 64.5 dB PSNR for WINNER (SIREN squared) against about 34.8 dB for SIREN; the
mechanism is that a SIREN initialised the usual way has no NTK energy at the target's high
frequencies and stays near its initial output.

Recipe (the test plan's CPU test): the target is white Gaussian noise band-passed (an ideal FFT
brick wall) to 0.15-0.45 cycles per sample, normalised to max |y| = 1, on ``linspace(-1, 1, N)``
with N = 4096; a SIREN with 3 hidden sine layers of width 64 (omega_0 = 30) initialised by
:func:`~bottleneck_jax.architecture.siren_init` or :func:`~bottleneck_jax.architecture.winner_init`
(audio constants), Adam 1e-4, full-batch MSE, 200 steps, two seeds (seed ``s`` draws both the
target and the network). PSNR = ``10 log10(peak_to_peak^2 / MSE)`` with ``peak_to_peak = 2``.
Each model is trained by :func:`bottleneck_jax.train.train` (checkpoints under
``checkpoints/<init>_seed<s>``).

Measured before declaring the expectations (a hand-written loop, same recipe, seed 0 / 1):
SIREN 17.59 / 17.44 dB, WINNER 44.5 / 42.4 dB; the target's statistic psi = 0.6028 / 0.6003.
First run of this experiment (defaults, 8 CPU devices): SIREN 17.59 / 17.44 dB, WINNER 41.46 /
37.88 dB; smallest gap 20.4 dB; every expectation held.
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
    Ref,
    RunContext,
    register,
)
from bottleneck_jax.train.plots import plot_curves

PAPER_ID = "winner-init"


def bandpass_noise(n: int, *, seed: int, low: float = 0.15, high: float = 0.45) -> np.ndarray:
  """White Gaussian noise (``numpy.random.default_rng(seed)``) with every rFFT bin outside
  ``[low, high]`` cycles per sample zeroed, normalised to ``max |y| = 1`` (float32 ``[n]``)."""
  rng = np.random.default_rng(seed)
  spec = np.fft.rfft(rng.standard_normal(n))
  f = np.fft.rfftfreq(n)
  spec[(f < low) | (f > high)] = 0
  y = np.fft.irfft(spec, n)
  return (y / np.abs(y).max()).astype(np.float32)


def _psnr(mse: float, peak_to_peak: float = 2.0) -> float:
  return float(10.0 * np.log10(peak_to_peak ** 2 / mse))


def _fit_one(ctx: RunContext, *, init: str, seed: int) -> dict[str, Any]:
  from bottleneck_jax.architecture import Siren, spectral_centroid
  config = ctx.config
  n = int(config["num_samples"])
  y = bandpass_noise(n, seed=seed, low=float(config["band"][0]), high=float(config["band"][1]))
  x = np.linspace(-1.0, 1.0, n, dtype=np.float32)[:, None]
  data = {"x": x, "y": y[:, None]}
  width, depth = int(config["width"]), int(config["hidden_layers"])
  sizes = (1, *([width] * depth), 1)
  omega = float(config["omega"])
  target = jnp.asarray(y)

  def model_fn():
    return Siren(sizes, target=target if init == "winner" else None, omega_first=omega,
                 omega_hidden=omega, rngs=nnx.Rngs(params=seed))

  def loss_fn(model, batch, key):
    del key
    mse = jnp.mean(jnp.square(model(batch["x"]) - batch["y"]))
    return mse, {"mse": mse}

  @nnx.jit
  def full_mse(model, xs, ys):
    return jnp.mean(jnp.square(model(xs) - ys))

  full = {}

  def eval_fn(model, key):
    del key
    if not full:
      full.update(replicated(data, jax.sharding.get_mesh()))
    mse = full_mse(model, full["x"], full["y"])
    return {"mse": mse, "psnr": 10.0 * jnp.log10(4.0 / mse)}

  tags = {"init": init, "seed": seed}
  res = fit(ctx, f"{init}_seed{seed}", model_fn, optax.adam(float(config["lr"])), loss_fn, data,
            steps=int(config["steps"]), batch_size=n, tags=tags, eval_fn=eval_fn,
            eval_every=int(config["eval_every"]), seed=seed, desc=f"{init} seed {seed}")
  mse = float(res.metrics["mse"])
  psi = float(spectral_centroid(target))
  return {"psnr": _psnr(mse), "mse": mse, "psi": psi}


def run_winner_siren(ctx: RunContext) -> dict[str, Any]:
  seeds = [int(s) for s in ctx.config["seeds"]]
  rows = []
  for seed in seeds:
    row = {"seed": seed}
    for init in ("siren", "winner"):
      r = _fit_one(ctx, init=init, seed=seed)
      row[f"{init}_psnr"] = r["psnr"]
      row["psi"] = r["psi"]
    rows.append(row)
  if ctx.is_main_process:
    curves = {}
    for seed in seeds:
      for init in ("siren", "winner"):
        steps, vals = logged_curve(ctx, "psnr", split="eval", init=init, seed=seed)
        curves[f"{init} seed {seed}"] = (steps.tolist(), vals.tolist())
    if any(len(s) for s, _ in curves.values()):
      plot_curves(ctx.plot_path("psnr"), curves, ylabel="PSNR (dB)",
                  title="SIREN vs WINNER on band-passed noise")
  siren = [r["siren_psnr"] for r in rows]
  winner = [r["winner_psnr"] for r in rows]
  return {"winner_psnr_min": min(winner), "siren_psnr_max": max(siren),
          "psnr_gap_min": min(w - s for w, s in zip(winner, siren)),
          "psi_mean": float(np.mean([r["psi"] for r in rows])), "table": rows}


WINNER_SIREN = register(Experiment(
    name="winner-siren",
    paper_id=PAPER_ID,
    claim=("WINNER's noise-perturbed initialisation lets a SIREN fit a high-frequency signal "
           "that the plain SIREN initialisation cannot move on in the same steps (paper: "
           "about 64.5 dB vs 34.8 dB PSNR on audio)."),
    setting="proxy",
    departures=(
        "a synthetic band-passed noise target (4096 samples) instead of 150k-sample audio clips",
        "3 hidden layers of width 64 and 200 Adam steps instead of the paper's 4x222 MLP and "
        "long training",
        "the thresholds are the test plan's (its NumPy prototype), not the paper's audio numbers",
    ),
    metric="winner_psnr_min",
    metrics={
        "winner_psnr_min": Metric("lowest PSNR (dB) of WINNER over the seeds"),
        "siren_psnr_max": Metric("highest PSNR (dB) of plain SIREN over the seeds"),
        "psnr_gap_min": Metric("smallest per-seed PSNR gain of WINNER over SIREN (dB)"),
        "psi_mean": Metric("the target's spectral statistic psi, mean over the seeds", low=0,
                           high=1),
    },
    expectations=(
        Expectation("psnr_gap_min", ">=", 15.0, reads=("steps", "num_samples", "width"),
                    quick_value=5.0,
                    source="the project's test plan: psnr_winner >= psnr_siren + "
                           "15 dB for both seeds"),
        Expectation("siren_psnr_max", "<", 20.0, reads=("steps", "num_samples", "width"),
                    source="the project's test plan: psnr_siren < 20 dB (stuck "
                           "near predicting 0)"),
        Expectation("winner_psnr_min", ">=", Ref("siren_psnr_max", offset=15.0),
                    reads=("steps", "num_samples", "width"),
                    quick_value=Ref("siren_psnr_max", offset=5.0),
                    source="the test plan: every WINNER run beats every SIREN run by 15 dB"),
    ),
    run=run_winner_siren,
    defaults={"num_samples": 4096, "band": [0.15, 0.45], "width": 64, "hidden_layers": 3,
              "omega": 30.0, "lr": 1e-4, "steps": 200, "seeds": [0, 1], "eval_every": 20,
              "checkpoint_every": 100, "keep": 2},
    quick={"num_samples": 2048, "steps": 100, "seeds": [0], "eval_every": 50,
           "checkpoint_every": 100},
    paper_value="audio: SIREN squared about 64.5 dB, SIREN about 34.8 dB PSNR (5 runs)",
))

__all__ = ["WINNER_SIREN", "bandpass_noise"]
