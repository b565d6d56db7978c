"""The real redis-server, in memory only (no RDB, no AOF): a cache that may vanish.

No default user, as in docker-compose: the consumer signs in as `geoverdict` (its key prefix;
the verdict cache's PING, GET, MGET, SET and the near-duplicate index's string, hash, list, set
and MULTI/WATCH commands: nothing that lists keys or touches the server), the exporter as
`exporter` (server statistics, no key), from the same ACL file (resources/redis-users.acl; Redis
allows no comment in it) with passwords made for this run, where docker-compose fills in .env's.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from pathlib import Path

import redis

from geoverdict_stack import prerequisites, resources
from geoverdict_stack.ports import HOST
from geoverdict_stack.server import Server


def render_users(geoverdict_password: str, exporter_password: str) -> str:
    """The shipped ACL file with this deployment's passwords (hex: nothing to escape)."""
    for password in (geoverdict_password, exporter_password):
        if not password or any(c not in "0123456789abcdef" for c in password):
            raise ValueError("Redis passwords must be lowercase hex (openssl rand -hex 32)")
    return (
        resources.text(resources.REDIS_USERS)
        .replace("@GEOVERDICT_PASSWORD@", geoverdict_password)
        .replace("@EXPORTER_PASSWORD@", exporter_password)
    )


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
    def users_file(self) -> Path:
        """The rendered ACL file (passwords of this run; readable by its owner only)."""
        return self.home / "users.acl"

    @property
    def passwords_file(self) -> Path:
        """{"geoverdict": ..., "exporter": ..., "admin": ...}: the passwords of this run."""
        return self.home / "passwords.json"

    def password(self, user: str) -> str:
        """The password of `user` (geoverdict or exporter) for this run."""
        return str(json.loads(self.passwords_file.read_text())[user])

    @property
    def url(self) -> str:
        """redis:// URL for the consumer, its user and password included."""
        return f"redis://geoverdict:{self.password('geoverdict')}@{HOST}:{self.port}/0"

    def url_for(self, user: str) -> str:
        """redis:// URL for another user of this run (exporter, admin)."""
        return f"redis://{user}:{self.password(user)}@{HOST}:{self.port}/0"

    @property
    def address(self) -> str:
        """redis:// URL without credentials (what logs and status may show)."""
        return f"redis://{HOST}:{self.port}/0"

    def ports(self) -> dict[str, int]:
        return {"redis": self.port}

    def prepare(self) -> None:
        prerequisites.redis_server()
        if not self.passwords_file.exists():
            passwords = {
                user: secrets.token_hex(16) for user in ("geoverdict", "exporter", "admin")
            }
            self.passwords_file.write_text(json.dumps(passwords))
            self.passwords_file.chmod(0o600)
        # Plus, on this development stack only, an `admin` to look inside (tests, redis-cli).
        admin = f"user admin on >{self.password('admin')} ~* &* +@all\n"
        self.users_file.write_text(
            render_users(self.password("geoverdict"), self.password("exporter")) + admin
        )
        self.users_file.chmod(0o600)

    def command(self) -> Sequence[str]:
        return [
            prerequisites.redis_server().path,
            "--bind",
            HOST,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.home),
            "--daemonize",
            "no",
            "--maxmemory",
            f"{self.maxmemory_mb}mb",
            # A verdict cache: evict the least recently used key rather than refuse writes.
            "--maxmemory-policy",
            "allkeys-lru",
            "--aclfile",
            str(self.users_file),
        ]

    def ready(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_timeout=1.0)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()
