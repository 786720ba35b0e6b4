"""Tests for bottleneck_jax.data.tfds with tfds.testing.mock_data (no download, no TF)."""

import importlib
import sys

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from bottleneck_jax.data import embedded, pipeline

T = importlib.import_module("bottleneck_jax.data.tfds")

N = 12


@pytest.fixture
def mock_mnist():
  with tfds.testing.mock_data(num_examples=N):
    yield


def test_tfds_source_reads_records(mock_mnist):
  src = T.tfds_source("mnist", split="train")
  assert len(src) == N
  ex = src[0]
  assert ex["image"].shape == (28, 28, 1) and ex["image"].dtype == np.uint8
  assert np.issubdtype(np.asarray(ex["label"]).dtype, np.integer)


def test_source_to_arrays_against_records(mock_mnist):
  src = T.tfds_source("mnist", split="test", process_split=False)
  x, y = T.source_to_arrays(src)
  assert x.shape == (N, 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int32
  assert 0.0 <= x.min() and x.max() <= 1.0
  for i in (0, N - 1):
    np.testing.assert_allclose(x[i], src[i]["image"].astype(np.float64) / 255.0, atol=1e-7)
    assert y[i] == int(src[i]["label"])
  x5, y5 = T.source_to_arrays(src, max_examples=5)
  np.testing.assert_array_equal(x5, x[:5])
  np.testing.assert_array_equal(y5, y[:5])


def test_load_tfds_and_load_dataset(mock_mnist):
  ds = T.load_tfds("mnist", max_examples=7)
  assert ds.name == "tfds:mnist" and ds.num_classes == 10
  assert ds.x_train.shape == (7, 28, 28, 1) and ds.x_test.shape == (7, 28, 28, 1)
  assert ds.num_features == 784
  via_name = embedded.load_dataset("tfds:mnist", max_examples=7)
  np.testing.assert_array_equal(via_name.x_train, ds.x_train)
  np.testing.assert_array_equal(via_name.y_test, ds.y_test)


def test_batches_over_a_tfds_source(mock_mnist):
  src = T.tfds_source("mnist", split="train", process_split=False)
  labels = [int(src[i]["label"]) for i in range(N)]
  got = list(pipeline.batches(src, batch_size=4, seed=0, num_epochs=1))
  assert len(got) == 3
  assert got[0]["image"].shape == (4, 28, 28, 1) and got[0]["image"].dtype == np.uint8
  assert sorted(np.concatenate([b["label"] for b in got]).tolist()) == sorted(labels)


def test_process_split_uses_split_for_jax_process(monkeypatch):
  calls = []
  monkeypatch.setattr(tfds, "data_source", lambda name, **kw: calls.append((name, kw)) or [])
  T.tfds_source("mnist", split="train", process_index=1, process_count=4)
  expected = tfds.split_for_jax_process("train", process_index=1, process_count=4,
                                        drop_remainder=True)
  assert calls[-1][0] == "mnist" and repr(calls[-1][1]["split"]) == repr(expected)
  T.tfds_source("mnist", split="train", process_index=1, process_count=4, process_split=False)
  assert calls[-1][1]["split"] == "train"
  T.tfds_source("mnist", split="test[:5]", data_dir="/x", download=False)  # one process
  assert calls[-1][1] == {"split": "test[:5]", "data_dir": "/x", "download": False}


def test_missing_tfds_gives_install_hint(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
  with pytest.raises(ImportError, match=r"bottleneck-jax\[data\]"):
    T.tfds_source("mnist", split="train")


def test_errors(monkeypatch):
  monkeypatch.setattr(tfds, "data_source", lambda name, **kw: [])
  with pytest.raises(ValueError, match="tfds_source: name must be a non-empty str"):
    T.tfds_source("", split="train")
  with pytest.raises(ValueError, match="tfds_source: split must be a non-empty str"):
    T.tfds_source("mnist", split=None)
  with pytest.raises(ValueError, match="process_index must be <= 1"):
    T.tfds_source("mnist", split="train", process_index=2, process_count=2)
  with pytest.raises(ValueError, match="source_to_arrays: source must contain at least one"):
    T.source_to_arrays([])
  with pytest.raises(TypeError, match="source must be a random-access sequence"):
    T.source_to_arrays(iter([{"image": 1, "label": 1}]))
  with pytest.raises(ValueError, match="examples must be dicts with keys 'image' and 'label'"):
    T.source_to_arrays([{"img": np.zeros(2), "label": 1}])
  with pytest.raises(TypeError, match="'label' must have an integer dtype"):
    T.source_to_arrays([{"image": np.zeros(2), "label": 0.5}])
  with pytest.raises(ValueError, match="max_examples must be >= 1"):
    T.source_to_arrays([{"image": np.zeros(2), "label": 1}], max_examples=0)
