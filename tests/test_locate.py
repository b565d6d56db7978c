"""`geoverdict locate`: a local photo's verdict without Kafka or a model server, the numbers the
stream gives the same photo, odd files answered as the service would."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from geoverdict.cli import main
from geoverdict.locate import Located, load_responder, locate
from geoverdict_common.contract import VERDICT, errors
from geoverdict_common.paths import model_store_dir
from geoverdict_service.events import make_event
from geoverdict_service.settings import load_verdict_settings
from geoverdict_stack.stack import Stack
from geoverdict_training.serving.responder import Responder
from tests.photos import NEW_YORK_GPS, exif_rotated_pair, gps_photo, heic, truncated_jpeg
from tests.service.conftest import collect, publish_events, running, service_settings, topics

__all__ = ["topics"]  # the fixture, used below

DEMO_ARCHIVE = model_store_dir() / "geoverdict.mar"
PARIS = (48.8566, 2.3522)


@pytest.fixture(scope="module")
def responder() -> Responder:
    if not DEMO_ARCHIVE.is_file():
        pytest.skip(f"no demo archive at {DEMO_ARCHIVE}")
    return load_responder(DEMO_ARCHIVE, "cpu")


def _dev_photos(shared_data: Path, count: int) -> list[Path]:
    return sorted((shared_data / "im2gps3k-dev" / "images").glob("*.jpg"))[:count]


def _noise_jpeg() -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def _by_name(results: list[Located]) -> dict[str, Located]:
    return {result.path.name: result for result in results}


@pytest.mark.shared_data
def test_development_photos_get_schema_valid_verdicts_with_the_claim_checked(
    responder: Responder, shared_data: Path
) -> None:
    photos = _dev_photos(shared_data, 5)
    settings = load_verdict_settings()
    results = list(locate(photos, responder, settings, claim=PARIS, batch_size=2))
    assert [r.path for r in results] == photos
    for result in results:
        assert result.verdict is not None, result.message
        assert errors(VERDICT, result.verdict) == []
        assert result.verdict["model_version"] == responder.version
        (check,) = result.verdict["consistency"]
        assert check["claim_source"] == "event"
        # The privacy floor holds as in the stream: no claimed point finer than 5 km.
        assert result.verdict["location"]["precision_floor_km"] == settings.min_precision_km


def test_odd_files_are_answered_as_the_service_would_and_the_rest_still_are(
    responder: Responder, tmp_path: Path
) -> None:
    photo = gps_photo(NEW_YORK_GPS, size=(96, 64))
    upright, rotated = exif_rotated_pair(photo)
    files = {
        "upright.jpg": upright,
        "rotated.jpg": rotated,
        "phone.heic": heic(photo),
        "cut.jpg": truncated_jpeg(_noise_jpeg()),
        "notes.txt": b"a text, not an image",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    paths = [tmp_path / name for name in files] + [tmp_path / "missing.jpg", tmp_path]
    found = _by_name(list(locate(paths, responder, load_verdict_settings())))
    assert [name for name, r in found.items() if r.verdict is not None] == [
        "upright.jpg",
        "rotated.jpg",
        "phone.heic",
    ]
    reasons = {name: r.reason for name, r in found.items() if r.verdict is None}
    assert reasons == {
        "cut.jpg": "truncated",
        "notes.txt": "undecodable",
        "missing.jpg": "unreadable",
        tmp_path.name: "unreadable",
    }
    # EXIF orientation applied: the photo stored turned answers as the upright one.
    upright_cells = found["upright.jpg"].verdict["location"]["cells"]  # type: ignore[index]
    rotated_cells = found["rotated.jpg"].verdict["location"]["cells"]  # type: ignore[index]
    assert [c["token"] for c in rotated_cells] == [c["token"] for c in upright_cells]
    # The photo's GPS EXIF is a claim too, coarsened to the floor.
    sources = [c["claim_source"] for c in found["phone.heic"].verdict["consistency"]]  # type: ignore[index]
    assert sources == ["exif"]


def test_the_command_prints_a_row_per_photo_and_one_line_per_bad_file(
    responder: Responder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.jpg"
    good.write_bytes(gps_photo(None, size=(64, 64)))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    status = main(["locate", str(good), str(bad), "--model", str(DEMO_ARCHIVE), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert status == 1  # one photo could not be answered
    assert "good.jpg" in out and "bad.jpg" not in out
    assert f"{bad}: undecodable: " in err
    status = main(["locate", str(good), "--json", "--claim", "48.85,2.35", "--device", "cpu"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0
    assert [line["photo"] for line in lines] == [str(good)]
    assert lines[0]["verdict"]["consistency"][0]["lat"] == pytest.approx(48.85, abs=0.1)


def test_a_missing_model_is_one_line_naming_what_to_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(gps_photo(None))
    assert main(["locate", str(photo), "--model", str(tmp_path / "none.mar")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: no model archive at {tmp_path / 'none.mar'}: check the path "
        "(geoverdict export makes one)"
    ]


def _top(cells: list[dict[str, Any]]) -> list[tuple[str, float]]:
    return [(c["token"], c["probability"]) for c in cells]


@pytest.mark.integration
@pytest.mark.shared_data
def test_the_same_photo_gets_the_same_cells_here_as_through_the_stack(
    stack: Stack, demo_model: str, topics: dict[str, str], responder: Responder, shared_data: Path
) -> None:
    photos = _dev_photos(shared_data, 6)
    events = [
        make_event(path.name, image_bytes=path.read_bytes(), claim=PARIS, event_id=path.name)
        for path in photos
    ]
    settings = service_settings(stack, demo_model, topics)
    with running(settings):
        publish_events(stack, topics["input_topic"], events)
        records = collect(stack, topics["verdict_topic"], len(events))
        time.sleep(0.1)
    streamed = {r.key.decode(): json.loads(r.value) for r in records}
    assert sorted(streamed) == sorted(p.name for p in photos)
    here = _by_name(list(locate(photos, responder, settings, claim=PARIS)))
    for name, verdict in streamed.items():
        local = here[name].verdict
        assert local is not None
        assert local["model_version"] == verdict["model_version"]
        ours, theirs = _top(local["location"]["cells"]), _top(verdict["location"]["cells"])
        assert [t for t, _ in ours] == [t for t, _ in theirs]
        assert [p for _, p in ours] == pytest.approx([p for _, p in theirs], abs=1e-4)
        ours_best, theirs_best = local["location"]["best_guess"], verdict["location"]["best_guess"]
        assert ours_best["token"] == theirs_best["token"]
        assert (ours_best["lat"], ours_best["lon"]) == pytest.approx(
            (theirs_best["lat"], theirs_best["lon"]), abs=1e-6
        )
        for ours_check, theirs_check in zip(
            local["consistency"], verdict["consistency"], strict=True
        ):
            assert dict(ours_check) == pytest.approx(dict(theirs_check), abs=1e-4)
        assert dict(local["location"]["confidence"]) == pytest.approx(
            dict(verdict["location"]["confidence"]), abs=1e-3
        )


@pytest.mark.shared_data
def test_over_a_folder_near_duplicates_are_named_and_distinct_photos_are_not(
    responder: Responder, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, other = (Image.open(p).convert("RGB") for p in _dev_photos(shared_data, 2))
    first.save(tmp_path / "a_original.jpg", quality=90)
    first.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize(
        (first.width // 2, first.height // 2)
    ).save(tmp_path / "b_mirrored_smaller.jpg", quality=60)
    other.save(tmp_path / "c_other.jpg", quality=90)
    status = main(["locate", str(tmp_path), "--json", "--device", "cpu"])
    lines = {
        Path(line["photo"]).name: line
        for line in map(json.loads, capsys.readouterr().out.splitlines())
    }
    assert status == 0 and len(lines) == 3
    copy = lines["b_mirrored_smaller.jpg"]["near_duplicate_of"]
    assert Path(copy["photo"]).name == "a_original.jpg" and copy["distance"] <= 54
    assert "near_duplicate_of" not in lines["a_original.jpg"]
    assert "near_duplicate_of" not in lines["c_other.jpg"]
    main(["locate", str(tmp_path), "--device", "cpu"])  # the table says it in words
    table = capsys.readouterr().out
    assert "near-duplicate of a_original.jpg (distance" in table
