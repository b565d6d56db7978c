"""The Kafka jars are the pinned ones: SHA-256 per jar, none missing, none added."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from geoverdict_stack.exceptions import DownloadError
from geoverdict_stack.prerequisites import kafka_libs_dir, verify_jars


@pytest.fixture
def libs(tmp_path: Path) -> Path:
    fetched = kafka_libs_dir()
    if not any(fetched.glob("*.jar")):
        pytest.skip("the Kafka jars are not fetched (make setup fetches them)")
    copy = tmp_path / "libs"
    shutil.copytree(fetched, copy)
    return copy


def test_the_fetched_jars_are_the_pinned_ones(libs: Path) -> None:
    verify_jars(libs)


def test_a_changed_an_added_or_a_missing_jar_is_refused(libs: Path) -> None:
    jar = next(iter(sorted(libs.glob("kafka-clients-*.jar"))))
    jar.write_bytes(jar.read_bytes() + b"\0")
    (libs / "extra-1.0.jar").write_bytes(b"PK")
    next(iter(sorted(libs.glob("zstd-*.jar")))).unlink()
    with pytest.raises(DownloadError) as caught:
        verify_jars(libs)
    message = str(caught.value)
    assert "extra-1.0.jar: not pinned" in message
    assert "missing" in message
    assert f"{jar.name}: SHA-256 differs" in message
