"""The data and bookkeeping helpers of the vpo / hicra / remix / editreward / agentcpm toy
experiments (their training runs are covered by ``bottleneck-jax run`` and test_train_all)."""

import numpy as np

from bottleneck_jax.experiments.agentcpm_merge_toy import make_task
from bottleneck_jax.experiments.editreward_toy import make_pairs
from bottleneck_jax.experiments.grpo_hicra_toy import updates_to_reach
from bottleneck_jax.experiments.remix_offpolicy_toy import first_reach
from bottleneck_jax.experiments.vpo_bandit import R_STAR, offline_data, regret


def test_vpo_offline_data_has_two_lucky_wins_of_the_worst_arm():
  d = offline_data(0)
  assert len(d["chosen"]) % 8 == 0
  assert np.sum(d["chosen"] == 0) == 2 and np.sum(d["rejected"] == 0) == 0
  assert np.all(d["chosen"] != d["rejected"])
  uniform = np.log(np.full(5, 0.2))
  assert regret(uniform) == np.float32(R_STAR.max() - R_STAR.mean())


def test_first_reach_bookkeeping():
  assert updates_to_reach(np.array([0.2, 0.5, 0.91, 0.95]), 0.9, 10) == 2
  assert updates_to_reach(np.array([0.2, 0.5]), 0.9, 10) == 10
  fresh = np.array([0, 8, 8, 16])
  assert first_reach(np.array([0.1, 0.5, 0.95, 0.99]), fresh, 0.9, 24.0) == 8.0
  assert first_reach(np.array([0.1, 0.5]), fresh[:2], 0.9, 16.0) == 16.0


def test_editreward_pairs_store_the_chosen_item_first():
  w = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
  xa, xb, tie, thr = make_pairs(4000, 8, w, None, 1)
  s = w.sum(0)
  assert 0.08 < tie.mean() < 0.12
  assert np.all((xa @ s)[~tie] > (xb @ s)[~tie])
  assert np.all(np.abs(xa @ s - xb @ s)[tie] < thr)


def test_agentcpm_tasks_differ_by_flag_and_target():
  a, b = make_task(0, 16, 0), make_task(1, 16, 0)
  np.testing.assert_array_equal(a["x"][:, :8], b["x"][:, :8])
  assert np.all(a["x"][:, 8] == 1) and np.all(b["x"][:, 9] == 1)
  np.testing.assert_allclose(a["y"], np.sin(2 * a["x"][:, 0]) + a["x"][:, 1], rtol=1e-6)
