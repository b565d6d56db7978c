"""A torch-free TorchServe handler answering the prediction contract, for the service tests.

It "predicts" one of a few cities from the image hash, with the real contract's fields, and
answers the per-item errors of the real handler (empty, undecodable, truncated). The real
model's handler replaces it in tests that need real predictions.
"""

import hashlib
import json
import time

VERSION = "fixture-0123abcd"
CITIES = [
    ("Paris", 48.8566, 2.3522, "1e66"),
    ("New York", 40.7128, -74.0060, "89c25"),
    ("Tokyo", 35.6762, 139.6503, "6018b"),
    ("Sydney", -33.8688, 151.2093, "6b12b"),
]
SCENES = ["indoor", "natural", "urban"]
STATS = {"batches": []}


def _error(code, message):
    return {"model_version": VERSION, "error": {"code": code, "message": message}}


def _predict(body):
    if not body:
        return _error("empty", "empty request body")
    if body.startswith(b"CRASH"):
        raise RuntimeError("asked to crash")  # lets tests see TorchServe's 5xx path
    if body[:2] == b"\xff\xd8":
        if body.rstrip(b"\x00")[-2:] != b"\xff\xd9":
            return _error("truncated", "JPEG data ends early")
    elif body[:8] != b"\x89PNG\r\n\x1a\n":
        return _error("undecodable", "not an image Pillow can read")
    digest = hashlib.sha256(body).digest()
    order = sorted(range(len(CITIES)), key=lambda i: (i - digest[0]) % len(CITIES))
    probs = [0.94, 0.03, 0.02, 0.01]
    cells = []
    for rank, index in enumerate(order):
        _, lat, lon, token = CITIES[index]
        cells.append(
            {
                "token": token,
                "level": len(token) * 2 - 2,
                "lat": lat,
                "lon": lon,
                "probability": probs[rank],
            }
        )
    return {
        "model_version": VERSION,
        "cells": cells,
        "cells_mass": 1.0,
        "best_guess": dict(cells[0]),
        "scene": {
            "s3": {"label": SCENES[digest[1] % 3], "index": digest[1] % 3, "probability": 0.8},
            "s16": [],
            "s365": [],
        },
        "confidence": {"top1": 0.94, "entropy": 0.3, "radius_50_km": 1.0, "radius_90_km": 1.0},
        "image": {"width": 1, "height": 1, "format": "JPEG" if body[:2] == b"\xff\xd8" else "PNG"},
        "exif_location": None,
        "timings_ms": {"decode": 0.1, "inference": 1.0},
    }


def handle(data, context):
    if data is None:
        return None
    time.sleep(0.005)  # a little compute, so batches can form
    STATS["batches"].append(len(data))
    if context is not None and getattr(context, "metrics", None) is not None:
        from ts.metrics.metric_type_enum import MetricTypes

        context.metrics.add_metric("BatchSize", len(data), "count", metric_type=MetricTypes.GAUGE)
    replies = []
    for row in data:
        body = row.get("body")
        if body is None:
            body = row.get("data") or b""
        if isinstance(body, str):
            body = body.encode()
        if isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        replies.append(json.dumps(_predict(body)))
    return replies
