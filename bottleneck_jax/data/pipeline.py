"""Deterministic, checkpointable, multi-host batching with grain.

:func:`batches` builds a grain pipeline over example *indices*:

.. code-block:: text

   MapDataset.source(range(n)).seed(seed).shuffle()     # one permutation per epoch
             .repeat(num_epochs)                        # epochs follow each other
             .batch(B, drop_remainder=...)              # GLOBAL batches of indices
             .map(take rows [i*B/P, (i+1)*B/P))         # this process's slice
             .map(gather the examples)                  # dict of numpy arrays
             .to_iter_dataset()

Properties (all tested):

* **Deterministic.** The sequence of global batches depends only on ``(n, batch_size, seed,
  shuffle, drop_remainder, num_epochs)``: each epoch visits every example exactly once, in the
  order of grain's seeded per-epoch permutation. Epochs are concatenated *before* batching, so
  when ``n`` is not a multiple of ``batch_size`` a batch may straddle two epochs; only the very
  end of a finite stream can leave a partial batch (dropped when ``drop_remainder``).
* **Independent of the number of processes.** Process ``i`` of ``P`` receives rows
  ``[i*B/P, (i+1)*B/P)`` of every global batch, so concatenating the outputs of all processes
  gives exactly the single-process batch, whatever ``P`` is. Indices are sliced *before* the
  examples are read, so each process only reads its own rows. ``B`` must be divisible by ``P``.
* **Checkpointable.** The returned :class:`grain.DatasetIterator` has ``get_state()`` /
  ``set_state(state)``; restoring a state and iterating yields exactly the batches that
  followed it (the state is a small dict, ``{"next_index": k}``, that can go into an Orbax
  checkpoint, e.g. through ``grain.checkpoint.CheckpointSave``).
* **Fast path.** For a mapping of arrays on a single process the same batches are produced
  without grain's per-element pipeline: each epoch's permutation is computed once with grain's
  own ``index_shuffle`` and per-epoch seed, then sliced into batches (about 3x less CPU per
  batch). The iterator is still a ``grain.DatasetIterator`` with the same ``{"next_index": k}``
  state, so checkpoints move freely between the two. It relies on grain internals (the index
  shuffle module, the shuffle's resolved seed); when they are missing, or a probe of a few
  positions disagrees with grain's shuffle, the grain pipeline above is used.

:func:`to_global` then assembles the per-process batches into global ``jax.Array`` leaves with
``jax.make_array_from_process_local_data``.

References:
  Grain, "Training a JAX model with Grain",
  https://google-grain.readthedocs.io/en/latest/tutorials/dataset_basic_tutorial.html
  JAX, "Distributed data loading in a multi-host/multi-process environment",
  https://docs.jax.dev/en/latest/distributed_data_loading.html
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import jax
import numpy as np

from bottleneck_jax.core import validation as V

__all__ = ["batches", "to_global"]

# A small prefetch buffer: batches are cheap to gather, and the grain default (500 elements)
# would hold hundreds of batches in memory.
_DEFAULT_READ_OPTIONS = {"num_threads": 4, "prefetch_buffer_size": 8}


class _IndexBatch:
  """``batch_fn``: a list of example indices -> ``int64[b]``."""

  def __call__(self, indices):
    return np.asarray(indices, dtype=np.int64)


class _ProcessSlice:
  """Rows ``[i*b/P, (i+1)*b/P)`` of a global batch of indices."""

  def __init__(self, process_index: int, process_count: int):
    self.index, self.count = process_index, process_count

  def __call__(self, idx: np.ndarray) -> np.ndarray:
    b = idx.shape[0]
    return idx[self.index * b // self.count:(self.index + 1) * b // self.count]


class _GatherArrays:
  """Indices -> the same pytree of arrays, each leaf indexed by the rows."""

  def __init__(self, data):
    self.data = data

  def __call__(self, idx: np.ndarray):
    return jax.tree.map(lambda a: a[idx], self.data)


class _GatherSource:
  """Indices -> stacked examples ``source[i]`` of a random-access source."""

  def __init__(self, source):
    self.source = source

  def __call__(self, idx: np.ndarray):
    records = [self.source[int(i)] for i in idx]
    if not records:
      raise ValueError("batches: cannot gather an empty batch")
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *records)


try:  # grain's per-index permutation (a private module; absent -> the grain pipeline is used)
  from grain._src.python.experimental.index_shuffle.python import (
      index_shuffle_module as _index_shuffle_module,
  )
  _index_shuffle = _index_shuffle_module.index_shuffle
except (ImportError, AttributeError):  # pragma: no cover - depends on the installed grain
  _index_shuffle = None

_FAST_PATH = True  # the in-process fast path of :func:`batches` (tests turn it off)
_SEED_ATTR = "_seed"  # grain's ShuffleMapDataset attribute holding its resolved seed
_SHUFFLE_ROUNDS = 4  # the rounds grain's ShuffleMapDataset passes to index_shuffle


class _FastBatches(grain.DatasetIterator):
  """Single-process batches of an in-memory pytree, without grain's per-element pipeline.

  Yields exactly what ``source(range(n)).seed(seed).shuffle().repeat(e).batch(B)`` followed by
  the gather yields through grain: stream position ``p`` is example ``perm_{p // n}[p % n]``
  where ``perm_e`` is grain's permutation of epoch ``e`` (``index_shuffle`` with the per-epoch
  seed ``(s + e) mod 2**32``, ``s`` the seed grain resolves for the shuffle; the identity when
  not shuffling), and batch ``k`` holds positions ``[k*B, min((k+1)*B, total))``. Each epoch's
  permutation is computed once, in one pass, instead of once per element through the grain
  pipeline. The state is grain's, ``{"next_index": k}``, so states move freely between the two
  iterators.
  """

  def __init__(self, n: int, gather, batch_size: int, epoch_seed, num_epochs: int | None,
               drop_remainder: bool):
    super().__init__()
    self._n, self._gather, self._batch_size = n, gather, batch_size
    self._epoch_seed = epoch_seed  # None: no shuffle; else the shuffle's resolved seed
    # Lengths exactly as grain's RepeatMapDataset and BatchMapDataset compute them.
    self._total = sys.maxsize if num_epochs is None else n * num_epochs
    self._length = (self._total // batch_size if drop_remainder
                    else math.ceil(self._total / batch_size))
    self._next_index = 0
    self._perms: dict[int, np.ndarray] = {}

  def _position(self, epoch: int, i: int) -> int:
    if self._epoch_seed is None:
      return i
    return int(_index_shuffle(i, max_index=self._n - 1, seed=(self._epoch_seed + epoch) % 2**32,
                              rounds=_SHUFFLE_ROUNDS))

  def _perm(self, epoch: int) -> np.ndarray:
    if self._epoch_seed is None:
      return np.arange(self._n, dtype=np.int64)
    return np.fromiter((self._position(epoch, i) for i in range(self._n)), np.int64, self._n)

  def _indices(self, k: int) -> np.ndarray:
    n = self._n
    start = k * self._batch_size
    stop = min(self._total, (k + 1) * self._batch_size)
    first, last = start // n, (stop - 1) // n
    perms = {e: self._perms[e] if e in self._perms else self._perm(e)
             for e in range(first, last + 1)}
    self._perms = perms  # keep only the epochs of the latest batch
    parts = [perms[e][max(start - e * n, 0):min(stop - e * n, n)] for e in range(first, last + 1)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)

  def __next__(self):
    self._assert_not_closed()
    if self._next_index >= self._length:
      raise StopIteration
    idx = self._indices(self._next_index)
    self._next_index += 1
    return self._gather(idx)

  def get_state(self) -> dict[str, Any]:
    return {"next_index": self._next_index}

  def set_state(self, state: dict[str, Any]) -> None:
    index = int(state["next_index"])
    if index < 0 or index > self._length:
      raise IndexError(f"Checkpoint `next_index` {index} is out of range for dataset of length "
                       f"{self._length}.")
    self._next_index = index

  def _get_next_index(self) -> int:
    return self._next_index

  def _set_next_index(self, index: int) -> None:
    self.set_state({"next_index": index})

  def close(self) -> None:
    self._closed = True

  def __str__(self) -> str:
    return f"_FastBatches(n={self._n}, batch_size={self._batch_size})"


def _fast_batches(n, gather, *, batch_size, seed, shuffle, drop_remainder,
                  num_epochs) -> _FastBatches | None:
  """The fast iterator, or ``None`` when grain's internals it reproduces cannot be confirmed."""
  epoch_seed = None
  if shuffle:
    if _index_shuffle is None:
      return None
    shuffled = grain.MapDataset.source(range(n)).seed(int(seed)).shuffle()
    epoch_seed = getattr(shuffled, _SEED_ATTR, None)
    if not isinstance(epoch_seed, int) or isinstance(epoch_seed, bool):
      return None
  it = _FastBatches(n, gather, int(batch_size), epoch_seed,
                    None if num_epochs is None else int(num_epochs), bool(drop_remainder))
  if shuffle:
    # Guard against a grain whose shuffle differs from what is reproduced here (another seed
    # schedule, rounds, ...): a few positions in the first two epochs must agree with grain's.
    reference = shuffled.repeat(None)
    for p in sorted({0, 1, n - 1, n, n + 1, 2 * n - 1}):
      if p >= 0 and int(reference[p]) != it._position(*divmod(p, n)):
        return None
  return it


def _prepare_arrays(fn: str, data: Mapping) -> tuple[int, Any]:
  leaves_with_path = jax.tree_util.tree_leaves_with_path(data)
  if not leaves_with_path:
    raise ValueError(f"{fn}: data must contain at least one array, got an empty mapping")
  n = None
  first = None
  for path, leaf in leaves_with_path:
    name = "data" + jax.tree_util.keystr(path)
    if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
      raise TypeError(f"{fn}: {name} must be an array, got {type(leaf).__name__}")
    V.check_rank(fn, name, leaf, min_rank=1)
    if n is None:
      n, first = int(leaf.shape[0]), name
    elif int(leaf.shape[0]) != n:
      raise ValueError(f"{fn}: every array in data must have the same leading length, got "
                       f"{n} for {first} and {int(leaf.shape[0])} for {name}")
  data = jax.tree.map(np.asarray, data)  # jax arrays -> host numpy, once.
  return n, data


def batches(data: Mapping[str, Any] | Sequence[Any], *, batch_size: int, seed: int,
            shuffle: bool = True, drop_remainder: bool = True, num_epochs: int | None = None,
            process_index: int | None = None, process_count: int | None = None,
            read_options: grain.ReadOptions | None = None) -> grain.DatasetIterator:
  """A deterministic, checkpointable iterator over (this process's part of) global batches.

  With ``n`` examples, global batch size ``B`` and ``P`` processes, the global stream is the
  concatenation of ``num_epochs`` seeded permutations of ``0..n-1`` (identity order when
  ``shuffle=False``), cut into consecutive chunks of ``B``; process ``i`` yields rows
  ``[i*B/P, (i+1)*B/P)`` of each chunk. The stream never depends on ``P``.

  Args:
    data: either a mapping (any pytree with dict/list nodes) of arrays sharing their leading
      length ``n`` (e.g. ``{"x": x, "y": y}``), or a random-access source with ``len`` and
      ``[]`` whose items are examples (e.g. a TFDS data source; items are stacked leaf-wise).
    batch_size: GLOBAL batch size ``B >= 1``, divisible by ``process_count``.
    seed: seed of the shuffle, an int ``>= 0``.
    shuffle: shuffle every epoch with a different (seeded) permutation.
    drop_remainder: drop a final partial batch of a finite stream.
    num_epochs: number of passes over the data (``None``: repeat forever).
    process_index: this process (default ``jax.process_index()``).
    process_count: number of processes (default ``jax.process_count()``).
    read_options: grain read options (threads, prefetch); default 4 threads and a prefetch
      buffer of 8 batches. Unused by the single-process fast path for a mapping of arrays
      (module docstring), which reads in the calling thread.

  Returns:
    A ``grain.DatasetIterator`` yielding the same pytree structure as ``data`` (dict of numpy
    arrays) with leading size ``B / P``; ``get_state()`` / ``set_state()`` resume exactly.

  Raises:
    ValueError / TypeError: invalid sizes or arguments (e.g. ``B`` not divisible by ``P``,
      arrays with different leading lengths, a finite stream with no full batch).

  Example:
    >>> import numpy as np
    >>> data = {"x": np.arange(10.0).reshape(10, 1), "y": np.arange(10)}
    >>> it = batches(data, batch_size=4, seed=0, num_epochs=1)
    >>> state = it.get_state()
    >>> first = next(it)
    >>> it.set_state(state)
    >>> bool(np.array_equal(next(it)["y"], first["y"]))
    True
  """
  fn = "batches"
  V.check_scalar(fn, "batch_size", batch_size, low=1, integer=True)
  V.check_scalar(fn, "seed", seed, low=0, integer=True)
  if num_epochs is not None:
    V.check_scalar(fn, "num_epochs", num_epochs, low=1, integer=True)
  if process_count is None:
    process_count = jax.process_count()
  if process_index is None:
    process_index = jax.process_index()
  V.check_scalar(fn, "process_count", process_count, low=1, integer=True)
  V.check_scalar(fn, "process_index", process_index, low=0, high=process_count - 1,
                  integer=True)
  if batch_size % process_count:
    raise ValueError(f"{fn}: batch_size must be divisible by process_count={process_count}, "
                     f"got {batch_size}")

  if isinstance(data, Mapping):
    n, data = _prepare_arrays(fn, data)
    gather = _GatherArrays(data)
  elif hasattr(data, "__len__") and hasattr(data, "__getitem__") and not isinstance(
      data, (str, bytes, np.ndarray)):
    n = len(data)
    gather = _GatherSource(data)
  else:
    raise TypeError(f"{fn}: data must be a mapping of arrays or a random-access source (len and "
                    f"[]), got {type(data).__name__}")
  if n < 1:
    raise ValueError(f"{fn}: data must contain at least one example, got 0")

  if num_epochs is not None:
    total = n * int(num_epochs)
    if drop_remainder and total < batch_size:
      raise ValueError(f"{fn}: batch_size must be <= n * num_epochs = {total} with "
                       f"drop_remainder=True (no full batch), got {batch_size}")
    if not drop_remainder and process_count > 1 and total % batch_size:
      raise ValueError(f"{fn}: drop_remainder=False needs n * num_epochs = {total} divisible by "
                       f"batch_size={batch_size} when process_count > 1 (a partial final batch "
                       "cannot be split evenly across processes); use drop_remainder=True")

  if _FAST_PATH and isinstance(gather, _GatherArrays) and process_count == 1:
    fast = _fast_batches(n, gather, batch_size=batch_size, seed=seed, shuffle=shuffle,
                         drop_remainder=drop_remainder, num_epochs=num_epochs)
    if fast is not None:
      return fast

  ds = grain.MapDataset.source(range(n))
  if shuffle:
    ds = ds.seed(int(seed)).shuffle()
  ds = ds.repeat(None if num_epochs is None else int(num_epochs))
  ds = ds.batch(int(batch_size), drop_remainder=bool(drop_remainder), batch_fn=_IndexBatch())
  if process_count > 1:
    ds = ds.map(_ProcessSlice(int(process_index), int(process_count)))
  ds = ds.map(gather)
  if read_options is None:
    read_options = grain.ReadOptions(**_DEFAULT_READ_OPTIONS)
  return iter(ds.to_iter_dataset(read_options))


def to_global(batch: Any, sharding: Any) -> Any:
  """Assembles per-process batches into global ``jax.Array`` leaves.

  Each leaf ``x`` (this process's rows) becomes
  ``jax.make_array_from_process_local_data(sharding, x)``: a global array whose leading size is
  the sum over processes, laid out by ``sharding``. On one process this is a plain
  ``device_put`` of the full batch.

  Args:
    batch: pytree of host arrays (e.g. a batch from :func:`batches`).
    sharding: a ``jax.sharding.Sharding`` for every leaf, a ``PartitionSpec`` (resolved against
      the mesh set by ``jax.set_mesh``), or a pytree of those that is a prefix of ``batch``.

  Returns:
    The same pytree with global ``jax.Array`` leaves.

  Example:
    >>> mesh = jax.make_mesh((jax.device_count(),), ("data",))
    >>> spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    >>> out = to_global({"x": np.zeros((jax.device_count() * 2, 3))}, spec)
    >>> out["x"].shape[0] == 2 * jax.device_count()
    True
  """
  fn = "to_global"
  PSpec, Sharding = jax.sharding.PartitionSpec, jax.sharding.Sharding

  def resolve(s):
    if isinstance(s, Sharding):
      return s
    if isinstance(s, PSpec):
      mesh = jax.sharding.get_mesh()
      if mesh.empty:
        raise ValueError(f"{fn}: sharding must be a Sharding, or a PartitionSpec under "
                         f"`with jax.set_mesh(mesh):`, got {s} with no mesh set")
      return jax.sharding.NamedSharding(mesh, s)
    raise TypeError(f"{fn}: sharding must be a jax.sharding.Sharding or PartitionSpec, got "
                    f"{type(s).__name__}")

  is_leaf = lambda s: isinstance(s, (Sharding, PSpec))

  def put(s, subtree):
    s = resolve(s)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(s, np.asarray(x)), subtree)

  if is_leaf(sharding):
    return put(sharding, batch)
  try:
    return jax.tree.map(put, sharding, batch, is_leaf=is_leaf)
  except ValueError as e:
    if "structure" not in str(e).lower() and "prefix" not in str(e).lower():
      raise
    raise ValueError(f"{fn}: sharding must be a Sharding, a PartitionSpec or a pytree prefix of "
                     f"batch, got {jax.tree.structure(sharding, is_leaf=is_leaf)} for a batch of "
                     f"structure {jax.tree.structure(batch)}") from e
