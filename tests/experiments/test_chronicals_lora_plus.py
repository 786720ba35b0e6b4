"""chronicals-lora-plus: LoRA vs LoRA+ on digits (an honest comparison, expectation may miss)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

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


@pytest.mark.slow
def test_quick_run(tmp_path):
  exp = get("chronicals-lora-plus")
  assert exp.paper_id == "chronicals" and exp.defaults["ratio"] == 16.0
  s = run_experiment("chronicals-lora-plus", workdir=tmp_path, quick=True, progress=False)
  r = s["results"]
  assert isinstance(s["expectation_held"], bool) and s["setting"] == "proxy"
  assert s["value"] == r["best_lr_speedup"] > 0
  # at the same lr_A, the 16x larger B step reaches the target sooner
  assert r["fixed_lr_speedup"] > 1.5
  assert r["lora_plus_best_test_accuracy"] > 0.8 and r["lora_best_test_accuracy"] > 0.8
  assert (tmp_path / "plots" / "loss_curves.png").exists()
  # every (ratio, lr) member trained by train() into its own checkpoint folder
  n = 2 * len(exp.quick["learning_rates"])
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
      f"member_{i}" for i in range(n)]


def test_only_the_adapters_train():
  # nnx.LoRA around a frozen random-feature Linear: lora_a / lora_b are nnx.LoRAParam (what
  # train(wrt=nnx.LoRAParam) optimises), the base kernel a plain nnx.Param.
  from flax import nnx

  from bottleneck_jax.experiments.chronicals_lora_plus import AdaptedMLP
  model = AdaptedMLP([64, 16, 16, 10], 4, rngs=nnx.Rngs(0))
  lora = nnx.state(model, nnx.LoRAParam)
  names = sorted({str(p[-1]) for p, _ in nnx.to_flat_state(lora)})
  assert names == ["lora_a", "lora_b"] and len(jax.tree.leaves(lora)) == 6
  base = nnx.state(model, nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam)))
  k0 = jax.tree.leaves(base)[0]
  # He-scaled Gaussian features before a ReLU: std sqrt(2 / fan_in)
  assert abs(float(jnp.std(k0)) - np.sqrt(2 / 64)) < 0.03
  # lora_b starts at zero: the adapted network is the frozen base network
  x = jnp.ones((2, 64))
  h = x
  for i, layer in enumerate(model.layers):
    h = h @ layer.base_module.kernel[...]
    h = jax.nn.relu(h) if i < 2 else h
  np.testing.assert_allclose(model(x), h, rtol=1e-5, atol=1e-6)
