"""Multi-host start-up: ``jax.distributed.initialize()`` only when the environment asks for it.

A single-process run (a laptop, one GPU box, a test) never initialises the distributed runtime.
A multi-process run is recognised from

* explicit variables: ``JAX_COORDINATOR_ADDRESS`` (with ``JAX_NUM_PROCESSES`` and
  ``JAX_PROCESS_ID``; ``JAX_LOCAL_DEVICE_IDS`` optional), as in JAX's multi-process guide;
* ``BOTTLENECK_JAX_DISTRIBUTED=1``: call ``jax.distributed.initialize()`` without arguments and
  let JAX auto-detect the cluster (Cloud TPU pods, SLURM, Open MPI, Kubernetes);
* a multi-host Cloud TPU slice (``TPU_WORKER_HOSTNAMES`` listing several hosts, or
  ``MEGASCALE_COORDINATOR_ADDRESS``) or a SLURM job step with several tasks
  (``SLURM_NTASKS`` > 1 with ``SLURM_STEP_ID`` set), which JAX auto-detects.

As in MaxText's ``maybe_initialize_jax_distributed_system``, it is skipped when the runtime is
already initialised, and it must run before any other JAX computation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax


def _int_env(env: Mapping[str, str], name: str) -> int | None:
  value = env.get(name)
  if value is None or value == "":
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"maybe_initialize: environment variable {name} must be an int, got "
                     f"{value!r}") from None


def requested(env: Mapping[str, str] | None = None) -> dict | None:
  """The ``jax.distributed.initialize`` keyword arguments the environment asks for, or ``None``.

  Args:
    env: the environment (``os.environ`` by default).

  Returns:
    ``None`` for a single-process run; otherwise a dict (empty for cluster auto-detection).
  """
  env = os.environ if env is None else env
  address = env.get("JAX_COORDINATOR_ADDRESS")
  if address:
    kwargs: dict = {"coordinator_address": address}
    num = _int_env(env, "JAX_NUM_PROCESSES")
    pid = _int_env(env, "JAX_PROCESS_ID")
    if num is not None:
      kwargs["num_processes"] = num
    if pid is not None:
      kwargs["process_id"] = pid
    local = env.get("JAX_LOCAL_DEVICE_IDS")
    if local:
      kwargs["local_device_ids"] = [int(s) for s in local.split(",")]
    return kwargs
  if env.get("BOTTLENECK_JAX_DISTRIBUTED", "").lower() in ("1", "true", "yes"):
    return {}
  hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]
  if len(hosts) > 1 or env.get("MEGASCALE_COORDINATOR_ADDRESS"):
    return {}
  ntasks = _int_env(env, "SLURM_NTASKS")
  if ntasks is not None and ntasks > 1 and env.get("SLURM_STEP_ID") is not None:
    return {}
  return None


def _is_initialized() -> bool:
  fn = getattr(jax.distributed, "is_initialized", None)
  if fn is not None:
    return bool(fn())
  return False


def maybe_initialize(env: Mapping[str, str] | None = None) -> bool:
  """Initialises ``jax.distributed`` when the environment asks for it.

  Args:
    env: the environment (``os.environ`` by default).

  Returns:
    True when the distributed runtime is (now) initialised, False for a single-process run.

  Example:
    >>> maybe_initialize({})   # no cluster variables: nothing happens
    False
  """
  if _is_initialized():
    return True
  kwargs = requested(env)
  if kwargs is None:
    return False
  jax.distributed.initialize(**kwargs)
  return True


def is_main_process() -> bool:
  """Whether this is process 0 (the one that logs, plots and writes summaries)."""
  return jax.process_index() == 0


__all__ = ["is_main_process", "maybe_initialize", "requested"]
