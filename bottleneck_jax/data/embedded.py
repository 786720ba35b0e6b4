"""Embedded data sets that work offline: scikit-learn's bundled tables and scikit-image's images.

Every experiment in ``bottleneck_jax`` has a default data set that needs no network. This module
turns the data shipped *inside* installed packages into a small, uniform container,
:class:`ArrayDataset`, with a fixed, seeded train/test split:

* ``digits``: scikit-learn's 8x8 handwritten digits (UCI ML hand-written digits test set,
  1797 images, 10 classes). Pixels are integers 0..16; they are divided by 16 so that
  ``x`` lies in ``[0, 1]``.
* ``breast_cancer``: the Wisconsin diagnostic breast-cancer table (569 rows, 30 features,
  2 classes: 0 = malignant, 1 = benign).
* ``diabetes``: the diabetes regression table of Efron et al. (442 rows, 10 features, a real
  target measuring disease progression after one year).
* scikit-image's bundled sample images (``camera``, ``astronaut``, ``coffee``, ...), those that
  ship inside the wheel and load without ``pooch`` or a download.

Splits are made with :func:`sklearn.model_selection.train_test_split` (stratified by class for
classification), so a given ``seed`` and ``test_fraction`` always produce the same split, on any
machine, and the split can be reproduced with scikit-learn directly. Standardisation, where
offered, uses statistics of the *training* split only (no test-set leakage):

.. math::

   \\tilde x_{ij} = (x_{ij} - \\mu_j) / \\sigma_j, \\qquad
   \\mu_j = \\frac{1}{n}\\sum_{i \\in \\text{train}} x_{ij}, \\quad
   \\sigma_j = \\sqrt{\\tfrac{1}{n}\\sum_{i \\in \\text{train}} (x_{ij} - \\mu_j)^2}

(population standard deviation; a constant feature gets :math:`\\sigma_j = 1`). The statistics
are kept in :attr:`ArrayDataset.info` so that new inputs can be transformed the same way.

:func:`load_dataset` dispatches by name and also accepts ``"tfds:<name>"`` for TensorFlow
Datasets (through :mod:`bottleneck_jax.data.tfds`; needs the ``data`` extra and, for real
data, internet access or a prepared ``data_dir``).

References:
  Pedregosa et al., "Scikit-learn: Machine Learning in Python", JMLR 2011,
  https://jmlr.org/papers/v12/pedregosa11a.html
  van der Walt et al., "scikit-image: image processing in Python", PeerJ 2014,
  https://doi.org/10.7717/peerj.453
  Efron, Hastie, Johnstone & Tibshirani, "Least Angle Regression", Annals of Statistics 2004,
  https://doi.org/10.1214/009053604000000067
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from bottleneck_jax.core import validation as V
from bottleneck_jax.data.arrays import ArrayDataset

__all__ = [
    "DATASET_NAMES",
    "SAMPLE_IMAGE_NAMES",
    "ArrayDataset",
    "load_breast_cancer",
    "load_dataset",
    "load_diabetes",
    "load_digits",
    "sample_image",
    "sample_images",
]


# --------------------------------------------------------------------------------------------
# scikit-learn tables.


def _check_split_args(fn: str, seed: int, test_fraction: float) -> None:
  V.check_scalar(fn, "seed", seed, low=0, high=2**32 - 1, integer=True)
  V.check_scalar(fn, "test_fraction", test_fraction, low=0.0, high=1.0, low_inclusive=False,
                  high_inclusive=False)


def _split(x, y, *, seed: int, test_fraction: float, stratify: bool):
  from sklearn.model_selection import train_test_split

  return train_test_split(x, y, test_size=test_fraction, random_state=seed,
                          stratify=y if stratify else None)


def _standardize(x_train: np.ndarray, x_test: np.ndarray):
  mean = x_train.mean(axis=0, dtype=np.float64)
  std = x_train.std(axis=0, dtype=np.float64)
  std = np.where(std > 0, std, 1.0)
  to32 = lambda a: ((a - mean) / std).astype(np.float32)
  return to32(x_train), to32(x_test), mean.astype(np.float32), std.astype(np.float32)


def load_digits(*, seed: int = 0, test_fraction: float = 0.25) -> ArrayDataset:
  """scikit-learn's 8x8 handwritten digits with a seeded, stratified train/test split.

  ``x = pixels / 16`` lies in ``[0, 1]`` (``float32``, shape ``[n, 64]``, row-major 8x8 images);
  ``y`` is the digit (``int32``, 10 classes). The split is
  ``train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)``; with the
  defaults it has 1347 training and 450 test examples (1797 in total).

  Args:
    seed: seed of the split (``random_state`` of scikit-learn), ``0 <= seed < 2**32``.
    test_fraction: fraction of the examples in the test split, in ``(0, 1)``.

  Returns:
    An :class:`ArrayDataset` named ``"digits"``.

  Example:
    >>> ds = load_digits()
    >>> ds.x_train.shape, ds.x_test.shape
    ((1347, 64), (450, 64))

  References:
    Alpaydin & Kaynak, "Optical Recognition of Handwritten Digits", UCI ML repository 1998,
    https://doi.org/10.24432/C50P49
  """
  fn = "load_digits"
  _check_split_args(fn, seed, test_fraction)
  from sklearn import datasets

  raw = datasets.load_digits()
  x = (np.asarray(raw.data, np.float64) / 16.0).astype(np.float32)
  y = np.asarray(raw.target).astype(np.int32)
  x_tr, x_te, y_tr, y_te = _split(x, y, seed=seed, test_fraction=test_fraction, stratify=True)
  return ArrayDataset(
      name="digits", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, num_classes=10,
      description=("scikit-learn digits: 1797 8x8 grey images of handwritten digits, flattened to "
                   "64 features and scaled by 1/16 to [0, 1]; stratified split."),
      info={"seed": seed, "test_fraction": test_fraction, "image_shape": (8, 8),
            "class_names": [str(i) for i in range(10)]})


def load_breast_cancer(*, seed: int = 0, test_fraction: float = 0.25,
                       standardize: bool = True) -> ArrayDataset:
  """The Wisconsin breast-cancer table (binary classification) with a stratified split.

  ``x`` is ``float32[n, 30]``; ``y`` is ``int32`` with 0 = malignant, 1 = benign. With
  ``standardize=True`` each feature is shifted and scaled by the mean and (population) standard
  deviation of the *training* split, ``(x - mu_train) / sigma_train``; the statistics are in
  ``info["feature_mean"]`` and ``info["feature_std"]``. Defaults give 426 training and 143 test
  examples (569 in total).

  Args:
    seed: seed of the split, ``0 <= seed < 2**32``.
    test_fraction: fraction of the examples in the test split, in ``(0, 1)``.
    standardize: standardise the features with training statistics.

  Returns:
    An :class:`ArrayDataset` named ``"breast_cancer"`` with ``num_classes=2``.

  Example:
    >>> ds = load_breast_cancer()
    >>> ds.x_train.shape, ds.x_test.shape
    ((426, 30), (143, 30))

  References:
    Street, Wolberg & Mangasarian, "Nuclear feature extraction for breast tumor diagnosis",
    1993, https://doi.org/10.1117/12.148698
  """
  fn = "load_breast_cancer"
  _check_split_args(fn, seed, test_fraction)
  from sklearn import datasets

  raw = datasets.load_breast_cancer()
  x = np.asarray(raw.data, np.float64)
  y = np.asarray(raw.target).astype(np.int32)
  x_tr, x_te, y_tr, y_te = _split(x, y, seed=seed, test_fraction=test_fraction, stratify=True)
  info: dict[str, Any] = {"seed": seed, "test_fraction": test_fraction,
                          "class_names": [str(c) for c in raw.target_names],
                          "feature_names": [str(c) for c in raw.feature_names]}
  if standardize:
    x_tr, x_te, info["feature_mean"], info["feature_std"] = _standardize(x_tr, x_te)
  else:
    x_tr, x_te = x_tr.astype(np.float32), x_te.astype(np.float32)
  return ArrayDataset(
      name="breast_cancer", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, num_classes=2,
      description=("Wisconsin diagnostic breast cancer: 569 tumours x 30 real features, "
                   "0 = malignant, 1 = benign; stratified split"
                   + ("; features standardised with train statistics." if standardize else ".")),
      info=info)


def load_diabetes(*, seed: int = 0, test_fraction: float = 0.25, standardize: bool = True,
                  standardize_targets: bool = False) -> ArrayDataset:
  """The diabetes regression table (442 patients, 10 features) with a seeded split.

  Uses the *raw* (unscaled) table; ``x`` is ``float32[n, 10]`` and ``y`` the ``float32`` disease
  progression after one year (``num_classes=None``). With ``standardize=True`` the features are
  standardised with training statistics (``info["feature_mean"]``, ``info["feature_std"]``);
  with ``standardize_targets=True`` the targets are too (``info["target_mean"]``,
  ``info["target_std"]``). The split is not stratified (real targets). Defaults give 331
  training and 111 test examples.

  Args:
    seed: seed of the split, ``0 <= seed < 2**32``.
    test_fraction: fraction of the examples in the test split, in ``(0, 1)``.
    standardize: standardise the features with training statistics.
    standardize_targets: standardise the targets with training statistics.

  Returns:
    An :class:`ArrayDataset` named ``"diabetes"``.

  Example:
    >>> ds = load_diabetes()
    >>> ds.x_train.shape, ds.y_train.dtype
    ((331, 10), dtype('float32'))

  References:
    Efron, Hastie, Johnstone & Tibshirani, "Least Angle Regression", Annals of Statistics 2004,
    https://doi.org/10.1214/009053604000000067
  """
  fn = "load_diabetes"
  _check_split_args(fn, seed, test_fraction)
  from sklearn import datasets

  raw = datasets.load_diabetes(scaled=False)
  x = np.asarray(raw.data, np.float64)
  y = np.asarray(raw.target, np.float64)
  x_tr, x_te, y_tr, y_te = _split(x, y, seed=seed, test_fraction=test_fraction, stratify=False)
  info: dict[str, Any] = {"seed": seed, "test_fraction": test_fraction,
                          "feature_names": [str(c) for c in raw.feature_names]}
  if standardize:
    x_tr, x_te, info["feature_mean"], info["feature_std"] = _standardize(x_tr, x_te)
  else:
    x_tr, x_te = x_tr.astype(np.float32), x_te.astype(np.float32)
  if standardize_targets:
    y_tr, y_te, info["target_mean"], info["target_std"] = _standardize(y_tr, y_te)
  else:
    y_tr, y_te = y_tr.astype(np.float32), y_te.astype(np.float32)
  return ArrayDataset(
      name="diabetes", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, num_classes=None,
      description=("Diabetes (Efron et al. 2004): 442 patients x 10 baseline variables, target = "
                   "disease progression after one year; random split"
                   + ("; features standardised with train statistics." if standardize else ".")),
      info=info)


# --------------------------------------------------------------------------------------------
# scikit-image sample images (bundled in the wheel; no pooch/download needed).

#: Names accepted by :func:`sample_image`: scikit-image sample images shipped inside the
#: scikit-image wheel (they load without ``pooch`` and without a network).
SAMPLE_IMAGE_NAMES: tuple[str, ...] = (
    "astronaut", "brick", "camera", "cat", "cell", "checkerboard", "chelsea", "clock", "coffee",
    "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
    "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina", "rocket",
    "shepp_logan_phantom", "text",
)


def _to_unit_float(img: np.ndarray) -> np.ndarray:
  img = np.asarray(img)
  if img.dtype == np.bool_:
    out = img.astype(np.float32)
  elif np.issubdtype(img.dtype, np.integer):
    out = (img.astype(np.float64) / float(np.iinfo(img.dtype).max)).astype(np.float32)
  else:
    out = np.clip(img, 0.0, 1.0).astype(np.float32)
  return out[..., None] if out.ndim == 2 else out


def sample_image(name: str) -> np.ndarray:
  """One bundled scikit-image sample image as ``float32`` in ``[0, 1]``, channels last.

  Integer images are divided by the maximum of their dtype (``uint8`` -> ``/255``), boolean
  images become 0/1, grey images get a trailing channel axis: the result has shape
  ``[height, width, channels]`` with 1 (grey), 3 (RGB) or 4 (RGBA, ``logo``) channels.

  Args:
    name: one of :data:`SAMPLE_IMAGE_NAMES`.

  Returns:
    ``float32[height, width, channels]``.

  Example:
    >>> sample_image("camera").shape
    (512, 512, 1)
  """
  V.check_choice("sample_image", "name", name, SAMPLE_IMAGE_NAMES)
  import skimage.data

  loader: Callable[[], np.ndarray] = getattr(skimage.data, name)
  return _to_unit_float(loader())


def sample_images(names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
  """Several bundled scikit-image sample images (all of them by default), see :func:`sample_image`.

  Args:
    names: names from :data:`SAMPLE_IMAGE_NAMES`; ``None`` loads all of them (about 80 MB as
      ``float32``).

  Returns:
    ``{name: float32[height, width, channels]}`` in the order of ``names``.

  Example:
    >>> imgs = sample_images(["camera", "coffee"])
    >>> imgs["coffee"].shape
    (400, 600, 3)
  """
  if names is None:
    names = SAMPLE_IMAGE_NAMES
  elif isinstance(names, str):
    raise TypeError(f"sample_images: names must be an iterable of names, got str {names!r}")
  names = list(names)
  for n in names:
    V.check_choice("sample_images", "names", n, SAMPLE_IMAGE_NAMES)
  return {n: sample_image(n) for n in names}


# --------------------------------------------------------------------------------------------
# Dispatch by name.

_LOADERS: dict[str, Callable[..., ArrayDataset]] = {
    "digits": load_digits,
    "breast_cancer": load_breast_cancer,
    "diabetes": load_diabetes,
}

#: Embedded data-set names accepted by :func:`load_dataset` (plus ``"tfds:<name>"``).
DATASET_NAMES: tuple[str, ...] = tuple(_LOADERS)


def load_dataset(name: str, **kwargs) -> ArrayDataset:
  """Loads a data set by name: an embedded one, or ``"tfds:<name>"`` from TensorFlow Datasets.

  Args:
    name: ``"digits"``, ``"breast_cancer"``, ``"diabetes"``, or ``"tfds:<tfds name>"`` (e.g.
      ``"tfds:mnist"``; converted to arrays by
      :func:`bottleneck_jax.data.tfds.load_tfds`, which needs the ``data`` extra and the
      data set downloaded or downloadable).
    **kwargs: keyword arguments of the loader (``seed``, ``test_fraction``, ``standardize``,
      ... or, for TFDS, ``train_split``, ``test_split``, ``data_dir``, ``max_examples``, ...).

  Returns:
    An :class:`ArrayDataset`.

  Raises:
    ValueError: for an unknown name (the message lists the known names).

  Example:
    >>> load_dataset("digits", seed=1).num_classes
    10
  """
  if not isinstance(name, str):
    raise TypeError(f"load_dataset: name must be a str, got {type(name).__name__} {name!r}")
  if name.startswith("tfds:"):
    tfds_name = name[len("tfds:"):]
    if not tfds_name:
      raise ValueError("load_dataset: name must be 'tfds:<name>' with a non-empty TFDS name, "
                       f"got {name!r}")
    from bottleneck_jax.data.tfds import load_tfds

    return load_tfds(tfds_name, **kwargs)
  if name not in _LOADERS:
    known = ", ".join(repr(n) for n in DATASET_NAMES)
    raise ValueError(f"load_dataset: name must be one of {known} or 'tfds:<name>', got {name!r}")
  return _LOADERS[name](**kwargs)
