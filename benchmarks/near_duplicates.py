"""How well the perceptual fingerprint finds reposts, and how often it confuses distinct photos:
the measurements MATCH_DISTANCE and MIN_QUALITY (provenance/fingerprints.py) were chosen from.

Recall: each of the first `recall_photos` development photos is altered the ways reposts alter
photos (ALTERATIONS), and a copy is found when the smallest Hamming distance between any of the
copy's hashes or dihedral variants and any hash of the original's fingerprint is at most the
threshold: what the near-duplicate index answers when the original was indexed first.

False matches: every pair of distinct development photos (1,995 photos, 1,989,015 pairs), in
both directions (either may be posted first), with the same rule; a pair within the threshold
is a false match unless the two are the same scene shot twice, which the report names by file
for a person to judge. Cost: CPU-ms per fingerprint of a 1080-px JPEG (quality 85), cold.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from benchmarks import index_recall
from benchmarks.exceptions import BenchError
from geoverdict_common.paths import SHARED_DATA_ENV, runs_dir, shared_data_dir
from geoverdict_service.exceptions import FingerprintError
from geoverdict_service.provenance import fingerprints
from geoverdict_service.provenance.fingerprints import Fingerprint

log = logging.getLogger(__name__)

Words = npt.NDArray[np.uint64]  # (N, K, 4): K hashes per photo, 256 bits as 4 words
Alteration = Callable[[Image.Image, np.random.Generator], bytes]

RECALL_PHOTOS = 300
TIMING_PHOTOS = 50
TIMING_SIDE = 1080  # short side of the JPEGs the cost is measured on
THRESHOLDS = (31, 40, 45, 50, 54, 60, 70)  # recall and false matches are reported at each
CLOSEST_PAIRS = 10  # the closest distinct pairs, named by file
# Pairs of development photos a person looked at and judged the same scene shot twice: a match
# between them is no false match (each is reported by name all the same).
SAME_SCENE = {
    frozenset(
        {"196550010_3b92326b80_64_18684820@N00.jpg", "196562276_9b2f885f6b_65_18684820@N00.jpg"}
    ): "one photographer's backyard shot twice from a step apart (plain PDQ distance 44)",
}


def _jpeg(image: Image.Image, quality: int = 85) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _font(size: float) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, round(size)))


def _resized(image: Image.Image, scale: float) -> bytes:
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return _jpeg(image.resize(size, Image.Resampling.LANCZOS))


def _banner(image: Image.Image, rng: np.random.Generator) -> bytes:
    """A news banner drawn over the bottom 15 %."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    top = round(image.height * 0.85)
    draw.rectangle((0, top, image.width, image.height), fill=(190, 20, 30))
    band = image.height - top
    draw.text((band // 3, top + band // 5), "BREAKING NEWS", fill="white", font=_font(band * 0.55))
    return _jpeg(out)


def _crop(share: float) -> Alteration:
    """`share` of each side cut away, split between its two ends at random."""

    def crop(image: Image.Image, rng: np.random.Generator) -> bytes:
        cut_x, cut_y = image.width * share, image.height * share
        left, top = rng.uniform(0, cut_x), rng.uniform(0, cut_y)
        box = (round(left), round(top), round(image.width - (cut_x - left)))
        return _jpeg(image.crop((*box, round(image.height - (cut_y - top)))))

    return crop


def _border(colour: tuple[int, int, int]) -> Alteration:
    """A uniform border 6 % of the short side wide."""

    def border(image: Image.Image, rng: np.random.Generator) -> bytes:
        width = round(min(image.size) * 0.06)
        out = Image.new("RGB", (image.width + 2 * width, image.height + 2 * width), colour)
        out.paste(image, (width, width))
        return _jpeg(out)

    return border


def _mirror_border(image: Image.Image, rng: np.random.Generator) -> bytes:
    """A mirror image inside a white border (as a meme template frames it)."""
    return _border((255, 255, 255))(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), rng)


def _caption(image: Image.Image, rng: np.random.Generator) -> bytes:
    """A white bar a quarter as high as the photo added above it, two lines of black text."""
    bar = round(image.height * 0.25)
    out = Image.new("RGB", (image.width, image.height + bar), "white")
    out.paste(image, (0, bar))
    draw = ImageDraw.Draw(out)
    font = _font(bar * 0.3)
    draw.text((bar // 4, bar // 8), "when the flood finally", fill="black", font=font)
    draw.text((bar // 4, bar // 8 + bar * 0.4), "reaches downtown", fill="black", font=font)
    return _jpeg(out)


def _screenshot(image: Image.Image, rng: np.random.Generator) -> bytes:
    """The photo inside a phone app's screen, saved as PNG as screenshots are: a black status
    bar, a white header with the account's name, the photo at full width, then action icons
    and a caption on white."""
    width = image.width
    unit = width / 40  # ~10 px on a 400-px-wide screen
    status, header = round(2.4 * unit), round(5 * unit)
    below = round(12 * unit)
    height = status + header + image.height + below
    out = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, 0, width, status), fill="black")
    draw.text((unit, 0.3 * unit), "9:41", fill="white", font=_font(1.6 * unit))
    draw.rectangle((width - 5 * unit, 0.6 * unit, width - unit, 1.6 * unit), fill="white")
    draw.ellipse((unit, status + unit, 4 * unit, status + 4 * unit), fill=(120, 120, 130))
    draw.text(
        (5 * unit, status + 1.4 * unit), "city_news_daily", fill="black", font=_font(2 * unit)
    )
    draw.line((0, status + header - 1, width, status + header - 1), fill=(219, 219, 219))
    out.paste(image, (0, status + header))
    y = status + header + image.height + unit
    for k in range(4):
        x = unit + k * 4 * unit
        draw.ellipse((x, y, x + 2.4 * unit, y + 2.4 * unit), outline="black", width=2)
    font = _font(1.5 * unit)
    draw.text((unit, y + 4 * unit), "1,204 likes", fill="black", font=font)
    draw.text(
        (unit, y + 6.5 * unit), "city_news_daily this is happening now", fill="black", font=font
    )
    return _png(out)


def _overlaid_text(image: Image.Image, rng: np.random.Generator) -> bytes:
    """Large white text with a black outline across the middle (a meme's caption)."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    size = image.height * 0.13
    y = image.height * 0.45
    draw.text(
        (image.width * 0.06, y),
        "NOBODY IS TALKING ABOUT THIS",
        fill="white",
        font=_font(size),
        stroke_width=max(1, round(size / 12)),
        stroke_fill="black",
    )
    return _jpeg(out)


# name -> (how the copy is made, the recall the issue asks for, in %; None: reported only)
ALTERATIONS: dict[str, tuple[Alteration, float | None]] = {
    "jpeg_q50": (lambda im, rng: _jpeg(im, 50), 95),
    "jpeg_q85": (lambda im, rng: _jpeg(im, 85), 95),
    "png": (lambda im, rng: _png(im), 95),
    "grayscale": (lambda im, rng: _jpeg(im.convert("L")), 95),
    "half_size": (lambda im, rng: _resized(im, 0.5), 95),
    "quarter_size": (lambda im, rng: _resized(im, 0.25), 95),
    "banner_15pct": (_banner, 95),
    "crop_5pct": (_crop(0.05), 80),
    "crop_10pct": (_crop(0.10), None),
    "border_white": (_border((255, 255, 255)), 95),
    "border_black": (_border((0, 0, 0)), 95),
    "caption_bar": (_caption, 95),
    "mirror": (lambda im, rng: _jpeg(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)), 95),
    "screenshot": (_screenshot, None),
    "overlaid_text": (_overlaid_text, None),
    "rotate_90": (lambda im, rng: _jpeg(im.transpose(Image.Transpose.ROTATE_90)), None),
    "mirror_border": (_mirror_border, None),
}


@dataclass(frozen=True)
class NearDuplicateOptions:
    """What `python -m benchmarks near-duplicates` measures, and where it writes."""

    images: Path | None = None  # default: the shared im2gps3k-dev images
    limit: int = 0  # only the first N photos (a smoke run); 0: all
    recall_photos: int = RECALL_PHOTOS
    timing_photos: int = TIMING_PHOTOS
    seed: int = 0
    index_tables: tuple[int, ...] = index_recall.TABLES  # measured through the index, each
    out: Path | None = None  # default: bench/ (a --limit run: .run/near-duplicates/)

    def output_dir(self) -> Path:
        """bench/, or .run/near-duplicates/ for a --limit run (its numbers are no result)."""
        if self.out is not None:
            return self.out
        return runs_dir() / "near-duplicates" if self.limit else Path("bench")


def dev_photos(options: NearDuplicateOptions) -> list[Path]:
    """The development photos, sorted by name, the first `limit` where one is given."""
    images = options.images or shared_data_dir() / "im2gps3k-dev" / "images"
    paths = sorted(images.glob("*.jpg")) if images.is_dir() else []
    if not paths:
        raise BenchError(
            f"no development photos at {images}: set {SHARED_DATA_ENV} (the reference data "
            "folder) or pass --images"
        )
    return paths[: options.limit] if options.limit else paths


def words(prints: Sequence[Sequence[bytes]]) -> tuple[Words, npt.NDArray[np.bool_]]:
    """(N, K, 4) words of each photo's hashes, K the most any has, and (N, K) which are real."""
    most = max((len(p) for p in prints), default=1)
    out = np.zeros((len(prints), most, 4), dtype=np.uint64)
    mask = np.zeros((len(prints), most), dtype=bool)
    for i, hashes in enumerate(prints):
        for k, value in enumerate(hashes):
            out[i, k] = np.frombuffer(value, dtype=">u8")
            mask[i, k] = True
    return out, mask


def min_distances(
    queries: tuple[Words, npt.NDArray[np.bool_]],
    indexed: tuple[Words, npt.NDArray[np.bool_]],
    chunk: int = 8,
) -> npt.NDArray[np.int16]:
    """(N, M): the smallest distance between any query hash of photo i and any indexed hash of
    photo j (256 where either has none)."""
    q, q_mask = queries
    h, h_mask = indexed
    out = np.empty((q.shape[0], h.shape[0]), dtype=np.int16)
    for start in range(0, q.shape[0], chunk):
        block = q[start : start + chunk]  # (c, Q, 4)
        bits = np.bitwise_count(block[:, None, :, None, :] ^ h[None, :, None, :, :])
        dist = bits.sum(axis=-1, dtype=np.int16)  # (c, M, Q, H)
        valid = q_mask[start : start + chunk, None, :, None] & h_mask[None, :, None, :]
        out[start : start + chunk] = np.where(valid, dist, 256).min(axis=(2, 3))
    return out


def best_distance(query: Fingerprint, indexed: Fingerprint) -> int:
    """What the index answers for `query` when `indexed` was seen first."""
    return min(fingerprints.distance(a, b) for a in query.queries() for b in indexed.hashes)


def false_matches(
    paths: Sequence[Path], prints: Sequence[Fingerprint], authors: Mapping[str, str]
) -> dict[str, Any]:
    """Every pair of distinct photos, both directions; the closest pairs named."""
    usable = [i for i, p in enumerate(prints) if p.usable]
    queries = words([prints[i].queries() for i in usable])
    indexed = words([prints[i].hashes for i in usable])
    plain = words([prints[i].hashes[:1] for i in usable])
    started = time.perf_counter()
    dist = min_distances(queries, indexed)
    dist = np.minimum(dist, dist.T)  # either photo may be the earlier one
    plain_dist = min_distances(plain, plain)
    seconds = time.perf_counter() - started
    upper = np.triu_indices(len(usable), k=1)
    pairs, plain_pairs = dist[upper], plain_dist[upper]
    order = np.argsort(pairs, kind="stable")
    closest: list[dict[str, Any]] = []
    same_scene: list[dict[str, Any]] = []
    false: list[dict[str, Any]] = []
    margin = None  # the closest pair not judged the same scene: how far the threshold may go
    for rank, k in enumerate(order):
        if rank >= CLOSEST_PAIRS and pairs[k] > fingerprints.MATCH_DISTANCE and margin:
            break
        a, b = paths[usable[upper[0][k]]].name, paths[usable[upper[1][k]]].name
        pair = {
            "a": a,
            "b": b,
            "distance": int(pairs[k]),
            "plain_distance": int(plain_pairs[k]),
            "same_photographer": authors.get(a) == authors.get(b),
        }
        judged = SAME_SCENE.get(frozenset({a, b}))
        if rank < CLOSEST_PAIRS:
            closest.append(pair)
        if margin is None and not judged:
            margin = pair["distance"]
        if pairs[k] <= fingerprints.MATCH_DISTANCE and judged:
            same_scene.append({**pair, "judged": judged})
        elif pairs[k] <= fingerprints.MATCH_DISTANCE:
            false.append(pair)
    return {
        "photos": len(paths),
        "usable_photos": len(usable),
        "pairs": int(pairs.size),
        "matches": len(false),  # within match_distance, not judged the same scene
        "false_match_pairs": false,
        "same_scene_pairs": same_scene,  # within match_distance, judged the same scene
        "min_distance": int(pairs.min()) if pairs.size else None,
        "min_distance_other_scenes": margin,
        "plain_min_distance": int(plain_pairs.min()) if pairs.size else None,
        "pairs_within": {str(t): int((pairs <= t).sum()) for t in THRESHOLDS},
        "percentiles": {str(p): float(np.percentile(pairs, p)) for p in (0.001, 0.01, 0.1, 1, 50)}
        if pairs.size
        else {},
        "closest": closest,
        "seconds": round(seconds, 1),
    }


def recall(
    paths: Sequence[Path], prints: Sequence[Fingerprint], seed: int
) -> tuple[list[dict[str, Any]], dict[str, list[Fingerprint]]]:
    """One row per alteration: the share of copies found at the threshold, and distances; and
    the copies' fingerprints (for the measurement through the index)."""
    distances: dict[str, list[int]] = {name: [] for name in ALTERATIONS}
    copies: dict[str, list[Fingerprint]] = {name: [] for name in ALTERATIONS}
    for index, (path, original) in enumerate(zip(paths, prints, strict=True)):
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        for name, (alter, _) in ALTERATIONS.items():
            rng = np.random.default_rng([seed, index, len(distances[name])])
            try:
                copy = fingerprints.fingerprint(alter(image, rng))
            except FingerprintError as exc:
                raise BenchError(f"{path.name} altered by {name}: {exc}") from exc
            found = best_distance(copy, original) if copy.usable else 256
            distances[name].append(found)
            copies[name].append(copy)
    rows = []
    for name, (_, target) in ALTERATIONS.items():
        values = np.array(distances[name])
        rows.append(
            {
                "alteration": name,
                "photos": int(values.size),
                "recall_pct": round(100 * float((values <= fingerprints.MATCH_DISTANCE).mean()), 1),
                "target_pct": target,
                "median_distance": float(np.median(values)),
                "p90_distance": float(np.percentile(values, 90)),
                "max_distance": int(values.max()),
                "recall_within_pct": {
                    str(t): round(100 * float((values <= t).mean()), 1) for t in THRESHOLDS
                },
            }
        )
    return rows, copies


def cost(paths: Sequence[Path]) -> dict[str, Any]:
    """CPU-ms per fingerprint, cold, of JPEGs (q85) resized so the short side is 1080 px, and
    of its decoding alone."""
    encoded = []
    for path in paths:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        scale = TIMING_SIDE / min(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        encoded.append(_jpeg(image.resize(size, Image.Resampling.BICUBIC)))
    total, decode = [], []
    for data in encoded:
        started = time.process_time()
        fingerprints.fingerprint(data)
        total.append(time.process_time() - started)
        started = time.process_time()
        fingerprints.decode(data)
        decode.append(time.process_time() - started)
    return {
        "photos": len(encoded),
        "jpeg": f"short side {TIMING_SIDE} px, quality 85",
        "median_ms": round(1000 * float(np.median(total)), 2),
        "mean_ms": round(1000 * float(np.mean(total)), 2),
        "p90_ms": round(1000 * float(np.percentile(total, 90)), 2),
        "decode_median_ms": round(1000 * float(np.median(decode)), 2),
    }


def _authors(images: Path) -> dict[str, str]:
    """File name -> photographer, from dev.csv beside the images (empty where absent)."""
    manifest = images.parent / "dev.csv"
    if not manifest.is_file():
        return {}
    authors = {}
    for line in manifest.read_text().splitlines()[1:]:
        fields = line.split(",")
        if len(fields) > 1:
            authors[fields[0]] = fields[1]
    return authors


def run(options: NearDuplicateOptions = NearDuplicateOptions()) -> dict[str, Any]:
    """Fingerprint the photos, measure recall, false matches and cost; write the results."""
    paths = dev_photos(options)
    started = time.perf_counter()
    try:
        prints = [fingerprints.fingerprint(path.read_bytes()) for path in paths]
    except (OSError, FingerprintError) as exc:
        raise BenchError(f"a development photo could not be fingerprinted: {exc}") from exc
    fingerprint_s = time.perf_counter() - started
    log.info("%d photos fingerprinted in %.1f s", len(paths), fingerprint_s)
    subset = slice(0, min(options.recall_photos, len(paths)))
    started = time.perf_counter()
    rows, copies = recall(paths[subset], prints[subset], options.seed)
    recall_s = time.perf_counter() - started
    log.info("recall of %d alterations measured in %.1f s", len(ALTERATIONS), recall_s)
    distinct = false_matches(paths, prints, _authors(paths[0].parent))
    through_index = index_recall.measure(
        [path.name for path in paths],
        prints,
        copies,
        fingerprints.MATCH_DISTANCE,
        set(SAME_SCENE),
        options.index_tables,
    )
    result = {
        "protocol": {
            "photos": len(paths),
            "recall_photos": subset.stop,
            "match_distance": fingerprints.MATCH_DISTANCE,
            "min_quality": fingerprints.MIN_QUALITY,
            "hashes_per_photo": round(float(np.mean([len(p.hashes) for p in prints])), 2),
            "rule": "a copy matches its original when the smallest Hamming distance between any "
            "of the copy's hashes or dihedral variants and any of the original's hashes is at "
            "most match_distance; a pair of distinct photos is compared both ways",
            "alterations": {
                name: (alter.__doc__ or "").strip() for name, (alter, _) in ALTERATIONS.items()
            },
            "seed": options.seed,
        },
        "unusable_photos": [
            path.name for path, p in zip(paths, prints, strict=True) if not p.usable
        ],
        "recall": rows,
        "false_matches": distinct,
        "through_index": through_index,
        "cpu_ms_per_fingerprint": cost(paths[: options.timing_photos]),
        "seconds": {"fingerprints": round(fingerprint_s, 1), "recall": round(recall_s, 1)},
    }
    out = options.output_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / "near-duplicates.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def report(result: Mapping[str, Any]) -> str:
    """A plain table for people: recall per alteration, then false matches and cost."""
    protocol = result["protocol"]
    header = f"{'alteration':<16}{'recall %':>9}{'target':>8}{'median':>8}{'p90':>6}" + "".join(
        f"{'<=' + str(t):>7}" for t in THRESHOLDS
    )
    lines = [
        f"{protocol['recall_photos']} photos altered each way; match distance "
        f"{protocol['match_distance']}, quality floor {protocol['min_quality']}.",
        header,
    ]
    for row in result["recall"]:
        target = "" if row["target_pct"] is None else f"{row['target_pct']:g}"
        lines.append(
            f"{row['alteration']:<16}{row['recall_pct']:9.1f}{target:>8}"
            f"{row['median_distance']:8.0f}{row['p90_distance']:6.0f}"
            + "".join(f"{row['recall_within_pct'][str(t)]:7.1f}" for t in THRESHOLDS)
        )
    distinct = result["false_matches"]
    lines += [
        "",
        f"distinct photos: {distinct['pairs']:,} pairs of {distinct['usable_photos']} usable "
        f"photos ({len(result['unusable_photos'])} below the quality floor): "
        f"{distinct['matches']} false matches within {protocol['match_distance']} "
        f"({len(distinct['same_scene_pairs'])} more judged the same scene shot twice); closest "
        f"{distinct['min_distance']}, {distinct['min_distance_other_scenes']} between different "
        f"scenes (plain hashes alone: {distinct['plain_min_distance']})",
        "pairs within: " + ", ".join(f"{t}: {n}" for t, n in distinct["pairs_within"].items()),
    ]
    for pair in distinct["closest"][:5]:
        same = " (same photographer)" if pair["same_photographer"] else ""
        lines.append(f"  {pair['distance']:4d}  {pair['a']}  {pair['b']}{same}")
    lines += [
        "",
        "through the index: recall % per alteration, false matches, client CPU-ms a lookup",
    ]
    for row in result.get("through_index", []):
        lines.append(
            f"  tables {row['tables']}: "
            + ", ".join(f"{name} {pct:g}" for name, pct in row["recall_pct"].items())
            + f"; false matches {row['false_matches']}; {row['client_cpu_ms_per_lookup']} ms"
        )
    timing = result["cpu_ms_per_fingerprint"]
    lines.append(
        f"\nCPU-ms per fingerprint ({timing['jpeg']}, cold): median {timing['median_ms']}, "
        f"p90 {timing['p90_ms']} (decoding {timing['decode_median_ms']})"
    )
    return "\n".join(lines)
