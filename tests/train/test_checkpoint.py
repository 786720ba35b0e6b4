"""Tests of bottleneck_jax.train.checkpoint (Orbax round trips on tiny states)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from bottleneck_jax.train import Checkpointer
from bottleneck_jax.train import sharding as shd


class _Tiny(nnx.Module):
  def __init__(self, rngs):
    self.lin = nnx.Linear(3, 2, rngs=rngs)
    self.rngs = rngs  # typed PRNG key state inside the model


def _make():
  model = _Tiny(nnx.Rngs(0))
  return model, nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)


def test_round_trip_exact_with_keys_data_and_meta(tmp_path):
  model, opt = _make()
  grads = nnx.state(model, nnx.Param)
  grads = jax.tree.map(jnp.ones_like, grads)
  with jax.numpy_dtype_promotion("standard"):  # optax is not strict-promotion clean
    opt.update(model, grads)  # non-trivial Adam moments, step = 1
  model.rngs()              # advance the RNG counter
  state = nnx.state((model, opt))
  with Checkpointer(tmp_path / "ck", every=1, keep=2) as ck:
    assert ck.save(3, state, data_state={"next_index": 7}, meta={"seed": 5})
  ck = Checkpointer(tmp_path / "ck", every=1)
  assert ck.latest_step() == 3
  graphdef, abstract = nnx.split(nnx.eval_shape(_make))
  target = shd.abstract_state(abstract, shd.make_mesh(devices=jax.devices()[:1]))
  restored, data, meta = ck.restore(target)
  ck.close()
  assert data == {"next_index": 7}
  assert meta["seed"] == 5 and meta["step"] == 3
  m2, o2 = nnx.merge(graphdef, restored)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(nnx.state((m2, o2)))):
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
      a, b = jax.random.key_data(a), jax.random.key_data(b)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert int(o2.step[...]) == 1
  # the restored RNG continues the same stream
  np.testing.assert_array_equal(jax.random.key_data(model.rngs()),
                                jax.random.key_data(m2.rngs()))


def test_interval_keep_and_force(tmp_path):
  state = {"w": jnp.arange(3.0)}
  with Checkpointer(tmp_path / "ck", every=2, keep=2, async_save=False) as ck:
    saved = [ck.save(s, {"w": state["w"] + s}) for s in range(1, 8)]
    assert saved == [False, True, False, True, False, True, False]
    assert ck.save(7, {"w": state["w"] + 7}, force=True)
    ck.wait_until_finished()
    assert ck.all_steps() == [6, 7]
    restored, _, meta = ck.restore({"w": state["w"]}, step=6)
  np.testing.assert_array_equal(np.asarray(restored["w"]), np.arange(3.0) + 6)
  assert meta["step"] == 6


def test_errors(tmp_path):
  with pytest.raises(ValueError, match="every must be a positive int"):
    Checkpointer(tmp_path / "a", every=0)
  with pytest.raises(ValueError, match="keep must be a positive int"):
    Checkpointer(tmp_path / "b", keep=0)
  with Checkpointer(tmp_path / "c") as ck:
    assert ck.latest_step() is None
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
      ck.restore({"w": jnp.zeros(2)})


def test_forced_save_of_an_already_saved_step_is_a_no_op(tmp_path):
  # A preemption signal at a step the interval already saved forces a second save of that
  # step; Orbax would raise StepAlreadyExistsError (also while the first save is in flight).
  with Checkpointer(tmp_path / "ck", every=2, keep=2) as ck:
    assert ck.save(2, {"w": jnp.zeros(2)})
    assert not ck.save(2, {"w": jnp.ones(2)}, force=True)
    ck.wait_until_finished()
    assert ck.all_steps() == [2]
    restored, _, _ = ck.restore({"w": jnp.zeros(2)})
  np.testing.assert_array_equal(np.asarray(restored["w"]), np.zeros(2))
