"""Property-test rows of the quantize family (collected by ``tests/test_properties.py``)."""

import jax
import jax.numpy as jnp

from bottleneck_jax import quantize as Q
from tests._cases import KEY, Case, floats, ints

_f, _i = floats, ints

CASES = [
    Case("rotation_trick", Q.rotation_trick, lambda r: {"z": _f(r, 2, 3), "q": _f(r, 2, 3)},
         ("z", "q")),
    Case("kmeans", Q.kmeans, lambda r: {"key": KEY, "x": _f(r, 6, 2), "num_codes": 3, "iters": 2},
         ("key", "x", "num_codes")),
    Case("replace_dead_codes", Q.replace_dead_codes,
         lambda r: {"key": KEY, "state": Q.vq_ema_init(_f(r, 4, 2)), "z": _f(r, 3, 2)},
         ("key", "state", "z")),
    Case("residual_vq", Q.residual_vq,
         lambda r: {"z": _f(r, 2, 3, 2), "codebooks": _f(r, 2, 4, 2)}, ("z", "codebooks")),
    Case("residual_vq_decode", Q.residual_vq_decode,
         lambda r: {"indices": _i(r, 3, 2, high=4), "codebooks": _f(r, 2, 4, 2)},
         ("indices", "codebooks")),
    Case("residual_vq_ema_update", Q.residual_vq_ema_update,
         lambda r: {"state": jax.vmap(Q.vq_ema_init)(_f(r, 2, 4, 2)), "z": _f(r, 3, 2),
                    "indices": _i(r, 3, 2, high=4)}, ("state", "z", "indices")),
    Case("grouped_vq", Q.grouped_vq,
         lambda r: {"z": _f(r, 3, 4), "codebooks": _f(r, 2, 5, 2)}, ("z", "codebooks")),
    Case("residual_fsq", Q.residual_fsq,
         lambda r: {"z": _f(r, 2, 3), "levels": [5, 5, 5], "num_levels": 2}, ("z",)),
    Case("dkvb_project", Q.dkvb_project,
         lambda r: {"z": _f(r, 3, 4), "proj": _f(r, 2, 4, 2)}, ("z", "proj")),
    Case("dkvb_init_keys", Q.dkvb_init_keys,
         lambda r: {"key": KEY, "z": _f(r, 6, 4), "proj": _f(r, 2, 4, 2), "num_keys": 3,
                    "iters": 2}, ("key", "z", "proj", "num_keys")),
    Case("dkvb", Q.dkvb,
         lambda r: {"z": _f(r, 3, 4), "proj": _f(r, 2, 4, 2), "keys": _f(r, 2, 5, 2),
                    "values": _f(r, 2, 5, 3), "topk": 2}, ("z", "proj", "keys", "values")),
    Case("vq_code_logits", Q.vq_code_logits,
         lambda r: {"h": _f(r, 3, 4), "codebook": _f(r, 5, 4)}, ("h", "codebook")),
    Case("vq_logits", Q.vq_logits,
         lambda r: {"h": _f(r, 3, 4), "codebook": _f(r, 5, 4), "token_to_code": _i(r, 7, high=5),
                    "token_bias": _f(r, 7)}, ("h", "codebook", "token_to_code")),
    Case("vq_logits_cross_entropy", Q.vq_logits_cross_entropy,
         lambda r: {"h": _f(r, 3, 4), "codebook": _f(r, 5, 4), "token_to_code": _i(r, 7, high=5),
                    "targets": _i(r, 3, high=7)}, ("h", "codebook", "token_to_code", "targets")),
    Case("vq_logits_sample", Q.vq_logits_sample,
         lambda r: {"key": KEY, "h": _f(r, 3, 4), "codebook": _f(r, 5, 4),
                    "token_to_code": _i(r, 7, high=5)}, ("key", "h", "codebook", "token_to_code")),
    Case("vq_logits_init_mapping", Q.vq_logits_init_mapping,
         lambda r: {"key": KEY, "w_out": _f(r, 7, 4), "num_codes": 3, "iters": 2},
         ("key", "w_out", "num_codes")),
    Case("fixed_point_quantize", Q.fixed_point_quantize,
         lambda r: {"x": _f(r, 3, 4), "total_bits": 4, "frac_bits": 2}, ("x",)),
    Case("binary_quantize", Q.binary_quantize, lambda r: {"x": _f(r, 3, 4)}, ("x",)),
    Case("ternary_quantize", Q.ternary_quantize, lambda r: {"x": _f(r, 3, 4)}, ("x",)),
    Case("quantize_with", Q.quantize_with,
         lambda r: {"x": _f(r, 3, 4), "spec": Q.QuantSpec("ternary")}, ("x", "spec")),
    Case("mixed_quantize", Q.mixed_quantize,
         lambda r: {"x": _f(r, 3, 4), "logits": _f(r, 2),
                    "candidates": (Q.QuantSpec("fixed", 4, 2), Q.QuantSpec("binary"))},
         ("x", "logits", "candidates")),
    Case("expected_bits", Q.expected_bits,
         lambda r: {"logits": _f(r, 2),
                    "candidates": (Q.QuantSpec("fixed", 4, 2), Q.QuantSpec("binary"))},
         ("logits", "candidates")),
    Case("codebook_snap", Q.codebook_snap,
         lambda r: {"x": _f(r, 3, 4), "codebook": _f(r, 5, 4), "k": 2}, ("x", "codebook")),
    Case("group_codebook_snap", Q.group_codebook_snap,
         lambda r: {"x": _f(r, 3, 2, 4), "codebooks": _f(r, 2, 5, 4), "k": 2},
         ("x", "codebooks")),
    Case("quantize_coordinates", Q.quantize_coordinates, lambda r: {"x": _f(r, 3, 2)}, ("x",)),
    Case("dequantize_coordinates", Q.dequantize_coordinates,
         lambda r: {"tokens": _i(r, 3, 2, high=256)}, ("tokens",)),
    Case("rig_token_sequence", Q.rig_token_sequence,
         lambda r: {"joint_tokens": _i(r, 4, 3, high=256), "skin_tokens": _i(r, 4, 2, high=99)},
         ("joint_tokens", "skin_tokens")),
    Case("split_rig_token_sequence", Q.split_rig_token_sequence,
         lambda r: {"sequence": _i(r, 2, 10, high=300), "coords": 3, "tokens": 2},
         ("sequence",)),
    Case("residual_fsq_decode", Q.residual_fsq_decode,
         lambda r: {"indices": _i(r, 2, 2, high=100), "levels": [5, 5, 5]}, ("indices",)),
]

NO_ROW: dict[str, str] = {
    "mixed_op": "takes arbitrary callables; covered in tests/quantize/test_lpgnas.py",
}

del jnp
