"""GPS position from a photo's EXIF: shared by data preparation, the handler and `publish`."""

from __future__ import annotations

import io
import math
from pathlib import Path

from PIL import Image, UnidentifiedImageError

_GPS_IFD = 0x8825
_LAT_REF, _LAT, _LON_REF, _LON = 1, 2, 3, 4


def _degrees(value: object, ref: object) -> float:
    """Degrees from EXIF (degrees, minutes, seconds) rationals and a N/S/E/W reference."""
    if not isinstance(value, tuple | list) or len(value) != 3:
        raise ValueError(f"GPS coordinate is not (deg, min, sec): {value!r}")
    deg, minutes, seconds = (float(part) for part in value)
    result = deg + minutes / 60.0 + seconds / 3600.0
    ref_text = ref.decode("ascii", "replace") if isinstance(ref, bytes) else str(ref)
    return -result if ref_text.strip("\x00 ").upper() in ("S", "W") else result


def gps_from_exif(exif: Image.Exif, *, raw: bool = False) -> tuple[float, float] | None:
    """(lat, lon) from an opened image's EXIF; None when there is no GPS position.

    By default a malformed or impossible position is also None. With `raw`, malformed fields
    raise ValueError and positions come back as read, for callers that count each case.
    """
    gps = exif.get_ifd(_GPS_IFD)
    if _LAT not in gps or _LON not in gps:
        return None
    try:
        lat = _degrees(gps[_LAT], gps.get(_LAT_REF, "N"))
        lon = _degrees(gps[_LON], gps.get(_LON_REF, "E"))
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        if raw:
            raise ValueError(f"malformed GPS EXIF: {exc}") from exc
        return None
    if raw:
        return lat, lon
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lat, lon


def gps_position(source: Path | bytes, *, raw: bool = False) -> tuple[float, float] | None:
    """(lat, lon) of a photo file or its bytes (see gps_from_exif); ValueError: not an image."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            return gps_from_exif(image.getexif(), raw=raw)
    except UnidentifiedImageError as exc:
        raise ValueError("not an image") from exc
