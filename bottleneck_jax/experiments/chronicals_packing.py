"""``chronicals-packing``: best-fit-decreasing packing recovers the compute lost to padding.

Paper: *Chronicals: A High-Performance Framework for LLM Fine-Tuning with 3.51x Speedup over
Unsloth* (2026), https://github.com/Ajwebdevs/Chronicals: "Best-Fit Decreasing sequence packing
recovering 60-75% of compute wasted on padding".

Data (offline, exact ground truth). ``n_sequences`` lengths drawn from a lognormal
(``median_len``, ``sigma``; clipped below at ``min_len``), the long-tailed shape of
instruction-tuning sets (prompt + response token counts), seeded. Sequence ``i`` holds the token
ids ``c_i + 1 .. c_i + n_i`` of one running counter, so every token id in the data set is unique
and the ground truth of "each token exactly once" and "labels never cross segments" is exact.
Sequences longer than ``seq_len`` are split into ``seq_len`` chunks (``overlong="split"``), so no
token is lost.

Batchings compared, each counted in token slots ``B * T`` (the linear layers' compute):

* ``pad_to_seq_len``: one sequence per row, every row ``seq_len`` long (static shapes);
* ``dynamic``: batches of ``batch_size`` sequences in data order, each padded to its own longest
  sequence (what ``DataCollatorWithPadding`` does) -- the baseline of the headline metric;
* ``length_grouped``: the same after sorting by length (bucketing; changes the batch mix);
* ``next_fit``: concatenation in data order, a new row when the next sequence does not fit;
* ``bfd``: :func:`~bottleneck_jax.data.pack_sequences` (best-fit decreasing)
  over the whole data set, and over buffers of ``pack_buffer`` sequences (streaming).

The headline is the paper's quantity, compute wasted on padding, counted in FLOPs of a
Qwen2.5-0.5B-shaped decoder (the paper's model: d=896, SwiGLU 4864, k/v 128, 24 layers, LM head
over 151936 words; :func:`model_flops`): a batch row of ``m`` slots costs
``per_token * m + per_score * m^2`` (projections and head per slot, dense attention scores per
query-key pair); the useful compute is ``per_token * n_i + per_score * n_i^2`` per sequence. The
compute recovered is ``(wasted_dynamic - wasted_bfd) / wasted_dynamic`` with BFD rows attended
under a dense segment mask over the whole ``T x T`` block (what a mask-based kernel computes;
``padding_compute_recovered_varlen`` is the same with segment-aware attention). Token-slot
efficiency (``real tokens / (B * T)``) and the score slots of each batching are reported too.

Measured (seed 0, defaults): 96.4 % of the wasted compute recovered (dense segment mask; 99.99 %
with segment-aware attention), against the paper's 60-75 %.

Departures: the paper's 60-75 % is measured on its training runs (baseline not stated in the
abstract); here the numbers are counted on synthetic lengths, not timed.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from bottleneck_jax.experiments.registry import (
    Expectation,
    Experiment,
    Metric,
    RunContext,
    register,
)

PAPER_ID = "chronicals"
IGNORE = -100


def sample_lengths(n: int, *, median_len: float, sigma: float, min_len: int,
                   seed: int) -> np.ndarray:
  """Lognormal sequence lengths (int64 ``[n]``, each ``>= min_len``)."""
  rng = np.random.default_rng(seed)
  lengths = np.round(rng.lognormal(np.log(median_len), sigma, size=n)).astype(np.int64)
  return np.maximum(lengths, min_len)


def make_sequences(lengths: np.ndarray) -> list[np.ndarray]:
  """Sequence ``i`` holds the unique token ids ``c_i + 1 .. c_i + n_i`` (a running counter)."""
  ends = np.cumsum(lengths)
  return [np.arange(e - n + 1, e + 1, dtype=np.int32) for n, e in zip(lengths, ends)]


def chunk_lengths(lengths: np.ndarray, seq_len: int) -> np.ndarray:
  """Lengths after splitting every sequence longer than ``seq_len`` into ``seq_len`` chunks."""
  out = []
  for n in lengths:
    full, rest = divmod(int(n), seq_len)
    out.extend([seq_len] * full + ([rest] if rest else []))
  return np.asarray(out, np.int64)


def padded_slots(lengths: np.ndarray, batch_size: int) -> tuple[int, int]:
  """Token slots and attention score slots of batches padded to their longest sequence."""
  slots = attn = 0
  for s in range(0, len(lengths), batch_size):
    b = lengths[s:s + batch_size]
    m = int(b.max())
    slots += len(b) * m
    attn += len(b) * m * m
  return slots, attn


def model_flops(cfg: dict[str, Any]) -> tuple[float, float]:
  """Training-forward FLOPs of a decoder: ``(per token, per attention score)``.

  Per token: ``2 x`` the multiply-adds of every layer's projections (q and o ``d x d``, k and v
  ``d x kv_dim``, SwiGLU ``3 d x intermediate``) plus the LM head (``d x vocab``). Per score
  (one query-key pair of one layer): ``q . k`` and ``p v`` over ``d`` (all heads), ``4 d``
  FLOPs. The backward multiplies both by about 2, which cancels in every ratio.
  """
  d, f, kv = int(cfg["model_hidden"]), int(cfg["model_intermediate"]), int(cfg["model_kv_dim"])
  layers, vocab = int(cfg["model_layers"]), int(cfg["model_vocab"])
  per_token = layers * 2.0 * (2 * d * d + 2 * d * kv + 3 * d * f) + 2.0 * d * vocab
  per_score = layers * 4.0 * d
  return per_token, per_score


def padded_flops(lengths: np.ndarray, batch_size: int, per_token: float, per_score: float
                 ) -> float:
  """FLOPs of batches padded to their longest sequence (dense ``m x m`` attention per row)."""
  total = 0.0
  for s in range(0, len(lengths), batch_size):
    m = float(lengths[s:s + batch_size].max())
    total += len(lengths[s:s + batch_size]) * (per_token * m + per_score * m * m)
  return total


def next_fit_rows(lengths: np.ndarray, seq_len: int) -> int:
  """Rows used by concatenating in data order (a new row when the next one does not fit)."""
  rows, free = 0, 0
  for n in lengths:
    if n > free:
      rows, free = rows + 1, seq_len
    free -= int(n)
  return rows


def check_packed(batch, total_tokens: int, num_segments: int) -> dict[str, Any]:
  """Independent checks of a packed batch built from :func:`make_sequences` data.

  Returns booleans: every token id ``1..total`` appears exactly once, each segment is a run of
  consecutive ids (one sequence, in order), positions restart at 0 per segment, every label is
  the next token of the same segment, and exactly one ignored label per segment.
  """
  tok, seg, pos, lab = (np.asarray(a, np.int64) for a in batch[:4])
  real = seg > 0
  ids = np.sort(tok[real])
  once = bool(ids.size == total_tokens and np.array_equal(ids, np.arange(1, total_tokens + 1)))
  same_next = np.zeros_like(real)
  same_next[:, :-1] = real[:, :-1] & (seg[:, 1:] == seg[:, :-1])
  nxt = np.zeros_like(tok)
  nxt[:, :-1] = tok[:, 1:]
  consecutive = bool(np.all(nxt[same_next] == tok[same_next] + 1))
  prev_same = np.zeros_like(real)
  prev_same[:, 1:] = same_next[:, :-1]
  prev_pos = np.zeros_like(pos)
  prev_pos[:, 1:] = pos[:, :-1]
  positions_ok = bool(np.all(np.where(prev_same, pos == prev_pos + 1, pos == 0)[real]))
  labels_ok = bool(np.all(np.where(same_next, lab == nxt, lab == IGNORE)))
  ignored = int(np.sum(real & (lab == IGNORE)))
  return {"each_token_once": once, "segments_contiguous": consecutive,
          "positions_restart": positions_ok, "labels_within_segment": labels_ok,
          "one_ignored_label_per_segment": ignored == num_segments}


def run(ctx: RunContext) -> dict[str, Any]:
  from bottleneck_jax.data import pack_sequences

  cfg = ctx.config
  t_len, bs = int(cfg["seq_len"]), int(cfg["batch_size"])
  lengths = sample_lengths(int(cfg["n_sequences"]), median_len=float(cfg["median_len"]),
                           sigma=float(cfg["sigma"]), min_len=int(cfg["min_len"]), seed=ctx.seed)
  seqs = make_sequences(lengths)
  total = int(lengths.sum())
  pieces = chunk_lengths(lengths, t_len)  # what every batching actually places (in data order)

  packed = pack_sequences(seqs, seq_len=t_len, overlong="split", ignore_index=IGNORE)
  st = packed.stats
  checks = check_packed(packed, total, st.num_segments)

  buf = int(cfg["pack_buffer"])
  buf_rows = 0
  for s in range(0, len(seqs), buf):
    buf_rows += pack_sequences(seqs[s:s + buf], seq_len=t_len, overlong="split").stats.num_rows

  rng = np.random.default_rng(ctx.seed + 1)
  data_order = pieces[rng.permutation(len(pieces))]  # shuffled, as a training loader would
  dyn_slots, dyn_attn = padded_slots(data_order, bs)
  grp_slots, grp_attn = padded_slots(np.sort(pieces)[::-1], bs)
  slots = {
      "pad_to_seq_len": len(pieces) * t_len,
      "dynamic": dyn_slots,
      "length_grouped": grp_slots,
      "next_fit": next_fit_rows(data_order, t_len) * t_len,
      "bfd": st.num_rows * t_len,
      "bfd_buffered": buf_rows * t_len,
  }
  eff = {k: total / v for k, v in slots.items()}
  waste = {k: v - total for k, v in slots.items()}
  recovered = {k: (waste[k] - waste["bfd"]) / waste[k]
               for k in ("pad_to_seq_len", "dynamic", "length_grouped", "next_fit")}
  lower_bound_rows = -(-total // t_len)
  squares = float(np.sum(pieces.astype(np.float64) ** 2))
  attn = {"pad_to_seq_len": len(pieces) * t_len ** 2, "dynamic": dyn_attn,
          "length_grouped": grp_attn, "bfd_dense_mask": st.num_rows * t_len ** 2,
          "varlen_exact": int(squares)}

  # Compute (the paper's metric): FLOPs of the linear layers per token slot plus the attention
  # scores each batching computes; useful = every real token once + each sequence's own scores.
  per_token, per_score = model_flops(cfg)
  useful = per_token * total + per_score * squares
  row_flops = per_token * t_len + per_score * float(t_len) ** 2
  flops = {
      "dynamic": padded_flops(data_order, bs, per_token, per_score),
      "pad_to_seq_len": len(pieces) * row_flops,
      "bfd_dense_mask": st.num_rows * row_flops,  # segment mask over the whole T x T block
      "bfd_varlen": st.num_rows * per_token * t_len + per_score * squares,  # segment-aware
  }
  wasted = {k: v - useful for k, v in flops.items()}
  compute_recovered = {k: (wasted["dynamic"] - wasted[k]) / wasted["dynamic"]
                       for k in ("bfd_dense_mask", "bfd_varlen")}

  result = {
      "padding_compute_recovered": compute_recovered["bfd_dense_mask"],
      "padding_compute_recovered_varlen": compute_recovered["bfd_varlen"],
      **{f"compute_wasted_fraction_{k}": w / flops[k] for k, w in wasted.items()},
      "flops_per_token": per_token, "flops_per_score": per_score,
      "padding_recovered_token_slots": recovered["dynamic"],
      "packing_efficiency": st.efficiency,
      **{f"efficiency_{k}": v for k, v in eff.items()},
      **{f"padding_recovered_vs_{k}": v for k, v in recovered.items()},
      "rows_bfd": st.num_rows, "rows_lower_bound": lower_bound_rows,
      "total_tokens": total, "num_sequences": len(seqs), "num_segments": st.num_segments,
      "num_split": st.num_split, "mean_length": float(lengths.mean()),
      "p99_length": float(np.percentile(lengths, 99)),
      **{f"attention_slots_{k}": v for k, v in attn.items()},
      **checks,
      "packing_exact": bool(all(checks.values())),
  }
  ctx.log(0, split="summary", **result)
  _plot(ctx, lengths, eff, t_len)
  return result


def _plot(ctx: RunContext, lengths, eff, t_len) -> None:
  try:
    from bottleneck_jax.train import pyplot, save_figure
    plt = pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.3))
    ax[0].hist(np.minimum(lengths, t_len), bins=60, color="tab:blue")
    ax[0].set(xlabel="sequence length (tokens)", ylabel="count", yscale="log",
              title=f"lognormal lengths, n={len(lengths)}")
    names = list(eff)
    ax[1].barh(names, [eff[k] for k in names], color="tab:green")
    for i, k in enumerate(names):
      ax[1].text(eff[k] + 0.01, i, f"{eff[k]:.3f}", va="center", fontsize=8)
    ax[1].set(xlim=(0, 1.12), xlabel="efficiency = real tokens / (B·T)", title=f"T={t_len}")
    save_figure(fig, ctx.plot_path("efficiency"))
  except Exception as e:  # noqa: BLE001 - plotting is optional
    logging.getLogger(__name__).warning("chronicals-packing: no plot (%s)", e)


register(Experiment(
    name="chronicals-packing",
    paper_id=PAPER_ID,
    claim=("Best-fit-decreasing sequence packing recovers 60-75% of the compute wasted on "
           "padding."),
    setting="proxy",
    departures=(
        "synthetic lognormal instruction-tuning lengths (median 200, sigma 1) instead of the "
        "paper's training data",
        "compute counted in FLOPs of a Qwen2.5-0.5B-shaped decoder (projections, SwiGLU, LM "
        "head and dense attention scores), not timed",
        "baseline: per-batch dynamic padding in a shuffled order (the paper does not state its "
        "baseline in the abstract); packed rows use a dense segment mask over T x T",
    ),
    metric="padding_compute_recovered",
    metrics={
        "padding_compute_recovered": Metric(
            "(wasted FLOPs of dynamic padding - wasted FLOPs of BFD rows with a dense segment "
            "mask) / wasted FLOPs of dynamic padding; wasted = computed - useful (real tokens "
            "and each sequence's own attention scores)", high=1),
        "padding_compute_recovered_varlen": Metric(
            "the same with segment-aware (variable-length) attention in the packed rows",
            high=1),
        "packing_exact": "every token once, segments contiguous, positions restart, labels "
                         "never cross segments",
    },
    expectations=(
        Expectation("padding_compute_recovered", ">=", 0.6,
                    reads=("seq_len", "batch_size", "median_len", "sigma"),
                    source="paper abstract: BFD packing recovers 60-75% of the compute wasted "
                           "on padding"),
        Expectation("packing_exact", "==", True,
                    source="the project's test plan: packed batches with per-segment positions and "
                           "labels (correctness, not a paper number)"),
    ),
    run=run,
    defaults={"n_sequences": 20000, "median_len": 200.0, "sigma": 1.0, "min_len": 8,
              "seq_len": 2048, "batch_size": 16, "pack_buffer": 1000, "model_hidden": 896,
              "model_intermediate": 4864, "model_kv_dim": 128, "model_layers": 24,
              "model_vocab": 151936},
    quick={"n_sequences": 2000, "pack_buffer": 500},
    paper_value="60-75% of padding compute recovered",
))
