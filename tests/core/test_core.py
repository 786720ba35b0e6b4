"""Tests for bottleneck_jax.core: protocol pytree, units, keys, validation messages."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bottleneck_jax import core
from bottleneck_jax.core import validation as V


def test_bottleneck_output_is_a_pytree_that_jit_and_vmap_carry():
  out = core.BottleneckOutput(z=jnp.ones((4, 3)), loss=jnp.float32(2.0), bits=jnp.arange(4.0),
                              aux={"kl": jnp.zeros(4)})
  leaves = jax.tree.leaves(out)
  assert len(leaves) == 4
  doubled = jax.jit(lambda o: jax.tree.map(lambda x: 2 * x, o))(out)
  assert isinstance(doubled, core.BottleneckOutput)
  np.testing.assert_array_equal(doubled.bits, [0.0, 2.0, 4.0, 6.0])
  per_row = jax.vmap(lambda z: core.BottleneckOutput(z, z.sum(), z.sum(), {}))(out.z)
  np.testing.assert_array_equal(per_row.bits, np.full(4, 3.0))


def test_units_closed_form():
  assert float(core.nats_to_bits(math.log(8.0))) == pytest.approx(3.0, rel=1e-6)
  assert float(core.bits_to_nats(1.0)) == pytest.approx(math.log(2.0), rel=1e-6)


def test_as_key_accepts_int_typed_and_raw_keys():
  k1 = core.as_key(3)
  k2 = core.as_key(jax.random.key(3))
  np.testing.assert_array_equal(jax.random.key_data(k1), jax.random.key_data(k2))
  raw = jax.random.PRNGKey(0)
  assert core.as_key(raw) is raw


@pytest.mark.parametrize("bad", ["seed", 1.5, np.zeros(3, np.float32), None])
def test_as_key_rejects_non_keys(bad):
  with pytest.raises(TypeError, match="myfn: key must be a jax.random key"):
    core.as_key(bad, fn="myfn")


def test_as_key_rejects_key_arrays():
  with pytest.raises(ValueError, match="single PRNG key"):
    core.as_key(jax.random.split(jax.random.key(0), 3))


def test_split_like_gives_distinct_keys_per_leaf():
  keys = core.split_like(jax.random.key(0), {"a": 1, "b": (2, 3)})
  data = [tuple(np.asarray(jax.random.key_data(k))) for k in jax.tree.leaves(keys)]
  assert len(set(data)) == 3


def test_validation_messages_name_function_argument_expected_and_actual():
  x = jnp.zeros((2, 3), jnp.float32)
  with pytest.raises(ValueError, match=r"f: x must have rank 3, got rank 2 \(shape \(2, 3\)\)"):
    V.check_rank("f", "x", x, 3)
  with pytest.raises(ValueError, match=r"rank >= 3"):
    V.check_rank("f", "x", x, min_rank=3)
  with pytest.raises(ValueError, match=r"f: x must have shape \[2, 4\], got \[2, 3\]"):
    V.check_shape("f", "x", x, (2, 4))
  V.check_shape("f", "x", x, (None, 3))
  with pytest.raises(ValueError, match="f: a and b must have the same shape"):
    V.check_same_shape("f", "a", x, "b", jnp.zeros(3))
  with pytest.raises(ValueError, match="size 4 on axis -1"):
    V.check_axis_size("f", "x", x, -1, 4)
  with pytest.raises(TypeError, match="f: labels must have an integer dtype, got float32"):
    V.check_integer("f", "labels", x)
  with pytest.raises(TypeError, match="f: x must have a floating dtype, got int32"):
    V.check_floating("f", "x", jnp.zeros(2, jnp.int32))
  with pytest.raises(TypeError, match=r"dtype in \['float32'\], got bfloat16"):
    V.check_floating("f", "x", jnp.zeros(2, jnp.bfloat16), allowed=[jnp.float32])
  with pytest.raises(TypeError, match="boolean or integer mask, got float32"):
    V.check_bool_or_int("f", "mask", x)
  with pytest.raises(TypeError, match="f: x must be an array, got str"):
    V.check_rank("f", "x", "abc", 1)


def test_check_scalar_ranges_and_types():
  V.check_scalar("f", "beta", 0.0, low=0.0)
  with pytest.raises(ValueError, match="f: beta must be >= 0.0, got -1"):
    V.check_scalar("f", "beta", -1, low=0.0)
  with pytest.raises(ValueError, match="f: p must be < 1, got 1"):
    V.check_scalar("f", "p", 1, high=1, high_inclusive=False)
  with pytest.raises(TypeError, match="f: n must be an int, got float 2.0"):
    V.check_scalar("f", "n", 2.0, integer=True)
  with pytest.raises(TypeError, match="must be a number"):
    V.check_scalar("f", "beta", "big")
  with pytest.raises(ValueError, match="got nan"):
    V.check_scalar("f", "beta", float("nan"))
  # Traced values are accepted (range unknown at trace time).
  jax.jit(lambda b: V.check_scalar("f", "beta", b, low=0.0) or b)(jnp.float32(-1.0))


def test_check_choice():
  with pytest.raises(ValueError, match=r"f: reduction must be one of \['mean', 'sum'\], got 'max'"):
    V.check_choice("f", "reduction", "max", ("mean", "sum"))


def test_atomic_write_text_replaces_whole_file_and_leaves_no_temporaries(tmp_path):
  p = tmp_path / "sub" / "f.json"
  core.atomic_write_text(p, "old")
  core.atomic_write_text(p, "new")
  assert p.read_text() == "new"
  assert sorted(x.name for x in p.parent.iterdir()) == ["f.json"]


def test_lists_are_refused_with_a_hint_and_static_scalars_must_be_concrete():
  with pytest.raises(TypeError, match=r"f: x must be an array, got list \(convert it with "
                     r"jnp.asarray\)"):
    V.check_floating("f", "x", [1.0, 2.0])
  with pytest.raises(TypeError, match="f: labels must be an array, got tuple"):
    V.check_integer("f", "labels", (1, 2))
  with pytest.raises(TypeError, match="f: eps must be a static Python number"):
    jax.jit(lambda e: V.check_scalar("f", "eps", e, low=0.0, static=True) or e)(1e-6)
