"""Every experiment that trains goes through ``train()``: ``scripts/train.py NAME --mesh
data=4,fsdp=2`` runs it sharded over the suite's 8 CPU devices, its summary matches a
single-device run (float rounding only), and a run stopped half-way (a smaller ``steps``) and
continued from its checkpoints gives the uninterrupted run's summary exactly.

Tiny configurations (a few steps, small widths) keep this fast; what is compared is the
plumbing (mesh, checkpoints, resume, logged curves), not the claims.
"""

import importlib.util
import json
import math
from pathlib import Path

import jax
import pytest

from bottleneck_jax.experiments import run_experiment
from bottleneck_jax.train import sharding

_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train.py"

STEPS = 4
# Quick mode plus these overrides: a handful of steps, checkpoints every 2, every step logged.
TINY = {
    "cbm-interventions": {"checkpoint_every": 2, "n_train": 256, "n_test": 128, "n_draws": 1},
    "cib-bandit": {"checkpoint_every": 2},
    "vib-digits": {"hidden": [16, 16], "eval_every": 2, "checkpoint_every": 2},
    "splade-toy": {"checkpoint_every": 2, "memory_shape": [2, 8, 16, 64]},
    "lexlip-toy": {"checkpoint_every": 2},
    "wta-crs-memory": {"hidden": [32, 32], "log_every": 1, "checkpoint_every": 2,
                       "memory_rows": 256},
    "chronicals-lora-plus": {"hidden": 32, "learning_rates": [1e-2], "smooth": 2,
                             "checkpoint_every": 2},
    "vpo-bandit": {"seeds": 2, "offline_steps": 4, "checkpoint_every": 2},
    "fsq-digits": {"hidden": 16, "checkpoint_every": 2},
    "winner-siren": {"num_samples": 256, "width": 16, "seeds": [0], "eval_every": 2,
                     "checkpoint_every": 2},
    "bottlenecked-consolidation-toy": {"n_train": 256, "checkpoint_every": 2},
    "ard-vae-synthetic": {"seeds": 1, "n": 512, "refresh_every": 2, "refresh_subset": 64,
                          "checkpoint_every": 2},
}
# Measured on the host, not by the trained model (wall-clock times, the resume point).
NOT_COMPARED = ("seconds", "resumed_from")


def _script():
  spec = importlib.util.spec_from_file_location("train_script", _SCRIPT)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


@pytest.fixture
def restore_default_mesh():
  saved = dict(sharding._DEFAULT_MESH)
  yield
  sharding._DEFAULT_MESH.clear()
  sharding._DEFAULT_MESH.update(saved)


def _results(workdir: Path) -> dict:
  res = json.loads((workdir / "summary.json").read_text())["results"]
  return {k: v for k, v in res.items() if not any(s in k for s in NOT_COMPARED)}


def _close(a, b, *, rel: float, path: str = "") -> list[str]:
  """The paths where two summaries differ (numbers within ``rel``, the rest exactly)."""
  if isinstance(a, dict) and isinstance(b, dict):
    if set(a) != set(b):
      return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
    return [d for k in a for d in _close(a[k], b[k], rel=rel, path=f"{path}.{k}")]
  if isinstance(a, list) and isinstance(b, list):
    if len(a) != len(b):
      return [f"{path}: lengths {len(a)} != {len(b)}"]
    return [d for i, (x, y) in enumerate(zip(a, b)) for d in _close(x, y, rel=rel,
                                                                     path=f"{path}[{i}]")]
  if isinstance(a, float) or isinstance(b, float):
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
      return [] if a == b else [f"{path}: {a!r} != {b!r}"]
    if math.isnan(a) and math.isnan(b):
      return []
    ok = math.isclose(a, b, rel_tol=rel, abs_tol=rel)
    return [] if ok else [f"{path}: {a!r} != {b!r}"]
  return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def _train_py(name: str, workdir: Path, steps: int) -> None:
  args = [name, "--mesh", "data=4,fsdp=2", "--quick", "--no-progress", "--workdir",
          str(workdir), "--steps", str(steps)]
  for k, v in TINY[name].items():
    args += ["--set", f"{k}={json.dumps(v)}"]
  assert _script().main(args) == 0


# The default run checks one experiment per kind of training loop (classifier, retrieval head,
# concept model, quantiser); the others run with ``-m slow`` (the suite's time budget).
CORE: tuple[str, ...] = ()   # every row under -m slow (suite time); the main job is tests/experiments/test_vib_digits.py


@pytest.mark.parametrize("name", [n if n in CORE else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(TINY)])
def test_sharded_resumed_equals_single_device(name, tmp_path, monkeypatch, restore_default_mesh):
  assert jax.device_count() == 8
  # scripts/train.py on a data=4 x fsdp=2 mesh: stopped at half, then continued ...
  _train_py(name, tmp_path / "resumed", STEPS // 2)
  _train_py(name, tmp_path / "resumed", STEPS)
  cfg = json.loads((tmp_path / "resumed" / "config.json").read_text())
  assert cfg["steps"] == STEPS
  # ... against an uninterrupted run on the same mesh: the same summary, bit for bit
  _train_py(name, tmp_path / "straight", STEPS)
  resumed, straight = _results(tmp_path / "resumed"), _results(tmp_path / "straight")
  assert not _close(resumed, straight, rel=0.0), _close(resumed, straight, rel=0.0)
  ckpts = [p for p in (tmp_path / "straight" / "checkpoints").rglob("*") if p.is_dir()]
  assert ckpts, "no checkpoint was written"

  # ... and against one device, unsharded: the same up to float rounding
  one = sharding.make_mesh(1, 1, devices=jax.devices()[:1])
  monkeypatch.setattr(sharding, "default_mesh", lambda: one)
  run_experiment(name, workdir=tmp_path / "single", quick=True, steps=STEPS,
                 overrides=TINY[name], progress=False)
  single = _results(tmp_path / "single")
  diff = _close(straight, single, rel=1e-3)
  assert not diff, diff
