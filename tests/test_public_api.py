"""Pins the public surface: each namespace exports exactly these names (like optax_test.py).

Changing the public API is deliberate: update this list in the same commit."""

import importlib

import pytest

SURFACE = {
    "bottleneck_jax": [
        "__version__", "architecture", "attention", "catalog", "compression", "concepts", "core",
        "data", "efficiency", "experiments", "information", "kernels", "objectives", "quantize",
        "train",
    ],
    "bottleneck_jax.core": [
        "Array", "BottleneckOutput", "LN2", "as_key", "atomic_write_text", "bits_to_nats", "debug",
        "nats_to_bits", "split_like", "validation",
    ],
    "bottleneck_jax.kernels": [
        "IMPLEMENTATIONS", "Op", "backend", "batch_axes", "batch_shard_map", "cdiv", "current_mesh",
        "default_order", "explicit_spec", "force", "forced", "is_explicit", "next_power_of_2",
        "pallas_interpret", "pick_block", "round_up", "testing",
    ],
    "bottleneck_jax.information": [
        "VIB", "VIBClassifier", "VIBEncoder", "diag_gaussian_kl_std_normal",
        "diag_gaussian_log_prob", "ema_update", "vib", "vib_loss", "vib_predictive_logprobs",
        "vib_rate",
    ],
    "bottleneck_jax.efficiency": [
        "FusedRMSNorm", "LexiconHead", "LoRALinear", "PackedBatch", "SpladeHead", "WTACRSGradNorms",
        "WTACRSLinear", "adaptive_c", "apply_rope", "best_fit_decreasing", "budget", "chronicals",
        "crs_sample", "flops_regularizer", "l1_regularizer", "lexical_max_pool",
        "lexicon_bottleneck", "lexicon_weighting", "lexlip_contrastive_loss",
        "linear_cross_entropy", "linear_logit_stats", "lora_plus", "lora_plus_labels",
        "pack_sequences", "packed_attention_mask", "qk_rope", "rms_norm", "sampling_probs",
        "store_grad_norms", "swiglu", "swiglu_linear", "wta_crs_linear", "wta_crs_sample",
    ],
    "bottleneck_jax.efficiency.chronicals": [
        "FrozenWeight", "FusedRMSNorm", "LoRALinear", "PackedBatch", "PackingStats", "apply_rope",
        "best_fit_decreasing", "default_lora_label", "linear_cross_entropy", "linear_logit_stats",
        "lora_linear", "lora_plus", "lora_plus_labels", "pack_sequences", "packed_attention_mask",
        "qk_rope", "rms_norm", "swiglu", "swiglu_linear",
    ],
    "bottleneck_jax.data": [
        "ArrayDataset", "DATASET_NAMES", "SAMPLE_IMAGE_NAMES", "batches", "load_breast_cancer",
        "load_dataset", "load_diabetes", "load_digits", "load_tfds", "sample_image",
        "sample_images", "source_to_arrays", "tfds_source", "to_global",
    ],
    "bottleneck_jax.train": [
        "Checkpointer", "PreemptedError", "SweepResult", "TrainResult", "abstract_state",
        "allowing_code_change", "apply_optax", "batch_sharding", "code_version", "default_mesh",
        "gather_params", "is_main_process", "make_mesh", "make_train_step", "maybe_initialize",
        "optimizer_update", "param_spec", "parse_mesh", "plot_curves", "put_replicated", "pyplot",
        "save_figure", "set_default_mesh", "shard_state", "state_shardings", "steps_for_epochs",
        "sweep", "train",
    ],
    "bottleneck_jax.experiments": [
        "Experiment", "RunContext", "get", "names", "parse_overrides", "register", "resolve_config",
        "run_experiment",
    ],
    "bottleneck_jax.catalog": [
        "Entry", "FAMILIES", "STATUSES", "entries", "format_table", "get", "paper_ids",
        "recorded_results", "resolve", "to_json",
    ],
    "bottleneck_jax.concepts": [
    ],
    "bottleneck_jax.quantize": [
    ],
    "bottleneck_jax.compression": [
    ],
    "bottleneck_jax.attention": [
    ],
    "bottleneck_jax.architecture": [
    ],
    "bottleneck_jax.objectives": [
    ],
}


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_public_surface_is_pinned(module):
  mod = importlib.import_module(module)
  assert sorted(mod.__all__) == SURFACE[module]
  for name in mod.__all__:
    assert hasattr(mod, name), f"{module}.{name} is listed in __all__ but missing"


def test_top_level_exposes_families_and_version_only():
  import bottleneck_jax
  assert bottleneck_jax.__version__ == "0.1.0"
  assert not any(callable(getattr(bottleneck_jax, n)) for n in bottleneck_jax.__all__
                 if n != "__version__")
  with pytest.raises(AttributeError):
    bottleneck_jax.vib  # noqa: B018 - nothing flat at the top level
