"""Small photos with GPS EXIF, made with Pillow on the spot."""

from __future__ import annotations

import io
from collections.abc import Mapping

from PIL import Image

GPS_IFD = 0x8825
# GPS IFD tags: 1 latitude ref, 2 latitude (deg, min, sec), 3 longitude ref, 4 longitude.
SYDNEY_GPS = {1: "S", 2: (33.0, 52.0, 4.8), 3: "E", 4: (151.0, 12.0, 36.0)}  # -33.868, 151.21
NEW_YORK_GPS = {1: "N", 2: (40.0, 42.0, 46.0), 3: "W", 4: (74.0, 0.0, 22.0)}  # 40.7128, -74.0061


def gps_photo(
    gps: Mapping[int, object] | None,
    image_format: str = "JPEG",
    size: tuple[int, int] = (16, 16),
) -> bytes:
    """An encoded photo whose EXIF holds `gps` as its GPS IFD (no EXIF GPS when None)."""
    exif = Image.Exif()
    if gps is not None:
        exif[GPS_IFD] = dict(gps)
    out = io.BytesIO()
    Image.new("RGB", size, (90, 140, 200)).save(out, image_format, exif=exif.tobytes())
    return out.getvalue()
