"""The model server's inference secret: given directly, or read from a key file in TorchServe's
key_file.json format (geoverdict_common.inference_key; Triton's entrypoint writes its secret in
the same format), re-read when the server refuses it (keys rotate)."""

from __future__ import annotations

import threading
from pathlib import Path

from geoverdict_common.exceptions import InferenceKeyError
from geoverdict_common.inference_key import read_inference_key
from geoverdict_service.exceptions import InvalidSettingsError


class TokenSource:
    """The inference secret, and a way to re-read it after a rotation."""

    def __init__(self, token: str | None = None, key_file: Path | None = None) -> None:
        if token is None and key_file is None:
            raise InvalidSettingsError(
                "the model server needs a token or a key file (its API is locked)"
            )
        self._token = token
        self._key_file = key_file
        self._lock = threading.Lock()
        if token is None:
            self.refresh()

    def get(self) -> str:
        """The current secret."""
        if self._token is None:
            raise InvalidSettingsError("no inference token for the model server")
        return self._token

    def refresh(self) -> bool:
        """Re-read the key file; True when the secret changed."""
        if self._key_file is None:
            return False
        try:
            token = read_inference_key(self._key_file)
        except InferenceKeyError as exc:
            raise InvalidSettingsError(str(exc)) from exc
        with self._lock:
            changed = token != self._token
            self._token = token
        return changed
