"""The TorchServe container's health check: /ping with the inference key (token authorization is
on); exit status 0 when TorchServe answers Healthy, 1 otherwise.

    python -m geoverdict_modelserver.torchserve_health
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

from geoverdict_common.inference_key import KEY_FILE_NAME, read_inference_key

# TorchServe's own key file (all keys), in its working directory in the image.
KEY_FILE = Path("/home/model-server/keys") / KEY_FILE_NAME
PING = "http://127.0.0.1:8080/ping"


def healthy(key_file: Path = KEY_FILE, url: str = PING) -> bool:
    """Whether TorchServe answers /ping with Healthy."""
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {read_inference_key(key_file)}"}
    )
    with urllib.request.urlopen(request, timeout=4) as resp:
        return bool(json.loads(resp.read()).get("status") == "Healthy")


def main() -> int:
    """0 when healthy, 1 on any failure (printed)."""
    try:
        return 0 if healthy() else 1
    except Exception as exc:  # any failure is "unhealthy"
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
