"""EditReward losses against NumPy transcriptions of the official formulas, Monte-Carlo
integration, limits, gradients, and input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bottleneck_jax import objectives as O


def _logsig(x):
  return -np.logaddexp(0.0, -x)


def official_btt(r_a, r_b, tie, k=5.0):
  """EditReward ``btt`` loss (NumPy): decided ``-logsig(d - log k)``; tied
  ``-logsig(d - log k) - logsig(-d - log k) - log(k^2 - 1)``."""
  d = r_a - r_b
  win = -_logsig(d - np.log(k))
  tied = -_logsig(d - np.log(k)) - _logsig(-d - np.log(k)) - np.log(k * k - 1)
  return np.where(tie, tied, win)


def official_fuse(mu, logsig, mode):
  stacked = np.stack([mu, logsig], -1)  # [H, B, 2]
  if mode == "min":
    out = stacked.min(0)
  elif mode == "mean":
    out = stacked.mean(0)
  else:
    sig = np.exp(stacked[..., 1])
    out = np.stack([stacked[..., 0].sum(0), np.log(np.sqrt((sig ** 2).sum(0)))], -1)
  return out[..., 0], out[..., 1]


R = np.random.default_rng(0)
RA, RB = (R.normal(0, 2, 16).astype(np.float32) for _ in range(2))
TIE = R.random(16) < 0.3


def test_btt_matches_official_and_probabilities_sum_to_one():
  got = O.btt_loss(jnp.asarray(RA), jnp.asarray(RB), jnp.asarray(TIE), k=5.0)
  np.testing.assert_allclose(got.losses, official_btt(RA, RB, TIE), rtol=1e-5, atol=1e-6)
  d = jnp.linspace(-8, 8, 161)
  p = O.btt_probs(d, jnp.zeros_like(d), k=5.0)
  np.testing.assert_allclose(p.p_a + p.p_b + p.p_tie, 1.0, atol=1e-6)
  # -log P(tie) is minimised at d = 0
  tie_loss = O.btt_loss(d, jnp.zeros_like(d), jnp.ones_like(d, dtype=bool)).losses
  assert abs(float(d[int(jnp.argmin(tie_loss))])) < 1e-6
  np.testing.assert_allclose(-np.log(np.asarray(p.p_tie)), tie_loss, rtol=1e-5)


def test_gaussian_bt_quadrature_equals_monte_carlo():
  mu_a, mu_b = RA[:4], RB[:4]
  ls_a, ls_b = np.log([0.5, 1.0, 2.0, 0.1]), np.log([1.0, 0.3, 1.5, 0.2])
  ls_a, ls_b = ls_a.astype(np.float32), ls_b.astype(np.float32)
  quad = O.gaussian_bt_loss(*(jnp.asarray(x) for x in (mu_a, ls_a, mu_b, ls_b)))
  rng = np.random.default_rng(1)
  m = mu_a - mu_b
  s = np.sqrt(np.exp(2 * ls_a) + np.exp(2 * ls_b))
  z = m[:, None] + s[:, None] * rng.standard_normal((4, 1_000_000))
  mc = (-_logsig(z)).mean(1)
  np.testing.assert_allclose(quad.losses, mc, atol=2e-3)
  ours_mc = O.gaussian_bt_loss_mc(*(jnp.asarray(x) for x in (mu_a, ls_a, mu_b, ls_b)),
                                  key=jax.random.key(0), num_samples=200_000)
  np.testing.assert_allclose(ours_mc.losses, mc, atol=1e-2)


def test_gaussian_bt_tends_to_bt_and_penalises_uncertainty():
  a, b = jnp.asarray(RA), jnp.asarray(RB)
  tiny = jnp.full_like(a, np.log(1e-6))
  np.testing.assert_allclose(O.gaussian_bt_loss(a, tiny, b, tiny, margin=0.57).losses,
                             O.bt_loss(a, b, margin=0.57).losses, atol=1e-5)
  np.testing.assert_allclose(O.bt_loss(a, b, margin=0.57).losses,
                             -_logsig(RA - RB - 0.57), rtol=1e-5, atol=1e-6)
  g = jax.jit(jax.grad(lambda ls: O.gaussian_bt_loss(jnp.array([6.0]), ls, jnp.array([0.0]),
                                                     jnp.array([0.0])).loss))(jnp.array([0.0]))
  assert float(g[0]) > 0


@pytest.mark.parametrize("mode", ["mean", "sum", "min"])
def test_fuse_heads_matches_official(mode):
  mu = R.normal(size=(2, 5)).astype(np.float32)
  ls = R.normal(size=(2, 5)).astype(np.float32)
  got = O.fuse_heads(jnp.asarray(mu), jnp.asarray(ls), mode=mode)
  want = official_fuse(mu, ls, mode)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
  np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-6)


def test_multi_head_reward_head():
  head = O.MultiHeadRewardHead(6, num_heads=3, hidden=(8, 4), rngs=nnx.Rngs(0))
  mu, ls = head(jnp.ones((5, 6)))
  assert mu.shape == ls.shape == (3, 5)
  assert not np.allclose(mu[0], mu[1])  # independent heads


def test_bad_inputs_are_named_errors():
  x = jnp.zeros(3)
  with pytest.raises(ValueError, match="btt_probs: k must be > 1"):
    O.btt_probs(x, x, k=1.0)
  with pytest.raises(ValueError, match="btt_loss: tie and r_a must have the same shape"):
    O.btt_loss(x, x, jnp.zeros(2, bool))
  with pytest.raises(ValueError, match="gaussian_bt_loss: logsig_b and mu_a"):
    O.gaussian_bt_loss(x, x, x, jnp.zeros(4))
  with pytest.raises(ValueError, match="fuse_heads: mode must be one of"):
    O.fuse_heads(jnp.zeros((2, 3)), jnp.zeros((2, 3)), mode="max")
  with pytest.raises(TypeError, match="gaussian_bt_loss_mc: key must be a typed PRNG key"):
    O.gaussian_bt_loss_mc(x, x, x, x, key=0)
