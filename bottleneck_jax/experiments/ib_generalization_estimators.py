"""``ib-mi-estimators``: the Monte-Carlo I(X;Z) estimators of Kawaguchi et al. against the truth.

Paper: Kawaguchi, Deng, Ji & Huang, "How Does Information Bottleneck Help Deep Learning?",
ICML 2023, https://arxiv.org/abs/2305.18887 (code xu-ji/information-bottleneck). Its
experiments relate the generalisation gap to ``I(X;Z|Y)`` measured with a mixture estimator on a
stochastic encoder; the claim that the measurement is meaningful rests on that estimator. The
code also has a "Jensen" variant (``log_marg_prob(jensen=True)``), an upper bound.

Measurement only (no training): a linear-Gaussian encoder ``x ~ N(0, I_2)``, ``z = W x + 0.5 eps``
with ``W = [[1, .3], [0, .7]]`` has ``I(X;Z) = 1/2 log det(I + W W^T / 0.25) = 1.3593`` nats.
For ``M`` in {100, 1000, 4000} samples and several seeds, the mixture and Jensen estimates of
:func:`~bottleneck_jax.information.gaussian_encoder_mi` are compared with it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bottleneck_jax.experiments.registry import (
    Expectation,
    Experiment,
    Metric,
    RunContext,
    register,
)

W = np.array([[1.0, 0.3], [0.0, 0.7]])
SIGMA = 0.5


def run_estimators(ctx: RunContext) -> dict[str, Any]:
  import jax
  import jax.numpy as jnp

  from bottleneck_jax.information import gaussian_encoder_mi
  truth = 0.5 * math.log(np.linalg.det(np.eye(2) + W @ W.T / SIGMA ** 2))
  rows = []
  est = jax.jit(gaussian_encoder_mi, static_argnames="bound")
  for m in [int(v) for v in ctx.config["sample_sizes"]]:
    mix, jen = [], []
    for s in range(int(ctx.config["seeds"])):
      kx, ke = jax.random.split(jax.random.key(1000 * ctx.seed + s))
      x = jax.random.normal(kx, (m, 2))
      mu = x @ jnp.asarray(W.T, jnp.float32)
      std = jnp.full_like(mu, SIGMA)
      z = mu + std * jax.random.normal(ke, mu.shape)
      mix.append(float(est(z, mu, std)))
      jen.append(float(est(z, mu, std, bound="jensen")))
    rows.append({"m": m, "mixture_mean": float(np.mean(mix)), "mixture_sd": float(np.std(mix)),
                 "jensen_mean": float(np.mean(jen)), "log_m": math.log(m)})
    ctx.log(m, split="eval", mixture=float(np.mean(mix)), jensen=float(np.mean(jen)))
  big = [r for r in rows if r["m"] >= 1000]
  return {"truth": truth,
          "max_abs_error_m_ge_1000": max(abs(r["mixture_mean"] - truth) for r in big),
          "mixture_below_log_m": all(r["mixture_mean"] <= r["log_m"] for r in rows),
          "jensen_over_truth": min(r["jensen_mean"] for r in rows) / truth,
          "table": rows}


register(Experiment(
    name="ib-mi-estimators",
    paper_id="ib-generalization",
    claim=("The mixture Monte-Carlo estimator of I(X;Z) for a Gaussian encoder (the paper's "
           "measurement of the degree of IB) is accurate, while the Jensen variant is a very "
           "loose upper bound."),
    setting="proxy",
    departures=("a linear-Gaussian encoder with closed-form I(X;Z) instead of trained MLP/CNN "
                "encoders on blobs, MNIST and CIFAR-10",),
    metric="max_abs_error_m_ge_1000",
    metrics={
        "max_abs_error_m_ge_1000": Metric("largest |mean mixture estimate - truth| over "
                                          "M >= 1000 (nats)", low=0),
        "mixture_below_log_m": "every mean mixture estimate is <= log M",
        "jensen_over_truth": Metric("smallest mean Jensen estimate divided by the truth",
                                    low=0),
    },
    expectations=(
        Expectation("max_abs_error_m_ge_1000", "<", 0.1, reads=("sample_sizes", "seeds"),
                    source="the test plan: |mixture - truth| < 0.1 nats for M >= 1000"),
        Expectation("mixture_below_log_m", "==", True,
                    source="the test plan: mixture <= log M"),
        Expectation("jensen_over_truth", ">=", 2.0, reads=("sample_sizes",),
                    source="the test plan: the Jensen variant gives 6.05-6.39 nats against a true "
                           "1.36 (over 4x); asserted here: at least 2x"),
    ),
    run=run_estimators,
    defaults={"sample_sizes": [100, 1000, 4000], "seeds": 4},
    quick={"sample_sizes": [100, 1000], "seeds": 2},
    paper_value="no number in the paper; the test plan's re-implementation: mixture 1.377 (M=1000), "
                "1.337 (M=4000); Jensen 6.39 / 6.25; truth 1.3593",
))
