"""Tests of bottleneck_jax.train.distributed (environment parsing; no runtime started)."""

import pytest

from bottleneck_jax.train import distributed


def test_requested_from_environment():
  assert distributed.requested({}) is None
  assert distributed.requested({"TPU_WORKER_HOSTNAMES": "a"}) is None  # one host
  assert distributed.requested({"SLURM_NTASKS": "1", "SLURM_STEP_ID": "0"}) is None
  assert distributed.requested({
      "JAX_COORDINATOR_ADDRESS": "h:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1",
      "JAX_LOCAL_DEVICE_IDS": "0,1"}) == {
          "coordinator_address": "h:1234", "num_processes": 2, "process_id": 1,
          "local_device_ids": [0, 1]}
  assert distributed.requested({"BOTTLENECK_JAX_DISTRIBUTED": "1"}) == {}
  assert distributed.requested({"TPU_WORKER_HOSTNAMES": "a,b"}) == {}
  assert distributed.requested({"SLURM_NTASKS": "4", "SLURM_STEP_ID": "0"}) == {}


def test_requested_bad_value():
  with pytest.raises(ValueError, match="JAX_NUM_PROCESSES must be an int"):
    distributed.requested({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two"})


def test_single_process_does_not_initialize():
  assert distributed.maybe_initialize({}) is False
  assert distributed.is_main_process()
