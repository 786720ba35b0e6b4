"""A tiny checkpointed experiment and fault injectors for tests/train/test_faults.py.

Run as a program it registers the experiment, installs the faults named by ``--fault`` and runs
``bottleneck-jax run`` exactly as the console script does (``cli.main()`` with ``sys.argv``)::

  python tests/train/_faulty.py --fault read-only -- run faults-tiny --workdir W ...

Faults (each a real OS error raised where Orbax touches the disk, not a mock of our code):

* ``read-only``: creating anything under ``W/checkpoints`` fails with ``EROFS``, as on a
  read-only mount (``os.mkdir``; root ignores ``chmod``, so permissions cannot do it here);
* ``full``: writing a file under ``W/checkpoints`` fails with ``ENOSPC`` (Orbax's file writes
  go through ``epath.Path.write_text``), in Orbax's background commit threads;
* ``slow-save=STEP``: the save of ``STEP`` stalls for a minute before it is published (a kill
  then lands in the middle of an asynchronous save).
"""

from __future__ import annotations

import errno
import os
import sys
import time

import numpy as np

NAME = "faults-tiny"
DEFAULTS = {"steps": 8, "checkpoint_every": 2, "lr": 0.05, "width": 4, "log_every": 1}


def _run(ctx):
  import jax.numpy as jnp
  import optax
  from flax import nnx

  from bottleneck_jax.train import train

  cfg = ctx.config
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 8)).astype(np.float32)
  y = (x @ rng.normal(size=(8, 1)) + 0.1 * rng.normal(size=(64, 1))).astype(np.float32)
  width = int(cfg["width"])

  def model_fn():
    return nnx.Sequential(nnx.Linear(8, width, rngs=nnx.Rngs(cfg["seed"])),
                          nnx.Linear(width, 1, rngs=nnx.Rngs(cfg["seed"] + 1)))

  def loss_fn(model, batch, key):
    return jnp.mean((model(batch["x"]) - batch["y"]) ** 2), {}

  res = train(model_fn, optax.sgd(float(cfg["lr"])), loss_fn, {"x": x, "y": y},
              steps=int(cfg["steps"]), batch_size=8, seed=int(cfg["seed"]),
              checkpoint_dir=ctx.checkpoint_dir, checkpoint_every=int(cfg["checkpoint_every"]),
              keep=3, log=ctx.log, log_every=int(cfg["log_every"]), progress=False, config=cfg)
  params = [np.asarray(v).ravel().tolist() for v in
            __import__("jax").tree.leaves(nnx.state(res.model, nnx.Param))]
  return {"loss": res.metrics["loss"], "params": params, "resumed_from": res.resumed_from}


def experiment():
  from bottleneck_jax.experiments.registry import Expectation, Experiment, Metric
  return Experiment(name=NAME, paper_id="faults", claim="a tiny checkpointed regression",
                    metric="loss", metrics={"loss": Metric("final training MSE", low=0)},
                    expectations=(Expectation("loss", "<", 100.0, source="test fixture"),),
                    setting="proxy", departures=("a test fixture, not a paper's experiment",),
                    run=_run, defaults=dict(DEFAULTS), quick={})


def _under(path, root) -> bool:
  p = os.path.abspath(os.fspath(path))
  return p.startswith(root + os.sep)


def install(fault: str, workdir: str) -> None:
  root = os.path.abspath(os.path.join(workdir, "checkpoints"))
  if fault == "read-only":
    os.makedirs(root, exist_ok=True)
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
      if _under(path, root):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
      return real_mkdir(path, *args, **kwargs)
    os.mkdir = mkdir
  elif fault == "full":
    from etils import epath
    cls = type(epath.Path("/"))
    real_write = cls.write_text

    def write_text(self, *args, **kwargs):
      if _under(self, root):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(self))
      return real_write(self, *args, **kwargs)
    cls.write_text = write_text
  elif fault.startswith("slow-save="):
    step = int(fault.split("=", 1)[1])
    from bottleneck_jax.train import checkpoint
    real_manifest = checkpoint.write_manifest

    def write_manifest(step_dir, s):
      if int(s) == step:
        print(f"saving step {s}", flush=True)
        time.sleep(60)
      return real_manifest(step_dir, s)
    checkpoint.write_manifest = write_manifest
  elif fault != "none":
    raise SystemExit(f"unknown fault {fault!r}")


def main() -> None:
  argv = sys.argv[1:]
  fault = "none"
  if argv[:1] == ["--fault"]:
    fault, argv = argv[1], argv[2:]
  if argv[:1] == ["--"]:
    argv = argv[1:]
  from bottleneck_jax.experiments import registry
  registry.register(experiment())
  workdir = argv[argv.index("--workdir") + 1]
  install(fault, workdir)
  from bottleneck_jax import cli
  sys.argv = ["bottleneck-jax", *argv]
  sys.exit(cli.main())  # as the console script: argv from sys.argv


if __name__ == "__main__":
  main()
