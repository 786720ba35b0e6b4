"""The in-memory data set type that the embedded loaders and the TFDS adapter both return."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from bottleneck_jax.core import validation as V


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayDataset:
  """An in-memory data set with a fixed train/test split.

  Attributes:
    name: short name, e.g. ``"digits"``.
    x_train: inputs of the training split, ``[n_train, *feature_shape]``.
    y_train: targets of the training split, ``[n_train, *target_shape]`` (``int32`` class ids
      for classification, ``float32`` for regression).
    x_test: inputs of the test split, ``[n_test, *feature_shape]``.
    y_test: targets of the test split, ``[n_test, *target_shape]``.
    num_classes: number of classes, or ``None`` for regression.
    description: one-paragraph human description (source, preprocessing).
    info: extra metadata (e.g. ``feature_mean``/``feature_std`` used for standardisation,
      ``class_names``, ``feature_names``, ``seed``, ``test_fraction``).

  Example:
    >>> from bottleneck_jax.data import load_digits
    >>> ds = load_digits(seed=0)
    >>> ds.x_train.shape, ds.num_classes
    ((1347, 64), 10)
    >>> batch_data = ds.train  # {"x": ..., "y": ...}, ready for `batches`.
  """

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int | None
  description: str = ""
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    fn = f"ArrayDataset({self.name!r})"
    for arg in ("x_train", "y_train", "x_test", "y_test"):
      value = getattr(self, arg)
      if not isinstance(value, np.ndarray):
        raise TypeError(f"{fn}: {arg} must be a numpy array, got {type(value).__name__}")
      V.check_rank(fn, arg, value, min_rank=1)
    for split in ("train", "test"):
      x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
      if x.shape[0] != y.shape[0]:
        raise ValueError(f"{fn}: x_{split} and y_{split} must have the same leading length, got "
                         f"{x.shape[0]} and {y.shape[0]}")
    if self.x_train.shape[1:] != self.x_test.shape[1:]:
      raise ValueError(f"{fn}: x_train and x_test must have the same feature shape, got "
                       f"{list(self.x_train.shape[1:])} and {list(self.x_test.shape[1:])}")
    if self.num_classes is not None:
      V.check_scalar(fn, "num_classes", self.num_classes, low=1, integer=True)

  @property
  def num_features(self) -> int:
    """Number of scalar features per example, ``prod(x_train.shape[1:])``."""
    return int(np.prod(self.x_train.shape[1:], dtype=np.int64))

  @property
  def feature_shape(self) -> tuple[int, ...]:
    """Shape of one input example, ``x_train.shape[1:]``."""
    return tuple(self.x_train.shape[1:])

  @property
  def num_train(self) -> int:
    return int(self.x_train.shape[0])

  @property
  def num_test(self) -> int:
    return int(self.x_test.shape[0])

  @property
  def train(self) -> dict[str, np.ndarray]:
    """The training split as ``{"x": x_train, "y": y_train}`` (input of ``batches``)."""
    return {"x": self.x_train, "y": self.y_train}

  @property
  def test(self) -> dict[str, np.ndarray]:
    """The test split as ``{"x": x_test, "y": y_test}``."""
    return {"x": self.x_test, "y": self.y_test}

  def splits(self) -> dict[str, dict[str, np.ndarray]]:
    """Both splits: ``{"train": {"x", "y"}, "test": {"x", "y"}}``."""
    return {"train": self.train, "test": self.test}

  def __repr__(self) -> str:
    return (f"ArrayDataset(name={self.name!r}, x_train={V.describe(self.x_train)}, "
            f"y_train={V.describe(self.y_train)}, x_test={V.describe(self.x_test)}, "
            f"y_test={V.describe(self.y_test)}, num_classes={self.num_classes})")


__all__ = ["ArrayDataset"]
