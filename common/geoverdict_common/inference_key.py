"""The inference key file: TorchServe's key_file.json format, `{"inference": {"key": ...}}`.

TorchServe writes it with all its keys (inference, management, API); its entrypoint publishes
the inference key alone in the same format for the consumer, and Triton's entrypoint writes its
secret in it too. Every reader and writer of the format goes through this module
(tests/common/test_inference_key.py fails on any other).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from geoverdict_common.exceptions import InferenceKeyError

KEY_FILE_NAME = "key_file.json"
ROLE = "inference"
# Readable by everyone, writable by no one: the consumer reads it as another user, through a
# read-only mount.
MODE = 0o444


def read_keys(path: Path) -> dict[str, str]:
    """Every key of a key file by role (TorchServe's has inference, management and API)."""
    try:
        return _keys(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InferenceKeyError(f"cannot read the key file {path}: {exc!r}") from exc


def read_inference_key(path: Path) -> str:
    """The inference key of a key file."""
    try:
        return _keys(path)[ROLE]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InferenceKeyError(f"cannot read the inference key from {path}: {exc!r}") from exc


def _keys(path: Path) -> dict[str, str]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise TypeError(f"a JSON object was expected, got {type(data).__name__}")
    return {role: str(entry["key"]) for role, entry in data.items() if isinstance(entry, dict)}


def write_inference_key(path: Path, key: str) -> None:
    """Write `key` alone to `path`, atomically: a reader sees the old file or the new one, and a
    crash midway leaves the old one (the temporary file is in the same folder, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump({ROLE: {"key": key}}, out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
