"""TensorFlow Datasets adapter: random-access sources and in-memory arrays, without TensorFlow.

``tfds.data_source(name, split=...)`` returns an ``ArrayRecordDataSource``: a random-access
sequence of decoded examples (dicts of numpy arrays) that needs neither TensorFlow nor
``tf.data``. It plugs straight into :func:`bottleneck_jax.data.pipeline.batches` (or any grain
pipeline). Small data sets (MNIST, Fashion-MNIST, CIFAR-10, ...) can also be materialised as an
:class:`~bottleneck_jax.data.embedded.ArrayDataset` with :func:`load_tfds`: images become
``float32`` in ``[0, 1]`` (``uint8 / 255``), labels ``int32``.

Multi-host: there are two consistent ways to feed several processes.

1. Every process opens the *whole* split (``process_split=False``) and
   :func:`~bottleneck_jax.data.pipeline.batches` hands each process its contiguous slice of every
   global batch (global order independent of the number of processes).
2. Every process opens its own sub-split (``process_split=True``, through
   ``tfds.split_for_jax_process``) and iterates it with ``process_count=1`` and the *local*
   batch size. Reading is cheaper, but the global batch sequence then depends on the number of
   processes.

Do not mix them: with ``process_split=True`` pass ``process_index=0, process_count=1`` to
``batches``, otherwise each process would only see a slice of its own slice.

Real data needs internet access (or a ``data_dir`` with the prepared data set). Tests use
``tfds.testing.mock_data(num_examples=...)``, which generates random examples with the right
features and needs neither a download nor TensorFlow.

References:
  TensorFlow Datasets, "Random-access data sources",
  https://www.tensorflow.org/datasets/api_docs/python/tfds/data_source
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bottleneck_jax.core import validation as V
from bottleneck_jax.data.arrays import ArrayDataset

__all__ = ["load_tfds", "source_to_arrays", "tfds_source"]

_INSTALL_HINT = ("tensorflow-datasets is not installed; install the `data` extra: "
                 "pip install 'bottleneck-jax[data]'")


def _import_tfds():
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:  # pragma: no cover - exercised by monkeypatching sys.modules
    raise ImportError(f"bottleneck_jax.data: {_INSTALL_HINT}") from e
  return tfds


def tfds_source(name: str, *, split: str, data_dir: str | None = None, process_split: bool = True,
                process_index: int | None = None, process_count: int | None = None,
                **data_source_kwargs) -> Sequence[Any]:
  """A random-access TFDS source (``tfds.data_source``), optionally this process's sub-split.

  When ``process_split`` is true and there are several processes, the split is replaced by
  ``tfds.split_for_jax_process(split, process_index=i, process_count=P, drop_remainder=True)``
  (equal sizes on every process, so that all processes run the same number of steps). See the
  module docstring for how to combine this with :func:`~bottleneck_jax.data.pipeline.batches`.

  Args:
    name: TFDS name, e.g. ``"mnist"`` or ``"cifar10:3.0.2"``.
    split: split name or slice, e.g. ``"train"``, ``"test[:10%]"``.
    data_dir: TFDS data directory (default: TFDS's own default, ``~/tensorflow_datasets``).
    process_split: give each JAX process its own part of ``split`` when there are several.
    process_index: this process (default ``jax.process_index()``).
    process_count: number of processes (default ``jax.process_count()``).
    **data_source_kwargs: forwarded to ``tfds.data_source`` (e.g. ``download=False``).

  Returns:
    A random-access sequence of examples (dicts of numpy arrays), with ``len``.

  Raises:
    ImportError: tensorflow-datasets is missing (install the ``data`` extra).

  Example:
    >>> import tensorflow_datasets as tfds
    >>> with tfds.testing.mock_data(num_examples=8):
    ...   src = tfds_source("mnist", split="train")
    >>> len(src), src[0]["image"].shape
    (8, (28, 28, 1))
  """
  fn = "tfds_source"
  if not isinstance(name, str) or not name:
    raise ValueError(f"{fn}: name must be a non-empty str, got {name!r}")
  if not isinstance(split, str) or not split:
    raise ValueError(f"{fn}: split must be a non-empty str, got {split!r}")
  tfds = _import_tfds()
  if process_split:
    if process_index is None or process_count is None:
      import jax

      process_index = jax.process_index() if process_index is None else process_index
      process_count = jax.process_count() if process_count is None else process_count
    V.check_scalar(fn, "process_count", process_count, low=1, integer=True)
    V.check_scalar(fn, "process_index", process_index, low=0, high=process_count - 1,
                    integer=True)
    if process_count > 1:
      split = tfds.split_for_jax_process(split, process_index=process_index,
                                         process_count=process_count, drop_remainder=True)
  return tfds.data_source(name, split=split, data_dir=data_dir, **data_source_kwargs)


def _features_to_float(a: np.ndarray) -> np.ndarray:
  """uint8/integer images -> float32 in [0, 1] (divide by the dtype max); floats -> float32."""
  if a.dtype == np.bool_:
    return a.astype(np.float32)
  if np.issubdtype(a.dtype, np.integer):
    return (a.astype(np.float64) / float(np.iinfo(a.dtype).max)).astype(np.float32)
  return a.astype(np.float32)


def source_to_arrays(source: Sequence[Any], *, image_key: str = "image", label_key: str = "label",
                     max_examples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Reads a random-access source of ``{image_key: ..., label_key: ...}`` examples into arrays.

  Args:
    source: random-access sequence of dict examples (e.g. from :func:`tfds_source`).
    image_key: feature holding the input (images: integer dtypes are divided by their maximum,
      ``uint8 -> / 255``, giving ``float32`` in ``[0, 1]``; floats are cast to ``float32``).
    label_key: feature holding the integer label (cast to ``int32``).
    max_examples: read only the first ``max_examples`` examples (``None``: all).

  Returns:
    ``(x, y)``: ``float32[n, *feature_shape]`` and ``int32[n]``.

  Example:
    >>> import tensorflow_datasets as tfds
    >>> with tfds.testing.mock_data(num_examples=8):
    ...   x, y = source_to_arrays(tfds_source("mnist", split="test"))
    >>> x.shape, x.dtype, y.dtype
    ((8, 28, 28, 1), dtype('float32'), dtype('int32'))
  """
  fn = "source_to_arrays"
  if not (hasattr(source, "__len__") and hasattr(source, "__getitem__")):
    raise TypeError(f"{fn}: source must be a random-access sequence (len and []), got "
                    f"{type(source).__name__}")
  n = len(source)
  if max_examples is not None:
    V.check_scalar(fn, "max_examples", max_examples, low=1, integer=True)
    n = min(n, int(max_examples))
  if n == 0:
    raise ValueError(f"{fn}: source must contain at least one example, got an empty source")
  xs, ys = [], []
  for i in range(n):
    ex = source[i]
    if not isinstance(ex, dict) or image_key not in ex or label_key not in ex:
      keys = sorted(ex) if isinstance(ex, dict) else type(ex).__name__
      raise ValueError(f"{fn}: examples must be dicts with keys {image_key!r} and {label_key!r}, "
                       f"got {keys}")
    xs.append(np.asarray(ex[image_key]))
    ys.append(np.asarray(ex[label_key]))
  x = _features_to_float(np.stack(xs))
  y = np.stack(ys)
  if not np.issubdtype(y.dtype, np.integer):
    raise TypeError(f"{fn}: {label_key!r} must have an integer dtype, got {y.dtype.name}")
  return x, y.astype(np.int32)


def load_tfds(name: str, *, train_split: str = "train", test_split: str = "test",
              data_dir: str | None = None, image_key: str = "image", label_key: str = "label",
              max_examples: int | None = None, **data_source_kwargs) -> ArrayDataset:
  """A small TFDS classification data set as an in-memory :class:`ArrayDataset`.

  Reads both splits whole on every process (no per-process split), converts images to
  ``float32`` in ``[0, 1]`` and labels to ``int32``. ``num_classes`` comes from the label's
  ``ClassLabel`` feature when the data set describes it.

  Args:
    name: TFDS name, e.g. ``"mnist"``.
    train_split: split used as the training split.
    test_split: split used as the test split.
    data_dir: TFDS data directory.
    image_key: input feature name.
    label_key: label feature name.
    max_examples: read at most this many examples per split.
    **data_source_kwargs: forwarded to ``tfds.data_source``.

  Returns:
    An :class:`ArrayDataset` named ``"tfds:<name>"``.

  Example:
    >>> import tensorflow_datasets as tfds
    >>> with tfds.testing.mock_data(num_examples=8):
    ...   ds = load_tfds("mnist")
    >>> ds.x_train.shape, ds.num_classes
    ((8, 28, 28, 1), 10)
  """
  def open_split(split):
    return tfds_source(name, split=split, data_dir=data_dir, process_split=False,
                       **data_source_kwargs)

  train_src, test_src = open_split(train_split), open_split(test_split)
  kw = {"image_key": image_key, "label_key": label_key, "max_examples": max_examples}
  x_tr, y_tr = source_to_arrays(train_src, **kw)
  x_te, y_te = source_to_arrays(test_src, **kw)
  num_classes = None
  info = getattr(train_src, "dataset_info", None)
  try:
    num_classes = int(info.features[label_key].num_classes)
  except (AttributeError, KeyError, TypeError):
    num_classes = int(max(y_tr.max(), y_te.max())) + 1
  return ArrayDataset(
      name=f"tfds:{name}", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te,
      num_classes=num_classes,
      description=(f"TFDS {name!r} ({train_split!r} / {test_split!r}); {image_key!r} as float32 "
                   f"in [0, 1], {label_key!r} as int32."),
      info={"train_split": train_split, "test_split": test_split, "image_key": image_key,
            "label_key": label_key})
