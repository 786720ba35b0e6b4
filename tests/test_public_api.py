"""Pins the public surface: each namespace exports exactly these names, each of this kind
(function, class, module, type alias or constant), like optax's API test. No public name shadows
a module: implementation modules are private (``information/_vib.py``) and the family re-exports.

Changing the public API is deliberate: update this table in the same commit. Each family pins
its own namespace in ``tests/<family>/_surface.py``."""

import importlib
import inspect
import pkgutil
import re
import types
import typing
from pathlib import Path

import pytest

import bottleneck_jax

SURFACE = {
    "bottleneck_jax": {
        "__version__": "constant",
        "architecture": "module",
        "attention": "module",
        "catalog": "module",
        "compression": "module",
        "concepts": "module",
        "core": "module",
        "data": "module",
        "efficiency": "module",
        "experiments": "module",
        "information": "module",
        "kernels": "module",
        "objectives": "module",
        "ops": "module",
        "quantize": "module",
        "train": "module",
    },
    "bottleneck_jax.core": {
        "Array": "class",
        "BottleneckOutput": "class",
        "LN2": "constant",
        "as_key": "function",
        "atomic_write_text": "function",
        "bits_to_nats": "function",
        "debug": "module",
        "distributions": "module",
        "nats_to_bits": "function",
        "split_like": "function",
        "validation": "module",
    },
    "bottleneck_jax.kernels": {
        "IMPLEMENTATIONS": "constant",
        "Implementation": "type",
        "Op": "class",
        "PLATFORMS": "constant",
        "UnsupportedInput": "class",
        "backend": "function",
        "batch_axes": "function",
        "batch_shard_map": "function",
        "cdiv": "function",
        "current_mesh": "function",
        "default_order": "function",
        "explicit_spec": "function",
        "force": "function",
        "forced": "function",
        "is_explicit": "function",
        "next_power_of_2": "function",
        "pallas_interpret": "function",
        "pick_block": "function",
        "round_up": "function",
        "testing": "module",
    },
    "bottleneck_jax.ops": {
        "AttentionOutput": "class",
        "CrossEntropyOutput": "class",
        "FusedRMSNorm": "class",
        "SAEFeatures": "class",
        "SAELoss": "class",
        "SAEMetrics": "class",
        "SAEParams": "class",
        "apply_rope": "function",
        "attention": "function",
        "block_mask_to_table": "function",
        "block_sparse_attention": "function",
        "block_sparse_decode": "function",
        "heaviside_step": "function",
        "init_sae": "function",
        "jumprelu": "function",
        "linear_cross_entropy": "function",
        "linear_cross_entropy_with_aux": "function",
        "linear_logit_stats": "function",
        "normalize_decoder": "function",
        "qk_rope": "function",
        "rms_norm": "function",
        "sae_decode": "function",
        "sae_encode": "function",
        "sae_loss": "function",
        "sae_metrics": "function",
        "swiglu": "function",
        "swiglu_linear": "function",
        "topk_activation": "function",
    },
    "bottleneck_jax.efficiency": {
        "LexLIPLoss": "class",
        "LexiconBottleneckOutput": "class",
        "LexicalPoolOutput": "class",
        "LexiconHead": "class",
        "SpladeHead": "class",
        "WTACRSGradNorms": "class",
        "WTACRSLinear": "class",
        "adaptive_c": "function",
        "budget": "function",
        "crs_sample": "function",
        "default_lora_label": "function",
        "flops_regularizer": "function",
        "l1_regularizer": "function",
        "lexical_max_pool": "function",
        "lexical_max_pool_with_indices": "function",
        "lexicon_bottleneck": "function",
        "lexicon_weighting": "function",
        "lexlip_contrastive_loss": "function",
        "lora_linear": "function",
        "lora_plus": "function",
        "lora_plus_labels": "function",
        "sampling_probs": "function",
        "store_grad_norms": "function",
        "wta_crs_linear": "function",
        "wta_crs_sample": "function",
    },
    "bottleneck_jax.data": {
        "AdditiveUniform": "class",
        "ArrayDataset": "class",
        "ConceptEmbeddings": "class",
        "ConceptSprites": "class",
        "ConfoundedEmbeddings": "class",
        "CorpusQuestion": "class",
        "CorrelatedGaussians": "class",
        "KohConcepts": "class",
        "DATASET_NAMES": "constant",
        "PackedBatch": "class",
        "PackingStats": "class",
        "RectanglePairs": "class",
        "RetrievalCorpus": "class",
        "SAMPLE_IMAGE_NAMES": "constant",
        "SparseDictionary": "class",
        "TabularConcepts": "class",
        "Tishby12": "class",
        "TwoSlot": "class",
        "additive_uniform": "function",
        "additive_uniform_mutual_information": "function",
        "batches": "function",
        "best_fit_decreasing": "function",
        "concept_embeddings": "function",
        "concept_sprites": "function",
        "confounded_embeddings": "function",
        "corpus_questions": "function",
        "correlated_gaussians": "function",
        "discrete_entropy": "function",
        "discrete_mutual_information": "function",
        "gaussian_mutual_information": "function",
        "koh_concepts": "function",
        "load_breast_cancer": "function",
        "load_breast_cancer_concepts": "function",
        "load_dataset": "function",
        "load_diabetes": "function",
        "load_digits": "function",
        "load_tfds": "function",
        "pack_sequences": "function",
        "rectangle_coordinates": "function",
        "rectangle_image_pairs": "function",
        "rectangle_images": "function",
        "retrieval_corpus": "function",
        "packed_attention_mask": "function",
        "sample_image": "function",
        "sample_images": "function",
        "source_to_arrays": "function",
        "sparse_dictionary": "function",
        "tfds_source": "function",
        "tishby12": "function",
        "to_global": "function",
        "two_slot": "function",
    },
    "bottleneck_jax.train": {
        "CheckpointError": "class",
        "CheckpointWarning": "class",
        "Checkpointer": "class",
        "NonFiniteLossError": "class",
        "PreemptedError": "class",
        "SweepResult": "class",
        "TrainResult": "class",
        "abstract_state": "function",
        "allowing_code_change": "function",
        "apply_optax": "function",
        "batch_sharding": "function",
        "code_version": "function",
        "default_mesh": "function",
        "gather_params": "function",
        "is_main_process": "function",
        "make_mesh": "function",
        "make_train_step": "function",
        "maybe_initialize": "function",
        "optimizer_update": "function",
        "param_spec": "function",
        "parse_mesh": "function",
        "plot_curves": "function",
        "put_replicated": "function",
        "pyplot": "function",
        "save_figure": "function",
        "set_default_mesh": "function",
        "shard_state": "function",
        "state_shardings": "function",
        "steps_for_epochs": "function",
        "sweep": "function",
        "train": "function",
    },
    "bottleneck_jax.experiments": {
        "Expectation": "class",
        "Experiment": "class",
        "Metric": "class",
        "MissingMetricError": "class",
        "Ref": "class",
        "RunContext": "class",
        "get": "function",
        "names": "function",
        "parse_overrides": "function",
        "register": "function",
        "resolve_config": "function",
        "run_experiment": "function",
    },
    "bottleneck_jax.catalog": {
        "Entry": "class",
        "FAMILIES": "constant",
        "STATUSES": "constant",
        "entries": "function",
        "format_table": "function",
        "get": "function",
        "paper_ids": "function",
        "record_problem": "function",
        "recorded_results": "function",
        "resolve": "function",
        "to_json": "function",
    },
}




def _family_surfaces() -> dict[str, dict[str, str]]:
  """Each family pins its own namespace in ``tests/<family>/_surface.py`` (``SURFACE``)."""
  out = {}
  for path in sorted(Path(__file__).parent.glob("*/_surface.py")):
    out[f"bottleneck_jax.{path.parent.name}"] = importlib.import_module(
        f"tests.{path.parent.name}._surface").SURFACE
  return out


_FAMILIES = _family_surfaces()
assert not set(_FAMILIES) & set(SURFACE), "a namespace is pinned twice"
SURFACE.update(_FAMILIES)


def _kind(obj) -> str:
  if isinstance(obj, types.ModuleType):
    return "module"
  if typing.get_origin(obj) is typing.Literal:
    return "type"
  if inspect.isclass(obj):
    return "class"
  if callable(obj):
    return "function"
  return "constant"


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_public_surface_and_kinds_are_pinned(module):
  mod = importlib.import_module(module)
  assert sorted(mod.__all__) == sorted(SURFACE[module]), module
  got = {name: _kind(getattr(mod, name)) for name in mod.__all__}
  assert got == SURFACE[module]


def _all_modules():
  yield bottleneck_jax
  for info in pkgutil.walk_packages(bottleneck_jax.__path__, "bottleneck_jax."):
    yield importlib.import_module(info.name)


def test_no_public_name_shadows_a_module():
  """``import bottleneck_jax.x.y as m`` and ``mock.patch("bottleneck_jax.x.y.f")`` must see the
  module ``y``: no package attribute named like one of its submodules may hold anything else."""
  for mod in _all_modules():
    if not hasattr(mod, "__path__"):
      continue
    for info in pkgutil.iter_modules(mod.__path__):
      sub = importlib.import_module(f"{mod.__name__}.{info.name}")
      attr = getattr(mod, info.name, sub)
      assert attr is sub, f"{mod.__name__}.{info.name} is {type(attr).__name__}, not the module"


def test_one_public_name_means_one_object_across_the_package():
  """A name two method namespaces (families, ops, core, data) export is the same object (a
  re-export), never two different implementations that a user could mix up (e.g. two
  ``sae_encode`` with different layouts). The catalogue and experiment registries are separate
  vocabularies (``catalog.get`` / ``experiments.get``)."""
  seen: dict[str, tuple[str, object]] = {}
  clashes = []
  for module in SURFACE:
    if module.split(".")[-1] in ("bottleneck_jax", "catalog", "experiments", "train", "kernels"):
      continue
    mod = importlib.import_module(module)
    for name in mod.__all__:
      obj = getattr(mod, name)
      if inspect.ismodule(obj):
        continue
      first = seen.setdefault(name, (module, obj))
      if first[1] is not obj:
        clashes.append(f"{first[0]}.{name} vs {module}.{name}")
  assert not clashes, clashes


def test_methods_live_in_private_modules():
  """Every public function or class of a family is defined in a private module of it."""
  for family in ("information", "efficiency", "ops", "concepts", "quantize", "compression",
                 "attention", "architecture", "objectives"):
    mod = importlib.import_module(f"bottleneck_jax.{family}")
    for name in mod.__all__:
      obj = getattr(mod, name)
      if isinstance(obj, types.ModuleType) or not hasattr(obj, "__module__"):
        continue
      parts = obj.__module__.split(".")
      assert any(p.startswith("_") for p in parts[2:]), (family, name, obj.__module__)


def test_top_level_exposes_families_and_version_only():
  assert bottleneck_jax.__version__ == "0.1.0"
  assert not any(callable(getattr(bottleneck_jax, n)) for n in bottleneck_jax.__all__
                 if n != "__version__")
  with pytest.raises(AttributeError):
    bottleneck_jax.vib  # noqa: B018 - nothing flat at the top level


def test_array_functions_annotate_shapes_with_jaxtyping():
  """Every public function of the ops and the families that takes arrays says their shapes
  (``Float[Array, "*batch d"]``), as DESIGN asks."""
  missing = []
  for family in ("ops", "information", "efficiency", "concepts", "quantize", "compression",
                 "attention", "architecture", "objectives", "core.distributions"):
    mod = importlib.import_module(f"bottleneck_jax.{family}")
    for name in mod.__all__:
      fn = getattr(mod, name)
      if not inspect.isfunction(fn):
        continue
      notes = [str(v) for v in inspect.get_annotations(fn).values()]
      takes_arrays = any("Array" in n for n in notes)
      shaped = any(re.search(r"(Float|Int|Bool|Shaped|Num|Real|Key)\[", n) for n in notes)
      if takes_arrays and not shaped:
        missing.append(f"{family}.{name}")
  assert not missing, missing
