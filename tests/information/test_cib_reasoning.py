"""Tests for bottleneck_jax/information/_cib_reasoning.py (the conditional-IB reward).

Independent references: a manual NumPy log-softmax gather; the test plan's analytic bandit numbers
(objective values, break-even betas, the closed-form KL optimum), computed by hand from the
unigram prior; first-order optimality of ``pi*`` checked with ``jax.grad`` of the objective
written out directly. Units: nats.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax.information import cib_cost, cib_optimal_policy, cib_reward, token_surprisal

Q = {"A": 0.2, "F": 0.6, "E": 0.2}
TRACES = ("E", "AAE", "FAFAE", "FFE")
R = jnp.array([0.0, 1.0, 1.0, 0.0])


def _bandit():
  t = 5
  tok = np.zeros((4, t), np.int32)
  mask = np.zeros((4, t), np.float32)
  for i, s in enumerate(TRACES):
    tok[i, :len(s)] = ["AFE".index(c) for c in s]
    mask[i, :len(s)] = 1
  logits = jnp.broadcast_to(jnp.log(jnp.array([Q["A"], Q["F"], Q["E"]])), (4, t, 3))
  return jnp.asarray(tok), jnp.asarray(mask), logits


def test_token_surprisal_equals_a_manual_log_softmax_gather():
  r = np.random.default_rng(0)
  logits = r.normal(size=(2, 4, 5)).astype(np.float32)
  tok = r.integers(0, 5, (2, 4)).astype(np.int32)
  mask = np.array([[1, 1, 0, 0], [0, 1, 1, 1]], np.float32)
  ls = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  ref = -np.take_along_axis(ls, tok[..., None], -1)[..., 0] * mask
  got = token_surprisal(jnp.asarray(logits), jnp.asarray(tok), jnp.asarray(mask))
  np.testing.assert_allclose(got, ref, atol=1e-6)
  # the prior is frozen: no gradient flows into it
  g = jax.grad(lambda lg: token_surprisal(lg, jnp.asarray(tok), jnp.asarray(mask)).sum())(
      jnp.asarray(logits))
  assert not np.any(np.asarray(g))


def test_uniform_cost_is_length_times_log_v_and_ignores_padding():
  mask = jnp.array([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
  np.testing.assert_allclose(cib_cost(mask, kind="uniform", vocab_size=7),
                             [3 * math.log(7), math.log(7)], rtol=1e-6)


@pytest.mark.parametrize("beta,surprisal,uniform", [
    (0.20, (-.322, .034, -.170, -.526), (-.220, .341, -.099, -.659)),
    (0.35, (-.563, -.690, -1.048, -.921), (-.385, -.154, -.923, -1.154)),
    (0.50, (-.805, -1.414, -1.925, -1.316), (-.549, -.648, -1.747, -1.648)),
])
def test_bandit_objectives_match_the_spec_table(beta, surprisal, uniform):
  tok, mask, logits = _bandit()
  prior_logp = -token_surprisal(logits, tok, mask)
  js = cib_reward(R, cib_cost(mask, kind="surprisal", prior_logp_tok=prior_logp), beta=beta)
  ju = cib_reward(R, cib_cost(mask, kind="uniform", vocab_size=3), beta=beta)
  np.testing.assert_allclose(js, surprisal, atol=1.5e-3)
  np.testing.assert_allclose(ju, uniform, atol=1.5e-3)
  # the two priors disagree exactly at beta = 0.35: surprisal drops the reasoning, uniform keeps it
  assert (TRACES[int(jnp.argmax(js))], TRACES[int(jnp.argmax(ju))]) == {
      0.20: ("AAE", "AAE"), 0.35: ("E", "AAE"), 0.50: ("E", "E")}[beta]


def test_break_even_betas():
  # J(E) = J(AAE)  <=>  beta = 1 / (C(AAE) - C(E))
  assert 1 / (2 * -math.log(Q["A"])) == pytest.approx(0.3107, abs=1e-4)
  assert 1 / (2 * math.log(3)) == pytest.approx(0.4551, abs=1e-4)


@pytest.mark.parametrize("beta,expected", [
    (0.2, (.106, .629, .227, .038)), (0.35, (.433, .302, .109, .156)),
    (0.5, (.568, .168, .060, .204))])
def test_kl_optimum_matches_the_spec_and_is_stationary(beta, expected):
  tok, mask, logits = _bandit()
  prior_logp = -token_surprisal(logits, tok, mask)
  log_q = prior_logp.sum(-1)
  p = cib_optimal_policy(log_q, R, beta=beta)
  np.testing.assert_allclose(p, expected, atol=1.5e-3)

  def objective(theta):  # E_pi[R] - beta KL(pi || Q), written out
    logp = jax.nn.log_softmax(theta)
    return jnp.sum(jnp.exp(logp) * (R - beta * (logp - log_q)))
  grad = jax.grad(objective)(jnp.log(p))
  assert float(jnp.max(jnp.abs(grad))) < 1e-5
  # and the kl cost of cib_cost gives the same objective
  pol = (jnp.log(p) / mask.sum(-1))[:, None] * mask
  c = cib_cost(mask, kind="kl", prior_logp_tok=prior_logp, policy_logp_tok=pol)
  assert float(jnp.sum(p * cib_reward(R, c, beta=beta))) == pytest.approx(
      float(objective(jnp.log(p))), abs=1e-5)


def test_bad_inputs_get_named_errors():
  m = jnp.ones((2, 3))
  with pytest.raises(ValueError, match="cib_cost: vocab_size is required"):
    cib_cost(m, kind="uniform")
  with pytest.raises(ValueError, match="cib_cost: kind must be one of"):
    cib_cost(m, kind="length")
  with pytest.raises(ValueError, match="cib_cost: policy_logp_tok is required"):
    cib_cost(m, kind="kl", prior_logp_tok=m)
  with pytest.raises(ValueError, match="cib_optimal_policy: beta must be > 0"):
    cib_optimal_policy(jnp.zeros(3), jnp.zeros(3), beta=0.0)
  with pytest.raises(ValueError, match="token_surprisal: tokens must have shape"):
    token_surprisal(jnp.zeros((2, 3, 4)), jnp.zeros((2, 4), jnp.int32), jnp.ones((2, 4)))
