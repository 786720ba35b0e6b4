"""wta-crs-memory: the paper's estimator (cached output-gradient norms) inside train()'s step,
and memory from the compiled program."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bottleneck_jax.experiments import get
from bottleneck_jax.experiments.wta_crs_memory import (
    _MLP,
    cache_labels,
    compiled_temp_bytes,
    set_to_gradient,
)
from bottleneck_jax.train import make_train_step


def test_registered_with_the_papers_estimator():
  exp = get("wta-crs-memory")
  assert exp.defaults["use_grad_norms"] is True and exp.defaults["ratio"] == 0.3
  assert exp.metric == "memory_reduction" and exp.setting == "proxy"
  assert {e.metric: e.value for e in exp.expectations} == {"memory_reduction": 2.0,
                                                           "accuracy_drop": 0.02}


def test_set_to_gradient_replaces_unless_zero():
  tx = set_to_gradient()
  params = {"a": jnp.array([1.0, 2.0]), "b": jnp.array([3.0, 4.0])}
  grads = {"a": jnp.array([0.5, 0.25]), "b": jnp.zeros(2)}
  updates, _ = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(new["a"], [0.5, 0.25])   # replaced by the new norms
  np.testing.assert_array_equal(new["b"], [3.0, 4.0])    # a stateless step keeps the cache


def test_train_step_caches_this_steps_output_gradient_norms():
  """After one train() step the cache holds ‖dL/dy_i‖ of the step (the paper's cached norms),
  computed here independently with jax.grad through the plain dense layer."""
  n, d_in, d_out = 16, 8, 4
  model = _MLP([d_in, d_out], estimator="wta", ratio=0.5, use_grad_norms=True, num_rows=n,
               rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(n, d_in)), jnp.float32)
  y = jnp.asarray(rng.integers(0, d_out, n), jnp.int32)
  w, b = model.layers[0].kernel[...], model.layers[0].bias[...]
  g = jax.grad(lambda out: optax.softmax_cross_entropy_with_integer_labels(out, y).mean())(
      x @ w + b)
  expected = np.linalg.norm(np.asarray(g), axis=-1)

  from bottleneck_jax.efficiency import WTACRSGradNorms
  wrt = nnx.Any(nnx.Param, WTACRSGradNorms)
  tx = optax.multi_transform({"param": optax.sgd(0.1), "cache": set_to_gradient()},
                             cache_labels)
  optimizer = nnx.Optimizer(model, tx, wrt=wrt)

  def loss_fn(model, batch, key):
    del key
    out = model(batch["x"])
    return optax.softmax_cross_entropy_with_integer_labels(out, batch["y"]).mean(), {}

  step = make_train_step(loss_fn, wrt=wrt)
  step(model, optimizer, {"x": x, "y": y}, jax.random.key(0), np.int32(0))
  np.testing.assert_allclose(model.layers[0].grad_norms[...], expected, rtol=1e-5, atol=1e-7)
  assert not np.allclose(model.layers[0].kernel[...], w)   # the Params moved by SGD


def test_compiled_memory_holds_the_exact_activations():
  cfg = {**get("wta-crs-memory").defaults, "hidden": [32]}
  rows, sizes = 1024, [64, 32, 10]
  exact = compiled_temp_bytes(cfg, sizes, estimator="exact", rows=rows)
  wta = compiled_temp_bytes(cfg, sizes, estimator="wta", rows=rows)
  # the exact backward needs the hidden activations [rows, 32] (f32) for the second kernel
  assert exact >= rows * 32 * 4
  assert wta > 0
