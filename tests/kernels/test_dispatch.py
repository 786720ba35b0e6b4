"""Tests for the kernel infrastructure: dispatch, fallbacks, block helpers, sharded calls."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

from bottleneck_jax import kernels
from bottleneck_jax.kernels import testing as ktesting


def _ref(x):
  return x + 1.0


def _xla(x):
  return x + 1.0


def _pallas(x):
  raise kernels.UnsupportedInput("shape not supported")


op = kernels.Op("toy", {"reference": _ref, "xla": _xla, "pallas": _pallas})


def test_default_on_cpu_is_xla_and_falls_back_past_unsupported_kernels():
  assert kernels.backend() == "cpu"
  assert kernels.default_order() == ("xla",)
  assert kernels.default_order("gpu") == ("pallas", "xla")
  assert op.resolve(None) == (("xla",), False)
  np.testing.assert_array_equal(op(jnp.zeros(2)), [1.0, 1.0])
  # A sequence falls back past NotImplementedError.
  np.testing.assert_array_equal(op(jnp.zeros(2), implementation=("pallas", "xla")), [1.0, 1.0])


def test_only_unsupported_input_falls_back_and_the_first_fallback_warns_once(caplog):
  def jax_bug(x):
    raise NotImplementedError("a JAX primitive without a rule")  # a real error, not a choice
  strict = kernels.Op("strict", {"xla": _xla, "pallas": jax_bug})
  with pytest.raises(NotImplementedError, match="without a rule"):
    strict(jnp.zeros(2), implementation=("pallas", "xla"))
  once = kernels.Op("once", {"reference": _ref, "xla": _xla, "pallas": _pallas})
  with caplog.at_level("WARNING", logger="bottleneck_jax.kernels"):
    once(jnp.zeros(2), implementation=("pallas", "xla"))
    once(jnp.zeros(2), implementation=("pallas", "xla"))
  warnings = [r for r in caplog.records if r.levelname == "WARNING"]
  assert len(warnings) == 1 and "once" in warnings[0].getMessage()


def test_validated_on_restricts_the_default_choice_not_an_explicit_one():
  calls = []
  gpu_only = kernels.Op("gpu_only", {"xla": lambda x: calls.append("x") or x,
                                     "pallas": lambda x: calls.append("p") or x},
                        validated_on={"pallas": ("gpu",)})
  assert gpu_only.validated_on == {"xla": kernels.PLATFORMS, "pallas": ("gpu",)}
  gpu_only(jnp.zeros(1))
  gpu_only(jnp.zeros(1), implementation="pallas")
  assert calls == ["x", "p"]
  with pytest.raises(ValueError, match="validated_on names 'triton'"):
    kernels.Op("bad", {"xla": _xla}, validated_on={"triton": ("gpu",)})
  with pytest.raises(ValueError, match=r"validated_on\['xla'\] must be a sequence"):
    kernels.Op("bad", {"xla": _xla}, validated_on={"xla": "gpu"})


def test_explicit_unsupported_implementation_reraises_its_reason():
  with pytest.raises(NotImplementedError, match="toy: implementation 'pallas' cannot run these "
                     "inputs: shape not supported"):
    op(jnp.zeros(2), implementation="pallas")


def test_unknown_and_unregistered_implementations_are_clear_errors():
  with pytest.raises(ValueError, match=r"toy: unknown implementation 'cuda'; expected None or one of"):
    op(jnp.zeros(2), implementation="cuda")
  with pytest.raises(ValueError, match="toy: implementation 'triton' is not available"):
    op(jnp.zeros(2), implementation="triton")
  with pytest.raises(TypeError, match="toy: implementation must be None, a str"):
    op(jnp.zeros(2), implementation=3)
  with pytest.raises(ValueError, match="empty sequence"):
    op(jnp.zeros(2), implementation=())
  with pytest.raises(NotImplementedError, match="no implementation could run"):
    op(jnp.zeros(2), implementation=("pallas",))


def test_force_context_overrides_default_only():
  calls = []
  traced = kernels.Op("t2", {"reference": lambda x: calls.append("r") or x,
                             "xla": lambda x: calls.append("x") or x})
  with kernels.force("reference"):
    traced(jnp.zeros(1))
    traced(jnp.zeros(1), implementation="xla")
  traced(jnp.zeros(1))
  assert calls == ["r", "x", "x"]
  with pytest.raises(ValueError, match="unknown implementation"):
    with kernels.force("nope"):
      pass


def test_pallas_interpret_on_cpu_and_env_override(monkeypatch):
  assert kernels.pallas_interpret() is True
  assert kernels.pallas_interpret("gpu") is False
  monkeypatch.setenv("BOTTLENECK_JAX_PALLAS_INTERPRET", "1")
  assert kernels.pallas_interpret("gpu") is True


def test_block_helpers():
  assert kernels.cdiv(10, 4) == 3 and kernels.cdiv(8, 4) == 2
  assert kernels.round_up(10, 8) == 16
  assert [kernels.next_power_of_2(n) for n in (0, 1, 3, 8, 9)] == [1, 1, 4, 8, 16]
  assert kernels.pick_block(30522, 2048, multiple=128) == 2048
  assert kernels.pick_block(100, 2048, multiple=128) == 128
  assert kernels.pick_block(100, 64, power_of_2=True) == 64
  with pytest.raises(ValueError, match="size must be > 0"):
    kernels.pick_block(0, 8)


def _mesh(kind):
  types = (AxisType.Explicit,) * 2 if kind == "explicit" else (AxisType.Auto,) * 2
  return jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=types)


@pytest.mark.parametrize("kind", ["explicit", "auto"])
def test_batch_shard_map_runs_per_shard_and_keeps_batch_sharding(kind):
  from jax.experimental import pallas as pl

  def kernel(x_ref, w_ref, o_ref):
    o_ref[...] = x_ref[...] * w_ref[...]

  def call(x, w):
    return pl.pallas_call(kernel, out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype),
                          interpret=kernels.pallas_interpret())(x, w)

  x = jnp.arange(16 * 4, dtype=jnp.float32).reshape(16, 4)
  w = jnp.arange(4, dtype=jnp.float32)[None, :] + 1.0
  with jax.set_mesh(_mesh(kind)):
    xs = jax.device_put(x, P(("data", "fsdp")))
    ws = jax.device_put(w, P())
    f = jax.jit(lambda a, b: kernels.batch_shard_map(call, (a, b), batched=(True, False),
                                                     out_batched=True, batch_size=16))
    out = f(xs, ws)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(x * w))
  assert len(out.sharding.device_set) == 8
  assert not out.sharding.is_fully_replicated


def test_batch_shard_map_without_mesh_is_a_plain_call():
  out = kernels.batch_shard_map(lambda a: a * 2, (jnp.ones(3),), batched=(True,),
                                out_batched=True, batch_size=3)
  np.testing.assert_array_equal(out, [2.0, 2.0, 2.0])


def test_batch_axes_picks_divisible_prefix():
  with jax.set_mesh(_mesh("explicit")):
    mesh = kernels.current_mesh()
    assert kernels.batch_axes(mesh, 16) == ("data", "fsdp")
    assert kernels.batch_axes(mesh, 4) == ("data",)
    assert kernels.batch_axes(mesh, 3) == ()
  assert kernels.current_mesh() is None


def test_assert_implementations_agree_detects_a_wrong_gradient():
  @jax.custom_vjp
  def bad_square(x):
    return x * x

  bad_square.defvjp(lambda x: (x * x, x), lambda x, g: (g * x,))  # missing factor 2

  def fn(x, *, implementation):
    return x * x if implementation == "reference" else bad_square(x)

  x = jnp.linspace(0.5, 1.5, 5)
  ktesting.assert_implementations_agree(fn, (x,), implementations=("reference",))
  with pytest.raises(AssertionError, match="vjp"):
    ktesting.assert_implementations_agree(fn, (x,), implementations=("xla",))


def test_random_shapes_includes_a_non_multiple():
  rng = np.random.default_rng(0)
  sizes = ktesting.random_shapes(rng, 3, low=8, high=8, not_multiple_of=8)
  assert any(s % 8 for s in sizes)


def test_default_order_keeps_platform_kernels_when_an_op_has_no_xla(monkeypatch):
  from bottleneck_jax.kernels import dispatch
  only_pallas = kernels.Op("p", {"reference": _ref, "pallas": lambda x: x * 0.0})
  assert only_pallas.resolve(None) == (("reference",), False)  # CPU: no xla, no default kernel
  monkeypatch.setattr(dispatch, "backend", lambda: "gpu")
  assert only_pallas.resolve(None) == (("pallas",), False)
