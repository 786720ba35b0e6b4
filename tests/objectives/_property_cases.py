"""Property-test rows of the ``objectives`` family (collected by ``tests/test_properties.py``):
one row per public function. Each engineer keeps their rows in their own marked section."""

import jax.numpy as jnp

from bottleneck_jax import objectives as Obj
from tests._cases import Case, floats, ints

_f, _i = floats, ints


def _lp(r, *shape):
  return -_f(r, *shape)



def _sq_loss(params, batch):  # chi0 rows: the loss of one checkpoint on one batch
  return jnp.mean((params["a"] - batch["y"]) ** 2)


CASES = [
    # --- substrate, vpo, hicra, remix, editreward, agentcpm-explore ---
    Case("seq_logps", Obj.seq_logps,
         lambda r: {"token_logps": _lp(r, 2, 3), "mask": _i(r, 2, 3, high=2)},
         ("token_logps", "mask")),
    Case("k3_kl", Obj.k3_kl, lambda r: {"logp": _lp(r, 2, 3), "ref_logp": _lp(r, 2, 3)},
         ("logp", "ref_logp")),
    Case("clipped_pg_per_token", Obj.clipped_pg_per_token,
         lambda r: {"logp": _lp(r, 2, 3), "old_logp": _lp(r, 2, 3), "advantages": _f(r, 2),
                    "epsilon_low": 0.2, "epsilon_high": 0.28, "delta": 2.0,
                    "mask": _i(r, 2, 3, high=2)},
         ("logp", "old_logp", "advantages")),
    Case("aggregate_token_loss", Obj.aggregate_token_loss,
         lambda r: {"per_token_loss": _f(r, 2, 3), "mask": _i(r, 2, 3, high=2),
                    "loss_type": "dr_grpo", "max_completion_length": 4},
         ("per_token_loss", "mask")),
    Case("grpo_loss", Obj.grpo_loss,
         lambda r: {"logp": _lp(r, 2, 3), "old_logp": _lp(r, 2, 3), "advantages": _f(r, 2),
                    "mask": _i(r, 2, 3, high=2), "ref_logp": _lp(r, 2, 3), "beta": 0.04,
                    "loss_type": "grpo", "num_tokens": 4.0},
         ("logp", "old_logp", "advantages", "mask")),
    Case("group_advantages", Obj.group_advantages,
         lambda r: {"rewards": _f(r, 2, 3), "scale": "group", "epsilon": 1e-4},
         ("rewards",)),
    Case("rloo_advantages", Obj.rloo_advantages, lambda r: {"rewards": _f(r, 4), "group_size": 2},
         ("rewards",)),
    Case("dpo_logits", Obj.dpo_logits,
         lambda r: {"chosen_logps": _lp(r, 3), "rejected_logps": _lp(r, 3),
                    "ref_chosen_logps": _lp(r, 3), "ref_rejected_logps": _lp(r, 3)},
         ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")),
    Case("dpo_loss", Obj.dpo_loss,
         lambda r: {"chosen_logps": _lp(r, 3), "rejected_logps": _lp(r, 3),
                    "ref_chosen_logps": _lp(r, 3), "ref_rejected_logps": _lp(r, 3),
                    "beta": 0.1, "label_smoothing": 0.1, "loss_type": "sigmoid"},
         ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")),
    Case("vpo_loss", Obj.vpo_loss,
         lambda r: {"chosen_logps": _lp(r, 3), "rejected_logps": _lp(r, 3),
                    "ref_chosen_logps": _lp(r, 3), "ref_rejected_logps": _lp(r, 3),
                    "cal_logps": _lp(r, 3, 2), "beta": 0.1, "alpha": 0.01, "mode": "offline"},
         ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps",
          "cal_logps")),
    Case("vpo_tabular_loss", Obj.vpo_tabular_loss,
         lambda r: {"logits": _f(r, 2, 3), "ref_logits": _f(r, 2, 3),
                    "pair_idx": _i(r, 4, 2, high=3), "pref": _f(r, 2, 4) / 10,
                    "cal_probs": _f(r, 2, 3), "beta": 1.0, "alpha": 0.1},
         ("logits", "ref_logits", "pair_idx", "pref", "cal_probs")),
    Case("hicra_advantages", Obj.hicra_advantages,
         lambda r: {"advantages": _f(r, 2, 3), "planning_mask": _i(r, 2, 3, high=2),
                    "alpha": 0.2},
         ("advantages", "planning_mask")),
    Case("hicra_verl_advantages", Obj.hicra_verl_advantages,
         lambda r: {"advantages": _f(r, 3, 4), "entropy": _f(r, 3, 4),
                    "mask": _i(r, 3, 4, high=2), "planning_mask": _i(r, 3, 4, high=2),
                    "alpha": 0.2, "entropy_topk": 0.3},
         ("advantages", "entropy", "mask")),
    Case("sg_planning_mask", Obj.sg_planning_mask,
         lambda r: {"token_ids": _i(r, 2, 6), "sg_table": jnp.array([[1, 2, -1], [0, 1, 2]])},
         ("token_ids", "sg_table")),
    Case("sg_match_counts", Obj.sg_match_counts,
         lambda r: {"token_ids": _i(r, 2, 6), "sg_table": jnp.array([[1, 2, -1], [0, 1, 2]])},
         ("token_ids", "sg_table")),
    Case("semantic_entropy", Obj.semantic_entropy, lambda r: {"counts": _i(r, 2, 4, high=5)},
         ("counts",)),
    Case("mix_policy_ppg_loss", Obj.mix_policy_ppg_loss,
         lambda r: {"logp": _lp(r, 2, 3), "behavior_logp": _lp(r, 2, 3),
                    "advantages": _f(r, 2, 3), "mask": _i(r, 2, 3, high=2),
                    "epsilon_high": 0.28, "loss_type": "bnpo"},
         ("logp", "behavior_logp", "advantages", "mask")),
    Case("kl_convex", Obj.kl_convex,
         lambda r: {"logp": _lp(r, 2, 3), "base_logp": _lp(r, 2, 3), "prev_logp": _lp(r, 2, 3),
                    "mask": _i(r, 2, 3, high=2), "lam": 0.5, "estimator": "k3"},
         ("logp", "base_logp", "prev_logp", "mask")),
    Case("remix_schedule", Obj.remix_schedule,
         lambda r: {"step": 3, "reincarnate_at": 5, "p_off": 0.5, "utd": 2}, ("step",)),
    # --- end of substrate .. agentcpm-explore ---
    # --- marag-r1, chi0, plasticity, graph-rlearner, brl, chart-perception ---
    Case("semantic_search", Obj.semantic_search,
         lambda r: {"query": _f(r, 2, 4), "doc_emb": _f(r, 5, 4), "k": 2, "epsilon": 1e-12},
         ("query", "doc_emb")),
    Case("bm25_scores", Obj.bm25_scores,
         lambda r: {"query_tf": _f(r, 2, 4), "doc_tf": _f(r, 5, 4), "k1": 1.5, "b": 0.75,
                    "epsilon": 0.25},
         ("query_tf", "doc_tf")),
    Case("keyword_search", Obj.keyword_search,
         lambda r: {"query_tf": _f(r, 4), "doc_tf": _f(r, 5, 4), "k": 3, "k1": 1.2},
         ("query_tf", "doc_tf")),
    Case("filter_docs", Obj.filter_docs,
         lambda r: {"meta": _f(r, 5, 3), "where": {0: (0.0, 1.0), 2: (0.5, 0.5)}}, ("meta",)),
    Case("aggregate_docs", Obj.aggregate_docs,
         lambda r: {"values": _f(r, 5), "keep": _i(r, 5, high=2).astype(bool), "op": "max",
                    "empty": 0.0},
         ("values", "keep")),
    Case("token_f1", Obj.token_f1,
         lambda r: {"pred_ids": _i(r, 2, 3), "gold_ids": _i(r, 2, 4), "pad": -1},
         ("pred_ids", "gold_ids")),
    Case("document_coverage", Obj.document_coverage,
         lambda r: {"retrieved": _i(r, 2, 3), "gold": _i(r, 2, 4)}, ("retrieved", "gold")),
    Case("marag_reward", Obj.marag_reward,
         lambda r: {"f1": _f(r, 2), "retrieved": _i(r, 2, 3), "gold": _i(r, 2, 2),
                    "tools_used": _i(r, 2, 4, high=2).astype(bool),
                    "format_ok": _i(r, 2, high=2).astype(bool), "weights": (1.0, 0.5, 0.5)},
         ("f1", "retrieved", "gold", "tools_used", "format_ok")),
    Case("mix_params", Obj.mix_params,
         lambda r: {"stack": {"a": _f(r, 3, 2), "b": _f(r, 3)}, "weights": _f(r, 3),
                    "normalize": False},
         ("stack", "weights")),
    Case("inverse_loss_weights", Obj.inverse_loss_weights,
         lambda r: {"losses": _f(r, 3), "power": 2.0, "epsilon": 1e-8}, ("losses",)),
    Case("simplex_grad", Obj.simplex_grad,
         lambda r: {"g": _f(r, 2, 3), "weights": _f(r, 2, 3)}, ("g", "weights")),
    Case("optimize_mix_weights", Obj.optimize_mix_weights,
         lambda r: {"loss_fn": _sq_loss, "stack": {"a": _f(r, 3, 2)},
                    "batches": {"y": _f(r, 2, 2)}, "steps": 3, "learning_rate": 0.05,
                    "adaptive": False},
         ("loss_fn", "stack", "batches")),
    Case("greedy_soup", Obj.greedy_soup,
         lambda r: {"loss_fn": _sq_loss, "stack": {"a": _f(r, 3, 2)},
                    "batches": {"y": _f(r, 2, 2)}},
         ("loss_fn", "stack", "batches")),
    Case("stage_progress", Obj.stage_progress,
         lambda r: {"frame_idx": _i(r, 4, high=30), "bounds": jnp.asarray([0, 10, 30])},
         ("frame_idx", "bounds")),
    Case("stage_advantage", Obj.stage_advantage,
         lambda r: {"values": _f(r, 2, 6), "horizon": 3}, ("values",)),
    Case("discretize_advantage", Obj.discretize_advantage,
         lambda r: {"adv": _f(r, 6), "stage_idx": _i(r, 6, high=2), "top_pct": 30.0,
                    "n_stages": 2},
         ("adv", "stage_idx")),
    Case("chunk_crossfade", Obj.chunk_crossfade,
         lambda r: {"old": _f(r, 4, 2), "old_len": 3, "new": _f(r, 5, 2), "k_elapsed": 1,
                    "max_k": 2, "min_m": 3},
         ("old", "old_len", "new", "k_elapsed")),
    # --- end of marag-r1 .. chart-perception ---
]


NO_ROW: dict[str, str] = {
    # --- substrate .. agentcpm-explore ---
    # --- marag-r1 .. chart-perception ---
}
