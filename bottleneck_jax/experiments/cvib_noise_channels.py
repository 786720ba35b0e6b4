"""``cvib-noise-channels``: VIB channel masks prune the channels that carry no label information.

Paper: Chang, Yang, Jiang & Xu, "Reducing Spurious Correlations for Aspect-Based Sentiment
Analysis with Variational Information Bottleneck and Contrastive Learning", KBS 2024,
https://arxiv.org/abs/2303.02846 (code shesshan/CVIB). The self-pruned network's VIB masks
(Dai et al. 2018) are meant to discard features that are irrelevant to the label (the source of
spurious correlations) while keeping the accuracy.

Mechanism toy (the project's test plan): 32 input channels, 4 informative
(``y = 1[x_0 + x_1 - x_2 - x_3 > 0]``) and 28 pure noise, all standard normal; a
:class:`~bottleneck_jax.information.VIBMask` over the 32 channels followed by a 2-layer MLP
(32-64-2), trained with cross-entropy plus ``lambda_kl * KL`` (``lambda_kl = 1e-2``), and the
same MLP without the mask as the baseline; both by :func:`bottleneck_jax.train.train`
(Adam, batches of 128). Measured: the fraction of noise channels with ``log alpha > 0``
(pruned), whether every informative channel is kept, and the held-out accuracies (the masked
model with the reference's test-time ``weighted`` mask).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bottleneck_jax.experiments._training import fit, replicated
from bottleneck_jax.experiments.registry import (
    Expectation,
    Experiment,
    Metric,
    Ref,
    RunContext,
    register,
)

NUM_INFORMATIVE = 4


def _data(n, channels, seed):
  r = np.random.default_rng(seed)
  x = r.normal(size=(n, channels)).astype(np.float32)
  y = (x[:, 0] + x[:, 1] - x[:, 2] - x[:, 3] > 0).astype(np.int32)
  return x, y


class _Net(nnx.Module):
  def __init__(self, channels, hidden, masked, rngs):
    from bottleneck_jax.information import VIBMask
    self.mask = VIBMask(channels, rngs=rngs) if masked else None
    self.l1 = nnx.Linear(channels, hidden, rngs=rngs)
    self.l2 = nnx.Linear(hidden, 2, rngs=rngs)

  def __call__(self, x, *, key=None, mode="sample"):
    kl = jnp.zeros((), x.dtype)
    if self.mask is not None:
      out = self.mask(x, key=key, mode=mode)
      x, kl = out.z, out.loss
    return self.l2(jax.nn.relu(self.l1(x))), kl


def run_cvib_noise(ctx: RunContext) -> dict[str, Any]:
  config = ctx.config
  channels = int(config["channels"])
  x, y = _data(int(config["n_train"]) + int(config["n_test"]), channels, int(config["data_seed"]))
  n_tr = int(config["n_train"])
  train = {"x": x[:n_tr], "y": y[:n_tr]}
  test = {"x": x[n_tr:], "y": y[n_tr:]}
  kl_weight = float(config["kl_weight"])
  seed = ctx.seed
  out: dict[str, Any] = {}
  for name, masked in (("masked", True), ("unmasked", False)):
    def model_fn(masked=masked):
      return _Net(channels, int(config["hidden"]), masked, nnx.Rngs(seed))

    def loss_fn(model, batch, key):
      logits, kl = model(batch["x"], key=key)
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
      acc = jnp.mean((jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32))
      return ce + kl_weight * kl, {"ce": ce, "kl": kl, "accuracy": acc}

    res = fit(ctx, name, model_fn, optax.adam(float(config["lr"])), loss_fn, train,
              steps=int(config["steps"]), batch_size=int(config["batch_size"]),
              tags={"variant": name}, desc=f"cvib {name}")
    with jax.set_mesh(res.mesh):
      t = replicated(test, res.mesh)
      logits, _ = res.model(t["x"], mode="weighted")
      out[f"test_accuracy_{name}"] = float(jnp.mean(
          (jnp.argmax(logits, -1) == t["y"]).astype(jnp.float32)))
    if masked:
      from bottleneck_jax.information import vib_mask_log_alpha
      la = np.asarray(vib_mask_log_alpha(res.model.mask.mu[...], res.model.mask.logvar[...]))
      out["noise_pruned_fraction"] = float(np.mean(la[NUM_INFORMATIVE:] > 0))
      out["informative_kept"] = bool(np.all(la[:NUM_INFORMATIVE] < 0))
      out["log_alpha"] = [round(float(v), 3) for v in la]
  return out


register(Experiment(
    name="cvib-noise-channels",
    paper_id="cvib",
    claim=("VIB channel masks learn to prune the input channels that carry no information "
           "about the label and keep the informative ones, at no cost in accuracy."),
    setting="proxy",
    departures=("a synthetic 32-channel task with 4 informative channels instead of BERT-based "
                "ABSA models on REST14/LAP14/...",
                "the masks alone (no second, original network and no contrastive term)"),
    metric="noise_pruned_fraction",
    metrics={
        "noise_pruned_fraction": Metric("fraction of the 28 noise channels with log alpha > 0",
                                        low=0, high=1),
        "informative_kept": "every informative channel has log alpha < 0",
        "test_accuracy_masked": Metric("held-out accuracy, weighted test-time mask",
                                       low=0, high=1),
        "test_accuracy_unmasked": Metric("held-out accuracy of the same MLP without a mask",
                                         low=0, high=1),
    },
    expectations=(
        Expectation("noise_pruned_fraction", ">=", 0.9, quick_value=0.1, reads=("steps",
                                                                                "kl_weight"),
                    source="the test plan: >= 90 % of the noise channels pruned after 2k "
                           "steps at lambda_kl = 1e-2"),
        Expectation("informative_kept", "==", True, reads=("kl_weight",),
                    source="the test plan: all informative channels kept"),
        Expectation("test_accuracy_masked", ">=", Ref("test_accuracy_unmasked", offset=-0.02),
                    reads=("steps",),
                    source="the test plan: accuracy within 2 % of the unmasked model"),
    ),
    run=run_cvib_noise,
    defaults={"channels": 32, "hidden": 64, "n_train": 4000, "n_test": 1000, "lr": 3e-3,
              "batch_size": 128, "steps": 2000, "kl_weight": 1e-2, "data_seed": 0,
              "checkpoint_every": 0, "keep": 2},
    quick={"steps": 100},
    paper_value="better accuracy/F1 and robustness on five ABSA benchmarks (table only)",
))
