"""WaLLoC on scikit-image's bundled photographs: rate-distortion against resizing, JPEG and WebP.

Paper: Jacobellis & Yadwadkar, "Learned Compression for Compressed Learning", DCC 2025,
https://arxiv.org/abs/2412.09405. The paper's claim is against *resolution reduction at equal
dimensionality* (compressed-domain learning needs a small tensor, not a small file): WaLLoC-16x
(RGB, J = 3, C_z = 12) reaches 27.5 dB PSNR on LSDIR at compression ratio 35.2 (WebP: 28.2 dB at
40.6, Table 1). At equal *bits*, JPEG is expected to win (test-plan finding 4); this experiment records
where WaLLoC stands, honestly.

Recipe: a WaLLoC with the linear decoder (the paper's ``LinearCodec2D``) for each ``C_z`` in
``latent_dims`` is trained by :func:`bottleneck_jax.train.train` on random 64x64 crops of
``coffee``, ``chelsea`` and ``stereo_motorcycle`` (left view) (pixel MSE, uniform noise on the companded
latents, Adam); a factorised prior is then fitted (again by ``train``) to the integer latents of
the training images. The test image is ``astronaut`` (512x512, never seen in training):

* WaLLoC: PSNR of the decoded image; bits per pixel of the whole compressed file (header
  included) with the range-coded container, and with the paper's WebP-lossless container;
* resizing at equal dimensionality: Lanczos down by ``sqrt(DR)`` per side and back up;
* resizing at equal bits: the thumbnail stored as a PNG (a point on the plot);
* JPEG and WebP (Pillow) at a sweep of qualities, PSNR interpolated at WaLLoC's bpp.

The model of the first ``latent_dims`` entry is saved as ``walloc-rgb-16x.npz`` in the work
directory: this is how the codec shipped in ``bottleneck_jax/compression/models/`` was made.
"""

from __future__ import annotations

import io
import math
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from bottleneck_jax.experiments._training import fit
from bottleneck_jax.experiments.registry import (
    Expectation,
    Experiment,
    Metric,
    Ref,
    RunContext,
    register,
)

PAPER_ID = "walloc"


def _uint8(name: str) -> np.ndarray:
  import skimage.data
  img = getattr(skimage.data, name)()
  if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
    img = img[0]
  if img.ndim == 2:
    img = np.repeat(img[..., None], 3, axis=-1)
  return img[..., :3].astype(np.uint8)


def _crops(names, size: int, count: int, seed: int) -> np.ndarray:
  r = np.random.default_rng(seed)
  imgs = [_uint8(n) for n in names]
  out = np.empty((count, size, size, 3), np.float32)
  for i in range(count):
    img = imgs[i % len(imgs)]
    y = r.integers(0, img.shape[0] - size + 1)
    x = r.integers(0, img.shape[1] - size + 1)
    crop = img[y:y + size, x:x + size]
    if r.random() < 0.5:
      crop = crop[:, ::-1]
    out[i] = crop / 255.0 - 0.5
  return out


def _psnr(a, b) -> float:
  mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
  return 10.0 * math.log10(255.0 ** 2 / mse)


def _pil_curve(img: np.ndarray, fmt: str, qualities) -> list[dict]:
  from PIL import Image
  rows = []
  for q in qualities:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, quality=int(q))
    dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    rows.append({"quality": int(q), "bpp": 8 * len(buf.getvalue()) / (img.shape[0] *
                                                                     img.shape[1]),
                 "psnr": _psnr(img, dec)})
  return rows


def _at_bpp(curve: list[dict], bpp: float) -> float:
  pts = sorted((r["bpp"], r["psnr"]) for r in curve)
  xs, ys = [p[0] for p in pts], [p[1] for p in pts]
  if bpp < xs[0] or bpp > xs[-1]:
    return float("nan")  # outside the measured range: no extrapolation
  return float(np.interp(bpp, xs, ys))


def _resize(img: np.ndarray, factor: float) -> tuple[np.ndarray, float]:
  """Lanczos down by ``factor`` per side and back up; the bpp of the thumbnail as PNG."""
  from PIL import Image
  h, w = img.shape[:2]
  small = Image.fromarray(img).resize((max(1, round(w / factor)), max(1, round(h / factor))),
                                      Image.Resampling.LANCZOS)
  buf = io.BytesIO()
  small.save(buf, format="PNG", optimize=True)
  up = np.asarray(small.resize((w, h), Image.Resampling.LANCZOS))
  return up, 8 * len(buf.getvalue()) / (h * w)


def train_walloc(ctx: RunContext, latent_dim: int):
  """Trains one linear-decoder WaLLoC and its prior; returns a ``WaLLoCCodec``."""
  from bottleneck_jax.compression import (
    EntropyBottleneck,
    WaLLoC,
    entropy_bottleneck,
    fit_quantiles,
    make_codec,
    walloc_loss,
  )
  from bottleneck_jax.compression._codec import encode_latents
  config = ctx.config
  levels, bits = int(config["levels"]), int(config["latent_bits"])
  crops = _crops(config["train_images"], int(config["crop"]), int(config["num_crops"]),
                 int(config["data_seed"]))

  def model_fn():
    return WaLLoC(3, levels=levels, latent_dim=latent_dim, latent_bits=bits, decoder="linear",
                  rngs=nnx.Rngs(ctx.seed))

  def loss_fn(model, batch, key):
    out = model(batch["x"], key=key, training=True)
    mse = walloc_loss(batch["x"], out.z)
    return mse, {"mse": mse, "psnr": -10.0 * jnp.log10(mse)}

  res = fit(ctx, f"walloc_cz{latent_dim}", model_fn, optax.adam(float(config["lr"])), loss_fn,
            {"x": crops}, steps=int(config["steps"]), batch_size=int(config["batch_size"]),
            tags={"latent_dim": latent_dim, "stage": "autoencoder"},
            desc=f"walloc C_z={latent_dim}")
  model = res.model
  probe = type("P", (), {"model": model})()  # encode_latents only reads .model
  lat = np.concatenate([encode_latents(probe, _uint8(n))[0].reshape(-1, latent_dim)
                        for n in config["train_images"]]).astype(np.float32)

  def prior_fn():
    return EntropyBottleneck(latent_dim, rngs=nnx.Rngs(ctx.seed))

  def prior_loss(eb, batch, key):
    # the latents are integers already: their likelihood is the bin mass at that integer
    out = entropy_bottleneck(eb.params, jnp.zeros(latent_dim), batch["u"], training=False)
    b = jnp.mean(out.bits) / latent_dim
    return b, {"bits_per_latent": b}

  pres = fit(ctx, f"prior_cz{latent_dim}", prior_fn, optax.adam(float(config["prior_lr"])),
             prior_loss, {"u": lat}, steps=int(config["prior_steps"]),
             batch_size=int(config["prior_batch_size"]),
             tags={"latent_dim": latent_dim, "stage": "prior"}, desc=f"prior C_z={latent_dim}")
  prior = pres.model.params
  q = np.asarray(fit_quantiles(prior))
  dr = 3 * 4 ** levels / latent_dim
  return make_codec(f"walloc-rgb-{dr:g}x", model, prior, q)


def run_walloc_images(ctx: RunContext) -> dict[str, Any]:
  from bottleneck_jax.compression import (
    compress_image,
    decompress_image,
    factorized_likelihood,
    read_header,
    save_codec,
  )
  from bottleneck_jax.compression._codec import encode_latents
  config = ctx.config
  test = _uint8(config["test_image"])
  hw = test.shape[0] * test.shape[1]
  jpeg = _pil_curve(test, "JPEG", config["jpeg_qualities"])
  webp = _pil_curve(test, "WEBP", config["webp_qualities"])
  rows = []
  for i, cz in enumerate(int(c) for c in config["latent_dims"]):
    codec = train_walloc(ctx, cz)
    if i == 0 and ctx.is_main_process:
      save_codec(ctx.workdir / f"{codec.model_id}.npz", codec)
    data = compress_image(test, model=codec)
    dec = decompress_image(data, model=codec)
    web = compress_image(test, model=codec, container="webp")
    u, _ = encode_latents(codec, test)
    med = codec.quantiles[:, 1]
    lik = factorized_likelihood(codec.prior, jnp.asarray(u - 0.0, jnp.float32))
    model_bits = float(jnp.sum(-jnp.log2(lik)))
    payload_bits = 8 * len(read_header(data).payload)
    dr = 3 * 4 ** codec.model.levels / cz
    resized, resize_png_bpp = _resize(test, math.sqrt(dr))
    bpp = 8 * len(data) / hw
    row = {"latent_dim": cz, "dimension_reduction": dr, "bpp": bpp, "psnr": _psnr(test, dec),
           "webp_container_bpp": 8 * len(web) / hw, "payload_over_model_bits":
           payload_bits / model_bits, "resize_psnr": _psnr(test, resized),
           "resize_png_bpp": resize_png_bpp, "jpeg_psnr_at_bpp": _at_bpp(jpeg, bpp),
           "webp_psnr_at_bpp": _at_bpp(webp, bpp), "median_shift": float(np.abs(med).max())}
    rows.append(row)
  if ctx.is_main_process:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in (("JPEG", jpeg), ("WebP", webp)):
      ax.plot([r["bpp"] for r in curve], [r["psnr"] for r in curve], "o-", label=name)
    ax.plot([r["bpp"] for r in rows], [r["psnr"] for r in rows], "s", ms=9,
            label="WaLLoC (linear) + prior + range coder")
    ax.plot([r["webp_container_bpp"] for r in rows], [r["psnr"] for r in rows], "D",
            label="WaLLoC, WebP-lossless container (paper)")
    ax.plot([r["resize_png_bpp"] for r in rows], [r["resize_psnr"] for r in rows], "^",
            label="Lanczos resize at equal dimensionality (PNG)")
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"{config['test_image']}: rate-distortion")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ctx.plot_path("rate_distortion"), dpi=120)
    plt.close(fig)
  main = rows[0]
  out = {k: v for k, v in main.items()}
  out["gain_over_resize_db"] = main["psnr"] - main["resize_psnr"]
  out["table"] = rows
  out["jpeg"] = jpeg
  out["webp"] = webp
  return out


WALLOC_IMAGES = register(Experiment(
    name="walloc-images",
    paper_id=PAPER_ID,
    claim=("WaLLoC-16x (RGB, 3-level bior4.4 wavelet packets, a 1x1 linear encoder to 12 "
           "channels, int8 companded latents) reconstructs images much better than resolution "
           "reduction with the same number of values (the paper's comparison); at equal bits "
           "it is recorded against JPEG and WebP."),
    setting="proxy",
    departures=(
        "training on 64x64 crops of three scikit-image photographs instead of LSDIR; test on "
        "astronaut instead of the LSDIR validation set",
        "linear decoder (the paper's LinearCodec2D) instead of the 768-wide ResNet/attention "
        "decoder, a few thousand Adam steps instead of 250 epochs",
        "latents range-coded with a factorised prior fitted afterwards (our extension); the "
        "paper's WebP-lossless container is also measured",
    ),
    metric="psnr",
    metrics={
        "psnr": Metric("PSNR (dB) of WaLLoC-16x on the test image", low=0),
        "resize_psnr": Metric("PSNR (dB) of Lanczos resizing at the same dimensionality",
                              low=0),
        "gain_over_resize_db": "WaLLoC PSNR minus resizing PSNR (dB)",
        "bpp": Metric("bits per pixel of the compressed file (header included)", low=0),
        "jpeg_psnr_at_bpp": "JPEG PSNR (dB) interpolated at WaLLoC's bpp (NaN outside range)",
        "webp_psnr_at_bpp": "WebP PSNR (dB) interpolated at WaLLoC's bpp (NaN outside range)",
        "payload_over_model_bits": Metric("range-coded payload bits / model -log2 likelihood",
                                          low=0),
    },
    expectations=(
        Expectation("gain_over_resize_db", ">", 2.0, reads=("latent_dims",),
                    source="issue 11 / the project's test plan: beats resizing by > 2 dB "
                           "(linear PCA bound +2.4 dB on astronaut)", quick_value=0.0),
        Expectation("psnr", ">=", 27.4, reads=("latent_dims",),
                    source="the project's test plan: trained linear WaLLoC C_z = 12 on "
                           "astronaut >= 27.4 dB", quick_value=22.0),
        Expectation("psnr", ">=", Ref("jpeg_psnr_at_bpp", offset=-3.5),
                    source="the project's test plan: within 3.5 dB of JPEG at matched bpp"),
        Expectation("payload_over_model_bits", "<=", 1.01,
                    source="the project's test plan: the bitstream within 1 % of the model's "
                           "bits"),
    ),
    run=run_walloc_images,
    defaults={"latent_dims": [12, 48], "levels": 3, "latent_bits": 8, "crop": 64,
              "num_crops": 2048, "batch_size": 32, "steps": 2000, "lr": 2e-3,
              "prior_steps": 600, "prior_lr": 1e-2, "prior_batch_size": 1024,
              "train_images": ["coffee", "chelsea", "stereo_motorcycle"],
              "test_image": "astronaut", "data_seed": 0,
              "jpeg_qualities": [5, 10, 20, 30, 50, 75, 90, 95],
              "webp_qualities": [5, 10, 20, 30, 50, 75, 90, 95]},
    quick={"latent_dims": [12], "steps": 100, "prior_steps": 50, "num_crops": 256},
    paper_value="WaLLoC-16x: 27.5 dB at CR 35.2 (~0.68 bpp); WebP 28.2 dB at CR 40.6 "
                "(LSDIR, Table 1)",
))

__all__ = ["WALLOC_IMAGES", "train_walloc"]
