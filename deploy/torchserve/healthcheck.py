"""Container health check: /ping with the inference key (token authorization is on)."""

import json
import sys
import urllib.request

try:
    with open("/home/model-server/keys/key_file.json") as keys:
        token = json.load(keys)["inference"]["key"]
    request = urllib.request.Request(
        "http://127.0.0.1:8080/ping", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=4) as resp:
        sys.exit(0 if json.loads(resp.read()).get("status") == "Healthy" else 1)
except Exception as exc:  # any failure is "unhealthy"
    print(exc, file=sys.stderr)
    sys.exit(1)
