"""Helpers for tests that run experiments in subprocesses (fresh JAX runtimes)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def env(devices: int, **extra) -> dict:
  e = dict(os.environ)
  for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "XLA_FLAGS"):
    e.pop(k, None)
  e.update(JAX_NUM_CPU_DEVICES=str(devices), JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
  e.update({k: str(v) for k, v in extra.items()})
  return e


def train_cmd(workdir, *args) -> list[str]:
  return [sys.executable, str(ROOT / "scripts" / "train.py"), "vib-digits", "--quick",
          "--no-progress", "--workdir", str(workdir), *args]


def run(cmd, env, timeout=170):
  p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                     timeout=timeout, check=False)
  assert p.returncode == 0, f"{cmd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
  return p


def summary(workdir) -> dict:
  return json.loads((Path(workdir) / "summary.json").read_text())


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def checkpoint_steps(workdir) -> list[int]:
  d = Path(workdir) / "checkpoints"
  if not d.exists():
    return []
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit())


def final_state(workdir, step: int):
  import orbax.checkpoint as ocp
  path = (Path(workdir) / "checkpoints" / str(step) / "state").absolute()
  return ocp.PyTreeCheckpointer().restore(path)
