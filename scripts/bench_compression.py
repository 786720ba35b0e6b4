"""Benchmark of the image codec and the entropy coder against Pillow's JPEG and WebP, same CPU,
same images, same run.

On scikit-image's bundled photographs (``astronaut``, ``coffee``, ``chelsea``), interleaved
rounds (each round times every codec once, so that load on a shared machine hits them alike),
medians over the rounds:

1. whole-image codecs: encode and decode throughput in MB/s of raw RGB pixels, bits per pixel
   and PSNR: ours (``bottleneck-jax compress``'s :func:`compress_image` /
   :func:`decompress_image` with the packaged WaLLoC model, both containers: the factorised
   prior + range coder and the paper's lossless WebP of the latents) and Pillow's JPEG and WebP
   (lossy) at a few qualities;
2. the entropy-coding stage alone: the factorised prior's tables + the constriction range coder
   (:func:`factorized_compress` / :func:`factorized_decompress`) on the model's integer
   latents, in MB/s of raw image and in millions of symbols per second; CompressAI's
   ``EntropyBottleneck`` (rANS) on latents of the same shape if ``compressai`` is importable
   (torch is not installed for this; the section is skipped otherwise);
3. file bits against the model's ideal bits: the payload's length against ``sum -log2 p`` of the
   latents under the quantised tables (:func:`ideal_code_length`) and under the continuous
   prior (:func:`factorized_likelihood`).

Throughputs include everything a user of the function pays (the JIT-compiled transform, the
host transfers, the coder), after one warm-up call per image (the compilation is excluded).

    python scripts/bench_compression.py [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import time

import numpy as np

IMAGES = ("astronaut", "coffee", "chelsea")


def _image(name: str) -> np.ndarray:
  import skimage.data
  img = getattr(skimage.data, name)()
  if img.ndim == 2:
    img = np.repeat(img[..., None], 3, axis=-1)
  return np.ascontiguousarray(img[..., :3].astype(np.uint8))


def _psnr(a, b) -> float:
  mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
  return float("inf") if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def _timed(fn):
  t0 = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - t0


class _Codec:
  """``encode(img) -> bytes`` and ``decode(bytes) -> img`` of one whole-image codec."""

  def __init__(self, name, encode, decode):
    self.name, self.encode, self.decode = name, encode, decode


def _pillow(fmt: str, quality: int) -> _Codec:
  from PIL import Image

  def encode(img):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, quality=quality)
    return buf.getvalue()

  def decode(data):
    with Image.open(io.BytesIO(data)) as im:
      return np.asarray(im.convert("RGB"))
  return _Codec(f"Pillow {fmt} q{quality}", encode, decode)


def _ours(codec, container: str) -> _Codec:
  from bottleneck_jax.compression import compress_image, decompress_image
  return _Codec(f"ours WaLLoC ({container})",
                lambda img: compress_image(img, model=codec, container=container),
                lambda data: decompress_image(data, model=codec))


def _entropy_stage(codec, latents: dict[str, np.ndarray]) -> dict[str, tuple]:
  """``{image: (encode_fn, decode_fn)}`` of the prior + constriction coder on the latents."""
  from bottleneck_jax.compression import factorized_compress, factorized_decompress
  med = codec.quantiles[:, 1].astype(np.float32)
  out = {}
  for name, u in latents.items():
    y = u[None].astype(np.float32)

    def enc(y=y):
      return factorized_compress(y, med, codec.tables)

    def dec(strings, shape=y.shape):
      return factorized_decompress(strings, shape, med, codec.tables)
    out[name] = (enc, dec)
  return out


def _compressai_stage(latents: dict[str, np.ndarray]):
  """CompressAI's EntropyBottleneck (its default init, tables after ``update``) on latents of
  the same shapes, or ``None`` when compressai (and torch) are not importable."""
  try:
    import torch
    from compressai.entropy_models import EntropyBottleneck
  except ImportError:
    return None
  out = {}
  for name, u in latents.items():
    c = u.shape[-1]
    eb = EntropyBottleneck(c)
    eb.update(force=True)
    y = torch.from_numpy(u.astype(np.float32)).permute(2, 0, 1)[None].contiguous()

    def enc(eb=eb, y=y):
      return eb.compress(y)

    def dec(strings, eb=eb, size=tuple(y.shape[2:])):
      return eb.decompress(strings, size)
    out[name] = (enc, dec)
  return out


def _bits_table(codec, images: dict[str, np.ndarray], latents: dict[str, np.ndarray]) -> list:
  import jax.numpy as jnp

  from bottleneck_jax.compression import (
      compress_image,
      factorized_likelihood,
      ideal_code_length,
      read_header,
  )
  rows = []
  med = codec.quantiles[:, 1].astype(np.int64)
  for name, u in latents.items():
    img = images[name]
    pixels = img.shape[0] * img.shape[1]
    data = compress_image(img, model=codec, container="prior")
    payload = read_header(data).payload
    idx = np.broadcast_to(np.arange(u.shape[-1], dtype=np.int32), u.shape)
    ideal_q = ideal_code_length(u - med, idx, codec.tables)
    p = factorized_likelihood(codec.prior, jnp.asarray(u, jnp.float32))
    ideal_c = float(-np.sum(np.log2(np.asarray(p, np.float64))))
    rows.append((name, u.size, len(data) * 8, len(payload) * 8, ideal_q, ideal_c,
                 pixels))
  return rows


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--rounds", type=int, default=5)
  ap.add_argument("--quick", action="store_true",
                  help="one image, one round, one quality per Pillow format")
  args = ap.parse_args()
  from bottleneck_jax.compression import load_codec
  from bottleneck_jax.compression._codec import encode_latents

  rounds = 1 if args.quick else args.rounds
  names = IMAGES[:1] if args.quick else IMAGES
  images = {n: _image(n) for n in names}
  codec = load_codec()
  qualities = (75,) if args.quick else (50, 75, 90)
  codecs = [_ours(codec, "prior"), _ours(codec, "webp")]
  codecs += [_pillow(fmt, q) for fmt in ("JPEG", "WebP") for q in qualities]
  latents = {n: encode_latents(codec, img)[0] for n, img in images.items()}
  stages = {"ours: prior + constriction": _entropy_stage(codec, latents)}
  cai = _compressai_stage(latents)
  if cai is not None:
    stages["CompressAI EntropyBottleneck (rANS)"] = cai

  # warm-up (JIT compilation, lazy imports), and the size / quality of each output
  quality: dict[tuple, tuple] = {}
  for c in codecs:
    for n, img in images.items():
      data = c.encode(img)
      quality[(c.name, n)] = (len(data) * 8 / (img.shape[0] * img.shape[1]),
                              _psnr(img, c.decode(data)))
  for s in stages.values():
    for enc, dec in s.values():
      dec(enc())

  times: dict[tuple, list] = {}
  for _ in range(rounds):
    for n, img in images.items():
      for c in codecs:
        data, te = _timed(lambda c=c, img=img: c.encode(img))
        _, td = _timed(lambda c=c, data=data: c.decode(data))
        times.setdefault((c.name, n), []).append((te, td))
      for sname, s in stages.items():
        enc, dec = s[n]
        strings, te = _timed(enc)
        _, td = _timed(lambda dec=dec, strings=strings: dec(strings))
        times.setdefault((sname, n), []).append((te, td))

  def med(key):
    return (statistics.median(t[0] for t in times[key]),
            statistics.median(t[1] for t in times[key]))

  print(f"## Whole-image codecs (median of {rounds} interleaved rounds; MB/s of raw RGB)\n")
  print("| codec | image | bpp | PSNR (dB) | encode MB/s | decode MB/s |")
  print("|---|---|---:|---:|---:|---:|")
  for c in codecs:
    for n, img in images.items():
      mb = img.nbytes / 1e6
      te, td = med((c.name, n))
      bpp, ps = quality[(c.name, n)]
      print(f"| {c.name} | {n} {img.shape[0]}x{img.shape[1]} | {bpp:.3f} | {ps:.2f} | "
            f"{mb / te:.2f} | {mb / td:.2f} |")

  print("\n## Entropy coding stage alone (the model's integer latents)\n")
  print("| coder | image | latents | encode MB/s | decode MB/s | encode Msym/s | "
        "decode Msym/s |")
  print("|---|---|---|---:|---:|---:|---:|")
  for sname in stages:
    for n, img in images.items():
      mb, nsym = img.nbytes / 1e6, latents[n].size
      te, td = med((sname, n))
      print(f"| {sname} | {n} | {'x'.join(map(str, latents[n].shape))} | {mb / te:.2f} | "
            f"{mb / td:.2f} | {nsym / te / 1e6:.3f} | {nsym / td / 1e6:.3f} |")
  if cai is None:
    print("\n(CompressAI not importable: its section is skipped.)")
  else:
    print("\n(CompressAI's EntropyBottleneck is at its default init: only its speed is "
          "comparable, not its bits.)")

  print("\n## File bits vs the model's ideal bits (prior container)\n")
  print("| image | latents | file bits | payload bits | ideal, quantised tables | "
        "ideal, continuous prior | payload / ideal (tables) | file bpp | ideal bpp |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
  for (n, nsym, fbits, pbits, iq, ic, pix) in _bits_table(codec, images, latents):
    print(f"| {n} | {nsym} | {fbits} | {pbits} | {iq:.0f} | {ic:.0f} | "
          f"{pbits / iq - 1:+.3%} | {fbits / pix:.4f} | {ic / pix:.4f} |")


if __name__ == "__main__":
  main()
