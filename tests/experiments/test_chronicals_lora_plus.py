"""chronicals-lora-plus: LoRA vs LoRA+ on digits (an honest comparison, expectation may miss)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bottleneck_jax.efficiency import lora_plus
from bottleneck_jax.experiments import get, run_experiment
from bottleneck_jax.experiments.chronicals_lora_plus import steps_to_target


def test_steps_to_target_by_hand():
  losses = np.array([4.0, 2.0, 1.0, 0.5, 0.5, 0.1])
  assert steps_to_target(losses, 1.0, 2) == 4     # window (1.0, 0.5) ends at step 4
  assert steps_to_target(losses, 0.3, 2) == 6
  assert steps_to_target(losses, 0.01, 2) == 7    # never: len + 1
  assert steps_to_target(losses[:1], 5.0, 2) == 2


def test_ratio_one_is_plain_adam():
  # The plain-LoRA baseline is lora_plus(ratio=1): it must be optax.adam on every adapter.
  with jax.numpy_dtype_promotion("standard"):
    params = {"l": {"lora_a": jnp.ones((3, 2)), "lora_b": jnp.zeros((2, 4))}}
    grads = jax.tree.map(lambda p: jnp.full(p.shape, 0.3), params)
    tx, ref = lora_plus(1e-2, ratio=1.0, optimizer=optax.adam), optax.adam(1e-2)
    (u, _), (v, _) = tx.update(grads, tx.init(params), params), ref.update(grads, ref.init(params))
    for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(v)):
      np.testing.assert_allclose(a, b, rtol=1e-6)


def test_quick_run(tmp_path):
  exp = get("chronicals-lora-plus")
  assert exp.paper_id == "chronicals" and exp.defaults["ratio"] == 16.0
  s = run_experiment("chronicals-lora-plus", workdir=tmp_path, quick=True, progress=False)
  r = s["results"]
  assert isinstance(s["expectation_held"], bool)
  assert s["value"] == r["best_lr_speedup"] > 0
  # at the same lr_A, the 16x larger B step reaches the target sooner
  assert r["fixed_lr_speedup"] > 1.5
  assert r["lora_plus_best_test_accuracy"] > 0.8 and r["lora_best_test_accuracy"] > 0.8
  assert (tmp_path / "plots" / "loss_curves.png").exists()
