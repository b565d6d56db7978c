#!/usr/bin/env bash
# The images the cluster runs, from podman's storage into containerd's k8s.io namespace (up.sh
# runs this): geoverdict's own (`geoverdict images build --stand-ins consumer torchserve`) and
# the stand-ins for the third-party images the chart names (`geoverdict images stand-ins`;
# registries are out of reach here). An image is imported again only when podman's copy
# changed (its id is stamped).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
run="$root/.cache/cluster/run"
sock=/run/geoverdict-containerd/containerd.sock
conf="$run/containers.conf"
printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n' >"$conf"
export CONTAINERS_CONF="$conf"
mkdir -p "$run/images"
for image in localhost/geoverdict/consumer:dev localhost/geoverdict/torchserve:dev \
    localhost/geoverdict-stand-in/nginx:compose localhost/geoverdict-stand-in/redis:compose \
    localhost/geoverdict-stand-in/redis-exporter:compose localhost/geoverdict-stand-in/pause:compose; do
    if ! id="$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null)"; then
        echo "no image $image in podman: see docs/operations.md, 'A one-node cluster'" >&2
        exit 3
    fi
    stamp="$run/images/$(echo "$image" | tr '/:' '__')"
    # (the list first: `ctr | grep -q` fails under pipefail when grep stops reading early)
    loaded="$(ctr --address "$sock" -n k8s.io images ls -q)"
    if [ "$(cat "$stamp" 2>/dev/null)" = "$id" ] && grep -qx "$image" <<<"$loaded"; then
        continue
    fi
    echo "[$(date +%H:%M:%S)] loading $image into containerd" >&2
    podman save --format docker-archive "$image" \
        | ctr --address "$sock" -n k8s.io images import --all-platforms - >/dev/null
    echo "$id" >"$stamp"
done
