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


def _grain_factory():
  return batches(DATA, batch_size=B, seed=SEED, process_index=0, process_count=1)


def _generator_factory():
  """A plain generator (no get_state): the resume re-creates it and skips the used batches."""
  def gen():
    it = _grain_factory()
    for b in it:
      yield {k: np.array(v) for k, v in b.items()}
  return gen()


@pytest.mark.parametrize("factory", [_grain_factory, _generator_factory])
def test_iterator_data_trains_and_resumes_bit_identically(tmp_path, factory):
  kw = {"seed": SEED, "progress": False, "mesh": make_mesh(), "checkpoint_every": 2}
  full = train(_model, optax.adam(LR), _loss, factory, steps=STEPS,
               checkpoint_dir=tmp_path / "full", **kw)
  _check_against_reference(full, 2e-5)  # same batches as the dict-of-arrays path
  part = train(_model, optax.adam(LR), _loss, factory, steps=3, checkpoint_dir=tmp_path / "b",
               **kw)
  assert part.step == 3
  resumed = train(_model, optax.adam(LR), _loss, factory, steps=STEPS,
                  checkpoint_dir=tmp_path / "b", **kw)
  assert resumed.resumed_from == 3
  for a, b in zip(jax.tree.leaves(nnx.state((full.model, full.optimizer))),
                  jax.tree.leaves(nnx.state((resumed.model, resumed.optimizer)))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_one_shot_iterators(tmp_path):
  # a grain iterator object resumes through its state
  kw = {"seed": SEED, "progress": False, "mesh": make_mesh()}
  train(_model, optax.adam(LR), _loss, _grain_factory(), steps=3,
        checkpoint_dir=tmp_path / "g", **kw)
  resumed = train(_model, optax.adam(LR), _loss, _grain_factory(), steps=STEPS,
                  checkpoint_dir=tmp_path / "g", **kw)
  assert resumed.resumed_from == 3
  _check_against_reference(resumed, 2e-5)
  # a generator object cannot be rewound: refused with checkpoints, fine without
  with pytest.raises(ValueError, match="one-shot generator without get_state"):
    train(_model, optax.adam(LR), _loss, _generator_factory(), steps=STEPS,
          checkpoint_dir=tmp_path / "x", **kw)
  _check_against_reference(
      train(_model, optax.adam(LR), _loss, _generator_factory(), steps=STEPS, **kw), 2e-5)
  with pytest.raises(ValueError, match="ended after step 2, before steps=6"):
    train(_model, optax.adam(LR), _loss, [next(_grain_factory())] * 2, steps=STEPS, **kw)
  with pytest.raises(ValueError, match="expected batch_size=32"):
    train(_model, optax.adam(LR), _loss, _grain_factory, steps=STEPS, batch_size=32, **kw)


class _Cache(nnx.Variable):
  """Non-differentiable state that the loss writes (like a gradient-norm cache)."""


class _Adapted(nnx.Module):
  def __init__(self, rngs):
    self.lora = nnx.LoRA(D, 2, O, base_module=nnx.Linear(D, O, rngs=rngs), rngs=rngs)
    self.last_loss = _Cache(jnp.zeros((), jnp.float32))
    self.calls = _Cache(jnp.zeros((), jnp.int32))


def _adapted_loss(model, batch, key):
  loss, aux = _loss(model.lora, batch, key)
  model.last_loss[...] = loss
  model.calls[...] = model.calls[...] + 1
  return loss, aux


def test_wrt_lora_trains_adapters_only_and_keeps_mutable_state():
  mesh = make_mesh(devices=jax.devices()[:1])
  res = train(lambda: _Adapted(nnx.Rngs(1)), optax.adam(LR), _adapted_loss, DATA, steps=STEPS,
              batch_size=B, seed=SEED, wrt=nnx.LoRAParam, mesh=mesh, progress=False)
  init = _Adapted(nnx.Rngs(1))
  w, bias = np.asarray(init.lora.base_module.kernel[...]), np.asarray(init.lora.base_module.bias[...])
  # reference: plain optax on the two adapter matrices, the base layer frozen
  p = {"a": np.asarray(init.lora.lora_a[...]), "b": np.asarray(init.lora.lora_b[...])}
  tx = optax.adam(LR)
  st = tx.init(p)
  train_key = jax.random.split(jax.random.key(SEED))[0]
  it = batches(DATA, batch_size=B, seed=SEED, process_index=0, process_count=1)

  def loss(p, batch, key):
    noise = 0.1 * jax.random.normal(key, batch["y"].shape)
    pred = batch["x"] @ w + bias + batch["x"] @ p["a"] @ p["b"]
    return jnp.mean((pred - batch["y"] + noise) ** 2)

  for step in range(STEPS):
    last, g = jax.value_and_grad(loss)(p, next(it), jax.random.fold_in(train_key, step))
    with jax.numpy_dtype_promotion("standard"):
      upd, st = tx.update(g, st, p)
      p = optax.apply_updates(p, upd)
  np.testing.assert_allclose(np.asarray(res.model.lora.lora_a[...]), p["a"], atol=2e-5)
  np.testing.assert_allclose(np.asarray(res.model.lora.lora_b[...]), p["b"], atol=2e-5)
  assert np.abs(p["b"]).max() > 1e-3  # the adapters did move
  np.testing.assert_array_equal(np.asarray(res.model.lora.base_module.kernel[...]), w)
  assert int(res.model.calls[...]) == STEPS
  np.testing.assert_allclose(float(res.model.last_loss[...]), float(last), rtol=1e-5)


def test_resume_checks_config_and_code_before_restoring(tmp_path, monkeypatch):
  from bottleneck_jax.train import allowing_code_change, loop

  def model(width):
    return lambda: nnx.Sequential(nnx.Linear(D, width, rngs=nnx.Rngs(0)),
                                  nnx.Linear(width, O, rngs=nnx.Rngs(1)))

  kw = {"batch_size": B, "seed": SEED, "progress": False, "mesh": make_mesh(),
        "checkpoint_dir": tmp_path / "c"}
  loss = lambda m, b, k: (jnp.mean((m(b["x"]) - b["y"]) ** 2), {})  # noqa: E731
  train(model(8), optax.adam(LR), loss, DATA, steps=2, config={"width": 8}, **kw)
  # another shape: the configuration is refused before any array is read (no Orbax error)
  with pytest.raises(ValueError, match=r"another configuration \(differs in \['width'\]\)"):
    train(model(16), optax.adam(LR), loss, DATA, steps=4, config={"width": 16}, **kw)
  other = {"version": loop.code_version()["version"], "commit": "0" * 40}
  monkeypatch.setattr(loop, "code_version", lambda: other)
  with pytest.raises(ValueError, match="written by another code version .*commit 000000000000"):
    train(model(8), optax.adam(LR), loss, DATA, steps=4, config={"width": 8}, **kw)
  assert train(model(8), optax.adam(LR), loss, DATA, steps=3, config={"width": 8},
               allow_code_change=True, **kw).resumed_from == 2
  with allowing_code_change():
    assert train(model(8), optax.adam(LR), loss, DATA, steps=4, config={"width": 8},
                 **kw).resumed_from == 3
