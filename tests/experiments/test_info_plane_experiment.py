"""The information-plane experiments' training set-up (bottleneck_jax/experiments/info_plane.py).

Independent references: the reference code's batch boundaries (IDNNs ``network.py``:
``np.rint(np.arange(0, n + 1, batch))`` with ``n`` appended) and its unshuffled split
(``data_shuffle(shuffle_data=False)``: the first ``rint(0.8 * 4096)`` rows train); and, for the
stacked networks, each network trained alone with ``optax.adam`` on its own loss.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from bottleneck_jax.experiments.info_plane import _fixed_batches, _Repeats, _split
from bottleneck_jax.information import LayerwiseMLP


def test_ordered_split_and_fixed_batches_are_the_reference_codes():
  config = {"train_fraction": 0.8, "data_order": "ordered", "data_seed": 0}
  x, y, train, test = _split(config)
  n = int(np.rint(80 * 4096 / 100))
  np.testing.assert_array_equal(train["x"], x[:n])
  np.testing.assert_array_equal(test["y"], y[n:])
  points = np.rint(np.arange(0, n + 1, 256)).astype(np.int32)
  points = np.append(points, [n]) if n not in points else points
  it = _fixed_batches(train, 256)()
  for epoch in range(2):                                  # the same batches every epoch
    for lo, hi in zip(points[:-1], points[1:]):
      b = next(it)
      assert b["x"].shape == (256, 12)
      w = b["w"].astype(bool)
      assert int(w.sum()) == hi - lo
      np.testing.assert_array_equal(b["x"][w], x[lo:hi])
      np.testing.assert_array_equal(b["y"][w], y[lo:hi])


def test_stacked_networks_each_take_their_own_adam_step():
  sizes = (12, 6, 3, 2)
  stacked = _Repeats(sizes, jnp.tanh, 3, rngs=nnx.Rngs(0))
  xb = jax.random.normal(jax.random.key(1), (16, 12))
  yb = jnp.arange(16) % 2
  tx = optax.adam(0.05)

  def ce(logits):
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  one_grad = jax.jit(lambda g, p: jax.grad(lambda p: ce(nnx.merge(g, p)(xb).logits))(p),
                     static_argnums=0)
  stacked_grad = jax.jit(
      lambda g, p: jax.grad(lambda p: jnp.sum(jax.vmap(ce)(nnx.merge(g, p)(xb).logits)))(p),
      static_argnums=0)

  # the references: every network alone, with its own initial weights
  params = nnx.state(stacked, nnx.Param)
  kernel = np.asarray(params["members"]["layers"][0]["kernel"][...])
  assert kernel.shape == (3, 12, 6)
  assert not np.allclose(kernel[0], kernel[1]) and not np.allclose(kernel[1], kernel[2])
  alone = []
  for r in range(3):
    net = LayerwiseMLP(sizes, rngs=nnx.Rngs(5))
    nnx.update(net, jax.tree.map(lambda p, r=r: p[r], params["members"]))
    g, rest = nnx.split(net, nnx.Param)
    p, st = rest, tx.init(rest)
    for _ in range(3):
      grads = one_grad(g, p)
      with jax.numpy_dtype_promotion("standard"):   # optax's own arithmetic
        u, st = tx.update(grads, st, p)
      p = optax.apply_updates(p, u)
    alone.append(p)

  g, p = nnx.split(stacked, nnx.Param)
  st = tx.init(p)
  for _ in range(3):
    grads = stacked_grad(g, p)
    with jax.numpy_dtype_promotion("standard"):
      u, st = tx.update(grads, st, p)
    p = optax.apply_updates(p, u)
  for r in range(3):
    jax.tree.map(lambda a, b, r=r: np.testing.assert_allclose(a[r], b, rtol=1e-5, atol=1e-6),
                 p["members"], alone[r])


def test_unknown_data_order_is_named():
  with pytest.raises(ValueError, match="data_order must be 'ordered' or 'shuffled', got 'sorted'"):
    _split({"train_fraction": 0.8, "data_order": "sorted", "data_seed": 0})
