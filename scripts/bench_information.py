"""Benchmark of the MI estimators against scikit-learn on the same CPU, in the same run.

1. KSG: :func:`bottleneck_jax.information.ksg_mi` (``k = 3``, jitted, compile
   excluded) against ``sklearn.feature_selection.mutual_info_regression`` (``n_neighbors=3``,
   KD-tree KSG) on the same 1-D correlated Gaussians (``rho = 0.9``, exact MI 0.8304 nats), at
   N = 1000, 5000, 20000. Both see the same standardised samples (scikit-learn standardises
   again and adds its ~1e-10 jitter, then clips at 0). Median wall time over interleaved
   rounds and the absolute error against the exact MI.
2. The information-plane workload: 100 checkpoints x 5 tanh layers (widths 10-7-5-4-3 of the
   12-bit network) on N = 4096 inputs, binned estimator (30 edges on [-1, 1], IDNNs):
   :func:`bottleneck_jax.information.information_plane` with
   :func:`bottleneck_jax.information.binned_estimator` vmapped over the checkpoint axis, one jit,
   against a Python loop of ``numpy.digitize`` + ``numpy.unique(axis=0)`` +
   ``sklearn.metrics.mutual_info_score`` over the same 500 (layer, checkpoint) pairs, computing
   the same two numbers ``I(X;T)`` (= ``H(T)``, inputs distinct) and ``I(T;Y)``. The activations
   are those of the paper's network with its initial weights scaled up along the checkpoints
   (a stand-in for training: the estimator's cost does not depend on how the weights were
   found). The largest difference between the two sets of estimates is printed. Ours packs each
   layer's binned rows into 32-bit digits and orders them by ``(T, Y)`` with one single-key
   ``lax.sort`` per digit (3, 2, 2, 1, 1 digits for widths 10-7-5-4-3 at N = 4096); ``H(T)`` and
   ``H(T, Y)`` are run lengths of that order.

Rounds are interleaved (ours, theirs, ours, theirs, ...) so that a load change on the machine
hits both; medians of wall time and of this process's CPU time (all threads) are reported.
Output: markdown tables on stdout.

    python scripts/bench_information.py [--rounds 5] [--quick] [--sizes 1000 5000 20000]
                                        [--checkpoints 100] [--ksg-only | --plane-only]

Our KSG is an exact ``O(N^2)``-time search over blocks of query rows (``O(block x N)`` memory:
tens of MiB at N = 20000); scikit-learn's is a KD-tree, ``O(N log N)`` in low dimension, so the
gap grows with N.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

RHO = 0.9


def _interleaved(fns: dict, rounds: int) -> tuple[dict[str, float], dict[str, float]]:
  """Median wall and process-CPU seconds of each zero-argument callable, rounds interleaved,
  after one warm-up. CPU time (all threads of this process) is the fairer number on a shared,
  oversubscribed machine, where wall time mostly measures waiting for a core."""
  for f in fns.values():
    f()
  wall: dict[str, list[float]] = {k: [] for k in fns}
  cpu: dict[str, list[float]] = {k: [] for k in fns}
  for _ in range(rounds):
    for k, f in fns.items():
      t0, c0 = time.perf_counter(), time.process_time()
      f()
      wall[k].append(time.perf_counter() - t0)
      cpu[k].append(time.process_time() - c0)
  med = lambda d: {k: statistics.median(v) for k, v in d.items()}  # noqa: E731
  return med(wall), med(cpu)


def bench_ksg(sizes, rounds):
  from sklearn.feature_selection import mutual_info_regression

  from bottleneck_jax.information import ksg_mi

  truth = -0.5 * math.log(1 - RHO * RHO)
  ksg = jax.jit(lambda a, b: ksg_mi(a, b, k=3))
  print(f"## KSG (k = 3), 1-D Gaussians rho = {RHO}, exact MI {truth:.4f} nats, "
        f"median of {rounds} interleaved rounds\n")
  print("| N | ours wall (ms) | sklearn wall (ms) | sklearn / ours (wall) | ours CPU (ms) | "
        "sklearn CPU (ms) | sklearn / ours (CPU) | ours error | sklearn error |")
  print("|---|---|---|---|---|---|---|---|---|")
  for n in sizes:
    rng = np.random.default_rng(n)
    x = rng.normal(size=n)
    y = RHO * x + math.sqrt(1 - RHO * RHO) * rng.normal(size=n)
    x, y = (x - x.mean()) / x.std(), (y - y.mean()) / y.std()
    xj = jnp.asarray(x[:, None], jnp.float32)
    yj = jnp.asarray(y[:, None], jnp.float32)
    out = {}

    def ours(xj=xj, yj=yj, out=out):
      out["ours"] = float(jax.block_until_ready(ksg(xj, yj)))

    def theirs(x=x, y=y, out=out):
      out["sklearn"] = float(mutual_info_regression(x[:, None], y, n_neighbors=3,
                                                    random_state=0)[0])
    t, c = _interleaved({"ours": ours, "sklearn": theirs}, rounds)
    print(f"| {n} | {t['ours'] * 1e3:.1f} | {t['sklearn'] * 1e3:.1f} | "
          f"{t['sklearn'] / t['ours']:.2f} | {c['ours'] * 1e3:.1f} | {c['sklearn'] * 1e3:.1f} | "
          f"{c['sklearn'] / c['ours']:.2f} | {abs(out['ours'] - truth):.4f} | "
          f"{abs(out['sklearn'] - truth):.4f} |", flush=True)
  print()


def _plane_activations(checkpoints: int):
  """``[C, 4096, d_l]`` tanh activations of the 12-10-7-5-4-3-2 network per layer (float32)."""
  from bottleneck_jax.data import tishby12
  x, y = tishby12()
  x = np.asarray(x, np.float32)
  rng = np.random.default_rng(0)
  sizes = (12, 10, 7, 5, 4, 3)
  ws = [rng.normal(size=(a, b)).clip(-2, 2) / math.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:])]
  layers = [np.empty((checkpoints, x.shape[0], b), np.float32) for b in sizes[1:]]
  for c in range(checkpoints):
    h = x
    for li, w in enumerate(ws):
      h = np.tanh(h @ (w * (1.0 + 4.0 * c / max(checkpoints - 1, 1))))
      layers[li][c] = h
  return layers, np.asarray(y)


def _sklearn_plane(layers, y, num_edges):
  from sklearn.metrics import mutual_info_score
  edges = np.linspace(-1.0, 1.0, num_edges, dtype=np.float32)
  c, n = layers[0].shape[:2]
  inputs = np.arange(n)
  out = np.empty((c, len(layers), 2))
  for ci in range(c):
    for li, t in enumerate(layers):
      codes = np.digitize(t[ci], edges)
      ids = np.unique(codes, axis=0, return_inverse=True)[1].reshape(-1)
      out[ci, li, 0] = mutual_info_score(inputs, ids)
      out[ci, li, 1] = mutual_info_score(y, ids)
  return out


def bench_plane(checkpoints, rounds):
  from bottleneck_jax.information import binned_estimator, information_plane
  layers, y = _plane_activations(checkpoints)
  n = layers[0].shape[1]
  lj = [jnp.asarray(t) for t in layers]
  yj = jnp.asarray(y)
  plane = jax.jit(lambda ls, lab: information_plane(ls, lab, estimator=binned_estimator()))
  out = {}

  def ours():
    out["ours"] = np.asarray(jax.block_until_ready(plane(lj, yj)))

  def theirs():
    out["sklearn"] = _sklearn_plane(layers, y, 30)
  t0 = time.perf_counter()
  jax.block_until_ready(plane(lj, yj))
  compile_s = time.perf_counter() - t0
  t, c = _interleaved({"ours": ours, "sklearn": theirs}, rounds)
  diff = float(np.max(np.abs(out["ours"] - out["sklearn"])))
  print(f"## Information plane: {checkpoints} checkpoints x {len(layers)} layers, N = {n}, "
        f"binning (30 edges on [-1, 1]), median of {rounds} interleaved rounds\n")
  print("| | ours, vmapped jit | sklearn loop | sklearn / ours |")
  print("|---|---|---|---|")
  print(f"| wall (s) | {t['ours']:.3f} | {t['sklearn']:.3f} | {t['sklearn'] / t['ours']:.1f} |")
  print(f"| process CPU (s) | {c['ours']:.3f} | {c['sklearn']:.3f} | "
        f"{c['sklearn'] / c['ours']:.1f} |")
  print(f"\nFirst call including compilation: {compile_s:.2f} s wall. Largest difference between "
        f"the two sets of {out['ours'].size} estimates: {diff:.2e} nats.")
  print()


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--rounds", type=int, default=5)
  ap.add_argument("--quick", action="store_true",
                  help="small sizes (N = 500, 1000, 2000; 10 checkpoints), two rounds")
  ap.add_argument("--sizes", type=int, nargs="+", default=None,
                  help="KSG sample sizes (default 1000 5000 20000; quick 500 1000 2000)")
  ap.add_argument("--checkpoints", type=int, default=None,
                  help="information-plane checkpoints (default 100; quick 10)")
  ap.add_argument("--ksg-only", action="store_true", help="skip the information-plane benchmark")
  ap.add_argument("--plane-only", action="store_true", help="skip the KSG benchmark")
  args = ap.parse_args()
  rounds = 2 if args.quick else args.rounds
  sizes = args.sizes or ((500, 1000, 2000) if args.quick else (1000, 5000, 20000))
  checkpoints = args.checkpoints or (10 if args.quick else 100)
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, "
        f"{jax.local_device_count()} device(s)\n")
  if not args.plane_only:
    bench_ksg(sizes, rounds)
  if not args.ksg_only:
    bench_plane(checkpoints, rounds)


if __name__ == "__main__":
  main()
