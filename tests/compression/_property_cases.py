"""Property-test rows (``tests/test_properties.py``) of the compression family."""

from bottleneck_jax import compression as Comp
from tests._cases import Case, floats

_f = floats

CASES = [
    # wavelet packets
    Case("wavelet_packet_2d", Comp.wavelet_packet_2d,
         lambda r: {"x": _f(r, 2, 4, 4, 1), "wavelet": "haar", "levels": 1}, ("x",)),
    Case("inverse_wavelet_packet_2d", Comp.inverse_wavelet_packet_2d,
         lambda r: {"x": _f(r, 2, 2, 4), "wavelet": "haar", "levels": 1}, ("x",)),
    Case("wavelet_packet_1d", Comp.wavelet_packet_1d,
         lambda r: {"x": _f(r, 4, 2), "wavelet": "db2", "levels": 1}, ("x",)),
    Case("inverse_wavelet_packet_1d", Comp.inverse_wavelet_packet_1d,
         lambda r: {"x": _f(r, 2, 2), "wavelet": "db2", "levels": 1}, ("x",)),
    Case("wavelet_filters", Comp.wavelet_filters, lambda r: {"wavelet": "db2"}, ("wavelet",)),
    Case("wavelet_packet_paths", Comp.wavelet_packet_paths,
         lambda r: {"levels": 2, "dims": 2}, ("levels",)),
    Case("pad_to_multiple", Comp.pad_to_multiple,
         lambda r: {"x": _f(r, 3, 3, 1), "multiple": 4}, ("x",)),
    Case("crop_padding", Comp.crop_padding,
         lambda r: {"x": _f(r, 4, 4, 1), "spec": (1, 0, 0, 1)}, ("x",)),
]
