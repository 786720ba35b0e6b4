"""train.sweep (members vmapped) against train() run once per member, and plot_curves."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from bottleneck_jax.train import make_mesh, plot_curves, sweep, train

N, D, O, B, STEPS, SEED = 64, 16, 8, 16, 6, 3
_rng = np.random.default_rng(1)
DATA = {"x": _rng.normal(size=(N, D)).astype(np.float32),
        "y": _rng.normal(size=(N, O)).astype(np.float32)}
MEMBERS = [{"lr": 0.01, "seed": 0, "l2": 0.0}, {"lr": 0.05, "seed": 0, "l2": 0.1},
           {"lr": 0.02, "seed": 1, "l2": 0.01}]


def _model(member):
  return nnx.Linear(D, O, rngs=nnx.Rngs(jax.random.key(member["seed"])))


def _loss(model, batch, key, member):
  noise = 0.1 * jax.random.normal(key, batch["y"].shape)
  err = model(batch["x"]) - batch["y"] + noise
  l2 = member["l2"] * jnp.sum(model.kernel[...] ** 2)
  return jnp.mean(err**2) + l2, {"mae": jnp.mean(jnp.abs(err))}


def _eval(model, key, member):
  return {"w": jnp.sum(model.kernel[...]), "u": jax.random.uniform(key)}


def test_sweep_matches_one_train_per_member():
  logs = []
  res = sweep(_model, lambda m: optax.adam(m["lr"]), _loss, DATA, members=MEMBERS,
              steps=STEPS, batch_size=B, seed=SEED, eval_fn=_eval, eval_every=3, log_every=2,
              progress=False, log=lambda step, **m: logs.append((step, m)))
  assert res.labels[1] == "lr=0.05, seed=0, l2=0.1"
  mesh = make_mesh(devices=jax.devices()[:1])
  for i, m in enumerate(MEMBERS):
    ref = train(functools.partial(_model, m), optax.adam(m["lr"]),
                functools.partial(_loss, member=m), DATA, steps=STEPS, batch_size=B, seed=SEED,
                eval_fn=functools.partial(_eval, member=m), eval_every=3, log_every=2,
                mesh=mesh, progress=False)
    got = res.model(i)
    np.testing.assert_allclose(np.asarray(got.kernel[...]), np.asarray(ref.model.kernel[...]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got.bias[...]), np.asarray(ref.model.bias[...]),
                               rtol=1e-5, atol=1e-6)
    evals = [r for r in res.histories[i] if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [h["step"] for h in ref.history] == [3, 6]
    for a, b in zip(evals, ref.history):
      np.testing.assert_allclose(a["w"], b["w"], rtol=1e-5)
      assert a["u"] == b["u"]  # the same evaluation keys
    assert res.metrics[i] == {k: v for k, v in evals[-1].items() if k not in ("step", "split")}
  steps, losses = res.curves("loss")[res.labels[0]]
  assert steps == [2, 4, 6] and len(losses) == 3
  assert sum(1 for _, m in logs if m["split"] == "train") == 3 * len(MEMBERS)
  assert {m["member"] for _, m in logs} == {0, 1, 2} and logs[0][1]["lr"] == 0.01


@pytest.mark.parametrize("members,match", [
    ([], "non-empty list of dicts"),
    ([{"lr": 0.1}, {"seed": 1}], "same keys"),
    ([{"lr": float("nan")}], "must be finite"),
    ([{"lr": "big"}], "must be a number"),
])
def test_sweep_rejects_bad_members(members, match):
  with pytest.raises(ValueError, match=match):
    sweep(_model, lambda m: optax.adam(m["lr"]), _loss, DATA, members=members, steps=1,
          batch_size=B, progress=False)


def test_plot_curves_writes_the_png(tmp_path):
  import matplotlib.image as mpimg
  out = plot_curves(tmp_path / "sub" / "c.png", {"a": ([1, 2, 3], [1.0, 0.1, 0.01]),
                                                 "b": ([1, 2], [0.5, 0.2]), "empty": ([], [])},
                    ylabel="loss", logy=True, title="t", hline=0.3, figsize=(4, 3), dpi=50)
  img = mpimg.imread(out)
  assert img.shape[:2] == (150, 200)  # figsize x dpi
  assert img[..., :3].min() < 0.5  # something was drawn
  with pytest.raises(ValueError, match="non-empty dict"):
    plot_curves(tmp_path / "x.png", {})
  with pytest.raises(ValueError, match="equal lengths"):
    plot_curves(tmp_path / "x.png", {"a": ([1, 2], [1.0])})
