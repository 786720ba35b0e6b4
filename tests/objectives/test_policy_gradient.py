"""The policy-gradient substrate against NumPy transcriptions of trl and rlax (committed golden
fixture ``fixtures/policy_gradient.npz``), closed-form gradients, vmap/jit, and input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax import objectives as O
from tests.objectives.fixtures import policy_gradient_oracle as oracle

FIX = dict(np.load(oracle.FIXTURE))
X = {k[3:]: v for k, v in FIX.items() if k.startswith("in_")}
OUT = {k[4:]: v for k, v in FIX.items() if k.startswith("out_")}
J = {k: jnp.asarray(v, jnp.int32 if k == "mask" else jnp.float32) for k, v in X.items()}
TOL = dict(rtol=1e-6, atol=1e-6)


def test_fixture_matches_the_oracles():
  """The committed numbers are what the transcriptions give (guards against a stale file)."""
  exp = oracle.expected(X)
  assert set(exp) == set(OUT)
  for k, v in exp.items():
    np.testing.assert_allclose(OUT[k], v, rtol=1e-12, err_msg=k)


@pytest.mark.parametrize("ci", range(len(oracle.GRPO_CONFIGS)))
def test_grpo_loss_equals_trl_compute_loss(ci):
  beta, el, eh, delta = oracle.GRPO_CONFIGS[ci]
  for lt in oracle.LOSS_TYPES:
    for an in ("adv", "adv_tok"):
      out = O.grpo_loss(J["logp"], J["old_logp"], J[an], J["mask"], ref_logp=J["ref_logp"],
                        beta=beta, epsilon_low=el, epsilon_high=eh, delta=delta, loss_type=lt,
                        max_completion_length=oracle.MAX_LEN, num_tokens=oracle.NUM_ITEMS)
      np.testing.assert_allclose(out.loss, OUT[f"grpo_{ci}_{lt}_{an}"], **TOL,
                                 err_msg=f"{lt} {an}")
      assert np.all(np.asarray(out.per_token_loss)[X["mask"] == 0] == 0)


def test_masked_clipped_surrogate_equals_rlax_on_valid_tokens():
  per_tok = O.clipped_pg_per_token(J["logp"], J["old_logp"], J["adv"], mask=J["mask"])
  got = O.aggregate_token_loss(per_tok, J["mask"], loss_type="bnpo")
  np.testing.assert_allclose(got, OUT["rlax_eps0.2"], **TOL)
  # dapo with this batch's token count is bnpo
  np.testing.assert_allclose(O.aggregate_token_loss(per_tok, J["mask"], loss_type="dapo"),
                             got, **TOL)


def test_aggregate_modes_hand_values():
  l = jnp.array([[1.0, 3.0, 5.0], [2.0, 4.0, 6.0], [7.0, 7.0, 7.0]])
  m = jnp.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
  agg = lambda lt, **kw: float(O.aggregate_token_loss(l, m, loss_type=lt, **kw))
  assert agg("grpo") == pytest.approx((2.0 + 2.0 + 0.0) / 3)
  assert agg("bnpo") == pytest.approx(6.0 / 3)
  assert agg("dr_grpo") == pytest.approx(6.0 / 9)
  assert agg("dr_grpo", max_completion_length=10) == pytest.approx(6.0 / 30)
  assert agg("dapo", num_tokens=12) == pytest.approx(0.5)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_advantages_equal_trl(scale):
  got = O.group_advantages(J["rewards"], group_size=4, scale=scale)
  np.testing.assert_allclose(got, OUT[f"grpo_adv_{scale}"], **TOL)
  grouped = O.group_advantages(J["rewards"].reshape(4, 4), scale=scale)
  np.testing.assert_allclose(grouped.reshape(-1), got, **TOL)
  assert np.all(np.asarray(got)[4:8] == 0)  # the constant group: 0, not NaN


def test_constant_group_is_zero_even_without_epsilon():
  adv = O.group_advantages(jnp.full((2, 5), 3.0), epsilon=0.0)
  assert np.all(np.asarray(adv) == 0)
  g = jax.jit(jax.grad(lambda r: jnp.sum(O.group_advantages(r, epsilon=0.0) ** 2)))(
      jnp.ones((5,)))
  assert np.all(np.isfinite(g))


def test_rloo_advantages_equal_trl():
  got = O.rloo_advantages(J["rewards"], group_size=4)
  np.testing.assert_allclose(got, OUT["rloo_adv"], **TOL)
  r = J["rewards"].reshape(4, 4)  # the closed form G/(G-1) (r - mean)
  np.testing.assert_allclose(O.rloo_advantages(r), 4 / 3 * (r - r.mean(-1, keepdims=True)),
                             **TOL)


@pytest.mark.parametrize("cfg", oracle.DPO_CONFIGS, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_dpo_loss_equals_trl(cfg):
  lt, beta, ls = cfg
  d = J["dpo"]
  out = O.dpo_loss(d[0], d[1], d[2], d[3], beta=beta, label_smoothing=ls, loss_type=lt)
  key = f"dpo_{lt}_{beta}_{ls}"
  np.testing.assert_allclose(out.losses, OUT[key], **TOL)
  np.testing.assert_allclose(out.loss, OUT[key].mean(), **TOL)
  np.testing.assert_allclose(out.chosen_rewards, OUT[key + "_chosen"], **TOL)
  np.testing.assert_allclose(out.rejected_rewards, OUT[key + "_rejected"], **TOL)


def test_dpo_gradient_closed_form():
  """d/dpc of -log sigma(beta h) is -beta sigma(-beta h) / B; refs get no gradient."""
  d, beta = J["dpo"], 0.3
  g = jax.grad(lambda a, rc: O.dpo_loss(a, d[1], rc, d[3], beta=beta).loss, argnums=(0, 1))(
      d[0], d[2])
  h = (X["dpo"][0] - X["dpo"][2]) - (X["dpo"][1] - X["dpo"][3])
  np.testing.assert_allclose(g[0], -beta / (1 + np.exp(beta * h)) / 8, rtol=1e-5, atol=1e-7)
  assert np.all(np.asarray(g[1]) == 0)


def test_on_policy_gradient_is_minus_advantage_over_length():
  """With old == logp the ratio is 1: grad of the grpo loss is -A m / (|y_b| B), no NaN for a
  fully masked row and -inf log-probs on padding."""
  logp = jnp.where(J["mask"] != 0, J["logp"], -jnp.inf)
  g = jax.jit(jax.grad(lambda lp: O.grpo_loss(lp, jax.lax.stop_gradient(lp), J["adv"],
                                              J["mask"]).loss))(logp)
  n = np.maximum(X["mask"].sum(-1, keepdims=True), 1)
  np.testing.assert_allclose(g, -X["adv"][:, None] * X["mask"] / n / 8, rtol=1e-5, atol=1e-7)


def test_vmap_over_prompts_equals_a_loop():
  lp, old, m = (J[k].reshape(2, 4, 16) for k in ("logp", "old_logp", "mask"))
  r = J["rewards"][:8].reshape(2, 4)

  def per_prompt(lp, old, m, r):
    return O.grpo_loss(lp, old, O.group_advantages(r), m, epsilon_high=0.28).loss

  got = jax.jit(jax.vmap(per_prompt))(lp, old, m, r)
  one = jax.jit(per_prompt)
  loop = [one(lp[i], old[i], m[i], r[i]) for i in range(2)]
  np.testing.assert_allclose(got, loop, rtol=1e-6)
  np.testing.assert_allclose(jax.vmap(O.rloo_advantages)(r), O.rloo_advantages(r), rtol=1e-6)


def test_k3_kl_and_seq_logps():
  kl = O.k3_kl(J["logp"], J["ref_logp"])
  d = X["ref_logp"] - X["logp"]
  np.testing.assert_allclose(kl, np.exp(d) - d - 1, rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(kl) >= 0)
  padded = jnp.where(J["mask"] != 0, J["logp"], -jnp.inf)
  np.testing.assert_allclose(O.seq_logps(padded, J["mask"]), (X["logp"] * X["mask"]).sum(-1),
                             rtol=1e-6)


def test_clip_ratio_counts_clipped_tokens():
  lp = jnp.log(jnp.array([[0.5, 0.5, 0.5, 0.5]]))
  old = jnp.log(jnp.array([[0.5, 0.3, 0.9, 0.3]]))  # ratios 1, 1.67, 0.56, 1.67
  out = jax.jit(O.grpo_loss)(lp, old, jnp.array([1.0]), jnp.array([[1, 1, 1, 0]]))
  assert float(out.clip_ratio) == pytest.approx(1 / 3)


def test_bad_inputs_are_named_errors():
  lp = J["logp"]
  with pytest.raises(ValueError, match="grpo_loss: mask and logp must have the same shape"):
    O.grpo_loss(lp, lp, J["adv"], J["mask"][:, :8])
  with pytest.raises(ValueError, match="grpo_loss: beta must be >= 0"):
    O.grpo_loss(lp, lp, J["adv"], J["mask"], ref_logp=lp, beta=-0.1)
  with pytest.raises(ValueError, match="grpo_loss: ref_logp must be given"):
    O.grpo_loss(lp, lp, J["adv"], J["mask"], beta=0.1)
  with pytest.raises(ValueError, match="grpo_loss: advantages must have shape"):
    O.grpo_loss(lp, lp, J["adv"][:4], J["mask"])
  with pytest.raises(ValueError, match="group_advantages: group_size must divide"):
    O.group_advantages(J["rewards"], group_size=3)
  with pytest.raises(ValueError, match="rloo_advantages: rewards must have a group axis"):
    O.rloo_advantages(jnp.ones((4, 1)))
  with pytest.raises(ValueError, match="dpo_loss: beta must be >= 0"):
    O.dpo_loss(*J["dpo"], beta=-1.0)
  with pytest.raises(ValueError, match="aggregate_token_loss: loss_type must be one of"):
    O.aggregate_token_loss(lp, J["mask"], loss_type="token")
