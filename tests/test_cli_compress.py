"""``bottleneck-jax compress`` / ``decompress``: the packaged WaLLoC codec on real images."""

import re

import numpy as np
import pytest
from PIL import Image

from bottleneck_jax.cli import main

skd = pytest.importorskip("skimage.data")


def _psnr(a, b):
  mse = np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)
  return 10 * np.log10(255**2 / mse)


def test_png_round_trip_file_size_matches_reported_bpp(tmp_path, capsys):
  img = skd.astronaut()[100:201, 150:227]           # odd size: 101 x 77 RGB
  src, comp, dst = tmp_path / "a.png", tmp_path / "a.bjx", tmp_path / "b.png"
  Image.fromarray(img).save(src)
  assert main(["compress", str(src), str(comp)]) == 0
  line = capsys.readouterr().out
  m = re.search(r"(\d+) bytes, ([0-9.]+) bpp, PSNR ([0-9.]+) dB", line)
  assert m, line
  size = comp.stat().st_size
  assert int(m.group(1)) == size
  assert float(m.group(2)) == pytest.approx(8 * size / (101 * 77), abs=1e-4)
  assert main(["decompress", str(comp), str(dst)]) == 0
  out = np.asarray(Image.open(dst))
  assert out.shape == img.shape
  assert _psnr(out, img) == pytest.approx(float(m.group(3)), abs=0.01)
  assert _psnr(out, img) > 22.0


def test_grey_jpeg_and_webp_container(tmp_path):
  img = skd.camera()[:64, :80]
  src, comp, dst = tmp_path / "c.jpg", tmp_path / "c.bjx", tmp_path / "d.png"
  Image.fromarray(img).save(src, quality=95)
  assert main(["compress", str(src), str(comp), "--container", "webp"]) == 0
  assert main(["decompress", str(comp), str(dst)]) == 0
  assert np.asarray(Image.open(dst)).shape == (64, 80)


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
  bad = tmp_path / "x.png"
  bad.write_bytes(b"not an image")
  assert main(["compress", str(bad), str(tmp_path / "o.bjx")]) == 2
  assert "cannot read" in capsys.readouterr().err
  img = np.zeros((16, 16, 3), np.uint8)
  Image.fromarray(img).save(tmp_path / "z.png")
  comp = tmp_path / "z.bjx"
  assert main(["compress", str(tmp_path / "z.png"), str(comp)]) == 0
  data = bytearray(comp.read_bytes())
  data[-1] ^= 0x55
  comp.write_bytes(bytes(data))
  capsys.readouterr()
  assert main(["decompress", str(comp), str(tmp_path / "y.png")]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "checksum mismatch" in err[0]
