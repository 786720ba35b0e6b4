#!/usr/bin/env python
"""Multi-host entry point: runs a registered experiment on any ``('data', 'fsdp')`` mesh.

Examples::

  # one machine, all its devices data-parallel
  python scripts/train.py vib-digits --workdir runs/vib

  # 8 devices as 4-way data x 2-way FSDP, Auto (GSPMD) axes
  python scripts/train.py vib-digits --workdir runs/vib --mesh data=4,fsdp=2 --axis-types auto

  # several hosts: start the same command on every host. On Cloud TPU / SLURM set
  # BOTTLENECK_JAX_DISTRIBUTED=1 (auto-detection); elsewhere set JAX_COORDINATOR_ADDRESS=host:port,
  # JAX_NUM_PROCESSES and JAX_PROCESS_ID. The work directory must be shared by all hosts.

Every experiment that trains a model (``vib-digits``, ``vib-digits-sweep``, ``splade-toy``,
``lexlip-toy``, ``lexlip-toy-tuned``, ``wta-crs-memory``, ``chronicals-lora-plus``) trains it with
``bottleneck_jax.train.train``, so it runs on the mesh given here, checkpoints under
``WORKDIR/checkpoints`` (one folder per trained model) and, rerun after a kill, resumes to the
uninterrupted run's summary; the others (compile-time memory, counting) ignore the mesh.

``jax.distributed.initialize()`` runs only when the environment asks for it (before any other
JAX call). Every host loads the data and draws its own slice of each global batch; only process 0
logs, prints, plots and writes the summary. Rerunning into the same work directory resumes from
the latest checkpoint; a preempted run saves a checkpoint and exits with status 143.
"""

from __future__ import annotations

import argparse
import json
import sys


def _parse(argv):
  p = argparse.ArgumentParser(prog="train.py", description=__doc__.split("\n\n")[0])
  p.add_argument("experiment", help="experiment name (see `bottleneck-jax experiments`)")
  p.add_argument("--workdir", help="output folder, shared by all hosts (default runs/NAME)")
  p.add_argument("--mesh", default="", help="mesh axis sizes, e.g. data=4,fsdp=2 "
                 "(default: all devices on data)")
  p.add_argument("--axis-types", default="explicit", choices=("explicit", "auto"))
  p.add_argument("--steps", type=int)
  p.add_argument("--seed", type=int)
  p.add_argument("--quick", action="store_true")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  p.add_argument("--no-progress", action="store_true")
  return p.parse_args(argv)


def main(argv=None) -> int:
  args = _parse(argv)
  # Must come first: jax.distributed.initialize() before any JAX computation.
  from bottleneck_jax.train import distributed
  distributed.maybe_initialize()

  import jax

  from bottleneck_jax.experiments import registry
  from bottleneck_jax.train import PreemptedError, sharding

  main_process = distributed.is_main_process()
  try:
    mesh_sizes = sharding.parse_mesh(args.mesh)
    exp = registry.get(args.experiment)
    overrides = registry.parse_overrides(args.set)
    registry.resolve_config(exp, quick=args.quick, steps=args.steps, seed=args.seed,
                            overrides=overrides)
    sharding.set_default_mesh(mesh_sizes.get("data", -1), mesh_sizes.get("fsdp", 1),
                              axis_types=args.axis_types)
    mesh = sharding.default_mesh()
  except ValueError as e:
    print(f"train.py: error: {e}", file=sys.stderr)
    return 2
  if main_process:
    print(f"processes={jax.process_count()} devices={jax.device_count()} "
          f"mesh={dict(mesh.shape)} axis_types={args.axis_types}", flush=True)
  try:
    summary = registry.run_experiment(
        exp.name, workdir=args.workdir, steps=args.steps, seed=args.seed, quick=args.quick,
        overrides=overrides, progress=not args.no_progress and main_process)
  except PreemptedError as e:
    if main_process:
      print(str(e), file=sys.stderr)
    return 143
  if main_process:
    print(json.dumps({k: summary[k] for k in ("experiment", "metric", "value",
                                               "expectation_held", "seconds")}), flush=True)
    print(json.dumps(summary["results"], default=str), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
