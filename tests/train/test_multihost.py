"""Two jax.distributed processes on localhost (2 CPU devices each) give the same training result
as one process with 4 devices: each process draws its slice of every global batch."""

import subprocess

import pytest

from . import _subproc as sp

ARGS = ("--steps", "30", "--set", "checkpoint_every=15", "--set", "eval_every=15")


@pytest.mark.slow
@pytest.mark.multihost
def test_two_processes_match_one_process(tmp_path):
  port = sp.free_port()
  multi, single = tmp_path / "multi", tmp_path / "single"
  procs = [subprocess.Popen(sp.train_cmd(multi, *ARGS),
                            env=sp.env(2, JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                                       JAX_NUM_PROCESSES=2, JAX_PROCESS_ID=i),
                            cwd=sp.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True) for i in range(2)]
  try:
    outs = [p.communicate(timeout=170)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  assert "processes=2 devices=4" in outs[0]
  assert "processes=2" not in outs[1]          # only process 0 prints
  assert sp.checkpoint_steps(multi) == [15, 30]
  sp.run(sp.train_cmd(single, *ARGS), sp.env(4))
  a, b = sp.summary(multi)["results"], sp.summary(single)["results"]
  for k in ("test_accuracy", "test_bits", "test_class_loss", "train_bits"):
    assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-4), k
  assert a["test_accuracy"] > 0.2                # it trained
