"""Tests for LoRA+ (optax transform, labels) on flax's nnx.LoRA adapters, and lora_linear."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

LP = importlib.import_module("bottleneck_jax.efficiency._chronicals")

RNG = np.random.default_rng(0)


def _params():
  return {
      "embed": {"w": jnp.asarray(RNG.standard_normal((3, 2)), jnp.float32)},
      "attn": {"q": {"lora_a": jnp.asarray(RNG.standard_normal((4, 2)), jnp.float32),
                     "lora_b": jnp.asarray(RNG.standard_normal((2, 4)), jnp.float32)}},
      # PEFT-style flattened names.
      "mlp.lora_A.weight": jnp.asarray(RNG.standard_normal((4, 2)), jnp.float32),
      "mlp.lora_B.weight": jnp.asarray(RNG.standard_normal((2, 4)), jnp.float32),
  }


def test_labels_from_paths():
  labels = LP.lora_plus_labels(_params())
  assert labels == {"embed": {"w": "frozen"}, "attn": {"q": {"lora_a": "A", "lora_b": "B"}},
                    "mlp.lora_A.weight": "A", "mlp.lora_B.weight": "B"}
  assert LP.lora_plus_labels(_params(), frozen=False)["embed"]["w"] == "other"
  custom = LP.lora_plus_labels({"down": 1.0, "up": 2.0, "x": 3.0},
                               label_fn=lambda p: {"down": "A", "up": "B"}.get(p[-1]))
  assert custom == {"down": "A", "up": "B", "x": "frozen"}


def test_sgd_step_closed_form():
  """One SGD step: B moves ratio x as far as A for equal gradients; frozen leaves do not move."""
  params = _params()
  grads = jax.tree.map(lambda p: jnp.full(p.shape, 0.5, p.dtype), params)
  lr, ratio = 0.1, 16.0
  tx = LP.lora_plus(lr, ratio=ratio, optimizer=optax.sgd)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["attn"]["q"]["lora_a"], -lr * 0.5, rtol=1e-6)
  np.testing.assert_allclose(updates["attn"]["q"]["lora_b"], -lr * ratio * 0.5, rtol=1e-6)
  np.testing.assert_allclose(updates["mlp.lora_A.weight"], -lr * 0.5, rtol=1e-6)
  np.testing.assert_allclose(updates["mlp.lora_B.weight"], -lr * ratio * 0.5, rtol=1e-6)
  np.testing.assert_array_equal(updates["embed"]["w"], 0.0)
  # frozen=False: the other parameters train at lr.
  tx2 = LP.lora_plus(lr, ratio=ratio, optimizer=optax.sgd, frozen=False)
  up2, _ = tx2.update(grads, tx2.init(params), params)
  np.testing.assert_allclose(up2["embed"]["w"], -lr * 0.5, rtol=1e-6)


def test_adamw_matches_two_optax_adamws():
  """Default optimizer: identical to optax.adamw(lr) on A and optax.adamw(ratio*lr) on B.

  optax 0.2.8's adam bias correction (``decay**count``, float ** int32) fails under the suite's
  strict dtype promotion, so this test runs with standard promotion.
  """
  with jax.numpy_dtype_promotion("standard"):
    _adamw_matches()


def _adamw_matches():
  params = {"lora_a": jnp.asarray(RNG.standard_normal((3, 2)), jnp.float32),
            "lora_b": jnp.asarray(RNG.standard_normal((2, 3)), jnp.float32)}
  tx = LP.lora_plus(1e-2, ratio=4.0, weight_decay=0.1)
  ta, tb = optax.adamw(1e-2, weight_decay=0.1), optax.adamw(4e-2, weight_decay=0.1)
  s, sa, sb = tx.init(params), ta.init(params["lora_a"]), tb.init(params["lora_b"])
  for step in range(2):
    g = jax.tree.map(lambda p: jnp.asarray(RNG.standard_normal(p.shape), p.dtype), params)
    u, s = tx.update(g, s, params)
    ua, sa = ta.update(g["lora_a"], sa, params["lora_a"])
    ub, sb = tb.update(g["lora_b"], sb, params["lora_b"])
    np.testing.assert_allclose(u["lora_a"], ua, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(u["lora_b"], ub, rtol=1e-6, atol=1e-8)
    params = optax.apply_updates(params, u)


def test_schedule_learning_rate():
  sched = optax.linear_schedule(1.0, 0.0, 10)
  params = {"lora_a": jnp.ones(2), "lora_b": jnp.ones(2)}
  tx = LP.lora_plus(sched, ratio=2.0, optimizer=optax.sgd)
  s = tx.init(params)
  g = jax.tree.map(jnp.ones_like, params)
  for step in range(3):
    u, s = tx.update(g, s, params)
    np.testing.assert_allclose(u["lora_b"], -2.0 * (1.0 - step / 10), rtol=1e-6)
    np.testing.assert_allclose(u["lora_a"], -(1.0 - step / 10), rtol=1e-6)


class _Model(nnx.Module):
  def __init__(self, rngs):
    # flax's adapter layer: lora_a / lora_b are nnx.LoRAParam, the base Linear's are nnx.Param.
    self.lora = nnx.LoRA(3, 2, 4, base_module=nnx.Linear(3, 4, rngs=rngs),
                         b_initializer=nnx.initializers.normal(0.5), rngs=rngs)
    self.head = nnx.Linear(4, 2, rngs=rngs)

  def __call__(self, x):
    return self.head(jnp.tanh(self.lora(x)))


def test_nnx_optimizer_wrt_lora_param_trains_only_the_adapters():
  model = _Model(nnx.Rngs(0))
  lr, ratio = 0.05, 16.0
  opt = nnx.Optimizer(model, LP.lora_plus(lr, ratio=ratio, optimizer=optax.sgd),
                      wrt=nnx.LoRAParam)
  x = jnp.asarray(RNG.standard_normal((5, 3)), jnp.float32)
  loss_fn = lambda m: jnp.mean(m(x) ** 2)
  grads = nnx.grad(loss_fn, argnums=nnx.DiffState(0, nnx.LoRAParam))(model)
  before = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model)))

  @nnx.jit
  def step(model, opt):
    loss, g = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, nnx.LoRAParam))(model)
    opt.update(model, g)
    return loss

  step(model, opt)
  after = nnx.to_pure_dict(nnx.state(model))
  np.testing.assert_allclose(after["lora"]["lora_a"],
                             before["lora"]["lora_a"] - lr * grads["lora"]["lora_a"][...],
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(after["lora"]["lora_b"],
                             before["lora"]["lora_b"] - ratio * lr * grads["lora"]["lora_b"][...],
                             rtol=1e-5, atol=1e-7)
  assert np.abs(grads["lora"]["lora_a"][...]).max() > 0  # the check above is not vacuous
  base = after["lora"]["base_module"]
  np.testing.assert_array_equal(base["kernel"], before["lora"]["base_module"]["kernel"])
  np.testing.assert_array_equal(after["head"]["kernel"], before["head"]["kernel"])
  np.testing.assert_array_equal(after["head"]["bias"], before["head"]["bias"])
  assert int(opt.step[...]) == 1


def test_lora_linear_vs_numpy_and_flax_lora():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2, 4, 5)).astype(np.float32)
  w = rng.standard_normal((5, 3)).astype(np.float32)
  a = rng.standard_normal((5, 2)).astype(np.float32)
  b = rng.standard_normal((2, 3)).astype(np.float32)
  x64, w64, a64, b64 = (v.astype(np.float64) for v in (x, w, a, b))
  expected = x64 @ (w64 + 3.0 * a64 @ b64) + 1.0
  f = jax.jit(lambda x, bb: LP.lora_linear(x, jnp.asarray(w), jnp.asarray(a), bb, scale=3.0,
                                           bias=jnp.ones(3)))
  np.testing.assert_allclose(f(jnp.asarray(x), jnp.asarray(b)), expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(jax.vmap(f, (0, None))(x, b), expected, rtol=1e-5, atol=1e-5)
  # d/dB of sum(y) = scale * (x A)^T 1
  gb = jax.grad(lambda bb: f(jnp.asarray(x), bb).sum())(jnp.asarray(b))
  np.testing.assert_allclose(gb, 3.0 * (x64.reshape(-1, 5) @ a64).sum(0)[:, None] * np.ones(3),
                             rtol=1e-5, atol=1e-5)
  # Same computation as flax's nnx.LoRA around a bias-free Linear (scale 1).
  layer = nnx.LoRA(5, 2, 3, base_module=nnx.Linear(5, 3, use_bias=False, rngs=nnx.Rngs(0)),
                   rngs=nnx.Rngs(1))
  layer.lora_b[...] = jnp.asarray(b)
  ours = LP.lora_linear(jnp.asarray(x), layer.base_module.kernel[...], layer.lora_a[...],
                        layer.lora_b[...])
  np.testing.assert_allclose(ours, layer(jnp.asarray(x)), rtol=1e-5, atol=1e-5)


def test_works_with_flax_lora_linear():
  model = nnx.LoRALinear(3, 2, lora_rank=1, rngs=nnx.Rngs(1))
  opt = nnx.Optimizer(model, LP.lora_plus(0.1, optimizer=optax.sgd), wrt=nnx.Param)
  kernel = np.asarray(model.kernel[...])
  x = jnp.ones((2, 3))

  @nnx.jit
  def step(model, opt):
    g = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)
    opt.update(model, g)

  step(model, opt)
  np.testing.assert_array_equal(model.kernel[...], kernel)  # nnx's base kernel: labelled frozen
  assert np.abs(np.asarray(model.lora.lora_b[...])).max() > 0


def test_errors():
  with pytest.raises(ValueError, match="lora_plus: ratio must be > 0"):
    LP.lora_plus(0.1, ratio=0.0)
  with pytest.raises(ValueError, match="lora_plus: learning_rate must be >= 0"):
    LP.lora_plus(-0.1)
  with pytest.raises(TypeError, match="lora_plus: optimizer must be an optax alias"):
    LP.lora_plus(0.1, optimizer="adamw")
  with pytest.raises(TypeError, match="lora_plus: label_fn must be callable"):
    LP.lora_plus(0.1, label_fn="lora")
  with pytest.raises(ValueError, match="lora_plus: no parameter path has a component named"):
    LP.lora_plus(0.1).init({"w": jnp.ones(2)})
  with pytest.raises(ValueError, match="lora_plus_labels: label_fn must return"):
    LP.lora_plus_labels({"w": 1.0}, label_fn=lambda p: "C")
  with pytest.raises(TypeError, match=r"lora_linear: lora_b must have the dtype of x"):
    LP.lora_linear(jnp.ones((2, 3)), jnp.ones((3, 2)), jnp.ones((3, 1)),
                   jnp.ones((1, 2), jnp.bfloat16))
  with pytest.raises(TypeError, match=r"lora_linear: x must have a floating dtype"):
    LP.lora_linear(jnp.ones((2, 3), jnp.int32), jnp.ones((3, 2)), jnp.ones((3, 1)),
                   jnp.ones((1, 2)))
  with pytest.raises(ValueError, match="lora_linear: x must have size 3 on axis -1"):
    LP.lora_linear(jnp.ones((2, 4)), jnp.ones((3, 2)), jnp.ones((3, 1)), jnp.ones((1, 2)))
  with pytest.raises(ValueError, match=r"lora_linear: lora_b must have shape \[1, 2\]"):
    LP.lora_linear(jnp.ones((2, 3)), jnp.ones((3, 2)), jnp.ones((3, 1)), jnp.ones((2, 2)))
