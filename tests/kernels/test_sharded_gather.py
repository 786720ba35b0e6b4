"""Gathers, segment sums and searchsorted of ``kernels.sharding`` on an 8-device Explicit mesh
(the layout ``train()`` uses: the batch sharded over ``("data", "fsdp")``), checked against NumPy
indexing / ``np.add.at`` / ``np.searchsorted``, and the same calls without a mesh."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

from bottleneck_jax.kernels import sharding as S

BATCH = P(("data", "fsdp"))
RNG = np.random.default_rng(0)
TABLE = RNG.normal(size=(6, 3)).astype(np.float32)             # replicated [K, d]
VEC = RNG.normal(size=(6,)).astype(np.float32)                 # replicated [K]
IDX = RNG.integers(0, 6, size=(16, 2)).astype(np.int32)        # batch-sharded [B, 2]
ROWS = RNG.normal(size=(16, 3)).astype(np.float32)             # batch-sharded [B, d]
PICK = np.array([15, 0, 7, 7, 3], np.int32)                    # replicated rows of ROWS
SEG = np.array([0, 4, 2, 2, -1, 5, 1, 0, 4, 4, 3, 9, 2, 0, 1, 3], np.int32)  # -1, 5, 9 dropped
CUM = np.cumsum(RNG.uniform(size=10)).astype(np.float32)       # sorted [10]
Q = RNG.uniform(0, 6, size=(16,)).astype(np.float32)           # batch-sharded queries


def _all(table, vec, idx, rows, pick, seg, cum, q):
  return (S.take(table, idx), S.take(vec, idx[:, 0]), S.take(rows, pick),
          S.segment_sum(rows, seg, 5), S.searchsorted(cum, q, side="right"), S.replicate(rows))


def _check_values(out):
  t2, t1, picked, sums, pos, rep = (np.asarray(o) for o in out)
  np.testing.assert_array_equal(t2, TABLE[IDX])
  np.testing.assert_array_equal(t1, VEC[IDX[:, 0]])
  np.testing.assert_array_equal(picked, ROWS[PICK])
  ref = np.zeros((5, 3), np.float32)
  keep = (SEG >= 0) & (SEG < 5)
  np.add.at(ref, SEG[keep], ROWS[keep])
  np.testing.assert_allclose(sums, ref, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(pos, np.searchsorted(CUM, Q, side="right"))
  np.testing.assert_array_equal(rep, ROWS)


def test_explicit_mesh_with_batch_sharded_indices_matches_numpy():
  mesh = jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(AxisType.Explicit,) * 2)
  with jax.set_mesh(mesh):
    args = (jax.device_put(TABLE, P()), jax.device_put(VEC, P()), jax.device_put(IDX, BATCH),
            jax.device_put(ROWS, BATCH), jax.device_put(PICK, P()), jax.device_put(SEG, BATCH),
            jax.device_put(CUM, P()), jax.device_put(Q, BATCH))
    out = jax.jit(_all)(*args)
  _check_values(out)
  specs = [o.sharding.spec for o in out]
  assert specs[0] == P(("data", "fsdp"), None, None)   # rows follow the indices
  assert specs[1] == P(("data", "fsdp"))
  assert specs[4] == P(("data", "fsdp"))               # positions follow the queries
  for o in (out[2], out[3], out[5]):                   # gathered / summed over rows: replicated
    assert o.sharding.is_fully_replicated, o.sharding


def test_take_keeps_table_sharding_of_other_axes_except_axes_used_by_indices():
  mesh = jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(AxisType.Explicit,) * 2)
  table = np.arange(6 * 4, dtype=np.float32).reshape(6, 4)
  idx = IDX[:, 0]
  with jax.set_mesh(mesh):
    t = jax.device_put(table, P(None, "fsdp"))
    f = jax.jit(S.take)
    by_data = f(t, jax.device_put(idx, P("data")))      # "fsdp" free: the columns keep it
    by_both = f(t, jax.device_put(idx, BATCH))          # "fsdp" used by the rows: columns gathered
  np.testing.assert_array_equal(np.asarray(by_data), table[idx])
  np.testing.assert_array_equal(np.asarray(by_both), table[idx])
  assert by_data.sharding.spec == P("data", "fsdp")
  assert by_both.sharding.spec == P(("data", "fsdp"), None)


def test_without_mesh_the_plain_calls():
  a = jnp.ones(3)
  assert S.replicate(a) is a
  _check_values(jax.jit(_all)(TABLE, VEC, IDX, ROWS, PICK, SEG, CUM, Q))
