"""The `compression` family of bottleneck_jax (see `bottleneck_jax.catalog`).

Wavelet packet transforms, learned entropy models with a real range coder, WaLLoC, ARD-VAE,
BottleFit, sparse autoencoders and SAE-based data selection.
"""

from bottleneck_jax.compression._wavelets import (
  WaveletFilters,
  crop_padding,
  inverse_wavelet_packet_1d,
  inverse_wavelet_packet_2d,
  pad_to_multiple,
  wavelet_filters,
  wavelet_packet_1d,
  wavelet_packet_2d,
  wavelet_packet_paths,
)

__all__: list[str] = [
  "WaveletFilters",
  "crop_padding",
  "inverse_wavelet_packet_1d",
  "inverse_wavelet_packet_2d",
  "pad_to_multiple",
  "wavelet_filters",
  "wavelet_packet_1d",
  "wavelet_packet_2d",
  "wavelet_packet_paths",
]
