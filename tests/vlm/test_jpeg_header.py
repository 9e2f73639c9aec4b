"""The marker scan sends exactly the plain, complete, baseline JPEGs to the device decoder."""
from tests.vlm.jpeg_files import files
from vlm.jpeg_header import read_jpeg_header


def test_only_complete_baseline_jpegs_with_one_or_three_components_go_to_the_device():
    routed = {name: (header is not None and header.device_decodable)
              for name, header in ((name, read_jpeg_header(data)) for name, data in files().items())}
    assert routed == {"baseline": True, "baseline_trailing_zeros": True, "grey": True, "progressive": False,
                      "cmyk": False, "truncated": False, "png": False, "text": False}


def test_the_header_reads_size_components_and_frame_type():
    data = files(height=30, width=50)
    baseline, progressive, cmyk = (read_jpeg_header(data[name]) for name in ("baseline", "progressive", "cmyk"))
    assert (baseline.frame, baseline.height, baseline.width, baseline.components) == (0xC0, 30, 50, 3)
    assert progressive.frame == 0xC2 and progressive.complete
    assert cmyk.components == 4 and cmyk.adobe  # PIL writes CMYK with an Adobe segment
    assert not read_jpeg_header(data["truncated"]).complete
    assert read_jpeg_header(data["png"]) is None and read_jpeg_header(b"\xff\xd8") is None
