"""`geoverdict provenance erase` against a real redis-server, as an operator runs it."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from geoverdict.cli import main
from geoverdict_service.provenance.index import IndexSettings, NearDuplicateIndex
from geoverdict_stack.redis import RedisServer
from tests.service.conftest import needs_redis
from tests.service.provenance.test_index import Print, random_hash, see


@needs_redis
def test_erase_an_event_then_a_post_from_the_command_line(
    server: RedisServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEOVERDICT_REDIS_URL", server.url)  # the consumers' own account
    index = NearDuplicateIndex.from_url(server.url, IndexSettings(), timeout_s=2.0)
    run = uuid.uuid4().hex[:8]
    photo = Print((random_hash(np.random.default_rng(3)),))
    see(index, f"{run}-1", photo, claim=(1.0, 1.0), post=f"{run}-p1")
    see(index, f"{run}-2", photo, claim=(2.0, 2.0), post=f"{run}-p2")
    see(index, f"{run}-3", photo, claim=(3.0, 3.0), post=f"{run}-p2")

    assert main(["provenance", "erase", "--event", f"{run}-3", f"{run}-nope"]) == 0
    out = capsys.readouterr().out
    assert f"event '{run}-3': erased" in out and f"event '{run}-nope': not in the index" in out
    [match] = index.find_many([("query", photo)])
    assert match is not None and match.times_seen == 2

    assert main(["provenance", "erase", "--post", "tests", f"{run}-p2"]) == 0
    assert f"post '{run}-p2' of 'tests': 1 sighting(s) erased" in capsys.readouterr().out
    assert main(["provenance", "erase", "--post", "tests", f"{run}-p1"]) == 0
    assert index.find_many([("query", photo)]) == [None]  # its first sighting: the photo went
    index.close()


def test_erase_without_redis_is_one_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEOVERDICT_REDIS_URL", "redis://geoverdict:x@127.0.0.1:9/0")
    assert main(["provenance", "erase", "--event", "e1"]) == 2
    assert "error: near-duplicate index:" in capsys.readouterr().err
