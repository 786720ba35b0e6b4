"""A complete image codec around WaLLoC: a versioned file format, packaged models, range coding.

``compress_image`` pads an 8-bit RGB or grey image (any size) to a multiple of ``2^levels``,
encodes it with a trained :class:`~bottleneck_jax.compression.WaLLoC` into integer latents and
codes them either with the factorised prior fitted to those latents and the range coder of this
family (container ``"prior"``, our extension) or, as the paper does, as a lossless WebP of the
tiled latents (container ``"webp"``). ``decompress_image`` inverts it.

File format (version 1), little endian::

  magic      4 bytes  b"BJXC"
  version    u8       1
  container  u8       0 = factorised prior + range coder, 1 = WebP lossless
  id_len     u8       length of the model id
  model_id   id_len   ASCII (e.g. "walloc-rgb-16x")
  height     u32      original image height
  width      u32      original image width
  channels   u8       1 (grey) or 3 (RGB)
  length     u32      payload bytes
  crc32      u32      of everything above and the payload
  payload    length bytes

A grey image is coded as RGB with three equal channels and decoded back to one channel (their
mean). The checksum makes a damaged file an error rather than a wrong image.
"""

from __future__ import annotations

import functools
import io
import json
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bottleneck_jax.compression._coding import (
  CdfTables,
  build_factorized_tables,
  decode_symbols,
  encode_symbols,
)
from bottleneck_jax.compression._entropy_models import FactorizedPriorParams
from bottleneck_jax.compression._walloc import WaLLoC, latents_to_webp, webp_to_latents
from bottleneck_jax.compression._wavelets import crop_padding, pad_to_multiple

MAGIC = b"BJXC"
VERSION = 1
CONTAINERS = ("prior", "webp")
DEFAULT_MODEL = "walloc-rgb-16x"
MODEL_DIR = Path(__file__).parent / "models"
_HEADER = struct.Struct("<4sBBB")
_DIMS = struct.Struct("<IIBI")


class WaLLoCCodec(NamedTuple):
  """A trained WaLLoC model with its fitted prior (what a packaged ``.npz`` holds)."""
  model_id: str
  model: WaLLoC
  prior: FactorizedPriorParams
  quantiles: np.ndarray          # [C_z, 3], median rounded to an integer
  tables: CdfTables


def _integer_median_quantiles(quantiles) -> np.ndarray:
  q = np.array(quantiles, np.float64)
  q[:, 1] = np.round(q[:, 1])
  return q


def make_codec(model_id: str, model: WaLLoC, prior: FactorizedPriorParams,
               quantiles) -> WaLLoCCodec:
  """Bundles a model and a prior fitted to its integer latents (medians rounded so that the
  tables sit on the integers the latents take)."""
  q = _integer_median_quantiles(quantiles)
  return WaLLoCCodec(model_id, model, prior, q, build_factorized_tables(prior, q))


def save_codec(path, codec: WaLLoCCodec) -> None:
  """Writes a codec to ``path`` (``.npz``: the weights, the prior and a JSON description)."""
  m = codec.model
  if not isinstance(m.decoder, nnx.Conv):
    raise ValueError("save_codec: only the linear-decoder WaLLoC is packaged, got a "
                     f"{type(m.decoder).__name__} decoder")
  meta = {"model_id": codec.model_id, "channels": m.channels, "levels": m.levels,
          "latent_dim": m.latent_dim, "latent_bits": m.latent_bits, "wavelet": m.wavelet,
          "decoder": "linear", "format_version": VERSION}
  arrays = {"enc_kernel": m.encoder.kernel[...], "enc_bias": m.encoder.bias[...],
            "dec_kernel": m.decoder.kernel[...], "dec_bias": m.decoder.bias[...],
            "quantiles": codec.quantiles}
  for name, group in zip(("matrices", "biases", "factors"), codec.prior):
    for i, a in enumerate(group):
      arrays[f"prior_{name}_{i}"] = np.asarray(a)
  buf = io.BytesIO()
  np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                      **{k: np.asarray(v) for k, v in arrays.items()})
  Path(path).write_bytes(buf.getvalue())


@functools.lru_cache(maxsize=4)
def _load(path: str) -> WaLLoCCodec:
  with np.load(path) as z:
    meta = json.loads(bytes(z["meta"]).decode())
    model = WaLLoC(meta["channels"], levels=meta["levels"], latent_dim=meta["latent_dim"],
                   latent_bits=meta["latent_bits"], wavelet=meta["wavelet"],
                   decoder="linear", rngs=nnx.Rngs(0))
    model.encoder.kernel[...] = jnp.asarray(z["enc_kernel"])
    model.encoder.bias[...] = jnp.asarray(z["enc_bias"])
    model.decoder.kernel[...] = jnp.asarray(z["dec_kernel"])
    model.decoder.bias[...] = jnp.asarray(z["dec_bias"])
    groups = []
    for name in ("matrices", "biases", "factors"):
      keys = sorted((k for k in z.files if k.startswith(f"prior_{name}_")),
                    key=lambda k: int(k.rsplit("_", 1)[1]))
      groups.append(tuple(jnp.asarray(z[k]) for k in keys))
    prior = FactorizedPriorParams(*groups)
    q = np.asarray(z["quantiles"], np.float64)
  return WaLLoCCodec(meta["model_id"], model, prior, q, build_factorized_tables(prior, q))


def available_models() -> list[str]:
  """The ids of the models shipped in the package."""
  return sorted(p.stem for p in MODEL_DIR.glob("*.npz"))


def load_codec(model: str = DEFAULT_MODEL) -> WaLLoCCodec:
  """A packaged model by id (see :func:`available_models`) or a codec ``.npz`` by path."""
  path = Path(model)
  if not path.suffix == ".npz":
    path = MODEL_DIR / f"{model}.npz"
    if not path.exists():
      raise ValueError(f"load_codec: model must be one of {available_models()} or a path to "
                       f"an .npz codec, got {model!r}")
  elif not path.exists():
    raise ValueError(f"load_codec: no codec file at {str(path)!r}")
  return _load(str(path.resolve()))


def _as_uint8_image(fn: str, image) -> np.ndarray:
  img = np.asarray(image) if hasattr(image, "shape") else None
  if img is None or img.dtype != np.uint8:
    raise TypeError(f"{fn}: image must be a uint8 array, got "
                    f"{getattr(img, 'dtype', type(image).__name__)}")
  if img.ndim == 3 and img.shape[-1] == 1:
    img = img[..., 0]
  if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] != 3):
    raise ValueError(f"{fn}: image must be grey [H, W] or RGB [H, W, 3], got shape "
                     f"{list(img.shape)}")
  if img.shape[0] < 1 or img.shape[1] < 1 or max(img.shape[:2]) > 2**16:
    raise ValueError(f"{fn}: image sides must be in [1, 65536], got shape {list(img.shape)}")
  return img


@functools.partial(jax.jit, static_argnums=0)
def _encode(graphdef, state, x):
  model = nnx.merge(graphdef, state)
  return model.encode(x)


@functools.partial(jax.jit, static_argnums=0)
def _decode(graphdef, state, u):
  model = nnx.merge(graphdef, state)
  return model.decode(u)


def encode_latents(codec: WaLLoCCodec, image: np.ndarray) -> tuple[np.ndarray, tuple]:
  """Integer latents ``[h, w, C_z]`` (int32) of a uint8 image, and the test plan."""
  img = _as_uint8_image("encode_latents", image)
  rgb = np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img
  x = jnp.asarray(rgb, jnp.float32)[None] / 255.0 - 0.5
  x, spec = pad_to_multiple(x, multiple=2 ** codec.model.levels)
  graphdef, state = nnx.split(codec.model)
  u = _encode(graphdef, state, x)[0]
  return np.asarray(u).astype(np.int32), spec


def decode_latents(codec: WaLLoCCodec, latents, spec, channels: int) -> np.ndarray:
  """uint8 image from integer latents (inverse of :func:`encode_latents`)."""
  graphdef, state = nnx.split(codec.model)
  x = _decode(graphdef, state, jnp.asarray(latents, jnp.float32)[None])
  x = np.asarray(crop_padding(x, spec)[0])
  img = np.clip(np.round((x + 0.5) * 255.0), 0, 255).astype(np.uint8)
  if channels == 1:
    img = np.clip(np.round(img.astype(np.float64).mean(-1)), 0, 255).astype(np.uint8)
  return img


def compress_image(image, *, model: str | WaLLoCCodec = DEFAULT_MODEL,
                   container: str = "prior") -> bytes:
  """Compresses a uint8 grey ``[H, W]`` or RGB ``[H, W, 3]`` image into the file format above.

  Example:
    >>> import numpy as np
    >>> from bottleneck_jax.compression import compress_image, decompress_image
    >>> img = (np.indices((20, 30)).sum(0) * 4 % 256).astype(np.uint8)
    >>> out = decompress_image(compress_image(img))
    >>> out.shape, out.dtype
    ((20, 30), dtype('uint8'))
  """
  fn = "compress_image"
  img = _as_uint8_image(fn, image)
  if container not in CONTAINERS:
    raise ValueError(f"{fn}: container must be one of {list(CONTAINERS)}, got {container!r}")
  codec = model if isinstance(model, WaLLoCCodec) else load_codec(model)
  u, _ = encode_latents(codec, img)
  if container == "prior":
    med = codec.quantiles[:, 1].astype(np.int64)
    idx = np.broadcast_to(np.arange(u.shape[-1], dtype=np.int32), u.shape)
    payload = encode_symbols(u - med, idx, codec.tables)
  else:
    payload = latents_to_webp(u.astype(np.int8))
  mid = codec.model_id.encode("ascii")
  head = _HEADER.pack(MAGIC, VERSION, CONTAINERS.index(container), len(mid)) + mid
  head += _DIMS.pack(img.shape[0], img.shape[1], 1 if img.ndim == 2 else 3, len(payload))
  crc = zlib.crc32(head + payload)
  return head + struct.pack("<I", crc) + payload


class CompressedHeader(NamedTuple):
  """The parsed header of a compressed file."""
  version: int
  container: str
  model_id: str
  height: int
  width: int
  channels: int
  payload: bytes


def read_header(data: bytes) -> CompressedHeader:
  """Parses and checks a compressed file (magic, version, lengths, checksum)."""
  fn = "read_header"
  if not isinstance(data, (bytes, bytearray)):
    raise TypeError(f"{fn}: data must be bytes, got {type(data).__name__}")
  data = bytes(data)
  if len(data) < _HEADER.size or data[:4] != MAGIC:
    raise ValueError(f"{fn}: not a bottleneck-jax compressed file (bad magic number)")
  _, version, container, id_len = _HEADER.unpack_from(data)
  if version != VERSION:
    raise ValueError(f"{fn}: unsupported file format version {version} (this reader: {VERSION})")
  if container >= len(CONTAINERS):
    raise ValueError(f"{fn}: the file is corrupt (unknown container {container})")
  off = _HEADER.size + id_len
  if len(data) < off + _DIMS.size + 4:
    raise ValueError(f"{fn}: the file is truncated (header)")
  try:
    model_id = data[_HEADER.size:off].decode("ascii")
  except UnicodeDecodeError:
    raise ValueError(f"{fn}: the file is corrupt (model id)") from None
  h, w, c, length = _DIMS.unpack_from(data, off)
  off += _DIMS.size
  (crc,) = struct.unpack_from("<I", data, off)
  payload = data[off + 4:]
  if len(payload) != length:
    raise ValueError(f"{fn}: the file is truncated or has trailing bytes (payload "
                     f"{len(payload)} bytes, header says {length})")
  if zlib.crc32(data[:off] + payload) != crc:
    raise ValueError(f"{fn}: the file is corrupt (checksum mismatch)")
  if c not in (1, 3) or h < 1 or w < 1:
    raise ValueError(f"{fn}: the file is corrupt (image shape {h}x{w}x{c})")
  return CompressedHeader(version, CONTAINERS[container], model_id, h, w, c, payload)


def decompress_image(data: bytes, *, model: str | WaLLoCCodec | None = None) -> np.ndarray:
  """Inverse of :func:`compress_image`: the uint8 image (grey ``[H, W]`` or RGB ``[H, W, 3]``).

  ``model`` defaults to the id recorded in the file.
  """
  hdr = read_header(data)
  if model is None:
    codec = load_codec(hdr.model_id)
  else:
    codec = model if isinstance(model, WaLLoCCodec) else load_codec(model)
  if codec.model_id != hdr.model_id:
    raise ValueError(f"decompress_image: the file was written by model {hdr.model_id!r}, not "
                     f"{codec.model_id!r}")
  levels = codec.model.levels
  m = 2 ** levels
  hp, wp = -(-hdr.height // m) * m, -(-hdr.width // m) * m
  ph, pw = hp - hdr.height, wp - hdr.width
  spec = (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)
  shape = (hp // m, wp // m, codec.model.latent_dim)
  if hdr.container == "prior":
    idx = np.broadcast_to(np.arange(shape[-1], dtype=np.int32), shape)
    u = decode_symbols(hdr.payload, idx, codec.tables) + codec.quantiles[:, 1].astype(np.int64)
  else:
    u = webp_to_latents(hdr.payload, num_channels=shape[-1]).astype(np.int32)
    if u.shape != shape:
      raise ValueError(f"decompress_image: the file is corrupt (latents {list(u.shape)}, "
                       f"expected {list(shape)})")
  bound = 2 ** (codec.model.latent_bits - 1)
  if np.abs(u).max(initial=0) > bound:
    raise ValueError("decompress_image: the file is corrupt (latents outside the model's "
                     "range)")
  return decode_latents(codec, u, spec, hdr.channels)


def psnr(a, b) -> float:
  """PSNR in dB between two uint8 images (peak 255)."""
  mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
  return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)
