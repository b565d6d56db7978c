"""Images by reference: fetch an http(s) URL safely (allow-list, no private addresses, no
redirects to other hosts, a size limit, timeouts, retries on transient failures)."""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit

from geoverdict_service.backoff import delay
from geoverdict_service.exceptions import FetchError

MAX_REDIRECTS = 3


@dataclass(frozen=True)
class FetchPolicy:
    """What the consumer may fetch (from settings.FetchSettings)."""

    allowed_hosts: tuple[str, ...] = ()  # exact host names or ".suffix" for subdomains
    allow_private: bool = False
    max_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 10.0  # per attempt: connect, headers, redirects and body together
    retries: int = 2
    backoff_s: float = 0.5

    def host_allowed(self, host: str) -> bool:
        """True when `host` is on the allow-list."""
        host = host.lower().rstrip(".")
        for entry in self.allowed_hosts:
            allowed = entry.lower()
            if host == allowed.lstrip(".") or (allowed.startswith(".") and host.endswith(allowed)):
                return True
        return False


# Addresses that carry an IPv4 address inside IPv6 and reach it through a translator or an
# old tunnel: what they reach cannot be checked from here, so they are refused.
_TRANSLATED = (
    ipaddress.ip_network("64:ff9b::/96"),  # NAT64, well-known prefix
    ipaddress.ip_network("64:ff9b:1::/48"),  # NAT64, local-use prefix
    ipaddress.ip_network("::/96"),  # IPv4-compatible (deprecated): ::a.b.c.d
)


def address_allowed(address: str) -> bool:
    """A global unicast address that does not hide a private IPv4 one."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in net for net in _TRANSLATED):
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            return embedded.is_global
    return ip.is_global


def _resolve(host: str, port: int, policy: FetchPolicy) -> str:
    """One address for host, refusing private, loopback, link-local and translated ones unless
    private addresses are allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve {host}: {exc}", "fetch_failed") from exc
    for info in infos:
        address = str(info[4][0])
        if policy.allow_private or address_allowed(address):
            return address
    raise FetchError(f"{host} resolves to a private or local address", "fetch_disallowed")


class _Deadline:
    """One deadline for a whole attempt (connect, headers, redirects, body): the socket timeout
    bounds each read, not their sum, so a server dripping its headers a byte at a time would
    otherwise hold a fetch thread for as long as it likes. At the deadline the open connection
    is shut down, which ends any read blocked on it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def remaining(self) -> float:
        """Seconds left (raises fetch_timeout when none)."""
        left = self.at - time.monotonic()
        if left <= 0 or self.expired:
            raise self.error()
        return left

    def watch(self, conn: http.client.HTTPConnection) -> None:
        """The connection to shut down at the deadline."""
        with self._lock:
            self._conn = conn

    def error(self) -> FetchError:
        return FetchError(f"fetching took longer than {self.seconds} s", "fetch_timeout")

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sock = self._conn.sock if self._conn is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address we checked, not a second DNS answer (no DNS rebinding)."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def fetch_image(url: str, policy: FetchPolicy) -> bytes:
    """The bytes at `url`; raises FetchError with reason fetch_disallowed / fetch_failed /
    fetch_timeout / fetch_too_large. Transient failures are retried."""
    attempt = 0
    while True:
        try:
            return _fetch_once(url, policy)
        except FetchError as exc:
            if exc.reason not in ("fetch_failed", "fetch_timeout") or attempt >= policy.retries:
                raise
        time.sleep(delay(attempt, policy.backoff_s))
        attempt += 1


def _split(url: str) -> tuple[SplitResult, int]:
    """The URL's parts and port; a URL that cannot be parsed (from an event or a redirect's
    Location) is refused like any other disallowed URL, never an exception of the loop."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise FetchError(f"not a valid URL: {exc}", "fetch_disallowed") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Scheme and host only: a path or query may hold a presigned token.
        raise FetchError(
            f"not an http(s) URL: {parts.scheme[:20]!r} scheme, host {parts.hostname!r}",
            "fetch_disallowed",
        )
    return parts, port


def _fetch_once(url: str, policy: FetchPolicy) -> bytes:
    with _Deadline(policy.timeout_s) as deadline:
        try:
            return _follow(url, policy, deadline)
        except FetchError:
            if deadline.expired:
                raise deadline.error() from None
            raise


def _follow(url: str, policy: FetchPolicy, deadline: _Deadline) -> bytes:
    """GET `url`, following redirects on the same host (never from https to http)."""
    first = _split(url)[0]
    for _ in range(MAX_REDIRECTS + 1):
        parts, port = _split(url)
        host = parts.hostname or ""
        if host != first.hostname:
            raise FetchError(f"redirect to another host ({host}) refused", "fetch_disallowed")
        if first.scheme == "https" and parts.scheme != "https":
            raise FetchError(f"redirect from https to {parts.scheme} refused", "fetch_disallowed")
        if not policy.host_allowed(host):
            raise FetchError(f"host {host} is not on the fetch allow-list", "fetch_disallowed")
        address = _resolve(host, port, policy)
        cls = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
        conn = cls(host, port, address, deadline.remaining())
        deadline.watch(conn)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            conn.request("GET", path, headers={"User-Agent": "geoverdict", "Accept": "image/*"})
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308):
                try:
                    url = urljoin(url, resp.getheader("Location") or "")
                except ValueError as exc:
                    raise FetchError(
                        f"{host} redirected to an invalid URL", "fetch_failed"
                    ) from exc
                continue
            if resp.status >= 500 or resp.status == 429:
                raise FetchError(f"{host} answered HTTP {resp.status}", "fetch_failed")
            if resp.status != 200:
                raise FetchError(f"{host} answered HTTP {resp.status}", "fetch_not_found")
            length = resp.getheader("Content-Length")
            if length and length.isdigit() and int(length) > policy.max_bytes:
                raise FetchError(
                    f"image of {length} bytes exceeds {policy.max_bytes}", "fetch_too_large"
                )
            return _read_body(resp, policy, deadline, host)
        except TimeoutError as exc:
            raise deadline.error() from exc
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError(f"fetching {host} failed: {exc}", "fetch_failed") from exc
        finally:
            conn.close()
    raise FetchError(f"more than {MAX_REDIRECTS} redirects", "fetch_failed")


def _read_body(
    resp: http.client.HTTPResponse, policy: FetchPolicy, deadline: _Deadline, host: str
) -> bytes:
    """At most max_bytes, read before the deadline."""
    chunks: list[bytes] = []
    size = 0
    while chunk := resp.read1(64 * 1024):
        size += len(chunk)
        if size > policy.max_bytes:
            raise FetchError(f"image exceeds {policy.max_bytes} bytes", "fetch_too_large")
        deadline.remaining()
        chunks.append(chunk)
    return b"".join(chunks)
