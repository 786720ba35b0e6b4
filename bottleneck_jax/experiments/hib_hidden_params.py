"""``hib-hidden-params``: a history encoder trained with HIB recovers hidden dynamics parameters.

Paper: He et al., "Bridging the Sim-to-Real Gap from the Information Bottleneck Perspective",
CoRL 2024, https://arxiv.org/abs/2305.18464. Claim: maximising ``I(Z;E) - beta I(Z;H)`` makes
the history representation keep the privileged (changeable-dynamics) information and discard
the rest; ``beta`` trades the two.

Hidden-parameter toy (the project's test plan, no RL): each episode draws
``e ~ U[0.5, 2]^2``; the 4-D state follows ``s_{t+1} = A(e) s_t + B a_t + 0.01 eps`` with random
actions, where ``A(e)`` is block-diagonal with two damped rotations of angular speeds
``e_1 * 0.3`` and ``e_2 * 0.3`` (damping 0.98) and ``B`` a fixed random ``4 x 2`` matrix; the
history is ``H = 10`` steps of ``(s_t, a_t)``. A :class:`~bottleneck_jax.information.HistoryEncoder`
and a :class:`~bottleneck_jax.information.PrivilegedEncoder` with a bilinear critic are trained
with :func:`~bottleneck_jax.information.hib_loss` on 20k histories by
:func:`bottleneck_jax.train.train` for a small and a large ``beta``. Measured on 4000 held-out
histories: the R^2 of a least-squares linear probe from ``mu(h)`` to ``e`` (fitted on the
training histories), and the mean KL.
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

OBS, ACT = 4, 2


def _histories(n, h, seed):
  r = np.random.default_rng(seed)
  e = r.uniform(0.5, 2.0, (n, 2))
  b = np.random.default_rng(12345).normal(size=(OBS, ACT)) * 0.3
  s = r.normal(size=(n, OBS))
  out = np.zeros((n, h, OBS + ACT), np.float32)
  for t in range(h):
    a = r.normal(size=(n, ACT))
    out[:, t, :OBS], out[:, t, OBS:] = s, a
    nxt = np.empty_like(s)
    for blk in range(2):
      w = 0.3 * e[:, blk]
      c, sn = 0.98 * np.cos(w), 0.98 * np.sin(w)
      x0, x1 = s[:, 2 * blk], s[:, 2 * blk + 1]
      nxt[:, 2 * blk] = c * x0 + sn * x1
      nxt[:, 2 * blk + 1] = -sn * x0 + c * x1
    s = nxt + a @ b.T + 0.01 * r.normal(size=s.shape)
  return out, e.astype(np.float32)


class _HIB(nnx.Module):
  def __init__(self, history_len, z_dim, emb_dim, hidden, rngs):
    from bottleneck_jax.information import HistoryEncoder, PrivilegedEncoder
    self.history = HistoryEncoder(OBS, ACT, history_len, hidden=tuple(hidden), z_dim=z_dim,
                                  rngs=rngs)
    self.privileged = PrivilegedEncoder(2, emb_dim, rngs=rngs)
    self.w = nnx.Param(0.1 * jax.random.normal(rngs.params(), (z_dim, emb_dim)))


def _r2(feat_tr, e_tr, feat_te, e_te):
  a = np.hstack([feat_tr, np.ones((len(feat_tr), 1))])
  coef = np.linalg.lstsq(a, e_tr, rcond=None)[0]
  pred = np.hstack([feat_te, np.ones((len(feat_te), 1))]) @ coef
  return float(1 - ((pred - e_te) ** 2).sum() / ((e_te - e_te.mean(0)) ** 2).sum())


def run_hib(ctx: RunContext) -> dict[str, Any]:
  from bottleneck_jax.information import hib_loss
  config = ctx.config
  h = int(config["history_len"])
  x_tr, e_tr = _histories(int(config["n_train"]), h, int(config["data_seed"]))
  x_te, e_te = _histories(int(config["n_test"]), h, int(config["data_seed"]) + 1)
  train = {"h": x_tr, "e": e_tr}
  seed = ctx.seed
  out: dict[str, Any] = {}
  for beta in [float(b) for b in config["betas"]]:
    def model_fn():
      return _HIB(h, int(config["z_dim"]), int(config["emb_dim"]), config["hidden"],
                  nnx.Rngs(seed))

    def loss_fn(model, batch, key, beta=beta):
      enc = model.history(batch["h"])
      mu, std = enc.aux["mu"], enc.aux["std"]
      res = hib_loss(mu, std, model.privileged(batch["e"]), model.w[...], key=key, beta=beta)
      return res.loss, {"nce": res.nce, "kl": res.kl, "mi_lower_bound": res.mi_lower_bound}

    name = f"beta_{beta:g}"
    res = fit(ctx, name, model_fn, optax.adam(float(config["lr"])), loss_fn, train,
              steps=int(config["steps"]), batch_size=int(config["batch_size"]),
              tags={"beta": beta}, desc=f"hib beta={beta:g}")
    enc_fn = nnx.jit(lambda m, x: m.history(x))
    with jax.set_mesh(res.mesh):
      xs = replicated({"tr": x_tr, "te": x_te}, res.mesh)
      tr, te = enc_fn(res.model, xs["tr"]), enc_fn(res.model, xs["te"])
    out[f"probe_r2_{name}"] = _r2(np.asarray(tr.aux["mu"]), e_tr, np.asarray(te.aux["mu"]),
                                  e_te)
    out[f"kl_{name}"] = float(jnp.mean(te.loss))
  return out


register(Experiment(
    name="hib-hidden-params",
    paper_id="hib",
    claim=("A history encoder trained with InfoNCE to the privileged state plus a KL "
           "compression term keeps the hidden dynamics parameters (linearly decodable from "
           "its mean), and a larger beta compresses more (lower KL) at the cost of that "
           "information."),
    setting="proxy",
    departures=("a linear hidden-parameter system instead of simulated legged robots, no RL "
                "(the representation loss alone)",
                "two values of beta (1e-3 and 1) instead of the test plan's four",
                "the privileged encoder trained jointly (no momentum target)"),
    metric="probe_r2_beta_0.001",
    metrics={
        "probe_r2_beta_0.001": Metric("held-out linear-probe R^2 of e from mu(h), beta = 1e-3",
                                      high=1),
        "probe_r2_beta_1": Metric("held-out linear-probe R^2 of e from mu(h), beta = 1",
                                  high=1),
        "kl_beta_0.001": Metric("mean KL(q(z|h) || N(0, I)) on held-out histories, "
                                "beta = 1e-3 (nats)", low=0),
        "kl_beta_1": Metric("mean KL on held-out histories, beta = 1 (nats)", low=0),
    },
    expectations=(
        Expectation("probe_r2_beta_0.001", ">=", 0.9, quick_value=0.3,
                    reads=("betas", "steps"),
                    source="the test plan: linear-probe R^2 >= 0.9 at beta = 1e-3"),
        Expectation("kl_beta_1", "<", Ref("kl_beta_0.001"), reads=("betas",),
                    source="the test plan: raising beta lowers the KL"),
        Expectation("probe_r2_beta_1", "<", Ref("probe_r2_beta_0.001"), reads=("betas",),
                    source="the test plan: raising beta lowers the probe R^2"),
    ),
    run=run_hib,
    defaults={"betas": [1e-3, 1.0], "history_len": 10, "n_train": 20000, "n_test": 4000,
              "z_dim": 16, "emb_dim": 16, "hidden": [128, 64], "lr": 1e-3, "batch_size": 256,
              "steps": 1500, "data_seed": 0, "checkpoint_every": 0, "keep": 2},
    quick={"steps": 60, "n_train": 2000, "n_test": 500},
    paper_value="better sim-to-real generalisation than two-stage distillation (no number)",
))
