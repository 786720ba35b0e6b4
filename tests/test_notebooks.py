"""Executes the notebooks in colab/ in their quick mode (CI=1), as CI does."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).parent.parent / "colab").glob("*.ipynb"))

# Strings each notebook must print (from its own code cells), so that a notebook whose cells
# run but whose results went missing still fails. Every notebook in colab/ needs an entry.
MARKERS = {
    "01_quickstart.ipynb": ["rows:", "bits per example"],
    "02_efficiency_kernels.ipynb": [
        "xla vs reference: max abs difference",
        "pallas vs reference: max abs difference",
        "(y, dh, dw)",
        "reduction:",
        "implementation=None tries, in order:",
        "forced loss equals the reference loss: True",
        "packing efficiency:",
    ],
    "03_information_plane.ipynb": [
        "KSG vs truth at N=",
        "InfoNCE",
        "rectangle images: truth 1.000",
        "information plane:",
        "I(T;Y) last layer:",
    ],
    "04_quantizers.ipynb": [
        "FSQ indices -> codes round trip exact: True",
        "LFQ indices -> codes round trip exact: True",
        "VQ picks the nearest code: True",
        "codes used",
        "reconstructions of",
        "decoding from FSQ token ids reproduces the reconstruction: True",
        '"expectation_held"',
    ],
    "07_sparse_attention.ipynb": [
        "Re-ttention error at drift 0.05 / top-k error:",
        "block-sparse vs masked dense attention: max abs difference",
        "Qwen3-0.6B",
        "kinetics-cost expectation_held: True",
        "WINNER - SIREN:",
        "fit and spectrum plotted",
    ],
    "05_codec.ipynb": [
        "bits per pixel, PSNR",
        "PSNR at",
        "resizing at equal dimensionality (16x): PSNR",
        "energy in the low-pass band",
        "latents:",
    ],
    "08_preference_and_rl.ipynb": [
        "DPO optimum vs closed form: max abs difference",
        "mass on the poorly covered arm 0:",
        "online final regret",
        "matches NumPy: True",
        "gradient check, -A_i / (B n_i) on valid tokens: True",
        "planning tokens:",
        "HICRA - GRPO on planning tokens:",
        "semantic entropy of this batch:",
    ],
    "06_concepts.ipynb": [
        "test concept accuracy: mean",
        "from true concepts",
        "after intervening on",
        "intervention curve",
        "max |mean of concept map x |v_k| - concept logit|:",
        "relevance mass",
        "pointing game",
        "integrated gradients completeness:",
    ],
}


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
  assert path.name in MARKERS, f"add the expected output markers of {path.name} to MARKERS"
  monkeypatch.setenv("CI", "1")
  monkeypatch.setenv("JAX_NUM_CPU_DEVICES", "1")
  nb = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": str(tmp_path)}})
  client.execute()
  # Every code cell ran without error and the outputs include the notebook's markers.
  text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
  for marker in MARKERS[path.name]:
    assert marker in text, f"{path.name}: output lacks {marker!r}"
