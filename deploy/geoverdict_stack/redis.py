"""The real redis-server, in memory only (no RDB, no AOF): a cache that may vanish."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import redis

from geoverdict_stack import prerequisites
from geoverdict_stack.ports import HOST
from geoverdict_stack.server import Server


class RedisServer(Server):
    """redis-server on loopback; ready when PING answers."""

    name = "redis"

    def __init__(
        self, run_dir: Path, port: int, start_timeout: float = 20.0, maxmemory_mb: int = 256
    ) -> None:
        super().__init__(run_dir, start_timeout)
        self.port = port
        self.maxmemory_mb = maxmemory_mb

    @property
    def url(self) -> str:
        """redis:// URL for clients."""
        return f"redis://{HOST}:{self.port}/0"

    def ports(self) -> dict[str, int]:
        return {"redis": self.port}

    def prepare(self) -> None:
        prerequisites.redis_server()

    def command(self) -> Sequence[str]:
        return [
            prerequisites.redis_server().path,
            "--bind", HOST,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.home),
            "--daemonize", "no",
            "--maxmemory", f"{self.maxmemory_mb}mb",
            # A verdict cache: evict the least recently used key rather than refuse writes.
            "--maxmemory-policy", "allkeys-lru",
        ]  # fmt: skip

    def ready(self) -> bool:
        client = redis.Redis(host=HOST, port=self.port, socket_timeout=1.0)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()
