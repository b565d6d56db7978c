"""Perceptual fingerprints of photos: PDQ hashes (Meta's 256-bit perceptual hash) that stay close
when a photo is reposted re-encoded, resized, bannered, bordered, captioned, mirrored or cropped.

One hash is not enough for what reposts do (benchmarks/near_duplicates.py measures each
alteration), so a fingerprint INDEXES a few views of the photo: the photo as decoded; the photo
with near-uniform edge bands trimmed (borders, caption bars, a screenshot's frame move PDQ by
110-130 bits; trimming alone loses banners, so both are kept), after the first band per side and
after all; and its 95 % and 90 % centre crops. A QUERY also tries the dihedral `variants` of the
photo as decoded and as trimmed (mirror images, quarter turns; those of every view found 1-4 %
more mirrored copies through the index for twice its reads) and four corner windows (a copy
cropped 5 % at random lies close to one of them against the original's 90 % centre). Two
fingerprints match when the smallest distance between any of one's `queries()` and any of the
other's `hashes` is at most MATCH_DISTANCE; a view that hashes with low quality (flat) is left
out, and a photo whose plain hash does is never `usable`.

Decoding is bounded: the header is checked before a pixel is decoded (a decompression bomb is
refused), JPEGs decode in draft mode at the smallest 1/2^k scale (at most 1/8) that keeps both
sides >= MIN_SIDE, other formats are reduced alike, EXIF orientation is applied (a copy rotated
by its EXIF tag hashes as displayed) and transparency is composited on white.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pdqhash
from PIL import Image, ImageOps

from geoverdict_service.exceptions import FingerprintError

HASH_BYTES = 32  # PDQ's 256 bits
# Chosen by `python -m benchmarks near-duplicates` (bench/near-duplicates.json; read it before
# changing either). At 54, 300 development photos altered 16 ways are found: 100 % of re-encodes,
# resizes and grayscale copies, 99.7 % of bordered copies, 99 % of mirrors and quarter turns,
# 98 % of captioned ones, 97 % of 5 % crops, 96.7 % of bannered copies, 94 % with overlaid text,
# 91 % of screenshots, 40 % of 10 % crops (through the index with 2 tables, a little less: the
# benchmark measures both). Among all 1,983,036 pairs of the 1,992 usable distinct development
# photos none is within 54 but two shots of one backyard (32); the closest pair of different
# scenes (two sunsets over water) is 70 apart, 16 bits of margin.
MATCH_DISTANCE = 54
# Bumped whenever what a fingerprint holds changes (its views, its variants): fingerprints stored
# by an earlier version (pipeline/provenance.py keeps them by SHA-256) are then computed again.
VERSION = 2
MIN_QUALITY = 50  # 3 of the 1,995 development photos fall below it (PDQ quality 0, 25, 41)

# 50 Mpx admits a 48-megapixel phone photo, below Pillow's own bomb limit (89 Mpx); the same
# limit as the model server's decoder.
MAX_PIXELS = 50_000_000
MAX_ASPECT = 16.0  # long side over short side, as the model server
MIN_SIDE = 128  # draft decoding keeps both sides at least this long: PDQ summarises at 64x64, and
# from fewer than twice that its hash moves by ~30 bits for a one-pixel shift (measured)
MIN_TRIMMED = 32  # lines trimming leaves on each axis at least
_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "HEIF", "AVIF")
_WHITE = (255, 255, 255, 255)

# Trimming: a line (row or column) at an edge is part of a border, caption bar or UI frame when
# at least TRIM_FRACTION of its pixels lie within TRIM_TOLERANCE (per channel, 0-255) of the
# edge's colour; at most MAX_TRIM of each side's length is trimmed in all.
TRIM_TOLERANCE = 12
BAND_START = 0.9  # share of the edge line near its median colour that starts a band
TRIM_FRACTION = 0.35  # share of a line near the band's colour that keeps the band going
# Lines in a row below TRIM_FRACTION a band may go across, as a share of the side (at least
# 3): a caption's line of large text leaves few pixels in the bar's colour for ~5 % of the side.
TRIM_GAP = 0.06
SHARP_EDGE = 2 * TRIM_TOLERANCE  # a band ends where the photo's colours differ more than this
# Bands per side: a screenshot's status bar, header, separator, margin. A photo's own uniform
# edge (a clear sky) is a band too, so the view after the first band per side is kept as well: a
# caption bar above a sky is trimmed there as the original is not.
MAX_BANDS = 4
MAX_TRIM = 0.75
CENTRE_KEEPS = (0.95, 0.9)  # centre crops indexed, each as a share of each side
# Query only: corner windows of a copy, a copy cropped 5 % at random lies within ~1 % of one of
# them when it is matched against the original's 90 % centre crop (0 turns them off).
CORNER_KEEP = 0.9 / 0.95

Pixels = npt.NDArray[np.uint8]  # (H, W, 3) RGB
Wide = npt.NDArray[np.int16]  # the same, signed


@dataclass(frozen=True)
class Fingerprint:
    """A photo's PDQ hashes: what is indexed, and what a query tries besides."""

    # Indexed: the plain hash first, then the trimmed views (after the first band per side, after
    # all) where trimming changed the image, then the 95 % and 90 % centre crops; flat views left
    # out.
    hashes: tuple[bytes, ...]
    quality: int  # PDQ quality (0-100) of the plain hash
    variants: tuple[bytes, ...]  # queried too: the plain hash's 7 dihedral variants, 4 corners

    @property
    def usable(self) -> bool:
        """Flat images (low PDQ quality) hash alike whatever they show: they never match."""
        return self.quality >= MIN_QUALITY

    def queries(self) -> tuple[bytes, ...]:
        """Every hash a lookup compares with the indexed ones."""
        return self.hashes + self.variants

    def to_json(self) -> dict[str, Any]:
        """Hex strings, as stored beside the photo's SHA-256."""
        return {
            "hashes": [h.hex() for h in self.hashes],
            "quality": self.quality,
            "variants": [v.hex() for v in self.variants],
        }

    @classmethod
    def from_json(cls, doc: Any) -> Fingerprint:
        """The fingerprint `to_json` wrote; ValueError on anything else."""
        if not isinstance(doc, dict):
            raise ValueError(f"a fingerprint is a JSON object, got {type(doc).__name__}")
        quality = doc.get("quality")
        if not isinstance(quality, int) or isinstance(quality, bool) or not 0 <= quality <= 100:
            raise ValueError(f"fingerprint quality must be an integer 0-100, got {quality!r}")
        hashes = _hashes(doc.get("hashes"), "hashes")
        if not hashes:
            raise ValueError("a fingerprint has at least one hash")
        return cls(hashes, quality, _hashes(doc.get("variants"), "variants"))


def _hashes(values: Any, name: str) -> tuple[bytes, ...]:
    if not isinstance(values, list):
        raise ValueError(f"fingerprint {name} must be a list of hex strings")
    out = []
    for value in values:
        if not isinstance(value, str) or len(value) != 2 * HASH_BYTES:
            raise ValueError(f"fingerprint {name}: {value!r} is not {HASH_BYTES} bytes of hex")
        out.append(bytes.fromhex(value))  # ValueError on a non-hex character
    return tuple(out)


def distance(a: bytes, b: bytes) -> int:
    """Hamming distance of two 32-byte hashes (0-256)."""
    if len(a) != HASH_BYTES or len(b) != HASH_BYTES:
        raise ValueError(f"PDQ hashes are {HASH_BYTES} bytes, got {len(a)} and {len(b)}")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def fingerprint(image: bytes) -> Fingerprint:
    """The fingerprint of encoded image bytes; FingerprintError where Pillow cannot decode them
    within the limits."""
    return fingerprint_pixels(decode(image))


def fingerprint_pixels(pixels: Pixels) -> Fingerprint:
    """The fingerprint of upright RGB pixels (what `decode` returns)."""
    views = [pixels]
    steps = trim_steps(pixels, MAX_BANDS)
    for trimmed in steps[:1] + steps[-1:]:  # after the first band per side, and after all
        if all(trimmed.shape != view.shape for view in views):
            views.append(trimmed)
    # Mirror images and quarter turns are queried of the photo as decoded and, where trimming
    # took something, of the photo as trimmed (a mirrored copy with a border or a caption).
    turned = {0, len(views) - 1}
    views += [centre(pixels, keep) for keep in CENTRE_KEEPS]
    hashes: list[bytes] = []
    variants: list[bytes] = []
    quality = 0
    for k, view in enumerate(np.ascontiguousarray(v) for v in views):
        if k in turned:
            dihedral, view_quality = pdqhash.compute_dihedral(view)
            packed = [_packed(bits) for bits in dihedral]  # the first: the view as given
        else:
            bits, view_quality = pdqhash.compute(view)
            packed = [_packed(bits)]
        if k == 0:
            quality = int(view_quality)
            if quality < MIN_QUALITY:  # never matched: no other view is worth hashing
                return Fingerprint(tuple(packed[:1]), quality, ())
        elif view_quality < MIN_QUALITY:
            continue  # a trimmed or cropped view that is flat would match flat images
        hashes.append(packed[0])
        variants += packed[1:]
    for window in corners(pixels, CORNER_KEEP):
        bits, window_quality = pdqhash.compute(np.ascontiguousarray(window))
        if window_quality >= MIN_QUALITY:
            variants.append(_packed(bits))
    return Fingerprint(tuple(hashes), quality, tuple(variants))


def _packed(bits: npt.NDArray[np.integer[Any]]) -> bytes:
    """pdqhash's 256 0/1 values as 32 bytes, the first bit the most significant."""
    return np.packbits(bits.astype(np.uint8)).tobytes()


def decode(image: bytes) -> Pixels:
    """Upright RGB pixels of encoded bytes, reduced (JPEG draft, else integer reduction) so the
    short side stays >= MIN_SIDE; FingerprintError on anything Pillow cannot decode, a
    decompression bomb included."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(image), formats=_FORMATS)
            width, height = opened.size
            if width < 1 or height < 1 or width * height > MAX_PIXELS:
                raise FingerprintError(f"{width}x{height} pixels, limit {MAX_PIXELS}")
            if max(width, height) > MAX_ASPECT * min(width, height):
                raise FingerprintError(f"{width}x{height} pixels: aspect over {MAX_ASPECT:g}:1")
            if opened.format == "JPEG":  # the largest 1/2^k (up to 1/8) keeping sides >= MIN_SIDE
                opened.draft("RGB", (MIN_SIDE, MIN_SIDE))
            rgb = _to_rgb(ImageOps.exif_transpose(opened))  # reads the EXIF: before reduce()
            factor = min(8, min(width, height) // MIN_SIDE)
            if opened.format != "JPEG" and factor > 1:
                rgb = rgb.reduce(factor)
            return np.asarray(rgb, dtype=np.uint8)
    except FingerprintError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise FingerprintError(f"a decompression bomb: {exc}") from exc
    except Exception as exc:  # Pillow raises many types on hostile bytes; all mean the same here
        raise FingerprintError(
            f"not an image Pillow can decode: {type(exc).__name__}: {exc}"
        ) from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB of any mode, transparency composited on white (as the model server sees it)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", image.size, _WHITE), rgba).convert("RGB")
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if values.max(initial=0) > 255 else 255.0
        gray = np.clip(np.rint(values * (255.0 / peak)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    return image.convert("RGB")


def trim(pixels: Pixels, bands: int = MAX_BANDS) -> Pixels:
    """`pixels` without near-uniform bands at their edges (borders, caption bars, a screenshot's
    frame): each side is trimmed band by band (at most `bands`), a band starting where the
    edge's line is uniform and going on while lines stay mostly in its colour, until MAX_TRIM of
    the side is gone."""
    steps = trim_steps(pixels, bands)
    return steps[-1] if steps else pixels


def trim_steps(pixels: Pixels, bands: int = MAX_BANDS) -> list[Pixels]:
    """What trim leaves after each round of bands that trimmed something (none: nothing to
    trim): one pass gives the view after the first band per side and after all."""
    steps: list[Pixels] = []
    height, width = pixels.shape[:2]
    box = [0, height, 0, width]  # top, bottom, left, right
    wide = pixels.astype(np.int16)  # signed: colour differences
    for band in range(bands):
        changed = False
        for side in range(4):
            length = height if side < 2 else width
            axis = 0 if side < 2 else 2
            kept = box[axis + 1] - box[axis]
            limit = min(kept - MIN_TRIMMED, int(MAX_TRIM * length) - (length - kept))
            if limit <= 0:
                continue
            lines = _lines_from_edge(wide[box[0] : box[1], box[2] : box[3]], side)[:limit]
            depth = _band_depth(lines, max(3, round(TRIM_GAP * length)), sharp=band > 0)
            if depth:
                box[side] += -depth if side % 2 else depth
                changed = True
        if not changed:
            break
        steps.append(pixels[box[0] : box[1], box[2] : box[3]])
    return steps


def _lines_from_edge(view: Wide, side: int) -> Wide:
    """(lines, length, 3): rows from the top (0) or bottom (1), columns from the left (2) or
    right (3), the edge's line first."""
    lines = view if side < 2 else view.transpose(1, 0, 2)
    return lines[::-1] if side % 2 else lines


def _band_depth(lines: Wide, gap: int, sharp: bool) -> int:
    """How many lines from the edge belong to a band in the edge line's colour: none unless the
    edge line is uniform (the cheap check most photos stop at). The band goes on while lines
    keep TRIM_FRACTION of their pixels near its colour, across runs of at most `gap` lines that
    do not (a line of large text on a caption bar); it ends after its last uniform line (a
    caption bar's margin under the text: a white bar above a snowy photo ends there, not in the
    snow). With `sharp`, a band whose colour drifts on into the image (a sky's gradient) is
    none."""
    colour = np.median(lines[0], axis=0).astype(np.int16)  # (3,)
    if (np.abs(lines[0] - colour).max(axis=1) <= TRIM_TOLERANCE).mean() < BAND_START:
        return 0
    share = (np.abs(lines - colour).max(axis=2) <= TRIM_TOLERANCE).mean(axis=1)  # (lines,)
    outside = share < TRIM_FRACTION
    run = np.convolve(outside, np.ones(gap + 1, dtype=np.int64), "valid") > gap
    end = int(run.argmax()) if run.any() else len(share)  # where the band surely ended
    depth = int(np.flatnonzero(share[:end] >= BAND_START)[-1]) + 1  # share[0]: checked above
    beyond = lines[depth + 1 : depth + 2]  # past one line blending the band into the photo
    if sharp and len(beyond) and np.median(np.abs(beyond[0] - colour).max(axis=1)) <= SHARP_EDGE:
        return 0  # the colour drifts (a sky's gradient): the photo's own edge, not a band
    return depth


def corners(pixels: Pixels, keep: float) -> list[Pixels]:
    """The four corner windows `keep` of each side long (none where `keep` is 0)."""
    if not keep:
        return []
    height, width = pixels.shape[:2]
    dy, dx = round(height * (1 - keep)), round(width * (1 - keep))
    return [pixels[y : y + height - dy, x : x + width - dx] for y in (0, dy) for x in (0, dx)]


def centre(pixels: Pixels, keep: float) -> Pixels:
    """The middle `keep` of each side."""
    height, width = pixels.shape[:2]
    dy, dx = round(height * (1 - keep) / 2), round(width * (1 - keep) / 2)
    return pixels[dy : height - dy, dx : width - dx]
