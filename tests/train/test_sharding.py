"""Tests of bottleneck_jax.train.sharding (8 CPU devices from conftest)."""

import jax
import numpy as np
import pytest
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

from bottleneck_jax.train import sharding as shd


def test_make_mesh_shapes_and_types():
  m = shd.make_mesh()
  assert m.axis_names == ("data", "fsdp")
  assert dict(m.shape) == {"data": jax.device_count(), "fsdp": 1}
  assert all(t == AxisType.Explicit for t in m.axis_types)
  m = shd.make_mesh(fsdp=2, axis_types="auto")
  assert dict(m.shape) == {"data": 4, "fsdp": 2}
  assert all(t == AxisType.Auto for t in m.axis_types)
  m = shd.make_mesh(data=2, fsdp=-1)
  assert dict(m.shape) == {"data": 2, "fsdp": 4}
  m = shd.make_mesh(devices=jax.devices()[:1])
  assert m.size == 1


@pytest.mark.parametrize("kwargs,match", [
    ({"fsdp": 3}, "fsdp=3 must divide"),
    ({"data": 3, "fsdp": 1}, "data \\* fsdp must equal"),
    ({"data": -1, "fsdp": -1}, "at most one"),
    ({"data": 0}, "data must be a positive int"),
    ({"axis_types": "manual"}, "axis_types must be"),
])
def test_make_mesh_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    shd.make_mesh(**kwargs)


def test_parse_mesh():
  assert shd.parse_mesh("data=4,fsdp=2") == {"data": 4, "fsdp": 2}
  assert shd.parse_mesh("") == {}
  with pytest.raises(ValueError, match="axis must be one of"):
    shd.parse_mesh("model=2")
  with pytest.raises(ValueError, match="size of data must be an int"):
    shd.parse_mesh("data=x")
  with pytest.raises(ValueError, match="axis=size pairs"):
    shd.parse_mesh("data4")


def test_param_spec_rule():
  mesh = shd.make_mesh(fsdp=2)
  # large: the largest divisible dimension gets fsdp
  assert shd.param_spec((512, 1024), mesh, min_size=1) == P(None, "fsdp")
  assert shd.param_spec((1024, 512), mesh, min_size=1) == P("fsdp", None)
  # largest dimension not divisible -> next one
  assert shd.param_spec((1025, 512), mesh, min_size=1) == P(None, "fsdp")
  # small or indivisible or scalar -> replicated
  assert shd.param_spec((64, 64), mesh) == P()
  assert shd.param_spec((3, 5), mesh, min_size=1) == P()
  assert shd.param_spec((), mesh, min_size=1) == P()
  # fsdp == 1 -> replicated
  assert shd.param_spec((4096, 4096), shd.make_mesh()) == P()


def test_shard_state_and_abstract_state():
  mesh = shd.make_mesh(fsdp=2)
  state = {"w": np.ones((8, 4), np.float32), "b": np.zeros((4,), np.float32),
           "k": jax.random.key(0)}
  placed = shd.shard_state(state, mesh, min_size=16)
  assert placed["w"].sharding.spec == P("fsdp", None)
  assert placed["b"].sharding.is_fully_replicated
  assert shd.has_sharded_leaf(placed) and not shd.has_sharded_leaf({"b": placed["b"]})
  abstract = shd.abstract_state(state, mesh, min_size=16)
  assert isinstance(abstract["w"], jax.ShapeDtypeStruct)
  assert abstract["w"].sharding.spec == P("fsdp", None)
  np.testing.assert_array_equal(np.asarray(placed["w"]), state["w"])


@pytest.mark.parametrize("axis_types", ["explicit", "auto"])
def test_gather_params_and_batch_sharding(axis_types):
  mesh = shd.make_mesh(fsdp=2, axis_types=axis_types)
  w = shd.shard_state(np.arange(32, dtype=np.float32).reshape(8, 4), mesh, min_size=1)
  x = jax.device_put(np.ones((16, 8), np.float32), shd.batch_sharding(mesh))
  with jax.set_mesh(mesh):
    @jax.jit
    def f(x, w):
      return x @ shd.gather_params(w)
    y = f(x, w)
  np.testing.assert_allclose(np.asarray(y), np.ones((16, 8)) @ np.arange(32.).reshape(8, 4))
  assert x.sharding.spec == P(("data", "fsdp"))


def test_put_replicated_and_errors():
  mesh = shd.make_mesh()
  out = shd.put_replicated({"x": np.arange(6.0)}, mesh)
  assert out["x"].sharding.is_fully_replicated and out["x"].shape == (6,)
  with pytest.raises(ValueError, match="pass mesh="):
    shd.put_replicated({"x": np.arange(6.0)})
  with pytest.raises(ValueError, match="batch_size must be a multiple of the number of devices"):
    shd.check_batch_divisible(12, mesh)
