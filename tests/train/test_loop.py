"""Tests of bottleneck_jax.train.loop against a hand-written Optax loop (8 CPU devices)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from bottleneck_jax.data import batches
from bottleneck_jax.train import make_mesh, train

N, D, O, B, STEPS, SEED, LR = 64, 16, 8, 16, 6, 3, 0.05
_rng = np.random.default_rng(0)
DATA = {"x": _rng.normal(size=(N, D)).astype(np.float32),
        "y": _rng.normal(size=(N, O)).astype(np.float32)}


def _model():
  return nnx.Linear(D, O, rngs=nnx.Rngs(0))


def _loss(model, batch, key):
  noise = 0.1 * jax.random.normal(key, batch["y"].shape)
  err = model(batch["x"]) - batch["y"] + noise
  loss = jnp.mean(err**2)
  return loss, {"mae": jnp.mean(jnp.abs(err))}


def _reference():
  """Plain jax.grad + optax.adam on the same batches and step keys (the documented contract)."""
  params = nnx.state(_model(), nnx.Param)
  params = {"kernel": np.asarray(params["kernel"][...]), "bias": np.asarray(params["bias"][...])}
  tx = optax.adam(LR)
  opt_state = tx.init(params)
  train_key = jax.random.split(jax.random.key(SEED))[0]
  it = batches(DATA, batch_size=B, seed=SEED, process_index=0, process_count=1)

  def loss(p, batch, key):
    noise = 0.1 * jax.random.normal(key, batch["y"].shape)
    return jnp.mean((batch["x"] @ p["kernel"] + p["bias"] - batch["y"] + noise) ** 2)

  for step in range(STEPS):
    g = jax.grad(loss)(params, next(it), jax.random.fold_in(train_key, step))
    with jax.numpy_dtype_promotion("standard"):
      upd, opt_state = tx.update(g, opt_state, params)
      params = optax.apply_updates(params, upd)
  return params


REF = None


def _check_against_reference(result, tol):
  global REF
  if REF is None:
    REF = _reference()
  np.testing.assert_allclose(np.asarray(result.model.kernel[...]), REF["kernel"], rtol=tol,
                             atol=tol)
  np.testing.assert_allclose(np.asarray(result.model.bias[...]), REF["bias"], rtol=tol, atol=tol)
  # nnx.jit keeps the optimizer state (a plain jax.jit step would leave it at 0)
  assert int(result.optimizer.step[...]) == STEPS


@pytest.mark.parametrize("mesh_kw", [
    {"devices": "one"},
    {},                                                   # 8-way data parallel, Explicit
    {"data": 4, "fsdp": 2},                               # FSDP, Explicit: gathered in the step
    {"data": 4, "fsdp": 2, "axis_types": "auto"},         # FSDP, Auto: XLA gathers
])
def test_matches_plain_optax_on_any_mesh(mesh_kw):
  kw = dict(mesh_kw)
  if kw.pop("devices", None) == "one":
    kw["devices"] = jax.devices()[:1]
  mesh = make_mesh(**kw)
  result = train(_model, optax.adam(LR), _loss, DATA, steps=STEPS, batch_size=B, seed=SEED,
                 mesh=mesh, min_shard_size=1, progress=False)
  if mesh.shape["fsdp"] > 1:
    assert not result.model.kernel[...].sharding.is_fully_replicated
  _check_against_reference(result, 2e-5)
  assert set(result.metrics) == {"loss", "mae"}


def test_resume_is_bit_identical_and_finished_run_reports(tmp_path):
  logs = []
  eval_fn = lambda model, key: {"w": jnp.sum(model.kernel[...])}
  kw = {"batch_size": B, "seed": SEED, "eval_fn": eval_fn, "progress": False, "mesh": make_mesh()}
  full = train(_model, optax.adam(LR), _loss, DATA, steps=STEPS, checkpoint_dir=tmp_path / "a",
               checkpoint_every=2, **kw)
  # stop at step 3 (a final checkpoint there), then continue to STEPS in a new call
  part = train(_model, optax.adam(LR), _loss, DATA, steps=3, checkpoint_dir=tmp_path / "b",
               checkpoint_every=2, **kw)
  assert part.step == 3 and part.resumed_from is None
  resumed = train(_model, optax.adam(LR), _loss, DATA, steps=STEPS,
                  checkpoint_dir=tmp_path / "b", checkpoint_every=2,
                  log=lambda step, **m: logs.append((step, m)), **kw)
  assert resumed.resumed_from == 3
  assert [s for s, _ in logs if _.get("split") == "eval"] == [STEPS]
  for a, b in zip(jax.tree.leaves(nnx.state((full.model, full.optimizer))),
                  jax.tree.leaves(nnx.state((resumed.model, resumed.optimizer)))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert resumed.metrics == full.metrics
  again = train(_model, optax.adam(LR), _loss, DATA, steps=STEPS,
                checkpoint_dir=tmp_path / "b", checkpoint_every=2, **kw)
  assert again.resumed_from == STEPS and again.metrics == full.metrics
  np.testing.assert_array_equal(np.asarray(again.model.kernel[...]),
                                np.asarray(full.model.kernel[...]))
  with pytest.raises(ValueError, match=r"another configuration \(differs in \['lr'\]\)"):
    train(_model, optax.adam(LR), _loss, DATA, steps=STEPS, checkpoint_dir=tmp_path / "b",
          config={"lr": 1.0}, **kw)
  with pytest.raises(ValueError, match="beyond steps=2"):
    train(_model, optax.adam(LR), _loss, DATA, steps=2, checkpoint_dir=tmp_path / "b", **kw)


@pytest.mark.parametrize("kwargs,match", [
    ({"steps": 0}, "steps must be a positive int"),
    ({"batch_size": 12}, "batch_size must be a multiple of the number of devices"),
    ({"batch_size": 128}, "batch_size must be <= the number of examples 64"),
    ({"eval_every": -1}, "eval_every must be a non-negative int"),
    ({"data": {"x": DATA["x"], "y": DATA["y"][:10]}}, "share their leading dimension"),
    ({"data": {}}, "non-empty dict"),
])
def test_errors(kwargs, match):
  kw = {"steps": 2, "batch_size": B, "progress": False}
  data = kwargs.pop("data", DATA)
  kw.update(kwargs)
  with pytest.raises(ValueError, match=match):
    train(_model, optax.adam(LR), _loss, data, **kw)


def test_preemption_saves_and_resumes_exactly(tmp_path, monkeypatch):
  from bottleneck_jax.train import PreemptedError
  from bottleneck_jax.train.checkpoint import Checkpointer

  kw = {"steps": STEPS, "batch_size": B, "seed": SEED, "progress": False, "mesh": make_mesh(),
            "checkpoint_dir": tmp_path / "p", "checkpoint_every": 100}
  monkeypatch.setattr(Checkpointer, "reached_preemption", lambda self, step: step == 2)
  with pytest.raises(PreemptedError, match="preempted at step 2"):
    train(_model, optax.adam(LR), _loss, DATA, **kw)
  monkeypatch.undo()
  with Checkpointer(tmp_path / "p") as ck:
    assert ck.all_steps() == [2]
  resumed = train(_model, optax.adam(LR), _loss, DATA, **kw)
  assert resumed.resumed_from == 2
  _check_against_reference(resumed, 2e-5)
