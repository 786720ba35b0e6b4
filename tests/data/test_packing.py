"""Tests for best-fit-decreasing sequence packing and the packed attention mask."""

from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from bottleneck_jax import data as PK


def naive_best_fit_decreasing(lengths, capacity):
  """O(n*m) reference: scan all bins for the tightest fit."""
  order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
  remaining, bins = [], []
  for i in order:
    best = None
    for b, r in enumerate(remaining):
      if r >= lengths[i] and (best is None or r < remaining[best]):
        best = b
    if best is None:
      remaining.append(capacity - lengths[i])
      bins.append([i])
    else:
      remaining[best] -= lengths[i]
      bins[best].append(i)
  return bins


@pytest.mark.parametrize("seed", range(5))
def test_bfd_matches_naive_best_fit(seed):
  rng = np.random.default_rng(seed)
  capacity = int(rng.integers(8, 64))
  lengths = [int(n) for n in rng.integers(1, capacity + 1, size=int(rng.integers(1, 200)))]
  bins = PK.best_fit_decreasing(lengths, capacity)
  ref = naive_best_fit_decreasing(lengths, capacity)
  assert len(bins) == len(ref)
  assert sorted(i for b in bins for i in b) == list(range(len(lengths)))  # each item once
  assert all(sum(lengths[i] for i in b) <= capacity for b in bins)
  # Same multiset of bin loads (tie-breaking between equal bins cannot change it).
  assert sorted(sum(lengths[i] for i in b) for b in bins) == \
      sorted(sum(lengths[i] for i in b) for b in ref)
  # Lower bound: no packing uses fewer than ceil(total / capacity) bins.
  assert len(bins) >= -(-sum(lengths) // capacity)


def test_bfd_known_example():
  assert PK.best_fit_decreasing([5, 3, 4, 2, 6], 8) == [[4, 3], [0, 1], [2]]
  assert PK.best_fit_decreasing([], 8) == []


def test_pack_hand_example():
  seqs = [[11, 12, 13], [21, 22], [31], [41, 42, 43, 44]]
  b = PK.pack_sequences(seqs, seq_len=5, pad_id=-1, ignore_index=-100)
  # BFD: 4 -> row0 (rem 1); 3 -> row1 (rem 2); 2 -> row1 (rem 0); 1 -> row0 (rem 0).
  np.testing.assert_array_equal(b.tokens, [[41, 42, 43, 44, 31], [11, 12, 13, 21, 22]])
  np.testing.assert_array_equal(b.segment_ids, [[1, 1, 1, 1, 2], [1, 1, 1, 2, 2]])
  np.testing.assert_array_equal(b.positions, [[0, 1, 2, 3, 0], [0, 1, 2, 0, 1]])
  np.testing.assert_array_equal(b.labels, [[42, 43, 44, -100, -100], [12, 13, -100, 22, -100]])
  assert b.stats.efficiency == 1.0 and b.stats.num_rows == 2 and b.stats.real_tokens == 10
  assert b.tokens.dtype == np.int32
  # With padding, and padded to a fixed number of rows.
  b2 = PK.pack_sequences([[1, 2], [3]], seq_len=4, num_rows=3)
  np.testing.assert_array_equal(b2.tokens, [[1, 2, 3, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
  np.testing.assert_array_equal(b2.segment_ids, [[1, 1, 2, 0], [0] * 4, [0] * 4])
  np.testing.assert_array_equal(b2.labels, [[2, -100, -100, -100]] + [[-100] * 4] * 2)
  assert b2.stats.efficiency == pytest.approx(3 / 12)


def _segments(batch):
  out = []
  for r in range(batch.tokens.shape[0]):
    for s in range(1, batch.segment_ids[r].max() + 1):
      out.append(tuple(batch.tokens[r][batch.segment_ids[r] == s].tolist()))
  return out


def test_pack_random_every_token_once_and_consistent():
  rng = np.random.default_rng(7)
  seqs = [rng.integers(1, 1000, size=int(n)) for n in rng.integers(1, 33, size=60)]
  b = PK.pack_sequences(seqs, seq_len=32)
  assert Counter(_segments(b)) == Counter(tuple(s.tolist()) for s in seqs)
  total = sum(len(s) for s in seqs)
  assert b.stats.real_tokens == total == int((b.segment_ids > 0).sum())
  assert b.stats.efficiency == pytest.approx(total / b.tokens.size)
  assert b.tokens.shape[0] == len(naive_best_fit_decreasing([len(s) for s in seqs], 32))
  for r in range(b.tokens.shape[0]):  # naive per-token check of positions and labels
    for t in range(32):
      s = b.segment_ids[r, t]
      if s == 0:
        assert b.labels[r, t] == -100 and b.tokens[r, t] == 0
        continue
      start = t - b.positions[r, t]
      assert (b.segment_ids[r, start:t + 1] == s).all() and (start == 0 or
                                                             b.segment_ids[r, start - 1] != s)
      nxt_same = t + 1 < 32 and b.segment_ids[r, t + 1] == s
      assert b.labels[r, t] == (b.tokens[r, t + 1] if nxt_same else -100)
  # Packing beats padding each sequence to its own row.
  assert b.stats.efficiency > total / (len(seqs) * 32)


def test_overlong_handling():
  seqs = [list(range(1, 11)), [7, 8]]
  t = PK.pack_sequences(seqs, seq_len=4, overlong="truncate")
  assert t.stats.num_truncated == 1 and t.stats.num_dropped_tokens == 6
  assert Counter(_segments(t)) == Counter([(1, 2, 3, 4), (7, 8)])
  s = PK.pack_sequences(seqs, seq_len=4, overlong="split")
  assert s.stats.num_split == 1 and s.stats.num_segments == 4
  assert Counter(_segments(s)) == Counter([(1, 2, 3, 4), (5, 6, 7, 8), (9, 10), (7, 8)])
  assert s.stats.real_tokens == 12 and s.tokens.shape == (3, 4)
  with pytest.raises(ValueError, match="pack_sequences: sequences\\[0\\] has length 10 > "
                                       "seq_len=4"):
    PK.pack_sequences(seqs, seq_len=4, overlong="error")
  e = PK.pack_sequences([[], [5]], seq_len=2)
  assert e.stats.num_empty == 1 and e.stats.num_sequences == 2 and e.tokens.tolist() == [[5, 0]]


def naive_mask(seg, causal):
  t = seg.shape[-1]
  m = np.zeros(seg.shape[:-1] + (t, t), bool)
  for idx in np.ndindex(seg.shape[:-1]):
    for q in range(t):
      for k in range(t):
        m[idx + (q, k)] = seg[idx + (q,)] == seg[idx + (k,)] and seg[idx + (q,)] > 0 and \
            (not causal or k <= q)
  return m


def test_packed_attention_mask_vs_loops_jit_vmap():
  seg = PK.pack_sequences([[1, 2, 3], [4, 5], [6], [7, 8, 9, 10]], seq_len=6).segment_ids
  for causal in (True, False):
    np.testing.assert_array_equal(PK.packed_attention_mask(seg, causal=causal),
                                  naive_mask(seg, causal))
  f = jax.jit(lambda s: PK.packed_attention_mask(s))
  np.testing.assert_array_equal(jax.vmap(f)(jnp.asarray(seg)), naive_mask(seg, True))
  mesh = jax.make_mesh((4, 2), ("data", "fsdp"))
  seg8 = np.tile(seg, (4, 1))  # [8, 6]
  with jax.set_mesh(mesh):
    out = f(jax.device_put(seg8, P(("data", "fsdp"))))
  np.testing.assert_array_equal(out, naive_mask(seg8, True))


def test_errors():
  with pytest.raises(ValueError, match="pack_sequences: seq_len must be >= 1"):
    PK.pack_sequences([[1]], seq_len=0)
  with pytest.raises(TypeError, match="pack_sequences: seq_len must be an int"):
    PK.pack_sequences([[1]], seq_len=2.0)
  with pytest.raises(ValueError, match="pack_sequences: overlong must be one of"):
    PK.pack_sequences([[1]], seq_len=2, overlong="drop")
  with pytest.raises(ValueError, match="pack_sequences: sequences\\[1\\] must be 1-D"):
    PK.pack_sequences([[1], [[1, 2]]], seq_len=2)
  with pytest.raises(TypeError, match="pack_sequences: sequences\\[0\\] must hold integer"):
    PK.pack_sequences([[1.5]], seq_len=2)
  with pytest.raises(TypeError, match="pack_sequences: sequences must be a list"):
    PK.pack_sequences(np.ones((2, 3), np.int32), seq_len=2)
  with pytest.raises(ValueError, match="pack_sequences: num_rows=1 is too small"):
    PK.pack_sequences([[1, 2], [3, 4]], seq_len=2, num_rows=1)
  with pytest.raises(ValueError, match="best_fit_decreasing: lengths must be in \\[1, "
                                       "capacity=4\\], got 5"):
    PK.best_fit_decreasing([1, 5], 4)
  with pytest.raises(ValueError, match="best_fit_decreasing: capacity must be >= 1"):
    PK.best_fit_decreasing([1], 0)
  with pytest.raises(TypeError, match="packed_attention_mask: segment_ids must have an integer"):
    PK.packed_attention_mask(jnp.ones((2, 3)))
  with pytest.raises(ValueError, match="packed_attention_mask: segment_ids must have rank >= 1"):
    PK.packed_attention_mask(jnp.int32(1))
  with pytest.raises(TypeError, match="packed_attention_mask: causal must be a bool"):
    PK.packed_attention_mask(jnp.ones(3, jnp.int32), causal=1)


def test_non_integer_lengths_and_out_of_range_ids_are_errors():
  """Regressions: float lengths were truncated (2.7 -> 2) and ids beyond int32 wrapped."""
  with pytest.raises(TypeError, match=r"best_fit_decreasing: lengths must be ints, got float 2.7"):
    PK.best_fit_decreasing([3, 2.7], 4)
  with pytest.raises(TypeError, match=r"best_fit_decreasing: lengths must be ints"):
    PK.best_fit_decreasing(np.array([3.0, 2.0]), 4)
  with pytest.raises(TypeError, match=r"best_fit_decreasing: lengths must be a sequence"):
    PK.best_fit_decreasing(5, 4)
  assert PK.best_fit_decreasing(np.array([3, 2], np.int64), 4) == [[0], [1]]
  big = np.array([1, 2**31], np.int64)  # int32 would wrap 2**31 to -2**31
  with pytest.raises(ValueError, match=r"pack_sequences: sequences\[1\] must hold token ids in"):
    PK.pack_sequences([[1, 2], big], seq_len=4)
  with pytest.raises(ValueError, match=r"pack_sequences: pad_id must be <= 2147483647"):
    PK.pack_sequences([[1, 2]], seq_len=4, pad_id=2**31)
  ok = PK.pack_sequences([np.array([1, 2**31 - 1], np.int64)], seq_len=4)
  assert ok.tokens[0, 1] == 2**31 - 1
