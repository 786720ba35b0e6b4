"""``sae-synthetic``: a TopK sparse autoencoder recovers the true dictionary of synthetic sparse
data.

References: Gao et al., "Scaling and evaluating sparse autoencoders" (2024,
https://arxiv.org/abs/2406.04093, the TopK SAE), and the superposition toy of Elhage et al.,
"Toy Models of Superposition" (2022). The claim checked: when the data are sparse non-negative
combinations of more atoms than dimensions, a TopK SAE with ``k`` equal to the true number of
active atoms learns decoder rows aligned with the true atoms.

Recipe: ``m = 64`` random unit-norm atoms in ``d = 32`` dimensions; each example is the sum of
exactly ``k = 3`` distinct atoms with coefficients U(0.5, 2). A TopK SAE
(:class:`~bottleneck_jax.compression.SparseAutoencoder`, ``k = 3``, ``d_sae = 128``) is trained
by :func:`bottleneck_jax.train.train` with Adam (lr 2e-3) on fresh batches of 512 for 3000 steps,
for several seeds. Measured on 8192 held-out examples: the mean max cosine similarity (MMCS, over
the true atoms, of the largest ``|cos|`` to any decoder row), the fraction of atoms recovered
(``|cos| > 0.9``), the fraction of variance unexplained (FVU) and the mean L0.

Departure from the recipe the thresholds come from: the decoder is kept at unit row norm by
parameterisation (the loss sees ``W_dec / ||W_dec||`` row-wise, a weight normalisation) instead
of a projection after every step, because :func:`~bottleneck_jax.train.train` has no post-update
hook; the two constrain the same set of dictionaries.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bottleneck_jax.experiments._training import batch_stream, fit
from bottleneck_jax.experiments.registry import (
    Expectation,
    Experiment,
    Metric,
    RunContext,
    register,
)

PAPER_ID = "sae-data-selection"


def sparse_superposition(rng: np.random.Generator, atoms: np.ndarray, n: int, k: int,
                         low: float = 0.5, high: float = 2.0) -> np.ndarray:
  """``n`` examples, each the sum of ``k`` distinct rows of ``atoms`` with U(low, high)
  coefficients."""
  m = atoms.shape[0]
  idx = np.argsort(rng.random((n, m)), axis=1)[:, :k]
  coef = rng.uniform(low, high, (n, k))
  return np.einsum("nk,nkd->nd", coef, atoms[idx]).astype(np.float32)


def random_atoms(seed: int, m: int, d: int) -> np.ndarray:
  """``m`` unit-norm Gaussian directions in ``d`` dimensions."""
  a = np.random.default_rng(seed).standard_normal((m, d))
  return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def dictionary_match(atoms: np.ndarray, w_dec: np.ndarray) -> np.ndarray:
  """For each true atom, the largest ``|cos|`` to a decoder row."""
  w = w_dec / np.maximum(np.linalg.norm(w_dec, axis=1, keepdims=True), 1e-12)
  return np.max(np.abs(atoms @ w.T), axis=1)


def run(ctx: RunContext) -> dict[str, Any]:
  from bottleneck_jax.compression import (
      SparseAutoencoder,
      normalize_decoder,
      sae_decode,
      sae_encode,
      sae_loss,
      sae_metrics,
  )
  cfg = ctx.config
  m, d, k = int(cfg["atoms"]), int(cfg["dim"]), int(cfg["k"])
  d_sae, bs = int(cfg["d_sae"]), int(cfg["batch_size"])
  rows = []
  for seed in range(int(cfg["seeds"])):
    atoms = random_atoms(1000 + seed, m, d)
    stream = batch_stream(
        lambda r, atoms=atoms: {"x": sparse_superposition(r, atoms, bs, k)}, seed=seed)

    def loss_fn(model, batch, key):
      r = sae_loss(normalize_decoder(model.params), batch["x"], activation="topk", k=k)
      return r.loss, {"reconstruction": r.reconstruction, "l0": r.l0}

    res = fit(ctx, f"seed_{seed}",
              lambda seed=seed: SparseAutoencoder(d, d_sae, activation="topk", k=k,
                                                  rngs=nnx.Rngs(seed)),
              optax.adam(float(cfg["lr"])), loss_fn, stream, steps=int(cfg["steps"]),
              batch_size=bs, seed=seed, tags={"seed": seed}, desc=f"sae seed {seed}")
    params = jax.device_get(normalize_decoder(res.model.params))
    x = jnp.asarray(sparse_superposition(np.random.default_rng(10_000 + seed), atoms,
                                         int(cfg["n_eval"]), k))
    f = sae_encode(params, x, activation="topk", k=k).features
    met = sae_metrics(x, sae_decode(params, f), f)
    cos = dictionary_match(atoms, np.asarray(params.W_dec))
    rows.append({"seed": seed, "mmcs": float(cos.mean()),
                 "recovered": float(np.mean(cos > 0.9)), "fvu": float(met.fvu),
                 "l0": float(met.l0), "dead_fraction": float(met.dead_fraction)})
  return {"mmcs": float(np.mean([r["mmcs"] for r in rows])),
          "mmcs_min": float(min(r["mmcs"] for r in rows)),
          "recovered_min": float(min(r["recovered"] for r in rows)),
          "fvu": float(np.mean([r["fvu"] for r in rows])),
          "l0": float(np.mean([r["l0"] for r in rows])),
          "table": rows}


SAE_SYNTHETIC = register(Experiment(
    name="sae-synthetic",
    paper_id=PAPER_ID,
    claim=("A TopK sparse autoencoder (k = the true number of active atoms) trained on sparse "
           "non-negative combinations of 64 atoms in 32 dimensions recovers the atoms: its "
           "decoder rows align with them (mean max |cos| near 1)."),
    setting="proxy",
    departures=(
        "synthetic superposition data with a known dictionary instead of language-model "
        "activations",
        "unit-norm decoder rows by weight normalisation instead of a projection after each step",
        "no AuxK loss and no dead-latent resampling",
    ),
    metric="mmcs",
    metrics={
        "mmcs": Metric("mean over seeds of the mean (over true atoms) max |cos| to a decoder row",
                       low=0, high=1),
        "mmcs_min": Metric("the smallest MMCS over the seeds", low=0, high=1),
        "recovered_min": Metric("the smallest fraction (over seeds) of atoms with a decoder row "
                                "at |cos| > 0.9", low=0, high=1),
        "fvu": Metric("mean held-out fraction of variance unexplained", low=0),
        "l0": Metric("mean held-out number of active latents", low=0),
    },
    expectations=(
        Expectation("mmcs_min", ">=", 0.98, reads=("steps", "d_sae"), quick_value=0.8,
                    source="the project's test plan: d_sae = 128 gives MMCS about 0.999, "
                           "asserted >= 0.98"),
        Expectation("recovered_min", ">=", 0.95, reads=("steps", "d_sae"), quick_value=0.5,
                    source="the project's test plan: 100 % atoms recovered, asserted >= 95 %"),
        Expectation("l0", "==", 3.0, reads=("k",),
                    source="the project's test plan: L0 == k exactly"),
    ),
    run=run,
    defaults={"checkpoint_every": 0, "keep": 2, "seeds": 3, "atoms": 64, "dim": 32, "k": 3,
              "d_sae": 128, "lr": 2e-3, "batch_size": 512, "steps": 3000, "n_eval": 8192},
    quick={"seeds": 1, "steps": 400},
    paper_value="TopK SAEs recover interpretable features at scale (Gao et al. 2024); "
                "toy numbers from the test plan: MMCS 0.999, 100 % of atoms at d_sae = 128",
))

__all__ = ["SAE_SYNTHETIC", "dictionary_match", "random_atoms", "sparse_superposition"]
