"""Property-test rows (``tests/test_properties.py``) of the attention family and of the
block-sparse ops it runs on."""

import jax.numpy as jnp

from bottleneck_jax import attention as A
from bottleneck_jax import ops as O
from tests._cases import Case, floats, ints

_f, _i = floats, ints


def _idx(r, *shape, high=2):
  return _i(r, *shape, high=high)


CASES = [
    # ops: block-sparse attention
    Case("block_sparse_attention", O.block_sparse_attention,
         lambda r: {"q": _f(r, 1, 4, 2, 4), "k": _f(r, 1, 4, 1, 4), "v": _f(r, 1, 4, 1, 4),
                    "block_idx": _idx(r, 1, 1, 2, 2), "block_size": 2, "causal": True,
                    "implementation": None},
         ("q", "k", "v", "block_idx")),
    Case("block_sparse_decode", O.block_sparse_decode,
         lambda r: {"q": _f(r, 1, 2, 4), "k": _f(r, 1, 4, 1, 4), "v": _f(r, 1, 4, 1, 4),
                    "block_idx": _idx(r, 1, 1, 2), "block_size": 2,
                    "lengths": jnp.asarray([3], jnp.int32), "implementation": None},
         ("q", "k", "v", "block_idx")),
    Case("block_mask_to_table", O.block_mask_to_table,
         lambda r: {"block_mask": jnp.asarray(r.integers(0, 2, (2, 3)).astype(bool)),
                    "max_blocks": 2},
         ("block_mask",)),
    # kinetics
    Case("qwen3_config", A.qwen3_config, lambda r: {"size": "0.6B"}, ("size",)),
    Case("kinetics_cost", A.kinetics_cost,
         lambda r: {"cfg": A.qwen3_config("0.6B"), "l_in": 8, "l_gen": 16, "n_trials": 2,
                    "attention": "block_topk", "local": 4, "block_size": 4, "topk_blocks": 2},
         ("cfg", "l_in", "l_gen")),
    Case("expected_cost", A.expected_cost,
         lambda r: {"cfg": A.qwen3_config("0.6B"), "l_in": 8,
                    "l_gen_samples": jnp.asarray([3, 5], jnp.int32)},
         ("cfg", "l_in", "l_gen_samples")),
    Case("pass_at_k", A.pass_at_k,
         lambda r: {"n": jnp.asarray([4, 5], jnp.int32), "c": jnp.asarray([1, 2], jnp.int32),
                    "k": 2},
         ("n", "c", "k")),
    Case("pareto_frontier", A.pareto_frontier,
         lambda r: {"cost": _f(r, 4), "accuracy": _f(r, 4)}, ("cost", "accuracy")),
    Case("block_means", A.block_means,
         lambda r: {"k_cache": _f(r, 2, 4, 1, 3), "lengths": _i(r, 2, high=4), "block_size": 2},
         ("k_cache", "lengths")),
    Case("update_block_means", A.update_block_means,
         lambda r: {"means": _f(r, 2, 2, 1, 3), "k_new": _f(r, 2, 1, 3),
                    "positions": _i(r, 2, high=4), "block_size": 2},
         ("means", "k_new", "positions")),
    Case("block_scores", A.block_scores,
         lambda r: {"q": _f(r, 2, 2, 3), "means": _f(r, 2, 3, 1, 3), "lengths": _i(r, 2, high=6),
                    "block_size": 2, "sink": 1, "local": 1},
         ("q", "means", "lengths")),
    Case("select_blocks", A.select_blocks, lambda r: {"scores": _f(r, 2, 4), "k": 2},
         ("scores", "k")),
    Case("block_topk_decode", A.block_topk_decode,
         lambda r: {"q": _f(r, 1, 2, 4), "k_cache": _f(r, 1, 8, 1, 4),
                    "v_cache": _f(r, 1, 8, 1, 4), "lengths": jnp.asarray([7], jnp.int32),
                    "block_size": 2, "topk_blocks": 1, "sink": 1, "local": 2},
         ("q", "k_cache", "v_cache", "lengths")),
]


def _rt(r, **extra):
  kw = {"q": _f(r, 1, 4, 1, 2), "k": _f(r, 1, 4, 1, 2), "v": _f(r, 1, 4, 1, 2),
        "mask": jnp.asarray(r.integers(0, 2, (1, 1, 4, 4)).astype(bool))}
  kw.update(extra)
  return kw


def _rt_cache(r):
  return A.RettentionCache(_f(r, 1, 1, 4), _f(r, 1, 4, 1, 2))


CASES += [
    Case("rettention_refresh", A.rettention_refresh, lambda r: _rt(r), ("q", "k", "v")),
    Case("rettention_sparse", A.rettention_sparse,
         lambda r: _rt(r, cache=_rt_cache(r), ratio_increment=0.04), ("q", "k", "v", "cache")),
    Case("rettention_step", A.rettention_step,
         lambda r: _rt(r, cache=_rt_cache(r), mode=2), ("q", "k", "v", "cache", "mode")),
    Case("rettention_schedule", A.rettention_schedule,
         lambda r: {"num_steps": 6, "warmup": 2, "refresh_every": 2},
         ("num_steps", "warmup", "refresh_every")),
    Case("band_block_table", A.band_block_table,
         lambda r: {"seq_len": 8, "keep_ratio": 0.5, "block_size": 2}, ("seq_len",)),
]


def _attn_rows(r):
  a = _f(r, 1, 2, 3, 4)
  return a / a.sum(-1, keepdims=True)


CASES += [
    Case("quantize_kv", A.quantize_kv,
         lambda r: {"x": _f(r, 1, 4, 1, 4), "bits": 4, "mode": "channel", "group_size": 2},
         ("x",)),
    Case("dequantize_kv", A.dequantize_kv,
         lambda r: {"q": A.quantize_kv(_f(r, 1, 4, 1, 4), bits=2, mode="token")}, ("q",)),
    Case("kv_bits", A.kv_bits,
         lambda r: {"q": A.quantize_kv(_f(r, 1, 4, 1, 4), bits=2, mode="token")}, ("q",)),
    Case("pack_bits", A.pack_bits,
         lambda r: {"codes": jnp.asarray(r.integers(0, 4, (2, 4)), jnp.uint8), "bits": 2},
         ("codes", "bits")),
    Case("unpack_bits", A.unpack_bits,
         lambda r: {"packed": jnp.asarray(r.integers(0, 256, (2, 2)), jnp.uint8), "bits": 4},
         ("packed", "bits")),
    Case("probe_attention", A.probe_attention,
         lambda r: {"q": _f(r, 1, 4, 2, 4), "k": _f(r, 1, 4, 1, 4),
                    "probe_idx": jnp.asarray([1, 3], jnp.int32)},
         ("q", "k", "probe_idx")),
    Case("accumulated_scores", A.accumulated_scores,
         lambda r: {"attn": _attn_rows(r), "n_kv_heads": 1}, ("attn",)),
    Case("normalized_scores", A.normalized_scores,
         lambda r: {"attn": _attn_rows(r), "probe_idx": jnp.asarray([1, 2, 3], jnp.int32),
                    "n_kv_heads": 2},
         ("attn", "probe_idx")),
    Case("adaptive_keep_count", A.adaptive_keep_count,
         lambda r: {"scores": _f(r, 2, 5), "tau": 0.9}, ("scores", "tau")),
    Case("select_important", A.select_important,
         lambda r: {"scores": _f(r, 2, 5), "count": jnp.asarray([2, 3], jnp.int32),
                    "max_keep": 3},
         ("scores", "count")),
    Case("important_token_prefill", A.important_token_prefill,
         lambda r: {"q": _f(r, 1, 4, 2, 4), "k": _f(r, 1, 4, 1, 4), "v": _f(r, 1, 4, 1, 4),
                    "idx": jnp.asarray([[0, 2]], jnp.int32),
                    "valid": jnp.asarray([[True, True]])},
         ("q", "k", "v", "idx", "valid")),
    Case("build_mixed_kv", A.build_mixed_kv,
         lambda r: {"k": _f(r, 1, 4, 1, 4), "v": _f(r, 1, 4, 1, 4),
                    "important": jnp.asarray([[True, False, True, False]]), "max_important": 2},
         ("k", "v", "important")),
    Case("mixed_kv_bits", A.mixed_kv_bits,
         lambda r: {"mixed": A.build_mixed_kv(_f(r, 1, 4, 1, 4), _f(r, 1, 4, 1, 4),
                                              jnp.asarray([[True, False, True, False]]),
                                              max_important=2)},
         ("mixed",)),
    Case("mixed_kv_decode_attention", A.mixed_kv_decode_attention,
         lambda r: {"q": _f(r, 1, 2, 4),
                    "mixed": A.build_mixed_kv(_f(r, 1, 4, 1, 4), _f(r, 1, 4, 1, 4),
                                              jnp.asarray([[True, False, True, False]]),
                                              max_important=2)},
         ("q", "mixed")),
]


def _bt_cache(r):
  return _f(r, 1, 6, 1, 4), _f(r, 1, 6, 1, 4)


CASES += [
    Case("step_boundaries", A.step_boundaries,
         lambda r: {"tokens": _i(r, 2, 5), "newline_ids": jnp.asarray([1], jnp.int32)},
         ("tokens", "newline_ids")),
    Case("recall_indices", A.recall_indices,
         lambda r: {"attn": _f(r, 1, 2, 2, 6), "seg_start": 4, "k": 2},
         ("attn", "seg_start", "k")),
    Case("kv_rewrite", A.kv_rewrite,
         lambda r: {"k_cache": _bt_cache(r)[0], "v_cache": _bt_cache(r)[1],
                    "idx": jnp.asarray([1, 3], jnp.int32), "dk": _f(r, 1, 2, 1, 4),
                    "dv": _f(r, 1, 2, 1, 4)},
         ("k_cache", "v_cache", "idx", "dk", "dv")),
]
NO_ROW = {"consolidate": "takes an NNX CacheProcessor; bad caches, capacities and recall "
                         "tables are covered in tests/attention/test_bottlenecked_transformer.py"}
