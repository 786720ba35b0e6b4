"""Property tests of the public functions' input validation, and of the package conventions.

One table row per public function: its name, a builder of valid arguments (small shapes) and
which of them are positional. A generic Hypothesis strategy perturbs ONE argument of a valid call
(another rank, shape or dtype, a Python list, an empty axis, NaNs, ``None``, a scalar of the
wrong kind) and the call must either return or raise ``ValueError``/``TypeError`` whose message
starts with ``"<function name>:"``, never an error from JAX's or NumPy's internals (a
``TypeError`` from ``jnp``, ``IndexError``, ``ZeroDivisionError``,
``TracerArrayConversionError``, ``XlaRuntimeError``...).

The rows of ops, data, core and the first families are here; every other family keeps its rows
in ``tests/<family>/_property_cases.py`` (``CASES``, a list of ``tests._cases.Case``, and an
optional ``NO_ROW`` dict: public function -> why it has no row), collected below.

Cases that find a bug in a module owned by someone else are marked ``xfail(strict=False)`` with
the reason, so the owner can fix it and the mark can go.

Deterministic (``derandomize=True``) and fast: 6 examples per function (each perturbs every argument once), shapes <= 4.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bottleneck_jax import architecture as Arch
from bottleneck_jax import attention as Att
from bottleneck_jax import compression as Comp
from bottleneck_jax import concepts as C
from bottleneck_jax import data as D
from bottleneck_jax import efficiency as E
from bottleneck_jax import information as I
from bottleneck_jax import objectives as Obj
from bottleneck_jax import ops as O
from bottleneck_jax import quantize as Q
from bottleneck_jax.core import distributions as Dist
from tests._cases import KEY, Case, _put, floats, ints

PKG = Path(__file__).resolve().parents[1] / "bottleneck_jax"
FAMILIES = (E, I, Q, Comp, C, Att, Arch, Obj)


# ---------------------------------------------------------------------------------------------
# The table: (name, function, valid-argument builder, positional argument names)


_f, _i = floats, ints


CASES = [
    # ops (shared kernels)
    Case("rms_norm", O.rms_norm,
         lambda r: {"x": _f(r, 3, 4), "weight": _f(r, 4), "implementation": None},
         ("x", "weight")),
    Case("swiglu", O.swiglu, lambda r: {"a": _f(r, 3, 4), "u": _f(r, 3, 4)}, ("a", "u")),
    Case("swiglu_linear", O.swiglu_linear,
         lambda r: {"x": _f(r, 3, 4), "w_gate": _f(r, 4, 2), "w_up": _f(r, 4, 2)},
         ("x", "w_gate", "w_up")),
    Case("apply_rope", O.apply_rope,
         lambda r: {"x": _f(r, 2, 3, 2, 4), "positions": _i(r, 2, 3), "theta": 100.0},
         ("x", "positions")),
    Case("qk_rope", O.qk_rope,
         lambda r: {"q": _f(r, 2, 3, 2, 4), "k": _f(r, 2, 3, 1, 4), "positions": _i(r, 2, 3)},
         ("q", "k", "positions")),
    Case("linear_cross_entropy", O.linear_cross_entropy,
         lambda r: {"x": _f(r, 3, 4), "w": _f(r, 5, 4), "labels": _i(r, 3),
                    "label_smoothing": 0.1, "reduction": "mean", "implementation": None},
         ("x", "w", "labels")),
    Case("linear_logit_stats", O.linear_logit_stats,
         lambda r: {"x": _f(r, 3, 4), "w": _f(r, 5, 4), "labels": _i(r, 3)},
         ("x", "w", "labels")),
    *([Case("linear_cross_entropy_with_aux", O.linear_cross_entropy_with_aux,
            lambda r: {"x": _f(r, 3, 4), "w": _f(r, 5, 4), "labels": _i(r, 3)},
            ("x", "w", "labels"))] if hasattr(O, "linear_cross_entropy_with_aux") else []),
    Case("attention", O.attention,
         lambda r: {"q": _f(r, 1, 3, 2, 4), "k": _f(r, 1, 3, 1, 4), "v": _f(r, 1, 3, 1, 4),
                    "causal": True, "implementation": None},
         ("q", "k", "v")),
    # efficiency
    Case("lexical_max_pool", E.lexical_max_pool,
         lambda r: {"h": _f(r, 2, 3, 4), "w": _f(r, 5, 4), "bias": _f(r, 5),
                    "mask": jnp.asarray(r.integers(0, 2, (2, 3)).astype(bool)),
                    "implementation": None},
         ("h", "w", "bias")),
    Case("lexical_max_pool_with_indices", E.lexical_max_pool_with_indices,
         lambda r: {"h": _f(r, 2, 3, 4), "w": _f(r, 5, 4), "bias": _f(r, 5),
                    "mask": jnp.asarray(r.integers(0, 2, (2, 3)).astype(bool))},
         ("h", "w", "bias")),
    # quantize
    Case("fsq", Q.fsq, lambda r: {"z": _f(r, 2, 3, 4), "levels": [8, 5, 5, 5]}, ("z",)),
    Case("fsq_codes_to_indices", Q.fsq_codes_to_indices,
         lambda r: {"codes": jnp.zeros((2, 3), jnp.float32), "levels": [8, 5, 5]}, ("codes",)),
    Case("fsq_indices_to_codes", Q.fsq_indices_to_codes,
         lambda r: {"indices": _i(r, 2, 3, high=200), "levels": [8, 5, 5]}, ("indices",)),
    Case("lfq", Q.lfq, lambda r: {"z": _f(r, 2, 3, 4)}, ("z",)),
    Case("lfq_indices_to_codes", Q.lfq_indices_to_codes,
         lambda r: {"indices": _i(r, 2, 3, high=16), "dim": 4}, ("indices",)),
    Case("nearest_code", Q.nearest_code,
         lambda r: {"z": _f(r, 2, 3, 4), "codebook": _f(r, 5, 4), "implementation": None},
         ("z", "codebook")),
    Case("vector_quantize", Q.vector_quantize,
         lambda r: {"z": _f(r, 2, 3, 4), "codebook": _f(r, 5, 4)}, ("z", "codebook")),
    Case("vq_ema_init", Q.vq_ema_init, lambda r: {"codebook": _f(r, 5, 4)}, ("codebook",)),
    Case("vq_ema_update", Q.vq_ema_update,
         lambda r: {"state": Q.vq_ema_init(_f(r, 5, 4)), "z": _f(r, 2, 3, 4),
                    "indices": _i(r, 2, 3, high=5)}, ("state", "z", "indices")),
    Case("lexicon_weighting", E.lexicon_weighting,
         lambda r: {"h": _f(r, 2, 3, 4), "w": _f(r, 5, 4), "bias": _f(r, 5),
                    "mask": jnp.asarray(r.integers(0, 2, (2, 3)).astype(bool))},
         ("h", "w", "bias")),
    Case("lexicon_bottleneck", E.lexicon_bottleneck,
         lambda r: {"h": _f(r, 2, 3, 4), "w": _f(r, 5, 4), "bias": _f(r, 5),
                    "word_emb": _f(r, 5, 2)},
         ("h", "w", "bias")),
    Case("lexlip_contrastive_loss", E.lexlip_contrastive_loss,
         lambda r: {"text_reps": _f(r, 3, 5), "image_reps": _f(r, 3, 5), "temperature": 0.1,
                    "flops_weight": 0.01},
         ("text_reps", "image_reps")),
    Case("flops_regularizer", E.flops_regularizer, lambda r: {"reps": _f(r, 3, 5)}, ("reps",)),
    Case("l1_regularizer", E.l1_regularizer, lambda r: {"reps": _f(r, 3, 5)}, ("reps",)),
    Case("sampling_probs", E.sampling_probs,
         lambda r: {"x": _f(r, 2, 3, 4), "grad_norms": _f(r, 2, 3)}, ("x", "grad_norms")),
    Case("crs_sample", E.crs_sample, lambda r: {"p": _f(r, 6), "k": 3, "key": KEY}, ("p",)),
    Case("wta_crs_sample", E.wta_crs_sample,
         lambda r: {"p": _f(r, 6), "k": 3, "key": KEY, "c": 1}, ("p",)),
    Case("adaptive_c", E.adaptive_c, lambda r: {"top_p": jnp.asarray([0.5, 0.3, 0.1])},
         ("top_p",)),
    Case("budget", E.budget, lambda r: {"n": 20, "ratio": 0.3, "minimal_k": 2}, ("n",)),
    Case("wta_crs_linear", E.wta_crs_linear,
         lambda r: {"x": _f(r, 2, 3, 4), "w": _f(r, 4, 2), "b": _f(r, 2), "key": KEY,
                    "ratio": 0.5, "minimal_k": 2, "grad_norms": _f(r, 2, 3)},
         ("x", "w", "b")),
    Case("lora_linear", E.lora_linear,
         lambda r: {"x": _f(r, 3, 4), "kernel": _f(r, 4, 2), "lora_a": _f(r, 4, 1),
                    "lora_b": _f(r, 1, 2), "scale": 2.0, "bias": _f(r, 2)},
         ("x", "kernel", "lora_a", "lora_b")),
    Case("lora_plus", E.lora_plus, lambda r: {"learning_rate": 0.1, "ratio": 4.0},
         ("learning_rate",)),
    # information
    Case("vib", I.vib,
         lambda r: {"mean": _f(r, 3, 2), "std": _f(r, 3, 2), "key": KEY, "beta": 0.1,
                    "num_samples": 2},
         ("mean", "std")),
    Case("vib_rate", I.vib_rate,
         lambda r: {"mean": _f(r, 3, 2), "std": _f(r, 3, 2), "z_samples": _f(r, 2, 3, 2)},
         ("mean", "std", "z_samples")),
    Case("vib_loss", I.vib_loss,
         lambda r: {"logits_s": _f(r, 2, 3, 4), "labels": _i(r, 3), "rate": _f(r, 3),
                    "beta": 0.1},
         ("logits_s", "labels", "rate")),
    Case("vib_predictive_logprobs", I.vib_predictive_logprobs,
         lambda r: {"logits_s": _f(r, 2, 3, 4)}, ("logits_s",)),
    Case("to_bits", I.to_bits, lambda r: {"nats": _f(r, 3)}, ("nats",)),
    Case("critic_scores", I.critic_scores,
         lambda r: {"x": _f(r, 3, 2), "y": _f(r, 3, 1),
                    "critic_fn": lambda a, b: jnp.sum(a) * jnp.sum(b)},
         ("x", "y", "critic_fn")),
    Case("infonce_lower_bound", I.infonce_lower_bound, lambda r: {"scores": _f(r, 3, 3)},
         ("scores",)),
    Case("nwj_lower_bound", I.nwj_lower_bound, lambda r: {"scores": _f(r, 2, 3, 3)},
         ("scores",)),
    Case("dv_lower_bound", I.dv_lower_bound, lambda r: {"scores": _f(r, 3, 3)}, ("scores",)),
    Case("js_lower_bound", I.js_lower_bound, lambda r: {"scores": _f(r, 3, 3)}, ("scores",)),
    Case("mine_init", I.mine_init, lambda r: {"dtype": jnp.float32}),
    Case("mine_lower_bound", I.mine_lower_bound,
         lambda r: {"scores": _f(r, 3, 3), "state": I.mine_init(), "decay": 0.9},
         ("scores", "state")),
    Case("ksg_mi", I.ksg_mi,
         lambda r: {"x": _f(r, 4, 2), "y": _f(r, 4), "k": 2}, ("x", "y")),
    # core.distributions
    Case("diag_gaussian_kl_std_normal", Dist.diag_gaussian_kl_std_normal,
         lambda r: {"mean": _f(r, 3, 2), "std": _f(r, 3, 2)}, ("mean", "std")),
    Case("diag_gaussian_log_prob", Dist.diag_gaussian_log_prob,
         lambda r: {"z": _f(r, 2, 3, 2), "mean": _f(r, 3, 2), "std": _f(r, 3, 2)},
         ("z", "mean", "std")),
    # data.packing
    Case("best_fit_decreasing", D.best_fit_decreasing,
         lambda r: {"lengths": [3, 1, 2, 4], "capacity": 4}, ("lengths", "capacity")),
    Case("pack_sequences", D.pack_sequences,
         lambda r: {"sequences": [np.arange(1, 4), np.arange(2, 4), np.array([7])],
                    "seq_len": 4, "pad_id": 0, "ignore_index": -100, "num_rows": 3},
         ("sequences",)),
    Case("packed_attention_mask", D.packed_attention_mask,
         lambda r: {"segment_ids": _i(r, 2, 4)}, ("segment_ids",)),
]


def _family_tables() -> tuple[list[Case], dict[str, str]]:
  """The rows each family keeps in ``tests/<family>/_property_cases.py`` (``CASES``), and its
  public functions that have no row, with why (``NO_ROW``, optional)."""
  rows, no_row = [], {}
  for path in sorted(Path(__file__).parent.glob("*/_property_cases.py")):
    mod = importlib.import_module(f"tests.{path.parent.name}._property_cases")
    rows += mod.CASES
    no_row.update(getattr(mod, "NO_ROW", {}))
  return rows, no_row


_FAMILY_CASES, _FAMILY_NO_ROW = _family_tables()
CASES += _FAMILY_CASES


# ---------------------------------------------------------------------------------------------
# Perturbations of one argument

DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16, jnp.int32, jnp.int8, jnp.uint32, jnp.bool_,
          jnp.complex64)
SCALARS = (0, -1, 1.5, 2, float("nan"), float("inf"), "x", None, True, (1, 2))
# Few distinct sizes: a perturbed call that is valid compiles its shapes once for all examples.
SIZES = st.sampled_from((1, 2, 3))
# A huge Python int is a valid value of a float hyper-parameter (it must not overflow int32); as
# a size (num_samples, seq_len) it is a valid request that simply does not fit in memory.
BIG_INT = 10**12


def _like(x, shape, r):
  """A new array of ``shape`` with values like ``x``'s (positive floats, small ints, bools)."""
  dt = jnp.dtype(x.dtype)
  if dt == jnp.bool_:
    return _put(r.integers(0, 2, shape).astype(bool))
  if jnp.issubdtype(dt, jnp.integer):
    return _put(r.integers(0, 3, shape).astype(dt))
  return _put((np.abs(r.standard_normal(shape)) + 0.1).astype(dt))


def _perturb(draw, r, x):
  """One perturbation of the value ``x``; returns ``(new_value, kind)``."""
  if hasattr(x, "shape") and hasattr(x, "dtype") and not jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key):
    kind = draw(st.sampled_from(("rank", "shape", "dtype", "list", "empty", "nan", "scalar",
                                 "none")))
    if kind == "rank":
      return _like(x, tuple(draw(st.lists(SIZES, max_size=4))), r), kind
    if kind == "shape":
      return _like(x, tuple(draw(SIZES) for _ in x.shape), r), kind
    if kind == "dtype":
      dt = draw(st.sampled_from(DTYPES))
      return _put(np.asarray(x, np.float32).astype(dt)), kind
    if kind == "list":
      return np.asarray(x).tolist(), kind
    if kind == "empty":
      shape = list(x.shape) or [1]
      shape[draw(st.integers(0, len(shape) - 1))] = 0
      return _like(x, tuple(shape), r), kind
    if kind == "nan":
      if jnp.issubdtype(x.dtype, jnp.floating):
        return _put(np.full(x.shape, np.nan, x.dtype)), kind
      return x, kind
    return (1.0 if kind == "scalar" else None), kind
  if isinstance(x, list):  # lengths / sequences
    kind = draw(st.sampled_from(("elem", "empty", "nested", "scalar")))
    if kind == "elem":
      new = list(x)
      new[draw(st.integers(0, len(x) - 1))] = draw(st.sampled_from(
          SCALARS + (np.arange(6).reshape(2, 3), np.array([1.5, 2.5]), np.array([], np.int32),
                     np.array([2**40]), [])))
      return new, kind
    if kind == "empty":
      return [], kind
    if kind == "nested":
      return [x], kind
    return draw(st.sampled_from(SCALARS)), kind
  # a Python scalar / string / key
  return draw(st.sampled_from(SCALARS + ((BIG_INT,) if isinstance(x, float) else ()))), "value"


@st.composite
def perturbed(draw, case: Case):
  """Calls of ``case``, each with ONE argument perturbed: one per argument, in turn.

  Returns a list of ``(kwargs, what)``. Perturbing every argument in each example (rather than
  one drawn argument) makes 6 examples cover each argument with 6 perturbations.
  """
  seed = draw(st.integers(0, 2**16))
  calls = []
  for name in sorted(case.build(np.random.default_rng(seed))):
    r = np.random.default_rng(seed)
    kw = case.build(r)
    new, kind = _perturb(draw, r, kw[name])
    kw[name] = new
    calls.append((kw, f"{name} <- {kind}: {_short(new)}"))
  return calls


def _short(v):
  if hasattr(v, "shape") and hasattr(v, "dtype"):
    return f"{jnp.dtype(v.dtype).name}{list(v.shape)}"
  s = repr(v)
  return s if len(s) < 60 else s[:57] + "..."


def _call(case: Case, kw: dict):
  kw = dict(kw)
  pos = [kw.pop(n) for n in case.positional]
  out = case.fn(*pos, **kw)
  jax.block_until_ready(jax.tree.leaves(out))
  return out


def _params():
  for c in CASES:
    marks = [pytest.mark.xfail(strict=False, reason=c.xfail)] if c.xfail else []
    yield pytest.param(c, id=c.name, marks=marks)


@pytest.mark.slow
def test_every_builder_is_valid():
  """The unperturbed arguments run (else every perturbation would test nothing)."""
  for case in CASES:
    _call(case, case.build(np.random.default_rng(0)))


@pytest.mark.parametrize("case", list(_params()))
@settings(max_examples=3, deadline=None, derandomize=True, database=None,
          phases=(Phase.explicit, Phase.generate),
          suppress_health_check=(HealthCheck.too_slow, HealthCheck.data_too_large))
@given(data=st.data())
def test_one_bad_argument_gives_a_named_error_or_a_result(case, data):
  for kw, what in data.draw(perturbed(case), label="perturbations"):
    try:
      _call(case, kw)
    except (ValueError, TypeError) as e:
      msg = str(e)
      assert msg.startswith(f"{case.name}:"), (
          f"{case.name} with {what}: {type(e).__module__}.{type(e).__name__} not naming the "
          f"function: {msg[:300]}")
    except Exception as e:  # noqa: BLE001 - any other exception is a bug
      pytest.fail(f"{case.name} with {what}: {type(e).__module__}.{type(e).__name__}: "
                  f"{str(e)[:300]}")


# ---------------------------------------------------------------------------------------------
# Regressions found here or reported (each fails on the code before the fix)


_BY_NAME = {c.name: c for c in CASES}

# (function, argument, bad value, owner's bug or None): single perturbations that the exhaustive
# sweep over (argument x perturbation kind) found; ours are fixed, others' are xfail(strict=False).
KNOWN = [
    ("pack_sequences", "sequences", lambda: [[np.arange(3), np.arange(2)]], None),
    ("lexlip_contrastive_loss", "temperature", lambda: 10**12, None),
    ("lexlip_contrastive_loss", "flops_weight", lambda: 10**12, None),
    ("lora_linear", "scale", lambda: 10**12, None),
    ("sampling_probs", "grad_norms", lambda: 1.0, None),
    ("lexicon_weighting", "h", lambda: jnp.ones((2, 3, 4), jnp.bfloat16), None),
    ("lexicon_bottleneck", "w", lambda: jnp.ones((5, 4), jnp.float16), None),
    # found here (was an AttributeError: w_up was never checked to be an array)
    ("swiglu_linear", "w_up", lambda: [[1.0, 2.0]] * 4, None),
    # found here, fixed by its owner (was a TypePromotionError under strict promotion)
    ("lexical_max_pool", "h", lambda: jnp.ones((2, 3, 4), jnp.bfloat16), None),
]


@pytest.mark.parametrize("name, arg, bad, owner_bug", [
    pytest.param(*k, id=f"{k[0]}-{k[1]}",
                 marks=[pytest.mark.xfail(strict=False, reason=k[3])] if k[3] else [])
    for k in KNOWN])
def test_known_single_perturbations(name, arg, bad, owner_bug):
  case = _BY_NAME[name]
  kw = case.build(np.random.default_rng(0))
  kw[arg] = bad()
  try:
    _call(case, kw)
  except (ValueError, TypeError) as e:
    assert str(e).startswith(f"{name}:"), f"{type(e).__name__}: {e}"


def test_regularizers_empty_batch_is_an_error_and_empty_vocab_is_zero():
  for fn in (E.flops_regularizer, E.l1_regularizer):
    with pytest.raises(ValueError, match=rf"{fn.__name__}: reps must have at least one row"):
      fn(jnp.zeros((0, 5)))  # was NaN (a mean over zero rows)
    assert float(fn(jnp.zeros((3, 0)))) == 0.0  # was a reshape error (-1 with a 0-size axis)


# ---------------------------------------------------------------------------------------------
# Conventions


_VALIDATION_IMPORT = "from bottleneck_jax.core import validation as V"


def test_one_import_style_for_core_validation():
  """Every module imports ``core.validation`` one way: ``from bottleneck_jax.core import
  validation as V`` (no ``as val``/``as _v``/``as V_``, no ``from ...validation import f``)."""
  bad = []
  pattern = re.compile(r"^\s*(from\s+bottleneck_jax\.core(\.validation)?\s+import\s+.*|"
                       r"import\s+bottleneck_jax\.core\.validation.*)$")
  for path in sorted(PKG.rglob("*.py")):
    text = path.read_text()
    # Join parenthesised import lists so a multi-line ``import (...)`` is one line.
    text = re.sub(r"\(\s*([^)]*?)\s*\)", lambda m: " ".join(m.group(1).split()), text)
    for line in text.splitlines():
      if not pattern.match(line) or "validation" not in line:
        continue
      if path.name == "__init__.py" and path.parent.name == "core":
        continue  # the package that defines it re-exports the module
      if line.strip() != _VALIDATION_IMPORT:
        bad.append(f"{path.relative_to(PKG.parent)}: {line.strip()}")
  assert not bad, "other import styles of core.validation:\n" + "\n".join(bad)


_KNOWN_RESULT_FLAGS: set[str] = set()


def test_no_public_function_has_a_flag_that_changes_its_number_of_results():
  """Package-wide: no public function (or NNX module ``__call__``) takes a ``return_*`` flag."""
  import inspect
  found = set()
  for mod in (*FAMILIES, O, D, Dist):
    for n in mod.__all__:
      obj = getattr(mod, n)
      call = vars(obj).get("__call__") if inspect.isclass(obj) else None
      fns = [(n, obj)] if inspect.isfunction(obj) else (
          [(f"{n}.__call__", call)] if inspect.isfunction(call) else [])
      for label, fn in fns:
        if any(p.startswith("return_") for p in inspect.signature(fn).parameters):
          found.add(f"{mod.__name__.split('.')[-1]}.{label}")
  assert not found - _KNOWN_RESULT_FLAGS, sorted(found - _KNOWN_RESULT_FLAGS)


def test_every_public_nnx_module_takes_rngs():
  """As flax's layers: ``rngs=`` (an ``nnx.Rngs``) is a constructor argument of every module."""
  import inspect

  from flax import nnx
  modules = [getattr(m, n) for m in (*FAMILIES, O) for n in m.__all__
             if inspect.isclass(getattr(m, n)) and issubclass(getattr(m, n), nnx.Module)]
  assert len(modules) >= 7
  bad = [c.__name__ for c in modules if "rngs" not in inspect.signature(c.__init__).parameters]
  assert not bad, bad


def test_public_arguments_say_epsilon_not_eps():
  """As flax and optax: a small constant is ``epsilon``."""
  import inspect
  bad = []
  for mod in (*FAMILIES, O, D, Dist):
    for n in mod.__all__:
      obj = getattr(mod, n)
      fn = vars(obj).get("__init__") if inspect.isclass(obj) else obj
      if inspect.isfunction(fn) and "eps" in inspect.signature(fn).parameters:
        bad.append(f"{mod.__name__}.{n}")
  assert not bad, bad


def test_no_flag_changes_the_number_of_results_in_our_functions():
  """``return_*`` flags that add results are gone from the functions converted to NamedTuples."""
  import inspect
  for fn in (E.lexicon_bottleneck, E.lexlip_contrastive_loss, I.vib_loss, E.lora_linear):
    assert not [p for p in inspect.signature(fn).parameters if p.startswith("return_")], fn
  out = E.lexicon_bottleneck(jnp.ones((2, 3, 4)), jnp.ones((5, 4)), word_emb=jnp.ones((5, 2)))
  assert out._fields == ("cbow", "probs")
  loss = E.lexlip_contrastive_loss(jnp.eye(3, 5), jnp.eye(3, 5))
  assert loss._fields == ("loss", "aux")


def test_no_public_name_clashes_with_flax_or_optax():
  """A public name of ours that is also a flax.nnx/optax name must be that very object."""
  import optax
  from flax import nnx
  clashes = []
  for mod in (*FAMILIES, O, D):
    for name in mod.__all__:
      for lib in (nnx, optax):
        if hasattr(lib, name) and getattr(lib, name) is not getattr(mod, name):
          clashes.append(f"{mod.__name__}.{name} vs {lib.__name__}.{name}")
  assert not clashes, clashes
  assert not hasattr(E, "LoRALinear") and not hasattr(I, "ema_update")


def test_case_table_covers_the_public_functions():
  """Every public function of ops, efficiency, information, core.distributions and
  data.packing has a row (or is listed here with why it has none)."""
  import inspect
  no_row = {"default_lora_label": "pure string logic on a path tuple",
            "lora_plus_labels": "any pytree is valid input",
            "store_grad_norms": "takes an nnx model and state; covered in test_wta_crs",
            **_FAMILY_NO_ROW}
  names = {c.name for c in CASES}
  missing = []
  for mod in (O, *FAMILIES, Dist):
    for n in mod.__all__:
      if inspect.isfunction(getattr(mod, n)) and n not in names and n not in no_row:
        missing.append(f"{mod.__name__}.{n}")
  for n in ("best_fit_decreasing", "pack_sequences", "packed_attention_mask"):
    assert n in names
  assert not missing, missing
