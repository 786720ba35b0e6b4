"""The pinned public surface of ``bottleneck_jax.compression``
(merged into ``tests/test_public_api.py``): every public name with its kind. Changing it is
deliberate: update this table in the same commit."""

SURFACE = {
    # wavelet packets
    "WaveletFilters": "class",
    "crop_padding": "function",
    "inverse_wavelet_packet_1d": "function",
    "inverse_wavelet_packet_2d": "function",
    "pad_to_multiple": "function",
    "wavelet_filters": "function",
    "wavelet_packet_1d": "function",
    "wavelet_packet_2d": "function",
    "wavelet_packet_paths": "function",
}
