"""Where an image carries Content Credentials, found by walking its container (JPEG markers,
PNG chunks, RIFF chunks, ISO BMFF boxes) without parsing the manifest: microseconds, so the
C2PA library is only called for the few images that carry one.

An embedded manifest store is a JUMBF box labelled `c2pa`: in JPEG APP11 segments, a PNG
`caBX` chunk, a WebP `C2PA` chunk, or a top-level BMFF `uuid` box (HEIC, AVIF). A manifest
kept elsewhere is referenced by the XMP property `dcterms:provenance` (never fetched here)."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

# The UUID of a top-level BMFF box that holds the C2PA manifest store (C2PA spec, ISO BMFF).
C2PA_BMFF_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")
# The UUID of a top-level BMFF box that holds XMP.
XMP_BMFF_UUID = bytes.fromhex("be7acfcb97a942e89c71999491e3afac")
JPEG_XMP_PREFIX = b"http://ns.adobe.com/xap/1.0/\x00"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The JUMBF description box of a manifest store: type UUID 63327061-0011-0010-8000-00AA00389B71
# ("c2pa" then the ISO suffix), toggles, label "c2pa".
_C2PA_JUMD_TYPE = b"c2pa\x00\x11\x00\x10\x80\x00\x00\xaa\x00\x38\x9b\x71"
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
# Attribute (dcterms:provenance="...") or element (<dcterms:provenance>...</...>) form.
_PROVENANCE = re.compile(rb"dcterms:provenance(?:\s*=\s*[\"']([^\"'<>]{1,2048})|>([^<]{1,2048})<)")
_MAX_URL_CHARS = 200  # the URL is the sender's text: reported shortened


@dataclass(frozen=True)
class ManifestScan:
    """What the container says about Content Credentials, before any validation."""

    mime: str | None  # sniffed from the magic bytes; None: not a format this scan reads
    manifest_bytes: int  # size of the embedded manifest store (0: none)
    remote_url: str | None  # XMP dcterms:provenance: a manifest stored elsewhere

    @property
    def found(self) -> bool:
        """True when the image embeds or references a manifest."""
        return self.manifest_bytes > 0 or self.remote_url is not None


NOTHING = ManifestScan(None, 0, None)


def sniff_mime(image: bytes) -> str | None:
    """The image's media type from its magic bytes: JPEG, PNG, WebP, HEIC or AVIF."""
    if image[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if image[:8] == PNG_SIGNATURE:
        return "image/png"
    if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        return "image/webp"
    if image[4:8] == b"ftyp":
        brands = _ftyp_brands(image)
        if brands & _AVIF_BRANDS:
            return "image/avif"
        if brands & _HEIF_BRANDS:
            return "image/heic"
    return None


def scan(image: bytes) -> ManifestScan:
    """Finds an embedded manifest store (and its size) or a remote reference; never raises."""
    mime = sniff_mime(image)
    walk = _WALKERS.get(mime) if mime else None
    if walk is None:
        return NOTHING
    try:
        manifest_bytes, xmp = walk(image)
    except (struct.error, IndexError, ValueError):  # a truncated container: what was found counts
        return ManifestScan(mime, 0, None)
    return ManifestScan(mime, manifest_bytes, _remote_url(xmp))


def has_manifest(image: bytes) -> bool:
    """True when the image embeds a C2PA manifest store or references a remote one."""
    return scan(image).found


def _ftyp_brands(image: bytes) -> set[bytes]:
    size = struct.unpack(">I", image[:4])[0]
    body = image[8 : min(size, 256, len(image))]
    # major brand, minor version (4 bytes), then compatible brands
    return {body[0:4]} | {body[i : i + 4] for i in range(8, len(body) - 3, 4)}


def _is_c2pa_jumbf(box: bytes) -> bool:
    """A JUMBF superbox (`jumb`) whose description box (`jumd`) has the C2PA type."""
    start = 16 if box[:4] == b"\x00\x00\x00\x01" else 8  # LBox 1: an 8-byte XLBox follows
    description = box[start : start + 24]
    return (
        box[4:8] == b"jumb" and description[4:8] == b"jumd" and description[8:] == _C2PA_JUMD_TYPE
    )


def _jpeg(image: bytes) -> tuple[int, list[bytes]]:
    """Sums the APP11 JUMBF segments of the C2PA box; collects the XMP APP1 segments."""
    c2pa_instances: set[bytes] = set()
    sizes: dict[bytes, int] = {}
    xmp: list[bytes] = []
    i, end = 2, len(image)
    while i + 4 <= end:
        if image[i] != 0xFF:
            break  # not a marker: the header is damaged, stop where it is readable
        marker = image[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: no more metadata
            break
        length = struct.unpack(">H", image[i + 2 : i + 4])[0]
        segment = image[i + 4 : i + 2 + length]
        if marker == 0xEB and segment[:2] == b"JP":
            # CI "JP", En (box instance, 2 bytes), Z (sequence, 4 bytes), then the JUMBF box:
            # the first packet starts the superbox, continuations repeat its LBox/TBox.
            instance = segment[2:4]
            if segment[4:8] == b"\x00\x00\x00\x01" and _is_c2pa_jumbf(segment[8:]):
                c2pa_instances.add(instance)
            sizes[instance] = sizes.get(instance, 0) + len(segment)
        elif marker == 0xE1 and segment.startswith(JPEG_XMP_PREFIX):
            xmp.append(segment)
        i += 2 + length
    return sum(sizes[k] for k in c2pa_instances), xmp


def _png(image: bytes) -> tuple[int, list[bytes]]:
    manifest_bytes = 0
    xmp: list[bytes] = []
    i, end = 8, len(image)
    while i + 8 <= end:
        length, kind = struct.unpack(">I4s", image[i : i + 8])
        if kind == b"caBX":
            manifest_bytes += length
        elif kind == b"iTXt" and image[i + 8 : i + 26] == b"XML:com.adobe.xmp\x00":
            xmp.append(image[i + 8 : i + 8 + length])
        elif kind == b"IEND":
            break
        i += 12 + length
    return manifest_bytes, xmp


def _webp(image: bytes) -> tuple[int, list[bytes]]:
    manifest_bytes = 0
    xmp: list[bytes] = []
    i, end = 12, min(len(image), 8 + struct.unpack("<I", image[4:8])[0])
    while i + 8 <= end:
        kind, length = struct.unpack("<4sI", image[i : i + 8])
        if kind == b"C2PA":
            manifest_bytes += length
        elif kind == b"XMP ":
            xmp.append(image[i + 8 : i + 8 + length])
        i += 8 + length + (length & 1)  # chunks are padded to an even size
    return manifest_bytes, xmp


def _bmff(image: bytes) -> tuple[int, list[bytes]]:
    """Top-level boxes only: the C2PA uuid box lives there (XMP inside `meta` is not read)."""
    manifest_bytes = 0
    xmp: list[bytes] = []
    i, end = 0, len(image)
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", image[i : i + 8])
        header = 8
        if size == 1:  # 64-bit size follows the type
            size = struct.unpack(">Q", image[i + 8 : i + 16])[0]
            header = 16
        elif size == 0:  # the box runs to the end of the file
            size = end - i
        if size < header:
            break
        if kind == b"uuid":
            usertype = image[i + header : i + header + 16]
            if usertype == C2PA_BMFF_UUID:
                manifest_bytes += size
            elif usertype == XMP_BMFF_UUID:
                xmp.append(image[i + header + 16 : i + size])
        i += size
    return manifest_bytes, xmp


_WALKERS = {
    "image/jpeg": _jpeg,
    "image/png": _png,
    "image/webp": _webp,
    "image/heic": _bmff,
    "image/avif": _bmff,
}


def _remote_url(xmp: list[bytes]) -> str | None:
    for packet in xmp:
        found = _PROVENANCE.search(packet)
        if found:
            url = (found.group(1) or found.group(2)).decode("utf-8", "replace").strip()
            return url[:_MAX_URL_CHARS] or None
    return None
