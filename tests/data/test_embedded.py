"""Tests for bottleneck_jax.data.embedded, against scikit-learn / scikit-image directly."""

import numpy as np
import pytest
import skimage.data
from sklearn import datasets as skd
from sklearn.model_selection import train_test_split

from bottleneck_jax.data import embedded as E


def _sorted_rows(a):
  a = np.asarray(a, np.float64).reshape(a.shape[0], -1)
  return a[np.lexsort(a.T[::-1])]


# ------------------------------------------------------------------------------------ digits


def test_digits_shapes_dtypes_ranges():
  ds = E.load_digits()
  assert ds.name == "digits" and ds.num_classes == 10
  assert ds.x_train.shape == (1347, 64) and ds.x_test.shape == (450, 64)
  assert ds.y_train.shape == (1347,) and ds.y_test.shape == (450,)
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  assert ds.num_features == 64 and ds.feature_shape == (64,)
  assert ds.num_train == 1347 and ds.num_test == 450
  for x in (ds.x_train, ds.x_test):
    assert x.min() == 0.0 and x.max() == 1.0
  assert set(np.unique(ds.y_train)) == set(range(10))
  # Pixel values are k/16 for integers k.
  np.testing.assert_array_equal(ds.x_train * 16, np.round(ds.x_train * 16))


@pytest.mark.parametrize("seed,frac", [(0, 0.25), (7, 0.4)])
def test_digits_matches_sklearn_split(seed, frac):
  raw = skd.load_digits()
  x_tr, x_te, y_tr, y_te = train_test_split(raw.data / 16.0, raw.target, test_size=frac,
                                            random_state=seed, stratify=raw.target)
  ds = E.load_digits(seed=seed, test_fraction=frac)
  np.testing.assert_allclose(ds.x_train, x_tr, rtol=0, atol=1e-7)
  np.testing.assert_allclose(ds.x_test, x_te, rtol=0, atol=1e-7)
  np.testing.assert_array_equal(ds.y_train, y_tr)
  np.testing.assert_array_equal(ds.y_test, y_te)


def test_digits_deterministic_and_seed_dependent():
  a, b, c = E.load_digits(seed=3), E.load_digits(seed=3), E.load_digits(seed=4)
  np.testing.assert_array_equal(a.x_train, b.x_train)
  np.testing.assert_array_equal(a.y_test, b.y_test)
  assert not np.array_equal(a.y_test, c.y_test)


def test_digits_split_is_a_stratified_partition():
  raw = skd.load_digits()
  ds = E.load_digits(seed=1)
  # Train + test is exactly the full data set (as a multiset of rows).
  full = np.concatenate([ds.x_train, ds.x_test]) * 16
  np.testing.assert_array_equal(_sorted_rows(full), _sorted_rows(raw.data))
  # Stratified: every class count in the test split is within 1 of its proportional share.
  counts = np.bincount(raw.target, minlength=10)
  test_counts = np.bincount(ds.y_test, minlength=10)
  assert np.all(np.abs(test_counts - counts * len(ds.y_test) / len(raw.target)) <= 1.0)


# ------------------------------------------------------------------------------ breast cancer


def test_breast_cancer_standardised_with_train_stats_only():
  raw_ds = E.load_breast_cancer(seed=2, standardize=False)
  ds = E.load_breast_cancer(seed=2)
  assert ds.num_classes == 2 and ds.y_train.dtype == np.int32
  assert ds.x_train.shape == (426, 30) and ds.x_test.shape == (143, 30)
  assert set(np.unique(ds.y_train)) == {0, 1}
  np.testing.assert_array_equal(ds.y_train, raw_ds.y_train)
  # Closed form: mu and sigma (population) of the TRAIN split.
  xtr = raw_ds.x_train.astype(np.float64)
  mu, sd = xtr.mean(0), xtr.std(0)
  np.testing.assert_allclose(ds.x_train, (xtr - mu) / sd, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(ds.x_test, (raw_ds.x_test - mu) / sd, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(ds.x_train.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(ds.x_train.std(0), 1.0, atol=1e-4)
  # Test statistics are NOT used: the test split is not exactly centred.
  assert np.abs(ds.x_test.mean(0)).max() > 1e-2
  np.testing.assert_allclose(ds.info["feature_mean"], mu, rtol=1e-5)
  np.testing.assert_allclose(ds.info["feature_std"], sd, rtol=1e-5)


def test_breast_cancer_raw_matches_sklearn():
  raw = skd.load_breast_cancer()
  _x_tr, x_te, y_tr, _y_te = train_test_split(raw.data, raw.target, test_size=0.25,
                                            random_state=0, stratify=raw.target)
  ds = E.load_breast_cancer(standardize=False)
  np.testing.assert_allclose(ds.x_test, x_te, rtol=1e-6)
  np.testing.assert_array_equal(ds.y_train, y_tr)
  assert ds.info["class_names"] == ["malignant", "benign"]


# ----------------------------------------------------------------------------------- diabetes


def test_diabetes_regression():
  raw = skd.load_diabetes(scaled=False)
  x_tr, x_te, y_tr, y_te = train_test_split(raw.data, raw.target, test_size=0.25, random_state=5)
  ds = E.load_diabetes(seed=5, standardize=False)
  assert ds.num_classes is None
  assert ds.y_train.dtype == np.float32 and ds.x_train.dtype == np.float32
  assert ds.x_train.shape == (331, 10) and ds.x_test.shape == (111, 10)
  np.testing.assert_allclose(ds.x_train, x_tr, rtol=1e-6)
  np.testing.assert_allclose(ds.y_test, y_te, rtol=1e-6)
  st = E.load_diabetes(seed=5, standardize_targets=True)
  mu, sd = x_tr.mean(0), x_tr.std(0)
  np.testing.assert_allclose(st.x_test, (x_te - mu) / sd, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(st.y_test, (y_te - y_tr.mean()) / y_tr.std(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("loader", [E.load_digits, E.load_breast_cancer, E.load_diabetes])
def test_split_argument_errors(loader):
  with pytest.raises(ValueError, match="test_fraction must be > 0"):
    loader(test_fraction=0.0)
  with pytest.raises(ValueError, match="test_fraction must be < 1"):
    loader(test_fraction=1.0)
  with pytest.raises(ValueError, match="seed must be >= 0"):
    loader(seed=-1)
  with pytest.raises(TypeError, match="seed must be an int"):
    loader(seed=1.5)


# ------------------------------------------------------------------------------ ArrayDataset


def test_array_dataset_helpers_and_validation():
  x, y = np.zeros((4, 2, 3), np.float32), np.arange(4, dtype=np.int32)
  ds = E.ArrayDataset("t", x, y, x[:2], y[:2], num_classes=4)
  assert ds.num_features == 6 and ds.feature_shape == (2, 3)
  assert ds.splits()["test"]["y"] is ds.y_test and ds.train["x"] is ds.x_train
  assert "float32[4, 2, 3]" in repr(ds)
  with pytest.raises(ValueError, match="x_train and y_train must have the same leading length"):
    E.ArrayDataset("t", x, y[:3], x, y, num_classes=4)
  with pytest.raises(ValueError, match="x_train and x_test must have the same feature shape"):
    E.ArrayDataset("t", x, y, x[:, :1], y, num_classes=4)
  with pytest.raises(TypeError, match="x_test must be a numpy array"):
    E.ArrayDataset("t", x, y, [1.0], y, num_classes=4)
  with pytest.raises(ValueError, match="y_train must have rank >= 1"):
    E.ArrayDataset("t", x, np.array(1), x, y, num_classes=4)
  with pytest.raises(ValueError, match="num_classes must be >= 1"):
    E.ArrayDataset("t", x, y, x, y, num_classes=0)


# ----------------------------------------------------------------------------- sample images


def test_all_bundled_images_load_offline_in_unit_range():
  imgs = E.sample_images()
  assert list(imgs) == list(E.SAMPLE_IMAGE_NAMES)
  for name, img in imgs.items():
    assert img.dtype == np.float32 and img.ndim == 3, name
    assert img.shape[-1] in (1, 3, 4), name
    assert 0.0 <= img.min() and img.max() <= 1.0, name
    assert img.max() > img.min(), name


def test_sample_image_values_against_skimage():
  np.testing.assert_allclose(E.sample_image("camera")[..., 0], skimage.data.camera() / 255.0,
                             atol=1e-7)
  np.testing.assert_allclose(E.sample_image("coffee"), skimage.data.coffee() / 255.0, atol=1e-7)
  np.testing.assert_array_equal(E.sample_image("horse")[..., 0], skimage.data.horse())
  assert E.sample_image("logo").shape == (500, 500, 4)
  assert set(E.sample_images(["moon", "coins"])) == {"moon", "coins"}


def test_sample_image_errors():
  with pytest.raises(ValueError, match="sample_image: name must be one of"):
    E.sample_image("eagle")  # part of scikit-image, but needs a download
  with pytest.raises(ValueError, match="sample_images: names must be one of"):
    E.sample_images(["camera", "lena"])
  with pytest.raises(TypeError, match="names must be an iterable of names"):
    E.sample_images("camera")


# ------------------------------------------------------------------------------ load_dataset


def test_load_dataset_dispatch():
  a = E.load_dataset("digits", seed=3, test_fraction=0.5)
  b = E.load_digits(seed=3, test_fraction=0.5)
  np.testing.assert_array_equal(a.x_train, b.x_train)
  assert E.load_dataset("breast_cancer").num_classes == 2
  assert E.load_dataset("diabetes", standardize=False).num_classes is None
  assert set(E.DATASET_NAMES) == {"digits", "breast_cancer", "diabetes"}


def test_load_dataset_errors():
  with pytest.raises(ValueError, match="'digits', 'breast_cancer', 'diabetes' or 'tfds:<name>'"):
    E.load_dataset("mnist")
  with pytest.raises(ValueError, match="non-empty TFDS name"):
    E.load_dataset("tfds:")
  with pytest.raises(TypeError, match="name must be a str"):
    E.load_dataset(3)
  with pytest.raises(TypeError, match="unexpected keyword"):
    E.load_dataset("digits", standardize=True)
