"""Tests for bottleneck_jax.data.pipeline: coverage, determinism, exact resume, process slices."""

import collections
import itertools
import json

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from bottleneck_jax.data import pipeline as P

_NO_PREFETCH = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


def _data(n):
  i = np.arange(n)
  return {"x": np.stack([i, -2 * i], axis=1).astype(np.float32), "y": i.astype(np.int32)}


def _take(it, k):
  return [next(it) for _ in range(k)]


def _ys(batches):
  return np.concatenate([b["y"] for b in batches]).tolist()


def _assert_same(a, b):
  assert len(a) == len(b)
  for u, v in zip(a, b):
    assert u.keys() == v.keys()
    for k in u:
      np.testing.assert_array_equal(u[k], v[k])


def test_each_epoch_is_a_permutation_and_rows_stay_aligned():
  n, B = 10, 4
  got = list(P.batches(_data(n), batch_size=B, seed=0, num_epochs=3, drop_remainder=False))
  assert [b["y"].shape[0] for b in got] == [4] * 7 + [2]
  ys = _ys(got)
  epochs = [ys[k * n:(k + 1) * n] for k in range(3)]
  for e in epochs:
    assert sorted(e) == list(range(n))
  assert epochs[0] != list(range(n))  # shuffled
  assert len({tuple(e) for e in epochs}) == 3  # a different permutation every epoch
  for b in got:  # features travel with their labels
    np.testing.assert_array_equal(b["x"][:, 0], b["y"].astype(np.float32))
    np.testing.assert_array_equal(b["x"][:, 1], -2 * b["y"].astype(np.float32))
    assert b["x"].dtype == np.float32 and b["y"].dtype == np.int32


def test_drop_remainder_and_no_shuffle():
  got = list(P.batches(_data(10), batch_size=4, seed=0, num_epochs=1))
  assert len(got) == 2 and len(set(_ys(got))) == 8
  plain = list(P.batches(_data(10), batch_size=4, seed=0, num_epochs=2, shuffle=False,
                         drop_remainder=False))
  assert _ys(plain) == list(range(10)) * 2


def test_infinite_stream_counts_are_balanced():
  n, B = 12, 5
  ys = _ys(_take(P.batches(_data(n), batch_size=B, seed=3), 12))  # 60 examples = 5 epochs
  assert collections.Counter(ys) == {i: 5 for i in range(n)}


def test_deterministic_in_seed():
  a = _take(P.batches(_data(20), batch_size=4, seed=11), 6)
  b = _take(P.batches(_data(20), batch_size=4, seed=11), 6)
  c = _take(P.batches(_data(20), batch_size=4, seed=12), 6)
  _assert_same(a, b)
  assert _ys(a) != _ys(c)


def test_resume_from_state_is_exact():
  # (grain's index shuffle is slow on tiny domains: use n ~ 200 where many rows are read.)
  data = _data(199)
  it = P.batches(data, batch_size=48, seed=5)
  _take(it, 3)
  state = it.get_state()
  state = json.loads(json.dumps(state))  # checkpointable as plain JSON
  expected = _take(it, 6)  # crosses two epoch boundaries (199 is not a multiple of 48)
  fresh = P.batches(data, batch_size=48, seed=5)
  fresh.set_state(state)
  _assert_same(_take(fresh, 6), expected)
  # Rewinding the same iterator works too.
  it.set_state(state)
  _assert_same(_take(it, 6), expected)


def test_process_slices_concatenate_to_the_global_batch():
  data, B, steps = _data(199), 48, 5  # 5 steps cross an epoch boundary
  glob = _take(P.batches(data, batch_size=B, seed=2, process_index=0, process_count=1), steps)
  _assert_same(glob, _take(P.batches(data, batch_size=B, seed=2), steps))  # jax default: 1 process
  for pc in (2, 3, 4):
    parts = [_take(P.batches(data, batch_size=B, seed=2, process_index=i, process_count=pc,
                             read_options=_NO_PREFETCH), steps) for i in range(pc)]
    for step in range(steps):
      for k in ("x", "y"):
        assert all(p[step][k].shape[0] == B // pc for p in parts)
        np.testing.assert_array_equal(
            np.concatenate([p[step][k] for p in parts]), glob[step][k])


class _CountingSource:
  """A random-access source that records which examples were read."""

  def __init__(self, n):
    self.n, self.reads = n, []

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    self.reads.append(i)
    return {"v": np.full((2,), i, np.int64)}


def test_random_access_source_and_each_process_reads_only_its_rows():
  src = _CountingSource(8)
  it = P.batches(src, batch_size=4, seed=0, num_epochs=1, process_index=1, process_count=2,
                 read_options=None)
  got = list(it)
  assert len(got) == 2 and got[0]["v"].shape == (2, 2)
  seen = np.concatenate([b["v"][:, 0] for b in got])
  assert sorted(src.reads) == sorted(seen.tolist()) and len(src.reads) == 4
  glob = list(P.batches(_CountingSource(8), batch_size=4, seed=0, num_epochs=1,
                        process_count=1, process_index=0))
  np.testing.assert_array_equal(seen, np.concatenate([b["v"][2:, 0] for b in glob]))


def test_nested_and_jax_array_data():
  data = {"a": {"b": jnp.arange(6, dtype=jnp.int32)}, "c": np.ones((6, 2, 2), np.float32)}
  (b,) = list(P.batches(data, batch_size=6, seed=0, num_epochs=1))
  assert isinstance(b["a"]["b"], np.ndarray) and sorted(b["a"]["b"].tolist()) == list(range(6))
  assert b["c"].shape == (6, 2, 2)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ({"batch_size": 2.0}, TypeError, "batch_size must be an int"),
    ({"seed": -1}, ValueError, "seed must be >= 0"),
    ({"num_epochs": 0}, ValueError, "num_epochs must be >= 1"),
    ({"process_index": 2, "process_count": 2}, ValueError, "process_index must be <= 1"),
    ({"process_index": 0, "process_count": 0}, ValueError, "process_count must be >= 1"),
    ({"batch_size": 6, "process_index": 0, "process_count": 4}, ValueError,
     "batch_size must be divisible by process_count=4, got 6"),
    ({"batch_size": 11, "num_epochs": 1}, ValueError, "no full batch"),
    ({"batch_size": 4, "num_epochs": 1, "drop_remainder": False, "process_index": 0,
      "process_count": 2}, ValueError, "partial final batch cannot be split evenly"),
])
def test_argument_errors(kwargs, exc, match):
  kw = {"batch_size": 2, "seed": 0} | kwargs
  with pytest.raises(exc, match=match):
    P.batches(_data(10), **kw)


def test_data_errors():
  kw = {"batch_size": 2, "seed": 0}
  with pytest.raises(ValueError, match=r"same leading length, got 4 for data\['a'\] and 3"):
    P.batches({"a": np.zeros(4), "b": np.zeros((3, 2))}, **kw)
  with pytest.raises(ValueError, match=r"data\['a'\] must have rank >= 1"):
    P.batches({"a": np.float32(1.0)}, **kw)
  with pytest.raises(ValueError, match="must contain at least one array"):
    P.batches({}, **kw)
  with pytest.raises(TypeError, match=r"data\['a'\]\[0\]\[0\] must be an array, got int"):
    P.batches({"a": [[1, 2]]}, **kw)
  with pytest.raises(TypeError, match="mapping of arrays or a random-access source"):
    P.batches(5, **kw)
  with pytest.raises(ValueError, match="at least one example, got 0"):
    P.batches({"a": np.zeros((0, 2))}, **kw)
  with pytest.raises(ValueError, match="at least one example, got 0"):
    P.batches(_CountingSource(0), **kw)


# ------------------------------------------------------------------------------- to_global


@pytest.mark.parametrize("axis_types", [None, (jax.sharding.AxisType.Auto,) * 2])
def test_to_global_on_a_mesh(axis_types):
  kw = {} if axis_types is None else {"axis_types": axis_types}
  mesh = jax.make_mesh((4, 2), ("data", "fsdp"), **kw)
  spec = PartitionSpec(("data", "fsdp"))
  batch = next(P.batches(_data(32), batch_size=16, seed=0))
  out = P.to_global(batch, NamedSharding(mesh, spec))
  for k in batch:
    assert isinstance(out[k], jax.Array) and out[k].shape == batch[k].shape
    assert out[k].sharding == NamedSharding(mesh, spec)
    assert len(out[k].addressable_shards) == 8
    np.testing.assert_array_equal(np.asarray(out[k]), batch[k])
  with jax.set_mesh(mesh):
    out2 = P.to_global(batch, {"x": spec, "y": PartitionSpec("data")})
  assert out2["y"].sharding.spec == PartitionSpec("data")
  np.testing.assert_array_equal(np.asarray(out2["x"]), batch["x"])


def test_to_global_errors():
  batch = {"x": np.zeros((8, 2), np.float32)}
  with pytest.raises(ValueError, match="PartitionSpec under `with jax.set_mesh"):
    P.to_global(batch, PartitionSpec("data"))
  with pytest.raises(TypeError, match="must be a jax.sharding.Sharding or PartitionSpec, got str"):
    P.to_global(batch, "data")
  mesh = jax.make_mesh((8,), ("data",))
  s = NamedSharding(mesh, PartitionSpec("data"))
  with pytest.raises(ValueError, match="pytree prefix of batch"):
    P.to_global(batch, {"x": s, "z": s})


def test_grain_iterator_type():
  it = P.batches(_data(4), batch_size=2, seed=0)
  assert isinstance(it, grain.DatasetIterator)
  assert list(itertools.islice(it, 0)) == []
