"""Writes golden outputs of ``vector-quantize-pytorch`` for the quantize tests.

Needs ``torch`` and ``vector-quantize-pytorch`` (not dependencies of bottleneck_jax)::

    pip install torch vector-quantize-pytorch
    python scripts/make_quantize_fixtures.py            # -> tests/quantize/fixtures/vqpytorch.npz

The tests read the ``.npz`` only, so they run without torch. Everything is float32 and seeded;
the peer's random codebook initialisation is never used (codebooks are copied in).
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "quantize" / "fixtures" / \
    "vqpytorch.npz"
FSQ_LEVELS = ([8, 6, 5], [8, 5, 5, 5], [7, 5, 5, 5, 5], [8, 8, 8, 5, 5, 5])


def main(out: pathlib.Path) -> None:
  import torch
  import vector_quantize_pytorch as vqp
  from vector_quantize_pytorch.vector_quantize_pytorch import rotate_to

  torch.manual_seed(0)
  rng = np.random.default_rng(0)
  fx: dict[str, np.ndarray] = {"version": np.array(vqp.__version__ if hasattr(vqp, "__version__")
                                                   else "unknown")}
  t = lambda a: torch.tensor(np.asarray(a, np.float32))   # noqa: E731

  # FSQ: codes, indices, implicit codebook, gradient of sum(fsq(x))
  for levels in FSQ_LEVELS:
    name = "x".join(map(str, levels))
    x = (2.0 * rng.standard_normal((64, len(levels)))).astype(np.float32)
    fsq = vqp.FSQ(levels=levels).eval()
    xt = t(x)[None].requires_grad_(True)
    codes, idx = fsq(xt)
    codes.sum().backward()
    fx[f"fsq_{name}_x"] = x
    fx[f"fsq_{name}_codes"] = codes.detach().numpy()[0]
    fx[f"fsq_{name}_indices"] = idx.numpy()[0].astype(np.int32)
    fx[f"fsq_{name}_grad"] = xt.grad.numpy()[0]
    fx[f"fsq_{name}_codebook"] = fsq.implicit_codebook.numpy()

  # LFQ (d = 4 and d = 10): codes, indices, aux loss in training mode
  for d, scale in ((4, 0.003), (10, 0.002)):
    x = (scale * rng.standard_normal((2, 16, d))).astype(np.float32)
    lfq = vqp.LFQ(dim=d, codebook_size=2**d, entropy_loss_weight=0.1,
                  commitment_loss_weight=0.25, diversity_gamma=1.0).train()
    q, idx, aux = lfq(t(x), inv_temperature=100.0)
    fx[f"lfq{d}_x"] = x
    fx[f"lfq{d}_codes"] = q.detach().numpy()
    fx[f"lfq{d}_indices"] = idx.numpy().astype(np.int32)
    fx[f"lfq{d}_loss"] = np.float32(aux.item())

  # VectorQuantize: eval with a copied codebook (l2, cosine), then one EMA training step
  k, d = 16, 4
  cb = rng.standard_normal((k, d)).astype(np.float32)
  x = rng.standard_normal((2, 12, d)).astype(np.float32)
  fx["vq_codebook"], fx["vq_x"] = cb, x
  for metric in ("l2", "cosine"):
    vq = vqp.VectorQuantize(dim=d, codebook_size=k, decay=0.8, commitment_weight=1.0,
                            rotation_trick=False, use_cosine_sim=metric == "cosine").eval()
    # the peer keeps a cosine codebook l2-normalised (it only normalises at init / after updates)
    e = cb / np.linalg.norm(cb, axis=-1, keepdims=True) if metric == "cosine" else cb
    with torch.no_grad():
      vq._codebook.embed.copy_(t(e)[None])
    q, idx, _ = vq(t(x))
    fx[f"vq_{metric}_quantized"] = q.detach().numpy()
    fx[f"vq_{metric}_indices"] = idx.numpy().astype(np.int32)
  vq = vqp.VectorQuantize(dim=d, codebook_size=k, decay=0.8, commitment_weight=1.0,
                          rotation_trick=False, kmeans_init=False,
                          threshold_ema_dead_code=0).train()
  with torch.no_grad():
    vq._codebook.embed.copy_(t(cb)[None])
    vq._codebook.embed_avg.copy_(t(cb)[None])
  q, idx, loss = vq(t(x))
  fx["vq_ema_indices"] = idx.numpy().astype(np.int32)
  fx["vq_ema_loss"] = np.float32(loss.item())
  fx["vq_ema_codebook"] = vq._codebook.embed.detach().numpy()[0]
  fx["vq_ema_cluster_size"] = vq._codebook.cluster_size.detach().numpy()[0]
  fx["vq_ema_embed_avg"] = vq._codebook.embed_avg.detach().numpy()[0]

  # rotation trick: forward and VJP of rotate_to
  src = t(rng.standard_normal((8, 5))).requires_grad_(True)
  tgt = t(rng.standard_normal((8, 5)))
  g = rng.standard_normal((8, 5)).astype(np.float32)
  rot = rotate_to(src, tgt)
  rot.backward(t(g))
  fx["rot_src"], fx["rot_tgt"], fx["rot_g"] = src.detach().numpy(), tgt.numpy(), g
  fx["rot_out"], fx["rot_grad"] = rot.detach().numpy(), src.grad.numpy()

  # ResidualVQ: eval with copied codebooks, then one EMA step (no dropout, no restarts)
  nq = 3
  cbs = (rng.standard_normal((nq, k, d)) * np.array([1.0, 0.4, 0.15])[:, None, None]).astype(
      np.float32)
  fx["rvq_codebooks"] = cbs
  for mode in ("eval", "train"):
    rvq = vqp.ResidualVQ(dim=d, num_quantizers=nq, codebook_size=k, decay=0.8,
                         commitment_weight=1.0, rotation_trick=False, kmeans_init=False,
                         threshold_ema_dead_code=0)
    rvq.train(mode == "train")
    with torch.no_grad():
      for i, layer in enumerate(rvq.layers):
        layer._codebook.embed.copy_(t(cbs[i])[None])
        layer._codebook.embed_avg.copy_(t(cbs[i])[None])
    q, idx, losses = rvq(t(x))
    fx[f"rvq_{mode}_quantized"] = q.detach().numpy()
    fx[f"rvq_{mode}_indices"] = idx.numpy().astype(np.int32)
    if mode == "train":
      fx["rvq_train_losses"] = losses.detach().numpy().reshape(-1)
      fx["rvq_train_codebooks"] = np.stack([layer._codebook.embed.detach().numpy()[0]
                                            for layer in rvq.layers])
  out.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(out, **fx)
  print(f"wrote {out} ({len(fx)} arrays)")


if __name__ == "__main__":
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--out", type=pathlib.Path, default=OUT)
  main(ap.parse_args().out)
