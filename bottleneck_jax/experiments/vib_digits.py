"""Deep VIB on scikit-learn's digits: accuracy at a low rate, and the rate–accuracy trade-off.

Paper: Alemi, Fischer, Dillon & Murphy, "Deep Variational Information Bottleneck", ICLR 2017,
https://arxiv.org/abs/1612.00410. On MNIST (K=256, beta=1e-3) the paper reports 1.13 % test
error (a deterministic network of the same architecture: 1.38 %) while the encoder transmits a
few tens of bits per image; raising beta lowers the rate I(X;Z) and, past a point, the accuracy.

Recipe (the project's test plan): the 8x8 digits (1347 train / 450 test,
stratified split with seed 0), an MLP encoder 64-256-256-2K with K=32 and
``sigma = softplus(rho - 5)``, a linear softmax decoder, Adam 1e-3, mini-batches of 128, the
analytic KL as the rate, one sample of z per training example, and 12 samples at test time
(predictive ``log mean_s softmax``). Every model is trained by :func:`bottleneck_jax.train.train`
(mesh, checkpoints, resume): ``vib-digits`` checkpoints its VIB model in ``checkpoints/`` and the
baseline in ``checkpoints/deterministic``; the sweep one folder per beta.

Experiments:

* ``vib-digits``: beta = 1e-3 keeps its accuracy: test accuracy >= 0.93 (the test plan) and within 1
  point of the deterministic baseline (the same network decoding the encoder mean, beta = 0,
  trained the same way; the paper's comparison). Reports the rate in bits.
* ``vib-digits-sweep``: beta in {1e-4, 1e-3, 1e-2, 1e-1, 1}: the rate falls monotonically with
  beta, and beta = 1 collapses it (< 0.5 bit) and the accuracy (< 0.3, the test plan); plots accuracy
  against bits. Measured before this declaration: accuracy 0.35 at beta = 1 (2000 steps), an
  honest miss of the test plan's 0.3.
"""

from __future__ import annotations

import itertools
from typing import Any

import jax
import jax.numpy as jnp
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

PAPER_ID = "vib"

_COMMON = {
    "latent_dim": 32,
    "hidden": [256, 256],
    "std_offset": 5.0,
    "lr": 1e-3,
    "batch_size": 128,
    "eval_samples": 12,
    "eval_every": 250,
    "checkpoint_every": 500,
    "keep": 2,
    "data_seed": 0,
}


def _load_data(config):
  from bottleneck_jax.data import load_digits
  return load_digits(seed=int(config["data_seed"]))


def train_vib(ctx: RunContext, *, beta: float, name: str, deterministic: bool = False,
              tags: dict[str, Any] | None = None) -> dict[str, Any]:
  """Trains one classifier on digits through :func:`bottleneck_jax.train.train`.

  Args:
    ctx: the run context (configuration: see ``_COMMON`` and the experiments' defaults).
    beta: the IB trade-off.
    name: the checkpoint folder under ``ctx.checkpoint_dir`` (``""``: that folder itself).
    deterministic: train the deterministic baseline instead: the same network decoding the
      encoder mean (no noise, no rate term).
    tags: extra fields of the logged records.

  Returns:
    ``{"test_accuracy", "test_class_loss", "test_bits", "train_accuracy", "train_bits",
    "steps", "resumed_from"}`` (no bits for the deterministic baseline).
  """
  from bottleneck_jax.information import VIBClassifier, vib_loss

  config = ctx.config
  data = _load_data(config)
  seed = ctx.seed
  num_samples = int(config["eval_samples"])

  def model_fn():
    return VIBClassifier(data.num_features, data.num_classes, hidden=tuple(config["hidden"]),
                         latent_dim=int(config["latent_dim"]), beta=float(beta),
                         std_offset=float(config["std_offset"]), rngs=nnx.Rngs(seed))

  def deterministic_metrics(model, x, y):
    mean, _ = model.encoder(x)
    logits = model.decoder(mean)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    acc = jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32))
    return ce, {"accuracy": acc, "class_loss": ce}

  def loss_fn(model, batch, key):
    if deterministic:
      return deterministic_metrics(model, batch["x"], batch["y"])
    logits_s, out = model(batch["x"], key=key, num_samples=1)
    loss, aux = vib_loss(logits_s, batch["y"], out.aux["kl"], beta=float(beta))
    return loss, {"accuracy": aux["accuracy"], "bits": aux["rate_bits"],
                  "class_loss": aux["class_loss"]}

  @nnx.jit
  def evaluate_split(model, x, y, key):
    if deterministic:
      return deterministic_metrics(model, x, y)[1]
    logits_s, out = model(x, key=key, num_samples=num_samples)
    _, aux = vib_loss(logits_s, y, out.aux["kl"], beta=float(beta))
    return {"accuracy": aux["avg_accuracy"], "bits": jnp.mean(out.bits),
            "class_loss": aux["avg_class_loss"]}

  test = {}

  def eval_fn(model, key):  # runs under the training mesh
    if not test:
      test.update(replicated(data.test, jax.sharding.get_mesh()))
    m = evaluate_split(model, test["x"], test["y"], key)
    return {f"test_{k}": v for k, v in m.items()}

  result = fit(ctx, name, model_fn, optax.adam(float(config["lr"])), loss_fn, data.train,
               steps=int(config["steps"]), batch_size=int(config["batch_size"]),
               tags=tags, eval_fn=eval_fn, eval_every=int(config["eval_every"]),
               desc=f"vib beta={beta:g}" + (f" ({name})" if name else ""))
  with jax.set_mesh(result.mesh):
    tr = replicated(data.train, result.mesh)
    train_m = evaluate_split(result.model, tr["x"], tr["y"], jax.random.key(seed + 1))
  out = {k: float(v) for k, v in result.metrics.items()}
  out.update({f"train_{k}": float(v) for k, v in train_m.items() if k != "class_loss"})
  out["steps"] = result.step
  out["resumed_from"] = result.resumed_from
  return out


def _plot_curves(ctx: RunContext, variants: dict[str, dict], name: str = "learning_curves"
                 ) -> None:
  """Test accuracy against steps for each variant (``{label: tags}``), from the log."""
  curves = {}
  for label, tags in variants.items():
    steps, acc = logged_curve(ctx, "test_accuracy", split="eval", **tags)
    curves[label] = (steps.tolist(), acc.tolist())
  if any(len(xs) for xs, _ in curves.values()):
    plot_curves(ctx.plot_path(name), curves, ylabel="test accuracy", title="VIB on digits")


def run_vib_digits(ctx: RunContext) -> dict[str, Any]:
  beta = float(ctx.config["beta"])
  # The VIB model checkpoints into checkpoints/ itself (steps as folders), the baseline into
  # checkpoints/deterministic.
  res = train_vib(ctx, beta=beta, name="", tags={"variant": "vib", "beta": beta})
  base = train_vib(ctx, beta=0.0, name="deterministic", deterministic=True,
                   tags={"variant": "deterministic", "beta": 0.0})
  if ctx.is_main_process:
    _plot_curves(ctx, {f"VIB beta={beta:g}": {"variant": "vib"},
                       "deterministic (beta=0)": {"variant": "deterministic"}})
  res.update(beta=beta, deterministic_test_accuracy=base["test_accuracy"],
             deterministic_train_accuracy=base["train_accuracy"],
             accuracy_gap=base["test_accuracy"] - res["test_accuracy"])
  return res


def run_vib_sweep(ctx: RunContext) -> dict[str, Any]:
  config = ctx.config
  betas = [float(b) for b in config["betas"]]
  if not betas or sorted(betas) != betas:
    raise ValueError(f"vib-digits-sweep: betas must be a non-empty increasing list, got {betas}")
  rows = []
  for beta in betas:
    res = train_vib(ctx, beta=beta, name=f"beta_{beta:g}", tags={"beta": beta})
    rows.append({"beta": beta, "test_accuracy": res["test_accuracy"],
                 "test_bits": res["test_bits"], "train_bits": res["train_bits"],
                 "train_accuracy": res["train_accuracy"]})
  bits = [r["test_bits"] for r in rows]
  top = rows[-1]
  if ctx.is_main_process:
    plot_curves(ctx.plot_path("accuracy_vs_bits"),
                {"VIB": (bits, [r["test_accuracy"] for r in rows])},
                xlabel="rate I(X;Z) upper bound (bits, test)", ylabel="test accuracy",
                logx="symlog", styles={"VIB": {"marker": "o"}},
                title="Deep VIB on digits: accuracy vs bits (beta " +
                      ", ".join(f"{b:g}" for b in betas) + ")")
  return {"bits_at_max_beta": top["test_bits"], "accuracy_at_max_beta": top["test_accuracy"],
          "max_beta": top["beta"],
          "rate_falls_monotonically": all(a > b for a, b in itertools.pairwise(bits)),
          "table": rows}


_DEPARTURES = (
    "scikit-learn digits (8x8, 1347 train / 450 test) instead of MNIST",
    "latent K = 32 instead of 256",
    "a few thousand steps, no learning-rate decay and no Polyak averaging",
)

VIB_DIGITS = register(Experiment(
    name="vib-digits",
    paper_id=PAPER_ID,
    claim=("A Deep VIB classifier (beta = 1e-3) keeps its accuracy while its encoder transmits "
           "few bits: the paper reports 1.13 % MNIST test error at beta = 1e-3 against 1.38 % "
           "for a deterministic network (here: digits)."),
    setting="proxy",
    departures=_DEPARTURES + (
        "the deterministic baseline is the same network decoding the encoder mean (beta = 0)",),
    metric="test_accuracy",
    metrics={
        "test_accuracy": Metric("held-out accuracy, 12-sample predictive, beta = beta",
                                low=0, high=1),
        "deterministic_test_accuracy": Metric("held-out accuracy of the deterministic baseline "
                                              "(encoder mean, no rate term)", low=0, high=1),
        "test_bits": Metric("KL(p(z|x) || N(0, I)) / ln 2 on the test set", low=0),
    },
    expectations=(
        Expectation("test_accuracy", ">=", 0.93, quick_value=0.8, reads=("beta", "steps"),
                    source="the project's test plan: beta = 1e-3 reaches test accuracy >= 0.93"),
        Expectation("test_accuracy", ">=", Ref("deterministic_test_accuracy", offset=-0.01),
                    reads=("beta",),
                    source="paper Sec. 4.1: VIB at beta = 1e-3 keeps the accuracy of a "
                           "deterministic network (1.13 % vs 1.38 % error); within 1 point"),
    ),
    run=run_vib_digits,
    defaults={**_COMMON, "beta": 1e-3, "steps": 2000},
    quick={"steps": 300, "hidden": [64, 64], "eval_every": 100, "checkpoint_every": 100},
    paper_value="1.13 % test error on MNIST (accuracy 0.9887) at beta = 1e-3; deterministic "
                "1.38 %",
))

VIB_DIGITS_SWEEP = register(Experiment(
    name="vib-digits-sweep",
    paper_id=PAPER_ID,
    claim=("Raising beta trades accuracy for rate: the rate I(X;Z) (KL to the prior, in bits) "
           "falls as beta grows, and a large beta collapses the code (Fig. 1 of the paper)."),
    setting="proxy",
    departures=_DEPARTURES,
    metric="bits_at_max_beta",
    metrics={
        "bits_at_max_beta": Metric("test rate in bits at the largest beta", low=0),
        "accuracy_at_max_beta": Metric("held-out accuracy at the largest beta", low=0, high=1),
        "rate_falls_monotonically": "test bits fall strictly as beta grows",
        "max_beta": Metric("the largest beta of the sweep", low=0),
    },
    expectations=(
        Expectation("rate_falls_monotonically", "==", True, reads=("betas",),
                    source="paper Fig. 1: the rate falls as beta grows"),
        Expectation("max_beta", ">=", 1.0, reads=("betas",),
                    source="the project's test plan: the collapse is checked at beta = 1"),
        Expectation("bits_at_max_beta", "<", 0.5, reads=("betas",),
                    source="the project's test plan: beta = 1 collapses the rate below 0.5 bit"),
        Expectation("accuracy_at_max_beta", "<", 0.3, reads=("betas",),
                    source="the project's test plan: beta = 1 collapses the accuracy below 0.3"),
    ),
    run=run_vib_sweep,
    defaults={**_COMMON, "betas": [1e-4, 1e-3, 1e-2, 1e-1, 1.0], "steps": 2000},
    # quick: a larger step size so that beta = 1 collapses within 600 steps
    quick={"steps": 600, "lr": 5e-3, "hidden": [64, 64], "betas": [1e-4, 1e-2, 1.0],
           "eval_every": 600, "checkpoint_every": 600},
    paper_value="rate falls with beta; accuracy flat up to beta ~ 1e-2 on MNIST (Fig. 1)",
))

__all__ = ["VIB_DIGITS", "VIB_DIGITS_SWEEP", "train_vib"]
