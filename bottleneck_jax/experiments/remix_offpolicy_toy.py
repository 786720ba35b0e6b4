"""``remix-offpolicy-toy``: reusing rollouts (Mix-PPG) learns with fewer fresh rollouts, and
policy reincarnation keeps the final reward.

Paper: Liang et al., *Squeeze the Soaked Sponge: Efficient Off-policy Reinforcement Finetuning
for Large Language Model*, 2025, https://arxiv.org/abs/2507.06892
(:func:`~bottleneck_jax.objectives.mix_policy_ppg_loss`,
:func:`~bottleneck_jax.objectives.kl_convex`, :func:`~bottleneck_jax.objectives.remix_schedule`).

Setting (the test plan's toy): a 10-armed bandit with Bernoulli rewards of means ``0.1, ..., 1.0``
and a softmax policy over learnable logits. A fresh batch is ``group`` rollouts from the current
policy with GRPO group advantages. Three variants, ``seeds`` seeds each, all stacked in one
logits table and trained by one :func:`bottleneck_jax.train.train` call (Adam; summed losses):

- ``grpo``: on-policy, a fresh batch every update (``p = 0``, UTD ``m = 1``);
- ``mix``: Mix-PPG, a fresh batch every ``utd`` updates, each update on the current fresh
  batch plus as many rows replayed from the batches of the last ``n_off`` sampling policies
  (``p = 0.5``), each row clipped against its behaviour policy with its stored advantage;
- ``remix``: ``mix`` until step ``reincarnate_at``, where the base policy of the KL anchor is
  replaced by the current one and training continues on-policy (``remix_schedule``).

Every variant adds ``beta * kl_convex`` (``lam`` to the base, ``1 - lam`` to the policy of the
previous update, k3 on the update batch). The replay ring, the base and previous policies and
the fresh-rollout counter live in the model as non-trained ``nnx.Variable`` state, so they are
checkpointed with it and a resumed run continues exactly. Measured: the expected reward
``sum_k pi_k mu_k`` before every update, the number of fresh rollouts consumed until it first
reaches ``0.9 max mu``, and the final expected reward, averaged over seeds.

Measured (seed 0, defaults, this machine): fresh rollouts to 0.9 -- GRPO 553.6, Mix-PPG 272,
ReMix 276 (all seeds reach it); final expected reward GRPO 0.992, Mix-PPG 0.992, ReMix 0.994.

Departures: a bandit instead of LLM math reasoning; ``p``, ``n_off``, ``utd``, ``lam``,
``beta`` and ``reincarnate_at`` are the test plan's toy values or our choices (the paper's were not
available), fixed before measuring.
"""

from __future__ import annotations

from typing import Any

import jax
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
from bottleneck_jax.objectives import (
    group_advantages,
    kl_convex,
    mix_policy_ppg_loss,
    remix_schedule,
)

PAPER_ID = "remix"
VARIANTS = ("grpo", "mix", "remix")
MU = np.arange(1, 11, dtype=np.float32) / 10


class ReplayState(nnx.Variable):
  """Non-trained state of the bandit learners (replay ring, anchors, counters)."""


class BanditLearners(nnx.Module):
  """Logits ``[V, S, K]`` and, per variant and seed, the rollout state."""

  def __init__(self, v: int, s: int, k: int, group: int, n_off: int, *, rngs: nnx.Rngs):
    del rngs
    z = jnp.zeros((v, s, k), jnp.float32)
    self.logits = nnx.Param(z)
    self.base = ReplayState(z)
    self.prev = ReplayState(z)
    self.fresh_a = ReplayState(jnp.zeros((v, s, group), jnp.int32))
    self.fresh_lp = ReplayState(jnp.zeros((v, s, group), jnp.float32))
    self.fresh_adv = ReplayState(jnp.zeros((v, s, group), jnp.float32))
    self.buf_a = ReplayState(jnp.zeros((v, s, n_off, group), jnp.int32))
    self.buf_lp = ReplayState(jnp.zeros((v, s, n_off, group), jnp.float32))
    self.buf_adv = ReplayState(jnp.zeros((v, s, n_off, group), jnp.float32))
    self.buf_valid = ReplayState(jnp.zeros((v, s, n_off), bool))
    self.n_fresh = ReplayState(jnp.zeros((v,), jnp.int32))
    self.step = ReplayState(jnp.zeros((), jnp.int32))


def first_reach(curve: np.ndarray, counts: np.ndarray, threshold: float, censored: float) -> float:
  hit = np.nonzero(np.asarray(curve) >= threshold)[0]
  return float(counts[hit[0]]) if hit.size else float(censored)


def run(ctx: RunContext) -> dict[str, Any]:
  cfg = ctx.config
  k, g, s_n, n_off = len(MU), int(cfg["group"]), int(cfg["seeds"]), int(cfg["n_off"])
  steps, utd, t_r = int(cfg["steps"]), int(cfg["utd"]), int(cfg["reincarnate_at"])
  beta, lam = float(cfg["beta"]), float(cfg["lam"])
  mu = jnp.asarray(MU)
  configs = {"grpo": (0.0, 1, steps + 1), "mix": (0.5, utd, steps + 1),
             "remix": (0.5, utd, t_r)}  # (p_off, utd, reincarnate_at)

  def variant_loss(v, name, model, key):
    p_off, m, tr = configs[name]
    step = model.step[...]
    phase = remix_schedule(step, reincarnate_at=tr, p_off=p_off, utd=m)
    z = model.logits[v]                                            # [S, K]
    zs = jax.lax.stop_gradient(z)
    base = jnp.where(phase.reincarnate, zs, model.base[v])
    # a fresh batch when the (phase's) UTD says so: step counted from the last phase change
    since = jnp.where(step >= tr, step - tr, step)
    sample = (since % phase.utd) == 0
    k1, k2, k3 = jax.random.split(key, 3)
    a_new = jax.random.categorical(k1, zs, shape=(g, s_n)).T       # [S, G]
    r_new = (jax.random.uniform(k2, a_new.shape) < mu[a_new]).astype(jnp.float32)
    adv_new = group_advantages(r_new)
    lp_new = jnp.take_along_axis(jax.nn.log_softmax(zs, -1), a_new, -1)
    fa = jnp.where(sample, a_new, model.fresh_a[v])
    flp = jnp.where(sample, lp_new, model.fresh_lp[v])
    fadv = jnp.where(sample, adv_new, model.fresh_adv[v])
    # on sampling, the previous fresh batch enters the replay ring (oldest dropped)
    shift = lambda buf, new: jnp.concatenate([new[:, None], buf[:, :-1]], axis=1)  # noqa: E731
    had = model.n_fresh[v] > 0
    ba = jnp.where(sample, shift(model.buf_a[v], model.fresh_a[v]), model.buf_a[v])
    blp = jnp.where(sample, shift(model.buf_lp[v], model.fresh_lp[v]), model.buf_lp[v])
    badv = jnp.where(sample, shift(model.buf_adv[v], model.fresh_adv[v]), model.buf_adv[v])
    bval = jnp.where(sample, jnp.concatenate(
        [jnp.broadcast_to(had, (s_n, 1)), model.buf_valid[v][:, :-1]], 1), model.buf_valid[v])
    # replayed rows: G drawn uniformly from the valid stored rows (masked out when p = 0)
    pick = jax.random.randint(k3, (s_n, g), 0, n_off * g)
    ra = jnp.take_along_axis(ba.reshape(s_n, -1), pick, -1)
    rlp = jnp.take_along_axis(blp.reshape(s_n, -1), pick, -1)
    radv = jnp.take_along_axis(badv.reshape(s_n, -1), pick, -1)
    rval = jnp.take_along_axis(jnp.repeat(bval, g, axis=1), pick, -1) & (phase.p_off > 0)
    acts = jnp.concatenate([fa, ra], -1)                           # [S, 2G]
    logp_all = jax.nn.log_softmax(z, -1)
    lp = jnp.take_along_axis(logp_all, acts, -1)[..., None]        # [S, 2G, 1]
    behav = jnp.concatenate([flp, rlp], -1)[..., None]
    adv = jnp.concatenate([fadv, radv], -1)
    mask = jnp.concatenate([jnp.ones((s_n, g), bool), rval], -1)[..., None]
    base_lp = jnp.take_along_axis(jax.nn.log_softmax(base, -1), acts, -1)[..., None]
    prev_lp = jnp.take_along_axis(jax.nn.log_softmax(model.prev[v], -1), acts, -1)[..., None]
    loss = jax.vmap(lambda *a: mix_policy_ppg_loss(*a, loss_type="bnpo").loss)(
        lp, behav, adv, mask)
    kl = jax.vmap(lambda *a: kl_convex(*a, lam=lam, loss_type="bnpo"))(lp, base_lp, prev_lp,
                                                                        mask)
    reward = jnp.sum(jnp.exp(jax.lax.stop_gradient(logp_all)) * mu, -1)  # [S]
    new_state = dict(base=base, prev=zs, fresh_a=fa, fresh_lp=flp, fresh_adv=fadv, buf_a=ba,
                     buf_lp=blp, buf_adv=badv, buf_valid=bval,
                     n_fresh=model.n_fresh[v] + jnp.where(sample, g, 0))
    return jnp.sum(loss + beta * kl), reward, model.n_fresh[v], new_state

  def loss_fn(model, batch, key):
    del batch
    keys = jax.random.split(key, len(VARIANTS))
    total, metrics, states = 0.0, {}, []
    for v, name in enumerate(VARIANTS):
      loss, reward, fresh, st = variant_loss(v, name, model, keys[v])
      total = total + loss
      metrics.update({f"reward_{name}_{s}": reward[s] for s in range(s_n)})
      metrics[f"fresh_{name}"] = fresh.astype(jnp.float32)
      states.append(st)
    for field in states[0]:
      var = getattr(model, field)
      var[...] = jax.lax.stop_gradient(jnp.stack([st[field] for st in states]))
    model.step[...] = model.step[...] + 1
    return total, metrics

  fit(ctx, "", lambda: BanditLearners(len(VARIANTS), s_n, k, g, n_off, rngs=nnx.Rngs(0)),
      optax.adam(float(cfg["lr"])), loss_fn, {"i": np.zeros((8,), np.int32)}, steps=steps,
      batch_size=8, log_every=1, desc="remix-offpolicy-toy")
  target = float(cfg["target_fraction"]) * float(MU.max())
  out: dict[str, Any] = {}
  for name in VARIANTS:
    _, fresh = logged_curve(ctx, f"fresh_{name}")
    censored = float(fresh[-1] + g) if fresh.size else float("nan")
    reach, final = [], []
    for s in range(s_n):
      _, curve = logged_curve(ctx, f"reward_{name}_{s}")
      reach.append(first_reach(curve, fresh, target, censored))
      final.append(float(curve[-1]) if curve.size else float("nan"))
    out[f"{name}_rollouts_to_target"] = float(np.mean(reach))
    out[f"{name}_reached_fraction"] = float(np.mean(np.asarray(reach) < censored))
    out[f"{name}_final_reward"] = float(np.mean(final))
    out[f"{name}_fresh_rollouts"] = float(fresh[-1]) if fresh.size else float("nan")
  return out


REMIX_OFFPOLICY_TOY = register(Experiment(
    name="remix-offpolicy-toy",
    paper_id=PAPER_ID,
    claim=("Mix-policy PPG (off-policy share 0.5, 2 past policies, UTD 2) reaches 0.9 of the "
           "best reward with fewer fresh rollouts than on-policy GRPO, and policy reincarnation "
           "does not lower the final reward of Mix-PPG."),
    setting="proxy",
    departures=("a 10-armed Bernoulli bandit instead of LLM math reasoning",
                "p = 0.5, N_off = 2, UTD = 2 (test-plan toy values); beta = 0.01, lam = 0.5, "
                "reincarnation at step 100 of 200 (our choices, fixed before measuring)",
                "Adam, learning rate 0.05, 8 rollouts per fresh batch"),
    metric="mix_rollouts_to_target",
    metrics={
        **{f"{n}_rollouts_to_target": Metric(
            f"{n}: mean over seeds of fresh rollouts until E_pi[r] >= 0.9 max mu (censored at "
            "the total + 8)", low=0) for n in VARIANTS},
        **{f"{n}_reached_fraction": Metric(f"{n}: fraction of seeds reaching the target",
                                           low=0, high=1) for n in VARIANTS},
        **{f"{n}_final_reward": Metric(f"{n}: mean final expected reward", low=0, high=1)
           for n in VARIANTS},
        **{f"{n}_fresh_rollouts": Metric(f"{n}: fresh rollouts of the whole run", low=0)
           for n in VARIANTS},
    },
    expectations=(
        Expectation("mix_rollouts_to_target", "<", Ref("grpo_rollouts_to_target"),
                    source="the project's test plan"),
        Expectation("remix_final_reward", ">=", Ref("mix_final_reward", offset=-0.02),
                    source="the project's test plan"),
    ),
    run=run,
    defaults={"group": 8, "seeds": 10, "n_off": 2, "utd": 2, "beta": 0.01, "lam": 0.5,
              "lr": 0.05, "steps": 200, "reincarnate_at": 100, "target_fraction": 0.9,
              "checkpoint_every": 0},
    quick={"steps": 80, "reincarnate_at": 40},
    paper_value=("ReMix-PPO 1.5B: 52.10 % avg Pass@1 with 0.079M rollouts; 7B: 63.27 % with "
                 "0.007M rollouts; 30x-450x less rollout data than recent models"),
))
