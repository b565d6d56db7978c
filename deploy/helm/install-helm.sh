#!/usr/bin/env bash
# Builds Helm from the Go module proxy into .cache/helm/<version>/ once, then reuses it; prints
# the binary's path. `make helm` and the chart's tests (tests/deploy/helm.py) both run this.
set -euo pipefail
HELM_VERSION=v3.22.0
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="$root/.cache/helm/$HELM_VERSION"
if [ ! -x "$dir/helm" ]; then
    command -v go >/dev/null || { echo "go not found: cannot build Helm $HELM_VERSION" >&2; exit 3; }
    mkdir -p "$dir"
    echo "building Helm $HELM_VERSION into $dir (once)" >&2
    GOBIN="$dir.tmp" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
    mv "$dir.tmp/helm" "$dir/helm" && rmdir "$dir.tmp"
fi
echo "$dir/helm"
