"""The process that validates manifests, so that one which hangs or crashes the native C2PA
library costs an answer, not the consumer: the consumer kills it and starts another.

It is started as `python -m geoverdict_service.provenance.credential_worker module:factory`
and talks over its stdin and stdout in length-prefixed frames: the settings first, then per
image its media type and bytes; it answers each with a JSON object. JSON, never pickle: the
worker parses hostile input, and a worker taken over must not be able to run code in the
consumer."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import IO, Any

Answer = dict[str, Any]
Check = Callable[[bytes, str], Answer]
# Builds the check inside the worker from the settings (text): "module:function".
CheckFactory = Callable[[str], Check]

MAX_ANSWER_BYTES = 1 << 20  # an answer is a few hundred bytes
MAX_REQUEST_BYTES = 1 << 30
_READY = b"ready"
_LENGTH = struct.Struct(">I")


class WorkerProcess:
    """The consumer's handle on one worker: ask, and stop (kill) when it misbehaves."""

    def __init__(self, factory: str, settings: str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, factory],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        self._stdin: IO[bytes] = self._process.stdin  # type: ignore[assignment]
        self._stdout_fd = self._process.stdout.fileno()  # type: ignore[union-attr]
        self._ready = False
        _write_frames(self._stdin, settings.encode("utf-8"))

    @property
    def pid(self) -> int:
        return self._process.pid

    def ask(self, image: bytes, mime: str, timeout_s: float, start_timeout_s: float) -> Answer:
        """The worker's answer; TimeoutError when late, EOFError when the worker died or spoke
        out of turn (both leave it unusable: stop it)."""
        if not self._ready:
            if _read_frame(self._stdout_fd, time.monotonic() + start_timeout_s, 64) != _READY:
                raise EOFError("the worker did not start")
            self._ready = True
        try:
            _write_frames(self._stdin, mime.encode("utf-8"), image)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise EOFError("the worker is gone") from exc
        frame = _read_frame(self._stdout_fd, time.monotonic() + timeout_s, MAX_ANSWER_BYTES)
        try:
            answer = json.loads(frame)
        except ValueError as exc:
            raise EOFError("the worker's answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise EOFError("the worker's answer is not an object")
        return answer

    def stop(self, grace_s: float = 0.0) -> None:
        """Asks the worker to end (an empty frame); kills it after `grace_s` seconds."""
        if grace_s > 0 and self._process.poll() is None:
            try:
                _write_frames(self._stdin, b"")
                self._process.wait(grace_s)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(5.0)
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _write_frames(stream: IO[bytes], *frames: bytes) -> None:
    for frame in frames:
        stream.write(_LENGTH.pack(len(frame)))
        stream.write(frame)
    stream.flush()


def _read_frame(fd: int, deadline: float, limit: int) -> bytes:
    (length,) = _LENGTH.unpack(_read_exact(fd, _LENGTH.size, deadline))
    if length > limit:
        raise EOFError(f"a frame of {length} bytes, over {limit}")
    return _read_exact(fd, length, deadline)


def _read_exact(fd: int, size: int, deadline: float) -> bytes:
    """`size` bytes from a pipe by `deadline` (TimeoutError), or EOFError at its end."""
    chunks: list[bytes] = []
    while size > 0:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise TimeoutError
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError("the worker closed its output")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_blocking(stream: IO[bytes], limit: int) -> bytes | None:
    """The next frame on the worker's input, or None at its end."""
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(header)
    if length > limit:
        return None
    frame = stream.read(length)
    return frame if len(frame) == length else None


def _load_factory(name: str) -> CheckFactory:
    module, _, function = name.partition(":")
    factory: CheckFactory = getattr(importlib.import_module(module), function)
    return factory


def serve(factory_name: str) -> None:
    """The worker's loop: settings, then (media type, image) -> answer until an empty frame."""
    requests = sys.stdin.buffer
    # The answers get their own descriptor; fd 1 becomes stderr, so that anything the native
    # library prints cannot corrupt the frames.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    settings = _read_blocking(requests, MAX_ANSWER_BYTES)
    if settings is None:
        return
    check = _load_factory(factory_name)(settings.decode("utf-8"))
    _write_frames(answers, _READY)
    while True:
        mime = _read_blocking(requests, 256)
        if not mime:
            return
        image = _read_blocking(requests, MAX_REQUEST_BYTES)
        if image is None:
            return
        try:
            answer = check(image, mime.decode("utf-8", "replace"))
        except Exception as exc:  # a bug or a library error nobody foresaw: one image's answer
            answer = {"error": type(exc).__name__}
        _write_frames(answers, json.dumps(answer).encode("utf-8"))


if __name__ == "__main__":
    serve(sys.argv[1])
