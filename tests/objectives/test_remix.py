"""ReMix: the mix-policy loss and the KL-convex constraint against the trl GRPO transcription
(golden fixture of the substrate), the ratio-centering gradient, the schedule, the replay
buffer, and input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax import objectives as O
from tests.objectives.fixtures import policy_gradient_oracle as oracle

FIX = dict(np.load(oracle.FIXTURE))
X = {k[3:]: v for k, v in FIX.items() if k.startswith("in_")}
J = {k: jnp.asarray(v, jnp.int32 if k == "mask" else jnp.float32) for k, v in X.items()}


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo"])
def test_on_policy_lambda_one_is_grpo_with_k3_kl_to_base(loss_type):
  """p = 0, lam = 1: mix-PPG + beta kl_convex == trl's GRPO loss with k3 KL to pi_base."""
  beta = 0.04
  got = (O.mix_policy_ppg_loss(J["logp"], J["old_logp"], J["adv"], J["mask"], epsilon_high=0.28,
                               loss_type=loss_type, max_completion_length=20).loss
         + beta * O.kl_convex(J["logp"], J["ref_logp"], J["old_logp"], J["mask"], lam=1.0,
                              loss_type=loss_type, max_completion_length=20))
  want = oracle.trl_grpo_loss(X["logp"], X["old_logp"], X["ref_logp"], X["adv"],
                              X["mask"].astype(np.float64), beta=beta, epsilon_low=0.2,
                              epsilon_high=0.28, delta=None, loss_type=loss_type,
                              max_completion_length=20)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  # lam = 0: the KL to the precedent policy instead
  want0 = oracle.trl_grpo_loss(X["logp"], X["old_logp"], X["old_logp"], X["adv"],
                               X["mask"].astype(np.float64), beta=beta, epsilon_low=0.2,
                               epsilon_high=0.28, delta=None, loss_type=loss_type,
                               max_completion_length=20)
  got0 = (O.mix_policy_ppg_loss(J["logp"], J["old_logp"], J["adv"], J["mask"], epsilon_high=0.28,
                                loss_type=loss_type, max_completion_length=20).loss
          + beta * O.kl_convex(J["logp"], J["ref_logp"], J["old_logp"], J["mask"], lam=0.0,
                               loss_type=loss_type, max_completion_length=20))
  np.testing.assert_allclose(got0, want0, rtol=1e-6, atol=1e-6)


def test_kl_estimators_and_convexity():
  lp, base, prev, m = J["logp"], J["ref_logp"], J["old_logp"], J["mask"]
  valid = X["mask"] > 0
  for est, f in (("k1", lambda d: -d), ("k2", lambda d: 0.5 * d * d),
                 ("k3", lambda d: np.exp(d) - d - 1)):
    kb = f(X["ref_logp"] - X["logp"])[valid].mean()
    kp = f(X["old_logp"] - X["logp"])[valid].mean()
    got = O.kl_convex(lp, base, prev, m, lam=0.3, estimator=est, loss_type="bnpo")
    np.testing.assert_allclose(got, 0.3 * kb + 0.7 * kp, rtol=1e-5, atol=1e-6)


def test_replayed_sample_at_its_behaviour_policy_has_an_unclipped_gradient():
  """logp == behavior_logp: ratio 1, gradient -A grad logp (here / (len * B))."""
  lp = jnp.log(jnp.array([[0.3, 0.6, 0.2]]))
  adv = jnp.array([2.0])
  g = jax.jit(jax.grad(lambda x: O.mix_policy_ppg_loss(x, lp, adv, jnp.ones((1, 3))).loss))(lp)
  np.testing.assert_allclose(g, np.full((1, 3), -2.0 / 3), rtol=1e-6)
  # far outside the clip range with a positive advantage: no gradient
  g2 = jax.jit(jax.grad(lambda x: O.mix_policy_ppg_loss(x, lp - 1.0, adv,
                                                         jnp.ones((1, 3))).loss))(lp)
  np.testing.assert_array_equal(g2, np.zeros((1, 3)))


def test_schedule_and_jit():
  f = jax.jit(lambda s: O.remix_schedule(s, reincarnate_at=5, p_off=0.5, utd=4))
  phases = [tuple(np.asarray(x).item() for x in f(jnp.int32(s))) for s in (0, 4, 5, 6)]
  assert phases == [(0.5, 4, False), (0.5, 4, False), (0.0, 1, True), (0.0, 1, False)]


def test_replay_buffer_keeps_the_last_policies():
  buf = O.ReplayBuffer(capacity=2)
  for k in range(4):
    buf.add({"a": np.full(3, k), "behavior_logp": np.full(3, -float(k))})
  s = buf.sample(np.random.default_rng(0), 200)
  assert set(s["a"].tolist()) == {2, 3}
  np.testing.assert_array_equal(s["behavior_logp"], -s["a"])
  with pytest.raises(ValueError, match="ReplayBuffer.add: batch must have the keys"):
    buf.add({"a": np.zeros(3)})
  with pytest.raises(ValueError, match="ReplayBuffer.sample: the buffer is empty"):
    O.ReplayBuffer(1).sample(np.random.default_rng(0), 1)


def test_bad_inputs_are_named_errors():
  lp, m = J["logp"], J["mask"]
  with pytest.raises(ValueError, match="kl_convex: lam must be <= 1"):
    O.kl_convex(lp, lp, lp, m, lam=1.5)
  with pytest.raises(ValueError, match="kl_convex: estimator must be one of"):
    O.kl_convex(lp, lp, lp, m, estimator="k4")
  with pytest.raises(ValueError, match="mix_policy_ppg_loss: behavior_logp and logp"):
    O.mix_policy_ppg_loss(lp, lp[:, :3], J["adv"], m)
  with pytest.raises(ValueError, match="remix_schedule: utd must be >= 1"):
    O.remix_schedule(0, reincarnate_at=3, p_off=0.5, utd=0)
