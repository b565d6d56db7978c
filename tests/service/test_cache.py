"""The prediction cache: a round trip through a redis-server of its own, and failing open."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import redis

from geoverdict_service.cache import PredictionCache, RecentPredictions, cache_key
from geoverdict_stack.ports import free_ports
from geoverdict_stack.redis import RedisServer
from tests.service.conftest import needs_redis, redis_server
from tests.service.localhttp import closed_port
from tests.service.samples import MODEL_VERSION, confident_paris

SHA = "5e" * 32


@pytest.fixture
def redis_url(server: RedisServer) -> str:
    """The consumer's URL: its user and password."""
    return server.url


@needs_redis
def test_predictions_round_trip_with_a_ttl_under_their_model_version(
    server: RedisServer, redis_url: str
) -> None:
    cache = PredictionCache(redis_url, ttl_s=600)
    key = cache_key(MODEL_VERSION, SHA)
    cache.set_many({key: confident_paris()})
    other_version = cache_key("next-model", SHA)
    assert cache.get_many([key, other_version, cache_key(MODEL_VERSION, "0" * 64)]) == [
        confident_paris(),
        None,
        None,
    ]
    client = redis.Redis.from_url(server.url_for("admin"))
    assert 0 < client.ttl(key) <= 600
    assert cache.available()
    cache.close()
    client.close()


@needs_redis
def test_a_corrupt_entry_is_a_miss(server: RedisServer, redis_url: str) -> None:
    cache = PredictionCache(redis_url, ttl_s=600)
    key = cache_key(MODEL_VERSION, "c0" * 32)
    client = redis.Redis.from_url(server.url_for("admin"))
    client.set(key, b"{half a predic")
    assert cache.get_many([key]) == [None]
    cache.set_many({key: confident_paris()})  # the next store overwrites it
    assert cache.get_many([key]) == [confident_paris()]
    cache.close()
    client.close()


def test_without_a_url_the_cache_is_off() -> None:
    cache = PredictionCache(None, ttl_s=600)
    assert not cache.enabled
    assert not cache.available()
    cache.set_many({"k": confident_paris()})
    assert cache.get_many(["k", "l"]) == [None, None]


def test_redis_down_is_a_miss_reported_once_per_window() -> None:
    errors: list[str] = []
    cache = PredictionCache(
        f"redis://127.0.0.1:{closed_port()}/0",
        ttl_s=600,
        timeout_s=0.2,
        retry_after_s=0.5,
        on_error=errors.append,
    )
    assert cache.get_many(["a", "b"]) == [None, None]
    assert errors == ["get"]
    # Inside the window Redis is not even asked: no new failure, no time spent.
    started = time.perf_counter()
    assert cache.get_many(["a"]) == [None]
    cache.set_many({"a": confident_paris()})
    assert time.perf_counter() - started < 0.01
    assert errors == ["get"]
    # After it, Redis is tried again.
    time.sleep(0.55)
    cache.set_many({"a": confident_paris()})
    assert errors == ["get", "set"]
    assert not cache.available()


@needs_redis
def test_the_cache_comes_back_when_redis_does(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_ports(1)[0]
    errors: list[str] = []
    later = RedisServer(tmp_path, port)
    later.home.mkdir(parents=True)
    later.prepare()  # its users and passwords, before it runs
    cache = PredictionCache(later.url, ttl_s=600, retry_after_s=0.3, on_error=errors.append)
    key = cache_key(MODEL_VERSION, SHA)
    assert cache.get_many([key]) == [None]
    assert errors == ["get"]
    with redis_server(tmp_path, port):
        time.sleep(0.3)
        cache.set_many({key: confident_paris()})
        assert cache.get_many([key]) == [confident_paris()]
    assert errors == ["get"]
    cache.close()


def test_recent_predictions_keep_the_most_recently_used() -> None:
    recent: RecentPredictions[int] = RecentPredictions(max_entries=2)
    recent.put("a", 1)
    recent.put("b", 2)
    assert recent.get("a") == 1  # now the most recent
    recent.put("c", 3)
    assert (recent.get("a"), recent.get("b"), recent.get("c")) == (1, None, 3)
    off: RecentPredictions[int] = RecentPredictions(max_entries=0)
    off.put("a", 1)
    assert off.get("a") is None


@needs_redis
def test_only_the_consumer_s_keys_and_commands_are_open_to_it(server: RedisServer) -> None:
    anonymous = redis.Redis(host="127.0.0.1", port=server.port)
    with pytest.raises(redis.AuthenticationError):  # no default user
        anonymous.get("geoverdict:prediction:x")
    consumer = redis.Redis.from_url(server.url)
    consumer.set("geoverdict:prediction:v:ok", b"1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        consumer.set("someone-else:key", b"forged")  # outside its prefix
    with pytest.raises(redis.exceptions.NoPermissionError):
        consumer.flushall()
    exporter = redis.Redis.from_url(server.url_for("exporter"))
    assert "redis_version" in exporter.info()
    with pytest.raises(redis.exceptions.NoPermissionError):
        exporter.get("geoverdict:prediction:v:ok")  # statistics, not predictions
    for client in (anonymous, consumer, exporter):
        client.close()
