"""The single-process fast path of ``batches`` against grain's per-element pipeline."""

import itertools
import json

import grain
import numpy as np
import pytest

from bottleneck_jax.data import pipeline as P

_NO_PREFETCH = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


def _data(n):
  i = np.arange(n)
  return {"x": np.stack([i, -3 * i], axis=1).astype(np.float32),
          "nested": {"y": i.astype(np.int32)}}


def _fast(n, **kw):
  it = P.batches(_data(n), process_index=0, process_count=1, **kw)
  assert isinstance(it, P._FastBatches)
  return it


def _grain(monkeypatch, n, **kw):
  with monkeypatch.context() as m:
    m.setattr(P, "_FAST_PATH", False)
    it = P.batches(_data(n), process_index=0, process_count=1, read_options=_NO_PREFETCH, **kw)
  assert not isinstance(it, P._FastBatches)
  return it


def _assert_same(a, b):
  assert len(a) == len(b)
  for u, v in zip(a, b):
    assert u.keys() == v.keys() and u["nested"].keys() == v["nested"].keys()
    for x, y in ((u["x"], v["x"]), (u["nested"]["y"], v["nested"]["y"])):
      assert x.dtype == y.dtype and x.shape == y.shape
      np.testing.assert_array_equal(x, y)


# grain's index_shuffle costs about the same per epoch for any small n (~30 ms): few epochs.
@pytest.mark.parametrize("n,kw,steps", [
    (50, {"batch_size": 16, "seed": 3}, 7),  # infinite; batches 3 and 6 straddle epochs
    (50, {"batch_size": 16, "seed": 1, "drop_remainder": False, "num_epochs": 2}, None),
    (50, {"batch_size": 16, "seed": 2, "num_epochs": 2}, None),  # drops the last 4 positions
    (3, {"batch_size": 7, "seed": 5}, 1),  # the batch spans three epochs
    (9, {"batch_size": 4, "seed": 0, "shuffle": False, "drop_remainder": False,
         "num_epochs": 2}, None),
    (1, {"batch_size": 2, "seed": 9}, 3),
])
def test_fast_path_equals_grain_pipeline(monkeypatch, n, kw, steps):
  take = (lambda it: list(it)) if steps is None else (lambda it: list(itertools.islice(it, steps)))
  fast, ref = take(_fast(n, **kw)), take(_grain(monkeypatch, n, **kw))
  _assert_same(fast, ref)
  if kw.get("shuffle", True) and n > 3:  # the shuffled epochs differ from each other
    ys = np.concatenate([b["nested"]["y"] for b in fast])
    assert ys[:n].tolist() != ys[n:2 * n].tolist()
  if steps is None:  # finite streams: same length, same final state
    assert len(fast) == len(ref)


def test_state_resumes_and_is_shared_with_grain(monkeypatch):
  kw = {"batch_size": 16, "seed": 7}
  fast, ref = _fast(50, **kw), _grain(monkeypatch, 50, **kw)
  for _ in range(4):  # mid-epoch (position 64 of 50-example epochs)
    next(fast), next(ref)
  state = fast.get_state()
  assert state == ref.get_state() == {"next_index": 4}
  state = json.loads(json.dumps(state))
  expected = [next(ref) for _ in range(2)]
  _assert_same([next(fast) for _ in range(2)], expected)
  # a fresh fast iterator and a fresh grain iterator, restored from either state
  for it in (_fast(50, **kw), _grain(monkeypatch, 50, **kw)):
    it.set_state(state)
    _assert_same([next(it) for _ in range(2)], expected)
  grain_state = ref.get_state()
  again = _fast(50, **kw)
  again.set_state(grain_state)
  _assert_same([next(again)], [next(ref)])
  # finite stream: the same end, the same range check
  fin = {"batch_size": 16, "seed": 7, "num_epochs": 1}
  f, g = _fast(50, **fin), _grain(monkeypatch, 50, **fin)
  assert len(list(f)) == len(list(g)) == 3 and f.get_state() == g.get_state()
  for it in (f, g):
    with pytest.raises(IndexError, match="out of"):
      it.set_state({"next_index": 4})
  f.close()
  with pytest.raises(ValueError, match="closed"):
    next(f)


def test_falls_back_when_grain_internals_change(monkeypatch):
  kw = {"batch_size": 16, "seed": 11}
  expected = list(itertools.islice(_fast(50, **kw), 4))
  for attr, value in [("_SEED_ATTR", "_no_such_attribute"),  # the seed attribute is gone
                      ("_index_shuffle", None),  # the private module failed to import
                      # another permutation: the probe against grain's shuffle catches it
                      ("_index_shuffle", lambda i, max_index, seed, rounds: max_index - i)]:
    with monkeypatch.context() as m:
      m.setattr(P, attr, value)
      it = P.batches(_data(50), process_index=0, process_count=1, read_options=_NO_PREFETCH,
                     **kw)
      assert not isinstance(it, P._FastBatches), attr
      _assert_same(list(itertools.islice(it, 4)), expected)
  # no shuffle needs no grain internals; other sources and several processes use grain
  monkeypatch.setattr(P, "_index_shuffle", None)
  assert isinstance(P.batches(_data(10), batch_size=4, seed=0, shuffle=False,
                              process_count=1, process_index=0), P._FastBatches)
  for it in (P.batches(_data(10), batch_size=4, seed=0, process_count=2, process_index=1,
                       read_options=_NO_PREFETCH),
             P.batches([{"y": i} for i in range(10)], batch_size=4, seed=0, process_count=1,
                       process_index=0, read_options=_NO_PREFETCH)):
    assert not isinstance(it, P._FastBatches)
