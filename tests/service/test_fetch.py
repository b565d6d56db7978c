"""Images by reference: allow-list, private addresses, redirects, size limit, timeouts, retries."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

import pytest

from geoverdict_service.exceptions import FetchError
from geoverdict_service.fetch import FetchPolicy, address_allowed, fetch_image
from tests.service.localhttp import LocalServer, Reply, Seen, closed_port

IMAGE = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8 + b"\xff\xd9"
POLICY = FetchPolicy(
    allowed_hosts=("127.0.0.1",),
    allow_private=True,
    max_bytes=64 * 1024,
    timeout_s=0.5,
    retries=2,
    backoff_s=0.01,
)


@pytest.fixture
def host() -> Iterator[LocalServer]:
    """An image host on 127.0.0.1 whose paths each misbehave in one way."""
    asked: Counter[str] = Counter()

    def respond(request: Seen) -> Reply:
        asked[request.path] += 1
        match request.path:
            case "/img.jpg":
                return Reply(200, IMAGE, {"Content-Type": "image/jpeg"})
            case "/moved":
                return Reply(302, headers={"Location": "/img.jpg"})
            case "/elsewhere":
                return Reply(302, headers={"Location": f"http://localhost:{server.port}/img.jpg"})
            case "/broken-redirect":
                return Reply(302, headers={"Location": "http://[not-an-address/x.jpg"})
            case "/loop":
                return Reply(302, headers={"Location": "/loop"})
            case "/huge":
                return Reply(200, b"x" * (POLICY.max_bytes + 1))
            case "/endless":  # no Content-Length, never ends
                return Reply(200, stream=itertools.repeat(b"x" * 4096))
            case "/slow":
                return Reply(200, IMAGE, delay_s=2.0)
            case "/drip":  # a byte every 50 ms: each read is quick, the whole is not
                return Reply(200, stream=itertools.repeat(b"x", 1000), drip_s=0.05)
            case "/flaky":
                return Reply(503) if asked["/flaky"] == 1 else Reply(200, IMAGE)
            case "/broken":
                return Reply(500, b"upstream exploded")
            case "/busy":
                return Reply(429)
            case _:
                return Reply(404, b"no such image")

    with LocalServer(respond) as server:
        yield server


def refusal(url: str, policy: FetchPolicy = POLICY) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch_image(url, policy)
    return caught.value


def test_fetches_the_image_and_follows_a_redirect_on_the_same_host(host: LocalServer) -> None:
    assert fetch_image(f"{host.url}/img.jpg", POLICY) == IMAGE
    assert fetch_image(f"{host.url}/moved", POLICY) == IMAGE
    assert [r.path for r in host.requests] == ["/img.jpg", "/moved", "/img.jpg"]
    assert host.requests[0].headers["User-Agent"] == "geoverdict"


def test_loopback_is_refused_unless_private_addresses_are_allowed(host: LocalServer) -> None:
    public_only = replace(POLICY, allow_private=False, allowed_hosts=("127.0.0.1", "localhost"))
    for url in (f"{host.url}/img.jpg", f"http://localhost:{host.port}/img.jpg"):
        assert refusal(url, public_only).reason == "fetch_disallowed"
    assert host.requests == []  # refused before connecting


def test_only_allow_listed_hosts_and_http_urls_are_fetched(host: LocalServer) -> None:
    for url in (
        f"http://localhost:{host.port}/img.jpg",  # same server, but not on the list
        "http://images.example.invalid/a.jpg",
        "file:///etc/passwd",
        f"ftp://127.0.0.1:{host.port}/img.jpg",
    ):
        assert refusal(url).reason == "fetch_disallowed", url
    assert refusal(f"{host.url}/img.jpg", replace(POLICY, allowed_hosts=())).reason == (
        "fetch_disallowed"
    )
    assert host.requests == []


def test_allow_list_entries_are_exact_hosts_or_dot_suffixes() -> None:
    policy = FetchPolicy(allowed_hosts=("img.example.com", ".cdn.example"))
    assert policy.host_allowed("img.example.com")
    assert policy.host_allowed("IMG.Example.com.")
    assert not policy.host_allowed("evil.img.example.com")
    assert policy.host_allowed("eu.cdn.example")
    assert policy.host_allowed("cdn.example")
    assert not policy.host_allowed("evilcdn.example")


def test_a_redirect_to_another_host_is_refused_and_not_retried(host: LocalServer) -> None:
    assert refusal(f"{host.url}/elsewhere").reason == "fetch_disallowed"
    assert [r.path for r in host.requests] == ["/elsewhere"]


def test_a_redirect_loop_ends(host: LocalServer) -> None:
    assert refusal(f"{host.url}/loop", replace(POLICY, retries=0)).reason == "fetch_failed"


def test_the_size_limit_holds_with_and_without_content_length(host: LocalServer) -> None:
    assert refusal(f"{host.url}/huge").reason == "fetch_too_large"
    started = time.monotonic()
    assert refusal(f"{host.url}/endless").reason == "fetch_too_large"
    assert time.monotonic() - started < 2.0
    assert [r.path for r in host.requests] == ["/huge", "/endless"]  # never retried


def test_a_server_that_does_not_answer_in_time_is_a_timeout(host: LocalServer) -> None:
    policy = replace(POLICY, timeout_s=0.2, retries=1)
    started = time.monotonic()
    assert refusal(f"{host.url}/slow", policy).reason == "fetch_timeout"
    assert time.monotonic() - started < 1.5
    assert [r.path for r in host.requests] == ["/slow", "/slow"]  # a timeout is retried


def test_a_dripping_body_is_a_timeout_too(host: LocalServer) -> None:
    started = time.monotonic()
    assert refusal(f"{host.url}/drip", replace(POLICY, retries=0)).reason == "fetch_timeout"
    assert time.monotonic() - started < 2 * POLICY.timeout_s + 0.5


def test_server_errors_are_retried_and_missing_images_are_not(host: LocalServer) -> None:
    assert fetch_image(f"{host.url}/flaky", POLICY) == IMAGE
    assert refusal(f"{host.url}/broken").reason == "fetch_failed"
    assert refusal(f"{host.url}/busy", replace(POLICY, retries=0)).reason == "fetch_failed"
    assert refusal(f"{host.url}/gone.jpg").reason == "fetch_not_found"
    assert Counter(r.path for r in host.requests) == {
        "/flaky": 2,
        "/broken": 3,
        "/busy": 1,
        "/gone.jpg": 1,
    }


def test_a_refused_connection_fails_after_the_retries() -> None:
    error = refusal(f"http://127.0.0.1:{closed_port()}/img.jpg")
    assert error.reason == "fetch_failed"
    assert "127.0.0.1" in str(error)


@pytest.mark.parametrize(
    "url", ["http://[x/a.jpg", "http://127.0.0.1:99999/a.jpg", "http://127.0.0.1:-1/"]
)
def test_a_url_that_cannot_be_parsed_is_refused_not_raised(url: str) -> None:
    with pytest.raises(FetchError) as caught:
        fetch_image(url, POLICY)
    assert caught.value.reason == "fetch_disallowed"


def test_a_redirect_to_an_unparsable_url_is_a_fetch_error(host: LocalServer) -> None:
    with pytest.raises(FetchError):
        fetch_image(f"{host.url}/broken-redirect", POLICY)


@pytest.fixture
def header_drip() -> Iterator[int]:
    """A server that answers with a status line and headers a byte every 0.2 s, forever."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(4096)
                for byte in itertools.cycle(b"HTTP/1.1 200 OK\r\nX-Slow: aaaaaaaaaaaaaaaa"):
                    if stop.is_set():
                        break
                    try:
                        conn.send(bytes([byte]))
                    except OSError:
                        break
                    time.sleep(0.2)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(timeout=5)
    server.close()


def test_one_deadline_bounds_a_server_dripping_its_headers(header_drip: int) -> None:
    policy = replace(POLICY, timeout_s=1.0, retries=0)
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        fetch_image(f"http://127.0.0.1:{header_drip}/slow.jpg", policy)
    assert caught.value.reason == "fetch_timeout"
    assert time.monotonic() - started < 2.5  # not one socket timeout per byte


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::808:808",  # NAT64 of a public address: what it reaches cannot be checked
        "::7f00:1",  # IPv4-compatible
        "::ffff:10.0.0.1",  # IPv4-mapped private
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "fe80::1",
        "169.254.169.254",
    ],
)
def test_addresses_hiding_a_private_or_unknown_target_are_refused(address: str) -> None:
    assert address_allowed(address) is False


def test_public_addresses_are_allowed() -> None:
    assert address_allowed("93.184.216.34")
    assert address_allowed("2606:2800:220:1:248:1893:25c8:1946")
    assert address_allowed("::ffff:93.184.216.34")


def test_a_redirect_from_https_to_http_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from geoverdict_service import fetch

    class Moved:
        status = 302

        def getheader(self, name: str) -> str:
            return "http://img.example.com/a.jpg"

    class Conn:
        sock = None

        def __init__(self, *args: object) -> None:
            pass

        def request(self, *args: object, **kwargs: object) -> None:
            pass

        def getresponse(self) -> Moved:
            return Moved()

        def close(self) -> None:
            pass

    monkeypatch.setattr(fetch, "_PinnedHTTPSConnection", Conn)
    monkeypatch.setattr(fetch, "_resolve", lambda host, port, policy: "93.184.216.34")
    policy = FetchPolicy(allowed_hosts=("img.example.com",), retries=0)
    with pytest.raises(FetchError, match="from https to http") as caught:
        fetch_image("https://img.example.com/a.jpg", policy)
    assert caught.value.reason == "fetch_disallowed"
